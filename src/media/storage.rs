//! Where image bytes live: an object store (a local folder today; S3-compatible later) keyed by content.

use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use uuid::Uuid;

use crate::config::StorageConfig;

/// The media store shared by every request.
#[derive(Clone, Debug)]
pub struct MediaStorage {
    store: Arc<dyn ObjectStore>,
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
                })
            }
        }
    }

    /// `<owner>/<sha256>.<ext>`: the same content of the same owner is stored once.
    pub fn key_for(owner: Uuid, sha256: &str, extension: &str) -> String {
        format!("{owner}/{sha256}.{extension}")
    }

    /// Writes `bytes` under `key` (atomically: readers never see a partial file).
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        let path = Path::parse(key)?;
        self.store.put(&path, Bytes::from(bytes).into()).await?;
        Ok(())
    }

    /// The bytes stored under `key`.
    pub async fn get(&self, key: &str) -> anyhow::Result<Bytes> {
        let path = Path::parse(key)?;
        Ok(self.store.get(&path).await?.bytes().await?)
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
        let prefix = Path::parse(owner.to_string())?;
        let objects: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        for object in &objects {
            match self.store.delete(&object.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(objects.len())
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
