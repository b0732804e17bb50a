//! One client connection: version negotiation, then requests handled
//! concurrently (pipelined), each answered by sequence number.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use srpc::frames::{write_batch, FrameReader, ReadError};
use srpc_proto::{
    encode_split, AuthAnswers, AuthStep, DeframeError, Encoded, ErrorCode, Frame, Limits, Message,
    Qid, QidType, RawFrame, PROTOCOL_VERSION,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use zeroize::Zeroize;

use super::budget::{Budget, Charge};
use super::session::{NodeFid, Session};
use super::Front;
use crate::ipc::{ToFront, ToMonitor};

/// For the TLS handshake and, separately, the version exchange: a client that
/// says nothing does not keep its connection slot.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Replies queued for the writer. Their bytes stay charged to the
/// connection's budget until written, so a client that stops reading stops
/// being read (see `budget.rs`).
const OUTBOX: usize = 64;

/// Largest answers object (a conversation append's data) the front takes, in
/// bytes (protocol section 10.3). Answers travel to the monitor in one
/// message of at most [`crate::ipc::MAX_MESSAGE`]; refusing bigger ones here
/// gives the client a true answer instead of a failed send.
pub const MAX_ANSWERS: usize = 16 * 1024;
// Room for the message's header besides the answers.
const _: () = assert!(MAX_ANSWERS + 1024 <= crate::ipc::MAX_MESSAGE);

/// A frame for the writer, with the budget charge it releases once written.
type Outgoing = (Encoded, Option<Charge>);

#[derive(Clone)]
enum Fid {
    /// A request is binding this fid right now.
    Reserved,
    Auth(Arc<AuthFid>),
    Node(Arc<NodeFid>),
}

/// An auth fid and where its conversation is.
struct AuthFid {
    id: u64,
    uname: String,
    aname: String,
    state: tokio::sync::Mutex<AuthState>,
    front: Arc<Front>,
    /// Counted in its connection's conversations while PAM runs for it.
    conversing: AtomicBool,
    conversations: Arc<AtomicU32>,
    /// Whether an append is in flight on it (section 10.3: one at a time).
    round: Mutex<Round>,
}

/// Where the appends on an auth fid are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    /// No append in flight.
    Idle,
    /// One append in flight.
    Busy,
    /// A second append came while one was in flight: the conversation is
    /// over, and the pending append must not succeed.
    Broken,
}

/// Why an append cannot begin a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clash {
    /// Another append is in flight: this one ends the conversation.
    InFlight,
    /// An earlier clash ended the conversation.
    Over,
}

/// The round of the append holding it; back to idle when dropped (also when
/// the append is flushed), unless a clash broke it.
struct RoundGuard<'a>(&'a Mutex<Round>);

impl<'a> RoundGuard<'a> {
    fn begin(round: &'a Mutex<Round>) -> Result<RoundGuard<'a>, Clash> {
        let mut r = lock(round);
        match *r {
            Round::Idle => {
                *r = Round::Busy;
                Ok(RoundGuard(round))
            }
            Round::Busy => {
                *r = Round::Broken;
                Err(Clash::InFlight)
            }
            Round::Broken => Err(Clash::Over),
        }
    }

    /// Ends the round; false when a clash broke it meanwhile. Deciding and
    /// ending in one step means a clash is seen either here or, after this,
    /// not at all (the next append then simply follows this one).
    fn finish(&self) -> bool {
        let mut r = lock(self.0);
        if *r == Round::Busy {
            *r = Round::Idle;
            true
        } else {
            false
        }
    }
}

impl Drop for RoundGuard<'_> {
    fn drop(&mut self) {
        let mut r = lock(self.0);
        if *r == Round::Busy {
            *r = Round::Idle;
        }
    }
}

impl AuthFid {
    /// Its conversation is over (or never was): the connection's count drops.
    fn end_conversation(&self) {
        if self.conversing.swap(false, Ordering::AcqRel) {
            self.conversations.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthState {
    Fresh,
    Running,
    Authenticated,
    Attached,
    Failed,
}

impl Drop for AuthFid {
    fn drop(&mut self) {
        self.end_conversation();
        // The monitor frees an authentication that never became a session.
        let state = self.state.try_lock().map_or(AuthState::Running, |s| *s);
        // (Failed too: a round abandoned half way leaves PAM waiting.)
        if matches!(
            state,
            AuthState::Running | AuthState::Authenticated | AuthState::Failed
        ) {
            let monitor = Arc::clone(&self.front.monitor);
            let auth = self.id;
            tokio::spawn(async move { monitor.notify(&ToMonitor::AuthAbort { auth }).await });
        }
    }
}

struct Conn {
    front: Arc<Front>,
    rhost: std::net::IpAddr,
    limits: Limits,
    fids: Mutex<HashMap<u32, Fid>>,
    inflight: Mutex<HashMap<u64, Inflight>>,
    out: mpsc::Sender<Outgoing>,
    budget: Arc<Budget>,
    /// PAM conversations running on this connection.
    conversations: Arc<AtomicU32>,
}

/// A request being handled.
struct Inflight {
    task: AbortHandle,
    /// Attach cannot be abandoned half way (the monitor would count a session
    /// the front never saw), so a flush waits for it instead.
    abortable: bool,
    done: Arc<tokio::sync::Notify>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Serves one TCP connection until the client closes it.
pub async fn serve_connection(
    front: Arc<Front>,
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            front.handshake_failed(peer, &e);
            return;
        }
        Err(_) => {
            front.handshake_failed(peer, &"timed out");
            return;
        }
    };
    let (mut rd, mut wr) = tokio::io::split(tls);
    let (out, mut outbox) = mpsc::channel::<Outgoing>(OUTBOX);
    let writer = tokio::spawn(async move {
        fn bytes(out: &Outgoing) -> [&[u8]; 2] {
            out.0.parts()
        }
        // Replies written in batches (one TLS record for many); their charges
        // are released once written.
        let mut written = Vec::new();
        while let Some(first) = outbox.recv().await {
            let more = || outbox.try_recv().ok();
            if write_batch(&mut wr, first, more, bytes, &mut written)
                .await
                .is_err()
            {
                break;
            }
            written.clear();
        }
        let _ = wr.shutdown().await;
    });

    let offered = front.settings();
    let server_limits = Limits {
        max_message: offered.max_message,
        max_fids: offered.max_fids,
        max_pending: offered.max_pending,
        ..Limits::default()
    };
    let mut frames = FrameReader::new();
    let negotiated = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        negotiate(&mut rd, &mut frames, &out, server_limits),
    )
    .await
    .unwrap_or(Negotiated::Gone);
    let limits = match negotiated {
        Negotiated::Agreed(limits) => limits,
        Negotiated::Refused => {
            // The refusal is written (and the TLS stream closed) first; then
            // whatever else the client sent is read and dropped until it
            // closes, so that closing on unread input — a TCP reset — does
            // not destroy the refusal before the client reads it.
            drop(out);
            let _ = writer.await;
            linger(&mut rd).await;
            return;
        }
        Negotiated::Gone => {
            drop(out);
            let _ = writer.await;
            return;
        }
    };
    let budget = Budget::new(
        offered.connection_buffer_bytes as usize,
        Arc::clone(&front.budget),
        usize::try_from(offered.total_buffer_bytes).unwrap_or(usize::MAX),
    );
    let conn = Arc::new(Conn {
        budget,
        front,
        rhost: peer.ip(),
        limits,
        fids: Mutex::new(HashMap::new()),
        inflight: Mutex::new(HashMap::new()),
        out,
        conversations: Arc::new(AtomicU32::new(0)),
    });
    read_requests(&conn, &mut rd, &mut frames).await;
    // The client is gone: abandon its requests, release its fids (sessions end
    // and unfinished authentications are aborted as their last reference goes).
    for (_, req) in lock(&conn.inflight).drain() {
        if req.abortable {
            req.task.abort();
        }
    }
    lock(&conn.fids).clear();
    drop(conn);
    let _ = writer.await;
}

/// The next frame; `Ok(None)` when the client is gone (or ended inside a
/// frame), `Err` for a bad header, which must be answered before closing.
async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    rd: &mut R,
    frames: &mut FrameReader,
    limits: &Limits,
) -> Result<Option<RawFrame>, (u64, srpc_proto::DecodeError)> {
    match frames.next(rd, limits).await {
        Ok(frame) => Ok(Some(frame)),
        Err(ReadError::Deframe(DeframeError::BadHeader { seq, error })) => Err((seq, error)),
        Err(e) => {
            tracing::debug!("connection ends: {e}");
            Ok(None)
        }
    }
}

/// How the version exchange ended.
enum Negotiated {
    /// These limits are in force.
    Agreed(Limits),
    /// The server answered with an `Rerror` and closes the connection.
    Refused,
    /// The client left (or said nothing in time); nothing to answer.
    Gone,
}

/// After a refusal: how long, and how many bytes, the front reads and drops
/// while it waits for the client to close.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1024 * 1024;

/// Reads and drops input until the client closes, within [`LINGER`] and
/// [`LINGER_BYTES`].
async fn linger<R: tokio::io::AsyncRead + Unpin>(rd: &mut R) {
    use tokio::io::AsyncReadExt;
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut read = 0;
        while read < LINGER_BYTES {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

async fn negotiate<R: tokio::io::AsyncRead + Unpin>(
    rd: &mut R,
    frames: &mut FrameReader,
    out: &mpsc::Sender<Outgoing>,
    server: Limits,
) -> Negotiated {
    // Until version is agreed, no frame may exceed the protocol's floor.
    let before = Limits {
        max_message: Limits::FLOOR.max_message,
        ..server
    };
    let frame = match read_frame(rd, frames, &before).await {
        Ok(Some(frame)) => frame,
        Ok(None) => return Negotiated::Gone,
        Err((seq, e)) => {
            let error = Message::error(e.code(), e.to_string());
            let _ = out
                .send((encode_split(&Frame::new(seq, error)), None))
                .await;
            return Negotiated::Refused;
        }
    };
    let (seq, reply, agreed) = match frame.decode(&before) {
        Ok(Frame {
            seq,
            msg: Message::Tversion { version, limits },
        }) => {
            if version != PROTOCOL_VERSION {
                let m = format!(
                    "version {version:?} is not supported (this server speaks {PROTOCOL_VERSION})"
                );
                (seq, Message::error(ErrorCode::UnsupportedVersion, m), None)
            } else if limits.min(Limits::FLOOR) != Limits::FLOOR {
                let m = "proposed limits are below the protocol's minimums";
                (seq, Message::error(ErrorCode::UnsupportedVersion, m), None)
            } else {
                let agreed = limits.min(server);
                (
                    seq,
                    Message::Rversion {
                        version: PROTOCOL_VERSION.into(),
                        limits: agreed,
                    },
                    Some(agreed),
                )
            }
        }
        Ok(Frame { seq, .. }) => (
            seq,
            Message::error(ErrorCode::Protocol, "the first request must be version"),
            None,
        ),
        Err(e) => (frame.seq(), Message::error(e.code(), e.to_string()), None),
    };
    if out
        .send((encode_split(&Frame::new(seq, reply)), None))
        .await
        .is_err()
    {
        return Negotiated::Gone;
    }
    agreed.map_or(Negotiated::Refused, Negotiated::Agreed)
}

/// A connection that holds no session gives its slot back after the
/// unauthenticated timeout, whatever it sends meanwhile (audit M3). Checked
/// every half timeout, so it closes after 1 to 1.5 times the timeout.
struct Sessionless {
    timeout: Duration,
    check: tokio::time::Interval,
    since: Option<Instant>,
}

impl Sessionless {
    fn new(settings: &crate::ipc::FrontSettings) -> Sessionless {
        let timeout = Duration::from_secs(u64::from(settings.unauthenticated_timeout_secs));
        Sessionless {
            timeout,
            check: tokio::time::interval((timeout / 2).max(Duration::from_secs(1))),
            since: Some(Instant::now()),
        }
    }

    fn expired(&mut self, conn: &Conn) -> bool {
        if conn.has_session() {
            self.since = None;
            return false;
        }
        if self.since.get_or_insert_with(Instant::now).elapsed() < self.timeout {
            return false;
        }
        tracing::info!(
            peer = %conn.rhost,
            "closing a connection that had no session for {}s",
            self.timeout.as_secs()
        );
        true
    }
}

async fn read_requests<R: tokio::io::AsyncRead + Unpin>(
    conn: &Arc<Conn>,
    rd: &mut R,
    frames: &mut FrameReader,
) {
    let mut draining = conn.front.draining.subscribe();
    let mut idle = Sessionless::new(&conn.front.settings());
    loop {
        // Backpressure: while the replies this connection holds (or the
        // front's total) are over budget, the next request is not read.
        let read = tokio::select! {
            read = async {
                conn.budget.room().await;
                read_frame(rd, frames, &conn.limits).await
            } => Some(read),
            _ = draining.wait_for(|d| *d) => None,
            _ = idle.check.tick() => {
                if idle.expired(conn) {
                    return;
                }
                continue;
            }
        };
        let Some(read) = read else {
            // Shutting down: read nothing more, answer what is in flight.
            while !lock(&conn.inflight).is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            return;
        };
        let frame = match read {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err((seq, e)) => {
                // A bad header leaves no way to find the next frame: say why, close.
                conn.reply_now(seq, Message::error(e.code(), e.to_string()))
                    .await;
                return;
            }
        };
        // Held until the reply is written: the decoded request shares the
        // frame's bytes, and the reply takes over the charge.
        let charge = conn.budget.charge(frame.bytes().len());
        let Frame { seq, msg } = match frame.decode(&conn.limits) {
            Ok(f) => f,
            Err(e) => {
                conn.reply_now(frame.seq(), Message::error(e.code(), e.to_string()))
                    .await;
                continue;
            }
        };
        drop(frame);
        if let Message::Tflush { oldseq } = msg {
            if lock(&conn.inflight).len() >= conn.limits.max_pending as usize {
                let m = format!("more than {} requests in flight", conn.limits.max_pending);
                conn.reply_now(seq, Message::error(ErrorCode::LimitExceeded, m))
                    .await;
            } else {
                conn.flush(seq, oldseq).await;
            }
            continue;
        }
        if !msg.is_request() || matches!(msg, Message::Tversion { .. }) {
            let m = format!("{:?} is not a request here", msg.kind());
            conn.reply_now(seq, Message::error(ErrorCode::Protocol, m))
                .await;
            continue;
        }
        let refusal = {
            let inflight = lock(&conn.inflight);
            if inflight.contains_key(&seq) {
                Some(Message::error(
                    ErrorCode::Protocol,
                    format!("sequence number {seq} is already in flight"),
                ))
            } else if inflight.len() >= conn.limits.max_pending as usize {
                Some(Message::error(
                    ErrorCode::LimitExceeded,
                    format!("more than {} requests in flight", conn.limits.max_pending),
                ))
            } else {
                None
            }
        };
        if let Some(refusal) = refusal {
            conn.reply_now(seq, refusal).await;
            continue;
        }
        let task_conn = Arc::clone(conn);
        let abortable = !matches!(msg, Message::Tattach { .. });
        // What the request's fid names is fixed now, in the order requests
        // arrive: a clunk read after it cannot take the node from under it
        // (section 11.3), however the tasks are scheduled.
        let pinned = conn.pin(&msg);
        // Registered under the lock the task takes to finish, so a task cannot
        // finish before it is registered.
        let mut inflight = lock(&conn.inflight);
        let task = tokio::spawn(async move {
            let reply = task_conn.handle(msg, pinned).await;
            task_conn.finish(seq, reply, charge).await;
        });
        inflight.insert(
            seq,
            Inflight {
                task: task.abort_handle(),
                abortable,
                done: Arc::new(tokio::sync::Notify::new()),
            },
        );
    }
}

impl Conn {
    async fn reply_now(&self, seq: u64, msg: Message) {
        let _ = self
            .out
            .send((encode_split(&Frame::new(seq, msg)), None))
            .await;
    }

    /// Sends a request's reply unless the request was flushed meanwhile. The
    /// request's charge becomes the reply's until the writer has written it.
    async fn finish(&self, seq: u64, msg: Message, mut charge: Charge) {
        let mut frame = encode_split(&Frame::new(seq, msg));
        if frame.len() > self.limits.max_message as usize {
            // The client agreed to nothing larger (a handler's big reply).
            let m = format!(
                "the reply is {} bytes, over the connection's max_message of {}",
                frame.len(),
                self.limits.max_message
            );
            frame = encode_split(&Frame::new(
                seq,
                Message::error(ErrorCode::LimitExceeded, m),
            ));
        }
        charge.resize(frame.len());
        let Ok(permit) = self.out.reserve().await else {
            return;
        };
        let mut inflight = lock(&self.inflight);
        if let Some(req) = inflight.remove(&seq) {
            permit.send((frame, Some(charge)));
            req.done.notify_waiters();
        }
    }

    /// Abandons `oldseq`: its reply has been queued already or never will be.
    async fn flush(self: &Arc<Self>, seq: u64, oldseq: u64) {
        let wait = {
            let mut inflight = lock(&self.inflight);
            match inflight.get(&oldseq) {
                Some(req) if req.abortable => {
                    if let Some(req) = inflight.remove(&oldseq) {
                        req.task.abort();
                    }
                    None
                }
                // Created under the lock: the request cannot finish unseen.
                Some(req) => Some(Arc::clone(&req.done).notified_owned()),
                None => None,
            }
        };
        match wait {
            None => self.reply_now(seq, Message::Rflush).await,
            Some(done) => {
                // Answer the flush after the request's own reply.
                let conn = Arc::clone(self);
                tokio::spawn(async move {
                    done.await;
                    conn.reply_now(seq, Message::Rflush).await;
                });
            }
        }
    }

    /// What the fid a walk, stat or append names is bound to, as it is read.
    fn pin(&self, msg: &Message) -> Option<Fid> {
        let fid = match msg {
            Message::Tstat { fid } | Message::Tappend { fid, .. } | Message::Twalk { fid, .. } => {
                *fid
            }
            _ => return None,
        };
        let mut fids = lock(&self.fids);
        let pinned = fids.get(&fid).cloned();
        if let Some(Fid::Node(node)) = &pinned {
            if node.session.is_revoked() {
                // Killed by an administrator: the fid goes now (its worker
                // fid is clunked as the last reference drops); this request
                // is told why ([`Conn::node_of`]), later ones get bad_fid.
                fids.remove(&fid);
            }
        }
        pinned
    }

    async fn handle(self: &Arc<Self>, msg: Message, pinned: Option<Fid>) -> Message {
        match msg {
            Message::Tauth { afid, uname, aname } => self.auth(afid, uname, aname),
            Message::Tattach {
                fid,
                afid,
                uname,
                aname,
            } => self.attach(fid, afid, &uname, &aname).await,
            Message::Twalk { fid, newfid, names } => {
                self.walk(fid, pinned.as_ref(), newfid, names).await
            }
            Message::Tstat { fid } => match Self::node_of(fid, pinned.as_ref()) {
                Ok(node) => {
                    self.forward(&node, "stat", |wfid| Message::Tstat { fid: wfid })
                        .await
                }
                Err(e) => e,
            },
            Message::Tclunk { fid } => self.clunk(fid),
            Message::Tappend { fid, data } => self.append(fid, pinned.as_ref(), data).await,
            other => Message::error(
                ErrorCode::Protocol,
                format!("{:?} is not a request here", other.kind()),
            ),
        }
    }

    /// Reserves `fid` for a request that will bind it.
    fn reserve(&self, fid: u32) -> Result<Reservation<'_>, Message> {
        let mut fids = lock(&self.fids);
        if fids.contains_key(&fid) {
            return Err(Message::error(
                ErrorCode::FidInUse,
                format!("fid {fid} is in use"),
            ));
        }
        if fids.len() >= self.limits.max_fids as usize {
            return Err(Message::error(
                ErrorCode::LimitExceeded,
                format!("more than {} fids bound", self.limits.max_fids),
            ));
        }
        fids.insert(fid, Fid::Reserved);
        Ok(Reservation {
            conn: self,
            fid,
            done: false,
        })
    }

    /// Whether any session is attached on this connection.
    fn has_session(&self) -> bool {
        lock(&self.fids).values().any(|f| matches!(f, Fid::Node(_)))
    }

    /// The node `fid` was bound to when its request was read ([`Conn::pin`]).
    fn node_of(fid: u32, pinned: Option<&Fid>) -> Result<Arc<NodeFid>, Message> {
        match pinned {
            // Its fid went when the request was read (`pin`).
            Some(Fid::Node(node)) if node.session.is_revoked() => {
                Err(super::session::revoked_error())
            }
            Some(Fid::Node(node)) => Ok(Arc::clone(node)),
            Some(Fid::Auth(_)) => Err(Message::error(
                ErrorCode::BadFid,
                format!("fid {fid} is an auth fid"),
            )),
            Some(Fid::Reserved) | None => Err(Message::error(
                ErrorCode::BadFid,
                format!("fid {fid} is not bound"),
            )),
        }
    }

    fn auth(self: &Arc<Self>, afid: u32, uname: String, aname: String) -> Message {
        let reservation = match self.reserve(afid) {
            Ok(r) => r,
            Err(e) => return e,
        };
        let id = self.front.monitor.new_auth_id();
        reservation.bind(Fid::Auth(Arc::new(AuthFid {
            id,
            uname,
            aname,
            state: tokio::sync::Mutex::new(AuthState::Fresh),
            front: Arc::clone(&self.front),
            conversing: AtomicBool::new(false),
            conversations: Arc::clone(&self.conversations),
            round: Mutex::new(Round::Idle),
        })));
        Message::Rauth {
            aqid: Qid {
                kind: QidType::Auth,
                path: id,
                version: 0,
            },
        }
    }

    async fn append(self: &Arc<Self>, fid: u32, pinned: Option<&Fid>, data: Bytes) -> Message {
        if let Some(Fid::Auth(auth)) = pinned {
            return self.converse(auth, data).await;
        }
        let node = match Self::node_of(fid, pinned) {
            Ok(node) => node,
            Err(e) => return e,
        };
        // Directories too: an empty append lists one (the worker decides).
        let op = if node.kind == QidType::Dir {
            "list"
        } else {
            node.session
                .calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            "call"
        };
        self.forward(&node, op, move |wfid| Message::Tappend { fid: wfid, data })
            .await
    }

    /// One round of the PAM conversation on an auth fid.
    async fn converse(&self, auth: &Arc<AuthFid>, data: Bytes) -> Message {
        let round = match RoundGuard::begin(&auth.round) {
            Ok(round) => round,
            Err(clash) => {
                wipe(data);
                return self.clash(auth, clash).await;
            }
        };
        if data.len() > MAX_ANSWERS {
            // Refused before anything reads it; the conversation goes on.
            let m = format!(
                "the answers are {} bytes, over the server's limit of {MAX_ANSWERS} bytes \
                 for one append on an auth fid",
                data.len()
            );
            wipe(data);
            return Message::error(ErrorCode::LimitExceeded, m);
        }
        let answers = AuthAnswers::decode(&data);
        // The answers are secrets: wipe the frame's copy once decoded.
        wipe(data);
        let answers = match answers {
            Ok(a) => a,
            Err(e) => return Message::error(ErrorCode::Malformed, format!("auth answers: {e}")),
        };
        // Any append after a clash waits its turn here, then finds the state.
        let mut state = auth.state.lock().await;
        // Until the monitor answers, an abandoned round abandons the whole
        // authentication: PAM cannot be rewound.
        let previous = *state;
        *state = AuthState::Failed;
        let (msg, payload) = match previous {
            AuthState::Fresh if answers.0.is_empty() => {
                // Bounded here before the monitor is asked (audit H3); the
                // monitor bounds per source and in all.
                let max = self.front.settings().auth_per_connection;
                let admitted = self
                    .conversations
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < max).then_some(n + 1)
                    })
                    .is_ok();
                if !admitted {
                    *state = AuthState::Fresh;
                    return Message::error(
                        ErrorCode::LimitExceeded,
                        format!(
                            "{max} logins are already in progress on this connection \
                             (limits.auth_conversations_per_connection)"
                        ),
                    );
                }
                auth.conversing.store(true, Ordering::Release);
                (
                    ToMonitor::AuthStart {
                        auth: auth.id,
                        user: auth.uname.clone(),
                        aname: auth.aname.clone(),
                        rhost: self.rhost.to_string(),
                    },
                    zeroize::Zeroizing::new(Vec::new()),
                )
            }
            // No prompt was asked, so any answer is one too many: the wrong
            // number of answers (section 10.3), which ends the conversation.
            AuthState::Fresh => {
                return Message::error(
                    ErrorCode::Protocol,
                    "answers before any prompt (the first append on an auth fid carries \
                     none); the conversation is over",
                )
            }
            AuthState::Running => (ToMonitor::AuthAnswer { auth: auth.id }, answers.encode()),
            AuthState::Authenticated | AuthState::Attached => {
                *state = previous;
                return Message::error(
                    ErrorCode::BadFid,
                    "this conversation is over: the user is authenticated",
                );
            }
            AuthState::Failed => {
                return Message::error(
                    ErrorCode::BadFid,
                    "this conversation is over; clunk the auth fid and start again",
                )
            }
        };
        drop(answers);
        if payload.len() > MAX_ANSWERS {
            // Not reached: canonical answers are never longer than the
            // client's; checked so that the send below cannot fail on size.
            return Message::error(
                ErrorCode::LimitExceeded,
                format!("the answers are over the server's limit of {MAX_ANSWERS} bytes"),
            );
        }
        let reply = self.front.monitor.request(auth.id, &msg, &payload).await;
        if !round.finish() {
            return self.broken(auth).await;
        }
        let Ok(reply) = reply else {
            return Message::error(ErrorCode::Unavailable, "srpcd is shutting down");
        };
        step_of(auth, &mut state, &reply)
    }

    /// The answer to an append whose round a second append broke: whatever
    /// PAM said, the conversation is over (section 10.3). Told to the
    /// monitor again in case it saw this round only after the clash's abort.
    async fn broken(&self, auth: &AuthFid) -> Message {
        auth.end_conversation();
        self.front
            .monitor
            .notify(&ToMonitor::AuthAbort { auth: auth.id })
            .await;
        Message::error(
            ErrorCode::Protocol,
            "another append on this auth fid came while this one was in flight; \
             the conversation is over",
        )
    }

    /// An append that found another in flight ends the conversation
    /// (section 10.3); the one in flight is woken and fails too.
    async fn clash(&self, auth: &AuthFid, clash: Clash) -> Message {
        match clash {
            Clash::InFlight => {
                self.front
                    .monitor
                    .notify(&ToMonitor::AuthAbort { auth: auth.id })
                    .await;
                Message::error(
                    ErrorCode::Protocol,
                    "an append on this auth fid was already in flight; the conversation \
                     is over: clunk the auth fid and start again",
                )
            }
            Clash::Over => Message::error(
                ErrorCode::BadFid,
                "this conversation is over; clunk the auth fid and start again",
            ),
        }
    }

    async fn attach(self: &Arc<Self>, fid: u32, afid: u32, uname: &str, aname: &str) -> Message {
        let auth = match lock(&self.fids).get(&afid) {
            Some(Fid::Auth(auth)) => Arc::clone(auth),
            _ => {
                return Message::error(
                    ErrorCode::AuthRequired,
                    format!("fid {afid} is not an auth fid"),
                )
            }
        };
        if auth.uname != uname || auth.aname != aname {
            return Message::error(
                ErrorCode::AuthRequired,
                "uname and aname must be those the auth fid was opened for",
            );
        }
        let reservation = match self.reserve(fid) {
            Ok(r) => r,
            Err(e) => return e,
        };
        let mut state = auth.state.lock().await;
        match *state {
            AuthState::Authenticated => {}
            AuthState::Attached => {
                return Message::error(ErrorCode::AuthRequired, "the auth fid is already used")
            }
            _ => return Message::error(ErrorCode::AuthRequired, "authentication is not complete"),
        }
        match Session::attach(&self.front, auth.id, aname).await {
            Ok((session, link, wfid, qid)) => {
                *state = AuthState::Attached;
                reservation.bind(Fid::Node(Arc::new(NodeFid {
                    session,
                    bound: Mutex::new((link, wfid)),
                    path: Vec::new(),
                    kind: qid.kind,
                })));
                Message::Rattach { qid }
            }
            Err(e) => e,
        }
    }

    async fn walk(
        self: &Arc<Self>,
        fid: u32,
        pinned: Option<&Fid>,
        newfid: u32,
        names: Vec<String>,
    ) -> Message {
        let from = match Self::node_of(fid, pinned) {
            Ok(node) => node,
            Err(e) => return e,
        };
        let reservation = if newfid == fid {
            None
        } else {
            match self.reserve(newfid) {
                Ok(r) => Some(r),
                Err(e) => return e,
            }
        };
        let (link, wfid) = match from.session.live(&from).await {
            Ok(bound) => bound,
            Err(e) => return e,
        };
        let new_wfid = link.new_fid();
        let request = Message::Twalk {
            fid: wfid,
            newfid: new_wfid,
            names: names.clone(),
        };
        let Ok(reply) = link
            .call(request, Some(Message::Tclunk { fid: new_wfid }))
            .await
        else {
            return super::worker_link::link_down_error();
        };
        let qids = match reply {
            Message::Rwalk { qids } => qids,
            err @ Message::Rerror { .. } => {
                let mut path = from.path.clone();
                path.extend(names);
                self.audit_denial(&from.session, &path, "walk", &err);
                return err;
            }
            other => {
                return Message::error(
                    ErrorCode::Internal,
                    format!("worker answered walk with {:?}", other.kind()),
                )
            }
        };
        if qids.len() < names.len() {
            return Message::Rwalk { qids };
        }
        let kind = qids.last().map_or(from.kind, |q| q.kind);
        let mut path = from.path.clone();
        path.extend(names);
        let node = Fid::Node(Arc::new(NodeFid {
            session: Arc::clone(&from.session),
            bound: Mutex::new((link, new_wfid)),
            path,
            kind,
        }));
        match reservation {
            Some(r) => r.bind(node),
            // Walking a fid onto itself moves it; the old binding is clunked
            // as its NodeFid drops.
            None => {
                lock(&self.fids).insert(fid, node);
            }
        }
        Message::Rwalk { qids }
    }

    fn clunk(&self, fid: u32) -> Message {
        let mut fids = lock(&self.fids);
        match fids.get(&fid) {
            Some(Fid::Auth(_) | Fid::Node(_)) => {
                fids.remove(&fid);
                Message::Rclunk
            }
            Some(Fid::Reserved) | None => {
                Message::error(ErrorCode::BadFid, format!("fid {fid} is not bound"))
            }
        }
    }

    /// Sends a request about `node` to its worker (relinking if it died);
    /// `op` names it in the audit trail should the kernel refuse it.
    async fn forward(
        &self,
        node: &Arc<NodeFid>,
        op: &str,
        make: impl FnOnce(u32) -> Message,
    ) -> Message {
        let (link, wfid) = match node.session.live(node).await {
            Ok(bound) => bound,
            Err(e) => return e,
        };
        match link.call(make(wfid), None).await {
            Ok(reply) => {
                self.audit_denial(&node.session, &node.path, op, &reply);
                reply
            }
            Err(_) => super::worker_link::link_down_error(),
        }
    }

    /// A kernel refusal on the session's behalf goes to the audit trail. The
    /// user, the client and the path are the front's own (its session and fid
    /// tables); only the errno is the worker's word.
    fn audit_denial(&self, session: &Session, path: &[String], op: &str, reply: &Message) {
        if let Message::Rerror {
            code: ErrorCode::PermissionDenied,
            errno,
            ..
        } = reply
        {
            let endpoint = endpoint_path(&session.aname, path);
            crate::audit::Event::CallDenied {
                user: &session.user,
                remote: self.rhost,
                endpoint: &endpoint,
                operation: op,
                errno: *errno,
            }
            .emit();
        }
    }
}

/// The full path of a node: the attach path, then the names walked from it.
fn endpoint_path(aname: &str, path: &[String]) -> String {
    let mut full = aname.trim_end_matches('/').to_owned();
    for name in path {
        full.push('/');
        full.push_str(name);
    }
    if full.is_empty() {
        full.push('/');
    }
    full
}

/// The client's answer to the monitor's reply to one round, and where the
/// conversation is after it.
fn step_of(
    auth: &AuthFid,
    state: &mut AuthState,
    reply: &crate::ipc::Envelope<ToFront>,
) -> Message {
    match &reply.msg {
        ToFront::AuthStep { .. } => match AuthStep::decode(&reply.payload) {
            Ok(step) => {
                *state = if step == AuthStep::Authenticated {
                    auth.end_conversation();
                    AuthState::Authenticated
                } else {
                    AuthState::Running
                };
                Message::Rappend {
                    data: Bytes::copy_from_slice(&reply.payload),
                }
            }
            Err(e) => Message::error(ErrorCode::Internal, format!("monitor step: {e}")),
        },
        ToFront::Failed { code, message, .. } => {
            auth.end_conversation();
            Message::error(ErrorCode::from_number(*code), message.clone())
        }
        ToFront::Worker { .. }
        | ToFront::Configure { .. }
        | ToFront::Listener
        | ToFront::Revoke { .. } => {
            Message::error(ErrorCode::Internal, "the monitor answered out of turn")
        }
    }
}

/// Wipes a frame's copy of answers (secrets) when no one else holds it.
fn wipe(data: Bytes) {
    if let Ok(mut raw) = data.try_into_mut() {
        raw.zeroize();
    }
}

/// A fid reserved by an in-flight request: bound on success, released when
/// the request fails or is flushed.
struct Reservation<'a> {
    conn: &'a Conn,
    fid: u32,
    done: bool,
}

impl Reservation<'_> {
    fn bind(mut self, fid: Fid) {
        lock(&self.conn.fids).insert(self.fid, fid);
        self.done = true;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut fids = lock(&self.conn.fids);
            if matches!(fids.get(&self.fid), Some(Fid::Reserved)) {
                fids.remove(&self.fid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_append_breaks_the_round_and_the_first_cannot_finish() {
        let round = Mutex::new(Round::Idle);
        let first = RoundGuard::begin(&round).unwrap();
        assert_eq!(RoundGuard::begin(&round).err(), Some(Clash::InFlight));
        assert!(!first.finish(), "the pending append must not succeed");
        drop(first);
        // Broken for good: later appends find the conversation over.
        assert_eq!(RoundGuard::begin(&round).err(), Some(Clash::Over));
    }

    #[test]
    fn rounds_one_after_another_are_fine() {
        let round = Mutex::new(Round::Idle);
        for _ in 0..3 {
            let r = RoundGuard::begin(&round).unwrap();
            assert!(r.finish());
        }
        // A round abandoned half way (a flushed append) frees the fid too.
        drop(RoundGuard::begin(&round).unwrap());
        assert!(RoundGuard::begin(&round).is_ok());
    }
}
