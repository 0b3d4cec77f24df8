//! Media on an S3-compatible server: the `s3` variants of the media tests run the app on SQLite with its
//! pictures in a bucket of their own on the server at `TEST_S3_ENDPOINT` (.ci/run starts moto's server).

use std::time::Duration;

tokio::task_local! {
    /// The bucket of the running `s3` variant; `test_config` points `STORAGE_URL` at it.
    pub static BUCKET: String;
}

/// The S3 server of the `s3` variants; the test fails without it (a test that did not run never passes).
pub fn endpoint() -> String {
    match std::env::var("TEST_S3_ENDPOINT") {
        Ok(url) if !url.is_empty() => url.trim_end_matches('/').to_owned(),
        _ => panic!(
            "this S3 variant needs TEST_S3_ENDPOINT (an S3-compatible server, e.g. `moto_server -p 5000` and \
             http://127.0.0.1:5000); plain `cargo nextest run` skips these variants"
        ),
    }
}

/// A new, empty bucket.
pub async fn create_bucket() -> String {
    let bucket = format!("ch-test-{}", uuid::Uuid::now_v7().simple());
    let response = reqwest::Client::new()
        .put(format!("{}/{bucket}", endpoint()))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("the S3 server answers");
    assert!(
        response.status().is_success(),
        "create bucket {bucket}: {}",
        response.status()
    );
    bucket
}

/// The variables that put the media of the running `s3` variant into its bucket (none outside one).
pub fn vars() -> Vec<(String, String)> {
    match BUCKET.try_with(Clone::clone) {
        Ok(bucket) => vars_for(&bucket),
        Err(_) => Vec::new(),
    }
}

/// The variables that put an app's media into `bucket` on the test server.
pub fn vars_for(bucket: &str) -> Vec<(String, String)> {
    vec![
        ("STORAGE_URL".into(), format!("s3://{bucket}/media")),
        ("AWS_ENDPOINT_URL".into(), endpoint()),
        ("AWS_ALLOW_HTTP".into(), "true".into()),
        ("AWS_REGION".into(), "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
    ]
}
