//! What a handler receives and what it may answer with besides bytes.

use std::fmt;

use bytes::Bytes;
use srpc_proto::ErrorCode;

/// One call to an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The endpoint's path in the tree (e.g. `/echo`), as srpcd named it when it
    /// handed over the socket or the connection.
    pub endpoint: String,
    /// The request bytes, exactly as the client sent them.
    pub data: Bytes,
    /// Who is calling, as the kernel reports it.
    pub caller: Caller,
}

/// The process at the other end of the call connection, as the **kernel** reports
/// it (`SO_PEERCRED`, `SO_PEERSEC`): srpcd's worker for the calling user, running
/// with that user's uid, gid and SELinux context. Nothing in it comes from the
/// request's bytes, so a caller cannot claim to be someone else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Process id of the connecting process (0 if it is in a pid namespace this
    /// handler cannot see).
    pub pid: i32,
    /// Effective uid of the connecting process when it connected.
    pub uid: u32,
    /// Effective gid of the connecting process when it connected.
    pub gid: u32,
    /// The user name of `uid`, if the user database has one.
    pub user: Option<String>,
    /// The SELinux context of the connecting process; `None` when the kernel has
    /// no SELinux.
    pub context: Option<String>,
}

/// A call's failure, sent to the caller as an `Rerror` with this code and message.
///
/// Handlers must report failures by returning a `CallError`, never by panicking:
/// sRPC processes are built with `panic = "abort"`, so a panic ends the whole
/// handler process and every call in flight.
///
/// ```
/// use srpc::handler::{CallError, ErrorCode};
///
/// let e = CallError::denied("only members of `ops` may reboot");
/// assert_eq!(e.code, ErrorCode::PermissionDenied);
/// let e = CallError::new(ErrorCode::Unavailable, "database is down");
/// assert_eq!(e.to_string(), "unavailable: database is down");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// The protocol error code.
    pub code: ErrorCode,
    /// Detail for the caller. It travels to the client: no secrets.
    pub message: String,
}

impl CallError {
    /// An error with any code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> CallError {
        CallError {
            code,
            message: message.into(),
        }
    }

    /// The call failed (`call_failed`): the usual answer to a bad request or a
    /// failed operation.
    pub fn failed(message: impl Into<String>) -> CallError {
        CallError::new(ErrorCode::CallFailed, message)
    }

    /// The handler refuses this caller (`permission_denied`).
    pub fn denied(message: impl Into<String>) -> CallError {
        CallError::new(ErrorCode::PermissionDenied, message)
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for CallError {}
