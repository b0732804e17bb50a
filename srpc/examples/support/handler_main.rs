//! What every example handler's `main` does: take the listener (before any
//! thread starts, as `LISTEN_FDS` requires), log to stderr, serve on a tokio
//! runtime, and turn the outcome into an exit status (2: bad usage or no
//! socket; 1: serving failed).

use std::os::unix::net::UnixListener;
use std::process::ExitCode;

use srpc::handler::{serve, HandlerFn, Listener};

/// A per-user handler's main: the socket from srpcd (`LISTEN_FDS`), or with
/// `--socket PATH` one of its own, serving `endpoint`.
pub(crate) fn main_with<H: HandlerFn>(name: &str, endpoint: &str, handler: H) -> ExitCode {
    let listener = match listener_from_args(name, endpoint) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    log_to_stderr();
    run(name, listener, handler)
}

fn listener_from_args(name: &str, endpoint: &str) -> Result<Listener, Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(Listener::from_env()?),
        [flag, path] if flag == "--socket" => {
            Ok(Listener::from_std(UnixListener::bind(path)?, endpoint))
        }
        _ => Err(format!("usage: {name} [--socket PATH]").into()),
    }
}

/// Serves `listener` with `handler` until SIGTERM/SIGINT (or idle exit).
pub(crate) fn run<H: HandlerFn>(name: &str, listener: Listener, handler: H) -> ExitCode {
    // One thread: a per-user handler serves one user, and these answer from
    // memory. A multi-thread runtime per user would cost a thread per core,
    // their memory, and a cross-thread wake-up on most calls; a handler that
    // computes per call can pick one (docs/architecture.md, "Cost per call").
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(listener, handler)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, no colours; `RUST_LOG` sets the level (`info` by default).
pub(crate) fn log_to_stderr() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
