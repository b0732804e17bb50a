//! The echo endpoint: answers every call with its request bytes.
//!
//! As srpcd starts it (a per-user handler, socket on fd 3 via `LISTEN_FDS`):
//!
//! ```text
//! echo
//! ```
//!
//! By hand, listening on a socket of its own:
//!
//! ```text
//! echo --socket /tmp/echo.sock
//! ```
//!
//! It logs to stderr (`RUST_LOG` sets the level; `info` by default).

use std::os::unix::net::UnixListener;
use std::process::ExitCode;

use srpc::handler::{serve, Call, Listener};

fn main() -> ExitCode {
    // The listener comes first: taking LISTEN_FDS must happen before any thread.
    let listener = match listener_from_args() {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("echo: {e}");
            return ExitCode::from(2);
        }
    };
    log_to_stderr();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("echo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(listener, |call: Call| async move { Ok(call.data) })) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn listener_from_args() -> Result<Listener, Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(Listener::from_env()?),
        [flag, path] if flag == "--socket" => {
            Ok(Listener::from_std(UnixListener::bind(path)?, "/echo"))
        }
        _ => Err("usage: echo [--socket PATH]".into()),
    }
}

fn log_to_stderr() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
