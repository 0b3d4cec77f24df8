//! `loadgen`: the load harness. It starts the server (or targets a running one), signs users up and creates
//! companions through the public pages and API, and drives concurrent chats against its own fake
//! OpenAI-compatible provider; it reports what users feel (Send → first token, the delay each token adds on
//! its way through the server) and what the server pays (CPU per reply, memory per active chat), as a table
//! and as JSON. How to run each scenario: docs/performance.md.

mod client;
mod conversation;
mod provider;
mod report;
mod server;
mod sign_in;
mod subscribers;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use futures_util::StreamExt;
use tokio::sync::Mutex;

use client::{ReplyTimes, User};
use report::Report;

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
    /// `--subscribers` event streams held open on `--chats` replies that wait for their first token for
    /// `--seconds`; then the replies stream to every subscriber.
    Subscribers,
    /// One conversation grown to `--messages` messages: the chat page's and a Send's cost on it.
    Conversation,
    /// Sign-ins (Argon2) for half of `--seconds`, then signed-in pages for the other half, from `--chats`
    /// clients at once.
    SignIn,
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
    /// Event streams held open (scenario `subscribers`).
    #[arg(long, default_value_t = 10_000)]
    subscribers: usize,
    /// Messages the conversation grows to (scenario `conversation`).
    #[arg(long, default_value_t = 10_000)]
    messages: usize,
    /// Chat page loads and Sends measured on the grown conversation (scenario `conversation`).
    #[arg(long, default_value_t = 200)]
    samples: usize,
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
    /// Read every reply's stream from this second running instance of the same deployment (scenario (f):
    /// sent on `--url`, streamed from here; both servers on one PostgreSQL database, both using
    /// `--provider-listen` as their model).
    #[arg(long, requires = "url")]
    stream_url: Option<String>,
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
    let provider = provider::spawn(listener, cadence);

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
    let result = run(
        &args,
        &url,
        pid.as_deref(),
        start_to_ready,
        &database,
        &provider,
    )
    .await;
    drop(_server);
    database.drop_created().await;
    let report = result?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    if args.strict && (report.errors > 0 || !report.measured_something()) {
        bail!(
            "{} operations failed, {} replies completed",
            report.errors,
            report.replies
        );
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
    provider: &provider::Control,
) -> anyhow::Result<Report> {
    let ready = pid.map(server::usage).unwrap_or_default();
    let http = client::http_client()?;
    let users = args.chats.div_ceil(args.chats_per_user.max(1));
    let tag = clock::micros() % 1_000_000;
    let usernames: Vec<String> = (0..users).map(|i| format!("lg{tag}u{i}")).collect();
    let signed_up: Vec<User> = futures_util::stream::iter(&usernames)
        .map(|username| async {
            let user = User::sign_up(&http, url, username).await?;
            anyhow::Ok(match &args.stream_url {
                Some(stream_url) => user.streaming_from(stream_url),
                None => user,
            })
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

    let watch = Watch::start(pid);
    let idle = watch.usage();
    let mut report = Report::new(args, database.kind);
    report.start_to_ready_ms = start_to_ready.map(|d| d.as_secs_f64() * 1000.0);
    report.server_ready_rss_mib = mib(ready.rss_kib);
    report.server_idle_rss_mib = mib(idle.rss_kib);
    let measured = match args.scenario {
        Scenario::Steady | Scenario::Burst => chat_load(args, chats, &watch).await?,
        Scenario::Subscribers => {
            let (measured, section) = subscribers::run(args, &chats, provider, &watch).await?;
            report.subscribers = Some(section);
            measured
        }
        Scenario::Conversation => {
            let (measured, section) = conversation::run(args, &chats, provider, &watch).await?;
            report.conversation = Some(section);
            measured
        }
        Scenario::SignIn => {
            let (measured, section) = sign_in::run(args, url, &usernames, &chats, &watch).await?;
            report.sign_in = Some(section);
            measured
        }
    };
    report.add(measured, args.first_token_ms, args.chats);
    Ok(report)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// What the measured phase of a scenario yields for the common part of the report.
pub struct Measured {
    /// The replies read to their end.
    pub replies: Vec<ReplyTimes>,
    /// Why the others failed.
    pub errors: Vec<String>,
    /// The phase's length.
    pub seconds: f64,
    /// The server's usage before and after it, its peak memory during it, and the harness's CPU.
    pub before: server::Usage,
    /// After the phase.
    pub after: server::Usage,
    /// Highest server RSS seen during the phase, KiB.
    pub peak_rss_kib: u64,
    /// The harness's CPU time during the phase.
    pub harness_cpu_ms: f64,
}

/// Watches the server process: its usage now, its peak memory since the last [`Watch::phase`].
pub struct Watch {
    pid: Option<String>,
    peak_rss: Arc<AtomicU64>,
    sampling: Option<tokio::task::JoinHandle<()>>,
}

impl Watch {
    fn start(pid: Option<&str>) -> Self {
        let peak_rss = Arc::new(AtomicU64::new(0));
        let sampling = pid.map(|pid| {
            let (peak_rss, pid) = (peak_rss.clone(), pid.to_owned());
            tokio::spawn(async move {
                loop {
                    peak_rss.fetch_max(server::usage(&pid).rss_kib, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        });
        Self {
            pid: pid.map(str::to_owned),
            peak_rss,
            sampling,
        }
    }

    /// The server's usage now (zeros when it is not known).
    pub fn usage(&self) -> server::Usage {
        self.pid.as_deref().map(server::usage).unwrap_or_default()
    }

    /// Starts a measured phase: the peak starts again from now.
    pub fn phase(&self) -> Phase<'_> {
        let before = self.usage();
        self.peak_rss.store(before.rss_kib, Ordering::Relaxed);
        Phase {
            watch: self,
            before,
            harness_before: server::usage("self"),
            started: Instant::now(),
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(sampling) = self.sampling.take() {
            sampling.abort();
        }
    }
}

/// A measured phase in progress.
pub struct Phase<'a> {
    watch: &'a Watch,
    /// The server's usage when it began.
    pub before: server::Usage,
    harness_before: server::Usage,
    started: Instant,
}

impl Phase<'_> {
    /// Ends the phase with what it produced.
    pub fn end(self, replies: Vec<ReplyTimes>, errors: Vec<String>) -> Measured {
        let after = self.watch.usage();
        Measured {
            replies,
            errors,
            seconds: self.started.elapsed().as_secs_f64(),
            before: self.before,
            after,
            peak_rss_kib: self
                .watch
                .peak_rss
                .load(Ordering::Relaxed)
                .max(after.rss_kib),
            harness_cpu_ms: server::usage("self").cpu_ms - self.harness_before.cpu_ms,
        }
    }
}

/// Scenarios `steady` and `burst`: every chat sends; in `steady` again after each reply until `--seconds`.
async fn chat_load(
    args: &Args,
    chats: Vec<(User, String)>,
    watch: &Watch,
) -> anyhow::Result<Measured> {
    let results: Arc<Mutex<Vec<ReplyTimes>>> = Arc::default();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let phase = watch.phase();
    let until = Instant::now() + Duration::from_secs_f64(args.seconds);
    let steady = args.scenario == Scenario::Steady;
    // Steady chats start spread over one reply's length, so their Sends arrive evenly. Started together,
    // replies of equal length keep them in step: every reply's length brought a burst of every chat's Send,
    // which is the burst scenario's case, not a steady load.
    let reply_length = Duration::from_millis(args.first_token_ms)
        + Duration::from_secs_f64(f64::from(args.tokens) / args.tokens_per_second);
    let count = u32::try_from(chats.len()).unwrap_or(u32::MAX).max(1);
    let tasks: Vec<_> = chats
        .into_iter()
        .enumerate()
        .map(|(index, (user, companion))| {
            let (results, errors) = (results.clone(), errors.clone());
            let offset = if steady {
                reply_length * u32::try_from(index).unwrap_or(0) / count
            } else {
                Duration::ZERO
            };
            tokio::spawn(async move {
                tokio::time::sleep(offset).await;
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
    let results = std::mem::take(&mut *results.lock().await);
    let errors = std::mem::take(&mut *errors.lock().await);
    Ok(phase.end(results, errors))
}
