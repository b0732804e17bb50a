//! A handler reply too large for the client's connection, or for the
//! handler link itself, is `limit_exceeded` naming the limit, not a
//! `call_failed` that blames a crash (issue 12 item 7); the worker and the
//! connection go on. Real users, the real daemon. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "support/pam_fixture.rs"]
mod pam_fixture;
#[path = "support/daemon.rs"]
mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use pam_fixture::Fixture;
use srpc::client::PasswordConversation;
use srpc_proto::ErrorCode;
use support::{worker_of, Options};

const PASSWORD: &str = "big replies pw";

/// A per-user handler speaking the handler link (docs/protocol.md §16) that
/// answers each call with as many bytes as the call's data says.
const SIZED: &str = r#"#!/usr/bin/python3
import socket, struct
listener = socket.socket(fileno=3)
def read_exact(c, n, buf):
    while len(buf) < n:
        d = c.recv(1 << 16)
        if not d:
            return None
        buf += d
    return buf
while True:
    c, _ = listener.accept()
    buf = b""
    try:
        while True:
            buf = read_exact(c, 20, buf)
            if buf is None:
                break
            kind, seq, blen = struct.unpack(">IQQ", buf[:20])
            buf = read_exact(c, 20 + blen, buf)
            if buf is None:
                break
            body, buf = buf[20:20 + blen], buf[20 + blen:]
            clen = struct.unpack(">I", body[:4])[0]
            size = int(body[4 + clen:] or b"0")
            ctl = b"{}"
            payload = struct.pack(">I", len(ctl)) + ctl
            c.sendall(struct.pack(">IQQ", 131, seq, len(payload) + size) + payload)
            chunk = b"x" * (1 << 20)
            left = size
            while left > 0:
                n = min(left, len(chunk))
                c.sendall(chunk[:n])
                left -= n
    except OSError:
        pass
    c.close()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_over_max_message_or_the_link_limit_are_limit_exceeded() {
    let mut fx = Fixture::new();
    let user = fx.user(PASSWORD);
    let opts = Options {
        service: fx.unix_service(),
        idle_secs: 60,
        extra: String::new(),
    };
    let daemon = support::start(&mut fx, &opts, |tree| {
        fs::write(tree.join("sized"), SIZED).unwrap();
        fs::set_permissions(tree.join("sized"), fs::Permissions::from_mode(0o755)).unwrap();
    });
    let client = daemon.dial().await;
    let s = client
        .auth(&user, "/", &mut PasswordConversation::new(PASSWORD))
        .await
        .unwrap();
    let sized = s.walk("/sized").await.unwrap();
    assert_eq!(sized.append(b"10".to_vec()).await.unwrap().len(), 10);
    let worker = worker_of(&user).unwrap();
    let max = client.limits().max_message;

    // Over the connection's max_message (1 MiB by default), under the link's.
    let err = sized.append(b"2097152".to_vec()).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::LimitExceeded), "{err}");
    assert!(err.to_string().contains("max_message"), "{err}");

    // Over the handler link's own ceiling (16 MiB).
    let err = sized.append(b"17000000".to_vec()).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::LimitExceeded), "{err}");
    assert!(err.to_string().contains("16777216"), "{err}");

    // The connection, the session and the worker go on.
    assert_eq!(sized.append(b"5".to_vec()).await.unwrap().len(), 5);
    assert_eq!(worker_of(&user), Some(worker));
    assert!(max >= 4096);
}
