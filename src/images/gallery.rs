//! The gallery: `/gallery` (an album per companion, plus the generator's unassigned pictures) and
//! `/gallery/{companion_id|unassigned}` (newest first, 24 per page, keyset paging), with deletion as a form
//! (`POST /gallery/images/{id}/delete`) and as JSON (`DELETE /api/v1/images/{id}`).

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{delete, get, post};
use axum::{Form, Router};
use serde::Deserialize;
use uuid::Uuid;

use crate::companions;
use crate::error::AppError;
use crate::media::store::{self, GalleryItem};
use crate::state::AppState;
use crate::web::PathId;
use crate::web::{CurrentUser, PageContext};

/// Pictures per album page.
pub const PAGE_SIZE: u32 = 24;
/// Albums shown on the gallery page.
const ALBUMS: u32 = 200;
/// Longest caption under a picture.
const CAPTION_CHARS: usize = 140;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/gallery", get(show_albums))
        .route("/gallery/{album}", get(show_album))
        .route("/gallery/images/{id}/delete", post(delete_form))
        .route("/api/v1/images/{id}", delete(delete_json))
}

/// An album as a card.
struct AlbumCard {
    href: String,
    name: String,
    initial: String,
    portrait_url: Option<String>,
    count: i64,
}

/// Renders: every album with its picture count.
#[derive(Template)]
#[template(path = "images/gallery.html")]
struct AlbumsPage {
    page: PageContext,
    albums: Vec<AlbumCard>,
    total: i64,
}

async fn show_albums(
    State(state): State<AppState>,
    current: CurrentUser,
) -> Result<Html<String>, AppError> {
    let counts: HashMap<Option<Uuid>, i64> = store::album_counts(&state.db, current.user.id)
        .await?
        .into_iter()
        .collect();
    let mut albums: Vec<AlbumCard> = companions::store::list(&state.db, current.user.id, ALBUMS, 0)
        .await?
        .into_iter()
        .map(|companion| {
            let name = companion.profile.0.name;
            AlbumCard {
                href: format!("/gallery/{}", companion.id),
                initial: name.chars().next().unwrap_or('?').to_uppercase().collect(),
                name,
                portrait_url: companion.portrait_image_id.map(|id| format!("/media/{id}")),
                count: counts.get(&Some(companion.id)).copied().unwrap_or(0),
            }
        })
        .collect();
    let unassigned = counts.get(&None).copied().unwrap_or(0);
    if unassigned > 0 {
        albums.push(AlbumCard {
            href: "/gallery/unassigned".into(),
            name: "Generator".into(),
            initial: "★".into(),
            portrait_url: None,
            count: unassigned,
        });
    }
    let page = AlbumsPage {
        page: current.page("Gallery", "gallery")?,
        total: counts.values().sum(),
        albums,
    };
    Ok(Html(page.render()?))
}

/// One picture on an album page.
struct Tile {
    id: String,
    url: String,
    width: i32,
    height: i32,
    caption: String,
    date: String,
}

impl From<GalleryItem> for Tile {
    fn from(item: GalleryItem) -> Self {
        let text = match item.source.as_str() {
            "chat" => item.message_text.or(item.prompt),
            _ => item.prompt,
        }
        .unwrap_or_default();
        let mut caption: String = text.chars().take(CAPTION_CHARS).collect();
        if text.chars().count() > CAPTION_CHARS {
            caption.push('…');
        }
        Self {
            url: format!("/media/{}", item.id),
            id: item.id.to_string(),
            width: item.width,
            height: item.height,
            caption,
            date: item.created_at.display(),
        }
    }
}

/// Renders: one album's pictures with paging and the lightbox.
#[derive(Template)]
#[template(path = "images/album.html")]
struct AlbumPage {
    page: PageContext,
    album: String,
    title: String,
    count: i64,
    tiles: Vec<Tile>,
    older: Option<String>,
    paged: bool,
    chat_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AlbumQuery {
    before: Option<String>,
}

/// `unassigned` → `None`, a companion id → `Some`, anything else → 404.
fn parse_album(raw: &str) -> Result<Option<Uuid>, AppError> {
    if raw == "unassigned" {
        return Ok(None);
    }
    Uuid::parse_str(raw)
        .map(Some)
        .map_err(|_| AppError::NotFound)
}

async fn show_album(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(album): Path<String>,
    Query(query): Query<AlbumQuery>,
) -> Result<Html<String>, AppError> {
    let companion_id = parse_album(&album)?;
    let (title, chat_url) = match companion_id {
        Some(id) => {
            let companion = companions::store::find_owned(&state.db, current.user.id, id)
                .await?
                .ok_or(AppError::NotFound)?;
            let name = companion.profile.0.name;
            (
                format!("{name}'s gallery"),
                Some(format!("/companions/{id}/chat")),
            )
        }
        None => ("Generator pictures".to_owned(), None),
    };
    let before = match query.before.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => Some(Uuid::parse_str(raw).map_err(|_| {
            AppError::BadRequest("The page link is not valid; start again from the gallery.".into())
        })?),
    };
    let mut items = store::album_page(
        &state.db,
        current.user.id,
        companion_id,
        before,
        PAGE_SIZE + 1,
    )
    .await?;
    let older = (items.len() > PAGE_SIZE as usize).then(|| {
        items.truncate(PAGE_SIZE as usize);
        items
            .last()
            .map(|item| item.id.to_string())
            .unwrap_or_default()
    });
    let count = store::album_counts(&state.db, current.user.id)
        .await?
        .into_iter()
        .find(|(id, _)| *id == companion_id)
        .map_or(0, |(_, count)| count);
    let page = AlbumPage {
        page: current.page(title.clone(), "gallery")?,
        album,
        title,
        count,
        tiles: items.into_iter().map(Tile::from).collect(),
        older,
        paged: before.is_some(),
        chat_url,
    };
    Ok(Html(page.render()?))
}

/// Deletes the row; the file goes now when nothing else refers to it (or with the cleanup).
async fn remove(state: &AppState, current: &CurrentUser, id: Uuid) -> Result<(), AppError> {
    let key = store::delete_owned(&state.db, current.user.id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    crate::media::cleanup::discard_unreferenced(&state.db, &state.media, vec![key]).await;
    tracing::info!(image_id = %id, "gallery picture deleted");
    Ok(())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DeleteForm {
    album: String,
}

async fn delete_form(
    State(state): State<AppState>,
    current: CurrentUser,
    PathId(id): PathId,
    Form(form): Form<DeleteForm>,
) -> Result<Response, AppError> {
    remove(&state, &current, id).await?;
    // Back to the album it was in, when that is a valid album name.
    let back = match parse_album(&form.album) {
        Ok(_) => format!("/gallery/{}", form.album),
        Err(_) => "/gallery".to_owned(),
    };
    Ok(Redirect::to(&back).into_response())
}

async fn delete_json(
    State(state): State<AppState>,
    current: CurrentUser,
    PathId(id): PathId,
) -> Result<Response, AppError> {
    remove(&state, &current, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
