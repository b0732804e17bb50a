//! Cutting a byte stream into frames, with no I/O: bytes go in (read straight
//! into [`Deframer::buffer`], or copied with [`Deframer::push`]), whole frames
//! come out of [`Deframer::next_frame`]. Every reader of the protocol (client,
//! front, worker, handler, internal links) goes through this one type, so they
//! share one rule for sizes, end of stream and errors.
//!
//! The declared size is checked against `max_message` as soon as the 20-byte
//! header is buffered ([`check`]), before any body byte is kept, so a peer
//! cannot make a reader buffer more than one frame of the agreed size.

use bytes::{Bytes, BytesMut};

use crate::codec::decode_bytes;
use crate::error::DecodeError;
use crate::header::{check, Check, Header, HEADER_LEN};
use crate::limits::Limits;
use crate::message::Frame;

/// Buffer room asked for at least per read: one TLS record.
pub const READ_CHUNK: usize = 16 * 1024;

/// One whole frame, header included, not yet decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    header: Header,
    bytes: Bytes,
}

impl RawFrame {
    /// The frame's header (already checked: known type, size within limits).
    pub fn header(&self) -> Header {
        self.header
    }

    /// The sequence number, for an error reply when the body does not decode.
    pub fn seq(&self) -> u64 {
        self.header.seq
    }

    /// The whole frame as received.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Decodes the frame (the body may still be malformed: a per-frame error,
    /// after which the stream is still in step).
    pub fn decode(&self, limits: &Limits) -> Result<Frame, DecodeError> {
        decode_bytes(&self.bytes, limits)
    }
}

/// Why the stream cannot be cut into frames any further. After either error
/// the stream is out of step and the connection should close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeframeError {
    /// The header at the front is unacceptable (unknown type, too large).
    #[error("bad frame header (seq {seq}): {error}")]
    BadHeader {
        /// The header's sequence number, for the error reply.
        seq: u64,
        /// What is wrong with it.
        error: DecodeError,
    },
    /// The stream ended inside a frame.
    #[error("the stream ended inside a frame ({received} bytes of {})", expected.map_or_else(|| format!("a {HEADER_LEN}-byte header"), |e| e.to_string()))]
    Truncated {
        /// Bytes of the unfinished frame received.
        received: usize,
        /// The frame's declared length, if its header was complete.
        expected: Option<usize>,
    },
}

/// Buffers bytes of a stream and hands out whole frames.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: BytesMut,
}

impl Deframer {
    /// An empty deframer.
    pub fn new() -> Deframer {
        Deframer::default()
    }

    /// Bytes buffered and not yet handed out as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Appends bytes received from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The buffer to read the stream into, with room for at least the rest of
    /// the frame being received (the declared size was checked against
    /// `limits`, so the reservation is bounded) or [`READ_CHUNK`]. Append only.
    pub fn buffer(&mut self, limits: &Limits) -> &mut BytesMut {
        let rest = Header::parse(&self.buf)
            .and_then(|h| h.frame_len(limits).ok())
            .map_or(0, |len| len.saturating_sub(self.buf.len()));
        self.buf.reserve(rest.max(READ_CHUNK));
        &mut self.buf
    }

    /// The next whole frame, `Ok(None)` if more bytes are needed, or why the
    /// stream is unusable. A bad header is reported as soon as its 20 bytes are
    /// in, whatever follows.
    pub fn next_frame(&mut self, limits: &Limits) -> Result<Option<RawFrame>, DeframeError> {
        match check(&self.buf, limits) {
            Check::Incomplete => Ok(None),
            Check::Invalid(error) => Err(DeframeError::BadHeader {
                seq: Header::parse(&self.buf).map_or(0, |h| h.seq),
                error,
            }),
            Check::Complete(len) => {
                let bytes = self.buf.split_to(len).freeze();
                match Header::parse(&bytes) {
                    Some(header) => Ok(Some(RawFrame { header, bytes })),
                    // `check` found a whole header; cannot happen, but is no panic.
                    None => Err(DeframeError::Truncated {
                        received: bytes.len(),
                        expected: None,
                    }),
                }
            }
        }
    }

    /// Says whether the stream may end here: fine between frames, an error
    /// inside one.
    pub fn end(&self, limits: &Limits) -> Result<(), DeframeError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        Err(DeframeError::Truncated {
            received: self.buf.len(),
            expected: Header::parse(&self.buf).and_then(|h| h.frame_len(limits).ok()),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::codec::encode;
    use crate::message::{Kind, Message};

    fn frames() -> Vec<Frame> {
        vec![
            Frame::new(1, Message::Tclunk { fid: 3 }),
            Frame::new(
                2,
                Message::Tappend {
                    fid: 4,
                    data: Bytes::from(vec![7u8; 5000]),
                },
            ),
            Frame::new(3, Message::Rflush),
        ]
    }

    fn drain(d: &mut Deframer, limits: &Limits) -> Vec<Frame> {
        let mut out = Vec::new();
        while let Some(raw) = d.next_frame(limits).unwrap() {
            out.push(raw.decode(limits).unwrap());
        }
        out
    }

    #[test]
    fn many_frames_in_one_read_come_out_in_order() {
        let wire: Vec<u8> = frames().iter().flat_map(encode).collect();
        let mut d = Deframer::new();
        d.push(&wire);
        assert_eq!(drain(&mut d, &Limits::default()), frames());
        assert_eq!(d.buffered(), 0);
        assert_eq!(d.end(&Limits::default()), Ok(()));
    }

    #[test]
    fn split_reads_of_every_size_give_the_same_frames() {
        let wire: Vec<u8> = frames().iter().flat_map(encode).collect();
        for chunk in [1, 2, 7, 19, 20, 21, 100, 4999, 5100] {
            let mut d = Deframer::new();
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                // Through the read buffer, as the async reader does.
                d.buffer(&Limits::default()).extend_from_slice(piece);
                got.extend(drain(&mut d, &Limits::default()));
            }
            assert_eq!(got, frames(), "chunk {chunk}");
        }
    }

    #[test]
    fn oversize_header_is_refused_before_the_body() {
        let limits = Limits::default();
        let h = Header {
            kind: Kind::Tappend as u32,
            seq: 42,
            body_len: u64::from(limits.max_message),
        };
        let mut d = Deframer::new();
        d.push(&h.to_bytes()[..HEADER_LEN - 1]);
        assert_eq!(d.next_frame(&limits), Ok(None));
        d.push(&h.to_bytes()[HEADER_LEN - 1..]);
        let err = d.next_frame(&limits).unwrap_err();
        assert_eq!(
            err,
            DeframeError::BadHeader {
                seq: 42,
                error: DecodeError::TooLarge {
                    declared: u64::from(limits.max_message),
                    max: u64::from(limits.max_message),
                },
            }
        );
        // No room is reserved for a body that would not be accepted.
        assert!(d.buffer(&limits).capacity() < limits.max_message as usize);
    }

    #[test]
    fn a_frame_of_exactly_max_message_is_accepted() {
        let limits = Limits {
            max_message: 8192,
            ..Limits::default()
        };
        let mut wire = Header {
            kind: Kind::Rflush as u32,
            seq: 1,
            body_len: 8192 - HEADER_LEN as u64,
        }
        .to_bytes()
        .to_vec();
        wire.resize(8192, b' ');
        let mut d = Deframer::new();
        d.push(&wire);
        // Room for the whole frame once its header is in.
        assert!(d.buffer(&limits).capacity() >= 8192);
        let raw = d.next_frame(&limits).unwrap().unwrap();
        assert_eq!(raw.bytes().len(), 8192);
        assert_eq!(raw.seq(), 1);
    }

    #[test]
    fn unknown_type_is_a_bad_header() {
        let mut d = Deframer::new();
        d.push(
            &Header {
                kind: 0xbeef,
                seq: 5,
                body_len: 0,
            }
            .to_bytes(),
        );
        assert!(matches!(
            d.next_frame(&Limits::default()),
            Err(DeframeError::BadHeader {
                seq: 5,
                error: DecodeError::UnknownType(0xbeef)
            })
        ));
    }

    #[test]
    fn eof_mid_frame_is_truncated_and_between_frames_is_fine() {
        let limits = Limits::default();
        let wire = encode(&frames()[1]);
        let mut d = Deframer::new();
        assert_eq!(d.end(&limits), Ok(()));
        d.push(&wire[..10]);
        assert_eq!(
            d.end(&limits),
            Err(DeframeError::Truncated {
                received: 10,
                expected: None
            })
        );
        d.push(&wire[10..100]);
        assert_eq!(d.next_frame(&limits), Ok(None));
        assert_eq!(
            d.end(&limits),
            Err(DeframeError::Truncated {
                received: 100,
                expected: Some(wire.len())
            })
        );
        let text = d.end(&limits).unwrap_err().to_string();
        assert!(text.contains("100 bytes of"), "{text}");
    }

    #[test]
    fn a_malformed_body_is_a_per_frame_error_and_the_stream_stays_in_step() {
        let limits = Limits::default();
        let body = b"{not json";
        let mut wire = Header {
            kind: Kind::Tclunk as u32,
            seq: 8,
            body_len: body.len() as u64,
        }
        .to_bytes()
        .to_vec();
        wire.extend_from_slice(body);
        wire.extend(encode(&frames()[0]));
        let mut d = Deframer::new();
        d.push(&wire);
        let bad = d.next_frame(&limits).unwrap().unwrap();
        assert_eq!(bad.seq(), 8);
        assert!(bad.decode(&limits).is_err());
        let good = d.next_frame(&limits).unwrap().unwrap();
        assert_eq!(good.decode(&limits).unwrap(), frames()[0]);
    }
}
