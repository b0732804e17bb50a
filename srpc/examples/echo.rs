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

#[path = "support/handler_main.rs"]
mod handler_main;

use std::process::ExitCode;

use srpc::handler::Call;

fn main() -> ExitCode {
    handler_main::main_with("echo", "/echo", |call: Call| async move { Ok(call.data) })
}
