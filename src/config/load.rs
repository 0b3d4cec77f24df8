//! Parsing and validating the environment variables into a [`Config`], collecting every problem.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use url::Url;

use super::{
    AuthConfig, CleanupConfig, Config, ImageBackendConfig, ImageSettings, LlmConfig, LogFormat,
    RateLimit, RateLimits, Secret, StorageConfig, StyleSettings, WorkflowEngineConfig,
};

/// One thing wrong with one variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The variable's name.
    pub variable: String,
    /// What is wrong with it, in words an operator understands.
    pub message: String,
}

impl ConfigProblem {
    pub(super) fn new(variable: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            variable: variable.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.message)
    }
}

/// Every problem found while loading; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblems(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        writeln!(
            f,
            "invalid configuration ({count} problem{}):",
            if count == 1 { "" } else { "s" }
        )?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigProblems {}

/// Reads variables, remembering every problem instead of stopping at the first.
struct Reader {
    vars: HashMap<String, String>,
    problems: Vec<ConfigProblem>,
}

impl Reader {
    /// The trimmed value, or `None` when unset or blank (a blank line in `.env` means "default").
    fn get(&self, name: &str) -> Option<String> {
        self.vars
            .get(name)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    }

    fn problem(&mut self, name: &str, message: impl Into<String>) {
        self.problems.push(ConfigProblem::new(name, message));
    }

    /// Parses with `parse`, falling back to `default` when unset or invalid (the problem is recorded).
    fn parsed<T>(
        &mut self,
        name: &str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> T {
        match self.get(name) {
            None => default,
            Some(raw) => parse(&raw).unwrap_or_else(|message| {
                self.problem(name, message);
                default
            }),
        }
    }

    fn integer(&mut self, name: &str, default: u32, min: u32, max: u32) -> u32 {
        self.parsed(name, default, |raw| match raw.parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(format!(
                "must be a whole number from {min} to {max}, got {raw:?}"
            )),
        })
    }

    fn float(&mut self, name: &str, default: f32, min: f32, max: f32) -> f32 {
        self.parsed(name, default, |raw| match raw.parse::<f32>() {
            Ok(n) if n.is_finite() && (min..=max).contains(&n) => Ok(n),
            _ => Err(format!("must be a number from {min} to {max}, got {raw:?}")),
        })
    }

    fn boolean(&mut self, name: &str, default: bool) -> bool {
        self.parsed(name, default, |raw| {
            match raw.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(format!("must be true or false, got {raw:?}")),
            }
        })
    }

    fn http_url(&mut self, name: &str) -> Option<Url> {
        let raw = self.get(name)?;
        match parse_http_url(&raw) {
            Ok(url) => Some(url),
            Err(message) => {
                self.problem(name, message);
                None
            }
        }
    }

    fn secret(&mut self, name: &str) -> Option<Secret> {
        self.get(name).map(Secret::new)
    }

    fn rate_limit(&mut self, name: &str, default: &str) -> Option<RateLimit> {
        let fallback = parse_rate_limit(default).unwrap_or(None);
        self.parsed(name, fallback, parse_rate_limit)
    }
}

fn parse_http_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|err| format!("is not a valid URL ({err}): {raw:?}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("must be an http:// or https:// URL, got {raw:?}"));
    }
    if url.host_str().is_none() {
        return Err(format!("must name a host, got {raw:?}"));
    }
    Ok(url)
}

/// `N/<duration>` (e.g. `5/15m`, `3/24h`) or `off`.
pub(crate) fn parse_rate_limit(raw: &str) -> Result<Option<RateLimit>, String> {
    if raw.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let invalid = || format!("must be N/<duration> like 5/15m or 30/1m, or off; got {raw:?}");
    let (count, window) = raw.split_once('/').ok_or_else(invalid)?;
    let max = count
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(invalid)?;
    let window = humantime::parse_duration(window.trim()).map_err(|_| invalid())?;
    if window < Duration::from_secs(1) || window > Duration::from_secs(30 * 24 * 3600) {
        return Err(format!(
            "window must be between 1s and 30 days, got {raw:?}"
        ));
    }
    Ok(Some(RateLimit { max, window }))
}

fn check_database_url(raw: &str) -> Result<(), String> {
    let shown = super::redact_url(raw);
    if raw.starts_with("sqlite:") {
        sqlx::sqlite::SqliteConnectOptions::from_str(raw)
            .map(|_| ())
            .map_err(|err| format!("is not a valid SQLite URL ({err}): {shown}"))
    } else if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        sqlx::postgres::PgConnectOptions::from_str(raw)
            .map(|_| ())
            .map_err(|err| format!("is not a valid PostgreSQL URL ({err}): {shown}"))
    } else {
        Err(format!(
            "must start with sqlite:// or postgres://, got {shown}"
        ))
    }
}

fn storage_from_url(raw: &str, data_dir: &Path) -> Result<StorageConfig, String> {
    if let Some(path) = raw.strip_prefix("file://") {
        if path.is_empty() {
            return Err("file:// needs a folder, e.g. file:///var/lib/companion-hub/media".into());
        }
        return Ok(StorageConfig::Local(PathBuf::from(path)));
    }
    if raw.starts_with("s3://") {
        return Err(format!(
            "S3-compatible storage is not available in this version yet; use file://{}/media",
            data_dir.display()
        ));
    }
    Err(format!("must be a file:// URL, got {raw:?}"))
}

pub(super) fn load(vars: HashMap<String, String>) -> Result<Config, ConfigProblems> {
    let mut r = Reader {
        vars,
        problems: Vec::new(),
    };

    let data_dir = PathBuf::from(r.get("DATA_DIR").unwrap_or_else(|| "./data".to_owned()));
    let default_database_url = format!(
        "sqlite://{}/companion-hub.db",
        data_dir.display().to_string().trim_end_matches('/')
    );
    let database_url = r.get("DATABASE_URL").unwrap_or(default_database_url);
    if let Err(message) = check_database_url(&database_url) {
        r.problem("DATABASE_URL", message);
    }

    let listen_addr = r.parsed(
        "LISTEN_ADDR",
        SocketAddr::from(([127, 0, 0, 1], 3000)),
        |raw| {
            raw.parse::<SocketAddr>().map_err(|_| {
                format!("must be IP:PORT like 127.0.0.1:3000 or 0.0.0.0:8080, got {raw:?}")
            })
        },
    );

    let public_url = r.http_url("PUBLIC_URL").and_then(|url| {
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            r.problem(
                "PUBLIC_URL",
                format!(
                    "must be an origin without a path, like https://hub.example.com, got {url}"
                ),
            );
            None
        } else {
            Some(url)
        }
    });

    let migrate_on_start = r.boolean("MIGRATE_ON_START", true);

    let log_format = r.parsed("LOG_FORMAT", None, |raw| {
        match raw.to_ascii_lowercase().as_str() {
            "pretty" => Ok(Some(LogFormat::Pretty)),
            "json" => Ok(Some(LogFormat::Json)),
            "auto" => Ok(None),
            _ => Err(format!("must be pretty or json, got {raw:?}")),
        }
    });
    let log_level = r.parsed("LOG_LEVEL", "info".to_owned(), |raw| {
        tracing_subscriber::EnvFilter::try_new(raw)
            .map(|_| raw.to_owned())
            .map_err(|err| format!("is not a valid log filter ({err}), e.g. info or debug"))
    });

    let trusted_proxies = r.parsed("TRUSTED_PROXIES", Vec::new(), |raw| {
        raw.split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                IpNet::from_str(part)
                    .or_else(|_| part.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{part:?} is not an IP address or CIDR like 10.0.0.0/8"))
            })
            .collect()
    });

    let metrics_token = r.secret("METRICS_TOKEN");
    if metrics_token
        .as_ref()
        .is_some_and(|token| token.expose().len() < 16)
    {
        r.problem("METRICS_TOKEN", "must be at least 16 characters long");
    }
    let metrics_listen_addr = r.get("METRICS_LISTEN_ADDR").and_then(|raw| {
        raw.parse::<SocketAddr>()
            .map_err(|_| {
                r.problem(
                    "METRICS_LISTEN_ADDR",
                    format!("must be IP:PORT like 127.0.0.1:9100, got {raw:?}"),
                )
            })
            .ok()
    });
    // Metrics name routes, counts and timings: not for the whole network to read.
    if metrics_token.is_none() && metrics_listen_addr.is_none() && !listen_addr.ip().is_loopback() {
        r.problem(
            "METRICS_TOKEN",
            format!(
                "must be set when LISTEN_ADDR ({listen_addr}) is not a loopback address, or set \
                 METRICS_LISTEN_ADDR to serve /metrics on a separate (private) address instead"
            ),
        );
    }

    let auth = AuthConfig {
        session_days: r.integer("SESSION_DAYS", 30, 1, 365),
        session_idle_minutes: r.integer("SESSION_IDLE_MINUTES", 7 * 24 * 60, 10, 365 * 24 * 60),
        lockout_threshold: r.integer("LOCKOUT_THRESHOLD", 5, 1, 100),
        lockout_minutes: r.integer("LOCKOUT_MINUTES", 30, 1, 7 * 24 * 60),
    };

    let rate_limits = RateLimits {
        login: r.rate_limit("RATE_LIMIT_LOGIN", "5/15m"),
        login_ip: r.rate_limit("RATE_LIMIT_LOGIN_IP", "20/15m"),
        register: r.rate_limit("RATE_LIMIT_REGISTER", "3/24h"),
        chat: r.rate_limit("RATE_LIMIT_CHAT", "30/1m"),
        image: r.rate_limit("RATE_LIMIT_IMAGE", "10/1h"),
        companion_create: r.rate_limit("RATE_LIMIT_COMPANION_CREATE", "10/1h"),
        settings: r.rate_limit("RATE_LIMIT_SETTINGS", "20/1h"),
    };

    let llm = load_llm(&mut r);
    let image_backend = load_image_backend(&mut r);
    let images = ImageSettings {
        timeout: Duration::from_secs(u64::from(r.integer("IMAGE_TIMEOUT_SECS", 180, 5, 3600))),
        anime: load_style(&mut r, &ANIME_VARS, &ANIME_DEFAULTS),
        realistic: load_style(&mut r, &REALISTIC_VARS, &REALISTIC_DEFAULTS),
    };

    let storage = match r.get("STORAGE_URL") {
        None => StorageConfig::Local(data_dir.join("media")),
        Some(raw) => storage_from_url(&raw, &data_dir).unwrap_or_else(|message| {
            r.problem("STORAGE_URL", message);
            StorageConfig::Local(data_dir.join("media"))
        }),
    };

    let workflow_engine = r.parsed(
        "WORKFLOW_ENGINE",
        WorkflowEngineConfig::Local,
        |raw| match raw.to_ascii_lowercase().as_str() {
            "local" => Ok(WorkflowEngineConfig::Local),
            "temporal" => {
                Err("temporal is not available in this version yet; use local (the default)".into())
            }
            _ => Err(format!("must be local or temporal, got {raw:?}")),
        },
    );

    let interval_minutes = r.integer("CLEANUP_INTERVAL_MINUTES", 1440, 0, 30 * 24 * 60);
    let grace_minutes = r.integer("CLEANUP_GRACE_MINUTES", 60, 1, 30 * 24 * 60);
    let cleanup = CleanupConfig {
        interval: (interval_minutes > 0)
            .then(|| Duration::from_secs(u64::from(interval_minutes) * 60)),
        grace: Duration::from_secs(u64::from(grace_minutes) * 60),
    };

    let run_deadline =
        Duration::from_secs(u64::from(r.integer("RUN_DEADLINE_SECS", 300, 10, 3600)));

    if !r.problems.is_empty() {
        return Err(ConfigProblems(r.problems));
    }
    Ok(Config {
        database_url: Secret::new(database_url),
        listen_addr,
        data_dir,
        public_url,
        migrate_on_start,
        log_format,
        log_level,
        trusted_proxies,
        metrics_token,
        metrics_listen_addr,
        auth,
        rate_limits,
        llm,
        image_backend,
        images,
        storage,
        workflow_engine,
        cleanup,
        run_deadline,
    })
}

fn load_llm(r: &mut Reader) -> Option<LlmConfig> {
    let base_url = r.http_url("LLM_BASE_URL");
    let model = r.get("LLM_MODEL");
    let analysis_model = r.get("LLM_ANALYSIS_MODEL");
    let api_key = r.secret("LLM_API_KEY");
    let temperature = r.float("LLM_TEMPERATURE", 0.9, 0.0, 2.0);
    let top_p = r.float("LLM_TOP_P", 0.9, 0.01, 1.0);
    let max_tokens = r.integer("LLM_MAX_TOKENS", 300, 1, 32_768);
    let context_tokens = r.integer("LLM_CONTEXT_TOKENS", 4096, 512, 2_000_000);
    let timeout_secs = r.integer("LLM_TIMEOUT_SECS", 120, 1, 3600);
    if max_tokens >= context_tokens {
        r.problem(
            "LLM_MAX_TOKENS",
            format!("must be smaller than LLM_CONTEXT_TOKENS ({context_tokens})"),
        );
    }
    match (base_url, model) {
        (Some(base_url), Some(model)) => Some(LlmConfig {
            base_url,
            api_key,
            analysis_model: analysis_model.unwrap_or_else(|| model.clone()),
            model,
            temperature,
            top_p,
            max_tokens,
            context_tokens,
            timeout: Duration::from_secs(u64::from(timeout_secs)),
        }),
        (Some(_), None) => {
            r.problem(
                "LLM_MODEL",
                "must be set when LLM_BASE_URL is set (the model name the endpoint serves)",
            );
            None
        }
        (None, Some(_)) if r.get("LLM_BASE_URL").is_none() => {
            r.problem(
                "LLM_BASE_URL",
                "must be set when LLM_MODEL is set, e.g. http://localhost:11434/v1",
            );
            None
        }
        _ => None,
    }
}

/// The variable names of one art style's settings.
pub(super) struct StyleVars {
    pub(super) quality_tags: &'static str,
    pub(super) negative: &'static str,
    pub(super) steps: &'static str,
    pub(super) cfg: &'static str,
    pub(super) sampler: &'static str,
    pub(super) scheduler: &'static str,
    pub(super) width: &'static str,
    pub(super) height: &'static str,
    pub(super) checkpoint: &'static str,
}

pub(super) const ANIME_VARS: StyleVars = StyleVars {
    quality_tags: "IMAGE_ANIME_QUALITY_TAGS",
    negative: "IMAGE_ANIME_NEGATIVE",
    steps: "IMAGE_ANIME_STEPS",
    cfg: "IMAGE_ANIME_CFG",
    sampler: "IMAGE_ANIME_SAMPLER",
    scheduler: "IMAGE_ANIME_SCHEDULER",
    width: "IMAGE_ANIME_WIDTH",
    height: "IMAGE_ANIME_HEIGHT",
    checkpoint: "IMAGE_ANIME_CHECKPOINT",
};

pub(super) const REALISTIC_VARS: StyleVars = StyleVars {
    quality_tags: "IMAGE_REALISTIC_QUALITY_TAGS",
    negative: "IMAGE_REALISTIC_NEGATIVE",
    steps: "IMAGE_REALISTIC_STEPS",
    cfg: "IMAGE_REALISTIC_CFG",
    sampler: "IMAGE_REALISTIC_SAMPLER",
    scheduler: "IMAGE_REALISTIC_SCHEDULER",
    width: "IMAGE_REALISTIC_WIDTH",
    height: "IMAGE_REALISTIC_HEIGHT",
    checkpoint: "IMAGE_REALISTIC_CHECKPOINT",
};

/// The original's checkpoint settings (without its adult-content tags and LoRA).
struct StyleDefaults {
    quality_tags: &'static str,
    negative: &'static str,
    steps: u32,
    cfg: f32,
}

const ANIME_DEFAULTS: StyleDefaults = StyleDefaults {
    quality_tags: "(masterpiece:1.2), (best quality:1.2), absurdres, highres, anime style, key visual, \
                   vibrant colors",
    negative: "(bad quality:1.2), (worst quality:1.2), neghands, monochrome, 3d, realistic, \
               photorealistic, long neck",
    steps: 28,
    cfg: 6.0,
};

const REALISTIC_DEFAULTS: StyleDefaults = StyleDefaults {
    quality_tags: "(photorealistic:1.3), raw photo, 8k uhd, dslr, soft lighting, high quality, film grain",
    negative: "(bad quality:1.2), (worst quality:1.2), neghands, anime, cartoon, illustration, drawing, \
               painting",
    steps: 30,
    cfg: 7.0,
};

fn load_style(r: &mut Reader, names: &StyleVars, defaults: &StyleDefaults) -> StyleSettings {
    let mut dimension = |name: &str, default: u32| {
        let value = r.integer(name, default, 256, 2048);
        if !value.is_multiple_of(64) {
            r.problem(name, format!("must be a multiple of 64, got {value}"));
            return default;
        }
        value
    };
    let width = dimension(names.width, 832);
    let height = dimension(names.height, 1216);
    StyleSettings {
        quality_tags: r
            .get(names.quality_tags)
            .unwrap_or_else(|| defaults.quality_tags.to_owned()),
        negative: r
            .get(names.negative)
            .unwrap_or_else(|| defaults.negative.to_owned()),
        steps: r.integer(names.steps, defaults.steps, 1, 150),
        cfg: r.float(names.cfg, defaults.cfg, 1.0, 30.0),
        sampler: r
            .get(names.sampler)
            .unwrap_or_else(|| "DPM++ 2M".to_owned()),
        scheduler: r
            .get(names.scheduler)
            .unwrap_or_else(|| "karras".to_owned()),
        width,
        height,
        checkpoint: r.get(names.checkpoint),
    }
}

fn load_image_backend(r: &mut Reader) -> ImageBackendConfig {
    let sd_url = r.http_url("SD_API_URL");
    let image_url = r.http_url("IMAGE_API_URL");
    let image_key = r.secret("IMAGE_API_KEY");
    let image_model = r.get("IMAGE_MODEL");
    let default = if r.get("SD_API_URL").is_some() {
        "sdapi"
    } else {
        "none"
    };
    let choice = r
        .get("IMAGE_BACKEND")
        .unwrap_or_else(|| default.to_owned())
        .to_ascii_lowercase();
    match choice.as_str() {
        "none" => ImageBackendConfig::None,
        "sdapi" => match sd_url {
            Some(url) => ImageBackendConfig::SdApi { url },
            None => {
                if r.get("SD_API_URL").is_none() {
                    r.problem(
                        "SD_API_URL",
                        "must be set when IMAGE_BACKEND is sdapi, e.g. http://127.0.0.1:7860",
                    );
                }
                ImageBackendConfig::None
            }
        },
        "openai" => match image_url {
            Some(url) => ImageBackendConfig::OpenAi {
                url,
                api_key: image_key,
                model: image_model,
            },
            None => {
                if r.get("IMAGE_API_URL").is_none() {
                    r.problem(
                        "IMAGE_API_URL",
                        "must be set when IMAGE_BACKEND is openai, e.g. https://api.openai.com/v1",
                    );
                }
                ImageBackendConfig::None
            }
        },
        other => {
            r.problem(
                "IMAGE_BACKEND",
                format!("must be sdapi, openai or none, got {other:?}"),
            );
            ImageBackendConfig::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_pairs(pairs: &[(&str, &str)]) -> Result<Config, ConfigProblems> {
        load(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn no_configuration_gives_the_documented_defaults() {
        let config = load_pairs(&[]).expect("defaults are valid");
        assert_eq!(
            config.database_url.expose(),
            "sqlite://./data/companion-hub.db"
        );
        assert_eq!(config.listen_addr.to_string(), "127.0.0.1:3000");
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert!(config.migrate_on_start);
        assert_eq!(config.auth.session_days, 30);
        assert_eq!(config.auth.lockout_threshold, 5);
        assert_eq!(config.auth.lockout_minutes, 30);
        assert_eq!(
            config.rate_limits.login,
            Some(RateLimit {
                max: 5,
                window: Duration::from_secs(15 * 60)
            })
        );
        assert_eq!(
            config.rate_limits.register,
            Some(RateLimit {
                max: 3,
                window: Duration::from_secs(24 * 3600)
            })
        );
        assert!(config.llm.is_none());
        assert_eq!(config.image_backend.name(), "none");
        assert_eq!(
            config.storage,
            StorageConfig::Local(PathBuf::from("./data/media"))
        );
        assert_eq!(config.workflow_engine, WorkflowEngineConfig::Local);
        assert_eq!(
            config.cleanup.interval,
            Some(Duration::from_secs(1440 * 60))
        );
        assert_eq!(config.cleanup.grace, Duration::from_secs(3600));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let problems = load_pairs(&[
            ("DATABASE_URL", "mysql://localhost/x"),
            ("LISTEN_ADDR", "localhost"),
            ("SESSION_DAYS", "0"),
            ("RATE_LIMIT_CHAT", "lots"),
            ("LLM_BASE_URL", "ftp://models"),
            ("MIGRATE_ON_START", "maybe"),
        ])
        .expect_err("all of these are invalid");
        let variables: Vec<&str> = problems.0.iter().map(|p| p.variable.as_str()).collect();
        for expected in [
            "DATABASE_URL",
            "LISTEN_ADDR",
            "SESSION_DAYS",
            "RATE_LIMIT_CHAT",
            "LLM_BASE_URL",
            "MIGRATE_ON_START",
        ] {
            assert!(
                variables.contains(&expected),
                "{expected} missing in {problems}"
            );
        }
        let text = problems.to_string();
        assert!(
            text.starts_with("invalid configuration (6 problems):"),
            "{text}"
        );
        assert!(
            text.contains("must start with sqlite:// or postgres://"),
            "{text}"
        );
    }

    #[test]
    fn blank_values_mean_the_default() {
        let config = load_pairs(&[("LISTEN_ADDR", "  "), ("SESSION_DAYS", "")])
            .expect("test setup is valid");
        assert_eq!(config.listen_addr.port(), 3000);
        assert_eq!(config.auth.session_days, 30);
    }

    #[test]
    fn rate_limits_parse_counts_windows_and_off() {
        assert_eq!(
            parse_rate_limit("30/1m").expect("test setup is valid"),
            Some(RateLimit {
                max: 30,
                window: Duration::from_secs(60)
            })
        );
        assert_eq!(parse_rate_limit("OFF").expect("test setup is valid"), None);
        assert!(parse_rate_limit("0/1m").is_err());
        assert!(parse_rate_limit("5").is_err());
        assert!(parse_rate_limit("5/0s").is_err());
        assert!(parse_rate_limit("5/90d").is_err());
    }

    #[test]
    fn database_urls_are_checked_by_scheme() {
        assert!(check_database_url("sqlite://data/x.db").is_ok());
        assert!(check_database_url("postgres://postgres@127.0.0.1:5432/hub").is_ok());
        assert!(check_database_url("postgresql://u:p@db/hub").is_ok());
        let err = check_database_url("mysql://u:secretpw@db/hub").unwrap_err();
        assert!(!err.contains("secretpw"), "password leaked: {err}");
    }

    #[test]
    fn database_url_follows_data_dir_by_default() {
        let config = load_pairs(&[("DATA_DIR", "/var/lib/hub/")]).expect("test setup is valid");
        assert_eq!(
            config.database_url.expose(),
            "sqlite:///var/lib/hub/companion-hub.db"
        );
        assert_eq!(
            config.storage,
            StorageConfig::Local(PathBuf::from("/var/lib/hub/media"))
        );
    }

    #[test]
    fn llm_needs_both_url_and_model() {
        let problems = load_pairs(&[("LLM_BASE_URL", "http://localhost:11434/v1")]).unwrap_err();
        assert_eq!(problems.0[0].variable, "LLM_MODEL");
        let problems = load_pairs(&[("LLM_MODEL", "llama3")]).unwrap_err();
        assert_eq!(problems.0[0].variable, "LLM_BASE_URL");
        let config = load_pairs(&[
            ("LLM_BASE_URL", "http://localhost:11434/v1"),
            ("LLM_MODEL", "llama3"),
            ("LLM_API_KEY", "sk-123"),
        ])
        .expect("test setup is valid");
        let llm = config.llm.expect("configured");
        assert_eq!(llm.analysis_model, "llama3");
        assert_eq!(
            llm.api_key.map(|k| k.expose().to_owned()),
            Some("sk-123".into())
        );
    }

    #[test]
    fn image_backend_defaults_to_sdapi_when_its_url_is_set() {
        let config =
            load_pairs(&[("SD_API_URL", "http://127.0.0.1:7860")]).expect("test setup is valid");
        assert_eq!(config.image_backend.name(), "sdapi");
        let problems = load_pairs(&[("IMAGE_BACKEND", "openai")]).unwrap_err();
        assert_eq!(problems.0[0].variable, "IMAGE_API_URL");
        let problems = load_pairs(&[("IMAGE_BACKEND", "dalle")]).unwrap_err();
        assert_eq!(problems.0[0].variable, "IMAGE_BACKEND");
    }

    #[test]
    fn public_url_must_be_a_bare_origin() {
        let config =
            load_pairs(&[("PUBLIC_URL", "https://hub.example.com")]).expect("test setup is valid");
        assert!(config.is_https());
        assert_eq!(
            config.allowed_origins("127.0.0.1:3000".parse().expect("test setup is valid")),
            vec!["https://hub.example.com".to_owned()]
        );
        assert!(load_pairs(&[("PUBLIC_URL", "https://hub.example.com/app")]).is_err());
        assert!(load_pairs(&[("PUBLIC_URL", "hub.example.com")]).is_err());
    }

    #[test]
    fn loopback_listeners_accept_localhost_and_127_origins() {
        let config = load_pairs(&[]).expect("test setup is valid");
        let origins =
            config.allowed_origins("127.0.0.1:4321".parse().expect("test setup is valid"));
        assert_eq!(
            origins,
            vec!["http://localhost:4321", "http://127.0.0.1:4321"]
        );
        assert!(!config.is_https());
    }

    #[test]
    fn trusted_proxies_take_cidrs_and_plain_addresses() {
        let config = load_pairs(&[("TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7,::1")])
            .expect("test setup is valid");
        assert_eq!(config.trusted_proxies.len(), 3);
        let problems = load_pairs(&[("TRUSTED_PROXIES", "10.0.0.0/8,proxy.local")]).unwrap_err();
        assert!(problems.0[0].message.contains("proxy.local"));
    }

    #[test]
    fn s3_and_temporal_are_refused_until_they_exist() {
        let problems = load_pairs(&[
            ("STORAGE_URL", "s3://bucket/prefix"),
            ("WORKFLOW_ENGINE", "temporal"),
        ])
        .unwrap_err();
        assert_eq!(problems.0.len(), 2);
    }

    #[test]
    fn secrets_do_not_appear_in_the_summary_or_debug_output() {
        let config = load_pairs(&[
            ("DATABASE_URL", "postgres://app:pg-secret@db/hub"),
            ("METRICS_TOKEN", "metrics-secret-123456"),
            ("LLM_BASE_URL", "https://api.example.com/v1"),
            ("LLM_MODEL", "m"),
            ("LLM_API_KEY", "sk-llm-secret"),
        ])
        .expect("test setup is valid");
        let summary = format!("{:?}", config.summary());
        let debug = format!("{config:?}");
        for secret in ["pg-secret", "metrics-secret", "sk-llm-secret"] {
            assert!(!summary.contains(secret), "{secret} in summary");
            assert!(!debug.contains(secret), "{secret} in debug output");
        }
        assert!(load_pairs(&[("METRICS_TOKEN", "short")]).is_err());
    }

    #[test]
    fn metrics_on_a_public_listener_need_a_token_or_their_own_address() {
        let problems = load_pairs(&[("LISTEN_ADDR", "0.0.0.0:8080")]).unwrap_err();
        assert!(
            problems.to_string().contains("METRICS_TOKEN")
                && problems.to_string().contains("METRICS_LISTEN_ADDR"),
            "{problems}"
        );
        assert!(
            load_pairs(&[
                ("LISTEN_ADDR", "0.0.0.0:8080"),
                ("METRICS_TOKEN", "metrics-secret-123456")
            ])
            .is_ok()
        );
        let separate = load_pairs(&[
            ("LISTEN_ADDR", "0.0.0.0:8080"),
            ("METRICS_LISTEN_ADDR", "127.0.0.1:9100"),
        ])
        .expect("valid");
        assert_eq!(
            separate.metrics_listen_addr,
            Some("127.0.0.1:9100".parse().expect("addr"))
        );
        assert!(load_pairs(&[("METRICS_LISTEN_ADDR", "nine-one-hundred")]).is_err());
        assert!(
            load_pairs(&[("LISTEN_ADDR", "[::1]:3000")]).is_ok(),
            "loopback needs nothing"
        );
    }

    #[test]
    fn sessions_have_an_idle_timeout() {
        assert_eq!(
            load_pairs(&[]).expect("valid").auth.session_idle_minutes,
            7 * 24 * 60
        );
        assert_eq!(
            load_pairs(&[("SESSION_IDLE_MINUTES", "30")])
                .expect("valid")
                .auth
                .session_idle(),
            Duration::from_secs(1800)
        );
        assert!(
            load_pairs(&[("SESSION_IDLE_MINUTES", "5")]).is_err(),
            "at least 10 minutes"
        );
    }

    #[test]
    fn non_loopback_listener_without_public_url_warns() {
        let config = load_pairs(&[
            ("LISTEN_ADDR", "0.0.0.0:8080"),
            ("METRICS_TOKEN", "metrics-secret-123456"),
        ])
        .expect("test setup is valid");
        assert!(config.warnings().iter().any(|w| w.contains("PUBLIC_URL")));
    }
}
