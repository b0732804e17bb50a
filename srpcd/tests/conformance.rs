//! Where the server used to disagree with docs/protocol.md (issue 12): each
//! test drives the real daemon, with real users, the way the spec says a
//! client may, and checks the exact answer the spec gives. Wire-level cases
//! the client library cannot produce (a malformed first `Tversion`, two
//! appends in flight on one auth fid) are sent as raw frames over TLS.
//! Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "support/pam_fixture.rs"]
mod pam_fixture;
#[path = "support/raw_tls.rs"]
mod raw_tls;
#[path = "support/daemon.rs"]
mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use pam_fixture::Fixture;
use srpc::client::PasswordConversation;
use srpc_proto::{AuthAnswers, AuthStep, ErrorCode, Header, Kind, Limits, Message};
use support::{Daemon, Options};
use zeroize::Zeroizing;

const PASSWORD: &str = "conformance pw";
/// The front's limit on one append's answers (protocol section 10.3).
const MAX_ANSWERS: usize = 16 * 1024;

fn daemon(fx: &mut Fixture, build_tree: impl FnOnce(&Path)) -> Daemon {
    let opts = Options {
        service: fx.unix_service(),
        idle_secs: 60,
        extra: String::new(),
    };
    support::start(fx, &opts, build_tree)
}

/// A bare TLS client speaking frames itself.
mod raw {
    use srpc::frames::{FrameReader, ReadError};
    use srpc_proto::{encode, Frame, Limits, Message, PROTOCOL_VERSION};
    use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
    use tokio::net::TcpStream;
    use tokio_rustls::client::TlsStream;

    pub struct Conn {
        rd: ReadHalf<TlsStream<TcpStream>>,
        wr: Option<WriteHalf<TlsStream<TcpStream>>>,
        frames: FrameReader,
        limits: Limits,
    }

    impl Conn {
        /// TLS only: nothing sent yet.
        pub async fn tls(addr: &str) -> Conn {
            let tls = super::raw_tls::connect(addr).await;
            let (rd, wr) = tokio::io::split(tls);
            Conn {
                rd,
                wr: Some(wr),
                frames: FrameReader::new(),
                limits: Limits::default(),
            }
        }

        /// TLS and the version exchange.
        pub async fn connect(addr: &str) -> Conn {
            let mut c = Conn::tls(addr).await;
            let version = Message::Tversion {
                version: PROTOCOL_VERSION.into(),
                limits: Limits::default(),
            };
            let reply = c.rpc(0, version).await;
            let Message::Rversion { limits, .. } = reply else {
                panic!("version: {reply:?}")
            };
            c.limits = limits;
            c
        }

        /// Writes `bytes` from a task of its own (the write half goes with
        /// it), so a write the server does not read cannot block the test;
        /// write errors are ignored (a reset is what the test looks for).
        pub fn send_more(&mut self, bytes: Vec<u8>) -> tokio::task::JoinHandle<()> {
            let mut wr = self.wr.take().unwrap();
            tokio::spawn(async move {
                let _ = wr.write_all(&bytes).await;
                let _ = wr.flush().await;
            })
        }

        pub async fn send_bytes(&mut self, bytes: &[u8]) {
            let wr = self.wr.as_mut().unwrap();
            wr.write_all(bytes).await.unwrap();
            wr.flush().await.unwrap();
        }

        pub async fn send(&mut self, seq: u64, msg: Message) {
            self.send_bytes(&encode(&Frame::new(seq, msg))).await;
        }

        /// The next frame, or `None` when the server closed the connection.
        pub async fn next(&mut self) -> Option<Frame> {
            match self.frames.next(&mut self.rd, &self.limits).await {
                Ok(raw) => Some(raw.decode(&self.limits).unwrap()),
                // A close without TLS close_notify is closed all the same.
                Err(ReadError::Closed | ReadError::Io(_)) => None,
                Err(e) => panic!("reading: {e}"),
            }
        }

        pub async fn recv(&mut self) -> Frame {
            self.next().await.expect("the server closed the connection")
        }

        pub async fn rpc(&mut self, seq: u64, msg: Message) -> Message {
            self.send(seq, msg).await;
            let reply = self.recv().await;
            assert_eq!(reply.seq, seq);
            reply.msg
        }
    }
}

/// The code and message of an `Rerror`.
fn error_of(msg: &Message) -> (ErrorCode, String) {
    match msg {
        Message::Rerror { code, message, .. } => (*code, message.clone()),
        other => panic!("expected an Rerror, got {other:?}"),
    }
}

fn answers(list: &[&str]) -> bytes::Bytes {
    AuthAnswers(
        list.iter()
            .map(|a| Zeroizing::new((*a).to_owned()))
            .collect(),
    )
    .encode()
    .to_vec()
    .into()
}

fn append(fid: u32, data: bytes::Bytes) -> Message {
    Message::Tappend { fid, data }
}

/// Opens auth fid `afid` for `user` at `/` and takes the first step: the
/// prompts (pam_unix asks for the password only).
async fn start_login(c: &mut raw::Conn, afid: u32, user: &str, seq: u64) {
    let auth = Message::Tauth {
        afid,
        uname: user.into(),
        aname: "/".into(),
    };
    assert!(matches!(c.rpc(seq, auth).await, Message::Rauth { .. }));
    let reply = c.rpc(seq + 1, append(afid, answers(&[]))).await;
    let Message::Rappend { data } = reply else {
        panic!("first step: {reply:?}")
    };
    let AuthStep::Prompts(prompts) = AuthStep::decode(&data).unwrap() else {
        panic!("no prompt")
    };
    assert_eq!(prompts.len(), 1, "{prompts:?}");
}

fn tattach(fid: u32, afid: u32, user: &str) -> Message {
    Message::Tattach {
        fid,
        afid,
        uname: user.into(),
        aname: "/".into(),
    }
}

/// Section 10.4: an attach path that names nothing is `no_such_node`, one
/// that names an endpoint is `not_directory` — the client's mistake, not
/// "the user's worker could not start" (`unavailable`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_at_a_path_that_is_no_directory() {
    let mut fx = Fixture::new();
    let alice = fx.user(PASSWORD);
    let d = daemon(&mut fx, |tree| {
        fs::create_dir(tree.join("d")).unwrap();
        fs::set_permissions(tree.join("d"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(tree.join("tool"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(tree.join("tool"), fs::Permissions::from_mode(0o755)).unwrap();
    });
    let client = d.dial().await;
    let mut pw = PasswordConversation::new(PASSWORD);
    for (aname, code) in [
        ("/nothing", ErrorCode::NoSuchNode),
        ("/d/nothing", ErrorCode::NoSuchNode),
        ("/nothing/deeper", ErrorCode::NoSuchNode),
        ("/tool", ErrorCode::NotDirectory),
        ("/tool/x", ErrorCode::NotDirectory),
    ] {
        let e = client.auth(&alice, aname, &mut pw).await.err();
        let e = e.unwrap_or_else(|| panic!("attach at {aname} succeeded"));
        assert_eq!(
            e.code(),
            Some(code),
            "attach at {aname}: {e}\n{}",
            d.log_text()
        );
    }
    // The failures were the client's: the user's worker serves on.
    let session = client.auth(&alice, "/d", &mut pw).await.unwrap();
    assert!(session.root().list().await.unwrap().is_empty());
}

/// Section 12.2: a directory the user may read but not search lists, and the
/// entries the user cannot stat (all of them, without search permission)
/// are left out — so the listing shows exactly what a walk could reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_readable_but_not_searchable_lists_what_can_be_statted() {
    let mut fx = Fixture::new();
    let alice = fx.user(PASSWORD);
    let d = daemon(&mut fx, |tree| {
        let locked = tree.join("locked");
        fs::create_dir_all(locked.join("sub")).unwrap();
        fs::write(locked.join("tool"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(locked.join("tool"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(locked.join("sub"), fs::Permissions::from_mode(0o755)).unwrap();
        // Readable by others, not searchable.
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o744)).unwrap();
    });
    let client = d.dial().await;
    let session = client
        .auth(&alice, "/", &mut PasswordConversation::new(PASSWORD))
        .await
        .unwrap();
    let locked = session.walk("/locked").await.unwrap();
    // Others may read, not search (the owner's bits are the clone's, item 1).
    assert_eq!(locked.stat().await.unwrap().mode & 0o007, 0o004);
    let listing = locked
        .list()
        .await
        .unwrap_or_else(|e| panic!("listing /locked: {e}\n{}", d.log_text()));
    assert!(listing.is_empty(), "{listing:?}");
    // Consistent with walks: the entries are out of reach.
    for name in ["sub", "tool"] {
        let e = session.walk(&format!("/locked/{name}")).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::PermissionDenied), "{name}: {e}");
    }
    // The root lists as before.
    let names: Vec<String> = session
        .root()
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["locked"]);
}

/// Section 10.3: an append while one is pending on the auth fid fails with
/// `protocol` and ends the conversation, so the pending one — carrying the
/// right password — must not authenticate. Before, the second got
/// `protocol` and the first still authenticated (and the attach worked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_append_in_flight_ends_the_conversation() {
    let mut fx = Fixture::new();
    let alice = fx.user(PASSWORD);
    let d = daemon(&mut fx, |_| {});
    let mut c = raw::Conn::connect(&d.addr).await;
    // A few rounds, each on a fresh auth fid.
    for round in 0..3u32 {
        let afid = 10 + round;
        let seq = 100 * u64::from(round + 1);
        start_login(&mut c, afid, &alice, seq).await;
        // Both appends in one write: the second is read while the first waits
        // for PAM.
        let mut both = srpc_proto::encode(&srpc_proto::Frame::new(
            seq + 2,
            append(afid, answers(&[PASSWORD])),
        ));
        both.extend(srpc_proto::encode(&srpc_proto::Frame::new(
            seq + 3,
            append(afid, answers(&[PASSWORD])),
        )));
        c.send_bytes(&both).await;
        for _ in 0..2 {
            let reply = c.recv().await;
            assert!(reply.seq == seq + 2 || reply.seq == seq + 3);
            let (code, message) = error_of(&reply.msg);
            assert_eq!(code, ErrorCode::Protocol, "seq {}: {message}", reply.seq);
        }
        // Over: further appends are bad_fid, the attach is refused.
        let reply = c.rpc(seq + 4, append(afid, answers(&[PASSWORD]))).await;
        assert_eq!(error_of(&reply).0, ErrorCode::BadFid);
        let reply = c.rpc(seq + 5, tattach(50 + round, afid, &alice)).await;
        assert_eq!(error_of(&reply).0, ErrorCode::AuthRequired, "{reply:?}");
        assert!(matches!(
            c.rpc(seq + 6, Message::Tclunk { fid: afid }).await,
            Message::Rclunk
        ));
    }
    // The connection, and logging in on it, go on.
    start_login(&mut c, 1, &alice, 1).await;
    let reply = c.rpc(3, append(1, answers(&[PASSWORD]))).await;
    assert!(matches!(reply, Message::Rappend { .. }), "{reply:?}");
    let reply = c.rpc(4, tattach(2, 1, &alice)).await;
    assert!(matches!(reply, Message::Rattach { .. }), "{reply:?}");
}

/// Section 10.3: answers before any prompt are the wrong number of answers:
/// `protocol`, and the conversation is over (`bad_fid` after). Before, the
/// first reply was `malformed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_before_any_prompt_are_a_protocol_error() {
    let mut fx = Fixture::new();
    let alice = fx.user(PASSWORD);
    let d = daemon(&mut fx, |_| {});
    let mut c = raw::Conn::connect(&d.addr).await;
    let auth = Message::Tauth {
        afid: 1,
        uname: alice.clone(),
        aname: "/".into(),
    };
    assert!(matches!(c.rpc(1, auth).await, Message::Rauth { .. }));
    let reply = c.rpc(2, append(1, answers(&[PASSWORD]))).await;
    let (code, message) = error_of(&reply);
    assert_eq!(code, ErrorCode::Protocol, "{message}");
    let reply = c.rpc(3, append(1, answers(&[]))).await;
    assert_eq!(error_of(&reply).0, ErrorCode::BadFid);
    let reply = c.rpc(4, tattach(2, 1, &alice)).await;
    assert_eq!(error_of(&reply).0, ErrorCode::AuthRequired);
}

/// A header and body for a frame of type `kind` with `body` as it is.
fn raw_frame(kind: Kind, seq: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Header {
        kind: kind as u32,
        seq,
        body_len: body.len() as u64,
    }
    .to_bytes()
    .to_vec();
    out.extend_from_slice(body);
    out
}

/// Section 8.1 and 14.2: a first `Tversion` whose body does not decode is
/// answered with an `Rerror` saying why — the decoder's code and message —
/// before the server closes the connection. Before, it closed silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_first_version_is_answered_before_closing() {
    let mut fx = Fixture::new();
    let d = daemon(&mut fx, |_| {});
    let limits = r#"{"max_message":4096,"max_fids":2,"max_walk":1,"max_name":1,"max_pending":1}"#;
    let cases = [
        "not json".to_owned(),
        format!(r#"{{"version":1,"limits":{limits}}}"#),
        r#"{"version":"srpc/1","limits":{"max_message":"4096","max_fids":2,"max_walk":1,"max_name":1,"max_pending":1}}"#.to_owned(),
        r#"{"version":"srpc/1","limits":{"max_message":4096,"max_message":4096,"max_fids":2,"max_walk":1,"max_name":1,"max_pending":1}}"#.to_owned(),
        format!(r#"{{"version":"srpc/1","limits":{limits},"extra":0}}"#),
    ];
    for (i, body) in cases.iter().enumerate() {
        let seq = 40 + i as u64;
        let frame = raw_frame(Kind::Tversion, seq, body.as_bytes());
        let expected = srpc_proto::decode(&frame, &Limits::FLOOR).unwrap_err();
        let mut c = raw::Conn::tls(&d.addr).await;
        c.send_bytes(&frame).await;
        // Followed by more (a client that did not wait), sent while the
        // reply is read: unread input when the server closes must not cost
        // the reply (a TCP reset would destroy it).
        let trailing: Vec<u8> = (0..8_000u64)
            .flat_map(|n| raw_frame(Kind::Tclunk, seq + 100 + n, br#"{"fid":1}"#))
            .collect();
        // All written before anything is read, so a reset (if the server
        // closes on unread input) comes before the client reads.
        c.send_more(trailing).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let reply = c
            .next()
            .await
            .unwrap_or_else(|| panic!("{body}: closed without a reply\n{}", d.log_text()));
        assert_eq!(reply.seq, seq, "{body}");
        assert_eq!(
            error_of(&reply.msg),
            (expected.code(), expected.to_string()),
            "{body}"
        );
        assert!(
            c.next().await.is_none(),
            "{body}: the connection stays open"
        );
    }
}

/// Section 10.3: one append's answers may be up to 16 KiB; a bigger one is
/// refused with `limit_exceeded` naming the limit, and the conversation goes
/// on. Before, anything over the monitor channel's 64 KiB was answered
/// `unavailable` "srpcd is shutting down".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_answers_are_refused_with_the_limit() {
    let mut fx = Fixture::new();
    let alice = fx.user(PASSWORD);
    let d = daemon(&mut fx, |_| {});
    let mut c = raw::Conn::connect(&d.addr).await;
    start_login(&mut c, 1, &alice, 1).await;
    // Just over the limit (the answers object as sent), and far over.
    let just_over = "x".repeat(MAX_ANSWERS + 1 - answers(&[""]).len());
    let far_over = "x".repeat(70 * 1024);
    for (seq, answer) in [(3, &just_over), (4, &far_over)] {
        let data = answers(&[answer]);
        assert!(data.len() > MAX_ANSWERS);
        let reply = c.rpc(seq, append(1, data)).await;
        let (code, message) = error_of(&reply);
        assert_eq!(
            code,
            ErrorCode::LimitExceeded,
            "{message}\n{}",
            d.log_text()
        );
        assert!(message.contains("16384"), "{message}");
    }
    // The conversation went on: the right password still logs in.
    let reply = c.rpc(5, append(1, answers(&[PASSWORD]))).await;
    let Message::Rappend { data } = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(AuthStep::decode(&data).unwrap(), AuthStep::Authenticated);
    let reply = c.rpc(6, tattach(2, 1, &alice)).await;
    assert!(matches!(reply, Message::Rattach { .. }), "{reply:?}");

    // An answer right at the limit is taken and gets a true answer: wrong.
    start_login(&mut c, 3, &alice, 7).await;
    let at_limit = "y".repeat(MAX_ANSWERS - answers(&[""]).len());
    let data = answers(&[&at_limit]);
    assert_eq!(data.len(), MAX_ANSWERS);
    let reply = c.rpc(9, append(3, data)).await;
    assert_eq!(error_of(&reply).0, ErrorCode::AuthFailed, "{reply:?}");
    // And the front's channel to the monitor still serves.
    start_login(&mut c, 4, &alice, 10).await;
}

/// Section 11.3: a clunk does not cancel requests already pending on the
/// fid. An append and a clunk of its fid sent in one write, without waiting
/// for the append's reply: the append is answered by the handler, every time.
/// Before, each request's fid was looked up when its task ran, so the clunk
/// could win and the append fail with `bad_fid`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clunk_right_after_an_append_does_not_cancel_it() {
    let mut fx = Fixture::new();
    let alice = fx.user(PASSWORD);
    let d = daemon(&mut fx, |tree| {
        support::install_example("echo", &tree.join("echo"), 0o755);
    });
    let mut c = raw::Conn::connect(&d.addr).await;
    start_login(&mut c, 1, &alice, 1).await;
    let reply = c.rpc(3, append(1, answers(&[PASSWORD]))).await;
    assert!(matches!(reply, Message::Rappend { .. }), "{reply:?}");
    let reply = c.rpc(4, tattach(2, 1, &alice)).await;
    assert!(matches!(reply, Message::Rattach { .. }), "{reply:?}");
    for round in 0..100u64 {
        let seq = 10 + 10 * round;
        let walk = Message::Twalk {
            fid: 2,
            newfid: 3,
            names: vec!["echo".into()],
        };
        let reply = c.rpc(seq, walk).await;
        assert!(matches!(reply, Message::Rwalk { .. }), "{reply:?}");
        let payload = format!("call {round}");
        let mut both = srpc_proto::encode(&srpc_proto::Frame::new(
            seq + 1,
            append(3, bytes::Bytes::from(payload.clone().into_bytes())),
        ));
        both.extend(srpc_proto::encode(&srpc_proto::Frame::new(
            seq + 2,
            Message::Tclunk { fid: 3 },
        )));
        c.send_bytes(&both).await;
        for _ in 0..2 {
            let reply = c.recv().await;
            match (reply.seq - seq, &reply.msg) {
                (1, Message::Rappend { data }) => assert_eq!(&data[..], payload.as_bytes()),
                (2, Message::Rclunk) => {}
                (_, other) => panic!("round {round}, seq {}: {other:?}", reply.seq),
            }
        }
    }
}

/// Sections 7.1 and 7.2: a qid names the canonical node — the same for every
/// user and every session — and stat shows the canonical node's mode and
/// owner, not its clone's (a socket's mode; root, in the owner's own clone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qids_and_stat_describe_the_canonical_node() {
    use std::os::unix::fs::MetadataExt;
    let mut fx = Fixture::new();
    let alice = fx.user(PASSWORD);
    let bob = fx.user(PASSWORD);
    let alice_uid = nix::unistd::User::from_name(&alice).unwrap().unwrap().uid;
    let mut canonical = None;
    let d = daemon(&mut fx, |tree| {
        support::install_example("echo", &tree.join("echo"), 0o755);
        support::install_example("echo", &tree.join("mine"), 0o750);
        nix::unistd::chown(&tree.join("mine"), Some(alice_uid), None).unwrap();
        canonical = Some((
            fs::metadata(tree.join("echo")).unwrap(),
            fs::metadata(tree.join("mine")).unwrap(),
        ));
    });
    let (echo_meta, mine_meta) = canonical.unwrap();
    let mut seen = Vec::new();
    for user in [&alice, &bob, &alice] {
        let client = d.dial().await;
        let session = client
            .auth(user, "/", &mut PasswordConversation::new(PASSWORD))
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}\n{}", d.log_text()));
        let st = session.walk("/echo").await.unwrap().stat().await.unwrap();
        assert_eq!(st.qid.path, echo_meta.ino(), "{user}");
        assert_eq!(
            st.mode, 0o755,
            "{user}: the endpoint's mode, not its socket's"
        );
        seen.push(st.qid);
        if user == &alice {
            let mine = session.walk("/mine").await.unwrap().stat().await.unwrap();
            assert_eq!(
                (mine.uid, mine.owner.as_str()),
                (alice_uid.as_raw(), alice.as_str())
            );
            assert_eq!((mine.qid.path, mine.mode), (mine_meta.ino(), 0o750));
        }
        session.close().await.unwrap();
    }
    // Alice, bob, then alice again in a fresh session (and clone): one qid.
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
}
