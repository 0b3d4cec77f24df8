//! Pictures in the chat: the image step end to end, failures that keep the reply, the retry, limits.

use image::ImageFormat;
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{newest_message, send_with_picture, setup};
use crate::support::Backend;
use crate::support::fake_images::{FakeImages, Painted, gate};
use crate::support::fake_llm::Analysed;
use crate::support::images::{encoded, png_claiming};
use crate::support::sse::{last, read, read_all};
use crate::{on_both_backends, on_every_store};

async fn a_reply_with_a_picture_streams_the_image_and_stores_it(backend: Backend) {
    let images = FakeImages::start().await;
    let (app, llm, alice, companion) = setup(
        backend,
        images.sdapi_env(),
        &[("IMAGE_ANIME_CHECKPOINT", "anime.safetensors")],
    )
    .await;
    llm.analyse(Analysed::Content(
        json!({
            "outfit": [
                {"category": "top", "item": "white blouse"},
                {"category": "underwear_top", "item": "black bra"},
                {"category": "bottom", "item": "pleated skirt"}
            ],
            "location": "rooftop garden",
            "action": "watering plants",
            "expression": "smiling",
            "lighting": "golden hour",
            "visual_tags": ["wind"],
            "is_user_present": false
        })
        .to_string(),
    ));
    images.paint(Painted::Png(640, 960));
    let (status, started) = send_with_picture(&alice, &companion, "Show me where you are").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;

    let progress: Vec<i64> = events
        .iter()
        .filter(|e| e.event == "progress")
        .map(|e| e.data["progress"].as_i64().unwrap())
        .collect();
    assert!(
        progress.contains(&85) && progress.last() == Some(&100),
        "{progress:?}"
    );
    let image = last(&events, "image").expect("an image event");
    assert_eq!(
        (image.data["width"].as_i64(), image.data["height"].as_i64()),
        (Some(640), Some(960))
    );
    let url = image.data["url"].as_str().unwrap().to_owned();
    let done = last(&events, "done").expect("done");
    assert_eq!(done.data["content"], "Hello, wörld!");
    assert_eq!(done.data["image"]["url"], url.as_str());

    // The backend got the scene, the style's settings, the checkpoint and the correlation id.
    let requests = images.requests();
    assert_eq!(requests.len(), 1);
    let (headers, body) = &requests[0];
    let prompt = body["prompt"].as_str().unwrap();
    for expected in [
        "best quality",
        "1girl, solo",
        "white blouse",
        "pleated skirt",
        "rooftop garden",
        "watering plants",
        "golden hour",
    ] {
        assert!(prompt.contains(expected), "{expected} in {prompt}");
    }
    assert!(
        !prompt.contains("black bra"),
        "the blouse hides the bra: {prompt}"
    );
    assert_eq!(body["steps"], 28);
    assert_eq!(body["cfg_scale"], 6.0);
    assert_eq!(
        (body["width"].as_i64(), body["height"].as_i64()),
        (Some(832), Some(1216))
    );
    assert_eq!(body["sampler_name"], "DPM++ 2M");
    assert_eq!(body["scheduler"], "karras");
    assert_eq!(
        body["override_settings"]["sd_model_checkpoint"],
        "anime.safetensors"
    );
    assert!(
        body["negative_prompt"]
            .as_str()
            .unwrap()
            .contains("multiple people")
    );
    assert!(headers.get("x-correlation-id").is_some());

    // The picture is re-encoded, stored, attached to the reply and served privately.
    let served = alice.get(&url).await;
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.headers()["content-type"], "image/jpeg");
    let bytes = served.bytes().await.unwrap();
    assert_eq!(image::guess_format(&bytes).unwrap(), ImageFormat::Jpeg);
    let message = newest_message(&alice, &companion).await;
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["image"]["url"], url.as_str());
    assert!(message["image_error"].is_null());
    let chat = alice.page(&format!("/companions/{companion}/chat")).await;
    assert!(
        chat.contains(&format!(r#"<img src="{url}""#)),
        "the chat page shows it"
    );
    assert_eq!(
        app.stored_files().await.len(),
        2,
        "the picture and its thumbnail"
    );
}

async fn a_failed_picture_keeps_the_reply_and_its_retry_attaches_one(backend: Backend) {
    let images = FakeImages::start().await;
    let (app, _llm, alice, companion) = setup(backend, images.sdapi_env(), &[]).await;
    images.paint(Painted::Status(400));
    let (_, started) = send_with_picture(&alice, &companion, "A picture, please").await;
    let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    assert!(last(&events, "image").is_none());
    let done = last(&events, "done").expect("the reply is still stored");
    assert_eq!(done.data["content"], "Hello, wörld!");
    let error = done.data["image_error"]
        .as_str()
        .expect("the reason")
        .to_owned();
    assert!(error.contains("refused"), "{error}");

    let message = newest_message(&alice, &companion).await;
    assert_eq!(message["content"], "Hello, wörld!");
    assert!(message["image"].is_null());
    assert_eq!(message["image_error"], error.as_str());
    let chat = alice.page(&format!("/companions/{companion}/chat")).await;
    assert!(chat.contains("Image failed:") && chat.contains("data-retry-image"));

    let id = message["id"].as_str().unwrap();
    let (status, retry) = alice
        .api(
            Method::POST,
            &format!("/api/v1/messages/{id}/image/retry"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{retry}");
    let events = read_all(&alice, retry["stream_url"].as_str().unwrap()).await;
    let image = last(&events, "image").expect("the retry's picture");
    let done = last(&events, "done").expect("done");
    assert_eq!(done.data["message_id"], id);
    assert_eq!(done.data["image"]["url"], image.data["url"]);
    let message = newest_message(&alice, &companion).await;
    assert_eq!(message["id"], id, "no new message");
    assert_eq!(message["image"]["url"], image.data["url"]);
    assert!(message["image_error"].is_null());
    assert_eq!(
        app.stored_files().await.len(),
        2,
        "the picture and its thumbnail"
    );

    let (status, body) = alice
        .api(
            Method::POST,
            &format!("/api/v1/messages/{id}/image/retry"),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "it has its picture now: {body}"
    );
}

async fn transient_backend_errors_are_retried(backend: Backend) {
    let images = FakeImages::start().await;
    let (_app, _llm, alice, companion) = setup(backend, images.sdapi_env(), &[]).await;
    images.paint(Painted::Status(503));
    images.paint(Painted::Status(502));
    let (_, started) = send_with_picture(&alice, &companion, "Again?").await;
    let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    assert!(last(&events, "image").is_some(), "{events:?}");
    assert_eq!(images.requests().len(), 3);
}

async fn what_a_backend_sends_must_be_a_sane_image(backend: Backend) {
    let images = FakeImages::start().await;
    let (app, _llm, alice, companion) = setup(backend, images.sdapi_env(), &[]).await;
    let mut truncated = encoded(ImageFormat::Png, 300, 300);
    truncated.truncate(truncated.len() / 2);
    let cases = [
        (
            Painted::Bytes(b"<html>not an image</html>".to_vec()),
            "not an image we accept",
        ),
        (Painted::Bytes(truncated), "damaged or incomplete"),
        (Painted::Bytes(png_claiming(30_000, 30_000)), "30000×30000"),
        (Painted::Huge(50 * 1024 * 1024), "too large"),
    ];
    for (answer, expected) in cases {
        images.paint(answer);
        let (status, started) = send_with_picture(&alice, &companion, "Show me").await;
        assert_eq!(status, StatusCode::ACCEPTED, "{started}");
        let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;
        let done = last(&events, "done").expect("the reply survives");
        let error = done.data["image_error"].as_str().unwrap_or_default();
        assert!(error.contains(expected), "{expected:?} in {error:?}");
        assert!(done.data["image"].is_null());
    }
    assert!(
        app.stored_files().await.is_empty(),
        "nothing half-written is kept"
    );
    let (_, gallery) = alice
        .api(
            Method::GET,
            &format!("/api/v1/companions/{companion}/messages"),
            None,
        )
        .await;
    assert!(
        gallery["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["image"].is_null())
    );
}

async fn the_openai_images_api_is_spoken_too(backend: Backend) {
    let images = FakeImages::start().await;
    let (app, _llm, alice, companion) = setup(backend, images.openai_env(), &[]).await;
    let (_, health) = app.get_json("/api/health").await;
    assert_eq!(
        health["checks"]["image_backend"]["status"], "healthy",
        "{health}"
    );
    assert_eq!(health["checks"]["image_backend"]["kind"], "openai");
    let (_, started) = send_with_picture(&alice, &companion, "Show me").await;
    let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    let image = last(&events, "image").expect("a picture");
    assert_eq!(
        alice
            .get(image.data["url"].as_str().unwrap())
            .await
            .status(),
        StatusCode::OK
    );
    let (headers, body) = &images.requests()[0];
    assert_eq!(headers["authorization"], "Bearer sk-image-key");
    assert_eq!(body["model"], "fake-image");
    assert_eq!(body["size"], "832x1216");
    assert_eq!(body["response_format"], "b64_json");
}

async fn pictures_count_against_the_image_limit(backend: Backend) {
    let images = FakeImages::start().await;
    let (_app, _llm, alice, companion) =
        setup(backend, images.sdapi_env(), &[("RATE_LIMIT_IMAGE", "1/1h")]).await;
    let (_, started) = send_with_picture(&alice, &companion, "One").await;
    read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    let (status, body) = send_with_picture(&alice, &companion, "Two").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
}

async fn without_a_backend_the_toggle_explains_and_the_api_refuses(backend: Backend) {
    let (_app, _llm, alice, companion) = setup(backend, Vec::new(), &[]).await;
    let chat = alice.page(&format!("/companions/{companion}/chat")).await;
    assert!(chat.contains("Pictures need an image backend"));
    assert!(chat.contains(r#"id="generate-image" disabled"#));
    let (status, body) = send_with_picture(&alice, &companion, "Show me").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "image_backend_not_configured");
}

async fn another_users_message_cannot_get_a_picture(backend: Backend) {
    let images = FakeImages::start().await;
    let (app, _llm, alice, companion) = setup(backend, images.sdapi_env(), &[]).await;
    let (_, started) = crate::chat::send(&alice, &companion, "Hi").await;
    read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    let message = newest_message(&alice, &companion).await;
    let bob = app.signed_in("bob").await;
    let path = format!(
        "/api/v1/messages/{}/image/retry",
        message["id"].as_str().unwrap()
    );
    let (status, _) = bob.api(Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = alice.api(Method::POST, &path, None).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "only a failed picture is tried again: {body}"
    );
    let (status, _) = alice
        .api(Method::POST, "/api/v1/messages/nope/image/retry", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(images.requests().is_empty());
}

async fn stop_while_picturing_keeps_the_reply_and_retry_paints_it(backend: Backend) {
    let images = FakeImages::start().await;
    let (_app, _llm, alice, companion) = setup(backend, images.sdapi_env(), &[]).await;
    let hold = gate();
    images.paint(Painted::Gated(hold.clone()));
    let (_, started) = send_with_picture(&alice, &companion, "Paint slowly").await;
    let stream = started["stream_url"].as_str().unwrap().to_owned();
    let run = started["run_id"].as_str().unwrap();
    read(&alice, &stream, None, |events| {
        events
            .iter()
            .any(|e| e.event == "progress" && e.data["status"] == "imaging")
    })
    .await;
    let (status, _) = alice
        .api(Method::POST, &format!("/api/chat/runs/{run}/cancel"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let events = read_all(&alice, &stream).await;
    let done = last(&events, "done").expect("the reply is kept");
    assert_eq!(done.data["content"], "Hello, wörld!");
    assert!(done.data["image"].is_null());
    assert!(done.data["image_error"].is_string(), "{done:?}");
    hold.add_permits(1);

    let message = newest_message(&alice, &companion).await;
    let id = message["id"].as_str().unwrap();
    let (status, retry) = alice
        .api(
            Method::POST,
            &format!("/api/v1/messages/{id}/image/retry"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{retry}");
    let events = read_all(&alice, retry["stream_url"].as_str().unwrap()).await;
    assert!(last(&events, "image").is_some(), "{events:?}");
    assert_eq!(
        last(&events, "done").unwrap().data["content"],
        "Hello, wörld!"
    );
}

async fn a_regenerated_reply_gets_a_new_picture(backend: Backend) {
    let images = FakeImages::start().await;
    let (app, _llm, alice, companion) = setup(backend, images.sdapi_env(), &[]).await;
    let (_, started) = send_with_picture(&alice, &companion, "Show me").await;
    read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    let first = newest_message(&alice, &companion).await;
    images.paint(Painted::Png(96, 96));
    let (status, again) = alice
        .api(
            Method::POST,
            &format!("/api/v1/companions/{companion}/regenerate"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    let events = read_all(&alice, again["stream_url"].as_str().unwrap()).await;
    assert!(last(&events, "image").is_some(), "{events:?}");
    let second = newest_message(&alice, &companion).await;
    assert_ne!(second["id"], first["id"]);
    assert_eq!(second["image"]["width"], 96);
    assert_eq!(
        alice
            .get(first["image"]["url"].as_str().unwrap())
            .await
            .status(),
        StatusCode::NOT_FOUND,
        "the replaced reply's picture went with it"
    );
    // The replaced files are deleted right after the `done` (the reader does not wait for them).
    let only_new = crate::support::wait_until(std::time::Duration::from_secs(10), || async {
        app.stored_files().await.len() == 2
    })
    .await;
    assert!(
        only_new,
        "only the new picture and thumbnail: {:?}",
        app.stored_files().await
    );
}

on_both_backends!(
    stop_while_picturing_keeps_the_reply_and_retry_paints_it,
    transient_backend_errors_are_retried,
    what_a_backend_sends_must_be_a_sane_image,
    the_openai_images_api_is_spoken_too,
    pictures_count_against_the_image_limit,
    without_a_backend_the_toggle_explains_and_the_api_refuses,
    another_users_message_cannot_get_a_picture,
);

// Also with the media in an S3 bucket.
on_every_store!(
    a_reply_with_a_picture_streams_the_image_and_stores_it,
    a_regenerated_reply_gets_a_new_picture,
    a_failed_picture_keeps_the_reply_and_its_retry_attaches_one,
);
