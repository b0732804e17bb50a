//! Calls from the worker to endpoint handlers: a connection to the endpoint's
//! clone socket, made as the user — the kernel checks the user may write to
//! the socket node — and reused for later calls until idle.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::io::Errno;
use srpc_proto::{ErrorCode, Message, INTERNAL_LINK_LIMITS};
use tokio::net::UnixStream;

use crate::link::Link;

/// Handler connections by endpoint node (device, inode).
pub struct Calls {
    links: Mutex<HashMap<(u64, u64), Arc<Link>>>,
    idle: Duration,
}

impl Calls {
    /// Connections unused for `idle` are closed by [`Calls::close_idle`].
    pub fn new(idle: Duration) -> Arc<Calls> {
        Arc::new(Calls {
            links: Mutex::new(HashMap::new()),
            idle,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(u64, u64), Arc<Link>>> {
        self.links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Closes connections idle for longer than the idle time (so handlers can
    /// exit when unused).
    pub fn close_idle(&self) {
        let idle = self.idle;
        self.lock()
            .retain(|_, l| !l.is_down() && l.last_used().elapsed() < idle);
    }

    /// Calls the endpoint whose clone socket `node` (an `O_PATH` fd) is.
    pub async fn call(&self, node: &OwnedFd, data: bytes::Bytes) -> Message {
        let link = match self.link(node).await {
            Ok(link) => link,
            Err(refusal) => return refusal,
        };
        match link.call(Message::Tappend { fid: 0, data }, None).await {
            Ok(reply @ (Message::Rappend { .. } | Message::Rerror { .. })) => reply,
            Ok(other) => Message::error(
                ErrorCode::CallFailed,
                format!("the handler answered with {:?}", other.kind()),
            ),
            Err(_) => Message::error(
                ErrorCode::CallFailed,
                "the handler closed the connection before answering (it may have crashed)",
            ),
        }
    }

    async fn link(&self, node: &OwnedFd) -> Result<Arc<Link>, Message> {
        let st = rustix::fs::fstat(node)
            .map_err(|e| Message::error(ErrorCode::Internal, format!("stat: {e}")))?;
        let key = (st.st_dev, st.st_ino);
        if let Some(link) = self.lock().get(&key).filter(|l| !l.is_down()) {
            return Ok(Arc::clone(link));
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
        let link = Arc::new(Link::start(stream, INTERNAL_LINK_LIMITS));
        self.lock().insert(key, Arc::clone(&link));
        Ok(link)
    }
}
