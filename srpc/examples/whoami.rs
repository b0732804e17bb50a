//! The whoami endpoint: answers every call with who is calling, as the kernel
//! reports it on the call connection, and who the handler itself runs as — so a
//! demo can show that a per-user handler really runs as its caller.
//!
//! The reply is one JSON object:
//!
//! ```text
//! {"endpoint":"/whoami",
//!  "caller":{"uid":1000,"gid":1000,"user":"alice","pid":4242,"context":null},
//!  "handler":{"pid":4250,"uid":1000,"gid":1000}}
//! ```
//!
//! Run it as srpcd does (socket on fd 3 via `LISTEN_FDS`) with no arguments, or by
//! hand with `whoami --socket /tmp/whoami.sock`.

use std::os::unix::net::UnixListener;
use std::process::ExitCode;

use srpc::handler::{serve, Bytes, Call, CallError, Listener};

fn main() -> ExitCode {
    // The listener comes first: taking LISTEN_FDS must happen before any thread.
    let listener = match listener_from_args() {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("whoami: {e}");
            return ExitCode::from(2);
        }
    };
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
