//! Message sizes and memory end to end: the real daemon, real users, the echo
//! handler from srpc/examples. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "support/pam_fixture.rs"]
mod pam_fixture;
#[path = "support/raw_tls.rs"]
mod raw_tls;
#[path = "support/daemon.rs"]
mod support;

use pam_fixture::Fixture;
use srpc::client::{DialOptions, PasswordConversation};
use srpc_proto::{encode, Frame, Limits, Message};
use support::{install_example, worker_of, Options};
use tokio::io::AsyncWriteExt;

const PASSWORD: &str = "limits test pw";
const MAX_MESSAGE: u32 = 4 * 1024 * 1024;

/// With `max_message = 4 MiB` configured, a 2 MiB call crosses every internal
/// link (front -> worker -> handler and back). Each internal end used to read
/// with the 1 MiB default, so the worker refused the frame, exited, and the
/// call failed with `unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_call_is_answered_and_the_worker_survives() {
    let mut fx = Fixture::new();
    let alice = fx.user(PASSWORD);
    let opts = Options {
        service: fx.unix_service(),
        idle_secs: 300,
        extra: format!("[limits]\nmax_message = {MAX_MESSAGE}\n"),
    };
    let daemon = support::start(&mut fx, &opts, |tree| {
        install_example("echo", &tree.join("echo"), 0o755);
    });
    let client = DialOptions::new()
        .limits(Limits {
            max_message: MAX_MESSAGE,
            ..Limits::default()
        })
        .dial(&daemon.addr, "localhost", daemon.trust.clone())
        .await
        .unwrap();
    assert_eq!(client.limits().max_message, MAX_MESSAGE);
    let session = client
        .auth(&alice, "/", &mut PasswordConversation::new(PASSWORD))
        .await
        .unwrap();
    let echo = session.walk("/echo").await.unwrap();
    assert_eq!(&echo.append(&b"small"[..]).await.unwrap()[..], b"small");
    let worker = worker_of(&alice).expect("alice's worker runs");

    // Not a repeating pattern, so a shifted or truncated copy cannot pass.
    let big: Vec<u8> = (0..2 * 1024 * 1024u32)
        .map(|i| i.wrapping_mul(2_654_435_761).to_be_bytes()[1])
        .collect();
    let reply = echo
        .append(big.clone())
        .await
        .unwrap_or_else(|e| panic!("2 MiB call: {e}\n{}", daemon.log_text()));
    assert!(reply[..] == big[..], "the reply differs from the request");

    assert_eq!(
        worker_of(&alice),
        Some(worker),
        "the worker was restarted\n{}",
        daemon.log_text()
    );
    assert_eq!(&echo.append(&b"after"[..]).await.unwrap()[..], b"after");
    assert_eq!(worker_of(&alice), Some(worker));
}

/// A bare TLS client speaking frames itself, so it can send without reading
/// (the srpc client reads every reply as it comes).
mod raw {
    use srpc::frames::FrameReader;
    use srpc_proto::{encode, AuthAnswers, AuthStep, Frame, Limits, Message, PROTOCOL_VERSION};
    use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
    use tokio::net::TcpStream;
    use tokio_rustls::client::TlsStream;

    pub struct Conn {
        pub rd: ReadHalf<TlsStream<TcpStream>>,
        pub wr: WriteHalf<TlsStream<TcpStream>>,
        frames: FrameReader,
        pub limits: Limits,
    }

    impl Conn {
        pub async fn connect(addr: &str) -> Conn {
            let tls = super::raw_tls::connect(addr).await;
            let (rd, wr) = tokio::io::split(tls);
            let mut c = Conn {
                rd,
                wr,
                frames: FrameReader::new(),
                limits: Limits::default(),
            };
            let reply = c
                .rpc(
                    0,
                    Message::Tversion {
                        version: PROTOCOL_VERSION.into(),
                        limits: Limits::default(),
                    },
                )
                .await;
            let Message::Rversion { limits, .. } = reply else {
                panic!("version: {reply:?}")
            };
            c.limits = limits;
            c
        }

        pub async fn send(&mut self, seq: u64, msg: Message) {
            self.wr
                .write_all(&encode(&Frame::new(seq, msg)))
                .await
                .unwrap();
        }

        pub async fn recv(&mut self) -> Frame {
            let raw = self.frames.next(&mut self.rd, &self.limits).await.unwrap();
            raw.decode(&self.limits).unwrap()
        }

        pub async fn rpc(&mut self, seq: u64, msg: Message) -> Message {
            self.send(seq, msg).await;
            let reply = self.recv().await;
            assert_eq!(reply.seq, seq);
            reply.msg
        }

        /// Authenticates `user` on afid 1, attaches fid 2 at `/`.
        pub async fn login(&mut self, user: &str, password: &str) {
            let auth = Message::Tauth {
                afid: 1,
                uname: user.into(),
                aname: "/".into(),
            };
            assert!(matches!(self.rpc(1, auth).await, Message::Rauth { .. }));
            let mut answers = AuthAnswers(Vec::new());
            loop {
                let data = answers.encode().to_vec().into();
                let reply = self.rpc(2, Message::Tappend { fid: 1, data }).await;
                let Message::Rappend { data } = reply else {
                    panic!("auth: {reply:?}")
                };
                match AuthStep::decode(&data).unwrap() {
                    AuthStep::Authenticated => break,
                    AuthStep::Prompts(prompts) => {
                        answers = AuthAnswers(
                            prompts
                                .iter()
                                .map(|p| {
                                    zeroize::Zeroizing::new(if p.style.wants_answer() {
                                        password.to_owned()
                                    } else {
                                        String::new()
                                    })
                                })
                                .collect(),
                        );
                    }
                }
            }
            let attach = Message::Tattach {
                fid: 2,
                afid: 1,
                uname: user.into(),
                aname: "/".into(),
            };
            let reply = self.rpc(3, attach).await;
            assert!(matches!(reply, Message::Rattach { .. }), "{reply:?}");
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    support::status_field(pid, "VmRSS:")
        .and_then(|v| v.split_whitespace().next().map(str::to_owned))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS for {pid}"))
}

/// The front of this daemon: our srpc-front (by full path) running as this
/// daemon's front user.
fn front_pid(daemon: &support::Daemon) -> u32 {
    let config = std::fs::read_to_string(daemon.dir.join("srpcd.toml")).unwrap();
    let user = config
        .lines()
        .find_map(|l| l.strip_prefix("front_user = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap();
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_srpcd"))
        .parent()
        .unwrap()
        .join("srpc-front");
    let pids = support::pids_of(&exe, support::uid_of(user));
    assert_eq!(pids.len(), 1, "front processes: {pids:?}");
    pids[0]
}

const BUDGET: u32 = 4 * 1024 * 1024;
const CALLS: u64 = 150;

/// Audit M2 (t_frontmem): an authenticated user pipelines many 1 MiB calls
/// to /echo and never reads the replies. The front used to read every
/// request and hold every reply (RSS grew by about 1 MiB per call, 410 MiB
/// for 400 calls); now it stops reading the connection once the replies it
/// holds reach `connection_buffer_bytes`, and every reply still arrives once
/// the client reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_replies_stops_being_read() {
    let mut fx = Fixture::new();
    let alice = fx.user(PASSWORD);
    let opts = Options {
        service: fx.unix_service(),
        idle_secs: 300,
        extra: format!("[limits]\nconnection_buffer_bytes = {BUDGET}\n"),
    };
    let daemon = support::start(&mut fx, &opts, |tree| {
        install_example("echo", &tree.join("echo"), 0o755);
    });
    let mut conn = raw::Conn::connect(&daemon.addr).await;
    conn.login(&alice, PASSWORD).await;
    let walk = Message::Twalk {
        fid: 2,
        newfid: 3,
        names: vec!["echo".into()],
    };
    assert!(matches!(conn.rpc(4, walk).await, Message::Rwalk { .. }));
    let front = front_pid(&daemon);
    // Just under max_message with the header and the append's control part.
    let payload = bytes::Bytes::from(vec![b'A'; (1 << 20) - 64]);
    // One warm-up call, so the baseline includes the buffers a call needs.
    let warm_up = Message::Tappend {
        fid: 3,
        data: payload.clone(),
    };
    let reply = conn.rpc(5, warm_up).await;
    assert!(matches!(reply, Message::Rappend { .. }), "{reply:?}");
    let before = rss_kib(front);
    let raw::Conn {
        rd, mut wr, limits, ..
    } = conn;
    let sent = payload.clone();
    let writer = tokio::spawn(async move {
        for i in 0..CALLS {
            let frame = encode(&Frame::new(
                100 + i,
                Message::Tappend {
                    fid: 3,
                    data: sent.clone(),
                },
            ));
            wr.write_all(&frame).await.unwrap();
        }
        wr
    });
    // Bound: the budget, one frame over it, what sits in the socket and TLS
    // buffers and the allocator's slack. The old front held every call.
    let bound_kib = u64::from(BUDGET) / 1024 * 4 + 24 * 1024;
    let mut peak = before;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(6);
    while std::time::Instant::now() < deadline {
        peak = peak.max(rss_kib(front));
        if peak - before > bound_kib {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    eprintln!(
        "front RSS {before} KiB before, peak {peak} KiB with {CALLS} calls unread (bound +{bound_kib} KiB)"
    );
    assert!(
        !writer.is_finished(),
        "the front read all {CALLS} calls while no reply was read"
    );
    assert!(
        peak - before <= bound_kib,
        "front RSS grew by {} KiB (bound {bound_kib} KiB) with replies unread",
        peak - before
    );

    // Now read: every reply arrives, in full.
    let mut rd = rd;
    let mut frames = srpc::frames::FrameReader::new();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..CALLS {
        let raw = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            frames.next(&mut rd, &limits),
        )
        .await
        .expect("a reply in time")
        .unwrap();
        let Frame { seq, msg } = raw.decode(&limits).unwrap();
        let Message::Rappend { data } = msg else {
            panic!("seq {seq}: {msg:?}\n{}", daemon.log_text())
        };
        assert!(data == payload, "seq {seq}: the reply differs");
        assert!(seen.insert(seq), "seq {seq} answered twice");
    }
    assert_eq!(seen, (100..100 + CALLS).collect());
    writer.await.unwrap();
}

fn threads_of(pid: u32) -> u32 {
    support::status_field(pid, "Threads:")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Threads for {pid}"))
}

/// `workers.front_threads`: the front runs on a runtime of that many worker
/// threads (2 by default), on one thread with no other when it is 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_runs_the_threads_configured() {
    let mut fx = Fixture::new();
    let alice = fx.user(PASSWORD);
    for (extra, expect) in [
        ("", 3..=4),
        ("front_threads = 1\n", 1..=1),
        ("front_threads = 3\n", 4..=5),
    ] {
        let opts = Options {
            service: fx.unix_service(),
            idle_secs: 300,
            extra: extra.into(),
        };
        let daemon = support::start(&mut fx, &opts, |_| {});
        // A login and a call on it: the runtime is serving, not just built.
        let mut conn = raw::Conn::connect(&daemon.addr).await;
        conn.login(&alice, PASSWORD).await;
        let threads = threads_of(front_pid(&daemon));
        assert!(
            expect.contains(&threads),
            "{extra:?}: the front has {threads} threads, expected {expect:?}"
        );
    }
}
