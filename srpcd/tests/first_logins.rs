//! Concurrent first logins all attach (issue 12 item 10): many sessions of
//! one user attaching while its worker starts, and many users logging in at
//! once on a fresh srpcd. Real users, the real daemon. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "support/pam_fixture.rs"]
mod pam_fixture;
#[path = "support/daemon.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pam_fixture::Fixture;
use srpc::client::{Client, PasswordConversation};
use support::{install_example, worker_of, Daemon, Options};

const PASSWORD: &str = "first logins pw";

/// Room for many logins at once from this one source.
const LIMITS: &str = "[limits]\nauth_attempts = 10000\nauth_conversations = 256\n\
                      auth_conversations_per_source = 256\n\
                      auth_conversations_per_connection = 64\n";

fn start(fx: &mut Fixture) -> Daemon {
    let opts = Options {
        service: fx.unix_service(),
        idle_secs: 1,
        extra: LIMITS.into(),
    };
    support::start(fx, &opts, |tree| {
        install_example("echo", &tree.join("echo"), 0o755);
    })
}

/// Logs `user` in on `client` and makes one call; the error as text.
async fn login_and_call(client: Arc<Client>, user: String) -> Result<(), String> {
    let s = client
        .auth(&user, "/", &mut PasswordConversation::new(PASSWORD))
        .await
        .map_err(|e| format!("{user}: {e}"))?;
    let echo = s.walk("/echo").await.map_err(|e| format!("{user}: {e}"))?;
    let reply = echo
        .append(b"hi".to_vec())
        .await
        .map_err(|e| format!("{user}: {e}"))?;
    if &reply[..] != b"hi" {
        return Err(format!("{user}: echo answered {reply:?}"));
    }
    drop(echo);
    s.close().await.map_err(|e| format!("{user}: {e}"))
}

async fn all(attempts: Vec<tokio::task::JoinHandle<Result<(), String>>>) -> Vec<String> {
    let mut failed = Vec::new();
    for a in attempts {
        if let Err(e) = a.await.unwrap() {
            failed.push(e);
        }
    }
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_sessions_of_one_user_attach_while_its_worker_starts() {
    let mut fx = Fixture::new();
    let user = fx.user(PASSWORD);
    let daemon = start(&mut fx);
    let clients: Vec<Arc<Client>> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(Arc::new(daemon.dial().await));
        }
        v
    };
    for round in 0..3 {
        // No worker runs: the first attach starts it, the others queue.
        let deadline = Instant::now() + Duration::from_secs(20);
        while worker_of(&user).is_some() {
            assert!(Instant::now() < deadline, "the idle worker was not reaped");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let attempts = (0..40)
            .map(|i| {
                let client = Arc::clone(&clients[i % clients.len()]);
                tokio::spawn(login_and_call(client, user.clone()))
            })
            .collect();
        let failed = all(attempts).await;
        assert!(
            failed.is_empty(),
            "round {round}: {} of 40 failed: {failed:?}\n{}",
            failed.len(),
            daemon.log_text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_users_log_in_at_once_on_a_fresh_srpcd() {
    let mut fx = Fixture::new();
    let users: Vec<String> = (0..60).map(|_| fx.user(PASSWORD)).collect();
    let daemon = start(&mut fx);
    let mut attempts = Vec::new();
    for user in &users {
        let client = Arc::new(daemon.dial().await);
        attempts.push(tokio::spawn(login_and_call(client, user.clone())));
    }
    let failed = all(attempts).await;
    assert!(
        failed.is_empty(),
        "{} of 60 failed: {failed:?}\n{}",
        failed.len(),
        daemon.log_text()
    );
}
