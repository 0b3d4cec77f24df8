//! Typed configuration read from the environment (and an optional `.env`), validated once at start.
//!
//! Policy: every variable has a documented default (DESIGN.md §5); loading never stops at the first
//! problem — it collects all of them so an operator fixes a broken deployment in one pass; secrets are
//! wrapped in [`Secret`] and never printed. Nothing here reads global state after loading: the
//! [`Config`] value is passed to `App::build`.

mod load;
mod providers;
mod reader;
mod secret;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use url::Url;

pub use load::{ConfigProblem, ConfigProblems};
pub use secret::{Secret, redact_url};

/// Everything the application needs to know about its deployment.
#[derive(Debug, Clone)]
pub struct Config {
    /// `sqlite://…` or `postgres://…`; may hold a password, hence secret.
    pub database_url: Secret,
    /// Address the HTTP server binds to.
    pub listen_addr: SocketAddr,
    /// Folder for local media and the default SQLite database.
    pub data_dir: PathBuf,
    /// The origin people use to reach the app (for CSRF Origin checks, Secure cookies, absolute links).
    pub public_url: Option<Url>,
    /// Apply pending migrations when the server starts.
    pub migrate_on_start: bool,
    /// Log output format; `None` picks pretty for a terminal and JSON otherwise.
    pub log_format: Option<LogFormat>,
    /// Default log filter (an `EnvFilter` directive); `RUST_LOG` overrides it.
    pub log_level: String,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Bearer token protecting `/metrics` when set.
    pub metrics_token: Option<Secret>,
    /// When set, `/metrics` is served only on this address (a second listener), not on `listen_addr`.
    pub metrics_listen_addr: Option<SocketAddr>,
    /// Session lifetime and account lockout.
    pub auth: AuthConfig,
    /// Per-action rate limits.
    pub rate_limits: RateLimits,
    /// The OpenAI-compatible language model, when configured.
    pub llm: Option<LlmConfig>,
    /// The image generation backend.
    pub image_backend: ImageBackendConfig,
    /// Timeout and per-art-style generation settings.
    pub images: ImageSettings,
    /// Where media files live.
    pub storage: StorageConfig,
    /// Which engine runs chat runs.
    pub workflow_engine: WorkflowEngineConfig,
    /// The orphaned-image sweep.
    pub cleanup: CleanupConfig,
    /// Every chat run reaches a terminal state within this time.
    pub run_deadline: Duration,
    /// At most this many replies are written (streamed and analysed) at once on this instance
    /// (`MAX_ACTIVE_REPLIES`; `None`: no limit); the others wait for a slot, within their deadline.
    pub max_active_replies: Option<usize>,
    /// An instance whose heartbeat is older than this is dead: its runs are taken over.
    pub instance_timeout: Duration,
    /// How long a claim on a run lasts without renewal (`RUN_LEASE_SECS`); renewed every third of it.
    pub run_lease: Duration,
    /// The name this instance keeps across restarts (`INSTANCE_NAME`; default host:port).
    pub instance_name: Option<String>,
    /// The Redis Streams bus for tokens between instances (`REDIS_URL`, PostgreSQL only); `None`: the
    /// token path goes through PostgreSQL's notifications.
    pub redis: Option<RedisConfig>,
}

/// Where the Redis Streams bus lives.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host[:port][/db]`; may hold a password.
    pub url: Secret,
    /// Every key this deployment writes starts with it (`REDIS_KEY_PREFIX`), so deployments can share a
    /// server.
    pub key_prefix: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, coloured when writing to a terminal.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Session lifetime and account lockout settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Days a session lives without being revoked (from sign-in, however active).
    pub session_days: u32,
    /// Minutes without a request after which a session ends.
    pub session_idle_minutes: u32,
    /// Consecutive failed logins that lock an account.
    pub lockout_threshold: u32,
    /// Minutes an account stays locked.
    pub lockout_minutes: u32,
}

impl AuthConfig {
    /// How long a session lives from sign-in.
    pub fn session_lifetime(&self) -> Duration {
        Duration::from_secs(u64::from(self.session_days) * 86_400)
    }

    /// How long a session survives without a request.
    pub fn session_idle(&self) -> Duration {
        Duration::from_secs(u64::from(self.session_idle_minutes) * 60)
    }

    /// How long a lock lasts.
    pub fn lock_duration(&self) -> Duration {
        Duration::from_secs(u64::from(self.lockout_minutes) * 60)
    }
}

/// A fixed-window limit: at most `max` hits per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Hits allowed per window.
    pub max: u32,
    /// Window length.
    pub window: Duration,
}

/// The limit of each limited action; `None` means the limit is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// Login attempts per IP + identifier.
    pub login: Option<RateLimit>,
    /// Login attempts per IP.
    pub login_ip: Option<RateLimit>,
    /// Registrations per IP.
    pub register: Option<RateLimit>,
    /// Chat messages per user.
    pub chat: Option<RateLimit>,
    /// Image generations per user.
    pub image: Option<RateLimit>,
    /// Companions created per user.
    pub companion_create: Option<RateLimit>,
    /// Settings changes per user.
    pub settings: Option<RateLimit>,
}

/// An OpenAI-compatible chat-completions endpoint and its sampling parameters.
#[derive(Debug, Clone)]
pub struct LlmConfig {
    /// Base URL ending before `/chat/completions`, e.g. `http://localhost:11434/v1`.
    pub base_url: Url,
    /// Bearer key; local servers usually need none.
    pub api_key: Option<Secret>,
    /// Model for replies.
    pub model: String,
    /// Model for the structured analysis call.
    pub analysis_model: String,
    /// Sampling temperature.
    pub temperature: f32,
    /// Nucleus sampling.
    pub top_p: f32,
    /// Maximum reply length in tokens.
    pub max_tokens: u32,
    /// The model's context window in tokens (for the history budget).
    pub context_tokens: u32,
    /// Timeout of one model call.
    pub timeout: Duration,
}

/// Which image generation backend is used.
#[derive(Debug, Clone)]
pub enum ImageBackendConfig {
    /// No image generation.
    None,
    /// AUTOMATIC1111 / Forge / SD.Next (`/sdapi/v1/txt2img`).
    SdApi {
        /// Base URL of the web UI.
        url: Url,
    },
    /// An OpenAI-compatible `/v1/images/generations` API.
    OpenAi {
        /// Base URL, e.g. `https://api.openai.com/v1`.
        url: Url,
        /// Bearer key.
        api_key: Option<Secret>,
        /// Model name, when the API needs one.
        model: Option<String>,
    },
}

impl ImageBackendConfig {
    /// Short name as used by `IMAGE_BACKEND`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::SdApi { .. } => "sdapi",
            Self::OpenAi { .. } => "openai",
        }
    }
}

/// How images are generated, whatever the backend.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSettings {
    /// Timeout of one generation call.
    pub timeout: Duration,
    /// Settings for the `anime` art style.
    pub anime: StyleSettings,
    /// Settings for the `realistic` art style.
    pub realistic: StyleSettings,
}

impl ImageSettings {
    /// The settings of an art style (`anime` for anything unknown).
    pub fn style(&self, art_style: &str) -> &StyleSettings {
        match art_style {
            "realistic" => &self.realistic,
            _ => &self.anime,
        }
    }
}

/// The generation parameters of one art style (`IMAGE_<STYLE>_*`).
#[derive(Debug, Clone, PartialEq)]
pub struct StyleSettings {
    /// Tags that open every prompt of the style.
    pub quality_tags: String,
    /// The style's negative prompt.
    pub negative: String,
    /// Sampling steps.
    pub steps: u32,
    /// Classifier-free guidance scale.
    pub cfg: f32,
    /// Sampler name as the backend knows it.
    pub sampler: String,
    /// Noise schedule (`karras`, …).
    pub scheduler: String,
    /// Width in pixels (a multiple of 64).
    pub width: u32,
    /// Height in pixels (a multiple of 64).
    pub height: u32,
    /// The checkpoint to load for this style (`override_settings.sd_model_checkpoint`), when set.
    pub checkpoint: Option<String>,
}

/// Where media files are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// A folder on the local file system.
    Local(PathBuf),
    /// An S3-compatible bucket (`STORAGE_URL=s3://bucket/prefix` and the standard `AWS_*` variables).
    S3(S3Storage),
}

impl StorageConfig {
    /// `local` or `s3`, as `/api/health` reports the storage.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Local(_) => "local",
            Self::S3(_) => "s3",
        }
    }

    /// The configured location as `STORAGE_URL` would say it.
    pub fn url(&self) -> String {
        match self {
            Self::Local(path) => format!("file://{}", path.display()),
            Self::S3(s3) if s3.prefix.is_empty() => format!("s3://{}", s3.bucket),
            Self::S3(s3) => format!("s3://{}/{}", s3.bucket, s3.prefix),
        }
    }
}

/// An S3-compatible bucket: AWS itself, or MinIO-like servers at a custom endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Storage {
    /// The bucket (it must exist).
    pub bucket: String,
    /// Keys are stored under this prefix (no leading or trailing `/`; empty for the whole bucket).
    pub prefix: String,
    /// `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`): a server other than AWS.
    pub endpoint: Option<String>,
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`), default `us-east-1`.
    pub region: String,
    /// `AWS_ACCESS_KEY_ID`; without it the instance's role (metadata service) is used.
    pub access_key_id: Option<String>,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<Secret>,
    /// `AWS_SESSION_TOKEN`, for temporary credentials.
    pub session_token: Option<Secret>,
    /// `AWS_ALLOW_HTTP`: plain HTTP to the endpoint (a local MinIO); default false.
    pub allow_http: bool,
    /// `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`: `bucket.host` addressing instead of `host/bucket` (path
    /// style, the default, which MinIO-like servers expect).
    pub virtual_hosted_style: bool,
}

/// Which engine runs chat runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkflowEngineConfig {
    /// In-process, durable through the database.
    Local,
    /// Each run a Temporal workflow (cargo feature `temporal`).
    Temporal(Box<TemporalConfig>),
}

impl WorkflowEngineConfig {
    /// Short name as used by `WORKFLOW_ENGINE`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Temporal(_) => "temporal",
        }
    }

    /// The Temporal settings, when runs go to Temporal.
    pub fn temporal(&self) -> Option<&TemporalConfig> {
        match self {
            Self::Local => None,
            Self::Temporal(temporal) => Some(temporal),
        }
    }
}

/// Where Temporal is and how its activities are timed and retried (`TEMPORAL_*`, `WORKER_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemporalConfig {
    /// `TEMPORAL_ADDRESS`: the frontend's gRPC address as a URL (`http://127.0.0.1:7233`).
    pub address: Url,
    /// `TEMPORAL_NAMESPACE` (`default`).
    pub namespace: String,
    /// `TEMPORAL_TASK_QUEUE` (`companion-chat`): where runs' workflows and activities are queued.
    pub task_queue: String,
    /// `WORKER_IN_PROCESS` (true): `serve` also runs a worker.
    pub worker_in_process: bool,
    /// `WORKER_LISTEN_ADDR`: where `companion-hub worker` serves `/metrics` and its health.
    pub worker_listen_addr: Option<SocketAddr>,
    /// `TEMPORAL_HEARTBEAT_TIMEOUT_SECS` (5): an activity whose worker stopped heartbeating for this long is
    /// given to another worker.
    pub heartbeat_timeout: Duration,
    /// `TEMPORAL_ACTIVITY_ATTEMPTS` (3): attempts of one step before the run fails with the last error.
    pub activity_attempts: u32,
    /// `TEMPORAL_RETRY_INITIAL_SECS` (1): the wait before a step's second attempt (doubling, at most 10×).
    pub retry_initial: Duration,
}

/// The orphaned-image sweep schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupConfig {
    /// Time between sweeps; `None` disables the periodic sweep.
    pub interval: Option<Duration>,
    /// Files younger than this are never taken.
    pub grace: Duration,
}

impl Config {
    /// Reads `.env` (when present in the working directory) and the process environment.
    pub fn from_env() -> Result<Self, ConfigProblems> {
        // A missing .env is normal; a malformed one is reported like any other problem.
        let dotenv_problem = match dotenvy::dotenv() {
            Ok(_) => None,
            Err(err) if err.not_found() => None,
            Err(err) => Some(ConfigProblem::new(".env", format!("cannot be read: {err}"))),
        };
        let result = Self::from_vars(std::env::vars());
        match (result, dotenv_problem) {
            (Ok(config), None) => Ok(config),
            (Ok(_), Some(problem)) => Err(ConfigProblems(vec![problem])),
            (Err(mut problems), Some(problem)) => {
                problems.0.insert(0, problem);
                Err(problems)
            }
            (Err(problems), None) => Err(problems),
        }
    }

    /// Builds the configuration from explicit variables (tests use this; unknown names are ignored).
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigProblems>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        load::load(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// True when the app is reached over HTTPS (Secure cookies, HSTS).
    pub fn is_https(&self) -> bool {
        self.public_url
            .as_ref()
            .is_some_and(|url| url.scheme() == "https")
    }

    /// The origins a browser may send in `Origin` for this deployment, given the address actually bound.
    pub fn allowed_origins(&self, bound: SocketAddr) -> Vec<String> {
        if let Some(url) = &self.public_url {
            return vec![url.origin().ascii_serialization()];
        }
        let port = bound.port();
        let ip = bound.ip();
        let mut origins = vec![
            format!("http://localhost:{port}"),
            format!("http://127.0.0.1:{port}"),
        ];
        if ip.is_ipv6() && (ip.is_loopback() || ip.is_unspecified()) {
            origins.push(format!("http://[::1]:{port}"));
        }
        if !ip.is_loopback() && !ip.is_unspecified() {
            origins.push(match ip {
                IpAddr::V4(v4) => format!("http://{v4}:{port}"),
                IpAddr::V6(v6) => format!("http://[{v6}]:{port}"),
            });
        }
        origins
    }

    /// Things that work but are probably not what the operator wants.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.public_url.is_none() && !self.listen_addr.ip().is_loopback() {
            warnings.push(
                "PUBLIC_URL is not set while LISTEN_ADDR is not a loopback address: browsers reaching \
                 the app under another name will fail the CSRF origin check; set PUBLIC_URL"
                    .to_owned(),
            );
        }
        if self.llm.is_none() {
            warnings.push(
                "no language model is configured (LLM_BASE_URL, LLM_MODEL): chat is unavailable"
                    .to_owned(),
            );
        }
        warnings
    }

    /// `(variable, value)` pairs for `check-config`, with secrets masked.
    pub fn summary(&self) -> Vec<(&'static str, String)> {
        fn secret(value: &Option<Secret>) -> String {
            if value.is_some() { "(set)" } else { "(unset)" }.to_owned()
        }
        fn limit(value: &Option<RateLimit>) -> String {
            match value {
                Some(limit) => {
                    format!("{}/{}", limit.max, humantime::format_duration(limit.window))
                }
                None => "off".to_owned(),
            }
        }
        let mut rows = vec![
            ("DATABASE_URL", redact_url(self.database_url.expose())),
            ("LISTEN_ADDR", self.listen_addr.to_string()),
            ("DATA_DIR", self.data_dir.display().to_string()),
            (
                "PUBLIC_URL",
                self.public_url
                    .as_ref()
                    .map_or("(from LISTEN_ADDR)".to_owned(), Url::to_string),
            ),
            ("MIGRATE_ON_START", self.migrate_on_start.to_string()),
            (
                "LOG_FORMAT",
                match self.log_format {
                    None => "auto",
                    Some(LogFormat::Pretty) => "pretty",
                    Some(LogFormat::Json) => "json",
                }
                .to_owned(),
            ),
            ("LOG_LEVEL", self.log_level.clone()),
            (
                "TRUSTED_PROXIES",
                self.trusted_proxies
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("METRICS_TOKEN", secret(&self.metrics_token)),
            (
                "METRICS_LISTEN_ADDR",
                self.metrics_listen_addr
                    .map_or("(on LISTEN_ADDR)".to_owned(), |addr| addr.to_string()),
            ),
            ("SESSION_DAYS", self.auth.session_days.to_string()),
            (
                "SESSION_IDLE_MINUTES",
                self.auth.session_idle_minutes.to_string(),
            ),
            ("LOCKOUT_THRESHOLD", self.auth.lockout_threshold.to_string()),
            ("LOCKOUT_MINUTES", self.auth.lockout_minutes.to_string()),
            ("RATE_LIMIT_LOGIN", limit(&self.rate_limits.login)),
            ("RATE_LIMIT_LOGIN_IP", limit(&self.rate_limits.login_ip)),
            ("RATE_LIMIT_REGISTER", limit(&self.rate_limits.register)),
            ("RATE_LIMIT_CHAT", limit(&self.rate_limits.chat)),
            ("RATE_LIMIT_IMAGE", limit(&self.rate_limits.image)),
            (
                "RATE_LIMIT_COMPANION_CREATE",
                limit(&self.rate_limits.companion_create),
            ),
            ("RATE_LIMIT_SETTINGS", limit(&self.rate_limits.settings)),
        ];
        match &self.llm {
            Some(llm) => rows.extend([
                ("LLM_BASE_URL", llm.base_url.to_string()),
                ("LLM_API_KEY", secret(&llm.api_key)),
                ("LLM_MODEL", llm.model.clone()),
                ("LLM_ANALYSIS_MODEL", llm.analysis_model.clone()),
                ("LLM_TEMPERATURE", llm.temperature.to_string()),
                ("LLM_TOP_P", llm.top_p.to_string()),
                ("LLM_MAX_TOKENS", llm.max_tokens.to_string()),
                ("LLM_CONTEXT_TOKENS", llm.context_tokens.to_string()),
                ("LLM_TIMEOUT_SECS", llm.timeout.as_secs().to_string()),
            ]),
            None => rows.push(("LLM_BASE_URL", "(unset: chat is unavailable)".to_owned())),
        }
        rows.push(("IMAGE_BACKEND", self.image_backend.name().to_owned()));
        match &self.image_backend {
            ImageBackendConfig::None => {}
            ImageBackendConfig::SdApi { url } => rows.push(("SD_API_URL", url.to_string())),
            ImageBackendConfig::OpenAi {
                url,
                api_key,
                model,
            } => rows.extend([
                ("IMAGE_API_URL", url.to_string()),
                ("IMAGE_API_KEY", secret(api_key)),
                ("IMAGE_MODEL", model.clone().unwrap_or_default()),
            ]),
        }
        rows.push((
            "IMAGE_TIMEOUT_SECS",
            self.images.timeout.as_secs().to_string(),
        ));
        for (names, style) in [
            (&providers::ANIME_VARS, &self.images.anime),
            (&providers::REALISTIC_VARS, &self.images.realistic),
        ] {
            rows.extend([
                (names.quality_tags, style.quality_tags.clone()),
                (names.negative, style.negative.clone()),
                (names.steps, style.steps.to_string()),
                (names.cfg, style.cfg.to_string()),
                (names.sampler, style.sampler.clone()),
                (names.scheduler, style.scheduler.clone()),
                (names.width, style.width.to_string()),
                (names.height, style.height.to_string()),
                (
                    names.checkpoint,
                    style
                        .checkpoint
                        .clone()
                        .unwrap_or_else(|| "(unset: the loaded model)".to_owned()),
                ),
            ]);
        }
        rows.push(("STORAGE_URL", self.storage.url()));
        if let StorageConfig::S3(s3) = &self.storage {
            rows.extend([
                (
                    "AWS_ENDPOINT_URL",
                    s3.endpoint.clone().unwrap_or_else(|| "(AWS)".to_owned()),
                ),
                ("AWS_REGION", s3.region.clone()),
                (
                    "AWS_ACCESS_KEY_ID",
                    s3.access_key_id
                        .clone()
                        .unwrap_or_else(|| "(the instance's role)".to_owned()),
                ),
                ("AWS_SECRET_ACCESS_KEY", secret(&s3.secret_access_key)),
                ("AWS_SESSION_TOKEN", secret(&s3.session_token)),
                ("AWS_ALLOW_HTTP", s3.allow_http.to_string()),
                (
                    "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
                    s3.virtual_hosted_style.to_string(),
                ),
            ]);
        }
        rows.push(("WORKFLOW_ENGINE", self.workflow_engine.name().to_owned()));
        if let Some(temporal) = self.workflow_engine.temporal() {
            rows.extend([
                ("TEMPORAL_ADDRESS", temporal.address.to_string()),
                ("TEMPORAL_NAMESPACE", temporal.namespace.clone()),
                ("TEMPORAL_TASK_QUEUE", temporal.task_queue.clone()),
                ("WORKER_IN_PROCESS", temporal.worker_in_process.to_string()),
                (
                    "WORKER_LISTEN_ADDR",
                    temporal
                        .worker_listen_addr
                        .map_or("(unset)".to_owned(), |address| address.to_string()),
                ),
                (
                    "TEMPORAL_HEARTBEAT_TIMEOUT_SECS",
                    temporal.heartbeat_timeout.as_secs().to_string(),
                ),
                (
                    "TEMPORAL_ACTIVITY_ATTEMPTS",
                    temporal.activity_attempts.to_string(),
                ),
                (
                    "TEMPORAL_RETRY_INITIAL_SECS",
                    temporal.retry_initial.as_secs().to_string(),
                ),
            ]);
        }
        rows.push((
            "CLEANUP_INTERVAL_MINUTES",
            self.cleanup
                .interval
                .map_or("0 (off)".to_owned(), |d| (d.as_secs() / 60).to_string()),
        ));
        rows.push((
            "CLEANUP_GRACE_MINUTES",
            (self.cleanup.grace.as_secs() / 60).to_string(),
        ));
        rows.push(("RUN_DEADLINE_SECS", self.run_deadline.as_secs().to_string()));
        rows.push(("RUN_LEASE_SECS", self.run_lease.as_secs().to_string()));
        rows.push((
            "MAX_ACTIVE_REPLIES",
            self.max_active_replies
                .map_or("0 (no limit)".to_owned(), |max| max.to_string()),
        ));
        match &self.redis {
            Some(redis) => rows.extend([
                ("REDIS_URL", redact_url(redis.url.expose())),
                ("REDIS_KEY_PREFIX", redis.key_prefix.clone()),
            ]),
            None => rows.push(("REDIS_URL", "(unset: tokens go by PostgreSQL)".to_owned())),
        }
        rows
    }
}
