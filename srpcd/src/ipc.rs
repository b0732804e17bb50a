//! The monitor ↔ front channel: one small enum each way, over a Unix seqpacket
//! socketpair so each message arrives whole and a worker link fd rides with the
//! message it belongs to. The front inherits its end at spawn (fd 3, named
//! [`FRONT_CHANNEL_NAME`]): there is no socket path anyone could swap, and the
//! peer is the front by construction.
//!
//! A message is `u32 header length | header JSON | payload`. The header is the
//! typed request or reply; the payload carries the PAM conversation (answers in,
//! steps out) as the protocol's own JSON, so secrets never pass through an
//! intermediate `String` of ours and every buffer holding them is wiped.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_seqpacket::ancillary::{AncillaryMessageWriter, OwnedAncillaryMessage};
use tokio_seqpacket::UnixSeqpacket;
use zeroize::Zeroizing;

/// Largest message either side sends. PAM prompts and answers are small; a
/// bigger message is a fault, not something to buffer.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Requests from the front. Each names an authentication by an id the front
/// chose; the monitor keeps what that authentication proved, so the front can
/// never obtain a worker for a user who did not authenticate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ToMonitor {
    /// Start PAM for `user`, connecting from `rhost` (PAM_RHOST), for a
    /// session attached at `aname`.
    AuthStart {
        /// Front-chosen id, unique among the front's live authentications.
        auth: u64,
        /// User name as the client sent it.
        user: String,
        /// The attach path (validated by the front's decoder).
        aname: String,
        /// Client address.
        rhost: String,
    },
    /// Answers to the last prompts; payload: `AuthAnswers` JSON.
    AuthAnswer {
        /// The authentication.
        auth: u64,
    },
    /// Abandon an authentication (its afid was clunked, its connection closed).
    AuthAbort {
        /// The authentication.
        auth: u64,
    },
    /// A session attaches (or re-attaches after its worker died): the link to
    /// the authenticated user's worker, starting it if needed.
    Attach {
        /// A successful authentication.
        auth: u64,
    },
    /// The front revoked the session of `auth` (it asked by
    /// `ToFront::Revoke`): no request of it is served from now on.
    Revoked {
        /// The authentication.
        auth: u64,
    },
    /// A session ended; when a worker has none left it is reaped after the idle
    /// timeout.
    SessionEnd {
        /// The authentication the session attached with.
        auth: u64,
    },
}

/// What the front needs to know of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontSettings {
    /// TLS connections open at once.
    pub connections: u32,
    /// TLS connections open at once from one source address.
    pub connections_per_source: u32,
    /// Sessions at once per user.
    pub sessions_per_user: u32,
    /// Largest protocol message offered in `Rversion`.
    pub max_message: u32,
    /// Fids per connection offered in `Rversion`.
    pub max_fids: u32,
    /// Requests in flight per connection offered in `Rversion`.
    pub max_pending: u32,
    /// Request and reply bytes one connection may hold before it stops
    /// being read.
    pub connection_buffer_bytes: u32,
    /// The same, over all connections of the front.
    pub total_buffer_bytes: u64,
    /// Accept TLS 1.2 as well as 1.3.
    pub allow_tls12: bool,
    /// PAM conversations at once on one connection.
    pub auth_per_connection: u32,
    /// A connection without an attached session for this long is closed.
    pub unauthenticated_timeout_secs: u32,
}

/// `LISTEN_FDNAMES` of the front's end of the channel (its fd 3).
pub const FRONT_CHANNEL_NAME: &str = "srpc-monitor";

/// Messages from the monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ToFront {
    /// The TLS listening socket, first thing on the channel (its fd rides
    /// with this message).
    Listener,
    /// Settings and TLS credentials, at start and after each reload. Payload:
    /// the certificate chain PEM (`cert_len` bytes), then the private key PEM.
    /// The key file stays readable by root only; the front holds the key in
    /// memory because it terminates TLS.
    Configure {
        /// The settings.
        settings: FrontSettings,
        /// Length of the certificate part of the payload.
        cert_len: u32,
    },
    /// The next conversation step; payload: `AuthStep` JSON, relayed to the client.
    AuthStep {
        /// The authentication.
        auth: u64,
    },
    /// The authentication or attach failed; the front ends it.
    Failed {
        /// The authentication.
        auth: u64,
        /// Protocol error code for the client.
        code: u32,
        /// Message for the client.
        message: String,
    },
    /// Pushed by the monitor: an administrator ended this session (or its
    /// user's worker). The front drops its fids and never attaches it again.
    Revoke {
        /// The authentication the session attached with.
        auth: u64,
    },
    /// The worker for the session. Carries the link's fd when it is new to the
    /// front (a worker's first session); otherwise the front already holds it.
    Worker {
        /// The authentication.
        auth: u64,
        /// Monitor's id for the worker; a new id means a new process and link.
        worker: u64,
        /// The user the worker runs as (the PAM user, which modules may rename).
        user: String,
    },
}

/// A message received, with its payload and fd (if any).
#[derive(Debug)]
pub struct Envelope<T> {
    /// The typed header.
    pub msg: T,
    /// The payload, wiped when dropped.
    pub payload: Zeroizing<Vec<u8>>,
    /// The fd that came with it.
    pub fd: Option<OwnedFd>,
}

/// Why a message could not be received.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// The socket failed.
    #[error("monitor channel: {0}")]
    Io(#[from] io::Error),
    /// The message was larger than [`MAX_MESSAGE`].
    #[error("monitor channel: message over {MAX_MESSAGE} bytes")]
    TooLarge,
    /// The message or its fds were not what the channel allows.
    #[error("monitor channel: malformed message: {0}")]
    Malformed(String),
}

/// One end of the channel.
#[derive(Debug)]
pub struct Channel {
    sock: UnixSeqpacket,
}

impl Channel {
    /// Wraps a connected seqpacket socket.
    pub fn new(sock: UnixSeqpacket) -> Channel {
        Channel { sock }
    }

    /// The socket (for peer credential checks).
    pub fn socket(&self) -> &UnixSeqpacket {
        &self.sock
    }

    /// Sends `msg` with `payload` and, optionally, one fd.
    pub async fn send<T: Serialize>(
        &self,
        msg: &T,
        payload: &[u8],
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), IpcError> {
        let header = serde_json::to_vec(msg).map_err(|e| IpcError::Malformed(e.to_string()))?;
        let header_len = u32::try_from(header.len()).map_err(|_| IpcError::TooLarge)?;
        let mut buf = Zeroizing::new(Vec::with_capacity(4 + header.len() + payload.len()));
        buf.extend_from_slice(&header_len.to_be_bytes());
        buf.extend_from_slice(&header);
        buf.extend_from_slice(payload);
        if buf.len() > MAX_MESSAGE {
            return Err(IpcError::TooLarge);
        }
        let mut space = [0u8; 64];
        let mut ancillary = AncillaryMessageWriter::new(&mut space);
        let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
        if !fds.is_empty() {
            ancillary
                .add_fds(&fds)
                .map_err(|e| IpcError::Malformed(e.to_string()))?;
        }
        let sent = self.sock.send_with_ancillary(&buf, &mut ancillary).await?;
        if sent == buf.len() {
            Ok(())
        } else {
            Err(IpcError::Io(io::Error::new(
                io::ErrorKind::WriteZero,
                "short seqpacket send",
            )))
        }
    }

    /// Receives one message; `None` when the peer has closed the channel.
    pub async fn recv<T: DeserializeOwned>(&self) -> Result<Option<Envelope<T>>, IpcError> {
        // One byte more than the limit, so an oversized message shows as such
        // rather than as a silently cut one.
        let mut buf = Zeroizing::new(vec![0u8; MAX_MESSAGE + 1]);
        let mut space = [0u8; 128];
        let (info, ancillary) = self.sock.recv_with_ancillary(&mut buf, &mut space).await?;
        let truncated = ancillary.is_truncated();
        let mut fds = Vec::new();
        for message in ancillary.into_messages() {
            if let OwnedAncillaryMessage::FileDescriptors(received) = message {
                fds.extend(received);
            }
        }
        let len = info.bytes_read();
        if len == 0 && fds.is_empty() {
            return Ok(None);
        }
        if info.truncated() {
            return Err(IpcError::TooLarge);
        }
        if truncated {
            return Err(IpcError::Malformed(
                "more fds than the channel carries".into(),
            ));
        }
        let datagram = buf.get(..len).ok_or(IpcError::TooLarge)?;
        let (msg, payload) = decode(datagram, fds.len())?;
        Ok(Some(Envelope {
            msg,
            payload: Zeroizing::new(payload.to_vec()),
            fd: fds.pop(),
        }))
    }
}

/// Parses one received datagram, with no I/O: `u32 header length | header
/// JSON | payload`, and `fds` the number of descriptors that came with it
/// (at most one is allowed). Returns the typed header and the payload. This
/// is all the root monitor parses of what the (unprivileged) front sends; it
/// is fuzzed (`fuzz/fuzz_targets/ipc_to_monitor.rs`).
pub fn decode<T: DeserializeOwned>(datagram: &[u8], fds: usize) -> Result<(T, &[u8]), IpcError> {
    if datagram.len() > MAX_MESSAGE {
        return Err(IpcError::TooLarge);
    }
    if fds > 1 {
        return Err(IpcError::Malformed(format!(
            "{fds} fds with one message (at most one)"
        )));
    }
    let (prefix, rest) = datagram.split_first_chunk::<4>().ok_or_else(|| {
        IpcError::Malformed(format!(
            "{} bytes: shorter than the 4-byte header length",
            datagram.len()
        ))
    })?;
    let header_len = u32::from_be_bytes(*prefix);
    let Some((header, payload)) = usize::try_from(header_len)
        .ok()
        .and_then(|n| (n <= rest.len()).then(|| rest.split_at(n)))
    else {
        return Err(IpcError::Malformed(format!(
            "header length {header_len} past the end ({} bytes follow)",
            rest.len()
        )));
    };
    // serde_json's message names the field and position, never the payload.
    let msg = serde_json::from_slice(header).map_err(|e| IpcError::Malformed(e.to_string()))?;
    Ok((msg, payload))
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[tokio::test]
    async fn messages_payloads_and_fds_cross_whole() {
        let (a, b) = UnixSeqpacket::pair().unwrap();
        let (a, b) = (Channel::new(a), Channel::new(b));
        let (mut r, mut w) = std::os::unix::net::UnixStream::pair().unwrap();
        let msg = ToFront::Worker {
            auth: 7,
            worker: 1,
            user: "alice".into(),
        };
        a.send(&msg, b"payload", Some(w.as_fd())).await.unwrap();
        let got = b.recv::<ToFront>().await.unwrap().unwrap();
        assert_eq!(got.msg, msg);
        assert_eq!(&got.payload[..], b"payload");
        // The fd received is the same socket: what is written to it arrives.
        let fd = got.fd.unwrap();
        let mut passed = std::os::unix::net::UnixStream::from(fd);
        passed.write_all(b"x").unwrap();
        let mut one = [0u8; 1];
        r.read_exact(&mut one).unwrap();
        assert_eq!(&one, b"x");
        w.write_all(b"y").unwrap();
        drop(a);
        assert!(b.recv::<ToFront>().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn unknown_ops_and_fields_are_refused() {
        let (a, b) = UnixSeqpacket::pair().unwrap();
        let b = Channel::new(b);
        let raws: [&[u8]; 2] = [
            br#"{"op":"become_root","auth":1}"#,
            br#"{"op":"attach","auth":1,"uid":0}"#,
        ];
        for raw in raws {
            let mut m = (u32::try_from(raw.len()).unwrap()).to_be_bytes().to_vec();
            m.extend_from_slice(raw);
            a.send(&m).await.unwrap();
            assert!(matches!(
                b.recv::<ToMonitor>().await,
                Err(IpcError::Malformed(_))
            ));
        }
    }

    #[test]
    fn decode_names_what_is_wrong() {
        let msg = |e: IpcError| e.to_string();
        let good = {
            let header = br#"{"op":"auth_answer","auth":3}"#;
            let mut m = (u32::try_from(header.len()).unwrap())
                .to_be_bytes()
                .to_vec();
            m.extend_from_slice(header);
            m.extend_from_slice(b"answers");
            m
        };
        let (got, payload) = decode::<ToMonitor>(&good, 0).unwrap();
        assert_eq!(got, ToMonitor::AuthAnswer { auth: 3 });
        assert_eq!(payload, b"answers");
        assert!(msg(decode::<ToMonitor>(&good, 2).unwrap_err()).contains("2 fds"));
        assert!(msg(decode::<ToMonitor>(&good[..3], 0).unwrap_err()).contains("shorter than"));
        let mut long = good.clone();
        long[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(msg(decode::<ToMonitor>(&long, 0).unwrap_err()).contains("past the end"));
        let big = vec![0u8; MAX_MESSAGE + 1];
        assert!(matches!(
            decode::<ToMonitor>(&big, 0),
            Err(IpcError::TooLarge)
        ));
    }

    #[tokio::test]
    async fn oversized_messages_are_refused() {
        let (a, b) = UnixSeqpacket::pair().unwrap();
        let (a, b) = (Channel::new(a), Channel::new(b));
        let big = vec![0u8; MAX_MESSAGE];
        assert!(matches!(
            a.send(&ToMonitor::AuthAnswer { auth: 1 }, &big, None).await,
            Err(IpcError::TooLarge)
        ));
        let raw = vec![0u8; MAX_MESSAGE + 10];
        a.socket().send(&raw).await.unwrap();
        assert!(matches!(
            b.recv::<ToMonitor>().await,
            Err(IpcError::TooLarge)
        ));
    }
}
