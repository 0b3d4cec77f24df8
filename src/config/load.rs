//! Parsing and validating the environment variables into a [`Config`], collecting every problem: the
//! platform, accounts, limits and storage here; the providers in `providers.rs`; the reading itself in
//! `reader.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use url::Url;

use super::providers::{
    ANIME_DEFAULTS, ANIME_VARS, REALISTIC_DEFAULTS, REALISTIC_VARS, load_image_backend, load_llm,
    load_style,
};
pub use super::reader::{ConfigProblem, ConfigProblems};
use super::reader::{
    Reader, check_database_url, check_redis_url, parse_http_url, storage_from_url,
};
use super::{
    AuthConfig, CleanupConfig, Config, ImageSettings, LogFormat, RateLimits, RedisConfig,
    S3Storage, Secret, StorageConfig, TemporalConfig, WorkflowEngineConfig,
};

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
        Some(raw) => match storage_from_url(&raw, &data_dir) {
            Ok(StorageConfig::S3(s3)) => StorageConfig::S3(load_s3(&mut r, s3)),
            Ok(local) => local,
            Err(message) => {
                r.problem("STORAGE_URL", message);
                StorageConfig::Local(data_dir.join("media"))
            }
        },
    };

    let temporal = r.parsed("WORKFLOW_ENGINE", false, |raw| {
        wants_temporal(raw, cfg!(feature = "temporal"))
    });
    let workflow_engine = match temporal {
        true => WorkflowEngineConfig::Temporal(Box::new(load_temporal(&mut r, &database_url))),
        false => WorkflowEngineConfig::Local,
    };

    let interval_minutes = r.integer("CLEANUP_INTERVAL_MINUTES", 1440, 0, 30 * 24 * 60);
    let grace_minutes = r.integer("CLEANUP_GRACE_MINUTES", 60, 1, 30 * 24 * 60);
    let cleanup = CleanupConfig {
        interval: (interval_minutes > 0)
            .then(|| Duration::from_secs(u64::from(interval_minutes) * 60)),
        grace: Duration::from_secs(u64::from(grace_minutes) * 60),
    };

    let run_deadline =
        Duration::from_secs(u64::from(r.integer("RUN_DEADLINE_SECS", 300, 10, 3600)));

    let max_active_replies = match r.integer("MAX_ACTIVE_REPLIES", 0, 0, 100_000) {
        0 => None,
        max => Some(max as usize),
    };

    let instance_timeout =
        Duration::from_secs(u64::from(r.integer("INSTANCE_TIMEOUT_SECS", 10, 3, 600)));
    let run_lease = Duration::from_secs(u64::from(r.integer("RUN_LEASE_SECS", 30, 3, 600)));
    let instance_name = r.get("INSTANCE_NAME").map(|name| name.trim().to_owned());
    if let Some(name) = &instance_name
        && (name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control))
    {
        r.problem(
            "INSTANCE_NAME",
            "must be 1 to 100 printable characters naming this instance, like web-1",
        );
    }

    let redis = load_redis(&mut r, &database_url);

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
        max_active_replies,
        instance_timeout,
        run_lease,
        instance_name,
        redis,
    })
}

/// `WORKFLOW_ENGINE`: true for `temporal` — which a binary built without the `temporal` feature refuses in
/// one line, naming the fix.
fn wants_temporal(raw: &str, built_with_temporal: bool) -> Result<bool, String> {
    match raw.to_ascii_lowercase().as_str() {
        "local" => Ok(false),
        "temporal" if built_with_temporal => Ok(true),
        "temporal" => Err(
            "this binary was built without Temporal: build it with `--features temporal`, or use local"
                .into(),
        ),
        _ => Err(format!("must be local or temporal, got {raw:?}")),
    }
}

/// `TEMPORAL_*` and `WORKER_*`: where Temporal is, and how steps are timed and retried there.
fn load_temporal(r: &mut Reader, database_url: &str) -> TemporalConfig {
    const DEFAULT_ADDRESS: &str = "http://127.0.0.1:7233";
    let raw = r
        .get("TEMPORAL_ADDRESS")
        .unwrap_or_else(|| DEFAULT_ADDRESS.to_owned());
    let address = parse_http_url(&raw).unwrap_or_else(|message| {
        r.problem("TEMPORAL_ADDRESS", message);
        // Never used: a configuration with a problem is refused.
        Url::parse(DEFAULT_ADDRESS).expect("the default address is a URL")
    });
    let mut name = |variable: &str, default: &str| {
        let value = r.get(variable).unwrap_or_else(|| default.to_owned());
        if value.is_empty() || value.len() > 200 || value.chars().any(char::is_control) {
            r.problem(variable, "must be 1 to 200 printable characters");
        }
        value
    };
    let namespace = name("TEMPORAL_NAMESPACE", "default");
    let task_queue = name("TEMPORAL_TASK_QUEUE", "companion-chat");
    let worker_in_process = r.boolean("WORKER_IN_PROCESS", true);
    if !worker_in_process && !database_url.starts_with("postgres") {
        r.problem(
            "WORKER_IN_PROCESS",
            "false needs PostgreSQL: a separate worker streams replies to the web instances through it",
        );
    }
    let worker_listen_addr = r.get("WORKER_LISTEN_ADDR").and_then(|raw| {
        raw.parse::<SocketAddr>()
            .map_err(|_| {
                r.problem(
                    "WORKER_LISTEN_ADDR",
                    format!("must be IP:PORT like 127.0.0.1:9200, got {raw:?}"),
                )
            })
            .ok()
    });
    let heartbeat_timeout = r.integer("TEMPORAL_HEARTBEAT_TIMEOUT_SECS", 5, 1, 300);
    let activity_attempts = r.integer("TEMPORAL_ACTIVITY_ATTEMPTS", 3, 1, 20);
    let retry_initial = r.integer("TEMPORAL_RETRY_INITIAL_SECS", 1, 1, 60);
    TemporalConfig {
        address,
        namespace,
        task_queue,
        worker_in_process,
        worker_listen_addr,
        heartbeat_timeout: Duration::from_secs(u64::from(heartbeat_timeout)),
        activity_attempts,
        retry_initial: Duration::from_secs(u64::from(retry_initial)),
    }
}

/// `REDIS_URL` and `REDIS_KEY_PREFIX`: the Redis Streams bus between instances (engine::bus).
fn load_redis(r: &mut Reader, database_url: &str) -> Option<RedisConfig> {
    let raw = r.get("REDIS_URL")?;
    let key_prefix = r
        .get("REDIS_KEY_PREFIX")
        .unwrap_or_else(|| "companion-hub".to_owned());
    if key_prefix.is_empty()
        || key_prefix.len() > 100
        || !key_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    {
        r.problem(
            "REDIS_KEY_PREFIX",
            "must be 1 to 100 letters, digits or - _ . : (like companion-hub)",
        );
    }
    if let Err(message) = check_redis_url(&raw) {
        r.problem("REDIS_URL", message);
        return None;
    }
    if database_url.starts_with("sqlite:") {
        r.problem(
            "REDIS_URL",
            "needs DATABASE_URL on PostgreSQL: one instance on SQLite has no other instance to send tokens to",
        );
        return None;
    }
    Some(RedisConfig {
        url: Secret::new(raw),
        key_prefix,
    })
}

/// The standard `AWS_*` variables of an S3 store (the names AWS's own tools and object_store read).
fn load_s3(r: &mut Reader, mut s3: S3Storage) -> S3Storage {
    s3.endpoint = match r.get("AWS_ENDPOINT_URL").or_else(|| r.get("AWS_ENDPOINT")) {
        None => None,
        Some(raw) => match parse_http_url(&raw) {
            Ok(url) => Some(url.as_str().trim_end_matches('/').to_owned()),
            Err(message) => {
                r.problem("AWS_ENDPOINT_URL", message);
                None
            }
        },
    };
    if let Some(region) = r.get("AWS_REGION").or_else(|| r.get("AWS_DEFAULT_REGION")) {
        s3.region = region;
    }
    s3.access_key_id = r.get("AWS_ACCESS_KEY_ID");
    s3.secret_access_key = r.secret("AWS_SECRET_ACCESS_KEY");
    s3.session_token = r.secret("AWS_SESSION_TOKEN");
    match (&s3.access_key_id, &s3.secret_access_key) {
        (Some(_), None) => r.problem(
            "AWS_SECRET_ACCESS_KEY",
            "is needed with AWS_ACCESS_KEY_ID (or leave both unset to use the instance's role)",
        ),
        (None, Some(_)) => r.problem(
            "AWS_ACCESS_KEY_ID",
            "is needed with AWS_SECRET_ACCESS_KEY (or leave both unset to use the instance's role)",
        ),
        _ => {}
    }
    s3.allow_http = r.boolean("AWS_ALLOW_HTTP", false);
    s3.virtual_hosted_style = r.boolean("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", false);
    if let Some(endpoint) = &s3.endpoint
        && endpoint.starts_with("http://")
        && !s3.allow_http
    {
        r.problem(
            "AWS_ENDPOINT_URL",
            "is plain http://: set AWS_ALLOW_HTTP=true to allow that (a local MinIO), or use https://",
        );
    }
    s3
}

#[cfg(test)]
mod tests {
    use super::super::RateLimit;
    use super::super::reader::parse_rate_limit;
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
    fn redis_is_for_postgres_deployments_and_its_url_never_shows_its_password() {
        let postgres = ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/hub");
        let config = load_pairs(&[postgres, ("REDIS_URL", "redis://:hunter22@cache:6379/2")])
            .expect("a Redis bus on PostgreSQL");
        let redis = config.redis.as_ref().expect("the bus");
        assert_eq!(redis.key_prefix, "companion-hub");
        let shown = config
            .summary()
            .into_iter()
            .find(|(name, _)| *name == "REDIS_URL")
            .expect("REDIS_URL row")
            .1;
        assert!(!shown.contains("hunter22"), "password shown: {shown}");
        assert!(load_pairs(&[postgres]).expect("no bus").redis.is_none());

        let problem = |pairs: &[(&str, &str)]| {
            load_pairs(pairs)
                .expect_err("refused")
                .0
                .into_iter()
                .map(|p| format!("{}: {}", p.variable, p.message))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let on_sqlite = problem(&[("REDIS_URL", "redis://127.0.0.1:6379")]);
        assert!(
            on_sqlite.contains("needs DATABASE_URL on PostgreSQL"),
            "{on_sqlite}"
        );
        let tls = problem(&[postgres, ("REDIS_URL", "rediss://:hunter22@cache:6380")]);
        assert!(tls.contains("rediss:// (TLS) is not supported"), "{tls}");
        assert!(!tls.contains("hunter22"), "password shown: {tls}");
        let scheme = problem(&[postgres, ("REDIS_URL", "http://cache:6379")]);
        assert!(scheme.contains("must start with redis://"), "{scheme}");
        let prefix = problem(&[
            postgres,
            ("REDIS_URL", "redis://cache"),
            ("REDIS_KEY_PREFIX", "two words"),
        ]);
        assert!(prefix.starts_with("REDIS_KEY_PREFIX: "), "{prefix}");
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
    fn temporal_is_refused_by_a_binary_built_without_it() {
        let refused = wants_temporal("temporal", false).unwrap_err();
        assert!(refused.contains("--features temporal"), "{refused}");
        assert_eq!(wants_temporal("Temporal", true), Ok(true));
        assert_eq!(wants_temporal("local", false), Ok(false));
        assert!(wants_temporal("airflow", true).is_err());
        if !cfg!(feature = "temporal") {
            let problems = load_pairs(&[("WORKFLOW_ENGINE", "temporal")]).unwrap_err();
            assert_eq!(problems.0.len(), 1);
            assert_eq!(problems.0[0].variable, "WORKFLOW_ENGINE");
        }
    }

    #[cfg(feature = "temporal")]
    #[test]
    fn temporal_takes_its_address_queue_and_timings() {
        let config = load_pairs(&[
            ("WORKFLOW_ENGINE", "Temporal"),
            ("DATABASE_URL", "postgres://hub@db/hub"),
            ("TEMPORAL_ADDRESS", "http://temporal:7233"),
            ("TEMPORAL_TASK_QUEUE", "chats"),
            ("WORKER_IN_PROCESS", "false"),
            ("TEMPORAL_HEARTBEAT_TIMEOUT_SECS", "3"),
        ])
        .expect("a valid Temporal setup");
        let temporal = config.workflow_engine.temporal().expect("temporal");
        assert_eq!(temporal.address.as_str(), "http://temporal:7233/");
        assert_eq!(temporal.namespace, "default");
        assert_eq!(temporal.task_queue, "chats");
        assert!(!temporal.worker_in_process);
        assert_eq!(temporal.heartbeat_timeout, Duration::from_secs(3));
        assert_eq!(temporal.activity_attempts, 3);
    }

    #[cfg(feature = "temporal")]
    #[test]
    fn a_separate_worker_needs_postgres_and_a_real_address() {
        let problems = load_pairs(&[
            ("WORKFLOW_ENGINE", "temporal"),
            ("WORKER_IN_PROCESS", "false"),
            ("TEMPORAL_ADDRESS", "temporal:7233"),
        ])
        .unwrap_err();
        let variables: Vec<&str> = problems.0.iter().map(|p| p.variable.as_str()).collect();
        assert!(variables.contains(&"WORKER_IN_PROCESS"), "{variables:?}");
        assert!(variables.contains(&"TEMPORAL_ADDRESS"), "{variables:?}");
    }

    #[test]
    fn an_s3_store_takes_the_standard_aws_variables() {
        let config = load_pairs(&[
            ("STORAGE_URL", "s3://hub-media/instances/eu/"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000/"),
            ("AWS_DEFAULT_REGION", "eu-central-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "s3-secret-value"),
            ("AWS_ALLOW_HTTP", "true"),
        ])
        .expect("test setup is valid");
        let StorageConfig::S3(s3) = &config.storage else {
            panic!("an S3 store: {:?}", config.storage)
        };
        assert_eq!(s3.bucket, "hub-media");
        assert_eq!(
            s3.prefix, "instances/eu",
            "slashes around the prefix are dropped"
        );
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s3.region, "eu-central-1");
        assert!(s3.allow_http);
        assert!(!s3.virtual_hosted_style, "path style unless asked");
        assert_eq!(config.storage.url(), "s3://hub-media/instances/eu");
        let summary = format!("{:?} {config:?}", config.summary());
        assert!(!summary.contains("s3-secret-value"), "{summary}");

        let bare = load_pairs(&[("STORAGE_URL", "s3://hub-media")]).expect("valid");
        let StorageConfig::S3(bare) = &bare.storage else {
            panic!("an S3 store")
        };
        assert_eq!(
            (bare.prefix.as_str(), bare.region.as_str()),
            ("", "us-east-1")
        );
        assert_eq!(bare.endpoint, None, "AWS itself");
    }

    #[test]
    fn a_bad_s3_configuration_names_each_problem() {
        for (url, word) in [
            ("s3://", "bucket"),
            ("s3://Hub_Media/x", "bucket"),
            ("s3://ab", "bucket"),
            ("s3://hub-media/a//b", "prefix"),
            ("s3://hub-media/../b", "prefix"),
            ("ftp://hub-media", "s3://bucket"),
        ] {
            let problems = load_pairs(&[("STORAGE_URL", url)]).unwrap_err();
            assert!(problems.to_string().contains(word), "{url}: {problems}");
        }
        let problems = load_pairs(&[
            ("STORAGE_URL", "s3://hub-media"),
            ("AWS_ENDPOINT_URL", "http://minio.local:9000"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ])
        .unwrap_err()
        .to_string();
        assert!(problems.contains("AWS_ALLOW_HTTP"), "{problems}");
        assert!(problems.contains("AWS_SECRET_ACCESS_KEY"), "{problems}");
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
