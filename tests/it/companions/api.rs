//! The companions JSON API: create, read, patch, delete, list, validation, limits.

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::full_profile;
use crate::on_both_backends;
use crate::support::{Backend, TestApp};

async fn name_and_age_are_enough_to_create(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("alice").await;
    let created = alice
        .create_companion(json!({"name": "Mira", "age": 24}))
        .await;
    assert!(created["id"].is_string());
    assert_eq!(created["name"], "Mira");
    assert_eq!(created["profile"]["art_style"], "anime");
    assert_eq!(created["live_state"]["location"], "living room");
    assert_eq!(created["live_state"]["action"], "looking at viewer");
    assert_eq!(
        created["live_state"]["outfit"],
        json!([
            {"category": "top", "description": "white t-shirt"},
            {"category": "bottom", "description": "blue jeans"},
            {"category": "footwear", "description": "white sneakers"}
        ])
    );
    assert!(
        created["system_prompt"]
            .as_str()
            .unwrap()
            .starts_with("You are Mira, a 24-year-old")
    );
    assert_eq!(created["visual_tags"][0], "1girl");
    assert!(created["portrait_url"].is_null());

    let id = created["id"].as_str().unwrap();
    let (status, fetched) = alice
        .api(Method::GET, &format!("/api/v1/companions/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched["profile"], created["profile"]);
}

async fn every_field_round_trips_exactly(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("alice").await;
    let created = alice.create_companion(full_profile()).await;
    let id = created["id"].as_str().unwrap();
    let (_, fetched) = alice
        .api(Method::GET, &format!("/api/v1/companions/{id}"), None)
        .await;
    assert_eq!(fetched["profile"], full_profile(), "stored exactly as sent");
}

async fn a_patch_changes_only_what_it_names(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("alice").await;
    let created = alice.create_companion(full_profile()).await;
    let id = created["id"].as_str().unwrap();
    let (status, patched) = alice
        .api(
            Method::PATCH,
            &format!("/api/v1/companions/{id}"),
            Some(json!({"age": 42, "depth": {"humour": "goofy"}, "outfit": {"top": null}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    let mut expected = full_profile();
    expected["age"] = json!(42);
    expected["depth"]["humour"] = json!("goofy");
    expected["outfit"]["top"] = json!(null);
    assert_eq!(patched["profile"], expected);
}

async fn invalid_fields_are_reported_one_by_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("alice").await;
    let (status, body) = alice
        .api(
            Method::POST,
            "/api/v1/companions",
            Some(json!({
                "name": "x".repeat(101), "age": 17, "eye_colour": "plaid",
                "interests": (0..21).map(|i| format!("tag{i}")).collect::<Vec<_>>(),
                "extra_instruction": "y".repeat(2001),
                "outfit": {"top": {"item": "jeans"}}
            })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["code"], "validation_failed");
    let fields = &body["error"]["fields"];
    for field in [
        "name",
        "age",
        "eye_colour",
        "interests",
        "extra_instruction",
        "outfit.top",
    ] {
        assert!(fields[field].is_array(), "{field} missing in {fields}");
    }
    assert!(body["error"]["correlation_id"].is_string());

    let (status, body) = alice
        .api(
            Method::POST,
            "/api/v1/companions",
            Some(json!({"name": "Mira"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"]["fields"]["age"].is_array());

    let (status, body) = alice
        .api(
            Method::POST,
            "/api/v1/companions",
            Some(json!({"name": "Mira", "age": "old"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"]["fields"]["age"].is_array(), "{body}");

    let (status, _) = alice
        .api(
            Method::POST,
            "/api/v1/companions",
            Some(json!(["not", "an", "object"])),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let response = alice
        .client
        .post(alice.url("/api/v1/companions"))
        .header("x-csrf-token", alice.csrf_token("/settings").await)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

async fn the_list_is_newest_first_and_paged_by_24(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("RATE_LIMIT_COMPANION_CREATE", "off")]).await;
    let alice = app.signed_in("alice").await;
    for n in 1..=26 {
        alice
            .create_companion(json!({"name": format!("C{n}"), "age": 20 + n}))
            .await;
    }
    let (status, first) = alice.api(Method::GET, "/api/v1/companions", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["total"], 26);
    assert_eq!(first["companions"].as_array().unwrap().len(), 24);
    assert_eq!(first["companions"][0]["name"], "C26");
    let (_, second) = alice
        .api(Method::GET, "/api/v1/companions?page=2", None)
        .await;
    let names: Vec<&str> = second["companions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["C2", "C1"]);

    let html = alice.page("/companions").await;
    assert_eq!(html.matches("class=\"companion-card\"").count(), 24);
    assert!(html.contains("rel=\"next\""));
    let html = alice.page("/companions?page=2").await;
    assert_eq!(html.matches("class=\"companion-card\"").count(), 2);
}

async fn deleting_through_the_api_removes_the_companion(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("alice").await;
    let created = alice
        .create_companion(json!({"name": "Mira", "age": 24}))
        .await;
    let id = created["id"].as_str().unwrap();
    let (status, _) = alice
        .api(Method::DELETE, &format!("/api/v1/companions/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = alice
        .api(Method::GET, &format!("/api/v1/companions/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, _) = alice
        .api(Method::DELETE, &format!("/api/v1/companions/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn creation_and_changes_are_rate_limited(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("RATE_LIMIT_COMPANION_CREATE", "2/1h"),
            ("RATE_LIMIT_SETTINGS", "1/1h"),
        ],
    )
    .await;
    let alice = app.signed_in("alice").await;
    let first = alice
        .create_companion(json!({"name": "A", "age": 30}))
        .await;
    alice
        .create_companion(json!({"name": "B", "age": 30}))
        .await;
    let (status, body) = alice
        .api(
            Method::POST,
            "/api/v1/companions",
            Some(json!({"name": "C", "age": 30})),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"]["code"], "rate_limited");

    let id = first["id"].as_str().unwrap();
    let path = format!("/api/v1/companions/{id}");
    let (status, _) = alice
        .api(Method::PATCH, &path, Some(json!({"age": 31})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = alice
        .api(Method::PATCH, &path, Some(json!({"age": 32})))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

async fn anonymous_api_calls_get_401_and_forged_ones_403(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) = app.get_json("/api/v1/companions").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");

    let alice = app.signed_in("alice").await;
    let response = alice
        .client
        .post(alice.url("/api/v1/companions"))
        .json(&json!({"name": "Mira", "age": 24}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "no CSRF header");
}

on_both_backends!(
    name_and_age_are_enough_to_create,
    every_field_round_trips_exactly,
    a_patch_changes_only_what_it_names,
    invalid_fields_are_reported_one_by_one,
    the_list_is_newest_first_and_paged_by_24,
    deleting_through_the_api_removes_the_companion,
    creation_and_changes_are_rate_limited,
    anonymous_api_calls_get_401_and_forged_ones_403,
);
