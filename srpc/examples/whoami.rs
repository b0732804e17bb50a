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

#[path = "support/handler_main.rs"]
mod handler_main;

use std::process::ExitCode;

use srpc::handler::{Bytes, Call, CallError};

pub(crate) fn main() -> ExitCode {
    handler_main::main_with("whoami", "/whoami", whoami)
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
