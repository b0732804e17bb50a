//! The one async frame reader: a [`Deframer`] fed from an `AsyncRead`. The
//! client, the handler library and every end inside srpcd (front, worker,
//! internal links) read frames through it.

use std::io;

use srpc_proto::{DeframeError, Deframer, Limits, RawFrame};
use tokio::io::{AsyncRead, AsyncReadExt};

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
