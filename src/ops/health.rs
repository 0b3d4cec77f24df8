//! The checks behind the health report: the probe trait, bounded and cached checks, the database probe.
//! The endpoints that answer with them are `ops::routes`.
//!
//! Policy: each check is bounded (2 s); upstream checks are cached for 10 s behind a single-flight lock,
//! so a burst of probes costs a provider one request. A failure is reported as a fixed reason (`failed`,
//! `timed_out`); the probe's own words go to the log, on the request's span and so with its correlation id.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Serialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::db::Db;

/// Upper bound of one check.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an upstream check's result is reused.
pub const UPSTREAM_CACHE_TTL: Duration = Duration::from_secs(10);

/// Something that can be checked: a database, a provider endpoint.
pub trait Probe: Send + Sync {
    /// `Ok` when reachable and working; `Err` with a short explanation for the log otherwise.
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;

    /// The check with what the report may say about a working dependency (Temporal: how many workers
    /// poll); by default, nothing more than [`Probe::check`].
    fn detail(&self) -> BoxFuture<'_, Result<Option<String>, String>> {
        Box::pin(async move { self.check().await.map(|()| None) })
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// Reachable and working.
    Healthy,
    /// Configured but failing.
    Unhealthy,
    /// Not configured; does not make the service unhealthy.
    NotConfigured,
}

/// Why a configured check is unhealthy, as the public report says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckFailure {
    /// The dependency answered with an error or could not be reached (details in the log).
    Failed,
    /// No answer within the check's time limit.
    TimedOut,
}

/// One entry of the health report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// Outcome.
    pub status: CheckStatus,
    /// How long the check took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Why it is unhealthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<CheckFailure>,
    /// Which implementation is in use (`sqlite`, `local`, `sdapi`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    /// What else the check found (`temporal`: the workers polling its task queue).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl CheckResult {
    fn not_configured() -> Self {
        Self {
            status: CheckStatus::NotConfigured,
            latency_ms: None,
            error: None,
            kind: None,
            detail: None,
        }
    }
}

/// A check of one dependency, optionally cached.
pub struct Check {
    kind: Option<&'static str>,
    probe: Option<Arc<dyn Probe>>,
    timeout: Duration,
    cache_ttl: Option<Duration>,
    cache: Mutex<Option<(Instant, CheckResult)>>,
}

impl Check {
    /// A dependency that is not configured.
    pub fn not_configured() -> Self {
        Self {
            kind: None,
            probe: None,
            timeout: CHECK_TIMEOUT,
            cache_ttl: None,
            cache: Mutex::new(None),
        }
    }

    /// A dependency checked on every request (the database: cheap and local).
    pub fn live(kind: &'static str, probe: Arc<dyn Probe>) -> Self {
        Self {
            kind: Some(kind),
            probe: Some(probe),
            ..Self::not_configured()
        }
    }

    /// A remote dependency whose result is reused for `ttl`.
    pub fn cached(kind: &'static str, probe: Arc<dyn Probe>, ttl: Duration) -> Self {
        Self {
            cache_ttl: Some(ttl),
            ..Self::live(kind, probe)
        }
    }

    /// Overrides the time limit (tests use short ones).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs the check, or returns the cached result when it is fresh.
    pub async fn run(&self) -> CheckResult {
        let Some(probe) = &self.probe else {
            return CheckResult::not_configured();
        };
        let Some(ttl) = self.cache_ttl else {
            return self.probe_once(probe.as_ref()).await;
        };
        // Holding the lock while probing makes concurrent callers wait for one probe instead of each
        // sending their own.
        let mut cache = self.cache.lock().await;
        if let Some((at, result)) = cache.as_ref()
            && at.elapsed() < ttl
        {
            return result.clone();
        }
        let result = self.probe_once(probe.as_ref()).await;
        *cache = Some((Instant::now(), result.clone()));
        result
    }

    async fn probe_once(&self, probe: &dyn Probe) -> CheckResult {
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.timeout, probe.detail()).await;
        let latency_ms = Some(started.elapsed().as_millis() as u64);
        let kind = self.kind.unwrap_or("unknown");
        let mut found = None;
        let (status, error) = match outcome {
            Ok(Ok(detail)) => {
                found = detail;
                (CheckStatus::Healthy, None)
            }
            Ok(Err(detail)) => {
                tracing::warn!(check = kind, error = %detail, "health check failed");
                (CheckStatus::Unhealthy, Some(CheckFailure::Failed))
            }
            Err(_) => {
                tracing::warn!(
                    check = kind,
                    timeout_ms = self.timeout.as_millis() as u64,
                    "health check timed out"
                );
                (CheckStatus::Unhealthy, Some(CheckFailure::TimedOut))
            }
        };
        CheckResult {
            status,
            latency_ms,
            error,
            kind: self.kind,
            detail: found,
        }
    }
}

/// The checks `/api/health` reports.
pub struct HealthChecks {
    /// The database.
    pub database: Check,
    /// Where media files live (a folder or an S3 bucket).
    pub storage: Check,
    /// The engine running chat runs.
    pub workflow_engine: Check,
    /// Whether an engine outside this process answers (readiness; Temporal only).
    pub engine_reachable: Option<Check>,
    /// The Redis Streams bus between instances (`REDIS_URL`), when there is one.
    pub relay_bus: Check,
    /// The language model endpoint.
    pub llm: Check,
    /// The image generation backend.
    pub image_backend: Check,
}

/// Checks the database with one round trip.
pub struct DatabaseProbe(pub Db);

impl Probe for DatabaseProbe {
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.0.ping().await.map_err(|err| err.to_string()) })
    }
}

/// The in-process engine lives and dies with this process: answering at all means it is there.
pub struct InProcessProbe;

impl Probe for InProcessProbe {
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct CountingProbe {
        calls: AtomicUsize,
        delay: Duration,
        fail: bool,
    }

    impl Probe for CountingProbe {
        fn check(&self) -> BoxFuture<'_, Result<(), String>> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(self.delay).await;
                if self.fail {
                    Err("HTTP 500".into())
                } else {
                    Ok(())
                }
            })
        }
    }

    fn probe(delay: Duration, fail: bool) -> Arc<CountingProbe> {
        Arc::new(CountingProbe {
            calls: AtomicUsize::new(0),
            delay,
            fail,
        })
    }

    #[tokio::test]
    async fn a_burst_of_health_probes_reaches_upstream_once() {
        let upstream = probe(Duration::from_millis(20), false);
        let check = Check::cached("llm", upstream.clone(), Duration::from_secs(10));
        let results = futures_util::future::join_all((0..20).map(|_| check.run())).await;
        assert!(results.iter().all(|r| r.status == CheckStatus::Healthy));
        assert_eq!(upstream.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn cached_results_expire_after_their_ttl() {
        let upstream = probe(Duration::ZERO, true);
        let check = Check::cached("llm", upstream.clone(), Duration::from_secs(10));
        let first = check.run().await;
        assert_eq!(first.status, CheckStatus::Unhealthy);
        assert_eq!(first.error, Some(CheckFailure::Failed));
        check.run().await;
        assert_eq!(upstream.calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(11)).await;
        check.run().await;
        assert_eq!(upstream.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_upstream_is_reported_unhealthy_after_the_timeout() {
        let upstream = probe(Duration::from_secs(3600), false);
        let check = Check::cached("sdapi", upstream, UPSTREAM_CACHE_TTL);
        let result = check.run().await;
        assert_eq!(result.status, CheckStatus::Unhealthy);
        assert_eq!(result.error, Some(CheckFailure::TimedOut));
        assert!(result.latency_ms.unwrap_or(0) >= 2000);
    }

    #[tokio::test]
    async fn unconfigured_checks_never_probe() {
        let result = Check::not_configured().run().await;
        assert_eq!(result.status, CheckStatus::NotConfigured);
        assert_eq!(
            serde_json::to_value(&result).expect("test setup is valid"),
            serde_json::json!({"status": "not_configured"})
        );
    }
}
