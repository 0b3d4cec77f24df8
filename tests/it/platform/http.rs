//! The HTTP surface every feature relies on: pages, error rendering, headers, assets, limits, shutdown.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{self, HeaderValue};

use crate::on_both_backends;
use crate::support::{Backend, TestApp, wait_until};

async fn the_start_page_sends_visitors_to_sign_in_within_the_layout(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let start = app.get("/").await;
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    assert_eq!(start.headers()[header::LOCATION], "/login");
    let response = app.get("/login").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    let html = response.text().await.unwrap();
    assert!(html.contains("<title>Sign in · Companion Hub</title>"));
    assert!(
        html.contains(r#"<meta name="csrf-token" content=""#),
        "csrf slot"
    );
    assert!(html.contains(r#"<meta name="viewport" content="width=device-width"#));
    assert!(html.contains(r#"class="site-header""#) && html.contains(r#"class="site-footer""#));
    assert!(html.contains(r#"id="theme-toggle""#));
}

/// What the strict CSP would block on `path`'s HTML: inline scripts, styles, handlers, `javascript:` URLs.
fn inline_code_in(path: &str, html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (index, _) in html.match_indices("<script") {
        let tag_end = html[index..]
            .find('>')
            .map_or(html.len(), |end| end + index);
        if !html[index..tag_end].contains("src=") {
            found.push(format!("{path}: inline script {}", &html[index..tag_end]));
        }
    }
    if html.contains("<style") {
        found.push(format!("{path}: <style>"));
    }
    if html.contains(" style=") {
        found.push(format!("{path}: a style attribute"));
    }
    if html.to_ascii_lowercase().contains("javascript:") {
        found.push(format!("{path}: a javascript: URL"));
    }
    // Event-handler attributes: ` on<letters>=` inside a tag.
    for (index, _) in html.match_indices(" on") {
        let rest = &html[index + 3..];
        let name_len = rest.chars().take_while(char::is_ascii_alphabetic).count();
        let inside_tag = html[..index].rfind('<') > html[..index].rfind('>');
        if name_len > 0 && rest[name_len..].starts_with('=') && inside_tag {
            found.push(format!("{path}: handler on{}", &rest[..name_len]));
        }
    }
    found
}

async fn pages_contain_no_inline_scripts_or_styles(backend: Backend) {
    use crate::images::{send_with_picture, setup};
    use crate::support::fake_images::FakeImages;
    use crate::support::sse::read_all;

    // Every page there is, with something on it: a companion, a conversation with a picture, a gallery.
    let images = FakeImages::start().await;
    let (app, _llm, alice, companion) = setup(backend, images.sdapi_env(), &[]).await;
    let (status, started) = send_with_picture(&alice, &companion, "Show me where you are").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    read_all(&alice, started["stream_url"].as_str().unwrap()).await;

    let mut found = Vec::new();
    // (`/` redirects a signed-in visitor to /companions.)
    let signed_in = [
        "/companions".to_owned(),
        "/companions/new".to_owned(),
        format!("/companions/{companion}/edit"),
        format!("/companions/{companion}/chat"),
        "/gallery".to_owned(),
        format!("/gallery/{companion}"),
        "/generate".to_owned(),
        "/settings".to_owned(),
        "/no-such-page".to_owned(),
    ];
    for path in &signed_in {
        let response = alice.get(path).await;
        assert!(
            response.status().is_success() || response.status() == StatusCode::NOT_FOUND,
            "{path}: {}",
            response.status()
        );
        let html = response.text().await.unwrap();
        assert!(html.contains("</html>"), "{path} is a page");
        found.extend(inline_code_in(path, &html));
    }
    for path in ["/login", "/register", "/no-such-page"] {
        let html = app.get(path).await.text().await.unwrap();
        found.extend(inline_code_in(path, &html));
    }
    let forbidden = app
        .client
        .post(app.url("/logout"))
        .header(header::ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    found.extend(inline_code_in("403 page", &forbidden.text().await.unwrap()));
    assert!(found.is_empty(), "{found:#?}");
    assert!(
        !inline_code_in("sample", r#"<p><a href="/" onclick="x()">"#).is_empty(),
        "the scan finds what it looks for"
    );
}

async fn unknown_routes_answer_404_as_html_or_json_with_the_reference(backend: Backend) {
    let app = TestApp::spawn(backend).await;

    let response = app
        .client
        .get(app.url("/does/not/exist"))
        .header(header::ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let id = response.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let html = response.text().await.unwrap();
    assert!(html.contains("Not Found"));
    assert!(html.contains(&id), "the page shows the reference");

    let (status, body) = app.get_json("/does/not/exist").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    assert!(body["error"]["message"].as_str().unwrap().len() > 10);
    assert!(body["error"]["correlation_id"].as_str().unwrap().len() >= 8);
}

async fn a_wrong_method_answers_405_with_allow(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app
        .client
        .delete(app.url("/api/health"))
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        response.headers()[header::ALLOW]
            .to_str()
            .unwrap()
            .contains("GET")
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

async fn an_oversized_body_answers_413_not_500(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = vec![b'x'; companion_hub::app::MAX_REQUEST_BYTES + 1];
    let response = app
        .client
        .post(app.url("/"))
        .header(header::ACCEPT, "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let correlation = response.headers()["x-correlation-id"].clone();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert_eq!(
        body["error"]["correlation_id"],
        correlation.to_str().unwrap()
    );
}

async fn every_response_carries_the_security_headers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for path in ["/", "/api/live", "/no-such-page", "/metrics"] {
        let response = app.get(path).await;
        let headers = response.headers();
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        for directive in [
            "default-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'self'",
            "base-uri 'none'",
        ] {
            assert!(
                csp.contains(directive),
                "{path}: {directive} missing in {csp}"
            );
        }
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
        assert_eq!(headers[header::REFERRER_POLICY], "same-origin", "{path}");
        assert_eq!(
            headers["cross-origin-opener-policy"], "same-origin",
            "{path}"
        );
        assert!(headers.contains_key("permissions-policy"), "{path}");
        assert!(
            !headers.contains_key(header::STRICT_TRANSPORT_SECURITY),
            "no HSTS over plain HTTP"
        );
    }
}

async fn hsts_is_sent_when_the_public_url_is_https(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("PUBLIC_URL", "https://hub.example.com")]).await;
    let response = app.get("/login").await;
    let hsts = response.headers()[header::STRICT_TRANSPORT_SECURITY]
        .to_str()
        .unwrap();
    assert!(hsts.starts_with("max-age="));
}

async fn valid_correlation_ids_are_echoed_and_invalid_ones_replaced(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let send = |id: &'static str| {
        app.client
            .get(app.url("/api/live"))
            .header("x-correlation-id", id)
            .send()
    };
    let kept = send("client-trace.0001_ok").await.unwrap();
    assert_eq!(kept.headers()["x-correlation-id"], "client-trace.0001_ok");

    for bad in ["short", "has spaces in it!", "<script>alert(1)</script>"] {
        let replaced = send(bad).await.unwrap();
        assert_eq!(replaced.status(), StatusCode::OK);
        let id = replaced.headers()["x-correlation-id"].to_str().unwrap();
        assert_ne!(id, bad);
        assert!(id.len() >= 8);
    }
    let too_long: &'static str = Box::leak("a".repeat(129).into_boxed_str());
    let replaced = send(too_long).await.unwrap();
    assert_ne!(replaced.headers()["x-correlation-id"], too_long);

    let generated = app.get("/api/live").await;
    assert!(generated.headers().contains_key("x-correlation-id"));
}

async fn malformed_headers_never_cause_a_500(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app
        .client
        .get(app.url("/login"))
        .header(
            header::COOKIE,
            HeaderValue::from_bytes(b"session=\xff\xfe; ;;==").unwrap(),
        )
        .header(
            header::ACCEPT,
            HeaderValue::from_bytes(b"\xff\xfe garbage").unwrap(),
        )
        .header(
            "x-correlation-id",
            HeaderValue::from_bytes(b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8").unwrap(),
        )
        .header(
            header::IF_NONE_MATCH,
            HeaderValue::from_bytes(b"\xff").unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let id = response.headers()["x-correlation-id"].to_str().unwrap();
    assert!(id.is_ascii());
}

async fn static_assets_are_served_under_hashed_immutable_urls(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let html = app.get("/login").await.text().await.unwrap();
    let start = html.find("/static/css/app.").expect("stylesheet link");
    let end = start + html[start..].find('"').unwrap();
    let css_url = &html[start..end];
    assert_ne!(
        css_url, "/static/css/app.css",
        "the URL carries a content hash"
    );

    let response = app.get(css_url).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    let etag = response.headers()[header::ETAG].clone();
    assert!(response.text().await.unwrap().contains("--accent"));

    let revalidated = app
        .client
        .get(app.url(css_url))
        .header(header::IF_NONE_MATCH, etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);

    let plain = app.get("/static/js/theme.js").await;
    assert_eq!(plain.status(), StatusCode::OK);
    assert_eq!(plain.headers()[header::CACHE_CONTROL], "public, no-cache");

    assert_eq!(
        app.get("/static/css/app.0000000000.css").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/static/../Cargo.toml").await.status(),
        StatusCode::NOT_FOUND
    );
}

async fn responses_are_compressed_for_clients_that_accept_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app
        .client
        .get(app.url("/static/css/app.css"))
        .header(header::ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
}

async fn graceful_shutdown_finishes_in_flight_requests(backend: Backend) {
    use crate::support::fake_http::{FakeServer, Hits};
    use axum::routing::get;

    // An LLM endpoint that never answers makes /api/health take its full 2 s check timeout.
    let probes = Hits::default();
    let seen = probes.clone();
    let hanging = FakeServer::start(axum::Router::new().route(
        "/v1/models",
        get(move || {
            seen.record();
            async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                ""
            }
        }),
    ))
    .await;
    let base = hanging.url("/v1");
    let app = TestApp::spawn_with(
        backend,
        &[("LLM_BASE_URL", base.as_str()), ("LLM_MODEL", "test-model")],
    )
    .await;
    let url = app.url("/api/health");
    let client = app.client.clone();
    let in_flight = tokio::spawn(async move { client.get(url).send().await });

    // The request is in flight once the app's probe has reached the fake.
    assert!(wait_until(Duration::from_secs(5), || async { probes.count() > 0 }).await);
    app.stop().await.expect("server stops cleanly");

    let response = in_flight
        .await
        .unwrap()
        .expect("in-flight request completed");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["checks"]["llm"]["status"], "unhealthy");
}

on_both_backends!(
    the_start_page_sends_visitors_to_sign_in_within_the_layout,
    pages_contain_no_inline_scripts_or_styles,
    unknown_routes_answer_404_as_html_or_json_with_the_reference,
    a_wrong_method_answers_405_with_allow,
    an_oversized_body_answers_413_not_500,
    every_response_carries_the_security_headers,
    hsts_is_sent_when_the_public_url_is_https,
    valid_correlation_ids_are_echoed_and_invalid_ones_replaced,
    malformed_headers_never_cause_a_500,
    static_assets_are_served_under_hashed_immutable_urls,
    responses_are_compressed_for_clients_that_accept_it,
    graceful_shutdown_finishes_in_flight_requests,
);
