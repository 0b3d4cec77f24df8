//! The client's IP address, for rate limits: the socket peer, or the forwarding chain behind a trusted proxy.
//!
//! Policy: `X-Forwarded-For` is believed only when the peer is in `TRUSTED_PROXIES`; then the chain is
//! walked from the right (the entry our proxy added) and the first address that is not itself a trusted
//! proxy is the client. Anything a client writes further left is ignored, so it cannot choose its IP.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;

use crate::state::AppState;

/// The client's address as far as we can trust it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Resolves the client address from the peer and the forwarding headers.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let chain: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|entry| parse_entry(entry.trim()))
        .collect();
    chain
        .iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .or_else(|| chain.first())
        .copied()
        .unwrap_or(peer)
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
