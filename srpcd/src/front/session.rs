//! Sessions (one user attached through one authentication) and the fids that
//! belong to them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use srpc_proto::{ErrorCode, Message, Qid, QidType};

use super::worker_link::{link_down_error, WorkerLink};
use super::{lock, Front};
use crate::ipc::{ToFront, ToMonitor};

/// One user's session: lives while any fid walked from its attach is bound.
pub struct Session {
    /// The authentication it attached with (the monitor's key for it).
    pub auth: u64,
    /// The user, as the monitor named it.
    pub user: String,
    /// The attach path.
    pub aname: String,
    link: tokio::sync::Mutex<Arc<WorkerLink>>,
    front: Arc<Front>,
    /// Set when the monitor revokes the session (an administrator killed it
    /// or stopped its worker).
    revoked: AtomicBool,
}

/// What a request on a revoked session's fid is answered.
pub fn revoked_error() -> Message {
    Message::error(
        ErrorCode::AuthRequired,
        "the session was ended by an administrator; authenticate again",
    )
}

impl Drop for Session {
    fn drop(&mut self) {
        lock(&self.front.attached).remove(&self.auth);
        self.front.session_ended(&self.user);
        let monitor = Arc::clone(&self.front.monitor);
        let auth = self.auth;
        tokio::spawn(async move { monitor.notify(&ToMonitor::SessionEnd { auth }).await });
    }
}

/// A fid bound to a node, through its session's worker.
pub struct NodeFid {
    /// The session.
    pub session: Arc<Session>,
    /// What the client's fid is on the worker link, and which link that is.
    pub bound: Mutex<(Arc<WorkerLink>, u32)>,
    /// Names walked from the attach root: replayed on a new worker after the
    /// old one died.
    pub path: Vec<String>,
    /// Dir or endpoint.
    pub kind: QidType,
}

impl Drop for NodeFid {
    fn drop(&mut self) {
        let (link, wfid) = &*self
            .bound
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !link.is_down() {
            link.send_and_forget(Message::Tclunk { fid: *wfid });
        }
    }
}

/// A protocol refusal to send back.
pub type Refused = Message;

impl Session {
    /// Asks the monitor for the worker of an authenticated user and attaches
    /// there: the start of a session.
    pub async fn attach(
        front: &Arc<Front>,
        auth: u64,
        aname: &str,
    ) -> Result<(Arc<Session>, Arc<WorkerLink>, u32, Qid), Refused> {
        let (user, link) = front.worker_for(auth).await?;
        if !front.session_started(&user) {
            // The monitor counted this session: tell it it never started.
            front.monitor.notify(&ToMonitor::SessionEnd { auth }).await;
            return Err(Message::error(
                ErrorCode::LimitExceeded,
                format!("user {user} has the maximum number of sessions"),
            ));
        }
        let session = Arc::new(Session {
            auth,
            user,
            aname: aname.to_owned(),
            link: tokio::sync::Mutex::new(Arc::clone(&link)),
            front: Arc::clone(front),
            revoked: AtomicBool::new(false),
        });
        lock(&front.attached).insert(auth, Arc::downgrade(&session));
        let (wfid, qid) = session.attach_on(&link, &[]).await?;
        Ok((session, link, wfid, qid))
    }

    /// Binds a new worker fid to `path` below the attach root on `link`.
    async fn attach_on(
        &self,
        link: &Arc<WorkerLink>,
        path: &[String],
    ) -> Result<(u32, Qid), Refused> {
        let root = link.new_fid();
        let attach = Message::Tattach {
            fid: root,
            afid: u32::MAX,
            uname: self.user.clone(),
            aname: self.aname.clone(),
        };
        let qid = match link.call(attach, Some(Message::Tclunk { fid: root })).await {
            Ok(Message::Rattach { qid }) => qid,
            Ok(err @ Message::Rerror { .. }) => return Err(err),
            Ok(other) => return Err(unexpected(&other)),
            Err(_) => return Err(link_down_error()),
        };
        if path.is_empty() {
            return Ok((root, qid));
        }
        let wfid = link.new_fid();
        let walk = Message::Twalk {
            fid: root,
            newfid: wfid,
            names: path.to_vec(),
        };
        let reply = link.call(walk, Some(Message::Tclunk { fid: wfid })).await;
        link.send_and_forget(Message::Tclunk { fid: root });
        match reply {
            Ok(Message::Rwalk { qids }) if qids.len() == path.len() => match qids.last() {
                Some(qid) => Ok((wfid, *qid)),
                None => Err(unexpected(&Message::Rwalk { qids })),
            },
            Ok(Message::Rwalk { .. }) => {
                Err(Message::error(ErrorCode::NoSuchNode, "the node is gone"))
            }
            Ok(err @ Message::Rerror { .. }) => Err(err),
            Ok(other) => Err(unexpected(&other)),
            Err(_) => Err(link_down_error()),
        }
    }

    /// Whether the monitor revoked it.
    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    /// The fid's worker binding, re-made on a new worker if the old one died
    /// (never for a revoked session: the monitor would refuse it anyway).
    pub async fn live(&self, fid: &NodeFid) -> Result<(Arc<WorkerLink>, u32), Refused> {
        if self.is_revoked() {
            return Err(revoked_error());
        }
        let current = fid
            .bound
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if !current.0.is_down() {
            return Ok(current);
        }
        let link = {
            let mut link = self.link.lock().await;
            if link.is_down() {
                let (_, fresh) = self.front.worker_for(self.auth).await?;
                *link = fresh;
            }
            Arc::clone(&link)
        };
        let (wfid, _) = self.attach_on(&link, &fid.path).await?;
        let rebound = (Arc::clone(&link), wfid);
        *fid.bound
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = rebound.clone();
        Ok(rebound)
    }
}

fn unexpected(msg: &Message) -> Message {
    tracing::error!("worker sent an unexpected {:?}", msg.kind());
    Message::error(ErrorCode::Internal, "the worker answered out of turn")
}

impl Front {
    /// The monitor revoked the session of `auth`: its fids answer
    /// [`revoked_error`] and go.
    pub fn revoke(&self, auth: u64) {
        let session = lock(&self.attached)
            .get(&auth)
            .and_then(std::sync::Weak::upgrade);
        if let Some(s) = session {
            s.revoked.store(true, Ordering::Release);
            tracing::info!(auth, user = s.user, "session revoked by the monitor");
        } else {
            tracing::info!(auth, "revoked a session that had already ended");
        }
    }

    /// The monitor's worker for a successful authentication, and its link.
    pub async fn worker_for(&self, auth: u64) -> Result<(String, Arc<WorkerLink>), Refused> {
        let reply = self
            .monitor
            .request(auth, &ToMonitor::Attach { auth }, &[])
            .await
            .map_err(|_| Message::error(ErrorCode::Unavailable, "srpcd is shutting down"))?;
        match reply.msg {
            ToFront::Worker { worker, user, .. } => {
                let link = self.link(worker, &user, reply.fd).await?;
                Ok((user, link))
            }
            ToFront::Failed { code, message, .. } => {
                Err(Message::error(ErrorCode::from_number(code), message))
            }
            ToFront::AuthStep { .. }
            | ToFront::Configure { .. }
            | ToFront::Listener
            | ToFront::Revoke { .. } => Err(Message::error(
                ErrorCode::Internal,
                "the monitor answered out of turn",
            )),
        }
    }
}
