//! Pinning a Microsoft tenant at enrollment. The tenant that owns a domain is read from
//! `{authority}/{domain}/v2.0/.well-known/openid-configuration` (rules in
//! `latchkey_easie::discovery`); a tenant the operator gives is checked against it whenever
//! Microsoft answers. The authority is the operator's configuration, so unlike IdP metadata
//! URLs it may be a loopback emulator; redirects are still not followed, since the document
//! must come from the authority itself.

use std::time::Duration;

use latchkey_easie::{Authority, Domain, Refusal, TenantId, discovery};

use crate::{Error, Result};

const TIMEOUT: Duration = Duration::from_secs(10);
/// An OpenID configuration is a few kilobytes; anything much larger is not one.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// What Microsoft said about a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovered {
    /// The domain belongs to this (work) tenant.
    Tenant(TenantId),
    /// The domain resolves to the personal-accounts tenant.
    ConsumerTenant,
    /// No usable answer (unknown domain, malformed document, network failure): why.
    NoAnswer(String),
}

/// Where a pinned tenant came from, for the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantSource {
    /// Resolved from the domain.
    Discovered,
    /// Given, and Microsoft named the same tenant for the domain.
    GivenConfirmed,
    /// Given, and Microsoft gave no usable answer for the domain.
    GivenUnconfirmed,
}

/// The tenant to pin, from the one given (if any) and what discovery said. Fails closed: a
/// given tenant that disagrees with Microsoft's answer, a consumer tenant either way, and no
/// tenant at all are refused.
pub fn pin_tenant(
    domain: &Domain,
    given: Option<TenantId>,
    discovered: Discovered,
) -> Result<(TenantId, TenantSource)> {
    match (given, discovered) {
        (_, Discovered::ConsumerTenant) => Err(Error::invalid(
            "domain",
            format!(
                "{domain} belongs to Microsoft's consumer tenant (personal accounts), which never \
                 stands for an organisation"
            ),
        )),
        (None, Discovered::Tenant(t)) => Ok((t, TenantSource::Discovered)),
        (Some(g), Discovered::Tenant(t)) if g == t => Ok((g, TenantSource::GivenConfirmed)),
        (Some(g), Discovered::Tenant(t)) => Err(Error::invalid(
            "tenant_id",
            format!("Microsoft says {domain} belongs to tenant {t}, not to the given tenant {g}"),
        )),
        (Some(g), Discovered::NoAnswer(_)) => Ok((g, TenantSource::GivenUnconfirmed)),
        (None, Discovered::NoAnswer(why)) => Err(Error::invalid(
            "tenant_id",
            format!(
                "cannot resolve the Microsoft tenant of {domain} ({why}); give it with --tenant-id"
            ),
        )),
    }
}

/// A tenant ID given by the operator: a GUID, never the consumer tenant.
pub fn parse_given_tenant(input: &str) -> Result<TenantId> {
    let t =
        TenantId::parse(input.trim()).map_err(|e| Error::invalid("tenant_id", e.to_string()))?;
    if t.is_consumer() {
        return Err(Error::invalid("tenant_id", Refusal::ConsumerTenant.to_string()));
    }
    Ok(t)
}

/// Fetches tenant discovery documents.
#[derive(Clone)]
pub struct TenantResolver {
    authority: Authority,
    http: reqwest::Client,
}

impl TenantResolver {
    pub fn new(authority: Authority) -> Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| Error::Internal(format!("http client: {e}")))?;
        Ok(Self { authority, http })
    }

    /// What Microsoft says about `domain`. Never an error: every failure is a reason in
    /// [`Discovered::NoAnswer`], for [`pin_tenant`] to weigh.
    pub async fn discover(&self, domain: &Domain) -> Discovered {
        let url = self.authority.discovery_url(domain);
        let body = match self.fetch(&url).await {
            Ok(body) => body,
            Err(why) => return Discovered::NoAnswer(why),
        };
        match discovery::tenant_from_openid_configuration(&body, &self.authority) {
            Ok(t) => Discovered::Tenant(t),
            Err(Refusal::ConsumerTenant) => Discovered::ConsumerTenant,
            Err(e) => Discovered::NoAnswer(e.to_string()),
        }
    }

    async fn fetch(&self, url: &str) -> std::result::Result<String, String> {
        let mut response = self.http.get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            // Microsoft answers 400 `invalid_tenant` for a domain no tenant has verified.
            return Err(format!("{url} answered HTTP {status}"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("{url}: {e}"))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("{url}: the document is larger than 256 KiB"));
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|_| format!("{url}: the document is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_easie::CONSUMER_TENANT_ID;

    const T1: &str = "11111111-1111-4111-8111-111111111111";
    const T2: &str = "22222222-2222-4222-8222-222222222222";

    fn t(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    fn field(e: Error) -> &'static str {
        match e {
            Error::Invalid { field, .. } => field,
            other => panic!("not an input error: {other:?}"),
        }
    }

    #[test]
    fn the_pinned_tenant_is_discovered_or_given_and_never_contradicted() {
        let d = Domain::parse("contoso.test").unwrap();
        let found = || Discovered::Tenant(t(T1));
        let silent = || Discovered::NoAnswer("HTTP 400".into());
        assert_eq!(pin_tenant(&d, None, found()).unwrap(), (t(T1), TenantSource::Discovered));
        assert_eq!(
            pin_tenant(&d, Some(t(T1)), found()).unwrap(),
            (t(T1), TenantSource::GivenConfirmed)
        );
        assert_eq!(
            pin_tenant(&d, Some(t(T2)), silent()).unwrap(),
            (t(T2), TenantSource::GivenUnconfirmed)
        );
        // Disagreement, the consumer tenant (given or not) and nothing at all are refused.
        assert_eq!(field(pin_tenant(&d, Some(t(T2)), found()).unwrap_err()), "tenant_id");
        assert_eq!(field(pin_tenant(&d, None, Discovered::ConsumerTenant).unwrap_err()), "domain");
        assert_eq!(
            field(pin_tenant(&d, Some(t(T1)), Discovered::ConsumerTenant).unwrap_err()),
            "domain"
        );
        let err = pin_tenant(&d, None, silent()).unwrap_err();
        assert!(err.to_string().contains("--tenant-id"), "{err}");
    }

    #[test]
    fn given_tenants_are_guids_other_than_the_consumer_tenant() {
        assert_eq!(
            parse_given_tenant(" 11111111-1111-4111-8111-11111111111A ").unwrap().as_str(),
            "11111111-1111-4111-8111-11111111111a"
        );
        for bad in ["", "common", "organizations", "contoso.onmicrosoft.com", CONSUMER_TENANT_ID] {
            assert_eq!(field(parse_given_tenant(bad).unwrap_err()), "tenant_id", "{bad}");
        }
        let upper = CONSUMER_TENANT_ID.to_uppercase();
        assert!(parse_given_tenant(&upper).is_err());
    }
}
