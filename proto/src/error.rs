//! Decode errors (what is wrong with bytes) and protocol error codes (what a
//! server says in `Rerror`).

use std::fmt;

/// Why a frame could not be decoded. Each variant names one precise fault so a
/// server can tell a client exactly what it sent wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The header declares a frame larger than the negotiated `max_message`.
    #[error("frame declares {declared} body bytes, over the limit of {max} bytes per message")]
    TooLarge {
        /// Declared body length.
        declared: u64,
        /// The limit in force (whole frame).
        max: u64,
    },
    /// The header's type number is not a message this protocol defines.
    #[error("unknown message type {0}")]
    UnknownType(u32),
    /// Fewer bytes than the header plus declared body.
    #[error("frame truncated: {expected} bytes declared, {got} present")]
    Truncated {
        /// Bytes the header promised (header included).
        expected: usize,
        /// Bytes present.
        got: usize,
    },
    /// Bytes after the declared end of the frame.
    #[error("{extra} trailing bytes after the frame")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// The control part is not valid UTF-8.
    #[error("control part is not valid UTF-8 (at byte {offset})")]
    InvalidUtf8 {
        /// Offset of the first invalid byte within the control part.
        offset: usize,
    },
    /// The control part is not well-formed JSON.
    #[error("control part is not valid JSON: {0}")]
    Json(String),
    /// The control part is JSON but not an object.
    #[error("control part must be a JSON object")]
    NotObject,
    /// A field the message does not define.
    #[error("unknown field `{0}`")]
    UnknownField(String),
    /// The same field twice in one object.
    #[error("duplicate field `{0}`")]
    DuplicateField(String),
    /// A defined field is missing, of the wrong type or out of range.
    #[error("field `{field}`: {error}")]
    Field {
        /// The field's name (dotted for nested fields, e.g. `limits.max_fids`).
        field: String,
        /// What is wrong with it.
        error: FieldError,
    },
    /// A name (walk element, user name, path element) is not acceptable.
    #[error("field `{field}`: {error}")]
    Name {
        /// The field holding the name.
        field: String,
        /// What is wrong with it.
        error: NameError,
    },
    /// More walk elements than the negotiated `max_walk`.
    #[error("walk has {count} elements, over the limit of {max}")]
    TooManyWalkElements {
        /// Elements sent.
        count: usize,
        /// The limit in force.
        max: u32,
    },
    /// An append body too short for its control-length prefix, or whose prefix
    /// points past the end of the body.
    #[error(
        "append body: control length {control_len} does not fit in a body of {body_len} bytes"
    )]
    BadAppendLayout {
        /// The declared control length (0 if the prefix itself is missing).
        control_len: u64,
        /// The body length.
        body_len: usize,
    },
}

/// What is wrong with one JSON field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// The message requires it.
    #[error("missing")]
    Missing,
    /// It holds another JSON type.
    #[error("expected {0}")]
    WrongType(&'static str),
    /// A number outside the field's range, or a string not among its values.
    #[error("value out of range: {0}")]
    OutOfRange(String),
}

/// What is wrong with a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Zero length.
    #[error("name is empty")]
    Empty,
    /// `.`: walking to self is done with an empty walk, not a name.
    #[error("name `.` is not allowed")]
    Dot,
    /// `..`: the tree cannot be left, and walking up is not part of the protocol.
    #[error("name `..` is not allowed")]
    DotDot,
    /// Contains a NUL byte.
    #[error("name contains a NUL byte")]
    Nul,
    /// Contains `/`: one name is one path element.
    #[error("name contains `/`")]
    Slash,
    /// Longer than the negotiated `max_name`.
    #[error("name is {len} bytes, over the limit of {max}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit in force.
        max: u32,
    },
    /// A path that does not start with `/`.
    #[error("path must be absolute (start with `/`)")]
    NotAbsolute,
}

impl DecodeError {
    pub(crate) fn field(field: impl Into<String>, error: FieldError) -> Self {
        DecodeError::Field {
            field: field.into(),
            error,
        }
    }

    pub(crate) fn name(field: impl Into<String>, error: NameError) -> Self {
        DecodeError::Name {
            field: field.into(),
            error,
        }
    }

    /// The protocol error code a server answers this fault with.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::TooLarge { .. } | DecodeError::TooManyWalkElements { .. } => {
                ErrorCode::LimitExceeded
            }
            _ => ErrorCode::Malformed,
        }
    }
}

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = $num:literal, $name:literal; )*) => {
        /// The stable error codes of `Rerror`. Numbers and names never change
        /// meaning; new codes may be added, so receivers keep unknown ones as
        /// [`ErrorCode::Unknown`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
            /// A code this implementation does not know (from a newer peer).
            Unknown(u32),
        }

        impl ErrorCode {
            /// Every code this implementation defines, in numeric order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code's stable number.
            pub fn number(self) -> u32 {
                match self {
                    $( ErrorCode::$variant => $num, )*
                    ErrorCode::Unknown(n) => n,
                }
            }

            /// The code's stable name, as the spec writes it.
            pub fn name(self) -> &'static str {
                match self {
                    $( ErrorCode::$variant => $name, )*
                    ErrorCode::Unknown(_) => "unknown",
                }
            }

            /// The code with this number.
            pub fn from_number(n: u32) -> ErrorCode {
                match n {
                    $( $num => ErrorCode::$variant, )*
                    other => ErrorCode::Unknown(other),
                }
            }
        }
    };
}

error_codes! {
    /// A frame that does not decode (see [`DecodeError`]).
    Malformed = 1, "malformed";
    /// No protocol version in common.
    UnsupportedVersion = 2, "unsupported_version";
    /// A valid message at the wrong time (before `version`, a reply sent to a server, …).
    Protocol = 3, "protocol";
    /// The fid is not bound on this connection, or is of the wrong sort for the request.
    BadFid = 4, "bad_fid";
    /// The new fid is already bound.
    FidInUse = 5, "fid_in_use";
    /// The node does not exist (or the kernel said ENOENT for this user).
    NoSuchNode = 6, "no_such_node";
    /// The kernel refused the access for this user (EACCES/EPERM).
    PermissionDenied = 7, "permission_denied";
    /// Authentication failed (wrong password and unknown user alike).
    AuthFailed = 8, "auth_failed";
    /// The request needs an authenticated session (attach before auth completed).
    AuthRequired = 9, "auth_required";
    /// The password is correct but expired and must be changed.
    PasswordExpired = 10, "password_expired";
    /// The account is expired, locked or otherwise not allowed to log in.
    AccountUnavailable = 11, "account_unavailable";
    /// Too many failed attempts; retry after the lockout window.
    TooManyAttempts = 12, "too_many_attempts";
    /// A negotiated or configured limit would be exceeded.
    LimitExceeded = 13, "limit_exceeded";
    /// `append` on a node that is not an endpoint.
    NotEndpoint = 14, "not_endpoint";
    /// `walk` through a node that is not a directory.
    NotDirectory = 15, "not_directory";
    /// The endpoint's handler failed, crashed or closed the call.
    CallFailed = 16, "call_failed";
    /// The call did not complete in time.
    Timeout = 17, "timeout";
    /// The server cannot serve this now (shutting down, worker unavailable).
    Unavailable = 18, "unavailable";
    /// A fault inside the server; details are in its log, not on the wire.
    Internal = 19, "internal";
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorCode::Unknown(n) => write!(f, "unknown error code {n}"),
            known => f.write_str(known.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_dense() {
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(code.number() as usize, i + 1);
            assert_eq!(ErrorCode::from_number(code.number()), *code);
        }
        assert_eq!(ErrorCode::from_number(999), ErrorCode::Unknown(999));
    }
}
