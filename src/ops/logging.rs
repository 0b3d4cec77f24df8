//! Log set-up: JSON lines in production, readable lines in a terminal, every line inside its request span.
//!
//! Policy: `RUST_LOG` overrides `LOG_LEVEL`; JSON lines carry the whole span list, so a line logged
//! anywhere during a request carries the request's correlation id. Never log passwords, tokens,
//! session ids, API keys or message text at info.

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{Config, LogFormat};

/// The format to use when the configuration leaves it to us.
pub fn effective_format(config: &Config) -> LogFormat {
    config.log_format.unwrap_or_else(|| {
        if std::io::stdout().is_terminal() {
            LogFormat::Pretty
        } else {
            LogFormat::Json
        }
    })
}

/// The filter: `RUST_LOG` when set, else `LOG_LEVEL` for everything.
pub fn filter(config: &Config) -> EnvFilter {
    match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => {
            EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new(&config.log_level))
        }
        _ => EnvFilter::new(&config.log_level),
    }
}

/// A subscriber writing to `writer`; tests pass a buffer, the binary stdout.
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(true)
                .finish(),
        ),
        LogFormat::Pretty => Box::new(builder.with_ansi(ansi).with_target(false).finish()),
    }
}

/// Installs the process-wide subscriber writing to stdout. Call once, from the binary.
pub fn init(config: &Config) -> anyhow::Result<()> {
    let format = effective_format(config);
    let ansi = std::io::stdout().is_terminal();
    let subscriber = subscriber(format, filter(config), std::io::stdout, ansi);
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|err| anyhow::anyhow!("cannot install the logger: {err}"))
}
