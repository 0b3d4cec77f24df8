//! Where image bytes live: an object store (a local folder, or an S3-compatible bucket) keyed by content.
//!
//! Policy: every instance of a deployment uses the same store, so a picture written through one is served
//! by all. Calls to S3 are bounded (5 s to connect, 30 s per request) and retried twice within 10 s on
//! connection failures and 5xx answers; what still fails is an error the caller turns into a clear "storage
//! unavailable" for the person ([`STORAGE_UNAVAILABLE`]), and the file is written before any row refers to
//! it, so nothing ever points at an object that was not stored.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use uuid::Uuid;

use crate::config::{S3Storage, StorageConfig};

/// The error code a person sees when the media store cannot be reached (503).
pub const STORAGE_UNAVAILABLE: &str = "storage_unavailable";

/// The media store shared by every request.
#[derive(Clone, Debug)]
pub struct MediaStorage {
    store: Arc<dyn ObjectStore>,
    /// The folder of a local store: listed by our own walker, which never follows links.
    local_root: Option<PathBuf>,
}

/// One stored file, as the orphan cleanup sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// Its key (`<owner>/<sha256>.<ext>`).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// When it was last written.
    pub modified: SystemTime,
}

/// True for keys this application writes: `<uuid>/<64 hex digits>.<jpg|png|webp|gif|thumb.jpg>`. Nothing
/// else in the store is ever deleted by the cleanup.
pub fn is_media_key(key: &str) -> bool {
    let Some((owner, file)) = key.split_once('/') else {
        return false;
    };
    let Some((hash, extension)) = file.split_once('.') else {
        return false;
    };
    Uuid::parse_str(owner).is_ok_and(|id| id.hyphenated().to_string() == owner)
        && hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && matches!(extension, "jpg" | "png" | "webp" | "gif" | "thumb.jpg")
}

impl MediaStorage {
    /// Opens the configured store, creating a local folder when needed.
    pub fn open(config: &StorageConfig) -> anyhow::Result<Self> {
        match config {
            StorageConfig::Local(folder) => {
                std::fs::create_dir_all(folder).map_err(|err| {
                    anyhow::anyhow!("cannot create the media folder {}: {err}", folder.display())
                })?;
                let store = LocalFileSystem::new_with_prefix(folder)
                    .map_err(|err| anyhow::anyhow!("cannot open the media folder: {err}"))?;
                Ok(Self {
                    store: Arc::new(store),
                    local_root: Some(folder.clone()),
                })
            }
            StorageConfig::S3(s3) => Ok(Self {
                store: open_s3(s3)?,
                local_root: None,
            }),
        }
    }

    /// One cheap round trip to the store (`/api/health`): a local folder is read, a bucket listed with a
    /// prefix that matches nothing.
    pub async fn probe(&self) -> anyhow::Result<()> {
        use futures_util::StreamExt;
        if let Some(root) = &self.local_root {
            let root = root.clone();
            return tokio::task::spawn_blocking(move || {
                std::fs::read_dir(&root)
                    .map(|_| ())
                    .map_err(anyhow::Error::from)
            })
            .await?;
        }
        let probe = Path::parse(".health-probe")?;
        match self.store.list(Some(&probe)).next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(err)) => Err(err.into()),
        }
    }

    /// `<owner>/<sha256>.<ext>`: the same content of the same owner is stored once.
    pub fn key_for(owner: Uuid, sha256: &str, extension: &str) -> String {
        format!("{owner}/{sha256}.{extension}")
    }

    /// The key of the gallery thumbnail of the picture stored under `key` (`<owner>/<sha256>.thumb.jpg`).
    pub fn thumbnail_key(key: &str) -> String {
        let stem = key.split_once('.').map_or(key, |(stem, _)| stem);
        format!("{stem}.thumb.jpg")
    }

    /// The picture a thumbnail key belongs to (generated pictures are JPEG), or `None` for other keys.
    pub fn picture_of_thumbnail(key: &str) -> Option<String> {
        key.strip_suffix(".thumb.jpg")
            .map(|stem| format!("{stem}.jpg"))
    }

    /// Writes `bytes` under `key` (atomically: readers never see a partial file).
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        let path = Path::parse(key)?;
        self.store.put(&path, Bytes::from(bytes).into()).await?;
        Ok(())
    }

    /// The bytes under `key` as a stream, with their length; `None` when the file is gone.
    pub async fn open_stream(
        &self,
        key: &str,
    ) -> anyhow::Result<
        Option<(
            u64,
            futures_util::stream::BoxStream<'static, object_store::Result<Bytes>>,
        )>,
    > {
        let path = Path::parse(key)?;
        match self.store.get(&path).await {
            Ok(result) => Ok(Some((result.meta.size, result.into_stream()))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Deletes `key`; a key that is already gone is fine.
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        let path = Path::parse(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Deletes every file of an owner (their account is gone); returns how many were deleted.
    pub async fn delete_owner(&self, owner: Uuid) -> anyhow::Result<usize> {
        use futures_util::TryStreamExt;
        let prefix = format!("{owner}/");
        let keys: Vec<String> = match &self.local_root {
            // Our own walk: a link inside the owner's folder is never followed out of the store.
            Some(_) => self
                .list_all()
                .await?
                .into_iter()
                .map(|object| object.key)
                .filter(|key| key.starts_with(&prefix))
                .collect(),
            None => {
                let path = Path::parse(owner.to_string())?;
                let objects: Vec<_> = self.store.list(Some(&path)).try_collect().await?;
                objects
                    .into_iter()
                    .map(|o| o.location.to_string())
                    .collect()
            }
        };
        for key in &keys {
            self.delete(key).await?;
        }
        Ok(keys.len())
    }

    /// Every file in the store, with size and age. A local folder is walked without following symbolic
    /// links (a link is neither listed nor entered), so nothing outside the folder is ever seen.
    pub async fn list_all(&self) -> anyhow::Result<Vec<StoredObject>> {
        match &self.local_root {
            Some(root) => {
                let root = root.clone();
                tokio::task::spawn_blocking(move || walk_local(&root)).await?
            }
            None => {
                use futures_util::TryStreamExt;
                let objects: Vec<_> = self.store.list(None).try_collect().await?;
                Ok(objects
                    .into_iter()
                    .map(|meta| StoredObject {
                        key: meta.location.to_string(),
                        size: meta.size,
                        modified: meta.last_modified.into(),
                    })
                    .collect())
            }
        }
    }

    /// When `key` was last written, or `None` when it is gone; a local key reached through a link is
    /// treated as gone.
    pub async fn modified(&self, key: &str) -> anyhow::Result<Option<SystemTime>> {
        if let Some(root) = &self.local_root {
            let path = root.join(key);
            let owner = path.parent().map(std::path::Path::to_path_buf);
            return tokio::task::spawn_blocking(move || {
                let linked = |p: &std::path::Path| {
                    std::fs::symlink_metadata(p).map(|m| m.file_type().is_symlink())
                };
                let plain = owner
                    .as_deref()
                    .map(linked)
                    .is_some_and(|r| matches!(r, Ok(false)))
                    && matches!(linked(&path), Ok(false));
                if !plain {
                    return Ok(None);
                }
                Ok(std::fs::metadata(&path)?.modified().ok())
            })
            .await?;
        }
        let path = Path::parse(key)?;
        match self.store.head(&path).await {
            Ok(meta) => Ok(Some(meta.last_modified.into())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// True when `key` exists.
    pub async fn exists(&self, key: &str) -> anyhow::Result<bool> {
        let path = Path::parse(key)?;
        match self.store.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }
}

/// The bucket as an object store, under its prefix when there is one.
fn open_s3(s3: &S3Storage) -> anyhow::Result<Arc<dyn ObjectStore>> {
    use object_store::aws::AmazonS3Builder;
    use object_store::{BackoffConfig, ClientOptions, RetryConfig};
    // Client options first: `with_allow_http` writes into them, and setting them afterwards would undo it.
    let mut builder = AmazonS3Builder::new()
        .with_client_options(
            ClientOptions::new()
                .with_connect_timeout(std::time::Duration::from_secs(5))
                .with_timeout(std::time::Duration::from_secs(30)),
        )
        .with_bucket_name(&s3.bucket)
        .with_region(&s3.region)
        .with_allow_http(s3.allow_http)
        .with_virtual_hosted_style_request(s3.virtual_hosted_style)
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 2,
            retry_timeout: std::time::Duration::from_secs(10),
        });
    if let Some(endpoint) = &s3.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let (Some(id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
        builder = builder
            .with_access_key_id(id)
            .with_secret_access_key(secret.expose());
    }
    if let Some(token) = &s3.session_token {
        builder = builder.with_token(token.expose());
    }
    let store = builder
        .build()
        .map_err(|err| anyhow::anyhow!("cannot use the S3 bucket {}: {err}", s3.bucket))?;
    Ok(if s3.prefix.is_empty() {
        Arc::new(store)
    } else {
        Arc::new(object_store::prefix::PrefixStore::new(
            store,
            s3.prefix.as_str(),
        ))
    })
}

/// Regular files under `root` (two levels: owner folders, then files), never following links.
fn walk_local(root: &std::path::Path) -> anyhow::Result<Vec<StoredObject>> {
    let mut found = Vec::new();
    let mut folders = vec![(root.to_path_buf(), String::new())];
    while let Some((folder, prefix)) = folders.pop() {
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err.into()),
        };
        for entry in entries {
            let entry = entry?;
            // The entry's own type: a symbolic link reports as a link, not as what it points to.
            let kind = entry.file_type()?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let key = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if kind.is_dir() && prefix.is_empty() {
                folders.push((entry.path(), key));
            } else if kind.is_file() {
                // Deleted since it was listed (another sweep, a gallery delete): simply not there.
                let meta = match entry.metadata() {
                    Ok(meta) => meta,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(err.into()),
                };
                found.push(StoredObject {
                    key,
                    size: meta.len(),
                    modified: meta.modified()?,
                });
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_own_keys_are_media_keys() {
        let owner = "0192f0c4-4c6a-7c3e-9d2a-0123456789ab";
        let hash = "a".repeat(64);
        assert!(is_media_key(&format!("{owner}/{hash}.jpg")));
        assert!(is_media_key(&format!("{owner}/{hash}.thumb.jpg")));
        assert_eq!(
            MediaStorage::thumbnail_key(&format!("{owner}/{hash}.jpg")),
            format!("{owner}/{hash}.thumb.jpg")
        );
        assert_eq!(
            MediaStorage::picture_of_thumbnail(&format!("{owner}/{hash}.thumb.jpg")),
            Some(format!("{owner}/{hash}.jpg"))
        );
        for key in [
            format!("{owner}/{hash}.jpg#1"),
            format!("{owner}/{hash}.exe"),
            format!("{owner}/{}.jpg", "a".repeat(63)),
            format!("{owner}/{}.jpg", "A".repeat(64)),
            format!("{}/{hash}.jpg", owner.to_uppercase()),
            format!("../{hash}.jpg"),
            format!("{owner}/sub/{hash}.jpg"),
            "notes.txt".to_owned(),
        ] {
            assert!(!is_media_key(&key), "{key}");
        }
    }
}
