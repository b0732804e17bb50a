//! The messages of the protocol.

use bytes::Bytes;

use crate::error::ErrorCode;
use crate::limits::Limits;

macro_rules! kinds {
    ($( $(#[$doc:meta])* $variant:ident = $num:literal; )*) => {
        /// Message type numbers as they appear in the header. Requests are even,
        /// replies odd; a request's reply is its number plus one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum Kind {
            $( $(#[$doc])* $variant = $num, )*
        }

        impl Kind {
            /// Every message type, in numeric order.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant,)*];

            /// The type with this number, if the protocol defines one.
            pub fn from_u32(n: u32) -> Option<Kind> {
                match n {
                    $( $num => Some(Kind::$variant), )*
                    _ => None,
                }
            }
        }
    };
}

kinds! {
    /// Negotiate protocol version and limits.
    Tversion = 100;
    /// Reply to `Tversion`.
    Rversion = 101;
    /// Open an auth fid for a user.
    Tauth = 102;
    /// Reply to `Tauth`.
    Rauth = 103;
    /// Bind a fid to the root of an authenticated user's tree.
    Tattach = 104;
    /// Reply to `Tattach`.
    Rattach = 105;
    /// Error reply to any request.
    Rerror = 107;
    /// Abandon a pending request.
    Tflush = 108;
    /// Reply to `Tflush`.
    Rflush = 109;
    /// Walk a fid down a path to a new fid.
    Twalk = 110;
    /// Reply to `Twalk`.
    Rwalk = 111;
    /// Release a fid.
    Tclunk = 120;
    /// Reply to `Tclunk`.
    Rclunk = 121;
    /// Describe the node behind a fid.
    Tstat = 124;
    /// Reply to `Tstat`.
    Rstat = 125;
    /// Send bytes to an endpoint (a call) or to an auth fid (the PAM conversation).
    Tappend = 130;
    /// Reply to `Tappend`: the endpoint's (or the conversation's) answer.
    Rappend = 131;
}

/// What sort of thing a qid names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QidType {
    /// A directory of the tree.
    Dir,
    /// An endpoint: appending to it is a call.
    Endpoint,
    /// An auth fid: appending to it carries the PAM conversation.
    Auth,
}

impl QidType {
    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            QidType::Dir => "dir",
            QidType::Endpoint => "endpoint",
            QidType::Auth => "auth",
        }
    }

    /// The type with this wire name.
    pub fn parse(s: &str) -> Option<QidType> {
        match s {
            "dir" => Some(QidType::Dir),
            "endpoint" => Some(QidType::Endpoint),
            "auth" => Some(QidType::Auth),
            _ => None,
        }
    }
}

/// The server's identity for a node: equal qids are the same node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Qid {
    /// Node kind.
    pub kind: QidType,
    /// Unique per node within the server (the canonical node's inode number).
    pub path: u64,
    /// Changes when the node changes (its modification time in seconds).
    pub version: u64,
}

/// Node kinds are the non-auth qid types; kept as one type so a stat's kind and
/// its qid can never disagree.
pub type NodeKind = QidType;

/// What `Tstat` reports about a node, as the worker saw it with the user's rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The node's qid (its `kind` says dir or endpoint).
    pub qid: Qid,
    /// The node's name (`/` for the attach root).
    pub name: String,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Group gid.
    pub gid: u32,
    /// Owner name, or the uid in decimal when it has no name.
    pub owner: String,
    /// Group name, or the gid in decimal when it has no name.
    pub group: String,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
    /// The node's `SELinux` label, when the server runs with `SELinux`.
    pub label: Option<String>,
}

/// One protocol message (the body of a frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Must be the first request on a connection.
    Tversion {
        /// Version the client speaks (`srpc/1`).
        version: String,
        /// Limits the client proposes.
        limits: Limits,
    },
    /// The version in force and the negotiated limits.
    Rversion {
        /// Version the server will speak.
        version: String,
        /// Limits in force from now on.
        limits: Limits,
    },
    /// Start authenticating `uname` for attaching at `aname`, conversing on `afid`.
    Tauth {
        /// New fid that carries the conversation.
        afid: u32,
        /// User name.
        uname: String,
        /// Attach path the session is for.
        aname: String,
    },
    /// The auth fid is bound.
    Rauth {
        /// Qid of the auth fid (type `auth`).
        aqid: Qid,
    },
    /// Bind `fid` to `aname` in `uname`'s tree, proven by the authenticated `afid`.
    Tattach {
        /// New fid.
        fid: u32,
        /// Auth fid whose conversation ended in success for `uname`.
        afid: u32,
        /// User name (must equal the auth fid's).
        uname: String,
        /// Attach path (must equal the auth fid's).
        aname: String,
    },
    /// The fid is bound to the attach root.
    Rattach {
        /// Qid of the attach root.
        qid: Qid,
    },
    /// Walk from `fid` through `names`, binding the result to `newfid`.
    Twalk {
        /// Fid to start at (not changed).
        fid: u32,
        /// Fid to bind; may equal `fid` (then `fid` moves).
        newfid: u32,
        /// Path elements, each a valid name; empty clones `fid`.
        names: Vec<String>,
    },
    /// Qids of the nodes walked, one per name that succeeded.
    Rwalk {
        /// Fewer than requested means the walk stopped there and `newfid` is not bound.
        qids: Vec<Qid>,
    },
    /// Describe the node behind `fid`.
    Tstat {
        /// Fid to describe.
        fid: u32,
    },
    /// The description.
    Rstat {
        /// The node's attributes.
        stat: Stat,
    },
    /// Release `fid` (and, for the last fid of a session, the session).
    Tclunk {
        /// Fid to release.
        fid: u32,
    },
    /// The fid is free.
    Rclunk,
    /// Call the endpoint behind `fid` with `data` (or converse on an auth fid).
    Tappend {
        /// Endpoint or auth fid.
        fid: u32,
        /// Request bytes, sent as they are (binary-safe, no encoding).
        data: Bytes,
    },
    /// The endpoint's reply.
    Rappend {
        /// Reply bytes, as the handler wrote them.
        data: Bytes,
    },
    /// Abandon request `oldseq`.
    Tflush {
        /// Sequence number of the request to abandon.
        oldseq: u64,
    },
    /// `oldseq` is abandoned (or had already been answered).
    Rflush,
    /// The request failed.
    Rerror {
        /// Stable error code.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
        /// The kernel's errno when a system call refused (e.g. 13 for EACCES).
        errno: Option<i32>,
    },
}

impl Message {
    /// The message's type number.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Tversion { .. } => Kind::Tversion,
            Message::Rversion { .. } => Kind::Rversion,
            Message::Tauth { .. } => Kind::Tauth,
            Message::Rauth { .. } => Kind::Rauth,
            Message::Tattach { .. } => Kind::Tattach,
            Message::Rattach { .. } => Kind::Rattach,
            Message::Twalk { .. } => Kind::Twalk,
            Message::Rwalk { .. } => Kind::Rwalk,
            Message::Tstat { .. } => Kind::Tstat,
            Message::Rstat { .. } => Kind::Rstat,
            Message::Tclunk { .. } => Kind::Tclunk,
            Message::Rclunk => Kind::Rclunk,
            Message::Tappend { .. } => Kind::Tappend,
            Message::Rappend { .. } => Kind::Rappend,
            Message::Tflush { .. } => Kind::Tflush,
            Message::Rflush => Kind::Rflush,
            Message::Rerror { .. } => Kind::Rerror,
        }
    }

    /// True for requests (client to server).
    pub fn is_request(&self) -> bool {
        (self.kind() as u32).is_multiple_of(2)
    }

    /// An error reply.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Message {
        Message::Rerror {
            code,
            message: message.into(),
            errno: None,
        }
    }
}

/// A message with its sequence number: what one frame carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Sequence number (tag): chosen by the client, echoed by the reply.
    pub seq: u64,
    /// The message.
    pub msg: Message,
}

impl Frame {
    /// A frame.
    pub fn new(seq: u64, msg: Message) -> Frame {
        Frame { seq, msg }
    }
}
