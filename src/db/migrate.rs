//! Versioned schema migrations, embedded in the binary: applying them safely and reporting their state.
//!
//! Policy: one folder per backend (`migrations/sqlite`, `migrations/postgres`) with the same versions;
//! several instances may start at once — PostgreSQL serialises them with sqlx's advisory lock, SQLite
//! with the start-up lock beside the database file ([`FileLock`]) — so a migration is never applied twice; a
//! database that has migrations this binary does not know is refused before anything is touched.

use std::collections::HashMap;

use sqlx::migrate::{MigrateError, Migrator};

use super::{Backend, Db, FileLock};
use crate::db_dispatch;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// The migrations this binary carries for `backend`.
pub fn migrator(backend: Backend) -> &'static Migrator {
    match backend {
        Backend::Sqlite => &SQLITE_MIGRATIONS,
        Backend::Postgres => &POSTGRES_MIGRATIONS,
    }
}

/// One migration this binary knows, and whether the database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownMigration {
    /// Version (the timestamp prefix of the file name).
    pub version: i64,
    /// Name (the rest of the file name).
    pub description: String,
    /// Applied to this database.
    pub applied: bool,
}

/// The database's migrations compared with the binary's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// Every migration of this binary, oldest first.
    pub known: Vec<KnownMigration>,
    /// Applied to the database but unknown to this binary: the database is newer than the binary.
    pub unknown_applied: Vec<i64>,
    /// Applied, but the file in this binary differs from what was applied.
    pub modified: Vec<i64>,
}

impl MigrationStatus {
    /// Migrations of this binary not yet applied.
    pub fn pending(&self) -> impl Iterator<Item = &KnownMigration> {
        self.known.iter().filter(|m| !m.applied)
    }

    /// The schema is exactly what this binary expects.
    pub fn is_current(&self) -> bool {
        self.pending().next().is_none()
            && self.unknown_applied.is_empty()
            && self.modified.is_empty()
    }

    /// The problem that forbids running this binary on this database, if any.
    pub fn incompatibility(&self) -> Option<MigrationError> {
        if !self.unknown_applied.is_empty() {
            return Some(MigrationError::SchemaNewer {
                versions: self.unknown_applied.clone(),
                latest_known: self.known.last().map_or(0, |m| m.version),
            });
        }
        if !self.modified.is_empty() {
            return Some(MigrationError::Modified {
                versions: self.modified.clone(),
            });
        }
        None
    }
}

/// Why migrations could not be read or applied.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The database has migrations this binary does not know.
    #[error(
        "the database schema is newer than this binary: it has migration(s) {} that this version of \
         companion-hub ({}, latest migration {latest_known}) does not know; run a newer companion-hub \
         or use another database",
        join(.versions), env!("CARGO_PKG_VERSION")
    )]
    SchemaNewer {
        /// The unknown versions.
        versions: Vec<i64>,
        /// The newest version this binary knows.
        latest_known: i64,
    },
    /// Migrations were edited after being applied.
    #[error(
        "migration(s) {} differ from what was applied to this database; the binary and the database \
         disagree about the schema",
        join(.versions)
    )]
    Modified {
        /// The edited versions.
        versions: Vec<i64>,
    },
    /// The migration lock could not be taken.
    #[error("cannot take the migration lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: String,
        /// The file-system error.
        source: std::io::Error,
    },
    /// Reading the migration table failed.
    #[error("cannot read the migration state: {0}")]
    Query(#[from] sqlx::Error),
    /// Applying a migration failed.
    #[error("applying migrations failed: {0}")]
    Apply(#[from] MigrateError),
}

fn join(versions: &[i64]) -> String {
    versions
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Compares the database's applied migrations with this binary's.
pub async fn status(db: &Db) -> Result<MigrationStatus, MigrationError> {
    let applied: HashMap<i64, Vec<u8>> = applied_migrations(db).await?.into_iter().collect();
    let migrator = migrator(db.backend());
    let known: Vec<KnownMigration> = migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| KnownMigration {
            version: m.version,
            description: m.description.to_string(),
            applied: applied.contains_key(&m.version),
        })
        .collect();
    let modified = migrator
        .iter()
        .filter(|m| {
            applied
                .get(&m.version)
                .is_some_and(|checksum| checksum.as_slice() != &*m.checksum)
        })
        .map(|m| m.version)
        .collect();
    let mut unknown_applied: Vec<i64> = applied
        .keys()
        .copied()
        .filter(|version| !migrator.version_exists(*version))
        .collect();
    unknown_applied.sort_unstable();
    Ok(MigrationStatus {
        known,
        unknown_applied,
        modified,
    })
}

/// Applies every pending migration; returns the versions this call applied.
///
/// Refuses a database that is newer than the binary before touching it. Safe to call from several
/// instances at once.
pub async fn run(db: &Db) -> Result<Vec<i64>, MigrationError> {
    let before = status(db).await?;
    if let Some(problem) = before.incompatibility() {
        return Err(problem);
    }
    let _lock = match db {
        Db::Sqlite(pool) => {
            let file = pool.connect_options().get_filename().to_owned();
            let lock = FileLock::acquire(&file)
                .await
                .map_err(|source| MigrationError::Lock {
                    path: super::file_lock::lock_path(&file).display().to_string(),
                    source,
                })?;
            Some(lock)
        }
        Db::Postgres(_) => None,
    };
    db_dispatch!(db, pool => migrator(db.backend()).run(pool).await)?;
    let after = status(db).await?;
    let applied_now = after
        .known
        .iter()
        .zip(&before.known)
        .filter(|(now, then)| now.applied && !then.applied)
        .map(|(now, _)| now.version)
        .collect();
    Ok(applied_now)
}

/// `(version, checksum)` of every successfully applied migration; empty for a fresh database.
async fn applied_migrations(db: &Db) -> Result<Vec<(i64, Vec<u8>)>, sqlx::Error> {
    let result = db_dispatch!(db, pool => sqlx::query_as::<_, (i64, Vec<u8>)>(
        "SELECT version, checksum FROM _sqlx_migrations WHERE success ORDER BY version",
    )
    .fetch_all(pool)
    .await);
    match result {
        Err(err) if is_missing_table(&err) => Ok(Vec::new()),
        other => other,
    }
}

fn is_missing_table(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            // 42P01 is PostgreSQL's undefined_table; SQLite only says it in words.
            db.code().as_deref() == Some("42P01") || db.message().contains("no such table")
        }
        _ => false,
    }
}
