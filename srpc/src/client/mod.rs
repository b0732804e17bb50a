//! The client: dial an srpcd over TLS, authenticate users, and call endpoints.
//!
//! A [`Client`] is one TLS connection (TLS 1.3, rustls with the ring provider).
//! The server is authenticated either by a pinned key fingerprint
//! ([`Trust::Pin`], the `sha256:…` string the server prints at start) or by a CA
//! file ([`Trust::CaFile`]). [`Client::auth`] runs a user's PAM conversation and
//! returns a [`Session`]; many sessions, of one or many users, share a
//! connection. From a session, [`Fid`]s are walked to endpoints, which are called
//! with [`Fid::append`].
//!
//! All calls are pipelined: many may be in flight at once (up to the negotiated
//! `max_pending`, less one slot kept for flushes; further calls wait), and replies
//! are matched to calls in any order. A call whose future is dropped, or that
//! times out, is flushed on the server. A dropped [`Fid`] is clunked in the
//! background. If the connection fails, every pending call fails at once with
//! [`Error::ConnectionClosed`] (or [`Error::Protocol`] when the server sent
//! something invalid).
//!
//! ```no_run
//! # async fn demo() -> Result<(), srpc::client::Error> {
//! use srpc::client::{Client, PasswordConversation, Trust};
//!
//! let pin = "sha256:0f1e…".parse().map_err(srpc::client::Error::from)?;
//! let client = Client::dial("srpc.example.org:7001", "srpc.example.org", Trust::Pin(pin)).await?;
//! let session = client
//!     .auth("alice", "/", &mut PasswordConversation::new("s3cret"))
//!     .await?;
//! let echo = session.walk("/services/echo").await?;
//! let reply = echo.append(&b"hello"[..]).await?;
//! assert_eq!(&reply[..], b"hello");
//! # Ok(()) }
//! ```

mod auth;
mod call;
mod dial;
mod error;
mod frames;
mod ids;
mod mux;
mod session;
mod streams;
mod tls;
mod trust;

pub use auth::{Conversation, ConversationError, PasswordConversation};
pub use dial::{Client, DialOptions, DEFAULT_CALL_TIMEOUT, DEFAULT_CONNECT_TIMEOUT};
pub use error::Error;
pub use session::{Fid, Session};
pub use trust::{fingerprint_of, Fingerprint, FingerprintError, Trust};
