//! The worker's end of its link to the front: srpc frames over a Unix stream,
//! with fids and sequence numbers already rewritten by the front. Attach,
//! walk, stat and clunk are single system calls answered in order; calls to
//! endpoints run concurrently and may be flushed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use srpc::frames::{write_batch, FrameReader, ReadError};
use srpc_proto::{
    encode_listing, encode_split, Encoded, ErrorCode, Frame, Limits, Message, QidType,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::calls::Calls;
use super::tree::{CallNode, Refusal, Tree};

type Inflight = Arc<Mutex<HashMap<u64, AbortHandle>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Serves the link until the front closes it.
pub async fn serve<S>(
    link: S,
    mut tree: Tree,
    limits: Limits,
    calls: Arc<Calls>,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(link);
    let (out, mut outbox) = mpsc::unbounded_channel::<Encoded>();
    let writer = tokio::spawn(async move {
        fn bytes(frame: &Encoded) -> [&[u8]; 2] {
            frame.parts()
        }
        // Replies finished together leave in one write.
        let mut written = Vec::new();
        while let Some(first) = outbox.recv().await {
            let more = || outbox.try_recv().ok();
            write_batch(&mut wr, first, more, bytes, &mut written).await?;
        }
        std::io::Result::Ok(())
    });
    let inflight: Inflight = Arc::default();
    let mut frames = FrameReader::new();
    let result = loop {
        let raw = match frames.next(&mut rd, &limits).await {
            Ok(raw) => raw,
            Err(ReadError::Closed) => break Ok(()),
            Err(ReadError::Io(e)) => break Err(e),
            // The front never sends this; the stream cannot be trusted further.
            Err(ReadError::Deframe(e)) => {
                break Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
            }
        };
        match raw.decode(&limits) {
            Ok(Frame { seq, msg }) => {
                handle(&mut tree, &calls, &inflight, &out, &limits, seq, msg);
            }
            Err(e) => {
                let _ = out.send(encode_split(&Frame::new(
                    raw.seq(),
                    Message::error(e.code(), e.to_string()),
                )));
            }
        }
    };
    for (_, task) in lock(&inflight).drain() {
        task.abort();
    }
    drop(out);
    let _ = writer.await;
    result
}

fn handle(
    tree: &mut Tree,
    calls: &Arc<Calls>,
    inflight: &Inflight,
    out: &mpsc::UnboundedSender<Encoded>,
    limits: &Limits,
    seq: u64,
    msg: Message,
) {
    let reply = match msg {
        Message::Tappend { fid, data } => match tree.node_fd(fid) {
            Err(refusal) => refusal.into_message(),
            Ok(node) if node.kind == QidType::Dir && data.is_empty() => list(tree, fid, limits),
            Ok(node) if node.kind == QidType::Dir => Message::error(
                ErrorCode::NotEndpoint,
                format!("fid {fid} is a directory: an append to it must be empty (a listing)"),
            ),
            Ok(node) => {
                spawn_call(calls, inflight, out, seq, node, data);
                return;
            }
        },
        Message::Tflush { oldseq } => {
            if let Some(task) = lock(inflight).remove(&oldseq) {
                task.abort();
            }
            Message::Rflush
        }
        other => sequential(tree, other),
    };
    let _ = out.send(encode_split(&Frame::new(seq, reply)));
}

fn spawn_call(
    calls: &Arc<Calls>,
    inflight: &Inflight,
    out: &mpsc::UnboundedSender<Encoded>,
    seq: u64,
    node: CallNode,
    data: Bytes,
) {
    let (calls, task_inflight, out) = (Arc::clone(calls), Arc::clone(inflight), out.clone());
    // Registered under the lock the task takes to finish, so it cannot finish
    // unregistered; a flush removes it first and the reply is never sent.
    let mut map = lock(inflight);
    let task = tokio::spawn(async move {
        let reply = calls.call(&node.fd, node.key, data).await;
        if lock(&task_inflight).remove(&seq).is_some() {
            let _ = out.send(encode_split(&Frame::new(seq, reply)));
        }
    });
    map.insert(seq, task.abort_handle());
}

fn list(tree: &Tree, fid: u32, limits: &Limits) -> Message {
    match tree.list(fid) {
        Ok(entries) => {
            let data = encode_listing(&entries);
            // Room for the header and the append's control part.
            if data.len() + 64 > limits.max_message as usize {
                return Message::error(
                    ErrorCode::LimitExceeded,
                    format!(
                        "the listing of {} entries is larger than a message",
                        entries.len()
                    ),
                );
            }
            Message::Rappend {
                data: Bytes::from(data),
            }
        }
        Err(refusal) => refusal.into_message(),
    }
}

fn sequential(tree: &mut Tree, msg: Message) -> Message {
    let result = match msg {
        Message::Tattach {
            fid, uname, aname, ..
        } => tree
            .attach(fid, &uname, &aname)
            .map(|qid| Message::Rattach { qid }),
        Message::Twalk { fid, newfid, names } => tree
            .walk(fid, newfid, &names)
            .map(|qids| Message::Rwalk { qids }),
        Message::Tstat { fid } => tree.stat(fid).map(|stat| Message::Rstat { stat }),
        Message::Tclunk { fid } => tree.clunk(fid).map(|()| Message::Rclunk),
        other => {
            return Message::error(
                ErrorCode::Protocol,
                format!("{:?} is not a worker request", other.kind()),
            )
        }
    };
    result.unwrap_or_else(Refusal::into_message)
}
