//! Logging: to journald when its socket is there, else to stderr.
//!
//! Journal fields carry no prefix: a field `srpc_user` is the journal's
//! `SRPC_USER` and `message_id` its `MESSAGE_ID` (the audit events of
//! `crate::audit` rely on both). `tracing_journald::layer()` fails (NotFound)
//! when there is no journal socket; srpcd then writes to stderr, as it does
//! when `SRPC_LOG_STDERR` is set (tests, running by hand).

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Sets up logging for a process named `identifier` (`SYSLOG_IDENTIFIER`).
/// `RUST_LOG` selects what is logged (default: `info`). Returns a handle
/// that changes the filter at run time (`srpcctl log-level`).
pub fn init(identifier: &str) -> LevelHandle {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let to_journal = std::env::var_os("SRPC_LOG_STDERR").is_none();
    match tracing_journald::layer() {
        Ok(layer) if to_journal => {
            registry
                .with(
                    layer
                        .with_syslog_identifier(identifier.to_owned())
                        .with_field_prefix(None),
                )
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
    LevelHandle(Some(handle))
}

/// Changes what is logged while running.
#[derive(Clone, Default)]
pub struct LevelHandle(
    Option<tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>>,
);

impl LevelHandle {
    /// Sets the filter to `directives` (`RUST_LOG` syntax: `debug`,
    /// `info,srpcd::audit=debug`). A bad directive changes nothing.
    pub fn set(&self, directives: &str) -> Result<(), String> {
        let filter = EnvFilter::try_new(directives).map_err(|e| format!("{directives:?}: {e}"))?;
        let Some(handle) = &self.0 else {
            return Err("logging is not set up in this process".to_owned());
        };
        handle.reload(filter).map_err(|e| e.to_string())
    }
}
