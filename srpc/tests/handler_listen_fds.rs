//! A per-user handler started the way srpcd starts one: a listening socket on fd 3,
//! `LISTEN_FDS`/`LISTEN_PID`/`LISTEN_FDNAMES`, the calling user's uid and gid
//! (`srpc_os::ListenFdCommand`). The handler is this test binary itself, re-run in
//! handler mode; it must take its socket before any thread starts, which is why
//! this test has no libtest harness (`harness = false`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod handler_support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command, ExitCode, Stdio};

use handler_support::{LinkClient, TempDir};
use srpc::handler::{serve, Bytes, Call, Listener, ServeError};
use srpc_os::{Credentials, ListenFdCommand};

/// Set in the handler's environment: run as the handler, not as the tests.
const HANDLER_MODE: &str = "SRPC_TEST_HANDLER_MODE";
const NOBODY: u32 = 65534;

fn main() -> ExitCode {
    // This binary is also the launcher srpcd would exec (srpc-launch).
    if std::env::args().nth(1).as_deref() == Some(srpc_os::LAUNCH_MARKER) {
        srpc_os::launcher_main();
    }
    if std::env::var_os(HANDLER_MODE).is_some() {
        return handler_main();
    }
    let tests: [(&str, fn()); 4] = [
        (
            "from_env_without_a_socket_is_an_error",
            from_env_without_a_socket_is_an_error,
        ),
        (
            "a_handler_started_like_srpcd_does_serves_calls_as_the_user",
            a_handler_started_like_srpcd_does_serves_calls_as_the_user,
        ),
        (
            "a_handler_given_a_non_listener_refuses_to_start",
            a_handler_given_a_non_listener_refuses_to_start,
        ),
        (
            "a_handler_given_a_bad_idle_timeout_refuses_to_start",
            a_handler_given_a_bad_idle_timeout_refuses_to_start,
        ),
    ];
    for (name, test) in tests {
        test();
        println!("test {name} ... ok");
    }
    println!("\ntest result: ok. {} passed", tests.len());
    ExitCode::SUCCESS
}

/// Handler mode: what a handler's `main` looks like.
fn handler_main() -> ExitCode {
    let listener = match Listener::from_env() {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("handler: {e}");
            return ExitCode::from(3);
        }
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    match runtime.block_on(serve(listener, describe)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("handler: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn describe(call: Call) -> Result<Bytes, srpc::handler::CallError> {
    Ok(Bytes::from(format!(
        "endpoint={} handler_uid={} handler_gid={} caller_uid={} caller_pid={} data={}",
        call.endpoint,
        srpc_os::effective_uid(),
        srpc_os::effective_gid(),
        call.caller.uid,
        call.caller.pid,
        String::from_utf8_lossy(&call.data),
    )))
}

fn from_env_without_a_socket_is_an_error() {
    // The test process was not started with LISTEN_* (cargo does not set them).
    assert!(matches!(Listener::from_env(), Err(ServeError::NoSocket)));
}

/// A copy of this binary that another user can execute (the build directory may
/// not be reachable for them).
fn handler_binary(dir: &TempDir) -> std::path::PathBuf {
    let exe = dir.join("handler");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    exe
}

fn spawn_handler(dir: &TempDir, fd: std::os::fd::OwnedFd, ids: Option<Credentials>) -> Child {
    spawn_handler_with_env(dir, fd, ids, &[])
}

fn spawn_handler_with_env(
    dir: &TempDir,
    fd: std::os::fd::OwnedFd,
    ids: Option<Credentials>,
    env: &[(&str, &str)],
) -> Child {
    let mut handler = ListenFdCommand::new(handler_binary(dir), fd, "/echo");
    handler.env(HANDLER_MODE, "1");
    for (key, value) in env {
        handler.env(key, value);
    }
    if let Some(ids) = ids {
        handler.credentials(ids);
    }
    let launcher = std::env::current_exe().unwrap();
    let mut launch = handler.into_command(&launcher).unwrap();
    let child = launch.command.stderr(Stdio::piped()).spawn().unwrap();
    drop(launch.command); // closes our copy of the fd
    child
}

fn a_handler_started_like_srpcd_does_serves_calls_as_the_user() {
    let root = srpc_os::effective_uid() == 0;
    let dir = TempDir::new("listen-fds");
    let path = dir.join("echo.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let ids = root.then(|| Credentials {
        uid: NOBODY,
        gid: NOBODY,
        groups: vec![NOBODY],
    });
    let (uid, gid) = if root {
        (NOBODY, NOBODY)
    } else {
        (srpc_os::effective_uid(), srpc_os::effective_gid())
    };
    let child = spawn_handler(&dir, listener.into(), ids);
    let pid = child.id();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // The socket was bound before the handler started: connecting cannot race
        // its start-up, calls simply wait in the backlog.
        let mut client = LinkClient::connect(&path).await;
        let me = std::process::id();
        let my_uid = srpc_os::effective_uid();
        let expected = |data: &str| {
            format!(
                "endpoint=/echo handler_uid={uid} handler_gid={gid} caller_uid={my_uid} \
                 caller_pid={me} data={data}"
            )
        };
        assert_eq!(client.call_ok(1, "hello").await, expected("hello"));
        for seq in 2..10 {
            client.append(seq, format!("n{seq}")).await;
        }
        for _ in 2..10 {
            let frame = client.recv().await.unwrap();
            let srpc_proto::Message::Rappend { data } = frame.msg else {
                panic!("expected Rappend");
            };
            assert_eq!(data, expected(&format!("n{}", frame.seq)).as_bytes());
        }
    });
    drop(runtime);

    // SIGTERM ends `serve` cleanly.
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = wait_with_timeout(child);
    assert!(
        out.status.success(),
        "handler exited with {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn a_handler_given_a_non_listener_refuses_to_start() {
    let dir = TempDir::new("listen-fds-bad");
    let (not_a_listener, _other) = UnixStream::pair().unwrap();
    let child = spawn_handler(&dir, not_a_listener.into(), None);
    let out = wait_with_timeout(child);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not a listening Unix stream socket"),
        "{stderr}"
    );
}

fn a_handler_given_a_bad_idle_timeout_refuses_to_start() {
    for bad in ["0", "soon"] {
        let dir = TempDir::new("listen-fds-idle");
        let listener = UnixListener::bind(dir.join("echo.sock")).unwrap();
        let env = [(srpc::handler::IDLE_TIMEOUT_ENV, bad)];
        let child = spawn_handler_with_env(&dir, listener.into(), None, &env);
        let out = wait_with_timeout(child);
        assert_eq!(out.status.code(), Some(3));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("SRPC_IDLE_TIMEOUT_SECS is {bad:?}")),
            "{stderr}"
        );
    }
}

/// Waits for the child, killing it if it has not exited within the test timeout.
fn wait_with_timeout(mut child: Child) -> std::process::Output {
    let deadline = std::time::Instant::now() + handler_support::TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("handler did not exit");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}
