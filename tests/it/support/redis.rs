//! The Redis server of the relay-bus tests (`TEST_REDIS_URL`): a key prefix of each test's own, and a way
//! to drop the relay's reading connections as a restarted server or a proxy's idle cut would.

/// The server's URL; fails the test without `TEST_REDIS_URL` (a Redis test that did not run must never
/// pass; plain `cargo nextest run` skips these tests).
pub fn require_redis() -> String {
    match std::env::var("TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "this test needs TEST_REDIS_URL (e.g. redis://127.0.0.1:6379); plain `cargo nextest run` skips it"
        ),
    }
}

/// A key prefix no other test (or earlier run) uses, so tests share the server without seeing each other.
pub fn unique_prefix() -> String {
    format!("ch-test-{}", uuid::Uuid::now_v7().simple())
}

/// Closes every relay reader of the deployment using `prefix` (they name themselves
/// `<prefix>:tokens:reader-<instance>`); how many there were.
pub async fn kill_readers(url: &str, prefix: &str) -> usize {
    let client = redis::Client::open(url).expect("a Redis URL");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis");
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut connection)
        .await
        .expect("CLIENT LIST");
    let readers: Vec<String> = clients
        .lines()
        .filter(|line| {
            line.split(' ')
                .any(|field| field.starts_with(&format!("name={prefix}:tokens:reader-")))
        })
        .filter_map(|line| {
            line.split(' ')
                .find_map(|field| field.strip_prefix("id="))
                .map(str::to_owned)
        })
        .collect();
    for id in &readers {
        let _: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async(&mut connection)
            .await
            .expect("CLIENT KILL");
    }
    readers.len()
}
