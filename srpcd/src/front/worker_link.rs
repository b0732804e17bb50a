//! The front's link to one worker: requests from many connections and
//! sessions share it, each with a link-local worker fid.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use srpc_proto::{ErrorCode, Message};
use tokio::net::UnixStream;

use crate::link::{Link, Reply};

/// A link to one worker process.
pub struct WorkerLink {
    /// The monitor's id for the worker (a new id is a new process).
    pub worker: u64,
    /// The user the worker runs as.
    pub user: String,
    link: Link,
    next_fid: AtomicU32,
}

impl WorkerLink {
    /// Starts the link on `stream`.
    pub fn start(worker: u64, user: String, stream: UnixStream) -> Arc<WorkerLink> {
        Arc::new(WorkerLink {
            worker,
            user,
            // The negotiated limits are enforced on the client side of the
            // front; internal links accept up to the ceiling.
            link: Link::start(stream, srpc_proto::INTERNAL_LINK_LIMITS),
            next_fid: AtomicU32::new(1),
        })
    }

    /// True once the worker has gone away; the session must relink.
    pub fn is_down(&self) -> bool {
        self.link.is_down()
    }

    /// A fid number not yet used on this link.
    pub fn new_fid(&self) -> u32 {
        self.next_fid.fetch_add(1, Ordering::Relaxed)
    }

    /// See [`Link::call`].
    pub async fn call(&self, msg: Message, orphan_cleanup: Option<Message>) -> Reply {
        self.link.call(msg, orphan_cleanup).await
    }

    /// See [`Link::send_and_forget`].
    pub fn send_and_forget(&self, msg: Message) {
        self.link.send_and_forget(msg);
    }
}

/// The protocol error for a request that was in flight when the worker died.
pub fn link_down_error() -> Message {
    Message::error(
        ErrorCode::Unavailable,
        "the user's worker exited; the request was not completed",
    )
}
