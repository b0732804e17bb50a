//! srpc-front: srpcd's TLS front. Started by srpcd (never by hand) as an
//! unprivileged user, with the TLS listener as socket-activation fd 3.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!("srpc-front: started by srpcd only (usage: srpc-front --monitor-socket PATH)");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    srpcd::logging::init("srpc-front");
    let mut args = std::env::args_os().skip(1);
    let (Some(flag), Some(path)) = (args.next(), args.next()) else {
        return usage();
    };
    if flag != "--monitor-socket" {
        return usage();
    }
    let socket = std::path::PathBuf::from(path);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("srpc-front: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(srpcd::front::main(&socket)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
