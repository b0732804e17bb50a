//! One request and its reply, as the handles make them: fid reservation, the
//! per-call timeout, and what a dropped call leaves to the multiplexer.

use std::sync::Arc;
use std::time::Duration;

use srpc_proto::{Frame, Kind, Limits, Message};
use tokio::sync::oneshot;

use super::error::Error;
use super::mux::{encode_frame, Closed, FidEffect, Shared};

/// A reserved fid number. Dropped unbound, it is freed; dropped bound, it is
/// clunked in the background. While a request that binds or releases it is in
/// flight, the request is responsible for it (see [`Slot`]).
pub(crate) struct FidSlot {
    shared: Arc<Shared>,
    fid: u32,
    bound: bool,
    armed: bool,
}

impl FidSlot {
    /// Reserves a new fid number.
    pub(crate) fn new(shared: &Arc<Shared>) -> Result<FidSlot, Error> {
        Ok(FidSlot {
            fid: shared.alloc_fid()?,
            shared: Arc::clone(shared),
            bound: false,
            armed: true,
        })
    }

    pub(crate) fn fid(&self) -> u32 {
        self.fid
    }

    /// The server bound the fid.
    pub(crate) fn bind(&mut self) {
        self.bound = true;
    }

    /// The server no longer holds the fid.
    pub(crate) fn unbind(&mut self) {
        self.bound = false;
    }
}

impl Drop for FidSlot {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.bound {
            self.shared.clunk_in_background(self.fid);
        } else {
            self.shared.free_fid(self.fid);
        }
    }
}

/// What a request carries along that must be settled if its caller goes away.
pub(crate) trait Slot {
    /// The request is out: it takes over the fid, if any.
    fn hand_over(&mut self) -> Option<FidEffect>;
    /// The reply arrived: the caller settles the fid again.
    fn take_back(&mut self);
}

impl Slot for () {
    fn hand_over(&mut self) -> Option<FidEffect> {
        None
    }
    fn take_back(&mut self) {}
}

impl Slot for FidSlot {
    fn hand_over(&mut self) -> Option<FidEffect> {
        self.armed = false;
        // A bound fid goes out in a clunk, an unbound one in a bind.
        Some(if self.bound {
            FidEffect::Releases(self.fid)
        } else {
            FidEffect::Binds(self.fid)
        })
    }
    fn take_back(&mut self) {
        self.armed = true;
    }
}

/// A request on the wire. Dropped before its reply was read (the caller's future
/// was dropped or timed out), it abandons the request.
struct PendingCall {
    shared: Arc<Shared>,
    seq: u64,
    id: u64,
    effect: Option<FidEffect>,
    rx: oneshot::Receiver<Message>,
    answered: bool,
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        if !self.answered {
            self.shared
                .abandon(self.seq, self.id, self.effect, &mut self.rx);
        }
    }
}

/// The connection as its handles ([`super::Client`], [`super::Session`],
/// [`super::Fid`]) hold it; when the last is dropped, the connection closes.
pub(crate) struct Conn {
    pub(crate) shared: Arc<Shared>,
    /// Per-call timeout for handles that do not set their own.
    pub(crate) call_timeout: Option<Duration>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.shared.close(Closed::Local);
    }
}

impl Conn {
    pub(crate) fn limits(&self) -> Limits {
        self.shared.limits
    }

    /// Sends `msg` and waits for its reply (any reply: the caller checks its type),
    /// within `timeout`. `slot` is settled by the caller afterwards, or by the
    /// multiplexer if the call is abandoned.
    pub(crate) async fn exchange<S: Slot>(
        &self,
        msg: Message,
        slot: S,
        timeout: Option<Duration>,
    ) -> Result<(Message, S), Error> {
        let call = self.exchange_inner(msg, slot);
        match timeout {
            None => call.await,
            Some(after) => tokio::time::timeout(after, call)
                .await
                .map_err(|_| Error::Timeout { after })?,
        }
    }

    async fn exchange_inner<S: Slot>(
        &self,
        msg: Message,
        mut slot: S,
    ) -> Result<(Message, S), Error> {
        // Encoded with a placeholder sequence number: the real one is taken only
        // once a permit is held.
        let frame = encode_frame(&Frame::new(0, msg), &self.shared.limits)?;
        let permit = Arc::clone(&self.shared.permits)
            .acquire_owned()
            .await
            .map_err(|_| self.shared.closed_error())?;
        let (seq, id, rx) = self.shared.start(permit, frame)?;
        let mut pending = PendingCall {
            shared: Arc::clone(&self.shared),
            seq,
            id,
            effect: slot.hand_over(),
            rx,
            answered: false,
        };
        let reply = (&mut pending.rx).await;
        pending.answered = true;
        slot.take_back();
        let reply = reply.map_err(|_| self.shared.closed_error())?;
        Ok((reply, slot))
    }
}

/// The error for a reply that is not the one `request` expects: the server's
/// error, or a protocol error naming what arrived.
pub(crate) fn unexpected(reply: Message, request: Kind) -> Error {
    match reply {
        Message::Rerror {
            code,
            message,
            errno,
        } => Error::Server {
            code,
            message,
            errno,
        },
        other => {
            let expected = Kind::from_u32(request as u32 + 1)
                .map_or_else(|| "a reply".to_owned(), |k| format!("{k:?}"));
            Error::Protocol(format!(
                "expected {expected} in reply to {request:?}, received {:?}",
                other.kind()
            ))
        }
    }
}
