//! Fetching IdP metadata from a URL without becoming a proxy into the private network: the
//! host's addresses are resolved first and loopback, private, link-local and other non-public
//! addresses are refused (unless the operator allows them); the request then goes to the
//! checked address only, so DNS cannot change its answer in between. Redirects are followed by
//! hand, each target checked the same way, at most three.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use crate::{Error, Result};

const MAX_METADATA_BYTES: usize = 2 * 1024 * 1024;
const MAX_REDIRECTS: usize = 3;
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct MetadataFetcher {
    allow_private: bool,
}

/// Why a fetch failed, in words for the operator and the audit log.
fn failed(url: &str, why: impl std::fmt::Display) -> Error {
    Error::invalid("metadata_url", format!("cannot fetch {url}: {why}"))
}

impl MetadataFetcher {
    pub fn new(allow_private: bool) -> Self {
        Self { allow_private }
    }

    /// Fetches the document at `url` (http or https).
    pub async fn fetch(&self, url: &str) -> Result<String> {
        let mut current = url.to_owned();
        for _ in 0..=MAX_REDIRECTS {
            let parsed = url::Url::parse(&current).map_err(|e| failed(&current, e))?;
            let addr = self.checked_address(&parsed).await?;
            let host = parsed.host_str().unwrap_or_default().to_owned();
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(TIMEOUT)
                .resolve(&host, addr)
                .build()
                .map_err(|e| Error::Internal(format!("http client: {e}")))?;
            let response = client.get(parsed.clone()).send().await.map_err(|e| failed(url, e))?;
            if response.status().is_redirection() {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| failed(url, "a redirect without Location"))?;
                current = parsed.join(location).map_err(|e| failed(url, e))?.to_string();
                continue;
            }
            if !response.status().is_success() {
                return Err(failed(url, format!("HTTP {}", response.status())));
            }
            return read_limited(response, url).await;
        }
        Err(failed(url, "too many redirects"))
    }

    /// The address to connect to, after refusing non-public ones.
    async fn checked_address(&self, url: &url::Url) -> Result<SocketAddr> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(failed(url.as_str(), "only http and https URLs are fetched"));
        }
        let host = url.host_str().ok_or_else(|| failed(url.as_str(), "no host"))?;
        let port = url.port_or_known_default().unwrap_or(443);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| failed(url.as_str(), e))?
            .collect();
        let first = addrs.first().copied().ok_or_else(|| failed(url.as_str(), "no address"))?;
        if !self.allow_private
            && let Some(bad) = addrs.iter().find(|a| !is_public(a.ip()))
        {
            return Err(failed(
                url.as_str(),
                format!(
                    "{} is not a public address (set LATCHKEY_SAML_METADATA_ALLOW_PRIVATE=true to allow)",
                    bad.ip()
                ),
            ));
        }
        Ok(first)
    }
}

async fn read_limited(mut response: reqwest::Response, url: &str) -> Result<String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| failed(url, e))? {
        if body.len() + chunk.len() > MAX_METADATA_BYTES {
            return Err(failed(url, "the document is larger than 2 MiB"));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| failed(url, "the document is not UTF-8"))
}

/// Globally routable unicast: not loopback, private, link-local, CGNAT, unique-local,
/// documentation, unspecified, multicast or broadcast (IPv4-mapped IPv6 judged as IPv4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x64 && s[1] == 0xff9b))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!is_public(bad.parse().unwrap()), "{bad}");
        }
        for good in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(good.parse().unwrap()), "{good}");
        }
    }

    #[tokio::test]
    async fn loopback_is_refused_unless_allowed() {
        let strict = MetadataFetcher::new(false);
        let e = strict.fetch("http://127.0.0.1:9/metadata").await.unwrap_err();
        assert!(e.to_string().contains("not a public address"), "{e}");
        let e = strict.fetch("file:///etc/passwd").await.unwrap_err();
        assert!(e.to_string().contains("only http"), "{e}");
    }
}
