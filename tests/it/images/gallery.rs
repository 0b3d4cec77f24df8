//! The gallery: albums, keyset pages, privacy, and deletion that never takes a file still in use.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{send_with_picture, setup};
use crate::support::Backend;
use crate::support::fake_images::{FakeImages, Painted};
use crate::support::sse::read_all;
use crate::support::visitor::Visitor;
use crate::{on_both_backends, on_every_store};

async fn generate(visitor: &Visitor, prompt: &str, companion: Option<&str>) -> Value {
    let (status, made) = visitor
        .api(
            Method::POST,
            "/api/v1/images",
            Some(json!({"prompt": prompt, "companion_id": companion.unwrap_or("")})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    made
}

fn tiles(page: &str) -> Vec<String> {
    page.match_indices(r#"<li class="tile" data-image-id=""#)
        .map(|(at, found)| page[at + found.len()..at + found.len() + 36].to_owned())
        .collect()
}

async fn albums_page_newest_first_by_24(backend: Backend) {
    let images = FakeImages::start().await;
    let (_app, _llm, alice, companion) = setup(backend, images.sdapi_env(), &[]).await;
    let mut made = Vec::new();
    for n in 0..26 {
        made.push(generate(&alice, &format!("picture number {n}"), Some(&companion)).await);
    }
    let albums = alice.page("/gallery").await;
    assert!(
        albums.contains("Mira") && albums.contains("26 pictures"),
        "{albums}"
    );

    let first = alice.page(&format!("/gallery/{companion}")).await;
    let first_ids = tiles(&first);
    assert_eq!(first_ids.len(), 24);
    assert_eq!(
        first_ids[0],
        made[25]["id"].as_str().unwrap(),
        "newest first"
    );
    assert!(first.contains(r#"loading="lazy""#));
    // Tiles load thumbnails; the lightbox the picture itself.
    let newest = made[25]["url"].as_str().unwrap();
    assert!(first.contains(&format!(r#"src="{newest}?size=thumb""#)));
    assert!(first.contains(&format!(r#"data-url="{newest}""#)));
    let thumb = alice.get(&format!("{newest}?size=thumb")).await;
    assert_eq!(thumb.status(), StatusCode::OK);
    let thumb_tag = thumb.headers()["etag"].to_str().unwrap().to_owned();
    assert!(thumb_tag.ends_with("-thumb\""), "{thumb_tag}");
    let full = alice.get(newest).await;
    assert_ne!(full.headers()["etag"].to_str().unwrap(), thumb_tag);
    let response = alice
        .client
        .get(alice.url(&format!("{newest}?size=thumb")))
        .header("if-none-match", thumb_tag.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert!(first.contains("26 pictures"));
    let cursor = &first_ids[23];
    assert!(first.contains(&format!("?before={cursor}")));
    let second = alice
        .page(&format!("/gallery/{companion}?before={cursor}"))
        .await;
    assert_eq!(
        tiles(&second),
        [
            made[1]["id"].as_str().unwrap(),
            made[0]["id"].as_str().unwrap()
        ]
    );
    assert!(!second.contains("Older pictures"));
    // Deleting the picture a cursor names (the lightbox does that in place) keeps the next page reachable.
    let (status, _) = alice
        .api(Method::DELETE, &format!("/api/v1/images/{cursor}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let second = alice
        .page(&format!("/gallery/{companion}?before={cursor}"))
        .await;
    assert_eq!(tiles(&second).len(), 2);
    let response = alice
        .get(&format!("/gallery/{companion}?before=garbage"))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

async fn another_user_sees_nothing_of_a_gallery(backend: Backend) {
    let images = FakeImages::start().await;
    let (app, _llm, alice, companion) = setup(backend, images.sdapi_env(), &[]).await;
    let picture = generate(&alice, "private", Some(&companion)).await;
    let id = picture["id"].as_str().unwrap();
    let bob = app.signed_in("bob").await;
    for path in [
        format!("/gallery/{companion}"),
        format!("/media/{id}"),
        "/gallery/not-an-album".to_owned(),
    ] {
        assert_eq!(
            bob.get(&path).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    assert!(!bob.page("/gallery/unassigned").await.contains(id));
    let (status, _) = bob
        .api(Method::DELETE, &format!("/api/v1/images/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let response = bob
        .submit(
            "/gallery",
            &format!("/gallery/images/{id}/delete"),
            &[("album", "unassigned")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        alice.get(&format!("/media/{id}")).await.status(),
        StatusCode::OK
    );
}

async fn deleting_a_picture_keeps_files_other_pictures_use(backend: Backend) {
    let images = FakeImages::start().await;
    let (app, _llm, alice, _companion) = setup(backend, images.sdapi_env(), &[]).await;
    // The fake paints the same default picture twice: one file, two gallery entries.
    let first = generate(&alice, "same", None).await;
    let second = generate(&alice, "same again", None).await;
    images.paint(Painted::Png(80, 120));
    let other = generate(&alice, "different", None).await;
    assert_eq!(
        app.stored_files().await.len(),
        4,
        "two pictures and their thumbnails"
    );

    let (status, _) = alice
        .api(
            Method::DELETE,
            &format!("/api/v1/images/{}", first["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        alice.get(first["url"].as_str().unwrap()).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        alice.get(second["url"].as_str().unwrap()).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.stored_files().await.len(), 4, "the shared file stays");

    let response = alice
        .submit(
            "/gallery/unassigned",
            &format!("/gallery/images/{}/delete", other["id"].as_str().unwrap()),
            &[("album", "unassigned")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/gallery/unassigned");
    assert_eq!(
        app.stored_files().await.len(),
        2,
        "its own files go with it"
    );
}

async fn pictures_go_with_their_conversation_companion_and_account(backend: Backend) {
    let images = FakeImages::start().await;
    let (app, _llm, alice, companion) = setup(backend, images.sdapi_env(), &[]).await;
    images.paint(Painted::Png(64, 64));
    let (_, started) = send_with_picture(&alice, &companion, "Picture one").await;
    read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    images.paint(Painted::Png(72, 72));
    let kept = generate(&alice, "kept with Mira", Some(&companion)).await;
    assert_eq!(app.stored_files().await.len(), 4);

    // Wiping the memory takes the chat's pictures; the generator's stay with the companion.
    let response = alice
        .submit(
            &format!("/companions/{companion}/reset"),
            &format!("/companions/{companion}/reset"),
            &[],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.stored_files().await.len(), 2);
    assert_eq!(
        tiles(&alice.page(&format!("/gallery/{companion}")).await).len(),
        1
    );

    // Deleting the companion takes the rest.
    let response = alice
        .submit(
            &format!("/companions/{companion}/delete"),
            &format!("/companions/{companion}/delete"),
            &[],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(app.stored_files().await.is_empty());
    assert_eq!(
        alice.get(kept["url"].as_str().unwrap()).await.status(),
        StatusCode::NOT_FOUND
    );

    // An account's deletion takes its unassigned pictures too.
    generate(&alice, "last one", None).await;
    assert_eq!(app.stored_files().await.len(), 2);
    let response = alice
        .submit(
            "/settings",
            "/settings/delete",
            &[("password", crate::support::visitor::PASSWORD)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(app.stored_files().await.is_empty());
}

async fn every_picture_mutation_needs_the_csrf_token(backend: Backend) {
    let images = FakeImages::start().await;
    let (_app, _llm, alice, companion) = setup(backend, images.sdapi_env(), &[]).await;
    let picture = generate(&alice, "guarded", None).await;
    let id = picture["id"].as_str().unwrap();
    let (_, started) = crate::chat::send(&alice, &companion, "Hi").await;
    read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    let (_, page) = alice
        .api(
            Method::GET,
            &format!("/api/v1/companions/{companion}/messages?limit=1"),
            None,
        )
        .await;
    let message = page["messages"][0]["id"].as_str().unwrap().to_owned();
    for (method, path) in [
        (Method::POST, "/api/v1/images".to_owned()),
        (Method::POST, "/generate".to_owned()),
        (Method::DELETE, format!("/api/v1/images/{id}")),
        (Method::POST, format!("/gallery/images/{id}/delete")),
        (
            Method::POST,
            format!("/api/v1/messages/{message}/image/retry"),
        ),
    ] {
        let response = alice
            .client
            .request(method.clone(), alice.url(&path))
            .header("content-type", "application/json")
            .body(r#"{"prompt":"sneaky"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }
    assert_eq!(
        images.requests().len(),
        1,
        "only the first, legitimate picture"
    );
    assert_eq!(
        alice.get(picture["url"].as_str().unwrap()).await.status(),
        StatusCode::OK
    );
}

async fn deleting_or_editing_away_a_reply_takes_its_picture(backend: Backend) {
    let images = FakeImages::start().await;
    let (app, _llm, alice, companion) = setup(backend, images.sdapi_env(), &[]).await;
    let (_, started) = send_with_picture(&alice, &companion, "First").await;
    read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    let (_, page) = alice
        .api(
            Method::GET,
            &format!("/api/v1/companions/{companion}/messages"),
            None,
        )
        .await;
    let reply = page["messages"][0]["id"].as_str().unwrap().to_owned();
    let asked = page["messages"][1]["id"].as_str().unwrap().to_owned();
    assert_eq!(app.stored_files().await.len(), 2);
    let (status, _) = alice
        .api(Method::DELETE, &format!("/api/v1/messages/{reply}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        app.stored_files().await.is_empty(),
        "the deleted reply's picture is gone"
    );

    images.paint(Painted::Png(70, 70));
    let (_, started) = send_with_picture(&alice, &companion, "Second").await;
    read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    assert_eq!(app.stored_files().await.len(), 2);
    let (status, edited) = alice
        .api(
            Method::PATCH,
            &format!("/api/v1/messages/{asked}"),
            Some(json!({"content": "First, edited"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{edited}");
    read_all(&alice, edited["stream_url"].as_str().unwrap()).await;
    assert!(
        app.stored_files().await.is_empty(),
        "later replies and their pictures are dropped"
    );
}

on_both_backends!(
    every_picture_mutation_needs_the_csrf_token,
    another_user_sees_nothing_of_a_gallery,
);

// Also with the media in an S3 bucket.
on_every_store!(
    albums_page_newest_first_by_24,
    deleting_a_picture_keeps_files_other_pictures_use,
    pictures_go_with_their_conversation_companion_and_account,
    deleting_or_editing_away_a_reply_takes_its_picture,
);
