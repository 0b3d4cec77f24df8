//! `/api/live`, `/api/ready` and `/api/health`, with fake providers speaking their real endpoints.

use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::routing::get;
use reqwest::StatusCode;

use crate::support::fake_http::{FakeServer, Hits};
use crate::support::{Backend, TestApp};
use crate::{on_both_backends, on_every_store};

/// A fake OpenAI-compatible server whose `/v1/models` answers `status`, recording each call and
/// the Authorization header it saw.
async fn fake_llm(
    status: AxumStatus,
) -> (
    FakeServer,
    Hits,
    std::sync::Arc<std::sync::Mutex<Option<String>>>,
) {
    let hits = Hits::default();
    let auth = std::sync::Arc::new(std::sync::Mutex::new(None));
    let (h, a) = (hits.clone(), auth.clone());
    let server = FakeServer::start(axum::Router::new().route(
        "/v1/models",
        get(move |headers: HeaderMap| {
            h.record();
            *a.lock().unwrap() = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            async move {
                (
                    status,
                    axum::Json(serde_json::json!({"object": "list", "data": [{"id": "test-model", "object": "model"}]})),
                )
            }
        }),
    ))
    .await;
    (server, hits, auth)
}

async fn liveness_needs_no_io(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.db.close().await;
    let (status, body) = app.get_json("/api/live").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "alive");
}

async fn health_reports_each_dependency(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) = app.get_json("/api/health").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["timestamp"].as_str().unwrap().starts_with("20"));
    let checks = &body["checks"];
    assert_eq!(checks["database"]["status"], "healthy");
    assert!(checks["database"]["latency_ms"].is_u64());
    assert_eq!(
        checks["database"]["kind"],
        match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    );
    assert_eq!(checks["storage"]["status"], "healthy", "{body}");
    let in_a_bucket = crate::support::s3::BUCKET.try_with(|_| ()).is_ok();
    assert_eq!(
        checks["storage"]["kind"],
        if in_a_bucket { "s3" } else { "local" }
    );
    assert_eq!(checks["workflow_engine"]["status"], "healthy");
    assert_eq!(checks["llm"]["status"], "not_configured");
    assert_eq!(checks["image_backend"]["status"], "not_configured");
    assert_eq!(checks["relay_bus"]["status"], "not_configured");
}

async fn a_lost_database_makes_the_instance_unready_and_unhealthy(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.db.close().await;
    let (status, body) = app.get_json("/api/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["check"], "database");
    assert_eq!(body["reason"], "database_unreachable");
    assert_eq!(body["message"], "The database is unreachable.");

    let (status, body) = app.get_json("/api/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["database"]["status"], "unhealthy");
    assert_eq!(body["checks"]["database"]["error"], "failed");
    // The driver's own words ("pool closed", hosts, users) stay in the log.
    let text = body.to_string().to_lowercase();
    assert!(!text.contains("pool") && !text.contains("closed"), "{body}");
}

async fn a_configured_model_is_probed_with_its_key_and_cached(backend: Backend) {
    let (llm, hits, auth) = fake_llm(AxumStatus::OK).await;
    let base = llm.url("/v1");
    let app = TestApp::spawn_with(
        backend,
        &[
            ("LLM_BASE_URL", base.as_str()),
            ("LLM_MODEL", "test-model"),
            ("LLM_API_KEY", "sk-test-key"),
        ],
    )
    .await;
    let burst = (0..10).map(|_| app.get_json("/api/health"));
    for (status, body) in futures_util::future::join_all(burst).await {
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["checks"]["llm"]["status"], "healthy");
    }
    assert_eq!(
        hits.count(),
        1,
        "a burst of probes reaches the provider once"
    );
    assert_eq!(auth.lock().unwrap().as_deref(), Some("Bearer sk-test-key"));
}

async fn a_failing_model_degrades_health_but_not_readiness(backend: Backend) {
    let (llm, _hits, _auth) = fake_llm(AxumStatus::INTERNAL_SERVER_ERROR).await;
    let base = llm.url("/v1");
    let app = TestApp::spawn_with(
        backend,
        &[("LLM_BASE_URL", base.as_str()), ("LLM_MODEL", "test-model")],
    )
    .await;
    let (status, body) = app.get_json("/api/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["llm"]["status"], "unhealthy");
    assert_eq!(body["checks"]["llm"]["error"], "failed");
    // Only the fixed fields: nothing of what the model answered (its status, its body) reaches the report.
    let fields: std::collections::BTreeSet<&str> = body["checks"]["llm"]
        .as_object()
        .expect("the llm check")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        ["error", "kind", "latency_ms", "status"].into(),
        "no upstream detail: {body}"
    );
    assert_eq!(app.get("/api/ready").await.status(), StatusCode::OK);
}

async fn an_unreachable_image_backend_is_reported(backend: Backend) {
    // Bind and drop a listener to get a port nobody listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let app = TestApp::spawn_with(backend, &[("SD_API_URL", url.as_str())]).await;
    let (status, body) = app.get_json("/api/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let image = &body["checks"]["image_backend"];
    assert_eq!(image["status"], "unhealthy");
    assert_eq!(image["kind"], "sdapi");
    assert_eq!(image["error"], "failed");
    assert!(
        !body.to_string().contains("refused") && !body.to_string().contains(&port.to_string()),
        "connection details stay in the log: {body}"
    );
}

async fn a_healthy_sd_backend_is_probed_on_its_model_list(backend: Backend) {
    let hits = Hits::default();
    let h = hits.clone();
    let sd = FakeServer::start(axum::Router::new().route(
        "/sdapi/v1/sd-models",
        get(move || {
            h.record();
            async {
                axum::Json(
                    serde_json::json!([{"title": "anime.safetensors", "model_name": "anime"}]),
                )
            }
        }),
    ))
    .await;
    let url = sd.url("");
    let app = TestApp::spawn_with(backend, &[("SD_API_URL", url.as_str())]).await;
    let (status, body) = app.get_json("/api/health").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["checks"]["image_backend"]["status"], "healthy");
    assert_eq!(hits.count(), 1);
}

on_every_store!(health_reports_each_dependency);

on_both_backends!(
    liveness_needs_no_io,
    a_lost_database_makes_the_instance_unready_and_unhealthy,
    a_configured_model_is_probed_with_its_key_and_cached,
    a_failing_model_degrades_health_but_not_readiness,
    an_unreachable_image_backend_is_reported,
    a_healthy_sd_backend_is_probed_on_its_model_list,
);
