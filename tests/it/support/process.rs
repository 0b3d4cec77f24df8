//! Our binary as a real process (`companion-hub serve`, or `worker`), for what only processes show: `kill -9`, several
//! instances on one database, the serving lock. Its log is JSON on stdout; a thread reads it, announces the
//! address the server listens on and keeps draining the pipe.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_companion-hub");

/// Debian's libfaketime, preloaded into a process to move its wall clock (not its monotonic one, with
/// `FAKETIME_DONT_FAKE_MONOTONIC=1`): a host whose clock jumped.
pub fn faketime_library() -> &'static str {
    const LIBRARY: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    assert!(
        Path::new(LIBRARY).exists(),
        "this test needs Debian's libfaketime (apt-get install libfaketime); .ci/run installs it"
    );
    LIBRARY
}

/// A running `companion-hub serve`; killed when dropped.
pub struct ServerProcess {
    child: Child,
    /// `127.0.0.1:port`.
    pub address: String,
}

/// The binary with a clean environment (no stray `.env`), `vars` and a JSON log on stdout.
fn command(dir: &Path, vars: &[(String, String)]) -> Command {
    subcommand("serve", dir, vars)
}

fn subcommand(name: &str, dir: &Path, vars: &[(String, String)]) -> Command {
    let mut command = Command::new(BINARY);
    command
        .arg(name)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .env("LOG_LEVEL", "info")
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

impl ServerProcess {
    /// Starts the server in `dir` with `vars` and waits until it logs where it listens (at most 30 s).
    pub fn start(dir: &Path, vars: &[(String, String)]) -> Self {
        Self::start_as("serve", "companion hub is listening", dir, vars)
    }

    #[cfg_attr(not(feature = "temporal"), allow(dead_code))]
    /// Starts `companion-hub worker` in `dir` with `vars` and waits until it logs that it started (its
    /// `address` is empty).
    pub fn start_worker(dir: &Path, vars: &[(String, String)]) -> Self {
        Self::start_as("worker", "companion hub worker started", dir, vars)
    }

    fn start_as(name: &str, started: &'static str, dir: &Path, vars: &[(String, String)]) -> Self {
        let mut child = subcommand(name, dir, vars)
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if value["message"] == started
                    && let Some(tx) = tx.take()
                {
                    let address = value["address"].as_str().unwrap_or_default();
                    let _ = tx.send(address.to_owned());
                }
            }
        });
        let mut server = Self {
            child,
            address: String::new(),
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(address) => server.address = address,
            Err(_) => {
                let status = server.child.try_wait().ok().flatten();
                let mut stderr = String::new();
                if let Some(mut pipe) = server.child.stderr.take() {
                    let _ = server.child.kill();
                    let _ = pipe.read_to_string(&mut stderr);
                }
                panic!("the server did not start ({status:?}): {stderr}");
            }
        }
        server
    }

    /// Runs the server in `dir` expecting it to refuse to start: its exit status and what it wrote to stderr.
    pub fn refused(dir: &Path, vars: &[(String, String)]) -> (ExitStatus, String) {
        Self::refusal(command(dir, vars).spawn().expect("the binary starts"))
    }

    fn refusal(mut child: Child) -> (ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the server was expected to refuse to start, and kept running");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        (status, stderr)
    }

    /// `http://address` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    /// Waits until `/api/ready` answers 200 (at most 30 s); the moment it did.
    pub async fn ready(&self) -> Instant {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = client.get(self.url("/api/ready")).send().await
                && response.status() == 200
            {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "{} never became ready",
                self.address
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `kill -9`: the process ends at once, without any of its shutdown work.
    pub fn kill_hard(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
