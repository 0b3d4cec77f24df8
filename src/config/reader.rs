//! Reading variables without stopping at the first problem: the problem list, the `Reader` with its typed
//! getters, and the parsers of URLs, rate limits and database URLs that `load` and its sections share.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use url::Url;

use super::{RateLimit, S3Storage, Secret, StorageConfig};

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
pub(super) struct Reader {
    pub(super) vars: HashMap<String, String>,
    pub(super) problems: Vec<ConfigProblem>,
}

impl Reader {
    /// The trimmed value, or `None` when unset or blank (a blank line in `.env` means "default").
    pub(super) fn get(&self, name: &str) -> Option<String> {
        self.vars
            .get(name)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    }

    pub(super) fn problem(&mut self, name: &str, message: impl Into<String>) {
        self.problems.push(ConfigProblem::new(name, message));
    }

    /// Parses with `parse`, falling back to `default` when unset or invalid (the problem is recorded).
    pub(super) fn parsed<T>(
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

    pub(super) fn integer(&mut self, name: &str, default: u32, min: u32, max: u32) -> u32 {
        self.parsed(name, default, |raw| match raw.parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(format!(
                "must be a whole number from {min} to {max}, got {raw:?}"
            )),
        })
    }

    pub(super) fn float(&mut self, name: &str, default: f32, min: f32, max: f32) -> f32 {
        self.parsed(name, default, |raw| match raw.parse::<f32>() {
            Ok(n) if n.is_finite() && (min..=max).contains(&n) => Ok(n),
            _ => Err(format!("must be a number from {min} to {max}, got {raw:?}")),
        })
    }

    pub(super) fn boolean(&mut self, name: &str, default: bool) -> bool {
        self.parsed(name, default, |raw| {
            match raw.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(format!("must be true or false, got {raw:?}")),
            }
        })
    }

    pub(super) fn http_url(&mut self, name: &str) -> Option<Url> {
        let raw = self.get(name)?;
        match parse_http_url(&raw) {
            Ok(url) => Some(url),
            Err(message) => {
                self.problem(name, message);
                None
            }
        }
    }

    pub(super) fn secret(&mut self, name: &str) -> Option<Secret> {
        self.get(name).map(Secret::new)
    }

    pub(super) fn rate_limit(&mut self, name: &str, default: &str) -> Option<RateLimit> {
        let fallback = parse_rate_limit(default).unwrap_or(None);
        self.parsed(name, fallback, parse_rate_limit)
    }
}

pub(super) fn parse_http_url(raw: &str) -> Result<Url, String> {
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

pub(super) fn check_database_url(raw: &str) -> Result<(), String> {
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

/// A `redis://` URL the Redis client accepts (this build speaks plain TCP to Redis, as to PostgreSQL).
pub(super) fn check_redis_url(raw: &str) -> Result<(), String> {
    let shown = super::redact_url(raw);
    if raw.starts_with("rediss://") {
        return Err(format!(
            "rediss:// (TLS) is not supported by this build; use redis:// on a private network, got {shown}"
        ));
    }
    if !raw.starts_with("redis://") {
        return Err(format!(
            "must start with redis://, like redis://127.0.0.1:6379/0, got {shown}"
        ));
    }
    redis::Client::open(raw)
        .map(|_| ())
        .map_err(|err| format!("is not a valid Redis URL ({err}): {shown}"))
}

pub(super) fn storage_from_url(raw: &str, data_dir: &Path) -> Result<StorageConfig, String> {
    if let Some(path) = raw.strip_prefix("file://") {
        if path.is_empty() {
            return Err("file:// needs a folder, e.g. file:///var/lib/companion-hub/media".into());
        }
        return Ok(StorageConfig::Local(PathBuf::from(path)));
    }
    if let Some(rest) = raw.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket_name(bucket)?;
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty()
            && prefix.split('/').any(|segment| {
                segment.is_empty()
                    || segment == "."
                    || segment == ".."
                    || segment.chars().any(char::is_control)
            })
        {
            return Err(format!(
                "the prefix after the bucket must be folder names separated by single slashes, got {prefix:?}"
            ));
        }
        return Ok(StorageConfig::S3(S3Storage {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            endpoint: None,
            region: "us-east-1".to_owned(),
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            allow_http: false,
            virtual_hosted_style: false,
        }));
    }
    Err(format!(
        "must be file:///folder or s3://bucket/prefix, got {raw:?} (the default is file://{}/media)",
        data_dir.display()
    ))
}

/// S3's bucket naming rules: 3–63 lowercase letters, digits, dots and hyphens, starting and ending with a
/// letter or digit.
fn check_bucket_name(bucket: &str) -> Result<(), String> {
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let valid = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && edge_ok(bucket.chars().next())
        && edge_ok(bucket.chars().last());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "s3:// needs a bucket name of 3–63 lowercase letters, digits, dots and hyphens \
             (s3://my-bucket/media), got {bucket:?}"
        ))
    }
}
