//! The one async frame reader: a [`Deframer`] fed from an `AsyncRead`. The
//! client, the handler library and every end inside srpcd (front, worker,
//! internal links) read frames through it. And the one batching writer,
//! [`write_batch`]: every queue of encoded frames is written through it.

use std::io;

use srpc_proto::{DeframeError, Deframer, Limits, RawFrame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroize;

/// A batch ends once it holds this many bytes.
pub const BATCH_BYTES: usize = 64 * 1024;
/// Frames at least this large are written as they are, not copied into the
/// batch (a TLS record holds 16 KiB of plaintext).
const COPY_BELOW: usize = 16 * 1024;

/// Writes `first` and whatever `more` yields at once, up to [`BATCH_BYTES`],
/// in as few writes as it can: small frames are copied into one buffer, so
/// many frames in flight cost one system call (and over TLS one record)
/// rather than one each; a lone frame, or a large one, is written as it is,
/// its two parts ([`srpc_proto::Encoded`]: header and control, then an
/// append's data) in one vectored write where the stream takes one, so a
/// payload is never copied here. Flushes once at the end. The items are left
/// in `written` (emptied first), so what they hold (a budget charge, queue
/// room) is released by the caller after the write, not before.
///
/// The copy buffer is sized once for the batch (never reallocated) and
/// wiped after every write: a frame may carry a password (the client's auth
/// appends), and no copy of it may outlive the write.
pub async fn write_batch<W, T>(
    w: &mut W,
    first: T,
    mut more: impl FnMut() -> Option<T>,
    frame: fn(&T) -> [&[u8]; 2],
    written: &mut Vec<T>,
) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let len = |item: &T| frame(item).iter().map(|p| p.len()).sum::<usize>();
    written.clear();
    let mut total = len(&first);
    written.push(first);
    while total < BATCH_BYTES {
        let Some(item) = more() else { break };
        total += len(&item);
        written.push(item);
    }
    if let [only] = written.as_slice() {
        let [head, data] = frame(only);
        write_two(w, head, data).await?;
        return w.flush().await;
    }
    let small: usize = written.iter().map(len).filter(|&n| n < COPY_BELOW).sum();
    let mut buf: Vec<u8> = Vec::with_capacity(small);
    let result = async {
        for item in written.iter() {
            let [head, data] = frame(item);
            if head.len() + data.len() < COPY_BELOW {
                buf.extend_from_slice(head);
                buf.extend_from_slice(data);
                continue;
            }
            if !buf.is_empty() {
                w.write_all(&buf).await?;
                buf.as_mut_slice().zeroize();
                buf.clear();
            }
            write_two(w, head, data).await?;
        }
        if !buf.is_empty() {
            w.write_all(&buf).await?;
        }
        w.flush().await
    }
    .await;
    buf.zeroize();
    result
}

/// Writes `a` then `b`, in one vectored write where the stream takes it.
async fn write_two<W: AsyncWrite + Unpin>(w: &mut W, mut a: &[u8], mut b: &[u8]) -> io::Result<()> {
    while !a.is_empty() {
        let n = w
            .write_vectored(&[io::IoSlice::new(a), io::IoSlice::new(b)])
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        if n < a.len() {
            a = &a[n..];
        } else {
            b = &b[n - a.len()..];
            a = &[];
        }
    }
    w.write_all(b).await
}

/// Why no frame could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer closed the stream between frames.
    #[error("the peer closed the stream")]
    Closed,
    /// The stream failed.
    #[error("reading failed: {0}")]
    Io(#[from] io::Error),
    /// The stream cannot be cut into frames any further: a bad header, or the
    /// stream ended inside a frame.
    #[error(transparent)]
    Deframe(#[from] DeframeError),
}

/// Buffers a stream and cuts it into frames.
#[derive(Debug, Default)]
pub struct FrameReader {
    deframer: Deframer,
}

impl FrameReader {
    /// A reader with nothing buffered.
    pub fn new() -> FrameReader {
        FrameReader::default()
    }

    /// Bytes buffered and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.deframer.buffered()
    }

    /// The next frame, its size checked against `limits.max_message` before
    /// its body is buffered. Cancel-safe: bytes read so far stay buffered.
    pub async fn next<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        limits: &Limits,
    ) -> Result<RawFrame, ReadError> {
        loop {
            if let Some(frame) = self.deframer.next_frame(limits)? {
                return Ok(frame);
            }
            match io.read_buf(self.deframer.buffer(limits)).await {
                Ok(0) => return Err(self.at_end(limits)),
                Ok(_) => {}
                // A TLS peer that closes TCP without close_notify: an end all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(match self.at_end(limits) {
                        ReadError::Closed => ReadError::Closed,
                        _ => ReadError::Io(e),
                    })
                }
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }

    fn at_end(&self, limits: &Limits) -> ReadError {
        match self.deframer.end(limits) {
            Ok(()) => ReadError::Closed,
            Err(e) => ReadError::Deframe(e),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use srpc_proto::{encode, Frame, Message};
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn frames_across_writes_then_a_clean_end() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let frames: Vec<Frame> = (1..=3)
            .map(|seq| {
                Frame::new(
                    seq,
                    Message::Tappend {
                        fid: 1,
                        data: vec![9u8; 300].into(),
                    },
                )
            })
            .collect();
        let wire: Vec<u8> = frames.iter().flat_map(encode).collect();
        let writer = tokio::spawn(async move {
            a.write_all(&wire).await.unwrap();
        });
        let mut r = FrameReader::new();
        let limits = Limits::default();
        for f in &frames {
            let raw = r.next(&mut b, &limits).await.unwrap();
            assert_eq!(&raw.decode(&limits).unwrap(), f);
        }
        writer.await.unwrap();
        assert!(matches!(
            r.next(&mut b, &limits).await,
            Err(ReadError::Closed)
        ));
    }

    /// Small and large frames, queued together, arrive whole and in order;
    /// a batch takes what is queued up to its size and leaves the rest.
    #[tokio::test]
    async fn batches_keep_order_and_stop_at_their_size() {
        #[allow(clippy::ptr_arg)] // the queue's items are `Vec<u8>`
        fn bytes(frame: &Vec<u8>) -> [&[u8]; 2] {
            [frame, &[]]
        }
        let sizes = [10, 40_000, 5, 30_000, 7, 1];
        let frames: Vec<Frame> = sizes
            .iter()
            .zip(1u64..)
            .map(|(&n, seq)| {
                Frame::new(
                    seq,
                    Message::Tappend {
                        fid: 1,
                        data: vec![u8::try_from(seq).unwrap(); n].into(),
                    },
                )
            })
            .collect();
        let mut queue: std::collections::VecDeque<Vec<u8>> = frames.iter().map(encode).collect();
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let mut written = Vec::new();
        let first = queue.pop_front().unwrap();
        write_batch(&mut a, first, || queue.pop_front(), bytes, &mut written)
            .await
            .unwrap();
        // With their headers, the first four frames are past 64 KiB: the
        // batch ends there.
        assert_eq!(written.len(), 4);
        assert_eq!(queue.len(), 2);
        while let Some(first) = queue.pop_front() {
            write_batch(&mut a, first, || queue.pop_front(), bytes, &mut written)
                .await
                .unwrap();
        }
        drop(a);
        let mut r = FrameReader::new();
        let limits = Limits::default();
        for f in &frames {
            let raw = r.next(&mut b, &limits).await.unwrap();
            assert_eq!(&raw.decode(&limits).unwrap(), f);
        }
        assert!(matches!(
            r.next(&mut b, &limits).await,
            Err(ReadError::Closed)
        ));
    }

    /// Frames whose data stays out of the head (`encode_split`) arrive whole,
    /// alone or batched with small ones, over a stream that takes one byte
    /// at a time (every vectored write is partial).
    #[tokio::test]
    async fn split_frames_arrive_whole_over_short_writes() {
        fn parts(frame: &srpc_proto::Encoded) -> [&[u8]; 2] {
            frame.parts()
        }
        let frames: Vec<Frame> = [40_000, 3, 20_000, 9]
            .iter()
            .zip(1u64..)
            .map(|(&n, seq)| {
                Frame::new(
                    seq,
                    Message::Rappend {
                        data: vec![b'x'; n].into(),
                    },
                )
            })
            .collect();
        let mut queue: std::collections::VecDeque<_> =
            frames.iter().map(srpc_proto::encode_split).collect();
        let (mut a, mut b) = tokio::io::duplex(1);
        let reader = tokio::spawn(async move {
            let mut r = FrameReader::new();
            let mut got = Vec::new();
            while let Ok(raw) = r.next(&mut b, &Limits::default()).await {
                got.push(raw.decode(&Limits::default()).unwrap());
            }
            got
        });
        let mut written = Vec::new();
        while let Some(first) = queue.pop_front() {
            write_batch(&mut a, first, || queue.pop_front(), parts, &mut written)
                .await
                .unwrap();
        }
        drop(a);
        assert_eq!(reader.await.unwrap(), frames);
    }

    #[tokio::test]
    async fn an_end_inside_a_frame_is_not_a_clean_close() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let wire = encode(&Frame::new(1, Message::Tclunk { fid: 1 }));
        a.write_all(&wire[..wire.len() - 1]).await.unwrap();
        drop(a);
        let mut r = FrameReader::new();
        assert!(matches!(
            r.next(&mut b, &Limits::default()).await,
            Err(ReadError::Deframe(DeframeError::Truncated { .. }))
        ));
    }
}
