//! `loadgen`: the load harness. It starts the server (or targets a running one), signs users up and creates
//! companions through the public pages and API, and drives concurrent chats against its own fake
//! OpenAI-compatible provider; it reports what users feel (Send → first token, the delay each token adds on
//! its way through the server) and what the server pays (CPU per reply, memory per active chat), as a table
//! and as JSON. How to run each scenario: docs/performance.md.

mod client;
mod provider;
mod report;
mod server;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use futures_util::StreamExt;
use tokio::sync::Mutex;

use client::{ReplyTimes, User};
use report::{Report, Spread};

/// The harness clock: microseconds since it started, shared by the fake provider and the client.
mod clock {
    use std::sync::OnceLock;
    use std::time::Instant;

    static START: OnceLock<Instant> = OnceLock::new();

    /// Microseconds since the first call.
    pub fn micros() -> u64 {
        START.get_or_init(Instant::now).elapsed().as_micros() as u64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Every chat sends again as soon as its reply is done, for `--seconds`.
    Steady,
    /// Every chat sends once, all at the same moment.
    Burst,
}

/// Drives concurrent chats against Companion Hub and reports latency, CPU and memory.
#[derive(Debug, Parser)]
#[command(name = "loadgen")]
struct Args {
    /// What to run.
    #[arg(long, value_enum, default_value = "steady")]
    scenario: Scenario,
    /// Concurrent chats (one companion each).
    #[arg(long, default_value_t = 10)]
    chats: usize,
    /// Tokens per reply.
    #[arg(long, default_value_t = 20)]
    tokens: u32,
    /// Tokens per second of each reply.
    #[arg(long, default_value_t = 20.0)]
    tokens_per_second: f64,
    /// The provider's time to the first token, in milliseconds.
    #[arg(long, default_value_t = 0)]
    first_token_ms: u64,
    /// Length of the steady scenario.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Chats per signed-up user (users are few: signing up costs an Argon2 hash).
    #[arg(long, default_value_t = 50)]
    chats_per_user: usize,
    /// The server's database (`sqlite://…` or `postgres://…`; for PostgreSQL a fresh database is created
    /// next to the one named and dropped afterwards). Default: SQLite in a temporary folder.
    #[arg(long)]
    database_url: Option<String>,
    /// The server binary to start (default: `companion-hub` next to this binary).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Target a running server instead of starting one (it must use `--provider-listen` as its model).
    #[arg(long, requires = "provider_listen")]
    url: Option<String>,
    /// The running server's process id, to read its CPU and memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Where the fake provider listens (default: a free port).
    #[arg(long)]
    provider_listen: Option<String>,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Exit 1 when any reply failed (for CI).
    #[arg(long)]
    strict: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    clock::micros();
    if args.chats == 0 || args.tokens == 0 || args.tokens_per_second <= 0.0 {
        bail!("--chats, --tokens and --tokens-per-second must be positive");
    }
    let listener =
        tokio::net::TcpListener::bind(args.provider_listen.as_deref().unwrap_or("127.0.0.1:0"))
            .await
            .context("the fake provider cannot listen")?;
    let provider_url = format!("http://{}/v1", listener.local_addr()?);
    let cadence = provider::Cadence {
        first_token: Duration::from_millis(args.first_token_ms),
        tokens: args.tokens,
        interval: Duration::from_secs_f64(1.0 / args.tokens_per_second),
    };
    provider::spawn(listener, cadence, Arc::default());

    let folder = Folder::new()?;
    let mut database = Database::new(args.database_url.as_deref(), folder.path()).await?;
    let (url, pid, start_to_ready, _server) = match &args.url {
        Some(url) => (
            url.trim_end_matches('/').to_owned(),
            args.server_pid.map(|pid| pid.to_string()),
            None,
            None,
        ),
        None => {
            let binary = args
                .server_bin
                .clone()
                .unwrap_or_else(server::default_binary);
            let spawned =
                server::spawn(&binary, folder.path(), &database.url, &provider_url).await?;
            let pid = spawned.child.id().map(|pid| pid.to_string());
            (
                spawned.url.clone(),
                pid,
                Some(spawned.start_to_ready),
                Some(spawned),
            )
        }
    };
    let result = run(&args, &url, pid.as_deref(), start_to_ready, &database).await;
    drop(_server);
    database.drop_created().await;
    let report = result?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    if args.strict && (report.errors > 0 || report.replies == 0) {
        bail!("{} replies failed", report.errors);
    }
    Ok(())
}

/// The harness's own folder (the server's data and log); removed at the end unless `LOADGEN_KEEP` is set.
struct Folder(PathBuf);

impl Folder {
    fn new() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "loadgen-{}-{}",
            std::process::id(),
            clock::micros()
        ));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        if std::env::var_os("LOADGEN_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The server's database: the one given, or a fresh one the harness made (and drops).
struct Database {
    url: String,
    kind: &'static str,
    created: Option<(String, String)>,
}

impl Database {
    async fn new(given: Option<&str>, folder: &std::path::Path) -> anyhow::Result<Self> {
        let Some(given) = given else {
            return Ok(Self {
                url: format!("sqlite://{}/loadgen.db", folder.display()),
                kind: "sqlite",
                created: None,
            });
        };
        if !given.starts_with("postgres") {
            return Ok(Self {
                url: given.to_owned(),
                kind: "sqlite",
                created: None,
            });
        }
        use sqlx::Connection;
        let name = format!("loadgen_{}_{}", std::process::id(), clock::micros());
        let mut admin = sqlx::PgConnection::connect(given).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        let mut url = url::Url::parse(given)?;
        url.set_path(&name);
        Ok(Self {
            url: url.to_string(),
            kind: "postgres",
            created: Some((given.to_owned(), name)),
        })
    }

    async fn drop_created(&mut self) {
        use sqlx::Connection;
        if let Some((admin_url, name)) = self.created.take()
            && let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await
        {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await;
        }
    }
}

async fn run(
    args: &Args,
    url: &str,
    pid: Option<&str>,
    start_to_ready: Option<Duration>,
    database: &Database,
) -> anyhow::Result<Report> {
    let ready = pid.map(server::usage).unwrap_or_default();
    let http = client::http_client()?;
    let users = args.chats.div_ceil(args.chats_per_user.max(1));
    let tag = clock::micros() % 1_000_000;
    let signed_up: Vec<User> = futures_util::stream::iter(0..users)
        .map(|i| {
            let http = http.clone();
            async move { User::sign_up(&http, url, &format!("lg{tag}u{i}")).await }
        })
        .buffered(4)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let chats: Vec<(User, String)> = futures_util::stream::iter(0..args.chats)
        .map(|i| {
            let user = signed_up[i % users].clone();
            async move {
                let companion = user.create_companion(&format!("Load {i}")).await?;
                anyhow::Ok((user, companion))
            }
        })
        .buffered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;

    let pid_usage = || pid.map(server::usage).unwrap_or_default();
    let idle = pid_usage();
    let harness_before = server::usage("self");
    let peak_rss = Arc::new(AtomicU64::new(idle.rss_kib));
    let sampling = tokio::spawn({
        let peak_rss = peak_rss.clone();
        let pid = pid.map(str::to_owned);
        async move {
            let Some(pid) = pid else { return };
            loop {
                peak_rss.fetch_max(server::usage(&pid).rss_kib, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });

    let results: Arc<Mutex<Vec<ReplyTimes>>> = Arc::default();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(args.seconds);
    let steady = args.scenario == Scenario::Steady;
    let tasks: Vec<_> = chats
        .into_iter()
        .map(|(user, companion)| {
            let (results, errors) = (results.clone(), errors.clone());
            tokio::spawn(async move {
                let mut turn = 0;
                loop {
                    turn += 1;
                    match user.chat_once(&companion, &format!("Message {turn}")).await {
                        Ok(times) => results.lock().await.push(times),
                        Err(err) => {
                            errors.lock().await.push(format!("{err:#}"));
                            // A failed chat pauses a little so it does not spin on a broken server.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                    if !steady || Instant::now() >= until {
                        break;
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    sampling.abort();
    let after = pid_usage();
    let harness_after = server::usage("self");

    let results = std::mem::take(&mut *results.lock().await);
    let errors = std::mem::take(&mut *errors.lock().await);
    let provider_ttft_us = args.first_token_ms * 1000;
    let first_token: Vec<u64> = results
        .iter()
        .filter_map(|r| r.first_token_us)
        .map(|us| us.saturating_sub(provider_ttft_us))
        .collect();
    let relay: Vec<u64> = results
        .iter()
        .flat_map(|r| r.relay_us.iter().copied())
        .collect();
    let tokens: u64 = results.iter().map(|r| u64::from(r.tokens)).sum();
    let replies = results.len();
    let server_cpu_ms = after.cpu_ms - idle.cpu_ms;
    let peak = peak_rss.load(Ordering::Relaxed).max(after.rss_kib);
    Ok(Report {
        scenario: format!("{:?}", args.scenario).to_lowercase(),
        database: database.kind.to_owned(),
        chats: args.chats,
        tokens_per_reply: args.tokens,
        tokens_per_second: args.tokens_per_second,
        provider_first_token_ms: args.first_token_ms as f64,
        seconds,
        replies,
        errors: errors.len(),
        error_samples: errors.into_iter().take(5).collect(),
        tokens_per_second_total: tokens as f64 / seconds,
        first_token_overhead: Spread::of(first_token),
        relay_overhead: Spread::of(relay),
        start_to_ready_ms: start_to_ready.map(|d| d.as_secs_f64() * 1000.0),
        server_ready_rss_mib: ready.rss_kib as f64 / 1024.0,
        server_idle_rss_mib: idle.rss_kib as f64 / 1024.0,
        server_peak_rss_mib: peak as f64 / 1024.0,
        server_kib_per_active_chat: peak.saturating_sub(idle.rss_kib) as f64 / args.chats as f64,
        server_cpu_ms,
        server_cpu_ms_per_reply: if replies > 0 {
            server_cpu_ms / replies as f64
        } else {
            0.0
        },
        harness_cpu_ms: harness_after.cpu_ms - harness_before.cpu_ms,
    })
}
