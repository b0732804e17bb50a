//! srpc-front: srpcd's TLS front. Started by srpcd (never by hand) as an
//! unprivileged user, with its end of the monitor channel as fd 3.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!("srpc-front: started by srpcd only (it takes no arguments)");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let _ = srpcd::logging::init("srpc-front");
    if std::env::args_os().len() > 1 {
        return usage();
    }
    let runtime = match srpcd::front::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("srpc-front: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(srpcd::front::main()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
