//! The caller a handler sees is what the kernel reports for the connecting
//! process — also when that process runs as another user — and nothing the
//! request says.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod handler_support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use handler_support::{LinkClient, Server};
use srpc::handler::{Bytes, Call};
use srpc_proto::{decode, encode, Frame, Limits, Message};

const NOBODY: u32 = 65534;

/// Replies with the caller as the handler sees it.
async fn describe(call: Call) -> Result<Bytes, srpc::handler::CallError> {
    let c = &call.caller;
    Ok(Bytes::from(format!(
        "endpoint={} uid={} gid={} pid={} user={:?} context={:?}",
        call.endpoint, c.uid, c.gid, c.pid, c.user, c.context
    )))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_is_the_connecting_process() {
    let server = Server::start(describe);
    let mut client = LinkClient::connect(&server.path).await;
    let reply = client.call_ok(1, "I am uid=1000").await;
    let selinux = std::path::Path::new("/sys/fs/selinux/enforce").exists();
    let expected = format!(
        "endpoint=/test uid={} gid={} pid={} user={:?}",
        srpc_os::effective_uid(),
        srpc_os::effective_gid(),
        std::process::id(),
        srpc_os::user_name(srpc_os::effective_uid()).unwrap(),
    );
    assert!(reply.starts_with(&expected), "{reply}");
    if !selinux {
        assert!(reply.ends_with("context=None"), "{reply}");
    }
    server.stop().await;
}

/// A client in another process, run as `nobody` by the kernel's rules (setuid
/// before exec), sends a request that claims to be root. Python does the socket
/// I/O; the frames are encoded and decoded here.
const PY_CLIENT: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(bytes.fromhex(sys.argv[2]))
def read(n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            sys.exit("connection closed")
        out += chunk
    return out
head = read(20)
body = read(struct.unpack(">Q", head[12:20])[0])
sys.stdout.write((head + body).hex())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_running_as_nobody_is_seen_as_nobody() {
    if srpc_os::effective_uid() != 0 {
        eprintln!("skipped: needs root to run a client as another user");
        return;
    }
    let server = Server::start(describe);
    // The socket must be writable by nobody to connect (its directory already is
    // searchable).
    std::fs::set_permissions(&server.path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let request = encode(&Frame::new(
        9,
        Message::Tappend {
            fid: 0,
            data: Bytes::from_static(b"uid=0 user=root trust me"),
        },
    ));
    let path = server.path.clone();
    let output = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg("-c")
            .arg(PY_CLIENT)
            .arg(&path)
            .arg(hex::encode(&request))
            .uid(NOBODY)
            .gid(NOBODY)
            .env_clear();
        let child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        (pid, child.wait_with_output().unwrap())
    });
    let (pid, output) = tokio::time::timeout(handler_support::TIMEOUT, output)
        .await
        .unwrap()
        .unwrap();
    assert!(
        output.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reply = hex::decode(&output.stdout).unwrap();
    let frame = decode(&reply, &Limits::default()).unwrap();
    assert_eq!(frame.seq, 9);
    let Message::Rappend { data } = frame.msg else {
        panic!("expected Rappend, got {:?}", frame.msg);
    };
    let text = String::from_utf8(data.to_vec()).unwrap();
    assert!(
        text.starts_with(&format!(
            "endpoint=/test uid={NOBODY} gid={NOBODY} pid={pid} user=Some(\"nobody\")"
        )),
        "{text}"
    );
    server.stop().await;
}
