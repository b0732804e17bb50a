//! Calls end to end: the cloned tree, per-user handlers started as the caller,
//! a service handler, and the kernel deciding who may call. Real users, the
//! real daemon, the handler examples from srpc/examples. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "support/pam_fixture.rs"]
mod pam_fixture;
#[path = "support/daemon.rs"]
mod support;

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pam_fixture::Fixture;
use srpc::client::{Client, PasswordConversation, Session};
use srpc_proto::{ErrorCode, QidType};
use support::{install_example, pids_of, status_field, uid_of, Daemon, Options};

const PASSWORD: &str = "calls test pw";

/// The group that may call `/admin/stats`.
fn make_group(name: &str) -> u32 {
    let out = Command::new("groupadd").arg(name).output().unwrap();
    assert!(out.status.success(), "groupadd {name}: {out:?}");
    nix::unistd::Group::from_name(name)
        .unwrap()
        .unwrap()
        .gid
        .as_raw()
}

fn add_to_group(user: &str, group: &str) {
    let out = Command::new("usermod")
        .args(["-a", "-G", group, user])
        .output()
        .unwrap();
    assert!(out.status.success(), "usermod: {out:?}");
}

struct Group(String);
impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("groupdel").arg(&self.0).output();
    }
}

struct Service(Child);
impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn example_path(name: &str) -> std::path::PathBuf {
    let deps = std::env::current_exe().unwrap();
    deps.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name)
}

/// Tree: `/echo`, `/whoami` (0755), `/admin/stats` (0750, root:`group`),
/// `/clock` (a service descriptor), `/escape` (a symlink out), `/hard` (a
/// hard link to a file outside the tree).
fn start(fx: &mut Fixture, group_gid: u32, clock_socket: &Path, outside: &Path) -> Daemon {
    let opts = Options {
        service: fx.unix_service(),
        idle_secs: 300,
        extra: String::new(),
    };
    support::start(fx, &opts, |tree| {
        install_example("echo", &tree.join("echo"), 0o755);
        install_example("whoami", &tree.join("whoami"), 0o755);
        fs::create_dir(tree.join("admin")).unwrap();
        fs::set_permissions(tree.join("admin"), fs::Permissions::from_mode(0o755)).unwrap();
        install_example("stats", &tree.join("admin/stats"), 0o750);
        chown(tree.join("admin/stats"), Some(0), Some(group_gid)).unwrap();
        fs::write(
            tree.join("clock"),
            format!("service = \"{}\"\n", clock_socket.display()),
        )
        .unwrap();
        std::os::unix::fs::symlink("/usr/bin", tree.join("escape")).unwrap();
        fs::hard_link(outside, tree.join("hard")).unwrap();
    })
}

async fn login(client: &Client, user: &str) -> Session {
    client
        .auth(user, "/", &mut PasswordConversation::new(PASSWORD))
        .await
        .unwrap_or_else(|e| panic!("login {user}: {e}"))
}

async fn call(s: &Session, path: &str, data: &[u8]) -> Result<Vec<u8>, srpc::client::Error> {
    let fid = s.walk(path).await?;
    Ok(fid.append(data.to_vec()).await?.to_vec())
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

// One daemon, many checks: starting one costs more than the checks.
#[allow(clippy::too_many_lines)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_run_as_the_caller_and_the_kernel_decides_who_may_call() {
    let mut fx = Fixture::new();
    let alice = fx.user(PASSWORD);
    let bob = fx.user(PASSWORD);
    let group = Group(format!("srpcg{}", std::process::id()));
    let gid = make_group(&group.0);
    add_to_group(&alice, &group.0);

    let scratch = support::scratch("calls");
    let clock_socket = scratch.join("clock.sock");
    let outside = scratch.join("outside-handler");
    fs::copy(example_path("echo"), &outside).unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o755)).unwrap();
    let _clock = Service(
        Command::new(example_path("clock"))
            .arg("--socket")
            .arg(&clock_socket)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let daemon = start(&mut fx, gid, &clock_socket, &outside);
    let client = daemon.dial().await;
    let a = login(&client, &alice).await;
    let b = login(&client, &bob).await;

    // echo: bytes in, the same bytes out, binary-safe.
    let payload: Vec<u8> = (0..=255u8).collect();
    assert_eq!(call(&a, "/echo", &payload).await.unwrap(), payload);

    // whoami: the per-user handler runs as the caller, one instance per user.
    let wa = json(&call(&a, "/whoami", b"").await.unwrap());
    let wb = json(&call(&b, "/whoami", b"").await.unwrap());
    assert_eq!(wa["caller"]["uid"], uid_of(&alice));
    assert_eq!(wa["handler"]["uid"], uid_of(&alice));
    assert_eq!(wb["handler"]["uid"], uid_of(&bob));
    assert_ne!(wa["handler"]["pid"], wb["handler"]["pid"]);
    let pid = u32::try_from(wa["handler"]["pid"].as_u64().unwrap()).unwrap();
    let uid = uid_of(&alice);
    assert_eq!(
        status_field(pid, "Uid:").unwrap(),
        format!("{uid}\t{uid}\t{uid}\t{uid}")
    );
    assert_eq!(status_field(pid, "NoNewPrivs:").unwrap(), "1");
    // A second call reaches the same instance.
    let again = json(&call(&a, "/whoami", b"").await.unwrap());
    assert_eq!(again["handler"]["pid"], wa["handler"]["pid"]);

    // admin/stats is 0750 root:group: alice (in the group) may call, bob may not.
    let stats = call(&a, "/admin/stats", b"").await.unwrap();
    assert!(
        String::from_utf8_lossy(&stats).contains(&alice),
        "{}",
        String::from_utf8_lossy(&stats)
    );
    let err = call(&b, "/admin/stats", b"").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::PermissionDenied), "{err}");
    assert!(
        err.to_string().contains("13") || err.to_string().contains("ermission"),
        "{err}"
    );

    // The service handler reads the caller from the kernel: the worker, as alice.
    let clock = String::from_utf8(call(&a, "/clock", b"").await.unwrap()).unwrap();
    assert!(
        clock.contains(&format!("uid={}", uid_of(&alice))),
        "{clock}"
    );

    // Links planted in the canonical tree are not cloned.
    for path in ["/escape", "/hard"] {
        let err = a.walk(path).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::NoSuchNode), "{path}: {err}");
    }

    // A directory lists what the user can see.
    let names: Vec<String> = a
        .root()
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["admin", "clock", "echo", "whoami"]);
    let kinds: Vec<QidType> = a
        .root()
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.qid.kind)
        .collect();
    assert_eq!(kinds[0], QidType::Dir);

    // Alice, as a plain process, cannot reach bob's clone: the kernel refuses.
    let bobs_echo = daemon.dir.join("run/users").join(&bob).join("tree/echo");
    assert!(bobs_echo.exists());
    let out = Command::new("python3")
        .args([
            "-c",
            "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ntry:\n s.connect(sys.argv[1]); print('connected')\nexcept PermissionError: print('denied')",
        ])
        .arg(&bobs_echo)
        .uid(uid_of(&alice))
        .gid(uid_of(&alice))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "denied",
        "{out:?}"
    );

    // DAC follows the canonical tree: open /admin/stats to all, bob attaches
    // again, and now may call.
    let canonical = daemon.dir.join("tree/admin/stats");
    fs::set_permissions(&canonical, fs::Permissions::from_mode(0o755)).unwrap();
    let b2 = login(&client, &bob).await;
    let stats = call(&b2, "/admin/stats", b"").await.unwrap();
    assert!(String::from_utf8_lossy(&stats).contains(&bob));
    // And closing it again takes the right away at the next attach.
    fs::set_permissions(&canonical, fs::Permissions::from_mode(0o700)).unwrap();
    let a2 = login(&client, &alice).await;
    let err = call(&a2, "/admin/stats", b"").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::PermissionDenied), "{err}");
    // An ACL entry counts like the mode: execute for bob alone lets bob call.
    let out = Command::new("setfacl")
        .args(["-m", &format!("u:{bob}:x")])
        .arg(&canonical)
        .output()
        .unwrap();
    assert!(out.status.success(), "setfacl: {out:?}");
    let b3 = login(&client, &bob).await;
    let stats = call(&b3, "/admin/stats", b"").await.unwrap();
    assert!(String::from_utf8_lossy(&stats).contains(&bob));
    let a3 = login(&client, &alice).await;
    let err = call(&a3, "/admin/stats", b"").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::PermissionDenied), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_handler_fails_its_call_and_the_next_call_starts_a_fresh_one() {
    let mut fx = Fixture::new();
    let alice = fx.user(PASSWORD);
    let scratch = support::scratch("crash");
    let daemon = start(&mut fx, 0, &scratch.join("none.sock"), &{
        let outside = scratch.join("outside");
        fs::write(&outside, "x").unwrap();
        outside
    });
    let client = daemon.dial().await;
    let a = login(&client, &alice).await;
    let echo = a.walk("/echo").await.unwrap();
    assert_eq!(&echo.append(&b"one"[..]).await.unwrap()[..], b"one");
    let echo_exe = daemon.dir.join("tree/echo");
    let pids = pids_of(&echo_exe, uid_of(&alice));
    assert_eq!(pids.len(), 1, "{pids:?}");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pids[0]).unwrap());

    // Hold the handler still, wait until the call is in its socket's receive
    // queue (a fixed sleep lost the race on a loaded machine: the kill came
    // first and a fresh handler answered), then kill it.
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let (result, ()) = tokio::join!(echo.append(&b"two"[..]), async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !has_unread_bytes(pids[0]) {
            assert!(
                Instant::now() < deadline,
                "the call never reached the handler"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    });
    let err = result.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::CallFailed), "{err}");

    assert_eq!(&echo.append(&b"three"[..]).await.unwrap()[..], b"three");
    let now = pids_of(&echo_exe, uid_of(&alice));
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now[0], pids[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_calls_from_ten_users_are_all_answered() {
    let mut fx = Fixture::new();
    let users: Vec<String> = (0..10).map(|_| fx.user(PASSWORD)).collect();
    let scratch = support::scratch("hundred");
    let daemon = start(&mut fx, 0, &scratch.join("none.sock"), &{
        let outside = scratch.join("outside");
        fs::write(&outside, "x").unwrap();
        outside
    });
    let client = daemon.dial().await;
    let mut sessions = Vec::new();
    for user in &users {
        sessions.push(login(&client, user).await);
    }
    let started = Instant::now();
    let mut calls = Vec::new();
    for (u, s) in sessions.iter().enumerate() {
        for i in 0..10 {
            calls.push(async move {
                let payload = format!("{u}:{i}");
                let reply = call(s, "/whoami", b"").await.unwrap();
                let echo = call(s, "/echo", payload.as_bytes()).await.unwrap();
                (u, json(&reply), payload, echo)
            });
        }
    }
    let results = futures_join_all(calls).await;
    assert_eq!(results.len(), 100);
    for (u, who, payload, echo) in results {
        assert_eq!(who["handler"]["uid"], uid_of(&users[u]));
        assert_eq!(echo, payload.as_bytes());
    }
    eprintln!("100 calls from 10 users in {:?}", started.elapsed());
}

/// Runs all futures concurrently on this task (no extra crate needed).
async fn futures_join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

/// Whether a Unix socket of process `pid` has bytes it has not read
/// (`ss`'s Recv-Q), i.e. a call waits in the handler.
fn has_unread_bytes(pid: u32) -> bool {
    let out = Command::new("ss").args(["-xpn"]).output().unwrap();
    let needle = format!("pid={pid},");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&needle))
        .any(|l| {
            l.split_whitespace()
                .nth(2)
                .and_then(|q| q.parse::<u64>().ok())
                .is_some_and(|q| q > 0)
        })
}
