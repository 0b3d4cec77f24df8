//! The orphaned-file cleanup: list every stored file, subtract every key the database references, and
//! delete the rest once older than the grace period (a file being written, or written but not yet
//! recorded, is young and therefore kept).
//!
//! Safe by construction: only keys shaped like ours (`<uuid>/<sha256>.<ext>`) are candidates; a local
//! store is walked without following links; each candidate's references and age are checked again just
//! before it is deleted; a file already gone is not an error, so two instances sweeping at once only
//! duplicate work.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use crate::db::Db;
use crate::db_dispatch;
use crate::media::MediaStorage;
use crate::media::storage::is_media_key;

/// What a sweep found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// Files looked at.
    pub scanned: u64,
    /// Files nothing references (deleted, or that would be in a dry run).
    pub orphans: u64,
    /// Orphans deleted (0 in a dry run).
    pub deleted: u64,
    /// Bytes of the orphans (freed, or that would be).
    pub freed_bytes: u64,
    /// Unreferenced files kept because they are younger than the grace period.
    pub young: u64,
    /// Files that are not ours (left alone).
    pub foreign: u64,
    /// Nothing was deleted.
    pub dry_run: bool,
    /// How long the sweep took, in milliseconds.
    pub duration_ms: u64,
}

async fn referenced_keys(db: &Db) -> Result<HashSet<String>, sqlx::Error> {
    let keys: Vec<String> = db_dispatch!(db, pool => sqlx::query_scalar(
        "SELECT DISTINCT storage_key FROM images",
    )
    .fetch_all(pool)
    .await)?;
    // A picture's thumbnail is in use as long as the picture is.
    let thumbnails: Vec<String> = keys
        .iter()
        .map(|k| MediaStorage::thumbnail_key(k))
        .collect();
    Ok(keys.into_iter().chain(thumbnails).collect())
}

/// Whether a row refers to `key` (for a thumbnail: to its picture).
async fn in_use(db: &Db, key: &str) -> Result<bool, sqlx::Error> {
    let picture = MediaStorage::picture_of_thumbnail(key);
    crate::media::store::is_referenced(db, picture.as_deref().unwrap_or(key)).await
}

fn older_than(modified: SystemTime, grace: Duration, now: SystemTime) -> bool {
    now.duration_since(modified).is_ok_and(|age| age >= grace)
}

/// One sweep over the whole store.
pub async fn sweep(
    db: &Db,
    media: &MediaStorage,
    grace: Duration,
    dry_run: bool,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    // Listed before the references are read: a file written after this point is not considered at all.
    let objects = media.list_all().await?;
    let referenced = referenced_keys(db).await?;
    let now = SystemTime::now();
    let mut report = Report {
        dry_run,
        ..Report::default()
    };
    for object in objects {
        report.scanned += 1;
        if !is_media_key(&object.key) {
            report.foreign += 1;
            continue;
        }
        if referenced.contains(&object.key) {
            continue;
        }
        if !older_than(object.modified, grace, now) {
            report.young += 1;
            continue;
        }
        report.orphans += 1;
        report.freed_bytes += object.size;
        if dry_run {
            continue;
        }
        // Checked again right before deleting: a row may have appeared, or the file been rewritten.
        if in_use(db, &object.key).await? {
            report.orphans -= 1;
            report.freed_bytes -= object.size;
            continue;
        }
        match media.modified(&object.key).await? {
            Some(modified) if older_than(modified, grace, SystemTime::now()) => {}
            _ => {
                report.orphans -= 1;
                report.freed_bytes -= object.size;
                continue;
            }
        }
        media.delete(&object.key).await?;
        report.deleted += 1;
    }
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if !dry_run {
        metrics::counter!("images_orphans_deleted_total").increment(report.deleted);
        metrics::counter!("images_orphan_bytes_freed_total").increment(report.freed_bytes);
    }
    tracing::info!(
        scanned = report.scanned,
        orphans = report.orphans,
        deleted = report.deleted,
        freed_bytes = report.freed_bytes,
        young = report.young,
        foreign = report.foreign,
        dry_run,
        duration_ms = report.duration_ms,
        "orphaned image cleanup finished"
    );
    Ok(report)
}

/// Deletes the files of `keys` (and their thumbnails) that no image row refers to any more (after rows
/// were deleted); a failure is logged and left to the sweep.
pub async fn discard_unreferenced(db: &Db, media: &MediaStorage, keys: Vec<String>) {
    for key in keys {
        match crate::media::store::is_referenced(db, &key).await {
            Ok(false) => {
                for file in [MediaStorage::thumbnail_key(&key), key] {
                    if let Err(err) = media.delete(&file).await {
                        tracing::warn!(error = %err, "cannot delete an image file; the cleanup will");
                    }
                }
            }
            Ok(true) => {}
            Err(err) => tracing::warn!(error = %err, "cannot check an image file's references"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grace_period_is_measured_from_the_last_write() {
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        assert!(older_than(now - 2 * hour, hour, now));
        assert!(!older_than(now - hour / 2, hour, now));
        assert!(
            !older_than(now + hour, hour, now),
            "a clock in the future is young"
        );
    }
}
