//! The account export (`GET /settings/export`): everything a user has here, as one zip, streamed.
//!
//! Layout (`README.txt` in the archive says the same):
//! - `account.json` — the account (never the password hash) and its sessions (never their tokens);
//! - `companions/<id>.json` — each companion's profile, live state and portrait's file name;
//! - `conversations/<companion id>.jsonl` — every message, oldest first, one JSON object per line, with the
//!   scene each reply left and its picture's file name;
//! - `pictures.jsonl` — every stored picture's metadata (source, companion, prompt, size, time) and
//!   `pictures/<id>.jpg` — the files themselves, portraits included (thumbnails are left out: they are
//!   derived).
//!
//! The archive is written while it is sent: a task writes zip entries into one end of an in-memory pipe
//! (64 KiB) and the response body reads the other, so memory stays bounded whatever the account holds —
//! messages are read 500 at a time and picture files are copied chunk by chunk. Pictures are stored
//! uncompressed (JPEG does not shrink), the JSON deflated. When writing fails half-way (the database, a
//! file), the body ends with an error instead of a clean end, so the download fails visibly rather than
//! leaving a truncated archive that looks complete.

use std::io;

use async_zip::tokio::write::ZipFileWriter;
use async_zip::{Compression, ZipDateTimeBuilder, ZipEntryBuilder};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{AsyncWriteExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::DuplexStream;
use tokio_util::io::ReaderStream;
use tracing::Instrument;
use uuid::Uuid;

use crate::accounts::store::{self as accounts, AccountRecord};
use crate::chat::store as chat;
use crate::companions::store as companions;
use crate::db::Timestamp;
use crate::error::AppError;
use crate::media::store as images;
use crate::state::AppState;
use crate::web::CurrentUser;
use crate::web::session::store as sessions;

/// The format written into `account.json`.
pub const FORMAT: &str = "companion-hub-export/2";
/// Messages read from the database at a time.
const MESSAGE_PAGE: u32 = 500;
/// Picture rows read at a time.
const PICTURE_PAGE: u32 = 200;
/// The pipe between the writer and the response.
const PIPE_BYTES: usize = 64 * 1024;

const README: &str = "\
Companion Hub export

account.json                        your account and its sessions (no password hash, no tokens)
companions/<id>.json                each companion: profile, live state, portrait file
conversations/<companion id>.jsonl  every message, oldest first, one JSON object per line; a reply
                                    carries the scene it left (\"scene\") and its picture file
pictures.jsonl                      every picture's metadata, one JSON object per line
pictures/<id>.jpg                   the pictures and portraits themselves
";

/// `/settings/export`.
pub fn router() -> Router<AppState> {
    Router::new().route("/settings/export", get(download))
}

async fn download(
    State(state): State<AppState>,
    current: CurrentUser,
) -> Result<Response, AppError> {
    let now = Timestamp::now();
    let account = accounts::account(&state.db, current.user.id)
        .await?
        .ok_or(AppError::NotFound)?;
    let filename = format!(
        "attachment; filename=\"companion-hub-{}-{}.zip\"",
        account.username,
        now.into_inner().date()
    );
    let (reader, writer) = tokio::io::duplex(PIPE_BYTES);
    let written = tokio::spawn(
        async move { write_archive(&state, account, now, writer).await }
            .instrument(tracing::Span::current()),
    );
    // After the archive's last byte, the writer's outcome decides how the body ends.
    let outcome = futures_util::stream::once(async move {
        match written.await {
            Ok(Ok(())) => None,
            Ok(Err(err)) => {
                tracing::error!(error = %format!("{err:#}"), "the export stopped before its end");
                Some(Err(io::Error::other("the export stopped before its end")))
            }
            Err(err) => {
                tracing::error!(error = %err, "the export task failed");
                Some(Err(io::Error::other("the export task failed")))
            }
        }
    })
    .filter_map(|end| async move { end });
    let body = Body::from_stream(ReaderStream::new(reader).chain(outcome));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    if let Ok(value) = HeaderValue::from_str(&filename) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[derive(Serialize)]
struct AccountFile {
    format: &'static str,
    exported_at: Timestamp,
    account: AccountRecord,
    sessions: Vec<SessionEntry>,
}

#[derive(Serialize)]
struct SessionEntry {
    id: Uuid,
    created_at: Timestamp,
    last_seen_at: Timestamp,
    user_agent: Option<String>,
}

/// The file name of picture `id` inside the archive.
fn picture_file(id: Uuid, storage_key: &str) -> String {
    let extension = storage_key
        .rsplit_once('.')
        .map_or("jpg", |(_, extension)| extension);
    format!("pictures/{id}.{extension}")
}

struct Archive {
    zip: ZipFileWriter<DuplexStream>,
    modified: async_zip::ZipDateTime,
}

impl Archive {
    fn entry(&self, name: String, compression: Compression) -> ZipEntryBuilder {
        ZipEntryBuilder::new(name.into(), compression)
            .last_modification_date(self.modified)
            .unix_permissions(0o644)
    }

    async fn whole(&mut self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let entry = self.entry(name.to_owned(), Compression::Deflate);
        self.zip.write_entry_whole(entry, bytes).await?;
        Ok(())
    }

    async fn json(&mut self, name: &str, value: &impl Serialize) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec_pretty(value)?;
        self.whole(name, &bytes).await
    }
}

async fn write_archive(
    state: &AppState,
    account: AccountRecord,
    now: Timestamp,
    writer: DuplexStream,
) -> anyhow::Result<()> {
    let at = now.into_inner();
    let modified = ZipDateTimeBuilder::new()
        .year(at.year())
        .month(u32::from(u8::from(at.month())))
        .day(u32::from(at.day()))
        .hour(u32::from(at.hour()))
        .minute(u32::from(at.minute()))
        .second(u32::from(at.second()))
        .build();
    let mut archive = Archive {
        zip: ZipFileWriter::with_tokio(writer),
        modified,
    };
    let db = &state.db;
    let owner = account.id;
    archive.whole("README.txt", README.as_bytes()).await?;

    let sessions = sessions::list_for_user(db, owner, now, state.config.auth.session_idle())
        .await?
        .into_iter()
        .map(|session| SessionEntry {
            id: session.id,
            created_at: session.created_at,
            last_seen_at: session.last_seen_at,
            user_agent: session.user_agent,
        })
        .collect();
    archive
        .json(
            "account.json",
            &AccountFile {
                format: FORMAT,
                exported_at: now,
                account,
                sessions,
            },
        )
        .await?;

    for companion in companions::list(db, owner, u32::MAX, 0).await? {
        let portrait = companion
            .portrait_image_id
            .map(|id| format!("pictures/{id}.jpg"));
        archive
            .json(
                &format!("companions/{}.json", companion.id),
                &json!({
                    "id": companion.id,
                    "profile": companion.profile.0,
                    "live_state": companion.live_state.0,
                    "portrait": portrait,
                    "created_at": companion.created_at,
                    "updated_at": companion.updated_at,
                }),
            )
            .await?;
        write_conversation(&mut archive, state, companion.id).await?;
    }

    write_picture_index(&mut archive, state, owner).await?;
    write_picture_files(&mut archive, state, owner).await?;
    archive.zip.close().await?;
    Ok(())
}

async fn write_conversation(
    archive: &mut Archive,
    state: &AppState,
    companion: Uuid,
) -> anyhow::Result<()> {
    let entry = archive.entry(
        format!("conversations/{companion}.jsonl"),
        Compression::Deflate,
    );
    let mut lines = archive.zip.write_entry_stream(entry).await?;
    let mut after = None;
    loop {
        let page = chat::export_page(&state.db, companion, after, MESSAGE_PAGE).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some((last.created_at, last.id));
        for message in page {
            let line = json!({
                "id": message.id,
                "role": message.role,
                "content": message.content,
                "created_at": message.created_at,
                "edited_at": message.edited_at,
                "finish_reason": message.finish_reason,
                "picture": message.image_id.map(|id| format!("pictures/{id}.jpg")),
                "picture_error": message.image_error,
                "scene": message.scene.map(|scene| scene.0),
            });
            write_line(&mut lines, &line).await?;
        }
    }
    lines.close().await?;
    Ok(())
}

/// One JSON object and a newline, into a `.jsonl` entry.
async fn write_line(
    lines: &mut (impl futures_util::AsyncWrite + Unpin),
    line: &Value,
) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec(line)?;
    bytes.push(b'\n');
    lines.write_all(&bytes).await?;
    Ok(())
}

async fn write_picture_index(
    archive: &mut Archive,
    state: &AppState,
    owner: Uuid,
) -> anyhow::Result<()> {
    let entry = archive.entry("pictures.jsonl".to_owned(), Compression::Deflate);
    let mut lines = archive.zip.write_entry_stream(entry).await?;
    let mut after = None;
    loop {
        let page = images::export_page(&state.db, owner, after, PICTURE_PAGE).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.id);
        for image in page {
            let line = json!({
                "id": image.id,
                "file": picture_file(image.id, &image.storage_key),
                "source": image.source,
                "companion_id": image.companion_id,
                "prompt": image.prompt,
                "mime": image.mime,
                "width": image.width,
                "height": image.height,
                "created_at": image.created_at,
            });
            write_line(&mut lines, &line).await?;
        }
    }
    lines.close().await?;
    Ok(())
}

async fn write_picture_files(
    archive: &mut Archive,
    state: &AppState,
    owner: Uuid,
) -> anyhow::Result<()> {
    let mut after = None;
    loop {
        let page = images::export_page(&state.db, owner, after, PICTURE_PAGE).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.id);
        for image in page {
            // A picture deleted since its row was read is left out; everything else is copied in chunks.
            let Some((_, mut chunks)) = state.media.open_stream(&image.storage_key).await? else {
                tracing::info!(image_id = %image.id, "a picture vanished during the export");
                continue;
            };
            let entry = archive.entry(
                picture_file(image.id, &image.storage_key),
                Compression::Stored,
            );
            let mut file = archive.zip.write_entry_stream(entry).await?;
            while let Some(chunk) = chunks.next().await {
                let chunk: Bytes = chunk?;
                file.write_all(&chunk).await?;
            }
            file.close().await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picture_files_keep_their_stored_extension() {
        let id = Uuid::nil();
        assert_eq!(
            picture_file(id, "owner/abc.jpg"),
            format!("pictures/{id}.jpg")
        );
        assert_eq!(
            picture_file(id, "owner/abc.png"),
            format!("pictures/{id}.png")
        );
        assert_eq!(picture_file(id, "owner/abc"), format!("pictures/{id}.jpg"));
    }
}
