//! srpc-front: srpcd's TLS front. Started by srpcd (never by hand) as an
//! unprivileged user, with the TLS listener as socket-activation fd 3.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    srpcd::logging::init("srpc-front");
    let mut args = std::env::args_os().skip(1);
    let socket = match (args.next().as_deref().and_then(|a| a.to_str()), args.next()) {
        (Some("--monitor-socket"), Some(path)) => std::path::PathBuf::from(path),
        _ => {
            eprintln!(
                "srpc-front: started by srpcd only (usage: srpc-front --monitor-socket PATH)"
            );
            return ExitCode::from(2);
        }
    };
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
