//! The companion pages: the no-JavaScript wizard form, editing with an exact round trip, delete, reset.

use reqwest::multipart::Form;
use reqwest::{Method, StatusCode, header};
use serde_json::json;

use companion_hub::db_dispatch;

use super::full_profile;
use crate::on_both_backends;
use crate::support::html_form;
use crate::support::{Backend, TestApp};

/// The form's fields (but its token, which `post_multipart` sends first) as multipart parts.
fn multipart_of(fields: &[(String, String)]) -> impl FnOnce(Form) -> Form + '_ {
    move |form| {
        fields
            .iter()
            .filter(|(name, _)| name != "csrf_token")
            .fold(form, |form, (name, value)| {
                form.text(name.clone(), value.clone())
            })
    }
}

async fn the_list_invites_a_first_companion(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("alice").await;
    let html = alice.page("/companions").await;
    assert!(html.contains("No companions yet"));
    assert!(html.contains(r#"href="/companions/new""#));
}

async fn the_wizard_works_as_one_long_form_without_javascript(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("alice").await;
    let html = alice.page("/companions/new").await;
    for step in ["Style", "Look", "Body", "Identity", "Finish"] {
        assert!(html.contains(&format!("<legend>{step}</legend>")), "{step}");
    }
    let mut fields = html_form::fields(&html, "companion-form");
    for (name, value) in fields.iter_mut() {
        match name.as_str() {
            "name" => *value = "Nova".into(),
            "age" => *value = "29".into(),
            "occupation" => *value = "custom".into(),
            "occupation_custom" => *value = "Stargazer".into(),
            "interests" => *value = "astronomy, tea".into(),
            _ => {}
        }
    }
    let response = alice
        .post_multipart("/companions/new", "/companions/new", multipart_of(&fields))
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()[header::LOCATION],
        "/companions?created=1"
    );
    let list = alice.page("/companions?created=1").await;
    assert!(list.contains("Nova") && list.contains("Your companion is ready."));
    let (_, api) = alice.api(Method::GET, "/api/v1/companions", None).await;
    let profile = &api["companions"][0]["profile"];
    assert_eq!(profile["occupation"], "Stargazer");
    assert_eq!(profile["interests"], json!(["astronomy", "tea"]));
    assert_eq!(profile["age"], 29);
}

async fn form_errors_are_shown_beside_their_fields_and_values_kept(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("alice").await;
    let html = alice.page("/companions/new").await;
    let mut fields = html_form::fields(&html, "companion-form");
    for (name, value) in fields.iter_mut() {
        match name.as_str() {
            "name" => *value = "<b>Nova</b>".into(),
            "age" => *value = "16".into(),
            "eye_colour" => *value = "plaid".into(),
            "outfit_top" => *value = "jeans".into(),
            "extra_instruction" => *value = "z".repeat(2001),
            _ => {}
        }
    }
    let response = alice
        .post_multipart("/companions/new", "/companions/new", multipart_of(&fields))
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = response.text().await.unwrap();
    assert!(html.contains("Companions are adults"));
    assert!(html.contains(r#"id="eye_colour-errors"><li>Choose one of"#));
    assert!(html.contains(r#"id="outfit-top-errors"><li>Choose one of"#));
    assert!(html.contains("Use at most 2000 characters."));
    assert!(
        html.contains("value=\"&#60;b&#62;Nova&#60;/b&#62;\""),
        "values kept, escaped"
    );
    assert!(!html.contains("<b>Nova</b>"));
    let (_, api) = alice.api(Method::GET, "/api/v1/companions", None).await;
    assert_eq!(api["total"], 0, "nothing was created");
}

async fn the_edit_page_round_trips_every_field_exactly(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("alice").await;
    let created = alice.create_companion(full_profile()).await;
    let id = created["id"].as_str().unwrap();

    let html = alice.page(&format!("/companions/{id}/edit")).await;
    assert!(
        html.contains("Kael &#60;the&#62;"),
        "HTML in names is shown as text"
    );
    assert!(!html.contains("<script>alert(1)</script>"));
    let fields = html_form::fields(&html, "companion-form");
    let response = alice
        .post_multipart(
            &format!("/companions/{id}/edit"),
            "/settings",
            multipart_of(&fields),
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let (_, after) = alice
        .api(Method::GET, &format!("/api/v1/companions/{id}"), None)
        .await;
    assert_eq!(
        after["profile"],
        full_profile(),
        "saving the page unchanged changes nothing"
    );

    // Change one field through the page; only that field changes.
    let changed: Vec<(String, String)> = fields
        .into_iter()
        .map(|(name, value)| {
            if name == "age" {
                (name, "44".into())
            } else {
                (name, value)
            }
        })
        .collect();
    let response = alice
        .post_multipart(
            &format!("/companions/{id}/edit"),
            "/settings",
            multipart_of(&changed),
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()[header::LOCATION],
        format!("/companions/{id}/edit?saved=1")
    );
    let (_, after) = alice
        .api(Method::GET, &format!("/api/v1/companions/{id}"), None)
        .await;
    let mut expected = full_profile();
    expected["age"] = json!(44);
    assert_eq!(after["profile"], expected);
    assert!(
        alice
            .page(&format!("/companions/{id}/edit?saved=1"))
            .await
            .contains("Saved.")
    );
}

async fn deleting_asks_first_then_removes_everything(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("alice").await;
    let created = alice
        .create_companion(json!({"name": "Mira", "age": 24}))
        .await;
    let id = created["id"].as_str().unwrap();
    let confirm = alice.page(&format!("/companions/{id}/delete")).await;
    assert!(confirm.contains("Delete Mira?") && confirm.contains("cannot be undone"));
    let response = alice
        .submit(
            &format!("/companions/{id}/delete"),
            &format!("/companions/{id}/delete"),
            &[],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()[header::LOCATION],
        "/companions?deleted=1"
    );
    assert_eq!(
        alice.get(&format!("/companions/{id}/edit")).await.status(),
        StatusCode::NOT_FOUND
    );
    let count: i64 =
        db_dispatch!(&app.db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM companions")
        .fetch_one(pool)
        .await)
        .unwrap();
    assert_eq!(count, 0);
}

async fn wiping_memory_restores_the_default_state(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("alice").await;
    let created = alice
        .create_companion(json!({"name": "Mira", "age": 24}))
        .await;
    let id = created["id"].as_str().unwrap();
    // What a conversation would have done to the live state.
    let moved = json!({"outfit": [{"category": "full_body", "description": "red dress"}],
                       "location": "the beach", "action": "waving"});
    db_dispatch!(&app.db, pool => sqlx::query("UPDATE companions SET live_state = $1")
        .bind(sqlx::types::Json(&moved))
        .execute(pool)
        .await
        .map(|_| ()))
    .unwrap();
    assert!(
        alice
            .page(&format!("/companions/{id}/edit"))
            .await
            .contains("the beach")
    );

    let confirm = alice.page(&format!("/companions/{id}/reset")).await;
    assert!(confirm.contains("Wipe Mira&#39;s memory?") || confirm.contains("Wipe Mira's memory?"));
    let response = alice
        .submit(
            &format!("/companions/{id}/reset"),
            &format!("/companions/{id}/reset"),
            &[],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let page = alice.page(&format!("/companions/{id}/edit?reset=1")).await;
    assert!(page.contains("Memory wiped"));
    assert!(page.contains(r#"id="state-location">living room"#));
    assert!(page.contains(r#"id="state-wearing">white t-shirt, blue jeans, white sneakers"#));
    assert!(page.contains(r#"id="state-action">looking at viewer"#));
}

async fn unknown_and_malformed_ids_are_not_found(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("alice").await;
    for path in [
        "/companions/00000000-0000-7000-8000-000000000000/edit",
        "/companions/not-a-uuid/edit",
        "/companions/%00/delete",
    ] {
        assert_eq!(
            alice.get(path).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let (status, _) = alice
        .api(Method::GET, "/api/v1/companions/12345", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

on_both_backends!(
    the_list_invites_a_first_companion,
    the_wizard_works_as_one_long_form_without_javascript,
    form_errors_are_shown_beside_their_fields_and_values_kept,
    the_edit_page_round_trips_every_field_exactly,
    deleting_asks_first_then_removes_everything,
    wiping_memory_restores_the_default_state,
    unknown_and_malformed_ids_are_not_found,
);
