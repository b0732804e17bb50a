//! A broken handler cannot spin root, and a stuck one cannot hold a call
//! (audit M5): a handler that exits before accepting fails the call at once
//! and is restarted with backoff and within a start budget; a handler that
//! accepts and never answers gets the call deadline. Real users, the real
//! daemon. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "support/pam_fixture.rs"]
mod pam_fixture;
#[path = "support/daemon.rs"]
mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use pam_fixture::Fixture;
use srpc::client::{PasswordConversation, Session};
use srpc_proto::ErrorCode;
use support::{install_example, Daemon, Options};

const PASSWORD: &str = "handler limits test pw";
/// srpcd's `START_BUDGET` (starts per 60 s window).
const START_BUDGET: usize = 10;
/// No call may take longer than this to be answered here.
const ANSWER_BOUND: Duration = Duration::from_secs(10);

fn script(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn start(fx: &mut Fixture, extra: &str, build: impl FnOnce(&Path)) -> Daemon {
    let opts = Options {
        service: fx.unix_service(),
        idle_secs: 300,
        extra: extra.to_owned(),
    };
    support::start(fx, &opts, build)
}

async fn login(daemon: &Daemon, user: &str) -> Session {
    let client = daemon.dial().await;
    client
        .auth(user, "/", &mut PasswordConversation::new(PASSWORD))
        .await
        .unwrap_or_else(|e| panic!("login {user}: {e}"))
}

/// One call, which must be answered within `bound`.
async fn call(s: &Session, path: &str, bound: Duration) -> Result<Vec<u8>, srpc::client::Error> {
    let fid = s.walk(path).await.unwrap();
    let reply = tokio::time::timeout(bound, fid.append(b"ping".to_vec()))
        .await
        .unwrap_or_else(|_| panic!("{path}: no answer within {bound:?}"));
    Ok(reply?.to_vec())
}

/// "handler started" lines for `endpoint` in the daemon's log.
fn starts(daemon: &Daemon, endpoint: &str) -> usize {
    let quoted = format!("\"{endpoint}\"");
    daemon
        .log_text()
        .lines()
        .filter(|l| l.contains("handler started") && l.contains(&quoted))
        .count()
}

// The audit's t_crash replay: `exit 3` before accepting, and a client that
// keeps calling for 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_exits_before_accepting_fails_the_call_and_is_not_respawned_in_a_loop() {
    let mut fx = Fixture::new();
    let user = fx.user(PASSWORD);
    let daemon = start(&mut fx, "", |tree| {
        script(&tree.join("crash"), "#!/bin/sh\nexit 3\n");
        // Accepts one connection, closes it and exits 0: every start ends
        // well, so only the budget bounds its starts. It makes the listener
        // blocking, as a naive (or hostile) handler may: refusing calls must
        // not then block the monitor's threads (it has two; two endpoints).
        for name in ["once", "once2"] {
            script(
                &tree.join(name),
                "#!/usr/bin/python3\nimport socket\nl = socket.socket(fileno=3)\n\
                 l.setblocking(True)\nc, _ = l.accept()\nc.close()\n",
            );
        }
    });
    let s = login(&daemon, &user).await;

    let t0 = Instant::now();
    let err = call(&s, "/crash", ANSWER_BOUND).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::CallFailed), "{err}");
    assert!(err.to_string().contains("closed the connection"), "{err}");
    let first = t0.elapsed();

    // The client insists for 5 s: every call is answered, and root starts
    // the handler only a few times (backoff), never more than the budget.
    let mut calls = 1;
    while t0.elapsed() < Duration::from_secs(5) {
        let err = call(&s, "/crash", ANSWER_BOUND).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::CallFailed), "{err}");
        calls += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = starts(&daemon, "/crash");
    eprintln!("first answer after {first:?}; {calls} calls, {started} starts in 5 s");
    assert!(
        (1..=START_BUDGET).contains(&started),
        "{started} starts in 5 s\n{}",
        daemon.log_text()
    );

    // The client leaves: nothing waits, so nothing starts.
    drop(s);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(starts(&daemon, "/crash"), started, "{}", daemon.log_text());

    // A handler that exits 0 at once is held to the budget, and the refusal
    // is logged once per window, not per call.
    let s = login(&daemon, &user).await;
    for endpoint in ["/once", "/once2"] {
        for _ in 0..START_BUDGET + 5 {
            let err = call(&s, endpoint, ANSWER_BOUND).await.unwrap_err();
            assert_eq!(err.code(), Some(ErrorCode::CallFailed), "{err}");
        }
        let log = daemon.log_text();
        assert_eq!(starts(&daemon, endpoint), START_BUDGET, "{log}");
        let quoted = format!("\"{endpoint}\"");
        let refusals = log
            .lines()
            .filter(|l| l.contains("over its start budget") && l.contains(&quoted))
            .count();
        assert_eq!(refusals, 1, "{log}");
    }
    // The monitor still answers: a new login goes through.
    let again = tokio::time::timeout(ANSWER_BOUND, login(&daemon, &user))
        .await
        .unwrap_or_else(|_| panic!("the monitor is stuck\n{}", daemon.log_text()));
    drop(again);
}

// A handler that accepts and never answers: the call gets `timeout` after
// `call_timeout_secs`, the handler sees its connection closed, and the worker
// serves other calls meanwhile and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_never_answers_gets_the_call_deadline() {
    let mut fx = Fixture::new();
    let user = fx.user(PASSWORD);
    let scratch = std::env::temp_dir().join(format!("srpcd-test-hang-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).unwrap();
    fs::set_permissions(&scratch, fs::Permissions::from_mode(0o777)).unwrap();
    let closed = scratch.join("closed");
    // `extra` lands in the config's last table, [workers].
    let daemon = start(&mut fx, "call_timeout_secs = 2\n", |tree| {
        install_example("echo", &tree.join("echo"), 0o755);
        script(
            &tree.join("hang"),
            &format!(
                "#!/usr/bin/python3\nimport socket, threading\n\
                 l = socket.socket(fileno=3)\nl.setblocking(True)\n\
                 def hold(c):\n    while c.recv(4096):\n        pass\n    \
                 open({:?}, 'a').write('closed\\n')\n\
                 while True:\n    c, _ = l.accept()\n    \
                 threading.Thread(target=hold, args=(c,)).start()\n",
                closed.display().to_string()
            ),
        );
    });
    let s = login(&daemon, &user).await;

    let t0 = Instant::now();
    let (hung, echoed) = tokio::join!(call(&s, "/hang", ANSWER_BOUND), async {
        // Meanwhile the worker answers other calls.
        tokio::time::sleep(Duration::from_millis(300)).await;
        call(&s, "/echo", ANSWER_BOUND).await
    });
    let took = t0.elapsed();
    assert_eq!(echoed.unwrap(), b"ping");
    let err = hung.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Timeout), "{err}");
    assert!(err.to_string().contains("within 2 s"), "{err}");
    assert!(
        took >= Duration::from_millis(1500),
        "answered after {took:?}"
    );
    eprintln!("the stuck call was answered after {took:?}");

    // The handler saw its connection end.
    let deadline = Instant::now() + Duration::from_secs(5);
    while fs::read_to_string(&closed).unwrap_or_default().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the handler's connection stayed open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The worker goes on serving, and a new call to the stuck endpoint gets
    // its own deadline on a new connection.
    assert_eq!(call(&s, "/echo", ANSWER_BOUND).await.unwrap(), b"ping");
    let err = call(&s, "/hang", ANSWER_BOUND).await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(ErrorCode::Timeout),
        "{err}\n{}",
        daemon.log_text()
    );
    drop(s);
    let _ = fs::remove_dir_all(&scratch);
}
