//! The front's end of a link to one worker: requests from many connections and
//! sessions share it, each with a link-local sequence number and worker fid.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use srpc_proto::{check, decode_bytes, encode, Check, ErrorCode, Frame, Limits, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

/// What a caller waiting on the worker gets back.
pub type Reply = Result<Message, LinkDown>;

/// The worker went away (exited, was killed, or its link broke).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkDown;

struct Pending {
    reply: Option<oneshot::Sender<Reply>>,
    /// Sent to the worker if the reply arrives after its caller gave up and
    /// the request succeeded (a walk's new fid that nobody will clunk).
    orphan_cleanup: Option<Message>,
}

struct Shared {
    pending: Mutex<HashMap<u64, Pending>>,
    down: AtomicBool,
    next_seq: AtomicU64,
}

impl Shared {
    /// Registers a request and returns its sequence number.
    fn register(&self, pending: Pending) -> Option<u64> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let mut map = lock(&self.pending);
        if self.down.load(Ordering::SeqCst) {
            return None;
        }
        map.insert(seq, pending);
        Some(seq)
    }
}

/// A link to one worker process.
pub struct WorkerLink {
    /// The monitor's id for the worker (a new id is a new process).
    pub worker: u64,
    /// The user the worker runs as.
    pub user: String,
    tx: mpsc::UnboundedSender<Vec<u8>>,
    shared: Arc<Shared>,
    next_fid: AtomicU32,
}

impl WorkerLink {
    /// Starts the reader and writer tasks on `stream`.
    pub fn start(worker: u64, user: String, stream: UnixStream) -> Arc<WorkerLink> {
        let (mut rd, mut wr) = stream.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            down: AtomicBool::new(false),
            next_seq: AtomicU64::new(1),
        });
        let link = Arc::new(WorkerLink {
            worker,
            user,
            tx: tx.clone(),
            shared: Arc::clone(&shared),
            next_fid: AtomicU32::new(1),
        });
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if wr.write_all(&frame).await.is_err() {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            let limits = Limits::default();
            let mut buf = BytesMut::with_capacity(8192);
            loop {
                match check(&buf, &limits) {
                    Check::Complete(len) => {
                        let bytes = buf.split_to(len).freeze();
                        match decode_bytes(&bytes, &limits) {
                            Ok(frame) => deliver(&shared, &tx, frame),
                            Err(e) => {
                                tracing::error!(worker, "worker sent a malformed frame: {e}");
                                break;
                            }
                        }
                    }
                    Check::Invalid(e) => {
                        tracing::error!(worker, "worker sent an invalid frame: {e}");
                        break;
                    }
                    Check::Incomplete => match rd.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    },
                }
            }
            shared.down.store(true, Ordering::SeqCst);
            let pending = std::mem::take(&mut *lock(&shared.pending));
            for (_, p) in pending {
                if let Some(reply) = p.reply {
                    let _ = reply.send(Err(LinkDown));
                }
            }
        });
        link
    }

    /// True once the worker has gone away; the session must relink.
    pub fn is_down(&self) -> bool {
        self.shared.down.load(Ordering::SeqCst)
    }

    /// A fid number not yet used on this link.
    pub fn new_fid(&self) -> u32 {
        self.next_fid.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends `msg` and waits for the worker's reply. If the returned future is
    /// dropped first, the reply is discarded and, if it was a success,
    /// `orphan_cleanup` is sent to undo it.
    pub async fn call(&self, msg: Message, orphan_cleanup: Option<Message>) -> Reply {
        let (tx, rx) = oneshot::channel();
        let Some(seq) = self.shared.register(Pending {
            reply: Some(tx),
            orphan_cleanup,
        }) else {
            return Err(LinkDown);
        };
        if self.tx.send(encode(&Frame::new(seq, msg))).is_err() {
            lock(&self.shared.pending).remove(&seq);
            return Err(LinkDown);
        }
        rx.await.unwrap_or(Err(LinkDown))
    }

    /// Sends `msg` without waiting (a clunk nobody awaits).
    pub fn send_and_forget(&self, msg: Message) {
        forget(&self.shared, &self.tx, msg);
    }
}

fn deliver(shared: &Shared, tx: &mpsc::UnboundedSender<Vec<u8>>, frame: Frame) {
    let Some(p) = lock(&shared.pending).remove(&frame.seq) else {
        tracing::warn!(seq = frame.seq, "worker answered a request it was not sent");
        return;
    };
    let ok = !matches!(frame.msg, Message::Rerror { .. });
    let orphan = match p.reply {
        Some(reply) => reply.send(Ok(frame.msg)).is_err(),
        None => false,
    };
    if orphan && ok {
        if let Some(cleanup) = p.orphan_cleanup {
            forget(shared, tx, cleanup);
        }
    }
}

fn forget(shared: &Shared, tx: &mpsc::UnboundedSender<Vec<u8>>, msg: Message) {
    let none = Pending {
        reply: None,
        orphan_cleanup: None,
    };
    if let Some(seq) = shared.register(none) {
        let _ = tx.send(encode(&Frame::new(seq, msg)));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock means a panic elsewhere; with panic=abort that cannot
    // happen in the daemon, and in tests the data is still consistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The protocol error for a request that was in flight when the worker died.
pub fn link_down_error() -> Message {
    Message::error(
        ErrorCode::Unavailable,
        "the user's worker exited; the request was not completed",
    )
}
