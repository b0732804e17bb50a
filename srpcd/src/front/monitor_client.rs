//! The front's side of the monitor channel: requests keyed by authentication id,
//! replies routed back to whoever waits for that id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::ipc::{Channel, Envelope, IpcError, ToFront, ToMonitor};

/// The monitor is gone or refused the channel: the front cannot go on.
#[derive(Debug, thiserror::Error)]
#[error("the monitor is not reachable")]
pub struct MonitorGone;

/// Requests to the monitor.
pub struct MonitorClient {
    chan: Channel,
    waiting: Mutex<HashMap<u64, oneshot::Sender<Envelope<ToFront>>>>,
    /// Failures the monitor sent while nobody waited (a login that timed out
    /// between two rounds): the next request for that authentication gets it.
    unclaimed: Mutex<HashMap<u64, Envelope<ToFront>>>,
    next_auth: AtomicU64,
}

/// Unclaimed failures kept at most (one per abandoned login; the oldest are
/// not worth more memory).
const MAX_UNCLAIMED: usize = 4096;

impl MonitorClient {
    /// Starts routing replies from `chan`. What the monitor pushes unasked
    /// (`Configure`, `Revoke`) goes to
    /// `configure`; the channel closes when the monitor goes away.
    pub fn start(
        chan: Channel,
        configure: mpsc::UnboundedSender<Envelope<ToFront>>,
    ) -> Arc<MonitorClient> {
        let client = Arc::new(MonitorClient {
            chan,
            waiting: Mutex::new(HashMap::new()),
            unclaimed: Mutex::new(HashMap::new()),
            next_auth: AtomicU64::new(1),
        });
        let reader = Arc::clone(&client);
        tokio::spawn(async move {
            loop {
                match reader.chan.recv::<ToFront>().await {
                    Ok(Some(env)) => reader.route(env, &configure),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!("{e}");
                        if matches!(e, IpcError::Io(_)) {
                            break;
                        }
                    }
                }
            }
            // Dropping the waiters fails every pending request.
            reader.lock().clear();
            drop(configure);
        });
        client
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Envelope<ToFront>>>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn route(&self, env: Envelope<ToFront>, configure: &mpsc::UnboundedSender<Envelope<ToFront>>) {
        let Some(auth) = env.msg.auth() else {
            let _ = configure.send(env);
            return;
        };
        let waiter = self.lock().remove(&auth);
        if let Some(waiter) = waiter {
            let _ = waiter.send(env);
        } else if matches!(env.msg, ToFront::Failed { .. }) {
            let mut unclaimed = self
                .unclaimed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if unclaimed.len() < MAX_UNCLAIMED {
                unclaimed.insert(auth, env);
            }
        } else {
            tracing::warn!(
                auth,
                "monitor replied for an authentication nobody waits on"
            );
        }
    }

    /// A fresh authentication id.
    pub fn new_auth_id(&self) -> u64 {
        self.next_auth.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a request about `auth` and waits for the monitor's reply. One
    /// request per authentication is outstanding at a time (the caller holds
    /// that authentication's lock).
    pub async fn request(
        &self,
        auth: u64,
        msg: &ToMonitor,
        payload: &[u8],
    ) -> Result<Envelope<ToFront>, MonitorGone> {
        if let Some(failed) = self.take_unclaimed(auth) {
            return Ok(failed);
        }
        let (tx, rx) = oneshot::channel();
        self.lock().insert(auth, tx);
        if let Err(e) = self.chan.send(msg, payload, None).await {
            tracing::error!("{e}");
            self.lock().remove(&auth);
            return Err(MonitorGone);
        }
        rx.await.map_err(|_| MonitorGone)
    }

    fn take_unclaimed(&self, auth: u64) -> Option<Envelope<ToFront>> {
        self.unclaimed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&auth)
    }

    /// Sends a notice that has no reply (abort, session end). An abort also
    /// fails the request still waiting for that authentication, if any (an
    /// append that a second one ended, protocol section 10.3): the monitor
    /// will not answer an aborted authentication.
    pub async fn notify(&self, msg: &ToMonitor) {
        if let ToMonitor::AuthAbort { auth } = msg {
            self.take_unclaimed(*auth);
            self.lock().remove(auth);
        }
        if let Err(e) = self.chan.send(msg, &[], None).await {
            tracing::error!("{e}");
        }
    }
}
