//! Message sizes and memory end to end: the real daemon, real users, the echo
//! handler from srpc/examples. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "support/pam_fixture.rs"]
mod pam_fixture;
#[path = "support/daemon.rs"]
mod support;

use pam_fixture::Fixture;
use srpc::client::{DialOptions, PasswordConversation};
use srpc_proto::Limits;
use support::{install_example, worker_of, Options};

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
