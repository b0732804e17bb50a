//! Logging: to journald when it is there, else to stderr.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Sets up logging for a process named `identifier` (`SYSLOG_IDENTIFIER`).
/// `RUST_LOG` selects what is logged (default: `info`).
pub fn init(identifier: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let to_journal = std::env::var_os("SRPC_LOG_STDERR").is_none();
    match tracing_journald::layer() {
        Ok(layer) if to_journal => {
            registry
                .with(layer.with_syslog_identifier(identifier.to_owned()))
                .init();
        }
        _ => {
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                        .with_writer(std::io::stderr)
                        .with_target(false),
                )
                .init();
        }
    }
}
