//! What can go wrong on the client side, one variant per cause.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use srpc_proto::{ErrorCode, NameError, QidType};

use super::auth::ConversationError;
use super::trust::{Fingerprint, FingerprintError};

/// An error from the sRPC client.
///
/// Errors never contain authentication answers or passwords.
///
/// ```
/// use srpc::client::Error;
/// use srpc::proto::ErrorCode;
///
/// fn explain(e: &Error) -> &'static str {
///     match e {
///         Error::Server { code: ErrorCode::PermissionDenied, .. } => "not allowed",
///         Error::Timeout { .. } => "too slow",
///         Error::ConnectionClosed { .. } => "gone",
///         _ => "other",
///     }
/// }
/// let e = Error::Server { code: ErrorCode::PermissionDenied, message: "no".into(), errno: Some(13) };
/// assert_eq!(explain(&e), "not allowed");
/// assert_eq!(e.to_string(), "server error permission_denied (errno 13): no");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The dial options are unusable (for example limits outside the protocol's bounds).
    #[error("invalid dial options: {0}")]
    InvalidOptions(String),
    /// The server name is neither a DNS name nor an IP address.
    #[error("{0:?} is not a valid TLS server name (a DNS name or an IP address)")]
    InvalidServerName(String),
    /// The CA file of [`super::Trust::CaFile`] could not be used.
    #[error("cannot use CA file {}: {detail}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// The TCP connection could not be made.
    #[error("could not connect to {addr}: {source}")]
    Connect {
        /// The address as given to dial.
        addr: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Connecting, the TLS handshake and the version exchange together took too long.
    #[error("dial did not complete within {after:?}")]
    DialTimeout {
        /// The connect timeout in force.
        after: Duration,
    },
    /// The TLS handshake failed (untrusted certificate, wrong name, no common
    /// parameters, an alert from the server, …).
    #[error("TLS handshake failed: {0}")]
    Tls(rustls::Error),
    /// The server presented a certificate whose key is not the pinned one.
    #[error("server certificate fingerprint {presented} does not match the pinned {expected}")]
    PinMismatch {
        /// The pin the client was given.
        expected: Fingerprint,
        /// The fingerprint of the certificate the server presented.
        presented: Fingerprint,
    },
    /// An I/O error while setting up the connection.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The server does not speak this client's protocol version.
    #[error("the server does not speak {}: {detail}", srpc_proto::PROTOCOL_VERSION)]
    UnsupportedVersion {
        /// What the server said.
        detail: String,
    },
    /// The server answered the request with an error.
    #[error("server error {code}{}: {message}", errno_suffix(*.errno))]
    Server {
        /// The protocol's stable error code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
        /// The kernel's errno, when a system call refused.
        errno: Option<i32>,
    },
    /// The server broke the protocol: a malformed or oversized frame, a reply of the
    /// wrong type, a reply to no request. The connection is closed when the stream
    /// itself is at fault.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The call got no reply within its timeout; it was abandoned with a flush.
    #[error("call timed out after {after:?}")]
    Timeout {
        /// The timeout in force.
        after: Duration,
    },
    /// The connection is closed; the call may or may not have been performed.
    #[error("connection closed: {reason}")]
    ConnectionClosed {
        /// Why it closed.
        reason: String,
    },
    /// A negotiated limit would be exceeded (message size, fids, walk length).
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// A name or path the protocol does not allow.
    #[error("invalid name {name:?}: {error}")]
    InvalidName {
        /// The offending name or path.
        name: String,
        /// What is wrong with it.
        error: NameError,
    },
    /// A walk stopped before its last name; no fid was bound.
    #[error(
        "walk stopped after {walked} of {requested} names: {stopped_at:?} could not be walked"
    )]
    WalkIncomplete {
        /// Names walked successfully.
        walked: usize,
        /// Names in the walk.
        requested: usize,
        /// The first name that could not be walked.
        stopped_at: String,
    },
    /// [`super::Fid::list`] on a fid that is not a directory; nothing was sent.
    #[error("only a directory can be listed, not {}", a_node_of(*.kind))]
    NotDirectory {
        /// What the fid is.
        kind: QidType,
    },
    /// The authentication conversation gave up or answered wrongly.
    #[error("authentication conversation failed: {0}")]
    Conversation(#[from] ConversationError),
    /// A fingerprint string is malformed.
    #[error("{0}")]
    Fingerprint(#[from] FingerprintError),
    /// A certificate could not be parsed.
    #[error("cannot parse certificate: {0}")]
    Certificate(String),
}

fn a_node_of(kind: QidType) -> &'static str {
    match kind {
        QidType::Dir => "a directory",
        QidType::Endpoint => "an endpoint",
        QidType::Auth => "an auth fid",
    }
}

fn errno_suffix(errno: Option<i32>) -> String {
    errno.map(|e| format!(" (errno {e})")).unwrap_or_default()
}

impl Error {
    /// The server's error code, if this is an error the server sent.
    ///
    /// ```
    /// use srpc::client::Error;
    /// use srpc::proto::ErrorCode;
    ///
    /// let e = Error::Server { code: ErrorCode::NoSuchNode, message: "gone".into(), errno: None };
    /// assert_eq!(e.code(), Some(ErrorCode::NoSuchNode));
    /// assert_eq!(Error::Protocol("x".into()).code(), None);
    /// ```
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}
