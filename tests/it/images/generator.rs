//! The generator: bounds enforced by the server, the picture saved to the gallery, the form without script.

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::setup;
use crate::support::Backend;
use crate::support::fake_images::{FakeImages, Painted};
use crate::{on_both_backends, on_every_store};

async fn out_of_bounds_parameters_are_refused_with_a_message_per_field(backend: Backend) {
    let images = FakeImages::start().await;
    let (_app, _llm, alice, _companion) = setup(backend, images.sdapi_env(), &[]).await;
    let (status, body) = alice
        .api(
            Method::POST,
            "/api/v1/images",
            Some(json!({
                "prompt": "x".repeat(2001), "width": 100, "height": 1000, "steps": 0, "cfg": 31,
                "seed": 4_294_967_296_i64, "sampler": "Nonsense", "style": "oil",
            })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let mut fields: Vec<&str> = body["error"]["fields"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "cfg", "height", "prompt", "sampler", "seed", "steps", "style", "width"
        ]
    );
    assert!(body["error"]["correlation_id"].is_string());
    let (status, _) = alice
        .api(Method::POST, "/api/v1/images", Some(json!({"prompt": ""})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(images.requests().is_empty(), "nothing reached the backend");
}

async fn a_generated_picture_is_saved_to_the_gallery(backend: Backend) {
    let images = FakeImages::start().await;
    let (app, _llm, alice, companion) = setup(backend, images.sdapi_env(), &[]).await;
    images.paint(Painted::Png(512, 768));
    let (status, made) = alice
        .api(
            Method::POST,
            "/api/v1/images",
            Some(json!({
                "prompt": "a lighthouse at dusk", "negative_prompt": "fog", "style": "realistic",
                "width": 512, "height": 768, "steps": 12, "cfg": 4.5, "seed": 42, "sampler": "Euler a",
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(
        (made["width"].as_i64(), made["height"].as_i64()),
        (Some(512), Some(768))
    );
    assert_eq!(made["gallery_url"], "/gallery/unassigned");
    let (_, body) = &images.requests()[0];
    assert!(
        body["prompt"]
            .as_str()
            .unwrap()
            .starts_with("(photorealistic:1.3)")
    );
    assert!(
        body["prompt"]
            .as_str()
            .unwrap()
            .ends_with("a lighthouse at dusk")
    );
    assert!(body["negative_prompt"].as_str().unwrap().ends_with(", fog"));
    assert_eq!(body["steps"], 12);
    assert_eq!(body["cfg_scale"], 4.5);
    assert_eq!(body["seed"], 42);
    assert_eq!(body["sampler_name"], "Euler a");
    let url = made["url"].as_str().unwrap();
    assert_eq!(alice.get(url).await.status(), StatusCode::OK);
    let album = alice.page("/gallery/unassigned").await;
    assert!(
        album.contains(&format!(r#"src="{url}?size=thumb""#)),
        "in the gallery"
    );
    assert!(album.contains("a lighthouse at dusk"));
    let albums = alice.page("/gallery").await;
    assert!(albums.contains("Generator") && albums.contains("1 picture"));

    // Kept with a companion, it is in that companion's album.
    let (status, made) = alice
        .api(
            Method::POST,
            "/api/v1/images",
            Some(json!({"prompt": "Mira at the beach", "companion_id": companion})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["gallery_url"], format!("/gallery/{companion}"));
    let album = alice.page(&format!("/gallery/{companion}")).await;
    assert!(album.contains(made["url"].as_str().unwrap()));

    // Someone else's companion is not a choice.
    let bob = app.signed_in("bob").await;
    let (status, body) = bob
        .api(
            Method::POST,
            "/api/v1/images",
            Some(json!({"prompt": "mine now", "companion_id": companion})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"]["fields"]["companion_id"].is_array());
}

async fn the_form_works_without_script(backend: Backend) {
    let images = FakeImages::start().await;
    let (_app, _llm, alice, _companion) = setup(backend, images.sdapi_env(), &[]).await;
    let page = alice.page("/generate").await;
    assert!(
        page.contains(r#"<option value="UniPC""#),
        "the backend's samplers"
    );
    assert!(page.contains(r#"value="832""#) && page.contains(r#"value="1216""#));
    let response = alice
        .submit(
            "/generate",
            "/generate",
            &[
                ("prompt", "a red kite"),
                ("style", "anime"),
                ("width", "640"),
                ("height", "640"),
                ("steps", "20"),
                ("cfg", "7"),
                ("seed", "-1"),
                ("sampler", "UniPC"),
                ("companion_id", ""),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    assert!(page.contains(r#"id="result-image" src="/media/"#), "{page}");
    let response = alice
        .submit(
            "/generate",
            "/generate",
            &[("prompt", "a red kite"), ("width", "650")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = response.text().await.unwrap();
    assert!(page.contains("Use a multiple of 64"));
    assert!(page.contains("a red kite"), "the prompt is kept");
}

async fn a_failing_backend_is_explained_and_without_one_the_page_says_how_to_connect(
    backend: Backend,
) {
    let images = FakeImages::start().await;
    let (_app, _llm, alice, _companion) = setup(backend, images.sdapi_env(), &[]).await;
    images.paint(Painted::Bytes(b"GIF89a-but-not-really".to_vec()));
    let (status, body) = alice
        .api(Method::POST, "/api/v1/images", Some(json!({"prompt": "x"})))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "image_invalid");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unusable image")
    );

    let (_app, _llm, alice, _companion) = setup(backend, Vec::new(), &[]).await;
    let page = alice.page("/generate").await;
    assert!(page.contains("No image backend is connected"));
    assert!(!page.contains(r#"id="generator""#));
    let (status, body) = alice
        .api(Method::POST, "/api/v1/images", Some(json!({"prompt": "x"})))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "image_backend_not_configured");
}

async fn an_openai_backend_gets_only_prompt_and_size(backend: Backend) {
    let images = FakeImages::start().await;
    let (_app, _llm, alice, _companion) = setup(backend, images.openai_env(), &[]).await;
    let page = alice.page("/generate").await;
    assert!(!page.contains(r#"id="steps""#), "no sampling controls");
    let (status, made) = alice
        .api(
            Method::POST,
            "/api/v1/images",
            Some(json!({"prompt": "a cat", "width": 1024, "height": 1024})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let (_, body) = &images.requests()[0];
    assert_eq!(body["size"], "1024x1024");
    assert!(body.get("steps").is_none());
}

on_both_backends!(
    out_of_bounds_parameters_are_refused_with_a_message_per_field,
    the_form_works_without_script,
    a_failing_backend_is_explained_and_without_one_the_page_says_how_to_connect,
    an_openai_backend_gets_only_prompt_and_size,
);

// Also with the media in an S3 bucket.
on_every_store!(a_generated_picture_is_saved_to_the_gallery,);
