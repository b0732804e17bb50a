//! The multiplexer's state: which sequence numbers and fids are in use, who waits
//! for which reply, and what happens to requests whose callers went away.
//!
//! Every request counts against the negotiated `max_pending` until it is answered
//! (docs/protocol.md, section 8.3), flushes included. Calls and background clunks
//! share `max_pending - 1` permits and wait for one rather than fail; the last
//! slot is kept for flushes, so a call can be abandoned even when the connection is
//! at its limit. Flushes therefore go out one at a time, in order. (With
//! `max_pending` 1 no slot can be kept: an abandoned call is then not flushed, and
//! simply completes, unread, when its reply comes.)
//!
//! A sequence number is released only when its request is finished for the server
//! too: on its reply, or for a flushed request on the `Rflush`. A reply that
//! crosses a flush is read and dropped. A fid that an abandoned request was binding
//! or releasing is settled by the rules of section 13: a reply before the `Rflush`
//! stands, an `Rflush` first means the request did nothing.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use srpc_proto::{encode_into, Frame, Header, Limits, Message, HEADER_LEN};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use zeroize::Zeroizing;

use super::error::Error;
use super::ids::IdPool;

/// A frame on its way to the writer. Wiped after writing: an auth append carries
/// a password.
pub(crate) type Outgoing = Zeroizing<Vec<u8>>;

/// Why the connection ended; every later call fails with [`Closed::error`].
#[derive(Debug, Clone)]
pub(crate) enum Closed {
    /// Every handle to the connection was dropped.
    Local,
    /// The server closed the stream.
    Peer,
    /// The stream failed.
    Io(String),
    /// The server broke the protocol.
    Protocol(String),
}

impl Closed {
    pub(crate) fn error(&self) -> Error {
        let reason = match self {
            Closed::Protocol(detail) => return Error::Protocol(detail.clone()),
            Closed::Local => "the client closed it".to_owned(),
            Closed::Peer => "the server closed it".to_owned(),
            Closed::Io(detail) => detail.clone(),
        };
        Error::ConnectionClosed { reason }
    }
}

/// What a request does to a fid, to be settled if its caller goes away.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FidEffect {
    /// Binds the fid (walk, auth, attach).
    Binds(u32),
    /// Releases the fid (clunk).
    Releases(u32),
}

/// How an abandoned request ended.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// Its reply arrived (an error reply or not).
    Replied { error: bool },
    /// The `Rflush` came first: it did nothing.
    Flushed,
}

/// What a sequence number in use stands for.
enum Entry {
    /// A caller waits for the reply.
    Call {
        /// Tells this call from a later one that reuses the number.
        id: u64,
        tx: oneshot::Sender<Message>,
        permit: OwnedSemaphorePermit,
    },
    /// The caller went away; the request is flushed (or waits for the flush slot).
    Abandoned {
        permit: OwnedSemaphorePermit,
        effect: Option<FidEffect>,
        /// Our `Tflush` for it is out.
        flushing: bool,
        /// The reply that crossed the flush, if any: whether it was an error.
        replied_error: Option<bool>,
    },
    /// Our flush of `oldseq`, in the reserved slot.
    Flush { oldseq: u64 },
    /// A clunk nobody waits for (a dropped fid handle, or settling one).
    Clunk {
        fid: u32,
        permit: OwnedSemaphorePermit,
    },
}

struct State {
    entries: HashMap<u64, Entry>,
    seqs: IdPool,
    fids: IdPool,
    /// The reserved flush slot is free (never, when `max_pending` is 1).
    flush_slot_free: bool,
    /// Abandoned requests waiting for the flush slot, oldest first.
    deferred_flushes: VecDeque<u64>,
    /// Fids to clunk as soon as a permit is free.
    deferred_clunks: VecDeque<u32>,
    next_id: u64,
    closed: Option<Closed>,
}

/// The connection state the reader and writer tasks share with the callers.
pub(crate) struct Shared {
    state: Mutex<State>,
    pub(crate) permits: Arc<Semaphore>,
    out: mpsc::UnboundedSender<Outgoing>,
    /// Becomes true once, when the connection closes; stops both tasks.
    pub(crate) dead: watch::Sender<bool>,
    pub(crate) limits: Limits,
}

impl Shared {
    /// The state for a connection with these negotiated limits, sending through `out`.
    pub(crate) fn new(limits: Limits, out: mpsc::UnboundedSender<Outgoing>) -> Shared {
        let reserve_flush_slot = limits.max_pending >= 2;
        let call_permits = if reserve_flush_slot {
            limits.max_pending - 1
        } else {
            limits.max_pending
        };
        Shared {
            state: Mutex::new(State {
                entries: HashMap::new(),
                seqs: IdPool::new(1, u64::MAX, u64::MAX),
                fids: IdPool::new(1, u64::from(u32::MAX), u64::from(limits.max_fids)),
                flush_slot_free: reserve_flush_slot,
                deferred_flushes: VecDeque::new(),
                deferred_clunks: VecDeque::new(),
                next_id: 0,
                closed: None,
            }),
            permits: Arc::new(Semaphore::new(call_permits as usize)),
            out,
            dead: watch::Sender::new(false),
            limits,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is updated in whole steps under the lock; a panic elsewhere
        // while holding it cannot leave a half-step behind.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    pub(crate) fn closed_error(&self) -> Error {
        self.lock()
            .closed
            .as_ref()
            .map_or_else(|| Closed::Local.error(), Closed::error)
    }

    /// Ends the connection: every waiting caller wakes with `why`'s error. Only the
    /// first reason counts.
    pub(crate) fn close(&self, why: Closed) {
        let mut st = self.lock();
        if st.closed.is_some() {
            return;
        }
        tracing::debug!(reason = ?why, "srpc connection closed");
        st.closed = Some(why);
        // Dropping the senders wakes every caller; they read the reason above.
        st.entries.clear();
        st.deferred_flushes.clear();
        st.deferred_clunks.clear();
        drop(st);
        self.permits.close();
        self.dead.send_replace(true);
    }

    /// Queues one of the client's own small requests (flush, clunk).
    fn send(&self, frame: &Frame) {
        if let Ok(bytes) = encode_frame(frame, &self.limits) {
            // Fails only when the writer is gone, i.e. the connection is closing.
            let _ = self.out.send(bytes);
        }
    }

    /// Reserves a fid number, within the negotiated `max_fids`.
    pub(crate) fn alloc_fid(&self) -> Result<u32, Error> {
        let mut st = self.lock();
        if let Some(why) = &st.closed {
            return Err(why.error());
        }
        st.fids
            .alloc()
            .and_then(|fid| u32::try_from(fid).ok())
            .ok_or_else(|| {
                Error::LimitExceeded(format!(
                    "all {} fids the connection may hold are in use",
                    self.limits.max_fids
                ))
            })
    }

    /// Returns a fid that the server does not hold bound.
    pub(crate) fn free_fid(&self, fid: u32) {
        self.lock().fids.release(u64::from(fid));
    }

    /// Clunks `fid` without anyone waiting; the number is freed on the reply.
    pub(crate) fn clunk_in_background(&self, fid: u32) {
        let mut st = self.lock();
        self.clunk_later(&mut st, fid);
    }

    fn clunk_later(&self, st: &mut State, fid: u32) {
        if st.closed.is_some() {
            return;
        }
        match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => self.send_clunk(st, fid, permit),
            // Every permit is held by a request in flight; the first to finish
            // hands its permit over (see `give_back`).
            Err(_) => st.deferred_clunks.push_back(fid),
        }
    }

    fn send_clunk(&self, st: &mut State, fid: u32, permit: OwnedSemaphorePermit) {
        let Some(seq) = st.seqs.alloc() else { return };
        st.entries.insert(seq, Entry::Clunk { fid, permit });
        self.send(&Frame::new(seq, Message::Tclunk { fid }));
    }

    /// Releases a finished request's permit, to a deferred clunk first.
    fn give_back(&self, st: &mut State, permit: OwnedSemaphorePermit) {
        match st.deferred_clunks.pop_front() {
            Some(fid) => self.send_clunk(st, fid, permit),
            None => drop(permit),
        }
    }

    /// Settles the fid of a request that ended without its caller, and releases
    /// its permit (to the clunk that settling may need).
    fn finish(
        &self,
        st: &mut State,
        permit: OwnedSemaphorePermit,
        effect: Option<FidEffect>,
        outcome: Outcome,
    ) {
        match settle(effect, outcome) {
            Settle::Nothing => self.give_back(st, permit),
            Settle::Free(fid) => {
                st.fids.release(u64::from(fid));
                self.give_back(st, permit);
            }
            Settle::Clunk(fid) => self.send_clunk(st, fid, permit),
        }
    }

    /// Registers a request and queues its frame, atomically so that a flush of it
    /// can only ever be queued after it.
    pub(crate) fn start(
        &self,
        permit: OwnedSemaphorePermit,
        mut frame: Outgoing,
    ) -> Result<(u64, u64, oneshot::Receiver<Message>), Error> {
        let mut st = self.lock();
        if let Some(why) = &st.closed {
            return Err(why.error());
        }
        let seq = st
            .seqs
            .alloc()
            .ok_or_else(|| Error::LimitExceeded("no sequence number is free".into()))?;
        set_seq(&mut frame, seq);
        let id = st.next_id;
        st.next_id += 1;
        let (tx, rx) = oneshot::channel();
        st.entries.insert(seq, Entry::Call { id, tx, permit });
        let _ = self.out.send(frame);
        Ok((seq, id, rx))
    }

    /// The caller of request `seq` went away before reading its reply. If the reply
    /// has not come, the request is flushed; if it has, it waits unread in `rx`,
    /// and only the fid needs settling.
    pub(crate) fn abandon(
        &self,
        seq: u64,
        id: u64,
        effect: Option<FidEffect>,
        rx: &mut oneshot::Receiver<Message>,
    ) {
        let mut st = self.lock();
        let st = &mut *st;
        if st.closed.is_some() {
            return;
        }
        let ours = matches!(st.entries.get(&seq), Some(Entry::Call { id: i, .. }) if *i == id);
        if !ours {
            // The reader delivers under this lock, so the reply is in `rx` now.
            if let Ok(reply) = rx.try_recv() {
                let error = matches!(reply, Message::Rerror { .. });
                match settle(effect, Outcome::Replied { error }) {
                    Settle::Nothing => {}
                    Settle::Free(fid) => st.fids.release(u64::from(fid)),
                    Settle::Clunk(fid) => self.clunk_later(st, fid),
                }
            }
            return;
        }
        let Some(Entry::Call { permit, .. }) = st.entries.remove(&seq) else {
            return;
        };
        st.entries.insert(
            seq,
            Entry::Abandoned {
                permit,
                effect,
                flushing: false,
                replied_error: None,
            },
        );
        st.deferred_flushes.push_back(seq);
        self.next_flush(st);
    }

    /// Sends the oldest waiting flush if the flush slot is free.
    fn next_flush(&self, st: &mut State) {
        while st.flush_slot_free {
            let Some(oldseq) = st.deferred_flushes.pop_front() else {
                return;
            };
            let Some(Entry::Abandoned { flushing, .. }) = st.entries.get_mut(&oldseq) else {
                continue;
            };
            let Some(seq) = st.seqs.alloc() else { return };
            *flushing = true;
            st.flush_slot_free = false;
            st.entries.insert(seq, Entry::Flush { oldseq });
            self.send(&Frame::new(seq, Message::Tflush { oldseq }));
        }
    }

    /// Delivers one frame from the server. An error closes the connection.
    pub(crate) fn on_frame(&self, frame: Frame) -> Result<(), Closed> {
        let Frame { seq, msg } = frame;
        if msg.is_request() {
            return Err(Closed::Protocol(format!(
                "the server sent a request ({:?}, seq {seq})",
                msg.kind()
            )));
        }
        let mut st = self.lock();
        let st = &mut *st;
        match st.entries.remove(&seq) {
            None => {
                return Err(Closed::Protocol(format!(
                    "the server sent {:?} for seq {seq}, which has no request pending",
                    msg.kind()
                )))
            }
            Some(Entry::Call { tx, permit, .. }) => {
                st.seqs.release(seq);
                self.give_back(st, permit);
                // A caller that has just gone finds the reply in its receiver.
                let _ = tx.send(msg);
            }
            Some(Entry::Abandoned {
                permit,
                effect,
                flushing,
                ..
            }) => {
                let error = matches!(msg, Message::Rerror { .. });
                if flushing {
                    // It crossed our flush. The Rflush follows; until then the
                    // number stays in use.
                    st.entries.insert(
                        seq,
                        Entry::Abandoned {
                            permit,
                            effect,
                            flushing,
                            replied_error: Some(error),
                        },
                    );
                } else {
                    // Its flush was still waiting for the slot: now it need not go.
                    st.deferred_flushes.retain(|s| *s != seq);
                    st.seqs.release(seq);
                    self.finish(st, permit, effect, Outcome::Replied { error });
                }
            }
            Some(Entry::Flush { oldseq }) => self.on_flush_reply(st, seq, oldseq, &msg),
            Some(Entry::Clunk { fid, permit }) => {
                st.seqs.release(seq);
                // A clunk releases the fid whatever the server answers.
                st.fids.release(u64::from(fid));
                self.give_back(st, permit);
            }
        }
        Ok(())
    }

    fn on_flush_reply(&self, st: &mut State, seq: u64, oldseq: u64, msg: &Message) {
        st.seqs.release(seq);
        st.flush_slot_free = true;
        if let Some(Entry::Abandoned {
            permit,
            effect,
            replied_error,
            ..
        }) = st.entries.remove(&oldseq)
        {
            match (msg, replied_error) {
                (Message::Rflush, None) => {
                    st.seqs.release(oldseq);
                    self.finish(st, permit, effect, Outcome::Flushed);
                }
                (_, Some(error)) => {
                    st.seqs.release(oldseq);
                    self.finish(st, permit, effect, Outcome::Replied { error });
                }
                (other, None) => {
                    // The server refused the flush (the spec says it never does):
                    // the request is still pending there, and its reply ends it.
                    tracing::warn!(seq, oldseq, reply = ?other.kind(), "server did not answer a flush with Rflush");
                    st.entries.insert(
                        oldseq,
                        Entry::Abandoned {
                            permit,
                            effect,
                            flushing: false,
                            replied_error: None,
                        },
                    );
                }
            }
        }
        self.next_flush(st);
    }
}

/// What settling a fid takes.
enum Settle {
    Nothing,
    /// The server does not hold it: free the number.
    Free(u32),
    /// The server holds it: clunk it.
    Clunk(u32),
}

/// The fid rules of docs/protocol.md, sections 9 and 13: a bind that was answered
/// without error bound the fid; a clunk that was answered released it, whatever
/// the answer; a request flushed before its reply did nothing.
fn settle(effect: Option<FidEffect>, outcome: Outcome) -> Settle {
    match (effect, outcome) {
        (None, _) => Settle::Nothing,
        (Some(FidEffect::Binds(fid)), Outcome::Replied { error: false })
        | (Some(FidEffect::Releases(fid)), Outcome::Flushed) => Settle::Clunk(fid),
        (Some(FidEffect::Binds(fid) | FidEffect::Releases(fid)), _) => Settle::Free(fid),
    }
}

/// Encodes a request, refusing one larger than `max_message`. The buffer is sized
/// up front so it never reallocates and leaves an unwiped copy of a secret behind.
pub(crate) fn encode_frame(frame: &Frame, limits: &Limits) -> Result<Outgoing, Error> {
    let data_len = match &frame.msg {
        Message::Tappend { data, .. } => data.len(),
        _ => 0,
    };
    let mut out = Zeroizing::new(Vec::with_capacity(HEADER_LEN + 64 + data_len));
    encode_into(frame, &mut out);
    if out.len() > limits.max_message as usize {
        return Err(Error::LimitExceeded(format!(
            "{:?} of {} bytes exceeds the negotiated max_message of {} bytes",
            frame.msg.kind(),
            out.len(),
            limits.max_message
        )));
    }
    Ok(out)
}

fn set_seq(frame: &mut [u8], seq: u64) {
    if let Some(header) = Header::parse(frame) {
        frame[..HEADER_LEN].copy_from_slice(&Header { seq, ..header }.to_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled(effect: FidEffect, outcome: Outcome) -> (&'static str, u32) {
        match settle(Some(effect), outcome) {
            Settle::Nothing => ("nothing", 0),
            Settle::Free(fid) => ("free", fid),
            Settle::Clunk(fid) => ("clunk", fid),
        }
    }

    #[test]
    fn abandoned_fids_are_settled_by_the_flush_rules() {
        let ok = Outcome::Replied { error: false };
        let err = Outcome::Replied { error: true };
        let flushed = Outcome::Flushed;
        // A bind that succeeded left a bound fid nobody holds: clunk it.
        assert_eq!(settled(FidEffect::Binds(5), ok), ("clunk", 5));
        // A failed or flushed bind bound nothing.
        assert_eq!(settled(FidEffect::Binds(5), err), ("free", 5));
        assert_eq!(settled(FidEffect::Binds(5), flushed), ("free", 5));
        // An answered clunk released the fid, whatever the answer.
        assert_eq!(settled(FidEffect::Releases(6), ok), ("free", 6));
        assert_eq!(settled(FidEffect::Releases(6), err), ("free", 6));
        // A flushed clunk did not happen: the fid is still bound.
        assert_eq!(settled(FidEffect::Releases(6), flushed), ("clunk", 6));
        assert!(matches!(settle(None, flushed), Settle::Nothing));
    }
}
