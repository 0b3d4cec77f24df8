//! The command line: `serve` (default), `migrate [--status]`, `check-config`, `unlock-user`.
//!
//! Policy: a failure prints one line saying what is wrong (never a panic trace) and exits 1; secrets
//! are never printed. Commands write to the writers they are given, so tests run them in-process.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use crate::app::App;
use crate::config::{Config, ConfigProblems};
use crate::db::{Db, migrate};
use crate::{accounts, ops};

/// Companion Hub: create AI companions and talk with them.
#[derive(Debug, Parser)]
#[command(name = "companion-hub", version, about, long_about = None)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the web server (the default).
    Serve,
    /// Run only a Temporal worker (WORKFLOW_ENGINE=temporal): no pages; `/metrics` and health on
    /// WORKER_LISTEN_ADDR when set.
    Worker,
    /// Apply pending database migrations, or show them with --status.
    Migrate {
        /// List applied and pending migrations instead of applying them.
        #[arg(long)]
        status: bool,
    },
    /// Validate the configuration and print it with secrets masked; exit 1 on any problem.
    CheckConfig,
    /// Lift an account lock (after too many failed sign-ins).
    UnlockUser {
        /// The account's username or email.
        identifier: String,
    },
    /// Delete stored image files that nothing references any more (older than the grace period).
    CleanupImages {
        /// Report what would be deleted without deleting anything.
        #[arg(long)]
        dry_run: bool,
        /// Keep unreferenced files younger than this many minutes (default: CLEANUP_GRACE_MINUTES).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=525_600))]
        grace_minutes: Option<u32>,
    },
}

/// Parses the command line, runs the command, and turns the outcome into an exit code.
pub fn main_entry() -> ExitCode {
    let cli = Cli::parse();
    let config = Config::from_env();
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    if !crate::ops::allocator::tune() {
        let _ = writeln!(
            stderr,
            "warning: malloc refused its thresholds; large freed buffers may stay resident"
        );
    }

    if let Some(Command::CheckConfig) = cli.command {
        return ExitCode::from(check_config(config, &mut stdout, &mut stderr));
    }
    let config = match config {
        Ok(config) => config,
        Err(problems) => {
            let _ = write!(stderr, "{problems}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            let _ = writeln!(stderr, "error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            None | Some(Command::Serve) => serve(config).await,
            Some(Command::Worker) => worker(config).await,
            Some(Command::Migrate { status }) => {
                migrate_command(&config, status, &mut stdout).await
            }
            Some(Command::UnlockUser { identifier }) => {
                unlock_user_command(&config, &identifier, &mut stdout).await
            }
            Some(Command::CleanupImages {
                dry_run,
                grace_minutes,
            }) => cleanup_images_command(&config, dry_run, grace_minutes, &mut stdout).await,
            Some(Command::CheckConfig) => Ok(()),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = writeln!(stderr, "error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `check-config`: prints the effective configuration (secrets masked) and warnings, or every problem.
pub fn check_config(
    config: Result<Config, ConfigProblems>,
    out: &mut impl Write,
    err: &mut impl Write,
) -> u8 {
    match config {
        Ok(config) => {
            let _ = writeln!(out, "configuration is valid");
            let summary = config.summary();
            let width = summary
                .iter()
                .map(|(name, _)| name.len())
                .max()
                .unwrap_or(0);
            for (name, value) in summary {
                let _ = writeln!(out, "  {name:<width$} {value}");
            }
            for warning in config.warnings() {
                let _ = writeln!(out, "warning: {warning}");
            }
            0
        }
        Err(problems) => {
            let _ = write!(err, "{problems}");
            1
        }
    }
}

/// `migrate`: applies pending migrations; `migrate --status`: lists them.
pub async fn migrate_command(
    config: &Config,
    status_only: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let db = Db::connect(config.database_url.expose()).await?;
    let result = if status_only {
        print_status(&db, out).await
    } else {
        let applied = migrate::run(&db).await?;
        if applied.is_empty() {
            writeln!(out, "the database is up to date; nothing to apply")?;
        } else {
            for version in &applied {
                writeln!(out, "applied {version}")?;
            }
            writeln!(out, "{} migration(s) applied", applied.len())?;
        }
        Ok(())
    };
    db.close().await;
    result
}

/// `unlock-user <username|email>`: clears every failure count and lock of one account (its identifiers
/// and its browsers).
pub async fn unlock_user_command(
    config: &Config,
    identifier: &str,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let db = Db::connect(config.database_url.expose()).await?;
    let status = migrate::status(&db).await?;
    if let Some(problem) = status.incompatibility() {
        return Err(problem.into());
    }
    let unlocked = accounts::sign_in::unlock(&db, identifier).await;
    db.close().await;
    match unlocked? {
        Some(username) => {
            writeln!(out, "unlocked @{username}; they can sign in again")?;
            Ok(())
        }
        None => Err(anyhow::anyhow!(
            "no account has the username or email {identifier:?}"
        )),
    }
}

/// `cleanup-images [--dry-run] [--grace-minutes N]`: one sweep of orphaned image files, with its report.
pub async fn cleanup_images_command(
    config: &Config,
    dry_run: bool,
    grace_minutes: Option<u32>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let db = Db::connect(config.database_url.expose()).await?;
    let status = migrate::status(&db).await?;
    if let Some(problem) = status.incompatibility() {
        return Err(problem.into());
    }
    let media = crate::media::MediaStorage::open(&config.storage)?;
    let grace = grace_minutes.map_or(config.cleanup.grace, |minutes| {
        std::time::Duration::from_secs(u64::from(minutes) * 60)
    });
    let report = crate::media::cleanup::sweep(&db, &media, grace, dry_run).await;
    db.close().await;
    let report = report?;
    let verb = if dry_run { "would delete" } else { "deleted" };
    writeln!(
        out,
        "scanned {} files; {verb} {} orphaned ({} bytes); kept {} younger than {} minutes; \
         left {} foreign files alone; took {} ms",
        report.scanned,
        report.orphans,
        report.freed_bytes,
        report.young,
        grace.as_secs() / 60,
        report.foreign,
        report.duration_ms
    )?;
    Ok(())
}

async fn print_status(db: &Db, out: &mut impl Write) -> anyhow::Result<()> {
    let status = migrate::status(db).await?;
    writeln!(out, "database: {}", db.backend().name())?;
    writeln!(out, "{:<16} {:<8} name", "version", "state")?;
    for migration in &status.known {
        let state = if status.modified.contains(&migration.version) {
            "MODIFIED"
        } else if migration.applied {
            "applied"
        } else {
            "pending"
        };
        writeln!(
            out,
            "{:<16} {:<8} {}",
            migration.version, state, migration.description
        )?;
    }
    for version in &status.unknown_applied {
        writeln!(
            out,
            "{version:<16} {:<8} (unknown to this binary)",
            "applied"
        )?;
    }
    let pending = status.pending().count();
    writeln!(
        out,
        "{} applied, {pending} pending",
        status.known.len() - pending
    )?;
    if let Some(problem) = status.incompatibility() {
        return Err(problem.into());
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    ops::logging::init(&config)?;
    let listen_addr = config.listen_addr;
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let app = App::build(config).await?;
    let listener = TcpListener::bind(listen_addr)
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen on {listen_addr}: {err}"))?;
    app.serve(listener, shutdown_signal()).await?;
    Ok(())
}

async fn worker(config: Config) -> anyhow::Result<()> {
    ops::logging::init(&config)?;
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let app = App::build(config).await?;
    app.work(shutdown_signal()).await?;
    Ok(())
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_config_prints_a_masked_summary_and_warnings() {
        let config = Config::from_vars([
            ("DATABASE_URL", "postgres://app:pw-secret@db/hub"),
            ("LISTEN_ADDR", "0.0.0.0:8080"),
            ("METRICS_TOKEN", "metrics-secret-123456"),
        ]);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(check_config(config, &mut out, &mut err), 0);
        let out = String::from_utf8(out).expect("test setup is valid");
        assert!(out.starts_with("configuration is valid"));
        assert!(out.contains("postgres://app:***@db/hub"));
        assert!(!out.contains("pw-secret") && !out.contains("metrics-secret"));
        assert!(out.contains("warning: PUBLIC_URL is not set"));
        assert!(err.is_empty());
    }

    #[test]
    fn check_config_reports_problems_on_stderr_with_exit_code_1() {
        let config = Config::from_vars([("SESSION_DAYS", "forever"), ("LOG_FORMAT", "xml")]);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(check_config(config, &mut out, &mut err), 1);
        let err = String::from_utf8(err).expect("test setup is valid");
        assert!(err.contains("2 problems"));
        assert!(err.contains("SESSION_DAYS") && err.contains("LOG_FORMAT"));
        assert!(out.is_empty());
    }

    #[test]
    fn the_command_line_parses_every_subcommand() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|cli| cli.command);
        assert!(matches!(parse(&["companion-hub"]), Ok(None)));
        assert!(matches!(
            parse(&["companion-hub", "serve"]),
            Ok(Some(Command::Serve))
        ));
        assert!(matches!(
            parse(&["companion-hub", "worker"]),
            Ok(Some(Command::Worker))
        ));
        assert!(matches!(
            parse(&["companion-hub", "migrate", "--status"]),
            Ok(Some(Command::Migrate { status: true }))
        ));
        assert!(matches!(
            parse(&["companion-hub", "check-config"]),
            Ok(Some(Command::CheckConfig))
        ));
        assert!(matches!(
            parse(&["companion-hub", "unlock-user", "alice"]),
            Ok(Some(Command::UnlockUser { identifier })) if identifier == "alice"
        ));
        assert!(parse(&["companion-hub", "unlock-user"]).is_err());
        assert!(matches!(
            parse(&[
                "companion-hub",
                "cleanup-images",
                "--dry-run",
                "--grace-minutes",
                "1"
            ]),
            Ok(Some(Command::CleanupImages {
                dry_run: true,
                grace_minutes: Some(1)
            }))
        ));
        assert!(parse(&["companion-hub", "cleanup-images", "--grace-minutes", "-5"]).is_err());
        assert!(
            parse(&["companion-hub", "cleanup-images", "--grace-minutes", "0"]).is_err(),
            "a file being written is never taken"
        );
        assert!(parse(&["companion-hub", "launch-rockets"]).is_err());
    }
}
