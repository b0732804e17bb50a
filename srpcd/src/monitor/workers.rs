//! The users' worker processes: one per user, started on the user's first
//! session, shared by all of that user's sessions, reaped when idle.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use srpc_os::{Credentials, ListenFdCommand};

use super::labeling::UserSecurity;
use super::launch::{self, Prepared, Role, Tag};
use super::user_limits;
use crate::pam;
use crate::users::Account;

/// One user's worker.
pub struct Worker {
    /// Changes with every process started, so the front knows a new link.
    pub id: u64,
    /// The account it runs as.
    pub account: Account,
    /// The process; `None` between a crash and the next session's request.
    pub child: Option<Child>,
    /// The user's PAM session: open while the user has sessions or a worker.
    pub pam: Option<pam::Session>,
    /// Sessions attached (over all connections).
    pub sessions: u32,
    /// When the last session ended.
    pub idle_since: Option<Instant>,
    /// SIGTERM was sent (idle reap or shutdown).
    pub stopping: bool,
    /// Its start (PAM session, process, first clone sync) runs off the loop.
    pub starting: bool,
    /// Attaches on their way (start or clone sync running).
    pub pending: u32,
    /// Attaches waiting for the start to finish.
    pub queued: Vec<super::attach::Queued>,
    /// Its SELinux context and clone labels (`None` without SELinux); the
    /// level stays the user's while this entry lives.
    pub security: Option<UserSecurity>,
}

impl Worker {
    /// A worker whose start is under way, carrying `sessions` from the one
    /// that died (if any).
    pub fn starting(
        id: u64,
        account: Account,
        sessions: u32,
        security: Option<UserSecurity>,
    ) -> Worker {
        Worker {
            id,
            account,
            child: None,
            pam: None,
            sessions,
            idle_since: None,
            stopping: false,
            starting: true,
            pending: 0,
            queued: Vec::new(),
            security,
        }
    }

    /// Its process runs and is not being stopped.
    pub fn is_running(&mut self) -> bool {
        !self.stopping
            && !self.starting
            && self
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

/// How workers are started.
#[derive(Clone)]
pub struct Spawner {
    /// The worker executable.
    pub program: PathBuf,
    /// `workers.call_timeout_secs`, passed to each worker started.
    pub call_timeout: Duration,
    /// The canonical tree, which the worker's stat describes.
    pub canonical_root: PathBuf,
}

impl Spawner {
    /// Starts a worker for `account`, walking `tree` (the user's clone), in
    /// the SELinux context `context` if given; returns it and the front's end
    /// of its link.
    pub fn spawn(
        &self,
        account: &Account,
        pam_env: &[(String, String)],
        tree: &Path,
        context: Option<&str>,
    ) -> std::io::Result<(Child, OwnedFd)> {
        let (front_end, worker_end) = std::os::unix::net::UnixStream::pair()?;
        let mut cmd = ListenFdCommand::new(&self.program, OwnedFd::from(worker_end), "srpc-link");
        cmd.arg("--tree-root")
            .arg(tree)
            .arg("--canonical-root")
            .arg(&self.canonical_root)
            .arg("--user")
            .arg(&account.name)
            .arg("--call-timeout-secs")
            .arg(self.call_timeout.as_secs().to_string());
        if let Some(context) = context {
            cmd.exec_context(context);
        }
        // A clean environment: PAM's (pam_env, pam_systemd) plus the basics.
        let tag = Tag {
            role: Role::Worker,
            user: account.name.clone(),
            endpoint: None,
        };
        let place = super::cgroup::Place::Worker(account.uid);
        super::cgroup::place(&mut cmd, place)?;
        let child = as_user(cmd, account, pam_env, tag)?.spawn()?;
        super::cgroup::started(place, Some(child.id()));
        Ok((child, OwnedFd::from(front_end)))
    }
}

/// Finishes a command that runs as `account`: the user's ids, the user's
/// resource limits (limits.conf, read afresh at each start: see
/// [`user_limits`]), PAM's environment plus the basics and nothing inherited,
/// then the one launch path ([`launch::prepare`]). Workers and per-user
/// handlers both start this way.
pub fn as_user(
    mut cmd: ListenFdCommand,
    account: &Account,
    pam_env: &[(String, String)],
    tag: Tag,
) -> std::io::Result<Prepared> {
    for (k, v) in pam_env {
        if !k.starts_with("LISTEN_") {
            cmd.env(k, v);
        }
    }
    cmd.env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &account.home)
        .env("USER", &account.name)
        .env("LOGNAME", &account.name)
        .credentials(Credentials {
            uid: account.uid,
            gid: account.gid,
            groups: account.groups.clone(),
        });
    // Set by the launcher as root, before it drops to the user's ids: the
    // user cannot raise a hard limit afterwards.
    for limit in user_limits::for_account(account) {
        cmd.rlimit(limit);
    }
    launch::prepare(cmd, tag)
}

/// All workers, by user name.
#[derive(Default)]
pub struct Workers {
    /// The workers.
    pub by_user: HashMap<String, Worker>,
    next_id: u64,
}

impl Workers {
    /// A fresh worker id.
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Users whose worker has had no session for `idle` and should stop now.
    pub fn idle(&self, idle: Duration, now: Instant) -> Vec<String> {
        self.by_user
            .iter()
            .filter(|(_, w)| {
                w.sessions == 0
                    && w.pending == 0
                    && !w.starting
                    && !w.stopping
                    && w.idle_since.is_some_and(|t| now.duration_since(t) >= idle)
            })
            .map(|(u, _)| u.clone())
            .collect()
    }
}

/// Sends SIGTERM to a worker (it exits at once: it holds nothing to save).
pub fn terminate(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}
