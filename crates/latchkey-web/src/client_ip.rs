//! The client's address. Behind a reverse proxy or load balancer the TCP peer is the proxy, so
//! every user would share one per-address sign-in limit; `LATCHKEY_TRUSTED_PROXIES` names the
//! proxies whose `X-Forwarded-For` is believed. The client is the rightmost address in that
//! header that is not a trusted proxy: entries to its left were written by the client itself
//! and prove nothing. A peer that is not trusted is the client, whatever it sends.

use std::net::IpAddr;

use actix_web::{HttpRequest, web};
use ipnet::IpNet;

use crate::AppState;

/// The client address of `req` under the configured trusted proxies.
pub fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let trusted = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.core.settings.trusted_proxies.as_slice())
        .unwrap_or_default();
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>();
    Some(resolve(peer, &forwarded, trusted))
}

/// Pure rule behind [`client_ip`]: `forwarded` holds the `X-Forwarded-For` values in order.
pub fn resolve(peer: IpAddr, forwarded: &[&str], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops = forwarded.iter().flat_map(|v| v.split(',')).map(str::trim).collect::<Vec<_>>();
    let mut client = peer;
    for hop in hops.iter().rev() {
        // An entry we cannot read ends the trail: the last address we could vouch for stands.
        let Some(ip) = parse_hop(hop) else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an address, possibly `[v6]` or with a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Ok(sa) = hop.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    hop.strip_prefix('[').and_then(|h| h.strip_suffix(']')).and_then(|h| h.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_trusted_peers_are_believed() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // Untrusted peer: the header is ignored.
        assert_eq!(resolve(ip("198.51.100.9"), &["203.0.113.5"], &trusted), ip("198.51.100.9"));
        // Trusted peer: the rightmost untrusted entry; what the client wrote on the left is not.
        assert_eq!(
            resolve(ip("10.0.0.2"), &["1.1.1.1, 203.0.113.5, 10.0.0.7"], &trusted),
            ip("203.0.113.5")
        );
        // Several header lines are one list, in order.
        assert_eq!(
            resolve(ip("10.0.0.2"), &["1.1.1.1", "203.0.113.5"], &trusted),
            ip("203.0.113.5")
        );
        // Ports and brackets.
        assert_eq!(resolve(ip("10.0.0.2"), &["203.0.113.5:4711"], &trusted), ip("203.0.113.5"));
        assert_eq!(resolve(ip("10.0.0.2"), &["[2001:db8::5]"], &trusted), ip("2001:db8::5"));
        // Garbage ends the trail at the last readable hop; no header: the proxy itself.
        assert_eq!(resolve(ip("10.0.0.2"), &["nonsense, 10.0.0.7"], &trusted), ip("10.0.0.7"));
        assert_eq!(resolve(ip("10.0.0.2"), &[], &trusted), ip("10.0.0.2"));
        // All hops trusted: the leftmost one.
        assert_eq!(resolve(ip("10.0.0.2"), &["10.9.9.9, 10.0.0.7"], &trusted), ip("10.9.9.9"));
        // Nothing trusted: the peer, always.
        assert_eq!(resolve(ip("10.0.0.2"), &["203.0.113.5"], &[]), ip("10.0.0.2"));
    }
}
