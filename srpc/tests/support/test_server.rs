//! A small sRPC server for the client tests, built from the proto crate: TLS with
//! an rcgen certificate made at test time, `version`, a fake two-round password
//! conversation, attach, walk/stat over a tiny in-memory tree, and endpoints
//! whose names say how they misbehave:
//!
//! | endpoint     | on append                                                       |
//! |--------------|-----------------------------------------------------------------|
//! | `echo`, `sub/leaf` | replies with the data                                     |
//! | `hold`       | never replies; a flush of it is answered (after a late reply when [`Knobs::late_reply`]) |
//! | `collect`    | holds requests until [`Knobs::collect`] are in, then replies to all in shuffled order |
//! | `gate`       | holds requests until the test calls [`TestServer::open_gate`], then echoes them |
//! | `close`      | closes the connection                                           |
//! | `garbage`    | replies with a malformed `Rappend` body                         |
//! | `huge`       | replies with a header declaring a 1 TiB body                    |
//! | `wrongtype`  | replies `Rclunk`                                                |
//! | `fail`       | replies `Rerror` permission_denied, errno 13                    |
//!
//! An empty append to a directory lists it (`/`, `/sub`); `/locked` is a directory
//! whose listing is refused with permission_denied, errno 13. `/sub/leaf` is the
//! one node with an SELinux label.
//!
//! Every request the server receives is logged for the tests to inspect.
#![allow(dead_code)]

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use srpc::client::{fingerprint_of, Client, Fingerprint, PasswordConversation, Session, Trust};
use srpc::proto::{
    check, decode_bytes, encode, encode_listing, AuthAnswers, AuthStep, Check, ErrorCode, Frame,
    Header, Kind, Limits, Message, Prompt, PromptStyle, Qid, QidType, Stat, PROTOCOL_VERSION,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The users the fake conversation accepts, with their passwords.
pub const USERS: &[(&str, &str)] = &[("alice", "wonderland"), ("bob", "builder")];

pub fn password_of(user: &str) -> &'static str {
    USERS
        .iter()
        .find(|(u, _)| *u == user)
        .map_or("no such user", |(_, p)| p)
}

/// The tree every user sees. Directories are `/`, `/sub` and `/locked`.
const TREE: &[&str] = &[
    "/",
    "/echo",
    "/hold",
    "/collect",
    "/gate",
    "/close",
    "/garbage",
    "/huge",
    "/wrongtype",
    "/fail",
    "/sub",
    "/sub/leaf",
    "/locked",
];

/// The label of `/sub/leaf`.
pub const LEAF_LABEL: &str = "system_u:object_r:srpc_leaf_t:s0";

fn is_dir(path: &str) -> bool {
    matches!(path, "/" | "/sub" | "/locked")
}

/// The parent directory of a node other than `/`.
fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(at) => &path[..at],
    }
}

/// What `Tstat` says about a node of [`TREE`] to `user`.
fn stat_of(path: &str, user: &str) -> Stat {
    Stat {
        qid: qid_of(path).unwrap(),
        name: path
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty())
            .unwrap_or("/")
            .to_owned(),
        mode: if is_dir(path) { 0o755 } else { 0o750 },
        uid: 1000,
        gid: 1000,
        owner: user.to_owned(),
        group: user.to_owned(),
        mtime: 1_700_000_000,
        label: (path == "/sub/leaf").then(|| LEAF_LABEL.to_owned()),
    }
}

fn qid_of(path: &str) -> Option<Qid> {
    let index = TREE.iter().position(|p| *p == path)?;
    Some(Qid {
        kind: if is_dir(path) {
            QidType::Dir
        } else {
            QidType::Endpoint
        },
        path: index as u64 + 1,
        version: 7,
    })
}

/// A certificate and its key.
pub struct Identity {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
    /// The DER SubjectPublicKeyInfo, as rcgen computed it.
    pub spki: Vec<u8>,
}

/// A self-signed certificate for `localhost`.
pub fn self_signed() -> Identity {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    Identity {
        cert: ck.cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()).into(),
        spki: ck.key_pair.public_key_der(),
    }
}

/// A certificate authority made at test time.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa { cert, key }
    }

    /// A server certificate for `localhost` issued by this CA.
    pub fn issue(&self) -> Identity {
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Identity {
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            spki: key.public_key_der(),
        }
    }

    pub fn write_pem(&self, path: &Path) {
        std::fs::write(path, self.cert.pem()).unwrap();
    }
}

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct Knobs {
    /// Requests `collect` gathers before answering them all.
    pub collect: usize,
    /// Before answering a flush of a held request, reply to that request anyway
    /// (a reply that crosses the flush).
    pub late_reply: bool,
    /// Answer `Tversion` with `Rerror unsupported_version`.
    pub reject_version: bool,
    /// The server's own limits (the answer is the minimum with the proposal).
    pub limits: Limits,
    /// Answer listings with a payload that is not a listing.
    pub malformed_listings: bool,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            collect: 1,
            late_reply: false,
            reject_version: false,
            limits: Limits::default(),
            malformed_listings: false,
        }
    }
}

#[derive(Default)]
struct Log {
    frames: Mutex<Vec<Frame>>,
    notify: Notify,
    /// Bumped by [`TestServer::open_gate`].
    gate: watch::Sender<u64>,
    /// Most requests outstanding at once on one connection, flushes included.
    max_outstanding: AtomicUsize,
}

/// A running test server; stops accepting when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub fingerprint: Fingerprint,
    log: Arc<Log>,
    accept: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl TestServer {
    /// A server with a self-signed certificate.
    pub async fn start(knobs: Knobs) -> TestServer {
        TestServer::start_with(self_signed(), knobs).await
    }

    pub async fn start_with(id: Identity, knobs: Knobs) -> TestServer {
        let fingerprint = fingerprint_of(&id.cert).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![id.cert], id.key)
        .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Log::default());
        let conn_log = Arc::clone(&log);
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let (knobs, log) = (knobs.clone(), Arc::clone(&conn_log));
                tokio::spawn(async move {
                    // Handshakes the client refuses (wrong pin, unknown CA) end here.
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve(tls, knobs, log).await;
                    }
                });
            }
        });
        TestServer {
            addr,
            fingerprint,
            log,
            accept,
        }
    }

    /// Every request received so far, in order of arrival.
    pub fn received(&self) -> Vec<Frame> {
        self.log.frames.lock().unwrap().clone()
    }

    /// The first received request `pred` accepts, waiting for it.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&Frame) -> bool) -> Frame {
        self.wait_for_after(0, what, pred).await
    }

    /// How many requests have been received: a mark for [`Self::wait_for_after`],
    /// so that a fid number reused later is not confused with its earlier use.
    pub fn mark(&self) -> usize {
        self.log.frames.lock().unwrap().len()
    }

    /// As [`Self::wait_for`], among the requests received after `mark`.
    pub async fn wait_for_after(
        &self,
        mark: usize,
        what: &str,
        pred: impl Fn(&Frame) -> bool,
    ) -> Frame {
        self.wait_until(what, |frames| {
            frames[mark..].iter().find(|f| pred(f)).cloned()
        })
        .await
    }

    /// Waits until `probe` finds something in the requests received so far (up
    /// to a generous bound that only guards against a hang).
    pub async fn wait_until<T>(&self, what: &str, probe: impl Fn(&[Frame]) -> Option<T>) -> T {
        let wait = async {
            loop {
                let notified = self.log.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(found) = probe(&self.log.frames.lock().unwrap()) {
                    return found;
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| panic!("the server never received {what}"))
    }

    /// Answers every request held at `gate` now (later ones wait for the next call).
    pub fn open_gate(&self) {
        self.log.gate.send_modify(|g| *g += 1);
    }

    /// The most requests that were outstanding at once on one connection.
    pub fn max_outstanding(&self) -> usize {
        self.log.max_outstanding.load(Ordering::SeqCst)
    }

    /// Dials this server, trusting its pinned key.
    pub async fn dial(&self) -> Client {
        Client::dial(self.addr, "localhost", Trust::Pin(self.fingerprint))
            .await
            .unwrap()
    }
}

/// Authenticates `user` (one of [`USERS`]) at `/`.
pub async fn login(client: &Client, user: &str) -> Session {
    client
        .auth(user, "/", &mut PasswordConversation::new(password_of(user)))
        .await
        .unwrap()
}

enum Out {
    Bytes(Vec<u8>),
    Close,
}

enum Node {
    Auth {
        user: String,
        aname: String,
        round: u8,
        ok: bool,
    },
    Tree {
        path: String,
        user: String,
    },
}

struct Conn {
    knobs: Knobs,
    log: Arc<Log>,
    out: mpsc::UnboundedSender<Out>,
    fids: HashMap<u32, Node>,
    held: Vec<u64>,
    collected: Vec<(u64, Bytes)>,
    gated: Vec<(u64, Bytes)>,
    /// Requests received and not yet answered, flushes included.
    outstanding: usize,
    /// The limits in force (the server's own until `Tversion`).
    limits: Limits,
    rng: u64,
}

async fn serve(tls: TlsStream<TcpStream>, knobs: Knobs, log: Arc<Log>) {
    let (mut r, mut w) = tokio::io::split(tls);
    let (out, mut rx) = mpsc::unbounded_channel::<Out>();
    tokio::spawn(async move {
        while let Some(item) = rx.recv().await {
            match item {
                Out::Bytes(b) => {
                    if w.write_all(&b).await.is_err() || w.flush().await.is_err() {
                        return;
                    }
                }
                Out::Close => {
                    let _ = w.shutdown().await;
                    return;
                }
            }
        }
    });
    let limits = knobs.limits;
    let mut conn = Conn {
        knobs,
        log,
        out,
        fids: HashMap::new(),
        held: Vec::new(),
        collected: Vec::new(),
        gated: Vec::new(),
        outstanding: 0,
        limits,
        rng: 0x9E37_79B9_7F4A_7C15,
    };
    let mut gate = conn.log.gate.subscribe();
    let mut buf = BytesMut::new();
    loop {
        match check(&buf, &limits) {
            Check::Complete(n) => {
                let bytes = buf.split_to(n).freeze();
                let frame =
                    decode_bytes(&bytes, &limits).expect("the client sent a malformed frame");
                if !conn.handle(frame) {
                    return;
                }
            }
            Check::Invalid(e) => panic!("the client sent an invalid frame header: {e}"),
            Check::Incomplete => tokio::select! {
                read = r.read_buf(&mut buf) => match read {
                    Ok(n) if n > 0 => {}
                    _ => return,
                },
                _ = gate.changed() => {
                    for (seq, data) in std::mem::take(&mut conn.gated) {
                        conn.reply(seq, Message::Rappend { data });
                    }
                }
            },
        }
    }
}

impl Conn {
    fn send(&self, seq: u64, msg: Message) {
        let _ = self.out.send(Out::Bytes(encode(&Frame::new(seq, msg))));
    }

    /// Answers a request (which is then no longer outstanding).
    fn reply(&mut self, seq: u64, msg: Message) {
        self.outstanding -= 1;
        self.send(seq, msg);
    }

    fn error(&mut self, seq: u64, code: ErrorCode, message: &str, errno: Option<i32>) {
        self.reply(
            seq,
            Message::Rerror {
                code,
                message: message.to_owned(),
                errno,
            },
        );
    }

    fn raw(&mut self, bytes: Vec<u8>) {
        self.outstanding -= 1;
        let _ = self.out.send(Out::Bytes(bytes));
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64: a fixed, repeatable shuffle.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Handles one request; false ends the connection.
    fn handle(&mut self, frame: Frame) -> bool {
        self.log.frames.lock().unwrap().push(frame.clone());
        self.log.notify.notify_waiters();
        let Frame { seq, msg } = frame;
        // Every request counts against max_pending, flushes included.
        self.outstanding += 1;
        self.log
            .max_outstanding
            .fetch_max(self.outstanding, Ordering::SeqCst);
        if self.outstanding > self.limits.max_pending as usize {
            self.error(seq, ErrorCode::LimitExceeded, "over max_pending", None);
            return true;
        }
        match msg {
            Message::Tversion { limits, .. } => {
                if self.knobs.reject_version {
                    self.error(
                        seq,
                        ErrorCode::UnsupportedVersion,
                        "this server speaks srpc/0 only",
                        None,
                    );
                } else {
                    let limits = limits.min(self.knobs.limits);
                    self.limits = limits;
                    self.reply(
                        seq,
                        Message::Rversion {
                            version: PROTOCOL_VERSION.to_owned(),
                            limits,
                        },
                    );
                }
            }
            Message::Tauth { afid, uname, aname } => {
                if self.fids.contains_key(&afid) {
                    return self.fid_in_use(seq);
                }
                self.fids.insert(
                    afid,
                    Node::Auth {
                        user: uname,
                        aname,
                        round: 0,
                        ok: false,
                    },
                );
                let aqid = Qid {
                    kind: QidType::Auth,
                    path: 10_000 + u64::from(afid),
                    version: 0,
                };
                self.reply(seq, Message::Rauth { aqid });
            }
            Message::Tattach {
                fid,
                afid,
                uname,
                aname,
            } => self.attach(seq, fid, afid, uname, &aname),
            Message::Twalk { fid, newfid, names } => self.walk(seq, fid, newfid, &names),
            Message::Tstat { fid } => self.stat(seq, fid),
            Message::Tclunk { fid } => {
                if self.fids.remove(&fid).is_some() {
                    self.reply(seq, Message::Rclunk);
                } else {
                    self.error(seq, ErrorCode::BadFid, "fid not bound", None);
                }
            }
            Message::Tappend { fid, data } => return self.append(seq, fid, data),
            Message::Tflush { oldseq } => {
                if let Some(at) = self.held.iter().position(|s| *s == oldseq) {
                    self.held.remove(at);
                    if self.knobs.late_reply {
                        self.reply(
                            oldseq,
                            Message::Rappend {
                                data: Bytes::from_static(b"late"),
                            },
                        );
                    } else {
                        self.outstanding -= 1;
                    }
                }
                self.reply(seq, Message::Rflush);
            }
            other => panic!("the client sent a reply: {other:?}"),
        }
        true
    }

    fn attach(&mut self, seq: u64, fid: u32, afid: u32, uname: String, aname: &str) {
        let authenticated = matches!(
            self.fids.get(&afid),
            Some(Node::Auth { user, aname: a, ok: true, .. }) if *user == uname && a == aname
        );
        if !authenticated {
            return self.error(seq, ErrorCode::AuthRequired, "not authenticated", None);
        }
        match self.fids.entry(fid) {
            Entry::Occupied(_) => self.error(seq, ErrorCode::FidInUse, "fid in use", None),
            Entry::Vacant(v) => {
                v.insert(Node::Tree {
                    path: "/".into(),
                    user: uname,
                });
                let qid = qid_of("/").unwrap();
                self.reply(seq, Message::Rattach { qid });
            }
        }
    }

    fn stat(&mut self, seq: u64, fid: u32) {
        let Some(Node::Tree { path, user }) = self.fids.get(&fid) else {
            return self.error(seq, ErrorCode::BadFid, "bad fid", None);
        };
        let stat = stat_of(path, user);
        self.reply(seq, Message::Rstat { stat });
    }

    fn fid_in_use(&mut self, seq: u64) -> bool {
        self.error(seq, ErrorCode::FidInUse, "fid in use", None);
        true
    }

    fn walk(&mut self, seq: u64, fid: u32, newfid: u32, names: &[String]) {
        let Some(Node::Tree { path, user }) = self.fids.get(&fid) else {
            return self.error(seq, ErrorCode::BadFid, "bad fid", None);
        };
        let (mut path, user) = (path.clone(), user.clone());
        if newfid != fid && self.fids.contains_key(&newfid) {
            return self.error(seq, ErrorCode::FidInUse, "fid in use", None);
        }
        let mut qids = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let next = if path == "/" {
                format!("/{name}")
            } else {
                format!("{path}/{name}")
            };
            match qid_of(&next) {
                Some(qid) if is_dir(&path) => {
                    qids.push(qid);
                    path = next;
                }
                _ if i == 0 => return self.error(seq, ErrorCode::NoSuchNode, "no such node", None),
                _ => return self.reply(seq, Message::Rwalk { qids }),
            }
        }
        self.fids.insert(newfid, Node::Tree { path, user });
        self.reply(seq, Message::Rwalk { qids });
    }

    fn append(&mut self, seq: u64, fid: u32, data: Bytes) -> bool {
        match self.fids.get_mut(&fid) {
            Some(Node::Auth {
                user, round, ok, ..
            }) => {
                match auth_step(user, round, ok, &data) {
                    Some(step) => self.reply(
                        seq,
                        Message::Rappend {
                            data: step.encode().into(),
                        },
                    ),
                    None => self.error(seq, ErrorCode::AuthFailed, "authentication failed", None),
                }
                true
            }
            Some(Node::Tree { path, user }) if is_dir(path) => {
                let (path, user) = (path.clone(), user.clone());
                self.list(seq, &path, &user, &data);
                true
            }
            Some(Node::Tree { path, user }) => {
                let (path, user) = (path.clone(), user.clone());
                self.call(seq, &path, &user, data)
            }
            None => {
                self.error(seq, ErrorCode::BadFid, "bad fid", None);
                true
            }
        }
    }

    /// An append to a directory: a listing when it carries no data.
    fn list(&mut self, seq: u64, path: &str, user: &str, data: &[u8]) {
        if !data.is_empty() {
            return self.error(seq, ErrorCode::NotEndpoint, "not an endpoint", None);
        }
        if path == "/locked" {
            let message = format!("{user} may not read {path}");
            return self.error(seq, ErrorCode::PermissionDenied, &message, Some(13));
        }
        if self.knobs.malformed_listings {
            let data = Bytes::from_static(br#"{"entries":[{"name":"x"}]}"#);
            return self.reply(seq, Message::Rappend { data });
        }
        let mut entries: Vec<Stat> = TREE
            .iter()
            .filter(|p| **p != "/" && parent_of(p) == path)
            .map(|p| stat_of(p, user))
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let data = encode_listing(&entries).into();
        self.reply(seq, Message::Rappend { data });
    }

    /// An append to an endpoint of the tree.
    fn call(&mut self, seq: u64, path: &str, user: &str, data: Bytes) -> bool {
        match path {
            "/echo" | "/sub/leaf" => self.reply(seq, Message::Rappend { data }),
            "/hold" => self.held.push(seq),
            "/gate" => self.gated.push((seq, data)),
            "/collect" => {
                self.collected.push((seq, data));
                if self.collected.len() >= self.knobs.collect {
                    let mut batch = std::mem::take(&mut self.collected);
                    for i in (1..batch.len()).rev() {
                        let j = usize::try_from(self.next_random() % (i as u64 + 1)).unwrap();
                        batch.swap(i, j);
                    }
                    for (seq, data) in batch {
                        self.reply(seq, Message::Rappend { data });
                    }
                }
            }
            "/close" => {
                let _ = self.out.send(Out::Close);
                return false;
            }
            "/garbage" => {
                // An Rappend whose control length points past the body.
                let header = Header {
                    kind: Kind::Rappend as u32,
                    seq,
                    body_len: 6,
                };
                let mut bytes = header.to_bytes().to_vec();
                bytes.extend_from_slice(&[0, 0, 0, 99, b'{', b'}']);
                self.raw(bytes);
            }
            "/huge" => {
                let header = Header {
                    kind: Kind::Rappend as u32,
                    seq,
                    body_len: 1 << 40,
                };
                self.raw(header.to_bytes().to_vec());
            }
            "/wrongtype" => self.reply(seq, Message::Rclunk),
            "/fail" => {
                let message = format!("permission denied for {user}");
                self.error(seq, ErrorCode::PermissionDenied, &message, Some(13));
            }
            _ => self.error(seq, ErrorCode::NotEndpoint, "not an endpoint", None),
        }
        true
    }
}

/// One round of the fake conversation: a welcome and a password prompt, then the
/// password again, then success. `None` is a failure.
fn auth_step(user: &str, round: &mut u8, ok: &mut bool, data: &[u8]) -> Option<AuthStep> {
    let answers = AuthAnswers::decode(data).expect("malformed answers");
    let answers: Vec<&str> = answers.0.iter().map(|a| a.as_str()).collect();
    let password = USERS.iter().find(|(u, _)| *u == user).map(|(_, p)| *p);
    let step = match (*round, password) {
        (0, _) if answers.is_empty() => AuthStep::Prompts(vec![
            Prompt {
                style: PromptStyle::Info,
                text: format!("Welcome, {user}"),
            },
            Prompt {
                style: PromptStyle::EchoOff,
                text: "Password: ".into(),
            },
        ]),
        (1, Some(pw)) if answers == ["", pw] => AuthStep::Prompts(vec![Prompt {
            style: PromptStyle::EchoOff,
            text: "Password again: ".into(),
        }]),
        (2, Some(pw)) if answers == [pw] => {
            *ok = true;
            AuthStep::Authenticated
        }
        _ => return None,
    };
    *round += 1;
    Some(step)
}
