//! The one way the monitor starts a child (front, worker, per-user handler):
//! through `srpc-launch`, which applies identity, limits and cgroup as a fresh
//! root process (see `srpc_os::ListenFdCommand`). std's `spawn()` returns as soon
//! as the launcher is exec'd — still root, so the user cannot stop it there —
//! and the launcher's verdict is awaited here, off the monitor's loop, with a
//! deadline: a child that has not exec'd its program by then (a launcher the
//! user stopped after it took the user's ids) is killed, and a launcher that
//! failed is logged as the error it reported.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use srpc_os::{LaunchStatus, ListenFdCommand};
use tokio::io::AsyncReadExt;

/// How long a launcher has to exec the program.
const LAUNCH_DEADLINE: Duration = Duration::from_secs(5);

/// The largest status message read.
const MAX_STATUS: u64 = 4096;

static LAUNCHER: OnceLock<PathBuf> = OnceLock::new();

/// Sets the launcher program, once, at start.
pub fn init(launcher: PathBuf) {
    let _ = LAUNCHER.set(launcher);
}

fn launcher() -> io::Result<&'static Path> {
    LAUNCHER
        .get()
        .map(PathBuf::as_path)
        .ok_or_else(|| io::Error::other("the launcher is not configured"))
}

/// What a child is, for its log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The TLS front.
    Front,
    /// A user's worker.
    Worker,
    /// A per-user handler.
    Handler,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Front => "front",
            Role::Worker => "worker",
            Role::Handler => "handler",
        }
    }
}

/// Who a child is: role, user and (for handlers) the endpoint.
#[derive(Debug, Clone)]
pub struct Tag {
    /// What it is.
    pub role: Role,
    /// The account it runs as.
    pub user: String,
    /// The endpoint a handler serves.
    pub endpoint: Option<String>,
}

/// A child ready to spawn.
pub struct Prepared {
    command: Command,
    status: LaunchStatus,
    tag: Tag,
}

/// Prepares `cmd` the one way every child starts: through the launcher,
/// stdin and stdout on /dev/null, stderr a pipe the monitor logs as the
/// child's ([`super::child_log`]), `/` as working directory.
pub fn prepare(cmd: ListenFdCommand, tag: Tag) -> io::Result<Prepared> {
    let launch = cmd.into_command(launcher()?).map_err(io::Error::from)?;
    let mut command = launch.command;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .current_dir("/");
    Ok(Prepared {
        command,
        status: launch.status,
        tag,
    })
}

impl Prepared {
    /// Spawns as a std child (the monitor polls it with `try_wait`).
    pub fn spawn(self) -> io::Result<std::process::Child> {
        let Prepared {
            mut command,
            status,
            tag,
        } = self;
        let mut child = command.spawn()?;
        // Closes this process's copies of the listener and of the status
        // pipe's write end: the status ends when the launcher execs.
        drop(command);
        if let Some(stderr) = child.stderr.take() {
            super::child_log::forward(OwnedFd::from(stderr), tag.clone(), child.id());
        }
        watch(child.id(), status, tag);
        Ok(child)
    }

    /// Spawns as a tokio child, killed when dropped.
    pub fn spawn_tokio(self) -> io::Result<tokio::process::Child> {
        let Prepared {
            command,
            status,
            tag,
        } = self;
        let mut command = tokio::process::Command::from(command);
        command.kill_on_drop(true);
        let mut child = command.spawn()?;
        drop(command);
        let stderr = child.stderr.take().and_then(|e| e.into_owned_fd().ok());
        if let Some(pid) = child.id() {
            if let Some(stderr) = stderr {
                super::child_log::forward(stderr, tag.clone(), pid);
            }
            watch(pid, status, tag);
        }
        Ok(child)
    }
}

/// Awaits the launcher's verdict on a task of its own.
fn watch(pid: u32, status: LaunchStatus, tag: Tag) {
    // Opened before anyone can reap the child (only the caller waits for it),
    // so the kill below can only reach this process, never a reused pid.
    let pidfd = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok());
    tokio::spawn(async move {
        let verdict = tokio::time::timeout(LAUNCH_DEADLINE, read_status(status.into_fd())).await;
        let error = match verdict {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!(
                "did not start its program within {}s; killed",
                LAUNCH_DEADLINE.as_secs()
            ),
        };
        if let Some(fd) = &pidfd {
            // A launcher that failed has exited already; one that hangs goes now.
            let _ = rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL);
        }
        tracing::error!(
            role = tag.role.as_str(),
            user = tag.user,
            endpoint = tag.endpoint,
            pid,
            "starting the {}: {error}",
            tag.role.as_str()
        );
    });
}

async fn read_status(fd: OwnedFd) -> io::Result<()> {
    let pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)?;
    let mut bytes = Vec::new();
    pipe.take(MAX_STATUS).read_to_end(&mut bytes).await?;
    LaunchStatus::decode(&bytes)
}
