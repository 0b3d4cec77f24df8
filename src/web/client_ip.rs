//! The client's IP address, for rate limits: the socket peer, or the forwarding chain behind a trusted proxy.
//!
//! Policy: `X-Forwarded-For` is believed only when the peer is in `TRUSTED_PROXIES`; then the chain is
//! walked from the right (the entry our proxy added) and the first address that is not itself a trusted
//! proxy is the client. Anything a client writes further left is ignored, so it cannot choose its IP. An
//! entry that is not an address ends the walk: what lies left of it cannot be trusted, so the client is the
//! trusted hop that wrote it (never an address further left, which the client may have written). For rate
//! limits an IPv6 client is its /64 (one subscriber usually holds a whole /64), an IPv4 client its address.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::{IpNet, Ipv6Net};

use crate::state::AppState;

/// The client's address as far as we can trust it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// What rate limits count this client by: the IPv4 address, or the IPv6 /64 network.
    pub fn rate_key(&self) -> String {
        match self.0 {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => Ipv6Net::new(v6, 64)
                    .map_or_else(|_| v6.to_string(), |net| net.trunc().to_string()),
            },
        }
    }
}

/// Resolves the client address from the peer and the forwarding headers.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|value| value.to_str().unwrap_or(""))
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    // Walk from the right: each entry was appended by the hop to its right (the last one by the peer).
    let mut nearest_trusted = peer;
    for entry in entries.iter().rev() {
        match parse_entry(entry) {
            Some(ip) if is_trusted(&ip) => nearest_trusted = ip,
            Some(ip) => return ip,
            // Unreadable: nothing further left can be believed.
            None => return nearest_trusted,
        }
    }
    nearest_trusted
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:5678`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
}

impl<S> FromRequestParts<S> for ClientIp
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
        Ok(Self(resolve(
            peer,
            &parts.headers,
            &state.config.trusted_proxies,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(xff: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(
            "x-forwarded-for",
            HeaderValue::from_str(xff).expect("test setup is valid"),
        );
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test setup is valid")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("test setup is valid")];
        assert_eq!(
            resolve(ip("203.0.113.9"), &headers("1.1.1.1"), &trusted),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_rightmost_untrusted_entry_wins() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("test setup is valid")];
        // The client forged 6.6.6.6; the proxy appended the real address 198.51.100.7.
        let xff = headers("6.6.6.6, 198.51.100.7, 10.0.0.2");
        assert_eq!(resolve(ip("10.0.0.1"), &xff, &trusted), ip("198.51.100.7"));
    }

    #[test]
    fn ports_and_ipv6_entries_are_understood() {
        let trusted: Vec<IpNet> = vec!["127.0.0.1/32".parse().expect("test setup is valid")];
        assert_eq!(
            resolve(ip("127.0.0.1"), &headers("[2001:db8::5]:4711"), &trusted),
            ip("2001:db8::5")
        );
        assert_eq!(
            resolve(ip("127.0.0.1"), &headers("192.0.2.1:80"), &trusted),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn an_unreadable_entry_written_by_a_proxy_ends_the_walk() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("test setup is valid")];
        // The client sent "1.2.3.4"; our proxy 10.0.0.2 appended an entry we cannot read: the client's
        // own entry must not win. The client is then the proxy that wrote the garbage.
        let xff = headers("1.2.3.4, unknown, 10.0.0.2");
        assert_eq!(resolve(ip("10.0.0.1"), &xff, &trusted), ip("10.0.0.2"));
        let xff = headers("1.2.3.4, _hidden");
        assert_eq!(resolve(ip("10.0.0.1"), &xff, &trusted), ip("10.0.0.1"));
        // Several headers are one list, in order.
        let mut two = headers("6.6.6.6");
        two.append("x-forwarded-for", HeaderValue::from_static("198.51.100.7"));
        assert_eq!(resolve(ip("10.0.0.1"), &two, &trusted), ip("198.51.100.7"));
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_slash_64() {
        let a = ClientIp(ip("2001:db8:1:2:aaaa::1")).rate_key();
        let b = ClientIp(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")).rate_key();
        let other = ClientIp(ip("2001:db8:1:3::1")).rate_key();
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_eq!(a, b, "one subscriber's /64 is one client");
        assert_ne!(a, other);
        assert_eq!(ClientIp(ip("203.0.113.9")).rate_key(), "203.0.113.9");
        assert_eq!(ClientIp(ip("::ffff:203.0.113.9")).rate_key(), "203.0.113.9");
    }

    #[test]
    fn garbage_or_missing_headers_fall_back_to_the_peer() {
        let trusted: Vec<IpNet> = vec!["127.0.0.1/32".parse().expect("test setup is valid")];
        assert_eq!(
            resolve(ip("127.0.0.1"), &headers("not-an-ip"), &trusted),
            ip("127.0.0.1")
        );
        assert_eq!(
            resolve(ip("127.0.0.1"), &HeaderMap::new(), &trusted),
            ip("127.0.0.1")
        );
    }
}
