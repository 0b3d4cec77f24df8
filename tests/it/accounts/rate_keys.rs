//! Rate-limit keys: keyed hashes nobody can reverse by hashing candidate addresses, IPv6 networks counted
//! by their /64, and forwarding headers a client cannot use to pick its own key.

use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use companion_hub::db_dispatch;
use companion_hub::web::keys::{Purpose, ServerKeys};

use crate::on_both_backends;
use crate::support::{Backend, TestApp};

async fn rate_limit_rows_hold_keyed_hashes_of_the_address(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.visitor().login("alice", "Wrong-Password-1").await;
    let stored: Vec<Vec<u8>> = db_dispatch!(&app.db, pool => sqlx::query_scalar(
        "SELECT key_hash FROM rate_limits WHERE action = 'login_ip'",
    )
    .fetch_all(pool)
    .await)
    .unwrap();
    assert_eq!(stored.len(), 1, "one window for the one address");
    let plain = Sha256::digest(b"127.0.0.1").to_vec();
    assert_ne!(
        stored[0], plain,
        "an unsalted hash of an IPv4 address is found by trying them all"
    );
    let key = ServerKeys::new(app.db.clone())
        .key(Purpose::RateLimit)
        .await
        .unwrap();
    assert_eq!(
        stored[0],
        key.digest(&[b"login_ip".as_slice(), b"127.0.0.1"]).to_vec(),
        "HMAC with the deployment's secret"
    );
}

async fn ipv6_clients_are_counted_by_their_64_network(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
            ("RATE_LIMIT_REGISTER", "2/24h"),
        ],
    )
    .await;
    let from = |ip: &'static str, name: &'static str| {
        let visitor = app.visitor();
        async move { visitor.register_forwarded(ip, name).await.status() }
    };
    assert_eq!(
        from("2001:db8:1:2::1", "user1").await,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        from("2001:db8:1:2:ffff::9", "user2").await,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        from("2001:db8:1:2:abcd:1:2:3", "user3").await,
        StatusCode::TOO_MANY_REQUESTS,
        "a new address in the same /64 is the same network"
    );
    assert_eq!(
        from("2001:db8:1:3::1", "user4").await,
        StatusCode::SEE_OTHER,
        "the next /64 is another network"
    );
}

async fn an_unreadable_proxy_entry_does_not_let_the_client_choose_its_address(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
            ("RATE_LIMIT_REGISTER", "1/24h"),
        ],
    )
    .await;
    // The trusted proxy appended something it could not write as an address; what comes before it was
    // written by the client, so the client is known only as the proxy's peer.
    let first = app
        .visitor()
        .register_forwarded("198.51.100.7, unknown", "user1")
        .await;
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let second = app
        .visitor()
        .register_forwarded("198.51.100.8, unknown", "user2")
        .await;
    assert_eq!(
        second.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a client-written entry does not give a fresh limit"
    );
}

on_both_backends!(
    rate_limit_rows_hold_keyed_hashes_of_the_address,
    ipv6_clients_are_counted_by_their_64_network,
    an_unreadable_proxy_entry_does_not_let_the_client_choose_its_address,
);
