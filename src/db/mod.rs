//! The database handle: SQLite or PostgreSQL behind one [`Db`] type, chosen by the URL scheme.
//!
//! Policy: each query is written once, in SQL that both backends accept, with `$1…$N` placeholders, and
//! run through [`db_dispatch!`](crate::db_dispatch) so it executes on the native pool with native types (uuid, timestamps,
//! booleans, JSON). Uniqueness and integrity live in the schema; callers map constraint violations to
//! field errors instead of checking first. `db/` knows nothing of HTTP.

mod busy;
mod clock;
mod file_lock;
pub mod migrate;
mod timestamp;

pub use clock::DbClock;
pub use file_lock::{FileLock, InstanceLock, InstanceLockError};
pub use timestamp::Timestamp;

/// A migrated SQLite database in a temporary folder, with one user and one companion (unit tests of
/// stores); the folder lives as long as the returned guard.
#[cfg(test)]
pub(crate) async fn test_database() -> (Db, tempfile::TempDir, uuid::Uuid, uuid::Uuid) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Db::connect(&format!("sqlite://{}/unit.db", dir.path().display()))
        .await
        .expect("sqlite opens");
    migrate::run(&db).await.expect("migrations apply");
    let (user, companion) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let now = Timestamp::now();
    crate::db_dispatch!(&db, pool => async {
        sqlx::query(
            "INSERT INTO users (id, email, username, display_name, password_hash, created_at, updated_at) \
             VALUES ($1, 'unit@example.com', 'unit', 'Unit', 'x', $2, $2)",
        )
        .bind(user)
        .bind(now)
        .execute(pool)
        .await?;
        sqlx::query(
            "INSERT INTO companions (id, user_id, profile, live_state, created_at, updated_at) \
             VALUES ($1, $2, '{}', '{}', $3, $3)",
        )
        .bind(companion)
        .bind(user)
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ())
    }
    .await)
    .expect("test rows insert");
    (db, dir, user, companion)
}

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::config::redact_url;

/// How long a query waits for a free connection (SQLite's wait for the write lock: `busy::LIMIT`).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection pool for one of the two supported databases.
#[derive(Clone, Debug)]
pub enum Db {
    /// A SQLite file (WAL, foreign keys on, busy timeout).
    Sqlite(SqlitePool),
    /// A PostgreSQL server.
    Postgres(PgPool),
}

/// Which database a [`Db`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// `sqlite` or `postgres`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// Runs the same expression against whichever native pool a [`Db`] holds.
///
/// ```ignore
/// let n: i64 = db_dispatch!(&db, pool => sqlx::query_scalar("SELECT 1").fetch_one(pool).await)?;
/// ```
/// The body is compiled once per backend, so it must type-check for both (generic `FromRow` and
/// `query_as` do); results that differ per backend (`SqliteQueryResult` vs `PgQueryResult`) must be
/// reduced to a common type inside the body, e.g. `.rows_affected()`.
#[macro_export]
macro_rules! db_dispatch {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($pool) => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL names neither SQLite nor PostgreSQL, or does not parse.
    #[error("DATABASE_URL {url} is not a valid sqlite:// or postgres:// URL: {reason}")]
    InvalidUrl {
        /// The URL, password masked.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The folder for the SQLite file could not be created.
    #[error("cannot create the folder {folder} for the SQLite database: {source}")]
    CreateFolder {
        /// The folder.
        folder: String,
        /// The file-system error.
        source: std::io::Error,
    },
    /// The start-up lock beside the SQLite file could not be taken.
    #[error("cannot take the lock {path} beside the SQLite database: {source}")]
    Lock {
        /// The lock file.
        path: String,
        /// The file-system error.
        source: std::io::Error,
    },
    /// The server refused, was unreachable, or the file could not be opened.
    #[error("cannot connect to the database at {url}: {source}")]
    Unreachable {
        /// The URL, password masked.
        url: String,
        /// The driver's error.
        source: sqlx::Error,
    },
}

impl Db {
    /// Opens a pool for `url` (`sqlite://path` or `postgres://…`) and proves it works with one connection.
    ///
    /// For SQLite the file and its folder are created when missing.
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        let shown = redact_url(url);
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|err| ConnectError::InvalidUrl {
                    url: shown.clone(),
                    reason: err.to_string(),
                })?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(busy::LIMIT);
            let file = options.get_filename().to_owned();
            if let Some(folder) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
                create_folder(folder).await?;
            }
            // The first connection creates the file and switches it to WAL, which needs the database
            // to itself: instances starting together take turns instead of failing with SQLITE_BUSY.
            let _lock = FileLock::acquire(&file)
                .await
                .map_err(|source| ConnectError::Lock {
                    path: file_lock::lock_path(&file).display().to_string(),
                    source,
                })?;
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                // A connection to a local file does not go stale, and the default ping before every
                // checkout is a round trip to the connection's thread: as many hand-overs as the
                // statements themselves (docs/performance.md).
                .test_before_acquire(false)
                .after_connect(|connection, _| {
                    Box::pin(async move {
                        let mut handle = connection.lock_handle().await?;
                        if !busy::install(handle.as_raw_handle()) {
                            tracing::warn!("SQLite refused our busy handler; it waits its own way");
                        }
                        Ok(())
                    })
                })
                .connect_with(options)
                .await
                .map_err(|source| ConnectError::Unreachable { url: shown, source })?;
            Ok(Self::Sqlite(pool))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options =
                PgConnectOptions::from_str(url).map_err(|err| ConnectError::InvalidUrl {
                    url: shown.clone(),
                    reason: err.to_string(),
                })?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await
                .map_err(|source| ConnectError::Unreachable { url: shown, source })?;
            Ok(Self::Postgres(pool))
        } else {
            Err(ConnectError::InvalidUrl {
                url: shown,
                reason: "the scheme must be sqlite:// or postgres://".to_owned(),
            })
        }
    }

    /// The file of a SQLite database (`None` for PostgreSQL and in-memory SQLite).
    pub fn sqlite_file(&self) -> Option<std::path::PathBuf> {
        match self {
            Self::Sqlite(pool) => {
                let file = pool.connect_options().get_filename().to_owned();
                (!file.as_os_str().is_empty() && file.as_os_str() != ":memory:").then_some(file)
            }
            Self::Postgres(_) => None,
        }
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }

    /// One round trip to the database.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        let one: i32 =
            db_dispatch!(self, pool => sqlx::query_scalar("SELECT 1").fetch_one(pool).await)?;
        debug_assert_eq!(one, 1);
        Ok(())
    }

    /// Closes every connection (after the last query of a graceful shutdown).
    pub async fn close(&self) {
        db_dispatch!(self, pool => pool.close().await);
    }
}

async fn create_folder(folder: &Path) -> Result<(), ConnectError> {
    tokio::fs::create_dir_all(folder)
        .await
        .map_err(|source| ConnectError::CreateFolder {
            folder: folder.display().to_string(),
            source,
        })
}

/// True when `err` violates the unique index or constraint `name` (PostgreSQL names it; SQLite says it
/// in words).
pub fn violates_unique(err: &sqlx::Error, name: &str) -> bool {
    match err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            db.constraint() == Some(name) || db.message().contains(name)
        }
        _ => false,
    }
}
