//! Per-user resource limits (audit L2): a user's worker and handlers get that
//! user's limits.conf limits, set by the launcher as root, and a user without
//! entries gets srpcd's defaults (core 0), not the root monitor's limits.
//! The real daemon with real users and a real limits.d drop-in. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "support/pam_fixture.rs"]
mod pam_fixture;
#[path = "support/daemon.rs"]
mod support;

use std::fs;
use std::time::{Duration, Instant};

use pam_fixture::Fixture;
use srpc::client::{Client, PasswordConversation, Session};
use support::{install_example, pids_of, uid_of, worker_of, Options};

const PASSWORD: &str = "user limits test pw";

/// The soft and hard value of `/proc/<pid>/limits`'s line `name`.
fn limit(pid: u32, name: &str) -> (String, String) {
    let text = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name:?} in\n{text}"));
    let mut values = line.split_whitespace();
    let soft = values.next().unwrap().to_owned();
    let hard = values.next().unwrap().to_owned();
    (soft, hard)
}

async fn login(client: &Client, user: &str) -> Session {
    client
        .auth(user, "/", &mut PasswordConversation::new(PASSWORD))
        .await
        .unwrap_or_else(|e| panic!("login {user}: {e}"))
}

/// Calls `/echo` as `user` and returns its worker's and handler's pids.
async fn worker_and_handler(s: &Session, user: &str, echo: &std::path::Path) -> (u32, u32) {
    let fid = s.walk("/echo").await.unwrap();
    assert_eq!(&fid.append(&b"hi"[..]).await.unwrap()[..], b"hi");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let handlers = pids_of(echo, uid_of(user));
        if let (Some(worker), [handler]) = (worker_of(user), &handlers[..]) {
            return (worker, *handler);
        }
        assert!(Instant::now() < deadline, "{user}: handlers {handlers:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_and_handlers_get_the_users_limits_not_roots() {
    let mut fx = Fixture::new();
    let alice = fx.user(PASSWORD);
    let bob = fx.user(PASSWORD);
    let _drop_in = support::LimitsDropIn::new(
        "limits",
        &format!(
            "# srpcd test\n{alice} soft nofile 777\n{alice} hard nofile 888\n{alice} - core 0\n"
        ),
    );
    // The monitor may dump core (hard unlimited, soft 0 so this test
    // process does not): what a child would inherit without L2's fix.
    rustix::process::setrlimit(
        rustix::process::Resource::Core,
        rustix::process::Rlimit {
            current: Some(0),
            maximum: None,
        },
    )
    .unwrap();
    let opts = Options {
        service: fx.unix_service(),
        idle_secs: 300,
        extra: String::new(),
    };
    let daemon = support::start(&mut fx, &opts, |tree| {
        install_example("echo", &tree.join("echo"), 0o755);
    });
    let monitor = daemon.child.id();
    assert_eq!(
        limit(monitor, "Max core file size"),
        ("0".into(), "unlimited".into())
    );
    let echo = daemon.dir.join("tree/echo");
    let client = daemon.dial().await;

    let a = login(&client, &alice).await;
    let (worker, handler) = worker_and_handler(&a, &alice, &echo).await;
    for (what, pid) in [("worker", worker), ("handler", handler)] {
        assert_eq!(
            limit(pid, "Max open files"),
            ("777".into(), "888".into()),
            "{alice}'s {what}\n{}",
            daemon.log_text()
        );
        assert_eq!(
            limit(pid, "Max core file size"),
            ("0".into(), "0".into()),
            "{alice}'s {what}"
        );
    }

    // No entries: srpcd's defaults, the monitor's limits but core 0 (hard
    // too, so the user cannot raise it).
    let b = login(&client, &bob).await;
    let (worker, handler) = worker_and_handler(&b, &bob, &echo).await;
    for (what, pid) in [("worker", worker), ("handler", handler)] {
        assert_eq!(
            limit(pid, "Max core file size"),
            ("0".into(), "0".into()),
            "{bob}'s {what}"
        );
        assert_eq!(
            limit(pid, "Max open files"),
            limit(monitor, "Max open files"),
            "{bob}'s {what}"
        );
        assert_eq!(
            limit(pid, "Max processes"),
            limit(monitor, "Max processes"),
            "{bob}'s {what}"
        );
    }
}
