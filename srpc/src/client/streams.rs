//! The two tasks that own the TLS stream: one reads and delivers replies, one
//! writes queued frames in order.

use std::sync::Arc;
use std::time::Duration;

use srpc_proto::Limits;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::frames::{FrameReader, ReadError};
use super::mux::{Closed, Outgoing, Shared};

/// How long the writer tries to send TLS close_notify to a peer that may not read.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Starts the reader and writer tasks on an established stream (after the version
/// exchange), with the negotiated limits.
pub(crate) fn start<S>(stream: S, frames: FrameReader, limits: Limits) -> Arc<Shared>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (out, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared::new(limits, out));
    let (r, w) = tokio::io::split(stream);
    tokio::spawn(read_frames(r, frames, Arc::clone(&shared)));
    tokio::spawn(write_frames(w, rx, Arc::clone(&shared)));
    shared
}

async fn read_frames<R: AsyncRead + Unpin>(mut r: R, mut frames: FrameReader, shared: Arc<Shared>) {
    let mut dead = shared.dead.subscribe();
    let limits = shared.limits;
    let why = loop {
        let next = tokio::select! {
            biased;
            _ = dead.wait_for(|d| *d) => return,
            next = frames.next(&mut r, &limits) => next,
        };
        let delivered = match next {
            Ok(frame) => shared.on_frame(frame),
            Err(ReadError::Closed) => Err(Closed::Peer),
            Err(ReadError::Io(e)) => {
                Err(Closed::Io(format!("reading from the server failed: {e}")))
            }
            Err(ReadError::Malformed(detail)) => Err(Closed::Protocol(detail)),
        };
        if let Err(why) = delivered {
            break why;
        }
    };
    shared.close(why);
}

async fn write_frames<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    shared: Arc<Shared>,
) {
    let mut dead = shared.dead.subscribe();
    let mut sent = Vec::new();
    loop {
        let first = tokio::select! {
            biased;
            _ = dead.wait_for(|d| *d) => break,
            first = rx.recv() => first,
        };
        let Some(first) = first else { break };
        let written = tokio::select! {
            biased;
            _ = dead.wait_for(|d| *d) => break,
            written = write_batch(&mut w, first, &mut rx, &mut sent) => written,
        };
        if let Err(e) = written {
            shared.close(Closed::Io(format!("writing to the server failed: {e}")));
            break;
        }
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, w.shutdown()).await;
}

/// Writes `first` and whatever else is queued ([`crate::frames::write_batch`]);
/// the frames are wiped as they drop.
async fn write_batch<W: AsyncWrite + Unpin>(
    w: &mut W,
    first: Outgoing,
    rx: &mut mpsc::UnboundedReceiver<Outgoing>,
    written: &mut Vec<Outgoing>,
) -> std::io::Result<()> {
    fn bytes(frame: &Outgoing) -> [&[u8]; 2] {
        [frame, &[]]
    }
    let result = crate::frames::write_batch(w, first, || rx.try_recv().ok(), bytes, written).await;
    written.clear();
    result
}
