//! Administration of a running srpcd: the D-Bus interface (`bus.rs`) on one
//! side, the monitor's loop on the other.
//!
//! Invariants:
//! - Reads never wait for the loop: after every event the loop publishes a
//!   [`Snapshot`] (a `tokio::sync::watch`), and `Status`, `ListSessions`,
//!   `ListWorkers` and `ListHandlers` answer from the latest one; `CheckTree`
//!   reads the canonical tree on a blocking thread of the bus side.
//! - Every change is a [`Request`] the loop takes like any other event, so
//!   the loop alone still owns the state; the bus side waits on a oneshot.
//! - The bus side has checked the caller (uid from the bus daemon, root or a
//!   member of `admin.group`) before a request exists; `by` is that uid and is
//!   what the audit trail records.

pub mod bus;
mod check_tree;
mod commands;
pub mod explain;
pub use srpc_admin as types;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};

/// The monitor's state as the admin interface shows it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Status without the uptime (filled in when read).
    pub status: types::Status,
    /// When srpcd started.
    pub started: Instant,
    /// Sessions, by id.
    pub sessions: Vec<types::Session>,
    /// Workers, by user.
    pub workers: Vec<types::Worker>,
    /// Per-user handlers running, by user and endpoint.
    pub handlers: Vec<types::Handler>,
    /// The canonical tree (fixed until restart).
    pub tree_root: std::path::PathBuf,
    /// `pam.service` now.
    pub pam_service: String,
    /// `admin.group` now.
    pub admin_group: String,
}

impl Snapshot {
    /// The status as of now.
    pub fn status(&self) -> types::Status {
        types::Status {
            uptime_secs: self.started.elapsed().as_secs(),
            ..self.status.clone()
        }
    }
}

/// A change asked for over D-Bus, carried out by the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// End a session at the front and in the monitor.
    KillSession(u64),
    /// End the user's sessions, worker and handlers.
    StopWorker(String),
    /// Reread the configuration and TLS files (as SIGHUP does).
    Reload,
}

impl Command {
    /// The D-Bus method and what it is about, for the audit trail.
    pub fn describe(&self) -> (&'static str, String) {
        match self {
            Command::KillSession(id) => ("KillSession", id.to_string()),
            Command::StopWorker(user) => ("StopWorker", user.clone()),
            Command::Reload => ("Reload", String::new()),
        }
    }
}

/// Why a command was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// No session has that id.
    #[error("no session {0}")]
    NoSuchSession(u64),
    /// The user has no worker.
    #[error("user {0} has no worker")]
    NoSuchWorker(String),
    /// It was tried and failed.
    #[error("{0}")]
    Failed(String),
}

/// One command, its caller's uid and where the answer goes.
#[derive(Debug)]
pub struct Request {
    /// What.
    pub command: Command,
    /// The caller's uid (from the bus).
    pub by: u32,
    /// The loop's answer: a one-line summary, or why not.
    pub reply: oneshot::Sender<Result<String, CommandError>>,
}

/// Session start and end, for the interface's signals.
#[derive(Debug, Clone)]
pub enum Notice {
    /// A session attached.
    SessionStarted(types::Session),
    /// A session ended.
    SessionEnded {
        /// Its id.
        id: u64,
        /// Its user.
        user: String,
        /// `client`, `killed by uid N`, `worker stopped by uid N`.
        reason: String,
    },
}

/// The loop's end of the admin interface.
pub struct Hub {
    /// Where the loop publishes.
    pub snapshot: watch::Sender<Arc<Snapshot>>,
    /// Where the loop tells of sessions starting and ending.
    pub notices: mpsc::UnboundedSender<Notice>,
    /// When each worker (by monitor worker id) started, wall clock.
    pub worker_started: std::collections::HashMap<u64, SystemTime>,
    /// Commands waiting for the front to confirm revocations.
    pub revoking: Vec<Revoking>,
    /// Fids and calls per session, as the front last reported them.
    pub session_stats: std::collections::HashMap<u64, crate::ipc::SessionStat>,
    /// Per-user handlers running, by user and endpoint.
    pub handlers: std::collections::HashMap<(String, String), types::Handler>,
}

impl Hub {
    /// A handler started or exited: the table follows. An exit names its
    /// pid, so a late report of an old handler cannot remove its successor.
    pub fn handler(&mut self, report: crate::monitor::handlers::Report) {
        use crate::monitor::handlers::Report;
        match report {
            Report::Started(h) => {
                self.handlers
                    .insert((h.user.clone(), h.endpoint.clone()), h);
            }
            Report::Exited {
                user,
                endpoint,
                pid,
            } => {
                let key = (user, endpoint);
                if self.handlers.get(&key).is_some_and(|h| h.pid == pid) {
                    self.handlers.remove(&key);
                }
            }
        }
    }
}

/// A command whose answer waits for the front's `Revoked` of each session.
#[derive(Debug)]
pub struct Revoking {
    /// Sessions not confirmed yet.
    pub waiting: Vec<u64>,
    /// The answer once they are.
    pub summary: String,
    /// Where it goes.
    pub reply: oneshot::Sender<Result<String, CommandError>>,
}

/// Seconds since the Unix epoch (0 before it, which no clock here is).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
