//! srpc-worker: one user's worker. Started by srpcd (never by hand) as that
//! user, with its link to the front as socket-activation fd 3.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let _ = srpcd::logging::init("srpc-worker");
    match srpcd::worker::main(std::env::args_os().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("srpc-worker: {e}");
            ExitCode::FAILURE
        }
    }
}
