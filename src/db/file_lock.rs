//! An exclusive lock on a file beside a SQLite database, serialising start-up work across processes.
//!
//! SQLite has no advisory locks of its own that span "open, switch to WAL, migrate": two instances
//! starting at once could see `database is locked` or race to apply the same migration. Holding this
//! lock around those steps makes them take turns. The lock is released when the handle is dropped
//! (or the process dies), so it can never be left behind.

use std::fs::File;
use std::path::{Path, PathBuf};

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

/// The lock file for a database file: `<database>.lock`.
pub fn lock_path(database: &Path) -> PathBuf {
    let mut path = database.as_os_str().to_owned();
    path.push(".lock");
    PathBuf::from(path)
}

impl FileLock {
    /// Waits (off the async runtime) until the lock beside `database` is ours.
    pub async fn acquire(database: &Path) -> std::io::Result<Self> {
        let path = lock_path(database);
        tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            file.lock()?;
            Ok(Self { _file: file })
        })
        .await
        .map_err(|join| std::io::Error::other(join.to_string()))?
    }
}
