//! A media store that does not answer (a bucket whose server is down): the health report says so, an upload
//! or a picture fails with a clear 503, a reply keeps its text and says why it has no picture, and nothing
//! points at a file that was not stored.

use companion_hub::db_dispatch;
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{newest_message, send_with_picture, setup};
use crate::support::Backend;
use crate::support::fake_images::FakeImages;
use crate::support::images::encoded;
use crate::support::sse::{last, read_all};

#[tokio::test]
async fn an_unreachable_bucket_is_reported_and_refuses_pictures_with_a_clear_message() {
    // A port nothing listens on: every call to the "S3 server" is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let images = FakeImages::start().await;
    let (app, _llm, alice, companion) = setup(
        Backend::Sqlite,
        images.sdapi_env(),
        &[
            ("STORAGE_URL", "s3://ch-unreachable/media"),
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ],
    )
    .await;

    let (status, health) = app.get_json("/api/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    assert_eq!(health["checks"]["storage"]["status"], "unhealthy");
    assert_eq!(health["checks"]["storage"]["kind"], "s3");
    assert!(
        !health.to_string().contains(&endpoint),
        "the public report names no address: {health}"
    );

    let (status, body) = alice
        .upload_portrait(
            &companion,
            encoded(image::ImageFormat::Png, 64, 64),
            "p.png",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "storage_unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("storage")),
        "{body}"
    );
    assert!(body["error"]["correlation_id"].is_string(), "{body}");

    let (status, body) = alice
        .api(
            Method::POST,
            "/api/v1/images",
            Some(json!({"prompt": "a lighthouse"})),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "storage_unavailable");

    let rows: i64 = db_dispatch!(&app.db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM images")
        .fetch_one(pool)
        .await)
    .unwrap();
    assert_eq!(rows, 0, "no row refers to a file that was not stored");
    let (_, shown) = alice
        .api(
            Method::GET,
            &format!("/api/v1/companions/{companion}"),
            None,
        )
        .await;
    assert!(shown["portrait_url"].is_null(), "{shown}");

    // A reply that asked for a picture: the reply is kept, the picture's absence is explained, and the
    // message names no picture.
    let (status, started) = send_with_picture(&alice, &companion, "A picture, please").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    assert!(last(&events, "image").is_none(), "{events:?}");
    let done = last(&events, "done").expect("the reply is still stored");
    assert_eq!(done.data["content"], "Hello, wörld!");
    let reason = done.data["image_error"]
        .as_str()
        .expect("the reason")
        .to_owned();
    assert!(reason.contains("storage"), "{reason}");
    assert!(
        !reason.contains(&endpoint),
        "no address in the reason: {reason}"
    );
    let message = newest_message(&alice, &companion).await;
    assert!(message["image"].is_null(), "{message}");
    assert_eq!(message["image_error"], reason.as_str());
    let rows: i64 = db_dispatch!(&app.db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM images")
        .fetch_one(pool)
        .await)
    .unwrap();
    assert_eq!(rows, 0, "no row refers to a picture that was not stored");
}
