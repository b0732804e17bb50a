//! Attaching a session: the user's worker (started if need be) and the clone
//! at the attach path. Everything slow here is what a client or a user
//! controls — PAM's session modules, the size of the canonical tree — so none
//! of it runs on the monitor's loop (audit M4): the loop only moves state and
//! starts tasks, and each task reports back as an [`Event`].
//!
//! Per user, one start runs at a time (later attaches queue behind it), and
//! one clone sync at a time (a per-user lock); `Worker::pending` counts
//! attaches on their way, so a session ending meanwhile does not remove the
//! clone they are building.

use std::os::fd::OwnedFd;
use std::process::Child;
use std::sync::Arc;

use srpc_proto::ErrorCode;
use tokio::sync::mpsc;

use super::clone::{CloneError, Cloner, RunAs, UserClone};
use super::labeling::UserSecurity;
use super::security::Security;
use super::workers::{Spawner, Worker};
use super::{Attached, Auth, Monitor};
use crate::ipc::ToFront;
use crate::pam::{self, AuthenticatedUser, Transaction};
use crate::users::Account;

/// One user's clone, shared by that user's sync tasks.
pub type CloneSlot = Arc<tokio::sync::Mutex<Option<UserClone>>>;

/// What a task tells the monitor's loop.
pub enum Event {
    /// An authentication task ended.
    Auth(super::auth::Outcome),
    /// A worker start finished (the first attach's clone synced too).
    Started {
        /// Whose.
        user: String,
        /// The worker id the start was for.
        id: u64,
        /// The process, its PAM session, the front's end of its link and
        /// its SELinux context and labels.
        started: Result<Started, AttachError>,
        /// The attach that started it.
        first: Synced,
    },
    /// An attach to a running worker has its clone synced.
    Synced(Synced),
    /// A reload's re-sync of the user's clone is done.
    Resynced {
        /// Whose.
        user: String,
    },
    /// A per-user handler started or exited ([`super::handlers`]).
    Handler(super::handlers::Report),
}

/// A worker that started.
pub struct Started {
    /// The process.
    pub child: Child,
    /// The user's PAM session.
    pub session: pam::Session,
    /// The front's end of its link.
    pub link: OwnedFd,
    /// Its SELinux context and the clone's labels (`None` without SELinux).
    pub security: Option<UserSecurity>,
}

/// One attach, done.
pub struct Synced {
    /// The authentication.
    pub auth: u64,
    /// Whose.
    pub user: String,
    /// Where, from where, since when.
    pub session: Attached,
    /// A new session (not a re-attach after a worker crash).
    pub new_session: bool,
    /// The clone sync's result.
    pub result: Result<(), AttachError>,
}

/// Why an attach failed.
#[derive(Clone)]
pub enum AttachError {
    /// The clone at the attach path could not be made.
    Clone(CloneError),
    /// The user's worker could not be started.
    NoWorker(String),
    /// The user's SELinux mapping gives no valid context: the login is
    /// refused, saying why (the user's own mapping, and the admin's fix).
    NoContext(String),
}

impl AttachError {
    /// The client's answer: what the attach path is not (the client's
    /// mistake, protocol section 10.4), or a server-side failure whose detail
    /// goes to the log only.
    fn answer(&self) -> (ErrorCode, String) {
        match self {
            AttachError::Clone(e @ CloneError::NoSuchNode(_)) => {
                (ErrorCode::NoSuchNode, e.to_string())
            }
            AttachError::Clone(e @ CloneError::NotADirectory(_)) => {
                (ErrorCode::NotDirectory, e.to_string())
            }
            AttachError::Clone(CloneError::Internal(_)) => (
                ErrorCode::Internal,
                "the user's tree could not be prepared (details in the server's log)".into(),
            ),
            AttachError::NoWorker(_) => (
                ErrorCode::Unavailable,
                "the user's worker could not start".into(),
            ),
            AttachError::NoContext(m) => (ErrorCode::PermissionDenied, m.clone()),
        }
    }

    /// Whether the server's log must say why.
    fn detail(&self) -> Option<&str> {
        match self {
            AttachError::Clone(CloneError::Internal(m))
            | AttachError::NoWorker(m)
            | AttachError::NoContext(m) => Some(m),
            AttachError::Clone(_) => None,
        }
    }
}

/// An attach waiting for its user's worker to start.
pub struct Queued {
    auth: u64,
    session: Attached,
    new_session: bool,
}

/// Everything a task needs, cloned out of the monitor.
#[derive(Clone)]
pub struct Ctx {
    /// Makes clones.
    pub cloner: Arc<Cloner>,
    /// Starts workers.
    pub spawner: Spawner,
    /// Where tasks report.
    pub events: mpsc::UnboundedSender<Event>,
    /// The SELinux state (`None` without SELinux).
    pub security: Option<Arc<Security>>,
}

impl Monitor {
    /// The worker for an authentication's user, started if need be, and its
    /// clone at the attach path; answered when the task reports back.
    pub(super) async fn attach(&mut self, auth: u64) {
        let Some((session, fresh)) = self.take_for_attach(auth) else {
            return self
                .fail(
                    auth,
                    ErrorCode::AuthRequired,
                    "authentication is not complete",
                )
                .await;
        };
        let new_session = fresh.is_some();
        let user = session.user.clone();
        let slot = Arc::clone(self.clones.entry(user.clone()).or_default());
        if let Some(w) = self.workers.by_user.get_mut(&user) {
            if w.starting {
                w.pending += 1;
                w.queued.push(Queued {
                    auth,
                    session,
                    new_session,
                });
                finish_in_background(fresh);
                return;
            }
            if w.is_running() {
                w.pending += 1;
                finish_in_background(fresh);
                let run_as = w.run_as();
                tokio::spawn(sync(
                    self.ctx.clone(),
                    slot,
                    run_as,
                    auth,
                    session,
                    new_session,
                ));
                return;
            }
        }
        // No live worker: reuse the user's PAM session if one is open (the
        // worker died under live sessions), else open one with this login.
        let old = self.workers.by_user.remove(&user);
        let carried = old.as_ref().map_or(0, |w| w.sessions);
        // A restart after a crash keeps the user's context and level.
        let kept = old.as_ref().and_then(|w| w.security.clone());
        let (account, opening) = match (old, fresh) {
            (Some(mut old), fresh) if old.pam.is_some() => {
                finish_in_background(fresh);
                (old.account.clone(), Opening::Open(old.pam.take()))
            }
            (_, Some((authenticated, tx))) => (authenticated.account, Opening::Start(tx)),
            (_, None) => {
                tracing::error!(user, "no worker: no PAM session to start one in");
                if !new_session {
                    self.auths.insert(auth, Auth::Attached(session));
                }
                return self
                    .fail(
                        auth,
                        ErrorCode::Unavailable,
                        "the user's worker could not start",
                    )
                    .await;
            }
        };
        let id = self.workers.next_id();
        let mut worker = Worker::starting(id, account.clone(), carried, kept.clone());
        worker.pending = 1;
        self.workers.by_user.insert(user.clone(), worker);
        let tree = self.ctx.cloner.tree_of(&user);
        tokio::spawn(start(
            self.ctx.clone(),
            slot,
            account,
            opening,
            tree,
            Synced {
                auth,
                user,
                session,
                new_session,
                result: Ok(()),
            },
            id,
            kept,
        ));
    }

    /// The session an attach is for: a fresh one from a completed login
    /// (with its PAM user and transaction), or the one an attached
    /// authentication already has (a re-attach after its worker died).
    /// `None`, leaving the table as it was, when the authentication is not
    /// complete.
    fn take_for_attach(
        &mut self,
        auth: u64,
    ) -> Option<(Attached, Option<(AuthenticatedUser, Transaction)>)> {
        match self.auths.remove(&auth) {
            Some(Auth::Authenticated {
                aname,
                rhost,
                user,
                tx,
            }) => {
                let session = Attached {
                    aname,
                    user: user.pam_user.clone(),
                    rhost,
                    started: std::time::SystemTime::now(),
                };
                Some((session, Some((user, tx))))
            }
            Some(Auth::Attached(session)) => Some((session, None)),
            other => {
                if let Some(other) = other {
                    self.auths.insert(auth, other);
                }
                None
            }
        }
    }

    /// A worker start reported back.
    pub(super) async fn started(
        &mut self,
        user: String,
        id: u64,
        started: Result<Started, AttachError>,
        first: Synced,
    ) {
        let Some(w) = self.workers.by_user.get_mut(&user).filter(|w| w.id == id) else {
            // srpcd is stopping (the entry went): nothing to hand out.
            if let Ok(Started {
                mut child,
                session,
                security,
                ..
            }) = started
            {
                let _ = child.kill();
                let _ = child.wait();
                tokio::spawn(async move { drop(session.close().await) });
                if let (Some(_), Some(s)) = (security, &self.ctx.security) {
                    s.release(&user);
                }
            }
            return;
        };
        w.starting = false;
        let queued = std::mem::take(&mut w.queued);
        match started {
            Ok(Started {
                child,
                session,
                link,
                security,
            }) => {
                crate::audit::Event::WorkerStarted {
                    user: &user,
                    uid: w.account.uid,
                    pid: child.id(),
                    context: security.as_ref().map(|s| s.worker.as_str()),
                }
                .emit();
                self.hub
                    .worker_started
                    .insert(w.id, std::time::SystemTime::now());
                w.child = Some(child);
                w.pam = Some(session);
                w.security = security;
                self.synced(first, Some(link)).await;
                let Some(w) = self.workers.by_user.get(&user) else {
                    return;
                };
                let run_as = w.run_as();
                for q in queued {
                    let slot = Arc::clone(self.clones.entry(user.clone()).or_default());
                    tokio::spawn(sync(
                        self.ctx.clone(),
                        slot,
                        run_as.clone(),
                        q.auth,
                        q.session,
                        q.new_session,
                    ));
                }
            }
            Err(error) => {
                let failed = |q: Queued| Synced {
                    auth: q.auth,
                    user: user.clone(),
                    session: q.session,
                    new_session: q.new_session,
                    result: Err(error.clone()),
                };
                let all: Vec<Synced> = std::iter::once(Synced {
                    result: Err(error.clone()),
                    ..first
                })
                .chain(queued.into_iter().map(failed))
                .collect();
                for s in all {
                    self.synced(s, None).await;
                }
            }
        }
    }

    /// An attach is done: tell the front, count the session.
    pub(super) async fn synced(&mut self, s: Synced, link: Option<OwnedFd>) {
        let Synced {
            auth,
            user,
            session,
            new_session,
            result,
        } = s;
        let aname = session.aname.clone();
        let worker = self.workers.by_user.get_mut(&user);
        let Some(w) = worker else {
            return self
                .fail(auth, ErrorCode::Unavailable, "the user's worker is gone")
                .await;
        };
        w.pending = w.pending.saturating_sub(1);
        let live = w.is_running();
        match result {
            Ok(()) if live => {
                if new_session {
                    w.sessions += 1;
                    crate::audit::Event::SessionStarted {
                        session: auth,
                        user: &user,
                        remote: session.rhost,
                        aname: &aname,
                    }
                    .emit();
                    let _ = self.hub.notices.send(super::admin::Notice::SessionStarted(
                        super::admin::types::Session {
                            id: auth,
                            user: user.clone(),
                            remote: session.rhost.to_string(),
                            aname: aname.clone(),
                            started_unix: super::admin::unix_secs(session.started),
                            fids: 0,
                            calls: 0,
                        },
                    ));
                }
                w.idle_since = None;
                let id = w.id;
                self.auths.insert(auth, Auth::Attached(session));
                let msg = ToFront::Worker {
                    auth,
                    worker: id,
                    user,
                };
                self.reply(msg, &[], link.as_ref()).await;
            }
            failed => {
                let (code, message) = match &failed {
                    Err(e) => {
                        if let Some(detail) = e.detail() {
                            tracing::error!(user, aname, "attach failed: {detail}");
                        } else {
                            tracing::info!(user, aname, "attach refused: {}", e.answer().1);
                        }
                        e.answer()
                    }
                    // The sync went well but the worker died meanwhile.
                    Ok(()) => (
                        ErrorCode::Unavailable,
                        "the user's worker could not start".to_owned(),
                    ),
                };
                if !new_session {
                    self.auths.insert(auth, Auth::Attached(session));
                }
                self.fail(auth, code, message).await;
                self.maybe_idle(&user);
            }
        }
    }

    /// When the user has no session and no attach on its way: the worker
    /// starts its idle time and the clone goes (emptied off the loop).
    pub(super) fn maybe_idle(&mut self, user: &str) {
        let Some(w) = self.workers.by_user.get_mut(user) else {
            return;
        };
        if w.sessions > 0 || w.pending > 0 {
            return;
        }
        w.idle_since = Some(std::time::Instant::now());
        // The handlers, and all they started, end with the last session; the
        // worker waits out its idle time (and ends with the rest at reap).
        super::cgroup::sessions_ended(w.account.uid);
        if let Some(slot) = self.clones.remove(user) {
            // No task holds it: they all reported (pending is 0).
            if let Ok(mut clone) = slot.try_lock() {
                if let Some(c) = clone.take() {
                    tokio::task::spawn_blocking(self.ctx.cloner.remove(c));
                }
            }
        }
    }
}

impl Monitor {
    /// After a reload: every running worker's clone is synced again at each
    /// attach path its sessions use, so live sessions see the changed tree
    /// (new and removed nodes, changed modes: a changed endpoint is
    /// re-created and its handler stopped, as at an attach). Off the loop,
    /// counted in `pending` so a session ending meanwhile leaves the clone
    /// to the task. Returns how many users' clones are being synced.
    pub(super) fn resync_all(&mut self) -> usize {
        let mut anames: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
            std::collections::BTreeMap::new();
        for auth in self.auths.values() {
            if let Auth::Attached(s) = auth {
                anames
                    .entry(s.user.clone())
                    .or_default()
                    .insert(s.aname.clone());
            }
        }
        let mut started = 0;
        for (user, paths) in anames {
            let Some(slot) = self.clones.get(&user).map(Arc::clone) else {
                continue;
            };
            let Some(w) = self.workers.by_user.get_mut(&user) else {
                continue;
            };
            if !w.is_running() {
                continue;
            }
            w.pending += 1;
            let run_as = w.run_as();
            let ctx = self.ctx.clone();
            started += 1;
            tokio::spawn(async move {
                for aname in paths {
                    let result =
                        sync_clone(&ctx, Arc::clone(&slot), run_as.clone(), aname.clone()).await;
                    if let Err(e) = result {
                        let why = e.detail().map_or_else(|| e.answer().1, str::to_owned);
                        tracing::warn!(user, aname, "re-sync after reload: {why}");
                    }
                }
                let _ = ctx.events.send(Event::Resynced { user });
            });
        }
        started
    }

    /// A reload's re-sync reported back.
    pub(super) fn resynced(&mut self, user: &str) {
        if let Some(w) = self.workers.by_user.get_mut(user) {
            w.pending = w.pending.saturating_sub(1);
        }
        self.maybe_idle(user);
    }
}

/// How a worker start gets its PAM session.
enum Opening {
    /// The one the last worker ran in, kept across its crash.
    Open(Option<pam::Session>),
    /// A fresh one from this login.
    Start(Transaction),
}

/// An authentication whose PAM handle is not needed (the user's session is
/// already open): ended off the loop.
fn finish_in_background(fresh: Option<(AuthenticatedUser, Transaction)>) {
    if let Some((_, tx)) = fresh {
        tokio::spawn(async move { drop(tx.finish().await) });
    }
}

/// Syncs the user's clone at `aname` (on the blocking pool, under the user's
/// clone lock) and reports.
async fn sync(
    ctx: Ctx,
    slot: CloneSlot,
    run_as: RunAs,
    auth: u64,
    session: Attached,
    new_session: bool,
) {
    let result = sync_clone(&ctx, slot, run_as, session.aname.clone()).await;
    let _ = ctx.events.send(Event::Synced(Synced {
        auth,
        user: session.user.clone(),
        session,
        new_session,
        result,
    }));
}

async fn sync_clone(
    ctx: &Ctx,
    slot: CloneSlot,
    run_as: RunAs,
    aname: String,
) -> Result<(), AttachError> {
    let mut clone = slot.lock_owned().await;
    let cloner = Arc::clone(&ctx.cloner);
    tokio::task::spawn_blocking(move || cloner.sync(&mut clone, &run_as, &aname))
        .await
        .map_err(|e| CloneError::Internal(format!("clone sync: {e}")))
        .and_then(|r| r)
        .map_err(AttachError::Clone)
}

/// Finds the user's SELinux context (or takes the kept one), opens the PAM
/// session (or takes the kept one), starts the worker, syncs the first
/// attach's clone, and reports.
#[allow(clippy::too_many_arguments)]
async fn start(
    ctx: Ctx,
    slot: CloneSlot,
    account: Account,
    opening: Opening,
    tree: std::path::PathBuf,
    mut first: Synced,
    id: u64,
    kept: Option<UserSecurity>,
) {
    let fresh = kept.is_none();
    let security = match (kept, ctx.security.clone()) {
        (Some(kept), _) => Ok(Some(kept)),
        (None, None) => Ok(None),
        (None, Some(s)) => {
            let who = account.clone();
            tokio::task::spawn_blocking(move || s.for_user(&who))
                .await
                .unwrap_or_else(|e| Err(format!("finding the SELinux context: {e}")))
                .map(Some)
        }
    };
    let started = match security {
        Ok(security) => start_worker(&ctx, &account, opening, &tree, security).await,
        Err(message) => {
            tracing::error!(user = account.name, "login refused: {message}");
            opening.abandon();
            Err(AttachError::NoContext(message))
        }
    };
    match &started {
        Ok(s) => {
            let run_as = RunAs {
                security: s.security.clone(),
                account: account.clone(),
                env: s.session.env().to_vec(),
            };
            first.result = sync_clone(&ctx, slot, run_as, first.session.aname.clone()).await;
        }
        // A level found for this start goes back with it.
        Err(_) if fresh => {
            if let Some(s) = &ctx.security {
                s.release(&account.name);
            }
        }
        Err(_) => {}
    }
    let _ = ctx.events.send(Event::Started {
        user: first.user.clone(),
        id,
        started,
        first,
    });
}

/// Opens the PAM session (or takes the kept one) and starts the worker in it.
async fn start_worker(
    ctx: &Ctx,
    account: &Account,
    opening: Opening,
    tree: &std::path::Path,
    security: Option<UserSecurity>,
) -> Result<Started, AttachError> {
    let session = match opening {
        Opening::Open(Some(session)) => session,
        Opening::Open(None) => {
            return Err(AttachError::NoWorker(
                "no PAM session to start a worker in".to_owned(),
            ))
        }
        Opening::Start(tx) => tx
            .open_session()
            .await
            .map_err(|e| AttachError::NoWorker(e.to_string()))?,
    };
    let context = security.as_ref().map(|s| s.worker.as_str());
    match ctx.spawner.spawn(account, session.env(), tree, context) {
        Ok((child, link)) => Ok(Started {
            child,
            session,
            link,
            security,
        }),
        Err(e) => {
            drop(session.close().await);
            Err(AttachError::NoWorker(e.to_string()))
        }
    }
}

impl Opening {
    /// Ends what this start would have used, off the loop.
    fn abandon(self) {
        match self {
            Opening::Open(Some(session)) => {
                tokio::spawn(async move { drop(session.close().await) });
            }
            Opening::Open(None) => {}
            Opening::Start(tx) => {
                tokio::spawn(async move { drop(tx.finish().await) });
            }
        }
    }
}

impl Worker {
    /// What its handlers run as.
    pub fn run_as(&self) -> RunAs {
        RunAs {
            security: self.security.clone(),
            account: self.account.clone(),
            env: self
                .pam
                .as_ref()
                .map(|s| s.env().to_vec())
                .unwrap_or_default(),
        }
    }
}
