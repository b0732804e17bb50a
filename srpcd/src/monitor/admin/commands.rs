//! The loop's side of administration: publishing the snapshot after every
//! event, and carrying out the commands that arrive as [`Request`]s. Runs
//! on the loop, so it may change the state; it only moves state and sends
//! on the channel, as every other event does.

use std::sync::Arc;
use std::time::Instant;

use super::{types, unix_secs, Command, CommandError, Request, Revoking, Snapshot};
use crate::ipc::ToFront;
use crate::monitor::{workers, Auth, Monitor};

impl Monitor {
    /// Publishes the state as the admin interface shows it.
    pub(in crate::monitor) fn publish(&mut self) {
        let mut sessions: Vec<types::Session> = self
            .auths
            .iter()
            .filter_map(|(id, a)| match a {
                Auth::Attached(s) => {
                    let counted = self.hub.session_stats.get(id);
                    Some(types::Session {
                        id: *id,
                        user: s.user.clone(),
                        remote: s.rhost.to_string(),
                        aname: s.aname.clone(),
                        started_unix: unix_secs(s.started),
                        fids: counted.map_or(0, |c| c.fids),
                        calls: counted.map_or(0, |c| c.calls),
                    })
                }
                _ => None,
            })
            .collect();
        sessions.sort_by_key(|s| s.id);
        let now = Instant::now();
        let started = &mut self.hub.worker_started;
        started.retain(|id, _| self.workers.by_user.values().any(|w| w.id == *id));
        let mut workers: Vec<types::Worker> = self
            .workers
            .by_user
            .iter()
            .map(|(user, w)| types::Worker {
                user: user.clone(),
                uid: w.account.uid,
                pid: w.child.as_ref().map_or(0, std::process::Child::id),
                state: if w.starting {
                    "starting"
                } else if w.stopping {
                    "stopping"
                } else if w.child.is_none() {
                    "died"
                } else if w.sessions == 0 {
                    "idle"
                } else {
                    "running"
                }
                .to_owned(),
                sessions: w.sessions,
                calls: sessions
                    .iter()
                    .filter(|s| s.user == *user)
                    .map(|s| s.calls)
                    .sum(),
                started_unix: started.get(&w.id).map_or(0, |t| unix_secs(*t)),
                idle_secs: w.idle_since.map_or(0, |t| now.duration_since(t).as_secs()),
                context: w
                    .security
                    .as_ref()
                    .map_or_else(String::new, |s| s.worker.clone()),
                // `user:role:type:level`: the level is all after the third `:`.
                level: w
                    .security
                    .as_ref()
                    .and_then(|s| s.worker.splitn(4, ':').nth(3))
                    .unwrap_or_default()
                    .to_owned(),
            })
            .collect();
        workers.sort_by(|a, b| a.user.cmp(&b.user));
        let logins = self
            .auths
            .values()
            .filter(|a| matches!(a, Auth::Running { .. }))
            .count();
        let status = types::Status {
            sessions: u32::try_from(sessions.len()).unwrap_or(u32::MAX),
            workers: u32::try_from(workers.len()).unwrap_or(u32::MAX),
            logins_in_progress: u32::try_from(logins).unwrap_or(u32::MAX),
            ..self.status.clone()
        };
        let line = format!(
            "serving on {}: {} session(s), {} worker(s)",
            status.listen, status.sessions, status.workers
        );
        if line != self.notified {
            self.notify.status(&line);
            self.notified = line;
        }
        let mut handlers: Vec<types::Handler> = self.hub.handlers.values().cloned().collect();
        handlers.sort_by(|a, b| (&a.user, &a.endpoint).cmp(&(&b.user, &b.endpoint)));
        self.hub.snapshot.send_replace(Arc::new(Snapshot {
            status,
            started: self.started,
            sessions,
            workers,
            handlers,
            tree_root: self.config.tree.root.clone(),
            pam_service: self.config.pam.service.clone(),
            admin_group: self.config.admin.group.clone(),
        }));
    }

    /// Carries out an admin command and answers it — for a kill, once the
    /// front has confirmed every revocation, so that when the caller hears
    /// "ended" no request of the session is served any more.
    pub(in crate::monitor) async fn admin(&mut self, request: Request) {
        let Request { command, by, reply } = request;
        let result = match command {
            Command::KillSession(id) => self.kill_session(id, by).await,
            Command::StopWorker(user) => self.stop_worker(&user, by).await,
            Command::Reload => self
                .reload(&format!("dbus uid {by}"))
                .await
                .map(|()| {
                    (
                        Vec::new(),
                        "configuration and TLS credentials reloaded".to_owned(),
                    )
                })
                .map_err(CommandError::Failed),
        };
        match result {
            Ok((revoked, summary)) if !revoked.is_empty() => {
                self.hub.revoking.push(Revoking {
                    waiting: revoked,
                    summary,
                    reply,
                });
            }
            Ok((_, summary)) => drop(reply.send(Ok(summary))),
            Err(e) => drop(reply.send(Err(e))),
        }
    }

    /// The front confirmed it revoked `auth`: answer the commands that waited
    /// for it last.
    pub(in crate::monitor) fn revoked(&mut self, auth: u64) {
        for r in &mut self.hub.revoking {
            r.waiting.retain(|a| *a != auth);
        }
        let (done, waiting) = std::mem::take(&mut self.hub.revoking)
            .into_iter()
            .partition(|r| r.waiting.is_empty());
        self.hub.revoking = waiting;
        for r in done {
            let _ = r.reply.send(Ok(r.summary));
        }
    }

    async fn kill_session(&mut self, id: u64, by: u32) -> Result<(Vec<u64>, String), CommandError> {
        let Some(Auth::Attached(session)) = self.auths.get(&id) else {
            return Err(CommandError::NoSuchSession(id));
        };
        let user = session.user.clone();
        self.auths.remove(&id);
        self.revoke(id).await;
        self.session_ended(id, &user, &format!("killed by uid {by}"));
        Ok((vec![id], format!("session {id} of {user} ended")))
    }

    /// Ends the user's sessions (each revoked at the front), then the worker;
    /// its handlers end with the last session and the rest of the user's
    /// processes when the worker is reaped.
    async fn stop_worker(
        &mut self,
        user: &str,
        by: u32,
    ) -> Result<(Vec<u64>, String), CommandError> {
        match self.workers.by_user.get(user) {
            None => return Err(CommandError::NoSuchWorker(user.to_owned())),
            Some(w) if w.starting || w.pending > 0 => {
                return Err(CommandError::Failed(format!(
                    "the worker of {user} is starting or attaching; try again"
                )))
            }
            Some(_) => {}
        }
        let ids: Vec<u64> = self
            .auths
            .iter()
            .filter(|(_, a)| matches!(a, Auth::Attached(s) if s.user == user))
            .map(|(id, _)| *id)
            .collect();
        let reason = format!("worker stopped by uid {by}");
        for id in &ids {
            self.auths.remove(id);
            self.revoke(*id).await;
            self.session_ended(*id, user, &reason);
        }
        let Some(w) = self.workers.by_user.get_mut(user) else {
            return Err(CommandError::NoSuchWorker(user.to_owned()));
        };
        w.stopping = true;
        let pid = w.child.as_ref().map(std::process::Child::id);
        if let Some(child) = &w.child {
            workers::terminate(child);
        }
        let summary = match pid {
            Some(pid) => format!(
                "{} session(s) of {user} ended; worker (pid {pid}) stopping",
                ids.len()
            ),
            None => format!(
                "{} session(s) of {user} ended; no worker process",
                ids.len()
            ),
        };
        Ok((ids, summary))
    }

    /// Tells the front a session is gone: it drops the session's fids and
    /// will not attach it again.
    async fn revoke(&self, auth: u64) {
        self.reply(ToFront::Revoke { auth }, &[], None).await;
    }
}
