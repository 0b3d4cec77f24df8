//! The instance registry: every serving process has a row in `instances` (id, name, host, pid, started_at)
//! and beats its heart in database time; a run whose lease names an instance without a recent heartbeat is
//! free to take over.
//!
//! Policy: the id is new for every process; the `name` (`INSTANCE_NAME`, or host:port) stays the same across
//! restarts of one deployment slot, so a restarted process deletes its earlier incarnation's row at start
//! and takes its runs over at once. On SQLite exactly one process serves a database (`db::InstanceLock`),
//! so at start every other row is dead and deleted. An instance is dead when its heartbeat is older than
//! `INSTANCE_TIMEOUT_SECS` by the database's clock ([`DbClock`]), never by a host's wall clock. A process
//! that finds its own row gone (another took it for dead, e.g. after a long pause) writes it again; the runs
//! it held were taken over meanwhile, and the fenced writes of those runs tell it to stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::db::{Db, DbClock, Timestamp};
use crate::db_dispatch;

/// Rows of instances dead for longer than this are deleted (they are kept a while to be seen in the table).
const FORGET_DEAD_AFTER: Duration = Duration::from_secs(24 * 3600);

/// This process as the other instances see it.
#[derive(Debug)]
pub struct Instance {
    id: Arc<str>,
    name: String,
    host: String,
    pid: u32,
    timeout: Duration,
    clock: Arc<DbClock>,
    db: Option<Db>,
    /// Whether the row is written (registration waits for the database when it is away or not migrated).
    registered: AtomicBool,
    /// Serving alone (SQLite): every other row is dead at registration.
    only_one: bool,
}

/// Who this process is: its slot name and how long it may stay silent before others take its runs.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Stable across restarts of one slot.
    pub name: String,
    /// A heartbeat older than this means dead.
    pub timeout: Duration,
}

impl Instance {
    /// This process, not yet registered. `only_one` (SQLite) says no other process can be serving, so
    /// registering deletes every other row; otherwise only the earlier incarnations of the same name. Until
    /// the first reading of the database's clock, this host's clock stands in.
    pub fn new(db: &Db, identity: Identity, only_one: bool) -> Arc<Self> {
        Arc::new(Self {
            id: uuid::Uuid::now_v7().to_string().into(),
            name: identity.name,
            host: host_name(),
            pid: std::process::id(),
            timeout: identity.timeout,
            clock: Arc::new(DbClock::starting_at(Timestamp::now())),
            db: Some(db.clone()),
            registered: AtomicBool::new(false),
            only_one,
        })
    }

    /// Writes this instance's row and deletes the rows of instances it replaces (its earlier incarnations;
    /// on SQLite every other). When it fails (the database is away, migrations are pending), serving goes
    /// on and every heartbeat tries again.
    pub async fn register(&self) -> Result<(), sqlx::Error> {
        let Some(db) = &self.db else { return Ok(()) };
        self.clock.resync(db).await?;
        self.insert(db).await?;
        let replaced = db_dispatch!(db, pool => sqlx::query(
            "DELETE FROM instances WHERE id <> $1 AND ($2 OR name = $3)",
        )
        .bind(&*self.id)
        .bind(self.only_one)
        .bind(&self.name)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        self.registered.store(true, Ordering::Release);
        tracing::info!(
            instance_id = %self.id,
            name = %self.name,
            replaced,
            "instance registered"
        );
        Ok(())
    }

    /// An instance that is in no table (unit tests of what uses one): its clock is this host's.
    pub fn unregistered(id: &str, timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            id: id.into(),
            name: id.to_owned(),
            host: host_name(),
            pid: std::process::id(),
            timeout,
            clock: Arc::new(DbClock::starting_at(Timestamp::now())),
            db: None,
            registered: AtomicBool::new(true),
            only_one: false,
        })
    }

    /// The id leases name.
    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    /// The database's clock as this instance keeps it (shared with the periodic jobs' leases).
    pub fn clock(&self) -> Arc<DbClock> {
        self.clock.clone()
    }

    /// The database's time now.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Instances with a heartbeat at or after this are alive.
    pub fn alive_since(&self) -> Timestamp {
        self.now() - self.timeout
    }

    /// How often the heartbeat is written: three times per timeout, so one late beat is no death.
    pub fn heartbeat_every(&self) -> Duration {
        (self.timeout / 3).max(Duration::from_secs(1))
    }

    async fn insert(&self, db: &Db) -> Result<(), sqlx::Error> {
        let now = self.now();
        db_dispatch!(db, pool => sqlx::query(
            "INSERT INTO instances (id, name, host, pid, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        )
        .bind(&*self.id)
        .bind(&self.name)
        .bind(&self.host)
        .bind(i64::from(self.pid))
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ()))
    }

    /// One heartbeat: read the database's clock again, record the beat (writing the row again when someone
    /// took this instance for dead), forget instances dead for a day.
    pub async fn beat(&self) -> Result<(), sqlx::Error> {
        let Some(db) = &self.db else { return Ok(()) };
        if !self.registered.load(Ordering::Acquire) {
            return self.register().await;
        }
        self.clock.resync(db).await?;
        let beaten = db_dispatch!(db, pool => sqlx::query(
            "UPDATE instances SET heartbeat_at = $1 WHERE id = $2",
        )
        .bind(self.now())
        .bind(&*self.id)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        if beaten == 0 {
            tracing::warn!(instance_id = %self.id, "this instance was taken for dead; registering again");
            self.insert(db).await?;
        }
        db_dispatch!(db, pool => sqlx::query("DELETE FROM instances WHERE heartbeat_at < $1")
            .bind(self.now() - FORGET_DEAD_AFTER)
            .execute(pool)
            .await
            .map(|_| ()))
    }

    /// Beats every [`Self::heartbeat_every`] until the handle is aborted.
    pub fn spawn_heartbeat(self: &Arc<Self>) -> JoinHandle<()> {
        let instance = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(instance.heartbeat_every());
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                if let Err(err) = instance.beat().await {
                    tracing::warn!(error = %err, "cannot record this instance's heartbeat or registration");
                }
            }
        })
    }

    /// Removes this instance's row (a graceful stop, after its runs were released).
    pub async fn deregister(&self) {
        let Some(db) = &self.db else { return };
        let removed = db_dispatch!(db, pool => sqlx::query("DELETE FROM instances WHERE id = $1")
            .bind(&*self.id)
            .execute(pool)
            .await
            .map(|_| ()));
        if let Err(err) = removed {
            tracing::warn!(error = %err, "cannot remove this instance's row");
        }
    }
}

/// This host's name (for people reading the table), `localhost` when it cannot be read.
/// This machine's host name (for instance names).
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The slot name when `INSTANCE_NAME` is not set: this host and the port served.
pub fn default_name(port: u16) -> String {
    format!("{}:{port}", host_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn rows(db: &Db) -> Vec<(String, String)> {
        db_dispatch!(db, pool => sqlx::query_as("SELECT id, name FROM instances ORDER BY id")
            .fetch_all(pool)
            .await)
        .expect("rows")
    }

    async fn registered(db: &Db, name: &str, only_one: bool) -> Arc<Instance> {
        let identity = Identity {
            name: name.to_owned(),
            timeout: Duration::from_secs(10),
        };
        let instance = Instance::new(db, identity, only_one);
        instance.register().await.expect("registered");
        instance
    }

    #[tokio::test]
    async fn an_instance_registers_once_the_database_is_ready() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::connect(&format!("sqlite://{}/fresh.db", dir.path().display()))
            .await
            .expect("sqlite opens");
        let identity = Identity {
            name: "web-1".to_owned(),
            timeout: Duration::from_secs(10),
        };
        let instance = Instance::new(&db, identity, true);
        assert!(
            instance.register().await.is_err(),
            "no tables before the migrations"
        );
        crate::db::migrate::run(&db)
            .await
            .expect("migrations apply");
        instance.beat().await.expect("the heartbeat registers it");
        assert_eq!(rows(&db).await.len(), 1);
    }

    #[tokio::test]
    async fn a_restart_replaces_its_earlier_incarnation_and_keeps_other_slots() {
        let (db, _dir, _, _) = crate::db::test_database().await;
        let first = registered(&db, "web-1", false).await;
        let other = registered(&db, "web-2", false).await;
        let again = registered(&db, "web-1", false).await;
        let mut expected = vec![
            (other.id().to_string(), "web-2".to_owned()),
            (again.id().to_string(), "web-1".to_owned()),
        ];
        expected.sort();
        assert_eq!(rows(&db).await, expected, "{} is gone", first.id());

        // Only one process serves a SQLite file: every other row is dead.
        let only = registered(&db, "web-3", true).await;
        assert_eq!(
            rows(&db).await,
            vec![(only.id().to_string(), "web-3".to_owned())]
        );
    }

    #[tokio::test]
    async fn an_instance_taken_for_dead_registers_again_and_a_stop_removes_it() {
        let (db, _dir, _, _) = crate::db::test_database().await;
        let instance = registered(&db, "web-1", false).await;
        db_dispatch!(&db, pool => sqlx::query("DELETE FROM instances").execute(pool).await.map(|_| ()))
            .unwrap();
        instance.beat().await.unwrap();
        assert_eq!(rows(&db).await.len(), 1, "back after its heartbeat");
        instance.deregister().await;
        assert!(rows(&db).await.is_empty());
        assert!(instance.alive_since() < instance.now());
        assert_eq!(instance.heartbeat_every(), Duration::from_secs(10) / 3);
    }
}
