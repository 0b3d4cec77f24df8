//! Building and serving the application: state, the router merged from every feature, the middleware stack.
//!
//! `App::build` opens the database and brings its schema up to date (or refuses an incompatible one);
//! `App::serve` runs the HTTP server on a listener the caller bound, until `shutdown` resolves, then
//! drains in-flight requests. Tests bind port 0 and call the same two functions as the binary.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::chat::runner::ChatExecutor;
use crate::config::Config;
use crate::db::migrate::{self, MigrationError};
use crate::db::{ConnectError, Db, InstanceLock, Timestamp};
use crate::engine::bus::RedisBus;
use crate::engine::instances::{self, Instance};
use crate::engine::{Engine, LocalEngine, Relay, RunExecutor, StreamHub};
use crate::error::AppError;
use crate::media::generate::Imaging;
use crate::media::{self, MediaStorage};
use crate::ops::health::{
    Check, DatabaseProbe, HealthChecks, InProcessProbe, Probe, UPSTREAM_CACHE_TTL,
};
use crate::ops::jobs::JobLeases;
use crate::ops::metrics::AppCounters;
use crate::providers::images::ImageClient;
use crate::providers::llm::LlmClient;
use crate::state::AppState;
use crate::web::keys::ServerKeys;
use crate::web::security_headers::{SecurityHeaders, add_security_headers};
use crate::web::{RateLimiter, assets, csrf, error_pages, observe, session};
use crate::{accounts, chat, companions, export, home, images, ops, providers};

pub use crate::web::limits::{MAX_FORM_BYTES, MAX_REQUEST_BYTES};
/// How often unfinished chat runs nobody holds are looked for (one indexed query): a run of an instance that
/// died is taken over within a second of its heartbeat going stale (`INSTANCE_TIMEOUT_SECS`).
pub const RUN_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// How often expired sessions and rate-limit windows are deleted.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(600);
/// A request that has not produced its response headers by then is answered 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened.
    #[error(transparent)]
    Database(#[from] ConnectError),
    /// The schema could not be brought up to date, or is incompatible.
    #[error(transparent)]
    Migration(#[from] MigrationError),
    /// Anything else (metrics recorder, HTTP client).
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

/// A built application, ready to serve.
pub struct App {
    config: Arc<Config>,
    db: Db,
    metrics: PrometheusHandle,
    http: reqwest::Client,
    media: MediaStorage,
    keys: Arc<ServerKeys>,
    counters: Arc<AppCounters>,
    /// Bound at build time when `METRICS_LISTEN_ADDR` is set: `/metrics` is served there and nowhere else.
    metrics_listener: Option<TcpListener>,
}

impl App {
    /// Opens the database, applies migrations (unless `MIGRATE_ON_START=false`) and checks the schema.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let metrics = ops::metrics::install()?;
        let http = providers::http_client()?;
        let db = Db::connect(config.database_url.expose()).await?;
        if config.migrate_on_start {
            let applied = migrate::run(&db).await?;
            if !applied.is_empty() {
                tracing::info!(versions = ?applied, "database migrations applied");
            }
        } else {
            let status = migrate::status(&db).await?;
            if let Some(problem) = status.incompatibility() {
                return Err(problem.into());
            }
            let pending = status.pending().count();
            if pending > 0 {
                tracing::warn!(
                    pending,
                    "database migrations are pending and MIGRATE_ON_START=false: \
                     run `companion-hub migrate`; /api/ready answers 503 until then"
                );
            }
        }
        let media = MediaStorage::open(&config.storage)?;
        accounts::password::warm_up()
            .await
            .map_err(|err| anyhow::anyhow!("{err}"))?;
        // Loading the tokenizer's tables takes a moment: not on the first reply.
        tokio::task::spawn_blocking(chat::prompt::warm_up_tokenizer);
        let metrics_listener = match config.metrics_listen_addr {
            Some(address) => Some(TcpListener::bind(address).await.map_err(|err| {
                anyhow::anyhow!("cannot listen on METRICS_LISTEN_ADDR {address}: {err}")
            })?),
            None => None,
        };
        Ok(Self {
            metrics_listener,
            counters: Arc::default(),
            config: Arc::new(config),
            keys: Arc::new(ServerKeys::new(db.clone())),
            db,
            metrics,
            http,
            media,
        })
    }

    /// The database this app uses.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// This app's own counters (unlike the process-wide metrics recorder).
    pub fn counters(&self) -> Arc<AppCounters> {
        self.counters.clone()
    }

    /// Where `/metrics` is served when `METRICS_LISTEN_ADDR` is set (the bound port when it asked for 0).
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// What executes runs in a process that serves or works: this instance in the registry (with its
    /// heartbeat), the stream hub, the executor and, on PostgreSQL, the relay.
    async fn run_parts(&self, name: String, only_one: bool) -> std::io::Result<RunParts> {
        let identity = instances::Identity {
            name,
            timeout: self.config.instance_timeout,
        };
        let registry = Instance::new(&self.db, identity, only_one);
        if let Err(err) = registry.register().await {
            tracing::warn!(error = %err, "cannot register this instance yet; every heartbeat tries again");
        }
        let heartbeat = registry.spawn_heartbeat();
        let instance = registry.id().to_string();
        let hub = Arc::new(StreamHub::new());
        let llm = self
            .config
            .llm
            .as_ref()
            .map(|llm| LlmClient::new(self.http.clone(), llm));
        let imaging = Imaging::new(
            self.db.clone(),
            self.media.clone(),
            ImageClient::new(
                self.http.clone(),
                &self.config.image_backend,
                &self.config.images,
            ),
            self.config.images.clone(),
        );
        let executor = ChatExecutor::new(
            self.db.clone(),
            llm,
            imaging.clone(),
            hub.clone(),
            registry.clone(),
        )
        .with_reply_slots(self.config.max_active_replies)
        .with_lease(self.config.run_lease);
        let redis = match &self.config.redis {
            Some(redis) => Some(
                RedisBus::new(redis.url.expose(), &redis.key_prefix, &instance)
                    .map_err(|err| std::io::Error::other(format!("REDIS_URL: {err}")))?,
            ),
            None => None,
        };
        let shared: Arc<dyn RunExecutor> = Arc::new(executor.clone());
        let (relay, relay_task) = match Relay::start(&self.db, hub.clone(), shared.clone(), redis) {
            Some((relay, task)) => (Some(relay), Some(task)),
            None => (None, None),
        };
        Ok(RunParts {
            registry,
            heartbeat,
            hub,
            executor,
            shared,
            relay,
            relay_task,
            imaging,
        })
    }

    /// The engine `WORKFLOW_ENGINE` names, its sweeper and (Temporal, `WORKER_IN_PROCESS`) a worker here.
    fn engine(&self, parts: &RunParts) -> std::io::Result<EngineParts> {
        let Some(temporal) = self.config.workflow_engine.temporal() else {
            let engine = LocalEngine::new(parts.shared.clone());
            // Unfinished runs left by a previous start (or a crashed instance) are resumed now and then.
            let sweeper = engine.spawn_sweeper(RUN_SWEEP_INTERVAL);
            return Ok(EngineParts {
                engine: Engine::Local(engine.clone()),
                local: Some(engine),
                sweeper,
                probe: Some(Check::live("local", Arc::new(InProcessProbe))),
                reachable: None,
                worker: None,
            });
        };
        self.temporal_engine(parts, temporal, temporal.worker_in_process)
    }

    #[cfg(feature = "temporal")]
    fn temporal_engine(
        &self,
        parts: &RunParts,
        temporal: &crate::config::TemporalConfig,
        with_worker: bool,
    ) -> std::io::Result<EngineParts> {
        use crate::chat::temporal::{
            TemporalClient, TemporalEngine, TemporalProbe, TemporalReachability,
            activities::ChatActivities, worker::WorkerThread,
        };
        let client = TemporalClient::new(temporal, parts.registry.id());
        let engine = Arc::new(
            TemporalEngine::new(client.clone(), temporal, self.config.run_deadline)
                .with_executor(parts.executor.clone()),
        );
        let sweeper = engine.spawn_sweeper(RUN_SWEEP_INTERVAL);
        let worker = match with_worker {
            true => Some(WorkerThread::spawn(
                client.clone(),
                ChatActivities::new(
                    parts.executor.clone(),
                    parts.hub.clone(),
                    parts.relay.clone(),
                    tokio::runtime::Handle::current(),
                ),
                self.config
                    .max_active_replies
                    .unwrap_or(crate::chat::temporal::worker::DEFAULT_STEPS),
            )?),
            false => None,
        };
        Ok(EngineParts {
            engine: Engine::External(engine),
            local: None,
            sweeper,
            probe: Some(Check::cached(
                "temporal",
                Arc::new(TemporalProbe(client.clone())),
                TEMPORAL_CACHE_TTL,
            )),
            reachable: Some(Check::cached(
                "temporal",
                Arc::new(TemporalReachability(client)),
                TEMPORAL_CACHE_TTL,
            )),
            worker: worker.map(EngineWorker),
        })
    }

    #[cfg(not(feature = "temporal"))]
    fn temporal_engine(
        &self,
        _parts: &RunParts,
        _temporal: &crate::config::TemporalConfig,
        _with_worker: bool,
    ) -> std::io::Result<EngineParts> {
        Err(std::io::Error::other(
            "WORKFLOW_ENGINE=temporal: this binary was built without Temporal (--features temporal)",
        ))
    }

    /// Serves HTTP on `listener` until `shutdown` resolves, then finishes in-flight requests.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let bound = listener.local_addr()?;
        // One process serves a SQLite database: held until this function returns (or the process dies).
        let serving_lock = match self.db.sqlite_file() {
            Some(file) => Some(InstanceLock::try_acquire(&file).map_err(std::io::Error::other)?),
            None => None,
        };
        let name = self
            .config
            .instance_name
            .clone()
            .unwrap_or_else(|| instances::default_name(bound.port()));
        let parts = self.run_parts(name, serving_lock.is_some()).await?;
        let mut engine = self.engine(&parts)?;
        let state = self.state(bound, &parts, &mut engine);
        let router = router(state.clone());
        let metrics_server = self.metrics_listener.take().map(|metrics_listener| {
            let address = metrics_listener.local_addr().ok();
            tracing::info!(address = ?address, "metrics are served on their own listener");
            let metrics_app = ops::metrics_router(state.clone());
            tokio::spawn(async move {
                let served = axum::serve(metrics_listener, metrics_app).await;
                if let Err(err) = served {
                    tracing::error!(error = %err, "the metrics listener stopped");
                }
            })
        });

        let purge = ops::jobs::spawn_periodic(
            JobLeases::new(self.db.clone(), parts.registry.id().to_string())
                .timed_by(parts.registry.clock()),
            "purge-expired",
            PURGE_INTERVAL,
            {
                let db = self.db.clone();
                let limiter = state.rate_limiter.clone();
                let idle = self.config.auth.session_idle();
                move || purge_expired(db.clone(), limiter.clone(), idle)
            },
        );
        let cleanup = self.config.cleanup.interval.map(|interval| {
            ops::jobs::spawn_periodic(
                JobLeases::new(self.db.clone(), parts.registry.id().to_string())
                    .timed_by(parts.registry.clock()),
                "cleanup-images",
                interval,
                {
                    let (db, media) = (self.db.clone(), self.media.clone());
                    let grace = self.config.cleanup.grace;
                    move || {
                        let (db, media) = (db.clone(), media.clone());
                        async move {
                            media::cleanup::sweep(&db, &media, grace, false).await?;
                            Ok(())
                        }
                    }
                },
            )
        });
        let upkeep = self.spawn_upkeep();

        tracing::info!(
            address = %bound,
            database = self.db.backend().name(),
            engine = self.config.workflow_engine.name(),
            version = env!("CARGO_PKG_VERSION"),
            "companion hub is listening"
        );
        // Tokens are small writes: without TCP_NODELAY, Nagle's algorithm holds one behind the client's
        // delayed ACK (~40 ms) whenever the previous one is unacknowledged (loadgen measured it: p99 relay 40 ms).
        let listener = listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!(error = %err, "cannot set TCP_NODELAY on a connection");
            }
        });
        let served = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;

        upkeep.abort();
        if let Some(metrics_server) = metrics_server {
            metrics_server.abort();
        }
        purge.abort();
        if let Some(cleanup) = cleanup {
            cleanup.abort();
        }
        engine.stop().await;
        parts.stop().await;
        self.db.close().await;
        drop(serving_lock);
        tracing::info!("companion hub stopped");
        served
    }

    /// `companion-hub worker`: only a Temporal worker (no pages), with `/metrics`, `/api/health` and
    /// `/api/ready` on `WORKER_LISTEN_ADDR` when set, until `shutdown` resolves.
    pub async fn work(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Some(temporal) = self.config.workflow_engine.temporal() else {
            return Err(std::io::Error::other(
                "`worker` runs Temporal workers: set WORKFLOW_ENGINE=temporal",
            ));
        };
        if self.db.sqlite_file().is_some() {
            return Err(std::io::Error::other(
                "`worker` needs PostgreSQL: a separate worker streams replies to the web instances through it",
            ));
        }
        let listener = match temporal.worker_listen_addr {
            Some(address) => Some(TcpListener::bind(address).await.map_err(|err| {
                std::io::Error::other(format!(
                    "cannot listen on WORKER_LISTEN_ADDR {address}: {err}"
                ))
            })?),
            None => None,
        };
        let name =
            self.config.instance_name.clone().unwrap_or_else(|| {
                format!("{}-worker-{}", instances::host_name(), std::process::id())
            });
        let parts = self.run_parts(name, false).await?;
        let mut engine = self.temporal_engine(&parts, temporal, true)?;
        let bound = listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let state = self.state(bound, &parts, &mut engine);
        let server = listener.map(|listener| {
            tracing::info!(address = %bound, "the worker serves /metrics and its health");
            let app = ops::worker_router(state.clone());
            tokio::spawn(async move {
                if let Err(err) = axum::serve(listener, app).await {
                    tracing::error!(error = %err, "the worker's listener stopped");
                }
            })
        });
        let upkeep = self.spawn_upkeep();
        tracing::info!(
            database = self.db.backend().name(),
            task_queue = %temporal.task_queue,
            version = env!("CARGO_PKG_VERSION"),
            "companion hub worker started"
        );
        shutdown.await;
        upkeep.abort();
        if let Some(server) = server {
            server.abort();
        }
        engine.stop().await;
        parts.stop().await;
        self.db.close().await;
        tracing::info!("companion hub worker stopped");
        Ok(())
    }

    /// Keeps the metrics' histograms fresh.
    fn spawn_upkeep(&self) -> tokio::task::JoinHandle<()> {
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(5));
            loop {
                ticker.tick().await;
                metrics.run_upkeep();
            }
        })
    }

    fn state(&self, bound: SocketAddr, parts: &RunParts, engine: &mut EngineParts) -> AppState {
        let relay = parts.relay.clone();
        let config = &self.config;
        let llm = match providers::llm_probe(config, &self.http) {
            Some(probe) => Check::cached("openai_compatible", Arc::new(probe), UPSTREAM_CACHE_TTL),
            None => Check::not_configured(),
        };
        let image_backend = match providers::image_probe(config, &self.http) {
            Some(probe) => Check::cached(
                config.image_backend.name(),
                Arc::new(probe),
                UPSTREAM_CACHE_TTL,
            ),
            None => Check::not_configured(),
        };
        let health = HealthChecks {
            database: Check::live(
                self.db.backend().name(),
                Arc::new(DatabaseProbe(self.db.clone())),
            ),
            storage: Check::cached(
                config.storage.name(),
                Arc::new(StorageProbe(self.media.clone())),
                STORAGE_CACHE_TTL,
            ),
            workflow_engine: engine.probe.take().unwrap_or_else(Check::not_configured),
            engine_reachable: engine.reachable.take(),
            relay_bus: match relay.as_ref().and_then(|relay| relay.redis()) {
                Some(redis) => Check::cached(
                    "redis",
                    Arc::new(RedisProbe(redis.clone())),
                    STORAGE_CACHE_TTL,
                ),
                None => Check::not_configured(),
            },
            llm,
            image_backend,
        };
        AppState {
            config: self.config.clone(),
            db: self.db.clone(),
            metrics: self.metrics.clone(),
            counters: self.counters.clone(),
            health: Arc::new(health),
            http: self.http.clone(),
            allowed_origins: Arc::new(config.allowed_origins(bound)),
            rate_limiter: RateLimiter::new(
                self.db.clone(),
                config.rate_limits.clone(),
                self.keys.clone(),
            ),
            keys: self.keys.clone(),
            media: self.media.clone(),
            imaging: parts.imaging.clone(),
            engine: engine.engine.clone(),
            hub: parts.hub.clone(),
            relay,
            clock: parts.registry.clock(),
        }
    }
}

/// What runs chat runs in a serving or working process ([`App::run_parts`]).
struct RunParts {
    registry: Arc<Instance>,
    heartbeat: tokio::task::JoinHandle<()>,
    hub: Arc<StreamHub>,
    /// What a Temporal worker's activities execute with.
    #[cfg_attr(not(feature = "temporal"), allow(dead_code))]
    executor: ChatExecutor,
    shared: Arc<dyn RunExecutor>,
    relay: Option<Arc<Relay>>,
    relay_task: Option<tokio::task::JoinHandle<()>>,
    imaging: Imaging,
}

impl RunParts {
    /// Stops the relay and the heartbeat and leaves the registry.
    async fn stop(self) {
        if let Some(relay_task) = self.relay_task {
            relay_task.abort();
        }
        self.heartbeat.abort();
        self.registry.deregister().await;
    }
}

/// The engine of a process, with what it runs beside ([`App::engine`]).
struct EngineParts {
    engine: Engine,
    /// The in-process engine, when it is the one (stopped at shutdown).
    local: Option<Arc<LocalEngine>>,
    sweeper: tokio::task::JoinHandle<()>,
    /// The `workflow_engine` health check (taken by the state).
    probe: Option<Check>,
    /// Whether an external engine answers (readiness).
    reachable: Option<Check>,
    worker: Option<EngineWorker>,
}

/// A Temporal worker running in this process.
#[cfg(feature = "temporal")]
struct EngineWorker(crate::chat::temporal::worker::WorkerThread);
#[cfg(not(feature = "temporal"))]
struct EngineWorker;

/// How long a worker may take to hand its steps back at shutdown; Temporal gives what is left to another
/// worker once the heartbeats stop.
#[cfg(feature = "temporal")]
const WORKER_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the Temporal checks' results are reused.
#[cfg(feature = "temporal")]
const TEMPORAL_CACHE_TTL: Duration = Duration::from_secs(2);

impl EngineParts {
    /// Stops the sweeper, the in-process runs (their leases released for the next start) and the worker.
    async fn stop(self) {
        self.sweeper.abort();
        if let Some(local) = self.local {
            local.shutdown().await;
        }
        if let Some(worker) = self.worker {
            #[cfg(feature = "temporal")]
            if tokio::time::timeout(WORKER_STOP_TIMEOUT, worker.0.stop())
                .await
                .is_err()
            {
                tracing::warn!(
                    "the Temporal worker did not stop in time; Temporal retries its steps elsewhere"
                );
            }
            #[cfg(not(feature = "temporal"))]
            let EngineWorker = worker;
        }
    }
}

/// How long a storage check's result is reused: a bucket is a remote service, and the health endpoint
/// answers anyone.
const STORAGE_CACHE_TTL: Duration = Duration::from_secs(10);

/// Checks the media store with one cheap round trip ([`MediaStorage::probe`]).
struct StorageProbe(MediaStorage);

impl Probe for StorageProbe {
    fn check(&self) -> futures_util::future::BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.0.probe().await.map_err(|err| format!("{err:#}")) })
    }
}

/// Checks the Redis bus of the token path with one round trip (`PING`). Cached like the storage check:
/// the health endpoint answers anyone.
struct RedisProbe(RedisBus);

impl Probe for RedisProbe {
    fn check(&self) -> futures_util::future::BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.0.ping().await.map_err(|err| err.to_string()) })
    }
}

/// Every route of the application, wrapped in the middleware stack.
///
/// Layers run outside-in in the reverse order of the `.layer` calls: `observe` sees every request
/// first and every response last.
pub fn router(state: AppState) -> Router {
    let security = SecurityHeaders::new(state.config.is_https());
    // Pages and APIs of the features: sessions are loaded (outer) before CSRF is checked (inner).
    let features = Router::new()
        .merge(home::router())
        .merge(accounts::router())
        .merge(companions::router())
        .merge(media::routes::router())
        .merge(chat::router())
        .merge(images::router())
        .merge(export::router())
        .route_layer(from_fn_with_state(state.clone(), csrf::verify_csrf))
        .route_layer(from_fn_with_state(state.clone(), session::load_session));
    // Generating a picture waits for the image backend, which is bounded by IMAGE_TIMEOUT_SECS (and its
    // retries) rather than by the request timeout.
    let waits_for_images = images::generator_router()
        .route_layer(from_fn_with_state(state.clone(), csrf::verify_csrf))
        .route_layer(from_fn_with_state(state.clone(), session::load_session));
    Router::new()
        .merge(features)
        .merge(ops::router(state.config.metrics_listen_addr.is_none()))
        .route("/static/{*path}", get(assets::serve_asset))
        .fallback(not_found)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .merge(waits_for_images)
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(RequestBodyLimitLayer::new(MAX_REQUEST_BYTES))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(from_fn(error_pages::render_errors))
        .layer(CompressionLayer::new())
        .layer(from_fn_with_state(security, add_security_headers))
        .layer(from_fn(observe::observe))
        .with_state(state)
}

/// Deletes expired (or idle) sessions, rate-limit windows and sign-in guards.
async fn purge_expired(db: Db, limiter: RateLimiter, idle: Duration) -> anyhow::Result<()> {
    let now = Timestamp::now();
    let sessions = session::store::purge_expired(&db, now, idle).await?;
    let windows = limiter.purge_expired(now).await?;
    let guards = accounts::guards::purge_expired(&db, now).await?;
    tracing::debug!(
        sessions,
        rate_limit_windows = windows,
        login_guards = guards,
        "expired rows purged"
    );
    Ok(())
}

async fn not_found() -> AppError {
    AppError::NotFound
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    AppError::Internal(anyhow::anyhow!("handler panicked: {detail}")).into_response()
}
