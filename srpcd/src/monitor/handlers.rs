//! Serving a clone's endpoint sockets: a per-user handler is started as the
//! user on the first waiting connection (socket activation) and accepts from
//! then on; a service is handed each connection (SCM_RIGHTS).

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use srpc_os::ListenFdCommand;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::clone::RunAs;

/// A per-user handler endpoint: when a connection waits and no handler runs,
/// start one as the user with the socket as fd 3; it accepts from then on,
/// and the monitor is out of the way until it exits.
pub async fn serve_handler(
    listener: UnixListener,
    exe: PathBuf,
    name: String,
    run_as: RunAs,
    idle_secs: u32,
) {
    let mut listener = listener;
    loop {
        // A fresh registration reports a connection already waiting (a
        // handler that died with calls in its backlog), not only new ones.
        // `AsyncFd::new` is deprecated because a `T` that does not own its fd
        // could close it while registered; a `UnixListener` owns it for the
        // whole registration, which is the sound case.
        #[allow(deprecated)]
        let Ok(watch) = AsyncFd::new(listener) else {
            return;
        };
        let ready = watch.readable().await.map(drop);
        listener = watch.into_inner();
        if ready.is_err() {
            return;
        }
        let child = match spawn_handler(&listener, &exe, &name, &run_as, idle_secs) {
            Ok(child) => child,
            Err(e) => {
                tracing::error!(
                    endpoint = name,
                    user = run_as.account.name,
                    "starting {}: {e}",
                    exe.display()
                );
                // Refuse what waits, so the call fails now rather than hangs.
                while listener.accept().is_ok() {}
                continue;
            }
        };
        let mut child = child;
        let pid = child.id();
        tracing::info!(
            endpoint = name,
            user = run_as.account.name,
            ?pid,
            "handler started"
        );
        match child.wait().await {
            Ok(status) => {
                tracing::info!(endpoint = name, user = run_as.account.name, ?pid, %status, "handler exited");
            }
            Err(e) => tracing::error!(endpoint = name, "waiting for handler: {e}"),
        }
    }
}

fn spawn_handler(
    listener: &UnixListener,
    exe: &Path,
    name: &str,
    run_as: &RunAs,
    idle_secs: u32,
) -> std::io::Result<tokio::process::Child> {
    let fd: OwnedFd = listener.as_fd().try_clone_to_owned()?;
    let mut cmd = ListenFdCommand::new(exe, fd, name);
    cmd.env(srpc::handler::IDLE_TIMEOUT_ENV, idle_secs.to_string());
    let tag = super::launch::Tag {
        role: super::launch::Role::Handler,
        user: run_as.account.name.clone(),
        endpoint: Some(name.to_owned()),
    };
    super::workers::as_user(cmd, &run_as.account, &run_as.env, tag)?.spawn_tokio()
}

/// A service endpoint: each connection is handed to the service, which reads
/// the caller from the kernel on it.
pub async fn serve_service(listener: UnixListener, service: PathBuf, name: String) {
    let Ok(listener) = tokio::net::UnixListener::from_std(listener) else {
        return;
    };
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            return;
        };
        if let Err(e) = pass(&conn, &service, &name).await {
            tracing::error!(
                endpoint = name,
                "handing a call to {}: {e}",
                service.display()
            );
        }
    }
}

async fn pass(conn: &tokio::net::UnixStream, service: &Path, name: &str) -> std::io::Result<()> {
    let svc = tokio::net::UnixStream::connect(service).await?;
    svc.async_io(Interest::WRITABLE, || {
        srpc_os::send_fd(svc.as_fd(), conn.as_fd(), name.as_bytes()).map_err(std::io::Error::from)
    })
    .await
}
