//! The example handlers, run as srpcd runs them: `stats` and `whoami` as per-user
//! handlers (socket on fd 3 via `LISTEN_FDS`, a clean environment, the user's ids
//! when the tests run as root), `clock` as a service that is passed connections.
//!
//! The examples are compiled into this test binary as modules; it re-executes
//! itself with `SRPC_TEST_EXAMPLE=<name>` to run that example's `main`, which
//! must take its socket before any thread starts — hence no libtest harness.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Each example is a program of its own and loads the shared start-up module
// (examples/support/handler_main.rs) itself; three of them are compiled in here.
#![allow(clippy::duplicate_mod)]

mod handler_support;

#[path = "../examples/clock.rs"]
mod clock;
#[path = "../examples/stats.rs"]
mod stats;
#[path = "../examples/whoami.rs"]
mod whoami;

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Instant, SystemTime};

use handler_support::{LinkClient, TempDir, TIMEOUT};
use srpc_os::{Credentials, ListenFdCommand};

/// Set in a re-executed copy: the example to run instead of the tests.
const EXAMPLE: &str = "SRPC_TEST_EXAMPLE";
const NOBODY: u32 = 65534;

fn main() -> ExitCode {
    // This binary is also the launcher srpcd would exec (srpc-launch).
    if std::env::args().nth(1).as_deref() == Some(srpc_os::LAUNCH_MARKER) {
        srpc_os::launcher_main();
    }
    match std::env::var(EXAMPLE).as_deref() {
        Ok("stats") => return stats::main(),
        Ok("whoami") => return whoami::main(),
        Ok("clock") => return clock::main(),
        Ok(other) => panic!("no example {other:?}"),
        Err(_) => {}
    }
    let tests: [(&str, fn()); 6] = [
        ("stats_parses_and_formats", stats_parses_and_formats),
        (
            "stats_as_a_per_user_handler_reports_and_exits_when_idle",
            stats_as_a_per_user_handler_reports_and_exits_when_idle,
        ),
        (
            "whoami_shows_the_handler_running_as_the_user",
            whoami_shows_the_handler_running_as_the_user,
        ),
        ("clock_formats_rfc3339", clock_formats_rfc3339),
        (
            "clock_service_answers_passed_connections_with_the_callers_uid",
            clock_service_answers_passed_connections_with_the_callers_uid,
        ),
        (
            "clock_without_a_socket_is_a_usage_error",
            clock_without_a_socket_is_a_usage_error,
        ),
    ];
    for (name, test) in tests {
        test();
        println!("test {name} ... ok");
    }
    println!("\ntest result: ok. {} passed", tests.len());
    ExitCode::SUCCESS
}

/// A copy of this binary that another user can execute (the build directory may
/// not be reachable for them).
fn executable_copy(dir: &TempDir) -> PathBuf {
    let exe = dir.join("examples");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    exe
}

/// The ids srpcd would start a per-user handler with: `nobody` when we can, else
/// our own; and those ids.
fn handler_ids() -> (Option<Credentials>, u32, u32) {
    if srpc_os::effective_uid() == 0 {
        let ids = Credentials {
            uid: NOBODY,
            gid: NOBODY,
            groups: vec![NOBODY],
        };
        (Some(ids), NOBODY, NOBODY)
    } else {
        (None, srpc_os::effective_uid(), srpc_os::effective_gid())
    }
}

/// Starts `example` as srpcd starts a per-user handler for `endpoint`.
fn spawn_per_user(
    dir: &TempDir,
    example: &str,
    listener: OwnedFd,
    endpoint: &str,
    env: &[(&str, &str)],
) -> Child {
    let mut handler = ListenFdCommand::new(executable_copy(dir), listener, endpoint);
    handler.env(EXAMPLE, example);
    for (key, value) in env {
        handler.env(key, value);
    }
    if let Some(ids) = handler_ids().0 {
        handler.credentials(ids);
    }
    let launcher = std::env::current_exe().unwrap();
    let mut launch = handler.into_command(&launcher).unwrap();
    let child = launch.command.stderr(Stdio::piped()).spawn().unwrap();
    drop(launch.command); // closes our copy of the listener
    child
}

/// Waits for the child to exit by itself; kills it if it has not in time.
fn wait_with_timeout(mut child: Child) -> std::process::Output {
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!(
                "handler did not exit: {}",
                String::from_utf8_lossy(&child.wait_with_output().unwrap().stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

fn terminate(child: Child) -> std::process::Output {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = wait_with_timeout(child);
    assert!(
        out.status.success(),
        "exited with {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One call with empty data on a fresh connection to `path`.
fn call_once(path: &Path) -> String {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut client = LinkClient::connect(path).await;
        client.call_ok(1, "").await
    })
}

fn my_name() -> String {
    srpc_os::user_name(srpc_os::effective_uid())
        .unwrap()
        .unwrap()
}

fn uptime_secs() -> u64 {
    stats::parse_uptime(&std::fs::read_to_string("/proc/uptime").unwrap()).unwrap()
}

fn stats_parses_and_formats() {
    assert_eq!(
        stats::parse_loadavg("0.10 0.05 0.01 1/143 4242\n").unwrap(),
        ["0.10", "0.05", "0.01"]
    );
    for bad in ["", "0.10 0.05", "0.10 x 0.01 1/1 1"] {
        assert_eq!(stats::parse_loadavg(bad), None, "{bad:?}");
    }
    assert_eq!(stats::parse_uptime("12345.67 24000.10\n"), Some(12345));
    assert_eq!(stats::parse_uptime("42 1"), Some(42));
    for bad in ["", "x.5 1", "-1.0 1", "1.x 1"] {
        assert_eq!(stats::parse_uptime(bad), None, "{bad:?}");
    }
    assert_eq!(stats::format_uptime(0), "0h00m");
    assert_eq!(stats::format_uptime(3 * 3600 + 12 * 60 + 59), "3h12m");
    assert_eq!(stats::format_uptime(2 * 86_400 + 3600 + 5 * 60), "2d1h05m");
}

fn stats_as_a_per_user_handler_reports_and_exits_when_idle() {
    let dir = TempDir::new("example-stats");
    let path = dir.join("stats.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let child = spawn_per_user(
        &dir,
        "stats",
        listener.into(),
        "/admin/stats",
        &[("SRPC_IDLE_TIMEOUT_SECS", "1")],
    );
    let before = uptime_secs();
    let reply = call_once(&path);
    let after = uptime_secs();

    let lines: Vec<&str> = reply.lines().collect();
    assert!(reply.ends_with('\n'), "{reply:?}");
    let [load, uptime, processes, caller] = lines.as_slice() else {
        panic!("not four lines: {reply:?}");
    };
    let load: Vec<f64> = load
        .strip_prefix("load: ")
        .unwrap()
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(load.len(), 3, "{reply}");
    let uptime = uptime.strip_prefix("uptime: ").unwrap();
    assert!(
        [stats::format_uptime(before), stats::format_uptime(after)].contains(&uptime.to_owned()),
        "{reply}"
    );
    // At least the handler itself, whatever `hidepid` hides.
    let processes: usize = processes
        .strip_prefix("processes: ")
        .unwrap()
        .parse()
        .unwrap();
    assert!(processes >= 1, "{reply}");
    assert_eq!(
        *caller,
        format!("caller: {} (uid {})", my_name(), srpc_os::effective_uid())
    );

    // The connection is closed: with SRPC_IDLE_TIMEOUT_SECS=1 it exits by itself.
    let out = wait_with_timeout(child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(stderr.contains("idle: stopping"), "{stderr}");
}

fn whoami_shows_the_handler_running_as_the_user() {
    let dir = TempDir::new("example-whoami");
    let path = dir.join("whoami.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let child = spawn_per_user(&dir, "whoami", listener.into(), "/whoami", &[]);
    let handler_pid = child.id();
    let reply: serde_json::Value = serde_json::from_str(&call_once(&path)).unwrap();
    let (_, uid, gid) = handler_ids();
    let expected = serde_json::json!({
        "endpoint": "/whoami",
        "caller": {
            "uid": srpc_os::effective_uid(),
            "gid": srpc_os::effective_gid(),
            "user": my_name(),
            "pid": std::process::id(),
            "context": reply["caller"]["context"].clone(),
        },
        "handler": { "pid": handler_pid, "uid": uid, "gid": gid },
    });
    // Whole-object equality: a renamed, missing or extra field fails too.
    assert_eq!(reply, expected);
    let context = &reply["caller"]["context"];
    assert!(context.is_null() || context.is_string(), "{reply}");
    terminate(child);
}

fn clock_formats_rfc3339() {
    for (secs, text) in [
        (0, "1970-01-01T00:00:00Z"),
        (951_782_400, "2000-02-29T00:00:00Z"),
        (1_700_000_000, "2023-11-14T22:13:20Z"),
        (4_107_542_399, "2100-02-28T23:59:59Z"),
        (4_107_542_400, "2100-03-01T00:00:00Z"),
        (253_402_300_799, "9999-12-31T23:59:59Z"),
    ] {
        assert_eq!(clock::rfc3339(secs), text, "{secs}");
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Connects to a service socket that the service creates after it starts.
fn connect_when_bound(path: &Path) -> UnixStream {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match UnixStream::connect(path) {
            Ok(stream) => return stream,
            Err(e) if Instant::now() > deadline => panic!("service never listened: {e}"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
}

/// srpcd's side: passes one end of a fresh connection for `endpoint`, and makes
/// one call on the other end.
fn call_passed(passer: &UnixStream, endpoint: &str) -> String {
    let (ours, theirs) = UnixStream::pair().unwrap();
    srpc_os::send_fd(passer.as_fd(), theirs.as_fd(), endpoint.as_bytes()).unwrap();
    drop(theirs);
    ours.set_nonblocking(true).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut client = LinkClient::new(tokio::net::UnixStream::from_std(ours).unwrap());
        client.call_ok(1, "").await
    })
}

fn clock_service_answers_passed_connections_with_the_callers_uid() {
    let dir = TempDir::new("example-clock");
    let path = dir.join("clock.sock");
    let child = Command::new(std::env::current_exe().unwrap())
        .arg("--socket")
        .arg(&path)
        .env_clear()
        .env(EXAMPLE, "clock")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let passer = connect_when_bound(&path);
    let before = clock::rfc3339(now_secs());
    let reply = call_passed(&passer, "/clock");
    let after = clock::rfc3339(now_secs());

    // The caller is the peer of the passed connection: for a socketpair, its
    // creator, this process.
    let (time, rest) = reply.split_once(' ').unwrap();
    assert_eq!(
        rest,
        format!(
            "caller={} uid={} endpoint=/clock\n",
            my_name(),
            srpc_os::effective_uid()
        )
    );
    assert!(
        before.as_str() <= time && time <= after.as_str(),
        "{time} not in {before}..={after}"
    );
    // The endpoint is whatever srpcd said with each connection.
    assert!(call_passed(&passer, "/time/utc").ends_with(" endpoint=/time/utc\n"));

    let out = terminate(child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SIGTERM"), "{stderr}");
}

fn clock_without_a_socket_is_a_usage_error() {
    let out = Command::new(std::env::current_exe().unwrap())
        .env_clear()
        .env(EXAMPLE, "clock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: clock --socket PATH"));
}
