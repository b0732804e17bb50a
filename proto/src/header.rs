//! The fixed 20-byte frame header and the allocation-free completeness check.

use crate::error::DecodeError;
use crate::limits::Limits;

/// Bytes in a frame header: u32 type, u64 sequence, u64 body length, big-endian.
pub const HEADER_LEN: usize = 20;

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Message type number (see [`crate::Kind`]).
    pub kind: u32,
    /// The request's sequence number (tag); a reply carries its request's.
    pub seq: u64,
    /// Length of the body that follows the header.
    pub body_len: u64,
}

impl Header {
    /// Reads a header from the first [`HEADER_LEN`] bytes of `buf`, or `None` if
    /// fewer are available.
    pub fn parse(buf: &[u8]) -> Option<Header> {
        let head: &[u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
        let [k0, k1, k2, k3, s0, s1, s2, s3, s4, s5, s6, s7, l0, l1, l2, l3, l4, l5, l6, l7] =
            *head;
        Some(Header {
            kind: u32::from_be_bytes([k0, k1, k2, k3]),
            seq: u64::from_be_bytes([s0, s1, s2, s3, s4, s5, s6, s7]),
            body_len: u64::from_be_bytes([l0, l1, l2, l3, l4, l5, l6, l7]),
        })
    }

    /// The header as it goes on the wire.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..4].copy_from_slice(&self.kind.to_be_bytes());
        out[4..12].copy_from_slice(&self.seq.to_be_bytes());
        out[12..].copy_from_slice(&self.body_len.to_be_bytes());
        out
    }

    /// Total frame length (header + body) if it is within `limits.max_message`.
    pub fn frame_len(self, limits: &Limits) -> Result<usize, DecodeError> {
        let max = u64::from(limits.max_message);
        let total = self.body_len.checked_add(HEADER_LEN as u64);
        match total {
            Some(total) if total <= max => {
                usize::try_from(total).map_err(|_| DecodeError::TooLarge {
                    declared: self.body_len,
                    max,
                })
            }
            _ => Err(DecodeError::TooLarge {
                declared: self.body_len,
                max,
            }),
        }
    }
}

/// What [`check`] found at the front of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// More bytes are needed; nothing is wrong yet.
    Incomplete,
    /// The header is unacceptable (too large, unknown type); the connection should
    /// answer with an error and close, since the stream cannot be resynchronised.
    Invalid(DecodeError),
    /// A whole frame of this many bytes (header included) is at the front.
    Complete(usize),
}

/// Says whether `buf` starts with a whole frame, without allocating and without
/// trusting the declared length: a header claiming 2^63 bytes is `Invalid` at once.
pub fn check(buf: &[u8], limits: &Limits) -> Check {
    let Some(header) = Header::parse(buf) else {
        return Check::Incomplete;
    };
    if crate::Kind::from_u32(header.kind).is_none() {
        return Check::Invalid(DecodeError::UnknownType(header.kind));
    }
    match header.frame_len(limits) {
        Err(e) => Check::Invalid(e),
        Ok(len) if buf.len() >= len => Check::Complete(len),
        Ok(_) => Check::Incomplete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_declared_length_is_invalid_before_any_body_arrives() {
        let h = Header {
            kind: crate::Kind::Tversion as u32,
            seq: 1,
            body_len: 1 << 63,
        };
        let got = check(&h.to_bytes(), &Limits::default());
        assert!(matches!(got, Check::Invalid(DecodeError::TooLarge { .. })));
        let h = Header {
            body_len: u64::MAX,
            ..h
        };
        assert!(matches!(
            check(&h.to_bytes(), &Limits::default()),
            Check::Invalid(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn short_buffers_are_incomplete() {
        let h = Header {
            kind: crate::Kind::Tclunk as u32,
            seq: 9,
            body_len: 10,
        };
        let bytes = h.to_bytes();
        for n in 0..HEADER_LEN {
            assert_eq!(check(&bytes[..n], &Limits::default()), Check::Incomplete);
        }
        let mut full = bytes.to_vec();
        full.extend_from_slice(&[b' '; 9]);
        assert_eq!(check(&full, &Limits::default()), Check::Incomplete);
        full.push(b' ');
        assert_eq!(check(&full, &Limits::default()), Check::Complete(30));
    }

    #[test]
    fn unknown_type_is_invalid() {
        let h = Header {
            kind: 0xdead,
            seq: 0,
            body_len: 0,
        };
        assert_eq!(
            check(&h.to_bytes(), &Limits::default()),
            Check::Invalid(DecodeError::UnknownType(0xdead))
        );
    }
}
