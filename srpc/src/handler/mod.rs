//! The handler side: what an endpoint implementer writes.
//!
//! An endpoint handler is an async function from a [`Call`] to reply bytes or a
//! [`CallError`]. [`serve`] runs it on connections from srpcd's worker, which
//! speaks the *handler link*: ordinary sRPC frames over a Unix stream socket, each
//! call a `Tappend{fid: 0}` answered by `Rappend` or `Rerror`, many calls pipelined
//! and answered as they finish, `Tflush` to abandon one.
//!
//! Who calls is taken from the kernel on the call connection (`SO_PEERCRED`,
//! `SO_PEERSEC`) and given to the handler as [`Caller`]; the request bytes cannot
//! change it.
//!
//! Two kinds of handler, differing only in their [`Listener`]:
//!
//! - a **per-user handler** is an executable srpcd starts as the calling user, with
//!   a listening socket on fd 3 (systemd style), and which exits once idle for
//!   as long as srpcd says in [`IDLE_TIMEOUT_ENV`]: [`Listener::from_env`];
//! - a **service handler** is a long-running service; srpcd connects to its socket
//!   and passes each call connection over it: [`Listener::bind_fd_passing`].
//!
//! ```no_run
//! use srpc::handler::{serve, Bytes, Call, CallError, Listener};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let listener = Listener::from_env()?; // first, before any thread starts
//!     let runtime = tokio::runtime::Runtime::new()?;
//!     runtime.block_on(serve(listener, greet))?;
//!     Ok(())
//! }
//!
//! async fn greet(call: Call) -> Result<Bytes, CallError> {
//!     let name = call.caller.user.ok_or_else(|| CallError::failed("caller has no name"))?;
//!     Ok(Bytes::from(format!("hello, {name}")))
//! }
//! ```
//!
//! Handlers must return errors rather than panic: sRPC binaries are built with
//! `panic = "abort"`, so a panic ends the handler process.

mod call;
mod identity;
mod link;
mod listener;
mod serve;

use std::future::Future;
use std::io;

pub use bytes::Bytes;
pub use call::{Call, CallError, Caller};
pub use link::MAX_CALLS_IN_FLIGHT;
pub use listener::{Listener, IDLE_TIMEOUT_ENV};
pub use serve::{serve, serve_until};
pub use srpc_proto::ErrorCode;

/// A function that handles calls: `Fn(Call) -> impl Future<Output = Result<Bytes,
/// CallError>>`, shareable across tasks. Implemented for every such function and
/// closure; there is no need to implement it by hand.
pub trait HandlerFn: Fn(Call) -> Self::Reply + Send + Sync + 'static {
    /// The future the handler returns for one call.
    type Reply: Future<Output = Result<Bytes, CallError>> + Send + 'static;
}

impl<F, R> HandlerFn for F
where
    F: Fn(Call) -> R + Send + Sync + 'static,
    R: Future<Output = Result<Bytes, CallError>> + Send + 'static,
{
    type Reply = R;
}

/// Why [`serve`] could not start (or a [`Listener`] could not be made).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// `LISTEN_FDS` handed this process no socket (or was meant for another one).
    #[error("no listening socket was passed to this process (LISTEN_FDS)")]
    NoSocket,
    /// More than the one socket a handler takes.
    #[error("{0} sockets were passed to this process (LISTEN_FDS); a handler takes one")]
    TooManySockets(usize),
    /// The passed fd is something else than a listening Unix stream socket.
    #[error("the passed fd is not a listening Unix stream socket")]
    NotAListener,
    /// `SRPC_IDLE_TIMEOUT_SECS` holds this value, which is not a number of seconds.
    #[error(
        "SRPC_IDLE_TIMEOUT_SECS is {0:?}; it must be a whole number of seconds from 1 to 4294967295"
    )]
    BadIdleTimeout(String),
    /// The operating system refused something (see the message for what).
    #[error(transparent)]
    Os(#[from] srpc_os::Error),
    /// An I/O step of setting up failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        source: io::Error,
    },
}
