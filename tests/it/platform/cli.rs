//! The binary as an operator meets it: help, version, check-config, start-up failures, SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const BINARY: &str = env!("CARGO_BIN_EXE_companion-hub");

/// The binary with a clean environment in a fresh working folder (so no stray .env is read).
fn command(dir: &std::path::Path) -> Command {
    let mut command = Command::new(BINARY);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(dir);
    command
}

fn run(command: &mut Command) -> (i32, String, String) {
    let output = command.output().expect("binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn version_and_help_describe_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(command(dir.path()).arg("--version"));
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        format!("companion-hub {}", env!("CARGO_PKG_VERSION"))
    );

    let (code, out, _) = run(command(dir.path()).arg("--help"));
    assert_eq!(code, 0);
    for word in ["serve", "migrate", "check-config"] {
        assert!(out.contains(word), "{word} missing in help: {out}");
    }
    let (code, out, _) = run(command(dir.path()).args(["migrate", "--help"]));
    assert_eq!(code, 0);
    assert!(out.contains("--status"));
}

#[test]
fn check_config_lists_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(command(dir.path())
        .arg("check-config")
        .env("DATABASE_URL", "mysql://root:topsecret@db/hub")
        .env("LISTEN_ADDR", "everywhere")
        .env("RATE_LIMIT_LOGIN", "five per minute")
        .env("LOCKOUT_THRESHOLD", "-1"));
    assert_eq!(code, 1, "{out}{err}");
    for variable in [
        "DATABASE_URL",
        "LISTEN_ADDR",
        "RATE_LIMIT_LOGIN",
        "LOCKOUT_THRESHOLD",
    ] {
        assert!(err.contains(variable), "{variable} missing: {err}");
    }
    assert!(err.contains("4 problems"), "{err}");
    assert!(!err.contains("topsecret"), "secrets never printed: {err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn check_config_reads_dot_env_and_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "DATABASE_URL=postgres://app:dbsecret@localhost/hub\nLLM_BASE_URL=http://localhost:11434/v1\n\
         LLM_MODEL=llama3\nLLM_API_KEY=sk-supersecret\nMETRICS_TOKEN=metrics-supersecret-token\n",
    )
    .unwrap();
    let (code, out, err) = run(command(dir.path()).arg("check-config"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("configuration is valid"));
    assert!(out.contains("postgres://app:***@localhost/hub"), "{out}");
    assert!(out.contains("llama3"));
    for secret in ["dbsecret", "sk-supersecret", "metrics-supersecret"] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "{secret} printed"
        );
    }
}

#[test]
fn an_unreachable_database_stops_start_up_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(command(dir.path())
        .env("DATABASE_URL", "postgres://hub:hunter2@127.0.0.1:1/hub")
        .env("LOG_FORMAT", "json"));
    assert_eq!(code, 1);
    let error_lines: Vec<&str> = err.lines().collect();
    assert_eq!(error_lines.len(), 1, "exactly one line: {err}");
    assert!(
        error_lines[0].starts_with(
            "error: cannot connect to the database at postgres://hub:***@127.0.0.1:1/hub"
        ),
        "{err}"
    );
    assert!(!err.contains("hunter2") && !out.contains("hunter2"));
    assert!(!err.contains("panicked"));
}

#[test]
fn an_invalid_database_url_stops_start_up_with_its_problem() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(command(dir.path()).env("DATABASE_URL", "redis://localhost"));
    assert_eq!(code, 1);
    assert!(
        err.contains("DATABASE_URL: must start with sqlite:// or postgres://"),
        "{err}"
    );
    assert!(!err.contains("panicked"));
}

#[test]
fn an_unwritable_sqlite_location_stops_start_up_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "not a folder").unwrap();
    let url = format!("sqlite://{}/sub/hub.db", blocker.display());
    let (code, _, err) = run(command(dir.path())
        .env("DATABASE_URL", &url)
        .env("LOG_FORMAT", "json"));
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: cannot create the folder"), "{err}");
}

#[test]
fn the_server_starts_with_defaults_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = command(dir.path())
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("server starts");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let mut guard = Kill(child);

    // Read log lines until the server says where it listens.
    let mut address = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        if value["message"] == "companion hub is listening" {
            address = value["address"].as_str().map(str::to_owned);
            break;
        }
    }
    let address = address.expect("the server logs its address");
    assert!(
        dir.path().join("data/companion-hub.db").exists(),
        "default SQLite file in ./data"
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let ready = reqwest::get(format!("http://{address}/api/ready"))
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);
        let home = reqwest::get(format!("http://{address}/")).await.unwrap();
        assert_eq!(home.status(), 200);
    });

    let pid = guard.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = guard.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "graceful exit: {status:?}");
}

#[test]
fn migrate_and_status_work_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(command(dir.path()).args(["migrate", "--status"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("pending") && out.contains("0 applied"),
        "{out}"
    );
    let (code, out, err) = run(command(dir.path()).arg("migrate"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("applied"), "{out}");
    let (code, out, _) = run(command(dir.path()).args(["migrate", "--status"]));
    assert_eq!(code, 0);
    assert!(out.contains(", 0 pending"), "{out}");
}

#[test]
fn a_worker_needs_temporal_and_postgres_and_says_so_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}/hub.db", dir.path().display());
    let (code, _, stderr) = run(command(dir.path())
        .args(["worker"])
        .env("DATABASE_URL", &database));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("set WORKFLOW_ENGINE=temporal"), "{stderr}");

    let on_temporal = |subcommand: &str| {
        run(command(dir.path())
            .args([subcommand])
            .env("DATABASE_URL", &database)
            .env("WORKFLOW_ENGINE", "temporal"))
    };
    let (code, _, stderr) = on_temporal("worker");
    assert_eq!(code, 1, "{stderr}");
    if cfg!(feature = "temporal") {
        assert!(stderr.contains("needs PostgreSQL"), "{stderr}");
    } else {
        // A binary built without Temporal refuses the setting itself, in one line naming the fix, at start-up
        // and in check-config alike.
        assert!(stderr.contains("--features temporal"), "{stderr}");
        for subcommand in ["serve", "check-config"] {
            let (code, _, stderr) = on_temporal(subcommand);
            assert_eq!(code, 1, "{subcommand}: {stderr}");
            let problem: Vec<&str> = stderr
                .lines()
                .filter(|l| l.contains("WORKFLOW_ENGINE"))
                .collect();
            assert_eq!(problem.len(), 1, "{subcommand}: {stderr}");
            assert!(problem[0].contains("--features temporal"), "{stderr}");
        }
    }
}
