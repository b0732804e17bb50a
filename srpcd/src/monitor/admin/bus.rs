//! The D-Bus interface `org.srpc.Srpcd1` at `/org/srpc/Srpcd1`, bus name
//! `org.srpc.Srpcd1` on the system bus, served by the monitor.
//!
//! Invariants:
//! - The name is requested without replacement either way: a second srpcd
//!   (or anyone else) asking for it gets an error, and nobody can take it
//!   from a running srpcd.
//! - Access is decided twice: the bus policy file (`dist/dbus/`) lets root
//!   and `admin.group` call everything and others only `Status`, and every
//!   method but `Status` checks the caller's uid, as the bus daemon reports
//!   it, here again before doing anything. Each admin call is audited with
//!   that uid, refused ones included.
//! - Reads answer from the loop's latest snapshot; changes go to the loop as
//!   a [`Request`] and wait for its answer.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch};
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::Connection;

use super::{check_tree, explain, types, Command, CommandError, Notice, Request, Snapshot};
use crate::audit;
use crate::lockout::Lockout;
use crate::logging::LevelHandle;

pub use srpc_admin::{BUS_NAME, INTERFACE, OBJECT_PATH};

/// Errors the interface returns, as `org.srpc.Srpcd1.Error.<Name>`.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.srpc.Srpcd1.Error")]
pub enum AdminError {
    /// A D-Bus failure.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The caller is neither root nor in the admin group.
    AccessDenied(String),
    /// No session has that id.
    NoSuchSession(String),
    /// The user has no worker.
    NoSuchWorker(String),
    /// An argument is not valid.
    InvalidArgs(String),
    /// It was tried and failed.
    Failed(String),
}

impl From<CommandError> for AdminError {
    fn from(e: CommandError) -> AdminError {
        match e {
            CommandError::NoSuchSession(_) => AdminError::NoSuchSession(e.to_string()),
            CommandError::NoSuchWorker(_) => AdminError::NoSuchWorker(e.to_string()),
            CommandError::Failed(m) => AdminError::Failed(m),
        }
    }
}

/// The served object.
pub struct Admin {
    snapshot: watch::Receiver<Arc<Snapshot>>,
    requests: mpsc::UnboundedSender<Request>,
    levels: LevelHandle,
    lockout: Arc<Mutex<Lockout>>,
    security: Option<Arc<crate::monitor::security::Security>>,
}

impl Admin {
    /// The object, reading `snapshot` and sending changes to `requests`.
    pub fn new(
        snapshot: watch::Receiver<Arc<Snapshot>>,
        requests: mpsc::UnboundedSender<Request>,
        levels: LevelHandle,
        lockout: Arc<Mutex<Lockout>>,
        security: Option<Arc<crate::monitor::security::Security>>,
    ) -> Admin {
        Admin {
            snapshot,
            requests,
            levels,
            lockout,
            security,
        }
    }

    fn latest(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.borrow())
    }

    /// The caller's uid if it is root or in the admin group; otherwise the
    /// refusal, audited.
    async fn require_admin(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        method: &str,
        target: &str,
    ) -> Result<u32, AdminError> {
        let uid = caller_uid(conn, header).await?;
        let group = self.latest().admin_group.clone();
        let asked = group.clone();
        let allowed = tokio::task::spawn_blocking(move || is_admin(uid, &asked))
            .await
            .unwrap_or(false);
        if allowed {
            return Ok(uid);
        }
        let why = format!("uid {uid} is neither root nor in group {group}");
        audited(uid, method, target, &format!("refused: {why}"));
        Err(AdminError::AccessDenied(why))
    }

    /// Hands `command` to the loop and waits for its answer; audited.
    async fn run(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        command: Command,
    ) -> Result<String, AdminError> {
        let (method, target) = command.describe();
        let by = self.require_admin(conn, header, method, &target).await?;
        let (reply, answer) = oneshot::channel();
        let stopping = || AdminError::Failed("srpcd is stopping".to_owned());
        self.requests
            .send(Request { command, by, reply })
            .map_err(|_| stopping())?;
        let result = answer.await.map_err(|_| stopping())?;
        let outcome = match &result {
            Ok(summary) => format!("ok: {summary}"),
            Err(e) => format!("failed: {e}"),
        };
        audited(by, method, &target, &outcome);
        result.map_err(AdminError::from)
    }
}

fn audited(caller_uid: u32, method: &str, target: &str, result: &str) {
    audit::Event::AdminAction {
        caller_uid,
        method,
        target,
        result,
    }
    .emit();
}

#[zbus::interface(name = "org.srpc.Srpcd1")]
impl Admin {
    /// Version, uptime, SELinux mode, listen address, pin and counts. Open
    /// to every local user (the bus policy says so too): nothing in it names
    /// a user.
    fn status(&self) -> types::Status {
        self.latest().status()
    }

    /// The sessions attached now.
    async fn list_sessions(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<types::Session>, AdminError> {
        self.require_admin(conn, &header, "ListSessions", "")
            .await?;
        Ok(self.latest().sessions.clone())
    }

    /// The users' workers.
    async fn list_workers(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<types::Worker>, AdminError> {
        self.require_admin(conn, &header, "ListWorkers", "").await?;
        Ok(self.latest().workers.clone())
    }

    /// The per-user handlers the monitor started that run now.
    async fn list_handlers(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<types::Handler>, AdminError> {
        self.require_admin(conn, &header, "ListHandlers", "")
            .await?;
        Ok(self.latest().handlers.clone())
    }

    /// Every node of the canonical tree from the directory `path` (`/` for
    /// all of it) down, as the clone sees it, and the problems it would skip
    /// or refuse. Admin only: it names paths, owners and groups. Read on a
    /// blocking thread, never on the monitor's loop.
    async fn check_tree(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
        path: String,
    ) -> Result<Vec<types::TreeNode>, AdminError> {
        self.require_admin(conn, &header, "CheckTree", &path)
            .await?;
        let root = self.latest().tree_root.clone();
        let open = self.security.as_ref().map(|s| s.open_types());
        let checked = tokio::task::spawn_blocking(move || {
            let types = open
                .map(|open| open())
                .transpose()
                .map_err(check_tree::CheckError::Failed)?;
            check_tree::check_tree(&root, &path, types.as_deref())
        })
        .await
        .map_err(|e| AdminError::Failed(e.to_string()))?;
        checked.map_err(|e| match e {
            check_tree::CheckError::InvalidArgs(m) => AdminError::InvalidArgs(m),
            check_tree::CheckError::Failed(m) => AdminError::Failed(m),
        })
    }

    /// Ends session `id`: the front drops its fids at once and the session
    /// cannot attach again with its authentication.
    async fn kill_session(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
        id: u64,
    ) -> Result<String, AdminError> {
        self.run(conn, &header, Command::KillSession(id)).await
    }

    /// Ends every session of `user`, then the user's worker and handlers.
    async fn stop_worker(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
        user: String,
    ) -> Result<String, AdminError> {
        self.run(conn, &header, Command::StopWorker(user)).await
    }

    /// Rereads the configuration and TLS files, as SIGHUP does; sessions
    /// stay.
    async fn reload(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<String, AdminError> {
        self.run(conn, &header, Command::Reload).await
    }

    /// Sets what the monitor logs (`RUST_LOG` syntax, e.g. `debug` or
    /// `info,srpcd::audit=debug`) until the next start.
    async fn set_log_level(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
        directives: String,
    ) -> Result<String, AdminError> {
        let by = self
            .require_admin(conn, &header, "SetLogLevel", &directives)
            .await?;
        let result = self.levels.set(&directives);
        let outcome = match &result {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("failed: {e}"),
        };
        audited(by, "SetLogLevel", &directives, &outcome);
        result
            .map(|()| format!("log level set to {directives}"))
            .map_err(AdminError::InvalidArgs)
    }

    /// What a login of `user` would meet, and why.
    async fn explain_user(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
        user: String,
    ) -> Result<types::Explanation, AdminError> {
        self.require_admin(conn, &header, "ExplainUser", &user)
            .await?;
        let latest = self.latest();
        let ctx = explain::Ctx {
            lockout: Arc::clone(&self.lockout),
            pam_service: latest.pam_service.clone(),
            admin_group: latest.admin_group.clone(),
            security: self.security.clone(),
        };
        tokio::task::spawn_blocking(move || explain::explain(&user, &ctx))
            .await
            .map_err(|e| AdminError::Failed(e.to_string()))
    }

    /// A session attached.
    #[zbus(signal)]
    async fn session_started(
        emitter: &SignalEmitter<'_>,
        id: u64,
        user: &str,
        remote: &str,
        aname: &str,
    ) -> zbus::Result<()>;

    /// A session ended; `reason` is `client`, `killed by uid N` or `worker
    /// stopped by uid N`.
    #[zbus(signal)]
    async fn session_ended(
        emitter: &SignalEmitter<'_>,
        id: u64,
        user: &str,
        reason: &str,
    ) -> zbus::Result<()>;
}

/// The caller's uid, from the bus daemon (never from the message).
async fn caller_uid(conn: &Connection, header: &Header<'_>) -> Result<u32, AdminError> {
    let sender = header
        .sender()
        .ok_or_else(|| AdminError::AccessDenied("the call has no sender".to_owned()))?;
    let dbus = zbus::fdo::DBusProxy::new(conn).await?;
    dbus.get_connection_unix_user(sender.clone().into())
        .await
        .map_err(|e| AdminError::AccessDenied(format!("the caller's uid is not known: {e}")))
}

/// Root, or a member of `group` (primary or supplementary).
fn is_admin(uid: u32, group: &str) -> bool {
    if uid == 0 {
        return true;
    }
    let Ok(Some(gr)) = nix::unistd::Group::from_name(group) else {
        return false;
    };
    let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) else {
        return false;
    };
    crate::users::Account::lookup(&user.name)
        .is_ok_and(|account| account.groups.contains(&gr.gid.as_raw()))
}

/// Why the interface is not served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another process owns the name: refuse to start.
    #[error(
        "another process owns {BUS_NAME} on the system bus (is a second srpcd running?); \
         set admin.dbus = false to run without the admin interface"
    )]
    NameTaken,
    /// No bus, or it refused: srpcd runs without the interface.
    #[error("the D-Bus admin interface is not served (srpcctl will not reach srpcd): {0}")]
    Unavailable(zbus::Error),
}

/// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS` if set), serves
/// `admin` and owns the name; then turns `notices` into signals until the
/// connection goes. Keep the returned connection: dropping it leaves the bus.
pub async fn serve(
    admin: Admin,
    mut notices: mpsc::UnboundedReceiver<Notice>,
) -> Result<Connection, ServeError> {
    let built = zbus::connection::Builder::system()
        .and_then(|b| b.serve_at(OBJECT_PATH, admin))
        .and_then(|b| b.name(BUS_NAME));
    let conn = match built {
        Ok(b) => b
            .allow_name_replacements(false)
            .replace_existing_names(false)
            .build()
            .await
            .map_err(|e| match e {
                zbus::Error::NameTaken => ServeError::NameTaken,
                e => ServeError::Unavailable(e),
            })?,
        Err(e) => return Err(ServeError::Unavailable(e)),
    };
    let signals = conn.clone();
    tokio::spawn(async move {
        let Ok(emitter) = SignalEmitter::new(&signals, OBJECT_PATH) else {
            return;
        };
        while let Some(notice) = notices.recv().await {
            let sent = match notice {
                Notice::SessionStarted(s) => {
                    Admin::session_started(&emitter, s.id, &s.user, &s.remote, &s.aname).await
                }
                Notice::SessionEnded { id, user, reason } => {
                    Admin::session_ended(&emitter, id, &user, &reason).await
                }
            };
            if let Err(e) = sent {
                tracing::warn!("D-Bus signal: {e}");
            }
        }
    });
    Ok(conn)
}
