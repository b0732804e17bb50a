//! The client's view of the frame reader: whole decoded frames, and errors
//! worded for a client's user (the server is the peer).

use std::io;

use srpc_proto::{DeframeError, Frame, Kind, Limits};
use tokio::io::AsyncRead;

use crate::frames::ReadError as RawError;

/// Why no frame could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed the stream between frames.
    Closed,
    /// The stream failed.
    Io(io::Error),
    /// The peer sent bytes that are not a valid frame.
    Malformed(String),
}

/// Buffers the stream and cuts it into frames.
#[derive(Debug, Default)]
pub(crate) struct FrameReader {
    inner: crate::frames::FrameReader,
}

impl FrameReader {
    /// The next frame. Cancel-safe: bytes read so far stay buffered.
    pub(crate) async fn next<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        limits: &Limits,
    ) -> Result<Frame, ReadError> {
        let raw = self.inner.next(io, limits).await.map_err(|e| match e {
            RawError::Closed => ReadError::Closed,
            RawError::Io(e) => ReadError::Io(e),
            RawError::Deframe(DeframeError::BadHeader { error, .. }) => ReadError::Malformed(
                format!("the server sent an unacceptable frame header: {error}"),
            ),
            RawError::Deframe(DeframeError::Truncated { received, .. }) => ReadError::Malformed(
                format!("the connection ended inside a frame ({received} bytes of it received)"),
            ),
        })?;
        raw.decode(limits).map_err(|e| {
            let what = Kind::from_u32(raw.header().kind)
                .map_or_else(String::new, |k| format!(" {k:?} (seq {})", raw.seq()));
            ReadError::Malformed(format!("the server sent a malformed{what}: {e}"))
        })
    }
}
