//! An exclusive lock on a file beside a SQLite database, serialising start-up work across processes.
//!
//! SQLite has no advisory locks of its own that span "open, switch to WAL, migrate": two instances
//! starting at once could see `database is locked` or race to apply the same migration. Holding this
//! lock around those steps makes them take turns. The lock is released when the handle is dropped
//! (or the process dies), so it can never be left behind.
//!
//! [`InstanceLock`] is the other lock beside a SQLite database: held by the one process that serves it, for
//! as long as it serves. Leases of runs on SQLite are then never another live process's, so a process that
//! starts after a crash takes every unfinished run over at once instead of waiting for leases to lapse.

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

/// The serving lock for a database file: `<database>.serving`.
pub fn serving_path(database: &Path) -> PathBuf {
    let mut path = database.as_os_str().to_owned();
    path.push(".serving");
    PathBuf::from(path)
}

/// Held by the process serving a SQLite database for as long as it serves; dropping it (or dying) releases it.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

/// Why the serving lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum InstanceLockError {
    /// Another process serves this database.
    #[error(
        "another companion-hub process is serving {database} (it holds {lock}); one process per SQLite \
         database — stop it first, or use PostgreSQL to run several instances"
    )]
    Held {
        /// The database file.
        database: String,
        /// The lock file.
        lock: String,
    },
    /// The lock file cannot be opened.
    #[error("cannot open the serving lock {lock}: {source}")]
    Io {
        /// The lock file.
        lock: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl InstanceLock {
    /// Takes the serving lock beside `database` without waiting: an error when another process holds it.
    pub fn try_acquire(database: &Path) -> Result<Self, InstanceLockError> {
        let path = serving_path(database);
        let io = |source| InstanceLockError::Io {
            lock: path.display().to_string(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(InstanceLockError::Held {
                database: database.display().to_string(),
                lock: path.display().to_string(),
            }),
            Err(std::fs::TryLockError::Error(err)) => Err(io(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_process_serves_a_database_and_the_lock_goes_with_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = dir.path().join("hub.db");
        let held = InstanceLock::try_acquire(&database).expect("free at first");
        // flock locks belong to the open file: a second open in this process conflicts like another process.
        let second = InstanceLock::try_acquire(&database).expect_err("held");
        let said = second.to_string();
        assert!(
            said.contains("another companion-hub process is serving"),
            "{said}"
        );
        assert!(said.contains("hub.db.serving"), "{said}");
        drop(held);
        InstanceLock::try_acquire(&database).expect("free again once dropped");
    }
}
