//! Calls from the worker to endpoint handlers: a connection to the endpoint's
//! clone socket, made as the user — the kernel checks the user may write to
//! the socket node — and reused for later calls until idle. Every call has a
//! deadline (`workers.call_timeout_secs`).

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::io::Errno;
use srpc_proto::{ErrorCode, Message, INTERNAL_LINK_LIMITS};
use tokio::net::UnixStream;

use crate::link::Link;

/// One connection to a handler.
struct Conn {
    link: Link,
    /// A second fd of the same socket: shutting it down ends the connection
    /// for every holder of the link (and for the handler) at once.
    socket: std::os::unix::net::UnixStream,
}

/// Handler connections by endpoint node (device, inode).
pub struct Calls {
    links: Mutex<HashMap<(u64, u64), Arc<Conn>>>,
    idle: Duration,
    deadline: Duration,
}

impl Calls {
    /// Connections unused for `idle` are closed by [`Calls::close_idle`]; a
    /// call not answered within `deadline` fails with `timeout`.
    pub fn new(idle: Duration, deadline: Duration) -> Arc<Calls> {
        Arc::new(Calls {
            links: Mutex::new(HashMap::new()),
            idle,
            deadline,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(u64, u64), Arc<Conn>>> {
        self.links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Closes connections idle for longer than the idle time (so handlers can
    /// exit when unused).
    pub fn close_idle(&self) {
        let idle = self.idle;
        self.lock()
            .retain(|_, c| !c.link.is_down() && c.link.last_used().elapsed() < idle);
    }

    /// Calls the endpoint whose clone socket `node` (an `O_PATH` fd) is.
    /// Connecting and the answer together get the call deadline: a handler
    /// that never accepts or never answers cannot hold the call (or the
    /// client's pending slot) forever.
    /// `key` is the node's (device, inode), the key of its connection.
    pub async fn call(&self, node: &OwnedFd, key: (u64, u64), data: bytes::Bytes) -> Message {
        let deadline = tokio::time::Instant::now() + self.deadline;
        let conn = match tokio::time::timeout_at(deadline, self.link(key, node)).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(refusal)) => return refusal,
            Err(_) => return self.timed_out(),
        };
        let answer = tokio::time::timeout_at(
            deadline,
            conn.link.call(Message::Tappend { fid: 0, data }, None),
        )
        .await;
        match answer {
            Ok(Ok(reply @ (Message::Rappend { .. } | Message::Rerror { .. }))) => reply,
            Ok(Ok(other)) => Message::error(
                ErrorCode::CallFailed,
                format!("the handler answered with {:?}", other.kind()),
            ),
            // The handler's reply was over the link's limit: the link cut
            // it off; say so, not that the handler crashed.
            Ok(Err(_)) if conn.link.too_large().is_some() => {
                let (declared, max) = conn.link.too_large().unwrap_or_default();
                self.drop_conn(key, &conn);
                Message::error(
                    ErrorCode::LimitExceeded,
                    format!(
                        "the handler's reply declares {declared} body bytes, over the \
                         handler link's limit of {max} bytes per message"
                    ),
                )
            }
            Ok(Err(_)) => Message::error(
                ErrorCode::CallFailed,
                "the handler closed the connection before answering (it crashed, exited, or \
                 failed to start; the srpcd log says which)",
            ),
            Err(_) => {
                // The handler is stuck: drop its connection, so the next call
                // connects afresh and the handler sees this one end.
                self.drop_conn(key, &conn);
                self.timed_out()
            }
        }
    }

    fn timed_out(&self) -> Message {
        Message::error(
            ErrorCode::Timeout,
            format!(
                "the handler did not answer within {} s (workers.call_timeout_secs); its \
                 connection is closed",
                self.deadline.as_secs()
            ),
        )
    }

    /// Ends `conn` and forgets it, unless a newer connection took its place.
    fn drop_conn(&self, key: (u64, u64), conn: &Arc<Conn>) {
        let mut links = self.lock();
        if links.get(&key).is_some_and(|c| Arc::ptr_eq(c, conn)) {
            links.remove(&key);
        }
        drop(links);
        // Wakes the link's reader with end-of-file: calls still in flight on
        // it fail with `call_failed` rather than wait for their own deadline.
        let _ = conn.socket.shutdown(std::net::Shutdown::Both);
    }

    async fn link(&self, key: (u64, u64), node: &OwnedFd) -> Result<Arc<Conn>, Message> {
        if let Some(conn) = self.lock().get(&key).filter(|c| !c.link.is_down()) {
            return Ok(Arc::clone(conn));
        }
        // Connect through the node the walk opened (beneath the attach root),
        // never by a path that could be swapped since.
        let path = format!("/proc/self/fd/{}", node.as_raw_fd());
        let stream = UnixStream::connect(&path).await.map_err(|e| {
            let code = match e.raw_os_error().map(Errno::from_raw_os_error) {
                // The kernel's DAC (or, later, SELinux) verdict for this user.
                Some(Errno::ACCESS | Errno::PERM) => ErrorCode::PermissionDenied,
                // Nobody listens: the endpoint is being re-created.
                Some(Errno::CONNREFUSED) => ErrorCode::Unavailable,
                _ => ErrorCode::CallFailed,
            };
            Message::Rerror {
                code,
                message: format!("connecting to the endpoint: {e}"),
                errno: e.raw_os_error(),
            }
        })?;
        let socket = stream
            .as_fd()
            .try_clone_to_owned()
            .map(std::os::unix::net::UnixStream::from)
            .map_err(|e| Message::error(ErrorCode::Internal, format!("dup: {e}")))?;
        let conn = Arc::new(Conn {
            link: Link::start(stream, INTERNAL_LINK_LIMITS),
            socket,
        });
        self.lock().insert(key, Arc::clone(&conn));
        Ok(conn)
    }
}
