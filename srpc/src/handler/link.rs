//! One handler-link connection: frames in, calls run as tasks, replies out in
//! whatever order the calls finish.
//!
//! A reader reads frames and starts calls; a writer owns the write half and writes
//! what arrives on one queue: call replies, `Rflush`es and protocol errors. The
//! queue's order is what makes `Tflush` exact: the writer handles a flush by
//! forgetting the flushed call, so a reply queued before the flush is written
//! before the `Rflush`, and one finishing after it is dropped. Calls are matched by
//! an internal id as well as by seq, so a late reply of a flushed call can never be
//! taken for the reply of a new call that reuses its seq.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use srpc_proto::{
    encode_into, DeframeError, ErrorCode, Frame, Limits, Message, RawFrame, INTERNAL_LINK_LIMITS,
};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};

use super::{Call, CallError, Caller, HandlerFn};
use crate::frames::{FrameReader, ReadError};

/// Calls running at once on one connection; more get `limit_exceeded`.
pub const MAX_CALLS_IN_FLIGHT: usize = 1024;

/// Items waiting for the writer. Bounded so that a peer that stops reading stops
/// the reader too (back-pressure) instead of growing memory.
const QUEUE: usize = 256;

/// Bytes gathered into one write when several replies are ready.
const BATCH: usize = 64 * 1024;

/// What the writer is asked to write.
enum Out {
    /// A call finished.
    Reply {
        seq: u64,
        id: u64,
        result: Result<Bytes, CallError>,
    },
    /// `Tflush{oldseq}` arrived with this seq.
    Flush { seq: u64, oldseq: u64 },
    /// A request was refused.
    Error {
        seq: u64,
        code: ErrorCode,
        message: String,
    },
    /// The stream cannot be read further: write this error, then close.
    Fatal {
        seq: u64,
        code: ErrorCode,
        message: String,
    },
}

/// Calls started and not yet answered, by seq.
#[derive(Default)]
struct InFlight {
    calls: HashMap<u64, (u64, AbortHandle)>,
    next_id: u64,
}

type Shared = Arc<Mutex<InFlight>>;

fn lock(shared: &Shared) -> MutexGuard<'_, InFlight> {
    // Poisoning needs a panic while holding the lock; nothing in here panics.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serves one connection until the peer closes it (after its pending calls are
/// answered) or it fails. Errors are logged, never returned: one bad connection
/// does not concern the others.
pub(crate) async fn serve_link<H: HandlerFn>(
    stream: UnixStream,
    endpoint: Arc<str>,
    handler: Arc<H>,
) {
    let caller = match super::identity::caller_of(&stream).await {
        Ok(caller) => caller,
        Err(e) => {
            tracing::warn!(%endpoint, error = %e, "cannot identify the caller; closing");
            return;
        }
    };
    tracing::debug!(%endpoint, uid = caller.uid, pid = caller.pid, "connection");
    let (rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel(QUEUE);
    let shared = Shared::default();
    let reader = Reader {
        rd,
        tx,
        shared: Arc::clone(&shared),
        calls: JoinSet::new(),
        endpoint,
        caller,
        handler,
        // Only srpcd's worker connects, and the front has enforced the
        // client's negotiated limits already (one rule for internal links).
        limits: INTERNAL_LINK_LIMITS,
    };
    tokio::join!(reader.run(), write_loop(wr, rx, shared));
}

struct Reader<H> {
    rd: OwnedReadHalf,
    tx: mpsc::Sender<Out>,
    shared: Shared,
    calls: JoinSet<()>,
    endpoint: Arc<str>,
    caller: Caller,
    handler: Arc<H>,
    limits: Limits,
}

impl<H: HandlerFn> Reader<H> {
    async fn run(mut self) {
        self.read_frames().await;
        // Reading is over; replies to the calls still running are still wanted
        // (the peer may only have shut down its writing side). The writer stops
        // when this sender and every call's are gone.
        let Reader { tx, mut calls, .. } = self;
        drop(tx);
        while calls.join_next().await.is_some() {}
    }

    async fn read_frames(&mut self) {
        let mut frames = FrameReader::new();
        loop {
            let next = tokio::select! {
                next = frames.next(&mut self.rd, &self.limits) => next,
                // The writer is gone (the peer stopped reading): stop reading too.
                () = self.tx.closed() => return,
            };
            match next {
                Ok(frame) => {
                    if !self.handle(&frame).await {
                        return;
                    }
                }
                Err(ReadError::Closed) => return,
                Err(ReadError::Io(e)) => {
                    tracing::debug!(endpoint = %self.endpoint, error = %e, "read failed");
                    return;
                }
                Err(ReadError::Deframe(e @ DeframeError::Truncated { .. })) => {
                    tracing::debug!(endpoint = %self.endpoint, error = %e, "connection closed inside a frame");
                    return;
                }
                Err(ReadError::Deframe(DeframeError::BadHeader { seq, error })) => {
                    // The header is bad, so where the next frame starts is
                    // unknown: answer and close.
                    tracing::warn!(endpoint = %self.endpoint, %error, "bad frame header; closing");
                    let message = error.to_string();
                    let _ = self
                        .tx
                        .send(Out::Fatal {
                            seq,
                            code: error.code(),
                            message,
                        })
                        .await;
                    return;
                }
            }
        }
    }

    /// Handles one whole frame; false when the writer is gone.
    async fn handle(&mut self, frame: &RawFrame) -> bool {
        let out = match frame.decode(&self.limits) {
            Err(e) => error(frame.seq(), e.code(), e.to_string()),
            Ok(Frame {
                seq,
                msg: Message::Tappend { fid: 0, data },
            }) => match self.start_call(seq, data) {
                Ok(()) => return true,
                Err(out) => out,
            },
            Ok(Frame {
                seq,
                msg: Message::Tappend { fid, .. },
            }) => error(
                seq,
                ErrorCode::BadFid,
                format!("the handler link carries calls on fid 0, not {fid}"),
            ),
            Ok(Frame {
                seq,
                msg: Message::Tflush { oldseq },
            }) => Out::Flush { seq, oldseq },
            Ok(Frame { seq, msg }) => error(
                seq,
                ErrorCode::Protocol,
                format!("{:?} is not part of the handler link", msg.kind()),
            ),
        };
        self.tx.send(out).await.is_ok()
    }

    /// Starts a call as its own task, or says why not.
    fn start_call(&mut self, seq: u64, data: Bytes) -> Result<(), Out> {
        let id = {
            let mut inflight = lock(&self.shared);
            if inflight.calls.contains_key(&seq) {
                return Err(error(
                    seq,
                    ErrorCode::Protocol,
                    format!("seq {seq} is already used by a pending call"),
                ));
            }
            if inflight.calls.len() >= MAX_CALLS_IN_FLIGHT {
                return Err(error(
                    seq,
                    ErrorCode::LimitExceeded,
                    format!("more than {MAX_CALLS_IN_FLIGHT} calls in flight on one connection"),
                ));
            }
            inflight.next_id += 1;
            inflight.next_id
        };
        // The handler is user code: call it without holding the lock.
        let reply = (self.handler)(Call {
            endpoint: self.endpoint.to_string(),
            data,
            caller: self.caller.clone(),
        });
        let tx = self.tx.clone();
        // Registered under the lock the writer takes to match the reply, so the
        // reply cannot be looked up before the call is in the table.
        let mut inflight = lock(&self.shared);
        let abort = self.calls.spawn(async move {
            let result = reply.await;
            // Fails only when the connection is gone; then nobody wants the reply.
            let _ = tx.send(Out::Reply { seq, id, result }).await;
        });
        inflight.calls.insert(seq, (id, abort));
        Ok(())
    }
}

fn error(seq: u64, code: ErrorCode, message: String) -> Out {
    Out::Error { seq, code, message }
}

async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Out>, shared: Shared) {
    let limits = INTERNAL_LINK_LIMITS;
    let mut buf = Vec::new();
    while let Some(first) = rx.recv().await {
        buf.clear();
        let mut fatal = encode_out(first, &mut buf, &shared, &limits);
        while !fatal && buf.len() < BATCH {
            match rx.try_recv() {
                Ok(next) => fatal = encode_out(next, &mut buf, &shared, &limits),
                Err(_) => break,
            }
        }
        if let Err(e) = wr.write_all(&buf).await {
            tracing::debug!(error = %e, "write failed; abandoning the connection's calls");
            break;
        }
        if fatal {
            break;
        }
    }
    // Nothing more will be written: stop the calls and, through the closed queue,
    // the reader.
    rx.close();
    for (_, (_, abort)) in lock(&shared).calls.drain() {
        abort.abort();
    }
    let _ = wr.shutdown().await;
}

/// Encodes what is to be written (if anything); true if the connection must close
/// after it.
fn encode_out(out: Out, buf: &mut Vec<u8>, shared: &Shared, limits: &Limits) -> bool {
    match out {
        Out::Reply { seq, id, result } => {
            {
                let mut inflight = lock(shared);
                match inflight.calls.get(&seq) {
                    Some((live, _)) if *live == id => inflight.calls.remove(&seq),
                    // Flushed (and maybe the seq reused since): the reply is unwanted.
                    _ => return false,
                };
            }
            let msg = match result {
                Ok(data) => Message::Rappend { data },
                Err(e) => Message::error(e.code, e.message),
            };
            encode_limited(&Frame::new(seq, msg), buf, limits);
        }
        Out::Flush { seq, oldseq } => {
            if let Some((_, abort)) = lock(shared).calls.remove(&oldseq) {
                abort.abort();
            }
            encode_into(&Frame::new(seq, Message::Rflush), buf);
        }
        Out::Error { seq, code, message } => {
            encode_into(&Frame::new(seq, Message::error(code, message)), buf);
        }
        Out::Fatal { seq, code, message } => {
            encode_into(&Frame::new(seq, Message::error(code, message)), buf);
            return true;
        }
    }
    false
}

/// Encodes a reply, or `limit_exceeded` in its place if it would be larger than
/// the link's `max_message` (the worker would refuse the frame).
fn encode_limited(frame: &Frame, buf: &mut Vec<u8>, limits: &Limits) {
    let start = buf.len();
    encode_into(frame, buf);
    let len = buf.len() - start;
    if len > limits.max_message as usize {
        buf.truncate(start);
        let message = format!(
            "reply of {len} bytes is over the limit of {} bytes per message",
            limits.max_message
        );
        let msg = Message::error(ErrorCode::LimitExceeded, message);
        encode_into(&Frame::new(frame.seq, msg), buf);
    }
}
