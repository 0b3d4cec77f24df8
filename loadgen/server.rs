//! The server under test: started from its binary with a configuration for load (rate limits off, the fake
//! provider as its model), or a running one given by URL; its CPU time and memory read from `/proc`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// A started server.
pub struct Spawned {
    /// Its base URL.
    pub url: String,
    /// The process.
    pub child: Child,
    /// From spawning the process to the first 200 of `/api/ready`.
    pub start_to_ready: Duration,
}

/// Starts `binary` on a free port with `database_url` and the provider at `provider_url`; waits until ready.
pub async fn spawn(
    binary: &Path,
    data_dir: &Path,
    database_url: &str,
    provider_url: &str,
) -> anyhow::Result<Spawned> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(data_dir.join("server.log"))?;
    let started = Instant::now();
    let mut command = Command::new(binary);
    command
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("DATA_DIR", data_dir)
        .env("DATABASE_URL", database_url)
        .env("LLM_BASE_URL", provider_url)
        .env("LLM_MODEL", "loadgen")
        // `LOADGEN_SERVER_LOG` sets the server's log filter (e.g. `warn,sqlx::query=debug` to count statements).
        .env(
            "LOG_LEVEL",
            std::env::var("LOADGEN_SERVER_LOG").unwrap_or_else(|_| "warn".to_owned()),
        )
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    // The replies written at once, and the engine, as the harness was told (`MAX_ACTIVE_REPLIES=300 loadgen …`,
    // `WORKFLOW_ENGINE=temporal TEMPORAL_ADDRESS=… loadgen …` with a server built with `--features temporal`).
    for passed in [
        "MAX_ACTIVE_REPLIES",
        "WORKFLOW_ENGINE",
        "TEMPORAL_ADDRESS",
        "TEMPORAL_NAMESPACE",
        "TEMPORAL_TASK_QUEUE",
    ] {
        if let Some(value) = std::env::var_os(passed) {
            command.env(passed, value);
        }
    }
    for limit in [
        "LOGIN",
        "LOGIN_IP",
        "REGISTER",
        "CHAT",
        "IMAGE",
        "COMPANION_CREATE",
        "SETTINGS",
    ] {
        command.env(format!("RATE_LIMIT_{limit}"), "off");
    }
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let http = reqwest::Client::new();
    loop {
        if let Ok(response) = http.get(format!("{url}/api/ready")).send().await
            && response.status().is_success()
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!(
                "the server was not ready within 30 s; see {}",
                data_dir.join("server.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(Spawned {
        url,
        start_to_ready: started.elapsed(),
        child,
    })
}

/// The server binary next to this one (`target/<profile>/companion-hub`).
pub fn default_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("companion-hub")))
        .unwrap_or_else(|| PathBuf::from("companion-hub"))
}

/// CPU time and memory of a process, from `/proc/<pid>`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Usage {
    /// User + system CPU time, in milliseconds.
    pub cpu_ms: f64,
    /// Resident memory now, in KiB.
    pub rss_kib: u64,
    /// Peak resident memory, in KiB.
    pub peak_rss_kib: u64,
}

/// The usage of process `pid` (`self` for this one); zeros where `/proc` cannot be read.
pub fn usage(pid: &str) -> Usage {
    // USER_HZ is 100 on every Linux the harness targets.
    const TICKS_PER_SECOND: f64 = 100.0;
    let mut usage = Usage::default();
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Fields after the command name (which may contain spaces) start at ") ".
        let fields: Vec<&str> = stat
            .rsplit_once(") ")
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
            .sum();
        usage.cpu_ms = ticks * 1000.0 / TICKS_PER_SECOND;
    }
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        usage.rss_kib = field("VmRSS:");
        usage.peak_rss_kib = field("VmHWM:");
    }
    usage
}
