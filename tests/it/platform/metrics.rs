//! `/metrics`: Prometheus text, bounded labels, optional bearer token, optional listener of its own.

use reqwest::StatusCode;
use reqwest::header;

use crate::on_both_backends;
use crate::support::{Backend, TestApp};

/// The value of the sample line starting with `prefix`, or 0 when absent.
fn sample(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

async fn requests_are_counted_by_route_template_not_raw_path(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let live = r#"http_requests_total{method="GET",route="/api/live",status="200"}"#;
    let assets = r#"http_requests_total{method="GET",route="/static/{*path}",status="200"}"#;
    let unmatched = r#"http_requests_total{method="GET",route="unmatched",status="404"}"#;
    let before = app.metrics().await;

    app.get("/api/live").await;
    app.get("/api/live").await;
    app.get("/static/css/app.css").await;
    app.get("/some-random-path-4711").await;

    let after = app.metrics().await;
    // Other tests in the same process share the recorder, so counts can only be said to have grown.
    assert!(
        sample(&after, live) - sample(&before, live) >= 2.0,
        "{after}"
    );
    assert!(sample(&after, assets) - sample(&before, assets) >= 1.0);
    assert!(sample(&after, unmatched) - sample(&before, unmatched) >= 1.0);
    assert!(
        !after.contains("some-random-path-4711"),
        "raw paths never become labels"
    );
    assert!(
        !after.contains("app.css"),
        "raw asset paths never become labels"
    );
}

async fn latency_is_a_histogram_and_build_info_is_exposed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.get("/api/live").await;
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    assert!(
        text.contains("# TYPE http_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(text.contains(
        r#"http_request_duration_seconds_bucket{method="GET",route="/api/live",le="0.005"}"#
    ));
    assert!(
        text.contains(r#"http_request_duration_seconds_count{method="GET",route="/api/live"}"#)
    );
    assert!(text.contains(&format!(
        r#"companion_hub_build_info{{version="{}"}} 1"#,
        env!("CARGO_PKG_VERSION")
    )));
}

async fn a_metrics_token_is_required_when_configured(backend: Backend) {
    let token = "metrics-token-0123456789";
    let app = TestApp::spawn_with(backend, &[("METRICS_TOKEN", token)]).await;

    let anonymous = app.get("/metrics").await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers().contains_key(header::WWW_AUTHENTICATE));
    let body: serde_json::Value = anonymous.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");

    let wrong = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("metrics-token-0123456780")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let right = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), StatusCode::OK);
    assert!(right.text().await.unwrap().contains("http_requests_total"));
}

async fn a_separate_metrics_listener_takes_metrics_off_the_public_one(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("METRICS_LISTEN_ADDR", "127.0.0.1:0")]).await;
    let metrics_address = app.metrics_address.expect("a metrics listener was bound");
    assert_ne!(metrics_address, app.address);

    app.get("/api/live").await;
    assert_eq!(app.get("/metrics").await.status(), StatusCode::NOT_FOUND);
    let private = app
        .client
        .get(format!("http://{metrics_address}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(private.status(), StatusCode::OK);
    assert!(
        private
            .text()
            .await
            .unwrap()
            .contains(r#"route="/api/live""#)
    );
    // Only metrics live there: the application is not reachable through the private port.
    let other = app
        .client
        .get(format!("http://{metrics_address}/api/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
}

on_both_backends!(
    a_separate_metrics_listener_takes_metrics_off_the_public_one,
    requests_are_counted_by_route_template_not_raw_path,
    latency_is_a_histogram_and_build_info_is_exposed,
    a_metrics_token_is_required_when_configured,
);
