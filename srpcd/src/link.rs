//! A client end of an srpc frame link over a Unix stream: requests from many
//! tasks share it, each with a link-local sequence number; replies are routed
//! back by sequence number. The front uses it towards workers, workers towards
//! handlers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use srpc::frames::{write_batch, FrameReader, ReadError};
use srpc_proto::{encode_split, Encoded, Frame, Limits, Message};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

/// Bytes of requests queued for the writer at most (two frames of the
/// largest size). Callers wait for room; flushes and clean-ups (one small
/// frame per call at most) are not counted, so a `Drop` never waits.
const QUEUE_BYTES: usize = 2 * srpc_proto::INTERNAL_LINK_LIMITS.max_message as usize;

/// A frame for the writer, with the queue room it frees once written.
type Queued = (Encoded, Option<OwnedSemaphorePermit>);

/// The peer went away (exited, was killed, or the link broke).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkDown;

/// What a caller gets back.
pub type Reply = Result<Message, LinkDown>;

struct Pending {
    reply: Option<oneshot::Sender<Reply>>,
    /// Sent if the reply arrives after its caller gave up and the request
    /// succeeded (a walk's new fid that nobody will clunk).
    orphan_cleanup: Option<Message>,
}

struct Shared {
    pending: Mutex<HashMap<u64, Pending>>,
    down: AtomicBool,
    /// Why the peer's stream was cut, if the peer sent a frame over the link's
    /// limit: `(declared, max)` bytes.
    too_large: Mutex<Option<(u64, u64)>>,
    next_seq: AtomicU64,
    last_used: Mutex<Instant>,
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

/// One link. Dropping the last handle closes the writing side, which ends the
/// link once the peer has answered what was in flight.
pub struct Link {
    tx: mpsc::UnboundedSender<Queued>,
    room: Arc<Semaphore>,
    shared: Arc<Shared>,
}

impl Link {
    /// Starts the reader and writer tasks on `stream`; frames are bounded by
    /// `limits.max_message`.
    pub fn start(stream: UnixStream, limits: Limits) -> Link {
        let (mut rd, mut wr) = stream.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Queued>();
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            down: AtomicBool::new(false),
            too_large: Mutex::new(None),
            next_seq: AtomicU64::new(1),
            last_used: Mutex::new(Instant::now()),
        });
        tokio::spawn(async move {
            fn bytes(queued: &Queued) -> [&[u8]; 2] {
                queued.0.parts()
            }
            // Many requests in flight leave in one write; their queue room is
            // given back once written.
            let mut written = Vec::new();
            while let Some(first) = rx.recv().await {
                let more = || rx.try_recv().ok();
                if write_batch(&mut wr, first, more, bytes, &mut written)
                    .await
                    .is_err()
                {
                    return;
                }
                written.clear();
            }
            let _ = wr.shutdown().await;
        });
        // The reader holds only a weak sender, so the link closes when its
        // last `Link` is dropped.
        let weak = tx.downgrade();
        let reader = Arc::clone(&shared);
        tokio::spawn(async move {
            let mut frames = FrameReader::new();
            loop {
                let raw = match frames.next(&mut rd, &limits).await {
                    Ok(raw) => raw,
                    Err(ReadError::Closed) => break,
                    // The peer died (a reset): its callers learn it as LinkDown.
                    Err(ReadError::Io(e)) => {
                        tracing::debug!("link read failed: {e}");
                        break;
                    }
                    Err(ReadError::Deframe(e)) => {
                        if let srpc_proto::DeframeError::BadHeader {
                            error: srpc_proto::DecodeError::TooLarge { declared, max },
                            ..
                        } = &e
                        {
                            *lock(&reader.too_large) = Some((*declared, *max));
                        }
                        tracing::error!("link peer: {e}");
                        break;
                    }
                };
                match raw.decode(&limits) {
                    Ok(frame) => deliver(&reader, &weak, frame),
                    Err(e) => {
                        tracing::error!("link peer sent a malformed frame: {e}");
                        break;
                    }
                }
            }
            reader.down.store(true, Ordering::SeqCst);
            let pending = std::mem::take(&mut *lock(&reader.pending));
            for (_, p) in pending {
                if let Some(reply) = p.reply {
                    let _ = reply.send(Err(LinkDown));
                }
            }
        });
        Link {
            tx,
            room: Arc::new(Semaphore::new(QUEUE_BYTES)),
            shared,
        }
    }

    /// True once the peer has gone away.
    pub fn is_down(&self) -> bool {
        self.shared.down.load(Ordering::SeqCst)
    }

    /// `(declared, max)` if the link ended because the peer sent a frame
    /// over its limit.
    pub fn too_large(&self) -> Option<(u64, u64)> {
        *lock(&self.shared.too_large)
    }

    /// When the link last carried a request.
    pub fn last_used(&self) -> Instant {
        *lock(&self.shared.last_used)
    }

    /// Sends `msg` and waits for the reply. If this future is dropped first,
    /// the request is flushed at the peer; a reply that crosses the flush is
    /// discarded and, if it was a success, `orphan_cleanup` undoes it.
    pub async fn call(&self, msg: Message, orphan_cleanup: Option<Message>) -> Reply {
        *lock(&self.shared.last_used) = Instant::now();
        let mut frame = encode_split(&Frame::new(0, msg));
        // Before registering: a caller that gives up while waiting here leaves
        // nothing behind.
        let cost = u32::try_from(frame.len().min(QUEUE_BYTES)).unwrap_or(u32::MAX);
        let Ok(room) = Arc::clone(&self.room).acquire_many_owned(cost).await else {
            return Err(LinkDown);
        };
        let (tx, rx) = oneshot::channel();
        let Some(seq) = self.shared.register(Pending {
            reply: Some(tx),
            orphan_cleanup,
        }) else {
            return Err(LinkDown);
        };
        frame.set_seq(seq);
        if self.tx.send((frame, Some(room))).is_err() {
            lock(&self.shared.pending).remove(&seq);
            return Err(LinkDown);
        }
        let mut guard = FlushOnDrop {
            link: self,
            seq,
            armed: true,
        };
        let reply = rx.await.unwrap_or(Err(LinkDown));
        guard.armed = false;
        reply
    }

    /// Sends `msg` without waiting for its reply.
    pub fn send_and_forget(&self, msg: Message) {
        forget(&self.shared, &self.tx, msg);
    }
}

/// Flushes a request whose caller stopped waiting.
struct FlushOnDrop<'a> {
    link: &'a Link,
    seq: u64,
    armed: bool,
}

impl Drop for FlushOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.link
                .send_and_forget(Message::Tflush { oldseq: self.seq });
        }
    }
}

fn deliver(shared: &Shared, tx: &mpsc::WeakUnboundedSender<Queued>, frame: Frame) {
    let Some(p) = lock(&shared.pending).remove(&frame.seq) else {
        tracing::warn!(
            seq = frame.seq,
            "link peer answered a request it was not sent"
        );
        return;
    };
    let ok = !matches!(frame.msg, Message::Rerror { .. } | Message::Rflush);
    let orphan = match p.reply {
        Some(reply) => reply.send(Ok(frame.msg)).is_err(),
        None => false,
    };
    if orphan && ok {
        if let (Some(cleanup), Some(tx)) = (p.orphan_cleanup, tx.upgrade()) {
            forget(shared, &tx, cleanup);
        }
    }
}

fn forget(shared: &Shared, tx: &mpsc::UnboundedSender<Queued>, msg: Message) {
    let none = Pending {
        reply: None,
        orphan_cleanup: None,
    };
    if let Some(seq) = shared.register(none) {
        let _ = tx.send((encode_split(&Frame::new(seq, msg)), None));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock means a panic elsewhere; with panic=abort that cannot
    // happen in the daemon, and in tests the data is still consistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
