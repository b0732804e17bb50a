//! Service mode: srpcd passes call connections over the service's socket, each
//! with its endpoint path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod handler_support;

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Command;

use handler_support::{LinkClient, Server, TempDir};
use srpc::handler::{Bytes, Call, Listener};

fn start_service() -> Server {
    Server::start_with(
        |path| Listener::bind_fd_passing(path).unwrap(),
        |call: Call| async move {
            Ok(Bytes::from(format!(
                "{} uid={} pid={} data={}",
                call.endpoint,
                call.caller.uid,
                call.caller.pid,
                String::from_utf8_lossy(&call.data)
            )))
        },
    )
}

/// srpcd's side: hands the service one end of a fresh connection, keeps the other.
fn pass(passer: &UnixStream, endpoint: &[u8]) -> UnixStream {
    let (ours, theirs) = UnixStream::pair().unwrap();
    srpc_os::send_fd(passer.as_fd(), theirs.as_fd(), endpoint).unwrap();
    ours
}

fn link(stream: UnixStream) -> LinkClient {
    stream.set_nonblocking(true).unwrap();
    LinkClient::new(tokio::net::UnixStream::from_std(stream).unwrap())
}

/// True if `stream` reaches end of stream (the other end was closed) in time.
fn sees_eof(mut stream: &UnixStream) -> bool {
    stream
        .set_read_timeout(Some(handler_support::TIMEOUT))
        .unwrap();
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passed_connections_are_served_with_their_endpoint_paths() {
    let server = start_service();
    let passer = UnixStream::connect(&server.path).unwrap();
    let mut clock = link(pass(&passer, b"/clock"));
    let mut alarm = link(pass(&passer, b"/clock/alarm"));
    let me = std::process::id();
    let uid = srpc_os::effective_uid();
    // The caller is the peer of the passed connection: for a socketpair, its
    // creator (this process).
    assert_eq!(
        clock.call_ok(1, "now").await,
        format!("/clock uid={uid} pid={me} data=now")
    );
    assert_eq!(
        alarm.call_ok(1, "set").await,
        format!("/clock/alarm uid={uid} pid={me} data=set")
    );
    // Closing the passer does not end connections already passed.
    drop(passer);
    assert_eq!(
        clock.call_ok(2, "still").await,
        format!("/clock uid={uid} pid={me} data=still")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_passes_are_refused_and_the_service_keeps_serving() {
    let server = start_service();
    let passer = UnixStream::connect(&server.path).unwrap();
    // Endpoint paths must be absolute, valid tree paths in UTF-8: the passed
    // connection is closed, the passer stays usable.
    for bad in [&b"clock"[..], b"/a/../b", b"/\xff"] {
        let refused = pass(&passer, bad);
        assert!(sees_eof(&refused), "{bad:?} was not refused");
    }
    let mut ok = link(pass(&passer, b"/clock"));
    assert!(ok.call_ok(1, "x").await.starts_with("/clock "));

    // Bytes without an fd break the passer's framing: it is closed.
    let mut raw = UnixStream::connect(&server.path).unwrap();
    std::io::Write::write_all(&mut raw, b"/clock").unwrap();
    assert!(sees_eof(&raw));

    // Other passers and connections carry on.
    assert!(ok.call_ok(2, "y").await.starts_with("/clock "));
    let passer2 = UnixStream::connect(&server.path).unwrap();
    let mut again = link(pass(&passer2, b"/clock"));
    assert!(again.call_ok(1, "z").await.starts_with("/clock "));
    server.stop().await;
}

/// A passer that is neither root nor the service's user: python, run as nobody,
/// passes one end of a socketpair and reports whether the service closed both the
/// passer and the passed connection.
const PY_PASSER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
ours, theirs = socket.socketpair()
try:
    socket.send_fds(s, [b"/clock"], [theirs.fileno()])
except (BrokenPipeError, ConnectionResetError):
    pass  # refused even before the message went out
theirs.close()
def closed(sock):
    sock.settimeout(10)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:  # closed with our message unread
        return True
print(closed(s), closed(ours))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passers_other_than_root_or_the_service_user_are_refused() {
    if srpc_os::effective_uid() != 0 {
        eprintln!("skipped: needs root to run a passer as another user");
        return;
    }
    let server = start_service();
    // Loosen the socket's mode so nobody can connect at all; the uid check is
    // what must refuse it.
    std::fs::set_permissions(&server.path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = server.path.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(PY_PASSER)
            .arg(&path)
            .uid(65534)
            .gid(65534)
            .env_clear()
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "True True");
    server.stop().await;
}

#[test]
fn the_service_socket_is_private_and_replaces_a_stale_one() {
    let dir = TempDir::new("fdpass-bind");
    let path = dir.join("svc.sock");
    let first = Listener::bind_fd_passing(&path).unwrap();
    drop(first); // leaves the socket file behind, as a crashed service would
    let _second = Listener::bind_fd_passing(&path).unwrap();
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let file = dir.join("not-a-socket");
    std::fs::write(&file, b"keep me").unwrap();
    let err = Listener::bind_fd_passing(&file).unwrap_err();
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}
