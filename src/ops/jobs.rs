//! Periodic jobs (purging expired rows, sweeping orphaned images) run by exactly one instance at a time.
//!
//! Every instance ticks on the job's interval and tries to take the job's lease in `job_leases` with
//! one atomic upsert; only the instance that gets it runs the job. The lease lasts almost one interval,
//! so across the whole deployment the job runs about once per interval, whichever instances are up; while
//! the job runs its lease is renewed, so a run longer than an interval (a large bucket to sweep) is never
//! joined by another instance's.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::db::{Db, DbClock, Timestamp};
use crate::db_dispatch;

/// The lease table, seen from one instance.
#[derive(Clone)]
pub struct JobLeases {
    db: Db,
    holder: Arc<str>,
    clock: Option<Arc<DbClock>>,
}

impl JobLeases {
    /// Leases for the instance named `holder`, timed by this host's clock.
    pub fn new(db: Db, holder: impl Into<Arc<str>>) -> Self {
        Self {
            db,
            holder: holder.into(),
            clock: None,
        }
    }

    /// The same leases timed by the database's clock (what a serving instance uses: a clock jump on one
    /// host then moves no lease).
    pub fn timed_by(self, clock: Arc<DbClock>) -> Self {
        Self {
            clock: Some(clock),
            ..self
        }
    }

    /// The time lease decisions use.
    pub fn now(&self) -> Timestamp {
        self.clock
            .as_ref()
            .map_or_else(Timestamp::now, |clock| clock.now())
    }

    /// Takes the lease on `name` until `now + lease` when it is free, expired, or already ours.
    pub async fn try_claim(
        &self,
        name: &str,
        lease: Duration,
        now: Timestamp,
    ) -> Result<bool, sqlx::Error> {
        let until = now + lease;
        let claimed = db_dispatch!(&self.db, pool => sqlx::query(
            "INSERT INTO job_leases (name, holder, leased_until) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                 leased_until = excluded.leased_until \
             WHERE job_leases.leased_until <= $4 OR job_leases.holder = excluded.holder",
        )
        .bind(name)
        .bind(&*self.holder)
        .bind(until)
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(claimed == 1)
    }

    /// Records that the job finished (the lease stays until it expires).
    pub async fn record_run(&self, name: &str, at: Timestamp) -> Result<(), sqlx::Error> {
        db_dispatch!(&self.db, pool => sqlx::query(
            "UPDATE job_leases SET last_run_at = $1 WHERE name = $2 AND holder = $3",
        )
        .bind(at)
        .bind(name)
        .bind(&*self.holder)
        .execute(pool)
        .await
        .map(|_| ()))
    }
}

/// Runs `job` every `interval` on whichever instance holds its lease; stops when the handle is aborted.
pub fn spawn_periodic<F, Fut>(
    leases: JobLeases,
    name: &'static str,
    interval: Duration,
    job: F,
) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    // A little shorter than the interval, so the next tick of any instance finds it expired.
    let lease = interval.mul_f64(0.9);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match leases.try_claim(name, lease, leases.now()).await {
                Ok(false) => {
                    // Another instance holds the lease: it runs the job this time.
                    metrics::counter!("periodic_job_skips_total", "job" => name).increment(1);
                    continue;
                }
                Ok(true) => {}
                Err(err) => {
                    tracing::warn!(job = name, error = %err, "cannot claim periodic job lease");
                    continue;
                }
            }
            let result = tokio::select! {
                result = job() => result,
                () = keep_lease(&leases, name, lease) => {
                    // Only when the lease could not be renewed in time: another instance may run it now.
                    Err(anyhow::anyhow!("stopped: its lease lapsed while it ran"))
                }
            };
            let outcome = match result {
                Ok(()) => "success",
                Err(err) => {
                    tracing::warn!(
                        job = name,
                        error = format!("{err:#}"),
                        "periodic job failed"
                    );
                    "failure"
                }
            };
            metrics::counter!("periodic_job_runs_total", "job" => name, "outcome" => outcome)
                .increment(1);
            if let Err(err) = leases.record_run(name, leases.now()).await {
                tracing::warn!(job = name, error = %err, "cannot record periodic job run");
            }
        }
    })
}

/// Renews the lease on `name` every third of its length for as long as the job runs; returns only when it
/// no longer holds it (its renewals failed until it lapsed and another instance took it).
async fn keep_lease(leases: &JobLeases, name: &str, lease: Duration) {
    loop {
        tokio::time::sleep(lease / 3).await;
        match leases.try_claim(name, lease, leases.now()).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(err) => {
                tracing::warn!(job = name, error = %err, "cannot renew a periodic job's lease");
            }
        }
    }
}
