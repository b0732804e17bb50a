//! `srpc`: call, list and describe the endpoints of an sRPC server from a shell
//! or a script. `srpc --help` says how; the exit status is 0 on success, 1 when
//! the connection, the login or the request failed, 2 on bad usage.
#![forbid(unsafe_code)]

mod args;
mod login;
mod show;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::RawFd;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use srpc::client::DialOptions;
use srpc::proto::QidType;
use zeroize::Zeroizing;

use args::{Args, Command, Verb, USAGE};
use login::{read_line, Login, Tty};

/// Why srpc stopped early.
enum Failure {
    /// The command line cannot work (exit 2).
    Usage(String),
    /// The connection, the login or the request failed (exit 1).
    Failed(String),
    /// The user pressed Ctrl-C (exit 130, as a shell reports SIGINT).
    Interrupted,
}

fn main() -> ExitCode {
    let outcome = match args::parse(std::env::args_os().skip(1)) {
        Ok(Command::Run(args)) => run(&args),
        Ok(Command::Help) => {
            print!("{USAGE}");
            Ok(())
        }
        Ok(Command::Version) => {
            println!("srpc {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Err(message) => Err(Failure::Usage(message)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("srpc: {message}\nTry `srpc --help` for usage.");
            ExitCode::from(2)
        }
        Err(Failure::Failed(message)) => {
            eprintln!("srpc: {message}");
            ExitCode::from(1)
        }
        Err(Failure::Interrupted) => ExitCode::from(130),
    }
}

fn run(args: &Args) -> Result<(), Failure> {
    // The password comes first: with `--password-fd 0` it is the first line of
    // stdin, and a call's request is the rest.
    let password = args.password_fd.map(read_password).transpose()?;
    let tty = match Tty::open() {
        Ok(tty) => Some(Arc::new(tty)),
        Err(e) if password.is_none() => {
            return Err(Failure::Usage(format!(
                "no terminal to ask for the password on ({e}); give it with --password-fd"
            )))
        }
        // Only needed if the server asks more than the password.
        Err(_) => None,
    };
    let request = if args.verb == Verb::Call {
        let mut request = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut request)
            .map_err(|e| Failure::Failed(format!("reading the request from stdin: {e}")))?;
        request
    } else {
        Vec::new()
    };
    let login = Login::new(password, tty.clone());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Failed(format!("cannot start the async runtime: {e}")))?;
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = perform(args, login, request) => outcome.map_err(Failure::Failed),
            Ok(()) = tokio::signal::ctrl_c() => {
                // The password prompt may have turned echo off.
                if let Some(tty) = &tty {
                    tty.restore();
                }
                Err(Failure::Interrupted)
            }
        }
    });
    // A terminal question may still be waiting in a blocking thread: do not wait for it.
    runtime.shutdown_background();
    let output = outcome?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&output)
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::Failed(format!("writing to stdout: {e}")))
}

/// The first line of fd `fd`.
fn read_password(fd: RawFd) -> Result<Zeroizing<String>, Failure> {
    let file =
        srpc_os::dup_fd(fd).map_err(|e| Failure::Usage(format!("--password-fd {fd}: {e}")))?;
    read_line(&mut File::from(file))
        .map_err(|e| Failure::Failed(format!("reading the password from fd {fd}: {e}")))
}

/// Logs in, walks to the path and carries out the verb; the bytes to print, or
/// the message of what failed.
async fn perform(args: &Args, mut login: Login, request: Vec<u8>) -> Result<Bytes, String> {
    let mut options = DialOptions::new();
    if let Some(timeout) = args.timeout {
        options = options.connect_timeout(timeout).call_timeout(timeout);
    }
    let client = options
        .dial(args.addr.as_str(), &args.server_name, args.trust.clone())
        .await
        .map_err(|e| format!("connecting to {}: {e}", args.addr))?;
    let session = client
        .auth(&args.user, &args.aname, &mut login)
        .await
        .map_err(|e| format!("logging in as {}: {e}", args.user))?;
    // The password is wiped now, not at exit.
    drop(login);
    let path = &args.path;
    let node = session
        .walk(path)
        .await
        .map_err(|e| format!("walking to {path}: {e}"))?;
    let output = match args.verb {
        Verb::Call => node
            .append(request)
            .await
            .map_err(|e| format!("calling {path}: {e}"))?,
        // Like `ls -l FILE`: an endpoint is listed as itself.
        Verb::Ls if node.qid().kind != QidType::Dir => {
            let stat = node
                .stat()
                .await
                .map_err(|e| format!("stat of {path}: {e}"))?;
            show::listing(&[stat]).into()
        }
        Verb::Ls => {
            let entries = node
                .list()
                .await
                .map_err(|e| format!("listing {path}: {e}"))?;
            show::listing(&entries).into()
        }
        Verb::Stat => {
            let stat = node
                .stat()
                .await
                .map_err(|e| format!("stat of {path}: {e}"))?;
            show::stat(&stat).into()
        }
    };
    Ok(output)
}
