//! The whoami endpoint: answers every call with who is calling, as the kernel
//! reports it on the call connection, and who the handler itself runs as — so a
//! demo can show that a per-user handler really runs as its caller.
//!
//! The reply is one JSON object (on one line; spread out here):
//!
//! ```text
//! {"endpoint":"/whoami",
//!  "caller":{"uid":1000,"gid":1000,"user":"alice","pid":4242,"context":null},
//!  "handler":{"pid":4250,"uid":1000,"gid":1000}}
//! ```
//!
//! Its fields are stable; demos and tests read them:
//!
//! - `endpoint` (string): the endpoint path srpcd gave the handler
//!   (`LISTEN_FDNAMES`; `"/whoami"` with `--socket`).
//! - `caller`: the process at the other end of the call connection — srpcd's
//!   worker for the calling user — from `SO_PEERCRED`/`SO_PEERSEC`, never from the
//!   request: `uid`, `gid` (numbers, its effective ids), `user` (the name of `uid`,
//!   or `null` if the user database has none), `pid` (number; 0 if in a pid
//!   namespace the handler cannot see), `context` (its SELinux context, or `null`
//!   without SELinux).
//! - `handler`: this handler process: `pid`, and its effective `uid` and `gid`
//!   (numbers). For a per-user handler srpcd started, `handler.uid` is the
//!   calling user's uid.
//!
//! Run it as srpcd does (socket on fd 3 via `LISTEN_FDS`, exiting when idle for
//! `SRPC_IDLE_TIMEOUT_SECS`) with no arguments, or by hand with
//! `whoami --socket /tmp/whoami.sock`. It logs to stderr (`RUST_LOG` sets the level;
//! `info` by default).

use std::os::unix::net::UnixListener;
use std::process::ExitCode;

use srpc::handler::{serve, Bytes, Call, CallError, Listener};

pub(crate) fn main() -> ExitCode {
    // The listener comes first: taking LISTEN_FDS must happen before any thread.
    let listener = match listener_from_args() {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("whoami: {e}");
            return ExitCode::from(2);
        }
    };
    log_to_stderr();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("whoami: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(listener, whoami)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("whoami: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn whoami(call: Call) -> Result<Bytes, CallError> {
    let caller = &call.caller;
    let reply = serde_json::json!({
        "endpoint": call.endpoint,
        "caller": {
            "uid": caller.uid,
            "gid": caller.gid,
            "user": caller.user,
            "pid": caller.pid,
            "context": caller.context,
        },
        "handler": {
            "pid": std::process::id(),
            "uid": srpc_os::effective_uid(),
            "gid": srpc_os::effective_gid(),
        },
    });
    Ok(Bytes::from(reply.to_string()))
}

fn listener_from_args() -> Result<Listener, Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(Listener::from_env()?),
        [flag, path] if flag == "--socket" => {
            Ok(Listener::from_std(UnixListener::bind(path)?, "/whoami"))
        }
        _ => Err("usage: whoami [--socket PATH]".into()),
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
