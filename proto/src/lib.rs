//! The sRPC wire format: frame header, messages, limits and the PAM conversation
//! carried on an auth fid. This crate does no I/O; `docs/protocol.md` is its
//! specification and carries test vectors that the test suite decodes and re-encodes.
//!
//! ```
//! use srpc_proto::{decode, encode, Frame, Limits, Message};
//!
//! let frame = Frame::new(7, Message::Tclunk { fid: 3 });
//! let bytes = encode(&frame);
//! assert_eq!(decode(&bytes, &Limits::default()).unwrap(), frame);
//! ```
#![forbid(unsafe_code)]

mod auth;
mod codec;
mod deframer;
mod error;
mod header;
mod json;
mod limits;
mod listing;
mod message;
mod name;

pub use auth::{AuthAnswers, AuthStep, Prompt, PromptStyle};
pub use codec::{decode, decode_bytes, encode, encode_into, encode_split, Encoded, SPLIT_AT};
pub use deframer::{DeframeError, Deframer, RawFrame, READ_CHUNK};
pub use error::{DecodeError, ErrorCode, FieldError, NameError};
pub use header::{check, Check, Header, HEADER_LEN};
pub use limits::{Limits, HARD_LIMITS, INTERNAL_LINK_LIMITS, PROTOCOL_VERSION};
pub use listing::{decode_listing, encode_listing};
pub use message::{Frame, Kind, Message, NodeKind, Qid, QidType, Stat};
pub use name::{validate_name, validate_path};
