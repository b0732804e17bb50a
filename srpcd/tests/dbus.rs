//! The admin interface end to end: a private system-style dbus-daemon with
//! the shipped policy, the real srpcd serving `org.srpc.Srpcd1` on it, the
//! real srpcctl run as root, as a member of the admin group and as an
//! ordinary user (through `setpriv`), real PAM users logged in over TLS.
//! Needs root, dbus-daemon and a built srpcctl (`cargo build -p srpcctl`;
//! `cargo test --workspace` builds it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/bus.rs"]
mod bus;
#[allow(dead_code)]
#[path = "support/pam_fixture.rs"]
mod pam_fixture;
#[path = "support/daemon.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use pam_fixture::Fixture;
use serde_json::Value;
use srpc::client::{Error, PasswordConversation};
use srpc_proto::ErrorCode;
use support::{install_example, uid_of, worker_of, Daemon, Options};

const PASSWORD: &str = "dbus test pw";

fn srpcctl_path() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_srpcd")).with_file_name("srpcctl");
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build -p srpcctl)",
        path.display()
    );
    path
}

/// What srpcctl did: exit status, stdout, stderr.
struct Ran {
    code: i32,
    out: String,
    err: String,
}

/// Runs srpcctl on `bus` as root (`user` None) or as `user` with its groups.
fn srpcctl(address: &str, user: Option<&str>, args: &[&str]) -> Ran {
    let mut cmd = match user {
        None => Command::new(srpcctl_path()),
        Some(user) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={}", uid_of(user)))
                .arg(format!("--regid={}", support::gid_of(user)))
                .arg("--init-groups")
                .arg(srpcctl_path());
            c
        }
    };
    let out = cmd
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", address)
        .output()
        .unwrap();
    Ran {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn json(ran: &Ran) -> Value {
    assert_eq!(ran.code, 0, "srpcctl failed: {}{}", ran.out, ran.err);
    serde_json::from_str(&ran.out).unwrap_or_else(|e| panic!("{e}: {}", ran.out))
}

/// A group of the test's own, removed on drop.
struct Group(String);

impl Group {
    fn new(fx_tag: &str) -> Group {
        let name = format!("srpcdt{fx_tag}{}", std::process::id() % 100_000);
        let out = Command::new("groupadd").arg(&name).output().unwrap();
        assert!(out.status.success(), "groupadd {name}: {out:?}");
        Group(name)
    }

    fn add(&self, user: &str) {
        let out = Command::new("usermod")
            .args(["-a", "-G", &self.0, user])
            .output()
            .unwrap();
        assert!(out.status.success(), "usermod: {out:?}");
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("groupdel").arg(&self.0).output();
    }
}

/// srpcd on `address` with `/echo`, admin group `group`.
fn start(fx: &mut Fixture, address: &str, group: &str) -> Daemon {
    start_with(fx, address, group, 300, |_| {})
}

/// srpcd on `address` with `/echo` and what `more` adds to the tree, admin
/// group `group`, workers and handlers idle after `idle_secs`.
fn start_with(
    fx: &mut Fixture,
    address: &str,
    group: &str,
    idle_secs: u32,
    more: impl FnOnce(&Path),
) -> Daemon {
    let opts = Options {
        service: fx.unix_service(),
        idle_secs,
        extra: format!("[admin]\ngroup = \"{group}\"\n"),
    };
    let p = support::prepare(fx, &opts, |tree| {
        install_example("echo", &tree.join("echo"), 0o755);
        more(tree);
    });
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_srpcd"));
    cmd.arg("--config")
        .arg(&p.config)
        .env("DBUS_SYSTEM_BUS_ADDRESS", address);
    support::launch_command(p, cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srpcctl_shows_the_daemon_and_the_policy_decides_who_sees_what() {
    let mut fx = Fixture::new();
    let alice = fx.user(PASSWORD);
    let bob = fx.user(PASSWORD);
    let admins = Group::new("a");
    admins.add(&alice);
    let bus = bus::start("read", &admins.0);
    let daemon = start(&mut fx, &bus.address, &admins.0);

    let client = daemon.dial().await;
    let session = client
        .auth(&bob, "/", &mut PasswordConversation::new(PASSWORD))
        .await
        .unwrap();
    session.walk("echo").await.unwrap();

    let status = json(&srpcctl(&bus.address, None, &["status", "--json"]));
    assert_eq!(status["interface"], "org.srpc.Srpcd1");
    assert_eq!(status["sessions"], 1);
    assert_eq!(status["workers"], 1);
    assert_eq!(status["listen"], daemon.addr.as_str());
    let table = srpcctl(&bus.address, None, &["status"]);
    let field = |name: &str| {
        table
            .out
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")).map(str::trim))
            .map(str::to_owned)
    };
    assert_eq!(
        field("interface").as_deref(),
        Some("org.srpc.Srpcd1"),
        "{}",
        table.out
    );
    assert_eq!(field("sessions").as_deref(), Some("1"), "{}", table.out);

    let sessions = json(&srpcctl(&bus.address, None, &["sessions", "--json"]));
    let [s] = sessions.as_array().unwrap().as_slice() else {
        panic!("one session: {sessions}");
    };
    assert_eq!(s["user"], bob.as_str());
    assert_eq!(s["remote"], "127.0.0.1");
    assert_eq!(s["aname"], "/");
    let table = srpcctl(&bus.address, None, &["sessions"]).out;
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ID  USER"), "{table}");
    assert!(lines[1].contains(&bob), "{table}");

    let workers = json(&srpcctl(&bus.address, None, &["workers", "--json"]));
    let [w] = workers.as_array().unwrap().as_slice() else {
        panic!("one worker: {workers}");
    };
    assert_eq!(w["user"], bob.as_str());
    assert_eq!(w["state"], "running");
    assert_eq!(w["pid"], worker_of(&bob).unwrap());

    who_may_do_what(&bus.address, &alice, &bob, &sessions);
    changes_are_audited_with_the_callers_uid(&bus.address, &alice, &bob, &daemon);
    drop(session);
    drop(daemon);

    // No srpcd on the bus, or no bus at all: one line, exit status 3.
    let gone = srpcctl(&bus.address, None, &["status"]);
    assert_eq!(gone.code, 3, "{}{}", gone.out, gone.err);
    assert!(
        gone.err.starts_with("srpcctl: srpcd is not running"),
        "{}",
        gone.err
    );
    let nobus = srpcctl("unix:path=/nonexistent/bus", None, &["status"]);
    assert_eq!(nobus.code, 3, "{}", nobus.err);
}

/// A member of the admin group sees what root sees; an ordinary user only
/// the status, and is told so in one line.
fn who_may_do_what(address: &str, alice: &str, bob: &str, sessions: &Value) {
    // A member of the admin group sees the same; an ordinary user only the
    // status, and is told so in one line.
    let by_admin = json(&srpcctl(address, Some(alice), &["sessions", "--json"]));
    assert_eq!(&by_admin, sessions);
    assert_eq!(srpcctl(address, Some(bob), &["status"]).code, 0);
    for args in [
        &["sessions"][..],
        &["kill-session", "1"],
        &["reload"],
        &["explain-user", "root"],
    ] {
        let denied = srpcctl(address, Some(bob), args);
        assert_eq!(denied.code, 4, "{args:?}: {}{}", denied.out, denied.err);
        assert!(
            denied.err.starts_with("srpcctl: access denied"),
            "{}",
            denied.err
        );
        assert_eq!(denied.err.lines().count(), 1, "{}", denied.err);
    }
}

/// Explain, reload and log-level as root and an admin; the log names who.
fn changes_are_audited_with_the_callers_uid(
    address: &str,
    alice: &str,
    bob: &str,
    daemon: &Daemon,
) {
    let explained = json(&srpcctl(address, None, &["explain-user", bob, "--json"]));
    assert_eq!(explained["exists"], true);
    assert_eq!(explained["uid"], uid_of(bob));
    assert!(explained["verdict"]
        .as_str()
        .unwrap()
        .starts_with("allowed to try"));
    let admin = explained["admin"].as_str().unwrap();
    assert!(admin.starts_with("not a member"), "{admin}");

    let reloaded = srpcctl(address, Some(alice), &["reload"]);
    assert_eq!(reloaded.code, 0, "{}", reloaded.err);
    assert_eq!(srpcctl(address, None, &["log-level", "debug"]).code, 0);
    let bad = srpcctl(address, None, &["log-level", "=no=such="]);
    assert_eq!(bad.code, 1, "{}", bad.err);

    // Who did what is in srpcd's log, with the uid the bus reported.
    let log = daemon.log_text();
    let alice_uid = format!("srpc_caller_uid={}", uid_of(alice));
    assert!(
        log.lines()
            .any(|l| l.contains(&alice_uid) && l.contains("srpc_method=\"Reload\"")),
        "{log}"
    );
}

/// Waits until the first session's listing shows `fids` and `calls`: the
/// front's count reaches it within its 2 s period.
async fn wait_for_counts(address: &str, fids: u32, calls: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sessions = json(&srpcctl(address, None, &["sessions", "--json"]));
        let s = &sessions[0];
        if s["calls"] == calls && s["fids"] == fids {
            return;
        }
        assert!(Instant::now() < deadline, "no counts: {sessions}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A stream of the signals of `org.srpc.Srpcd1` on the bus at `address`.
async fn watch_signals(address: &str) -> zbus::MessageStream {
    let watcher = zbus::connection::Builder::address(address)
        .unwrap()
        .build()
        .await
        .unwrap();
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface("org.srpc.Srpcd1")
        .unwrap()
        .build();
    zbus::MessageStream::for_match_rule(rule, &watcher, None)
        .await
        .unwrap()
}

/// Waits (bounded) for the next signal of `org.srpc.Srpcd1`.
async fn next_signal(stream: &mut zbus::MessageStream) -> (String, zbus::Message) {
    let msg = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("no signal within 10 s")
        .unwrap()
        .unwrap();
    let member = msg.header().member().unwrap().to_string();
    (member, msg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_session_and_stop_worker_end_what_they_name() {
    let mut fx = Fixture::new();
    let bob = fx.user(PASSWORD);
    let admins = Group::new("k");
    let bus = bus::start("kill", &admins.0);
    let daemon = start(&mut fx, &bus.address, &admins.0);
    let mut signals = watch_signals(&bus.address).await;

    let client = daemon.dial().await;
    let session = client
        .auth(&bob, "/", &mut PasswordConversation::new(PASSWORD))
        .await
        .unwrap();
    let echo = session.walk("echo").await.unwrap();
    assert_eq!(echo.append(b"1".to_vec()).await.unwrap().as_ref(), b"1");
    let (member, msg) = next_signal(&mut signals).await;
    assert_eq!(member, "SessionStarted");
    let (id, user, remote, _aname): (u64, String, String, String) =
        msg.body().deserialize().unwrap();
    assert_eq!(
        (user.as_str(), remote.as_str()),
        (bob.as_str(), "127.0.0.1")
    );
    // The attach fid and the walked one, one call.
    wait_for_counts(&bus.address, 2, 1).await;
    let workers = json(&srpcctl(&bus.address, None, &["workers", "--json"]));
    assert_eq!(workers[0]["calls"], 1, "{workers}");

    let killed = srpcctl(&bus.address, None, &["kill-session", &id.to_string()]);
    assert_eq!(killed.code, 0, "{}", killed.err);
    let (member, msg) = next_signal(&mut signals).await;
    assert_eq!(member, "SessionEnded");
    let (ended, _, reason): (u64, String, String) = msg.body().deserialize().unwrap();
    assert_eq!((ended, reason.as_str()), (id, "killed by uid 0"));
    // The session's fids are gone at the front: told once, then unknown.
    let first = echo.append(b"2".to_vec()).await.unwrap_err();
    assert!(
        matches!(&first, Error::Server { code: ErrorCode::AuthRequired, message, .. }
            if message.contains("administrator")),
        "{first}"
    );
    let again = echo.append(b"3".to_vec()).await.unwrap_err();
    assert!(
        matches!(
            &again,
            Error::Server {
                code: ErrorCode::BadFid,
                ..
            }
        ),
        "{again}"
    );
    let sessions = json(&srpcctl(&bus.address, None, &["sessions", "--json"]));
    assert_eq!(sessions, Value::Array(Vec::new()));
    let twice = srpcctl(&bus.address, None, &["kill-session", &id.to_string()]);
    assert_eq!(twice.code, 1, "{}", twice.err);
    assert!(
        twice.err.contains(&format!("no session {id}")),
        "{}",
        twice.err
    );

    // stop-worker: the sessions end, the worker process goes, and the old
    // session gets an error instead of a silent restart.
    let session = client
        .auth(&bob, "/", &mut PasswordConversation::new(PASSWORD))
        .await
        .unwrap();
    let echo = session.walk("echo").await.unwrap();
    assert_eq!(echo.append(b"4".to_vec()).await.unwrap().as_ref(), b"4");
    let pid = worker_of(&bob).unwrap();
    let stopped = srpcctl(&bus.address, None, &["stop-worker", &bob]);
    assert_eq!(stopped.code, 0, "{}", stopped.err);
    assert!(stopped.out.contains("1 session(s)"), "{}", stopped.out);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "worker {pid} still runs");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = echo.append(b"5".to_vec()).await.unwrap_err();
    assert!(
        matches!(
            &after,
            Error::Server {
                code: ErrorCode::AuthRequired,
                ..
            }
        ),
        "{after}"
    );
    assert!(worker_of(&bob).is_none(), "no silent restart");
    let none = srpcctl(&bus.address, None, &["stop-worker", "srpcd-no-such-user"]);
    assert_eq!(none.code, 1, "{}", none.err);
    drop(session);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srpcd_checks_the_caller_itself_when_the_bus_policy_lets_anyone_through() {
    let mut fx = Fixture::new();
    let bob = fx.user(PASSWORD);
    let admins = Group::new("w");
    let bus = bus::start_with("wide", &admins.0, bus::WIDE_OPEN);
    let daemon = start(&mut fx, &bus.address, &admins.0);
    for args in [
        &["sessions"][..],
        &["stop-worker", "root"],
        &["log-level", "trace"],
    ] {
        let denied = srpcctl(&bus.address, Some(&bob), args);
        assert_eq!(denied.code, 4, "{args:?}: {}{}", denied.out, denied.err);
        let expected = format!(
            "srpcctl: access denied: uid {} is neither root nor in group {}",
            uid_of(&bob),
            admins.0
        );
        assert!(denied.err.starts_with(&expected), "{}", denied.err);
    }
    let log = daemon.log_text();
    let bob_uid = format!("srpc_caller_uid={}", uid_of(&bob));
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&bob_uid) && l.contains("srpc_result=\"refused"))
        .collect();
    assert_eq!(refused.len(), 3, "{log}");
    assert!(
        refused[1].contains("srpc_method=\"StopWorker\""),
        "{}",
        refused[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_brings_a_changed_tree_to_live_sessions() {
    let mut fx = Fixture::new();
    let bob = fx.user(PASSWORD);
    let admins = Group::new("r");
    let bus = bus::start("reload", &admins.0);
    let daemon = start(&mut fx, &bus.address, &admins.0);
    let client = daemon.dial().await;
    let session = client
        .auth(&bob, "/", &mut PasswordConversation::new(PASSWORD))
        .await
        .unwrap();
    let missing = session.walk("late").await.unwrap_err();
    assert!(
        matches!(
            &missing,
            Error::Server {
                code: ErrorCode::NoSuchNode,
                ..
            }
        ),
        "{missing}"
    );
    let tree = daemon.dir.join("tree");
    install_example("echo", &tree.join("late"), 0o755);
    // A node that was open to bob is closed to him now.
    std::fs::set_permissions(
        tree.join("echo"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();

    let reloaded = srpcctl(&bus.address, None, &["reload"]);
    assert_eq!(reloaded.code, 0, "{}", reloaded.err);
    // The re-sync runs off the loop: bounded wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let late = loop {
        match session.walk("late").await {
            Ok(fid) => break fid,
            Err(e) => {
                assert!(Instant::now() < deadline, "still not there: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(late.append(b"new".to_vec()).await.unwrap().as_ref(), b"new");
    let echo = session.walk("echo").await.unwrap();
    let refused = echo.append(b"old".to_vec()).await.unwrap_err();
    assert!(
        matches!(
            &refused,
            Error::Server {
                code: ErrorCode::PermissionDenied,
                ..
            }
        ),
        "{refused}"
    );
    drop(session);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_srpcd_cannot_take_the_bus_name() {
    let mut fx = Fixture::new();
    let admins = Group::new("n");
    let bus = bus::start("name", &admins.0);
    let first = start(&mut fx, &bus.address, &admins.0);
    let opts = Options {
        service: fx.unix_service(),
        idle_secs: 300,
        extra: String::new(),
    };
    let p = support::prepare(&mut fx, &opts, |_| {});
    let out = Command::new(env!("CARGO_BIN_EXE_srpcd"))
        .arg("--config")
        .arg(&p.config)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .env("SRPC_LOG_STDERR", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("another process owns org.srpc.Srpcd1"),
        "{err}"
    );
    // The first one still serves.
    assert_eq!(srpcctl(&bus.address, None, &["status"]).code, 0);
    drop(first);
}

/// The canonical tree of the check-tree tests: good nodes of each kind and
/// one of each problem the clone skips.
fn tree_with_problems(tree: &Path, owner: &str) {
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |p: &Path, m: u32| std::fs::set_permissions(p, PermissionsExt::from_mode(m)).unwrap();
    let sub = tree.join("sub");
    std::fs::create_dir(&sub).unwrap();
    mode(&sub, 0o750);
    std::os::unix::fs::chown(&sub, Some(uid_of(owner)), Some(support::gid_of(owner))).unwrap();
    install_example("echo", &sub.join("inner"), 0o750);
    std::fs::write(
        tree.join("time"),
        "service = \"/run/srpcd-test-time.sock\"\n",
    )
    .unwrap();
    mode(&tree.join("time"), 0o644);
    // Problems: a symlink, a hard link (its other name is outside the tree),
    // a descriptor naming a relative path, a fifo.
    std::os::unix::fs::symlink(tree.join("echo"), tree.join("link")).unwrap();
    let outside = tree.parent().unwrap().join("outside");
    std::fs::write(&outside, "service = \"/run/x.sock\"\n").unwrap();
    std::fs::hard_link(&outside, tree.join("twin")).unwrap();
    std::fs::write(tree.join("bad"), "service = \"time.sock\"\n").unwrap();
    mode(&tree.join("bad"), 0o644);
    nix::unistd::mkfifo(
        &tree.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
}

/// The paths below `dir` (as `/a/b`), recursively, symlinks not followed.
fn paths_below(dir: &Path, rel: &str, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = format!("{rel}/{}", entry.file_name().to_string_lossy());
        if entry.file_type().unwrap().is_dir() {
            paths_below(&entry.path(), &path, out);
        }
        out.insert(path);
    }
}

/// check-tree's verdicts on [`tree_with_problems`], node by node.
fn each_node_has_its_verdict(nodes: &Value, bob: &str) {
    let node = |path: &str| {
        nodes
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["path"] == path)
            .unwrap_or_else(|| panic!("no {path} in {nodes}"))
            .clone()
    };
    let expect = |path: &str, kind: &str, verdict: &str, problem: &str| {
        let n = node(path);
        assert_eq!(n["kind"], kind, "{n}");
        assert_eq!(n["verdict"], verdict, "{n}");
        let text = n["problem"].as_str().unwrap();
        assert!(
            text.starts_with(problem),
            "{path}: {text:?} is not {problem:?}…"
        );
        n
    };
    let root = expect("/", "directory", "cloned", "");
    assert_eq!(
        (root["mode"].as_u64(), root["owner"].as_str()),
        (Some(0o755), Some("root"))
    );
    let echo = expect("/echo", "handler", "cloned", "");
    assert_eq!(
        (echo["mode"].as_u64(), echo["uid"].as_u64()),
        (Some(0o755), Some(0))
    );
    let sub = expect("/sub", "directory", "cloned", "");
    assert_eq!(sub["mode"], 0o750);
    assert_eq!(sub["owner"], bob);
    assert_eq!(sub["uid"], uid_of(bob));
    expect("/sub/inner", "handler", "cloned", "");
    let time = expect("/time", "service", "cloned", "");
    assert_eq!(time["service"], "/run/srpcd-test-time.sock");
    expect("/link", "symlink", "skipped", "a symlink: never cloned");
    expect(
        "/twin",
        "file",
        "skipped",
        "it has 2 hard links (an endpoint must be a file of its own)",
    );
    expect(
        "/bad",
        "file",
        "skipped",
        "not a service descriptor: `service` must be an absolute path, not \"time.sock\"",
    );
    expect("/fifo", "fifo", "skipped", "a fifo: only directories");
}

/// `check-tree PATH` lists that directory and below; a path that is not a
/// directory of the tree is refused.
fn subtrees_are_checked_alone(address: &str) {
    // A subtree: its nodes only, shown from the tree's root; no problem
    // there, so exit 0. A path that is no directory of the tree is refused.
    let sub = json(&srpcctl(address, None, &["check-tree", "/sub", "--json"]));
    let paths: Vec<&str> = sub
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/sub", "/sub/inner"], "{sub}");
    for (path, why) in [
        ("/link", "/link: not a directory of the tree"),
        ("/nope", "/nope: not a directory of the tree"),
        ("sub", "\"sub\": "),
    ] {
        let bad = srpcctl(address, None, &["check-tree", path]);
        assert_eq!(bad.code, 1, "{path}: {}{}", bad.out, bad.err);
        assert!(
            bad.err.starts_with(&format!("srpcctl: {why}")),
            "{}",
            bad.err
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_tree_reports_each_problem_and_the_clone_skips_exactly_those() {
    let mut fx = Fixture::new();
    let bob = fx.user(PASSWORD);
    let admins = Group::new("c");
    let bus = bus::start("tree", &admins.0);
    let owner = bob.clone();
    let daemon = start_with(&mut fx, &bus.address, &admins.0, 300, |tree| {
        tree_with_problems(tree, &owner);
    });

    let ran = srpcctl(&bus.address, None, &["check-tree", "--json"]);
    assert_eq!(ran.code, 5, "problems give exit 5: {}{}", ran.out, ran.err);
    assert_eq!(
        ran.err,
        "srpcctl: the tree has 4 problem(s): the clone skips or refuses those nodes\n"
    );
    let nodes: Value = serde_json::from_str(&ran.out).unwrap();
    each_node_has_its_verdict(&nodes, &bob);

    let table = srpcctl(&bus.address, None, &["check-tree"]);
    assert_eq!(table.code, 5, "{}", table.err);
    assert!(table.out.starts_with("PATH"), "{}", table.out);
    assert!(
        table
            .out
            .lines()
            .any(|l| l.starts_with("/link ") && l.contains("skipped: a symlink")),
        "{}",
        table.out
    );

    subtrees_are_checked_alone(&bus.address);

    // The clone's verdicts are check-tree's: after an attach at the root the
    // clone holds exactly the nodes reported cloned.
    let client = daemon.dial().await;
    let session = client
        .auth(&bob, "/", &mut PasswordConversation::new(PASSWORD))
        .await
        .unwrap();
    session.walk("echo").await.unwrap();
    let cloned: BTreeSet<String> = nodes
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["verdict"] == "cloned" && n["path"] != "/")
        .map(|n| n["path"].as_str().unwrap().to_owned())
        .collect();
    let mut in_clone = BTreeSet::new();
    let clone_root = daemon.dir.join("run/users").join(&bob).join("tree");
    paths_below(&clone_root, "", &mut in_clone);
    assert_eq!(in_clone, cloned);
    drop(session);

    // It names paths and owners: admin only.
    let denied = srpcctl(&bus.address, Some(&bob), &["check-tree"]);
    assert_eq!(denied.code, 4, "{}{}", denied.out, denied.err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_tree_of_a_clean_tree_exits_zero() {
    let mut fx = Fixture::new();
    let admins = Group::new("z");
    let bus = bus::start("clean", &admins.0);
    let _daemon = start(&mut fx, &bus.address, &admins.0);
    let ran = srpcctl(&bus.address, None, &["check-tree"]);
    assert_eq!(ran.code, 0, "{}{}", ran.out, ran.err);
    let lines: Vec<&str> = ran.out.lines().collect();
    assert_eq!(lines.len(), 3, "{}", ran.out);
    let cells: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        cells,
        ["/echo", "handler", "0755", "root", "root", "-", "ok"],
        "{}",
        ran.out
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_show_the_running_handler_until_it_exits() {
    let mut fx = Fixture::new();
    let bob = fx.user(PASSWORD);
    let admins = Group::new("h");
    let bus = bus::start("handlers", &admins.0);
    // Handlers exit after 2 s without calls; the worker stays (it has a
    // session).
    let daemon = start_with(&mut fx, &bus.address, &admins.0, 2, |_| {});
    let client = daemon.dial().await;
    let session = client
        .auth(&bob, "/", &mut PasswordConversation::new(PASSWORD))
        .await
        .unwrap();
    let echo = session.walk("echo").await.unwrap();
    assert_eq!(echo.append(b"hi".to_vec()).await.unwrap().as_ref(), b"hi");

    let workers = json(&srpcctl(&bus.address, None, &["workers", "--json"]));
    let [h] = workers[0]["handlers"].as_array().unwrap().as_slice() else {
        panic!("one handler: {workers}");
    };
    assert_eq!(h["user"], bob.as_str());
    assert_eq!(h["endpoint"], "/echo");
    assert_eq!(h["starts"], 1);
    let pid = u32::try_from(h["pid"].as_u64().unwrap()).unwrap();
    // The pid is the real handler's: it runs the tree's echo as bob.
    let uid = support::status_field(pid, "Uid:").expect("the handler runs");
    assert_eq!(
        uid.split_whitespace().next(),
        Some(uid_of(&bob).to_string().as_str()),
        "{uid}"
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/exe")).unwrap(),
        daemon.dir.join("tree/echo")
    );
    let table = srpcctl(&bus.address, None, &["workers"]).out;
    let row = table
        .lines()
        .find(|l| l.starts_with("  /echo"))
        .unwrap_or_else(|| panic!("no handler row: {table}"));
    assert!(row.contains(&format!(" {pid} ")), "{table}");
    assert!(row.contains("handler"), "{table}");

    // Idle, it exits; then it is no longer listed.
    let deadline = Instant::now() + Duration::from_secs(20);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "handler {pid} still runs");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let workers = json(&srpcctl(&bus.address, None, &["workers", "--json"]));
        if workers[0]["handlers"] == Value::Array(Vec::new()) {
            break;
        }
        assert!(Instant::now() < deadline, "still listed: {workers}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A new call starts a new one, counted.
    assert_eq!(
        echo.append(b"again".to_vec()).await.unwrap().as_ref(),
        b"again"
    );
    let workers = json(&srpcctl(&bus.address, None, &["workers", "--json"]));
    assert_eq!(workers[0]["handlers"][0]["starts"], 2, "{workers}");
    let second = workers[0]["handlers"][0]["pid"].as_u64().unwrap();
    // Stopping the worker takes the handler with it: killed, and audited so.
    assert_eq!(srpcctl(&bus.address, None, &["stop-worker", &bob]).code, 0);
    let exits = |pid: u64| {
        daemon
            .log_text()
            .lines()
            .filter(|l| {
                l.contains("srpc_event=\"handler_exited\"")
                    && l.contains(&format!("srpc_pid={pid} "))
            })
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while exits(second).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no exit of {second}: {}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let [first_exit] = <[String; 1]>::try_from(exits(u64::from(pid)))
        .unwrap_or_else(|e| panic!("one exit of {pid}: {e:?}"));
    assert!(
        first_exit.contains("srpc_exit_status=\"exit status: 0\""),
        "{first_exit}"
    );
    let [killed] = <[String; 1]>::try_from(exits(second))
        .unwrap_or_else(|e| panic!("one exit of {second}: {e:?}"));
    assert!(
        killed.contains("srpc_exit_status=\"killed (SIGKILL) with its endpoint"),
        "{killed}"
    );
    drop(session);
}
