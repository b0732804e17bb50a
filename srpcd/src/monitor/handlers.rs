//! Serving a clone's endpoint sockets: a per-user handler is started as the
//! user on the first waiting connection (socket activation) and accepts from
//! then on; a service is handed each connection (SCM_RIGHTS).
//!
//! Each handler's start and end is audited (with its SELinux context and
//! exit status) and reported to the monitor's loop ([`Report`]), which keeps
//! the table `srpcctl workers` shows. Both ends are one guard's ([`Running`]):
//! its drop audits and reports the end, so a handler whose endpoint task is
//! aborted (its endpoint changed or its clone went, which kills it) is
//! audited and leaves the table too. The monitor never sees the connections a handler accepts, so
//! the table has no call count of its own; the worker's is the user's total.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use srpc_os::ListenFdCommand;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc;

use super::clone::RunAs;
use super::start_limit::{StartLimit, Verdict, START_BUDGET, START_WINDOW};

/// A handler's start or end, for the monitor's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// A handler started.
    Started(super::admin::types::Handler),
    /// The handler of `endpoint` for `user` with `pid` exited (or was killed
    /// with its endpoint).
    Exited {
        /// Its user.
        user: String,
        /// Its endpoint.
        endpoint: String,
        /// Its pid.
        pid: u32,
    },
}

/// Where reports go: the monitor's loop.
pub type Reports = mpsc::UnboundedSender<super::attach::Event>;

/// One running handler: made at its start (audited, reported), and its end
/// audited and reported when dropped — at its exit, with the status
/// [`Running::exited`] recorded, or when the endpoint task is aborted (the
/// endpoint changed or the clone went), which kills the handler (the child is
/// `kill_on_drop`) before its status could be read.
struct Running {
    reports: Reports,
    user: String,
    endpoint: String,
    pid: Option<u32>,
    context: Option<String>,
    status: Option<String>,
}

/// The exit status an aborted endpoint task's handler is audited with.
const KILLED_WITH_ENDPOINT: &str = "killed (SIGKILL) with its endpoint: the user's last \
    session ended, the worker stopped or the canonical node changed";

impl Running {
    /// Audits and reports the start of handler `pid` (the `starts`-th of this
    /// endpoint for this user) in `context`.
    fn started(
        reports: &Reports,
        user: &str,
        endpoint: &str,
        pid: Option<u32>,
        starts: u32,
        context: Option<String>,
    ) -> Running {
        crate::audit::Event::HandlerStarted {
            user,
            endpoint,
            pid,
            context: context.as_deref(),
        }
        .emit();
        if let Some(pid) = pid {
            let shown = context.clone().unwrap_or_default();
            let _ = reports.send(super::attach::Event::Handler(Report::Started(
                super::admin::types::Handler {
                    user: user.to_owned(),
                    endpoint: endpoint.to_owned(),
                    pid,
                    started_unix: super::admin::unix_secs(std::time::SystemTime::now()),
                    starts,
                    // `user:role:type:level`: the level is all after the third `:`.
                    level: shown.splitn(4, ':').nth(3).unwrap_or_default().to_owned(),
                    context: shown,
                },
            )));
        }
        Running {
            reports: reports.clone(),
            user: user.to_owned(),
            endpoint: endpoint.to_owned(),
            pid,
            context,
            status: None,
        }
    }

    /// How it ended, for the audit event its drop emits.
    fn exited(&mut self, status: String) {
        self.status = Some(status);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        crate::audit::Event::HandlerExited {
            user: &self.user,
            endpoint: &self.endpoint,
            pid: self.pid,
            status: self.status.as_deref().unwrap_or(KILLED_WITH_ENDPOINT),
            context: self.context.as_deref(),
        }
        .emit();
        if let Some(pid) = self.pid {
            let _ = self
                .reports
                .send(super::attach::Event::Handler(Report::Exited {
                    user: std::mem::take(&mut self.user),
                    endpoint: std::mem::take(&mut self.endpoint),
                    pid,
                }));
        }
    }
}

/// A per-user handler endpoint: when a connection waits and no handler runs,
/// start one as the user with the socket as fd 3; it accepts from then on,
/// and the monitor is out of the way until it exits. Starts are bounded
/// ([`StartLimit`]); a handler that fails to serve fails the calls it left
/// waiting, so the worker answers `call_failed` instead of waiting forever.
pub async fn serve_handler(
    listener: UnixListener,
    exe: PathBuf,
    name: String,
    run_as: RunAs,
    idle_secs: u32,
    reports: Reports,
) {
    let mut listener = listener;
    let mut limit = StartLimit::new(Instant::now());
    let mut starts: u32 = 0;
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
        let user = run_as.account.name.as_str();
        match limit.check(Instant::now()) {
            Verdict::Start => {}
            Verdict::Backoff(_) => {
                // Logged with the failure that started the backoff.
                refuse_waiting(&listener).await;
                continue;
            }
            Verdict::OverBudget { until, log } => {
                if log {
                    tracing::warn!(
                        endpoint = name,
                        user,
                        "handler over its start budget ({START_BUDGET} starts in {} s): \
                         refusing its calls for the next {} s",
                        START_WINDOW.as_secs(),
                        until.saturating_duration_since(Instant::now()).as_secs()
                    );
                }
                refuse_waiting(&listener).await;
                continue;
            }
        }
        let started = Instant::now();
        let (mut child, context) = match spawn_handler(&listener, &exe, &name, &run_as, idle_secs) {
            Ok(spawned) => spawned,
            Err(e) => {
                let refused = refuse_waiting(&listener).await;
                let wait = limit.failed(Instant::now(), Duration::ZERO);
                tracing::error!(
                    endpoint = name,
                    user,
                    refused,
                    "starting {}: {e}; next start in {} s at the earliest",
                    exe.display(),
                    wait.as_secs()
                );
                continue;
            }
        };
        let pid = child.id();
        starts = starts.saturating_add(1);
        let mut running = Running::started(&reports, user, &name, pid, starts, context);
        let status = match child.wait().await {
            Ok(status) => status,
            Err(e) => {
                tracing::error!(endpoint = name, user, ?pid, "waiting for handler: {e}");
                running.exited(format!("unknown: waiting for it failed: {e}"));
                drop(running);
                // Not known to have served: count it as failed.
                refuse_waiting(&listener).await;
                limit.failed(Instant::now(), started.elapsed());
                continue;
            }
        };
        running.exited(status.to_string());
        drop(running);
        if status.success() {
            limit.served();
            continue;
        }
        // A crash. The calls it had accepted fail with it (their connections
        // close). What waits in the backlog — calls it never took, and calls
        // made after it died — is served by the next start if the start limit
        // allows one now (a first crash), and refused at the top of the loop
        // while it backs off: so a handler that dies before accepting fails
        // its callers within two starts, and one that crashed after serving
        // does not take the next caller down with it.
        let ran = started.elapsed();
        let wait = limit.failed(Instant::now(), ran);
        tracing::warn!(
            endpoint = name,
            user,
            ?pid,
            %status,
            ran_ms = ran.as_millis(),
            "handler failed; next start in {} s at the earliest",
            wait.as_secs()
        );
    }
}

/// Accepts and closes the connections waiting on `listener`: each caller
/// (the worker) sees its connection closed and answers `call_failed`.
/// Returns how many. Bounded per round, so a stream of connections cannot
/// hold the monitor's loop; an accept error other than "none waiting" (e.g.
/// out of fds) pauses briefly instead of spinning on a readable listener.
async fn refuse_waiting(listener: &UnixListener) -> usize {
    const PER_ROUND: usize = 256;
    // The handler shares this open file description (fd 3) and may have
    // made it blocking; a blocking accept would stall a monitor thread. Set
    // it back, and bound a blocking accept anyway (a process the handler
    // left behind could flip the flag again between the two calls).
    if let Err(e) = listener
        .set_nonblocking(true)
        .and_then(|()| accept_timeout(listener, ACCEPT_BOUND))
    {
        tracing::error!("refusing waiting calls: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        return 0;
    }
    let mut refused = 0;
    while refused < PER_ROUND {
        match listener.accept() {
            Ok((conn, _)) => {
                drop(conn);
                refused += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::error!("refusing a waiting call: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                break;
            }
        }
    }
    // The next handler may accept blocking: no timeout for it.
    if let Err(e) = accept_timeout(listener, Duration::ZERO) {
        tracing::error!("clearing the accept timeout: {e}");
    }
    refused
}

/// The longest a refusing accept can block, should the listener be blocking.
const ACCEPT_BOUND: Duration = Duration::from_millis(50);

/// `SO_RCVTIMEO`, which bounds a blocking `accept`; zero is no bound.
fn accept_timeout(listener: &UnixListener, timeout: Duration) -> std::io::Result<()> {
    let micros = i64::try_from(timeout.as_micros()).unwrap_or(i64::MAX);
    nix::sys::socket::setsockopt(
        listener,
        nix::sys::socket::sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(micros / 1_000_000, micros % 1_000_000),
    )
    .map_err(std::io::Error::from)
}

/// Starts the handler as the user; returns it and the SELinux context it was
/// started in (`None` without SELinux), for the audit trail and `srpcctl
/// workers`.
fn spawn_handler(
    listener: &UnixListener,
    exe: &Path,
    name: &str,
    run_as: &RunAs,
    idle_secs: u32,
) -> std::io::Result<(tokio::process::Child, Option<String>)> {
    let fd: OwnedFd = listener.as_fd().try_clone_to_owned()?;
    let mut cmd = ListenFdCommand::new(exe, fd, name);
    let place = super::cgroup::Place::Handler(run_as.account.uid);
    super::cgroup::place(&mut cmd, place)?;
    cmd.env(srpc::handler::IDLE_TIMEOUT_ENV, idle_secs.to_string());
    let context = match &run_as.security {
        Some(security) => Some(super::security::handler_context(&security.worker, exe)?),
        None => None,
    };
    if let Some(context) = &context {
        cmd.exec_context(context.clone());
    }
    let tag = super::launch::Tag {
        role: super::launch::Role::Handler,
        user: run_as.account.name.clone(),
        endpoint: Some(name.to_owned()),
    };
    let child = super::workers::as_user(cmd, &run_as.account, &run_as.env, tag)?.spawn_tokio()?;
    super::cgroup::started(place, child.id());
    Ok((child, context))
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
