//! Reading whole frames off the stream, checking the declared size before any
//! body is buffered.

use std::io;

use bytes::BytesMut;
use srpc_proto::{check, decode_bytes, Check, Frame, Header, Kind, Limits};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes asked of the stream at least per read: one TLS record.
const READ_CHUNK: usize = 16 * 1024;

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
    buf: BytesMut,
}

impl FrameReader {
    /// The next frame. Cancel-safe: bytes read so far stay buffered.
    pub(crate) async fn next<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        limits: &Limits,
    ) -> Result<Frame, ReadError> {
        loop {
            match check(&self.buf, limits) {
                Check::Complete(len) => {
                    let bytes = self.buf.split_to(len).freeze();
                    return decode_bytes(&bytes, limits).map_err(|e| {
                        let what = Header::parse(&bytes)
                            .and_then(|h| Some((Kind::from_u32(h.kind)?, h.seq)))
                            .map_or_else(String::new, |(k, seq)| format!(" {k:?} (seq {seq})"));
                        ReadError::Malformed(format!("the server sent a malformed{what}: {e}"))
                    });
                }
                Check::Invalid(e) => {
                    return Err(ReadError::Malformed(format!(
                        "the server sent an unacceptable frame header: {e}"
                    )))
                }
                Check::Incomplete => {}
            }
            // `check` has bounded the declared size, so reserving for it is safe.
            let want = Header::parse(&self.buf)
                .and_then(|h| h.frame_len(limits).ok())
                .map_or(0, |len| len.saturating_sub(self.buf.len()));
            self.buf.reserve(want.max(READ_CHUNK));
            match io.read_buf(&mut self.buf).await {
                Ok(0) if self.buf.is_empty() => return Err(ReadError::Closed),
                Ok(0) => {
                    return Err(ReadError::Malformed(format!(
                        "the connection ended inside a frame ({} bytes of it received)",
                        self.buf.len()
                    )))
                }
                Ok(_) => {}
                // A peer that closes TCP without TLS close_notify: closed all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && self.buf.is_empty() => {
                    return Err(ReadError::Closed)
                }
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }
}
