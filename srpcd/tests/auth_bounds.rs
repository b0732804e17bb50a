//! What an unauthenticated client can start is bounded (audit H3, H4, M3):
//! PAM conversations per connection, per source and in all, refused with
//! `limit_exceeded` before PAM starts; deadlines for answers and for the whole
//! login; a lockout counted when each attempt starts; connections without a
//! session closed after a timeout. Real users, the real daemon. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "support/pam_fixture.rs"]
mod pam_fixture;
#[path = "support/daemon.rs"]
mod support;

use std::fs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pam_fixture::Fixture;
use srpc::client::{Client, Conversation, ConversationError, PasswordConversation};
use srpc_proto::{ErrorCode, Prompt};
use support::{status_field, Daemon, Options};
use tokio::sync::{mpsc, Semaphore};
use zeroize::Zeroizing;

const PASSWORD: &str = "auth bounds pw";

/// Answers nothing until `go` is released, then with `answer`; reports each
/// prompt it was shown.
struct Held {
    prompted: mpsc::UnboundedSender<()>,
    /// No permits while held; a released login takes one and gives it back.
    go: Arc<Semaphore>,
    answer: String,
}

impl Conversation for Held {
    async fn respond(
        &mut self,
        prompts: &[Prompt],
    ) -> Result<Vec<Zeroizing<String>>, ConversationError> {
        let _ = self.prompted.send(());
        drop(self.go.acquire().await);
        Ok(prompts
            .iter()
            .map(|_| Zeroizing::new(self.answer.clone()))
            .collect())
    }
}

/// srpcd with `limits` added as a `[limits]` table and `pam` lines added to
/// its `[pam]` table.
fn start(fx: &mut Fixture, limits: &str, pam: &str) -> Daemon {
    let opts = Options {
        service: fx.unix_service(),
        idle_secs: 60,
        extra: format!("[limits]\n{limits}\n"),
    };
    let prepared = support::prepare(fx, &opts, |_| {});
    let text = fs::read_to_string(&prepared.config)
        .unwrap()
        .replace("[pam]\n", &format!("[pam]\n{pam}\n"));
    fs::write(&prepared.config, text).unwrap();
    support::launch(prepared)
}

fn threads(daemon: &Daemon) -> u32 {
    status_field(daemon.child.id(), "Threads:")
        .unwrap()
        .parse()
        .unwrap()
}

type Attempt = tokio::task::JoinHandle<Result<srpc::client::Session, srpc::client::Error>>;

/// Starts `n` logins of `user` on `client`, each held at its first prompt.
fn hold(
    client: &Arc<Client>,
    user: &str,
    n: usize,
    go: &Arc<Semaphore>,
    answer: &str,
    prompted: &mpsc::UnboundedSender<()>,
) -> Vec<Attempt> {
    (0..n)
        .map(|_| {
            let (client, user) = (Arc::clone(client), user.to_owned());
            let mut conv = Held {
                prompted: prompted.clone(),
                go: Arc::clone(go),
                answer: answer.to_owned(),
            };
            tokio::spawn(async move { client.auth(&user, "/", &mut conv).await })
        })
        .collect()
}

/// Waits up to `within` until each attempt is prompted (held) or refused;
/// returns how many were prompted and the refusals' codes and messages.
/// Prompted attempts stay in `attempts`.
async fn settle(
    attempts: &mut Vec<Attempt>,
    prompted: &mut mpsc::UnboundedReceiver<()>,
    within: Duration,
) -> (usize, Vec<(Option<ErrorCode>, String)>) {
    let total = attempts.len();
    let deadline = tokio::time::Instant::now() + within;
    let mut shown = 0;
    let mut refused = Vec::new();
    loop {
        while prompted.try_recv().is_ok() {
            shown += 1;
        }
        let (done, pending): (Vec<_>, Vec<_>) = attempts
            .drain(..)
            .partition(tokio::task::JoinHandle::is_finished);
        *attempts = pending;
        for a in done {
            match a.await.unwrap() {
                Ok(_) => panic!("a held login succeeded"),
                Err(e) => refused.push((e.code(), e.to_string())),
            }
        }
        if shown + refused.len() >= total || tokio::time::Instant::now() >= deadline {
            return (shown, refused);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_are_bounded_per_connection_per_source_and_in_all() {
    let mut fx = Fixture::new();
    let user = fx.user(PASSWORD);
    // (limits, connections, logins on each, admitted, the key refusals name)
    let cases = [
        (
            "auth_conversations_per_connection = 2\nauth_conversations_per_source = 100\n\
             auth_conversations = 100",
            1,
            3,
            2,
            "limits.auth_conversations_per_connection",
        ),
        (
            "auth_conversations_per_connection = 100\nauth_conversations_per_source = 3\n\
             auth_conversations = 100",
            2,
            3,
            3,
            "limits.auth_conversations_per_source",
        ),
        (
            "auth_conversations_per_connection = 100\nauth_conversations_per_source = 100\n\
             auth_conversations = 3",
            2,
            3,
            3,
            "limits.auth_conversations)",
        ),
    ];
    for (limits, connections, each, admitted, refused_by) in cases {
        let daemon = start(&mut fx, &format!("auth_attempts = 1000\n{limits}"), "");
        let before = threads(&daemon);
        let go = Arc::new(Semaphore::new(0));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut attempts = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..connections {
            let client = Arc::new(daemon.dial().await);
            attempts.extend(hold(&client, &user, each, &go, PASSWORD, &tx));
            clients.push(client);
        }
        let t0 = Instant::now();
        let (shown, refused) = settle(&mut attempts, &mut rx, Duration::from_secs(5)).await;
        assert_eq!(shown, admitted, "PAM ran for {shown}; refused: {refused:?}");
        assert_eq!(refused.len(), connections * each - admitted, "{refused:?}");
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "refusals took {:?}",
            t0.elapsed()
        );
        assert!(
            refused
                .iter()
                .all(|(code, m)| *code == Some(ErrorCode::LimitExceeded) && m.contains(refused_by)),
            "{refused:?}"
        );
        // The monitor started no more PAM threads than it admitted.
        let now = threads(&daemon);
        assert!(
            now <= before + u32::try_from(admitted).unwrap() + 2,
            "monitor threads went from {before} to {now}"
        );
        // Admitted ones still complete (a permit is never missed, whenever
        // a held login gets to wait for it).
        go.add_permits(1);
        let mut ok = 0;
        let mut errors = Vec::new();
        for a in attempts {
            match a.await.unwrap() {
                Ok(_) => ok += 1,
                Err(e) => errors.push(e.to_string()),
            }
        }
        assert_eq!(ok, admitted, "{errors:?}\n{}", daemon.log_text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_login_ends_at_the_answer_deadline() {
    let mut fx = Fixture::new();
    let user = fx.user(PASSWORD);
    let daemon = start(
        &mut fx,
        "",
        "answer_timeout_secs = 2\nauth_timeout_secs = 4",
    );
    let before = threads(&daemon);
    let client = Arc::new(daemon.dial().await);
    let go = Arc::new(Semaphore::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let t0 = Instant::now();
    let attempt = hold(&client, &user, 1, &go, PASSWORD, &tx).pop().unwrap();
    rx.recv().await.unwrap();
    assert!(threads(&daemon) > before, "no PAM thread ran");
    // Never answered: the monitor ends it, the thread goes.
    let deadline = Instant::now() + Duration::from_secs(8);
    while threads(&daemon) > before {
        assert!(Instant::now() < deadline, "the PAM thread is still there");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(t0.elapsed() >= Duration::from_secs(2), "ended early");
    go.add_permits(1);
    let err = attempt.await.unwrap().unwrap_err();
    assert!(
        matches!(err.code(), Some(ErrorCode::AuthFailed | ErrorCode::Timeout)),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_cannot_race_the_lockout() {
    let mut fx = Fixture::new();
    let victim = fx.user(PASSWORD);
    let daemon = start(
        &mut fx,
        "auth_attempts = 5\nauth_conversations_per_connection = 64\n\
         auth_conversations_per_source = 64\nauth_conversations = 64",
        "",
    );
    let client = Arc::new(daemon.dial().await);
    let go = Arc::new(Semaphore::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    // 39 wrong guesses at once, all held at their prompt …
    let mut attempts = hold(&client, &victim, 39, &go, "wrong", &tx);
    let (shown, refused) = settle(&mut attempts, &mut rx, Duration::from_secs(8)).await;
    // … then the right one, while they are still running.
    let mut right = hold(&client, &victim, 1, &go, PASSWORD, &tx);
    let (right_shown, right_refused) = settle(&mut right, &mut rx, Duration::from_secs(8)).await;
    go.add_permits(1);
    for a in attempts.into_iter().chain(right) {
        assert!(a.await.unwrap().is_err(), "a guess got in");
    }
    assert!(
        shown <= 5,
        "PAM ran {shown} parallel guesses with auth_attempts = 5"
    );
    assert!(refused
        .iter()
        .all(|(code, _)| *code == Some(ErrorCode::TooManyAttempts)));
    assert_eq!(right_shown, 0, "the right password ran PAM past the limit");
    assert_eq!(
        right_refused.first().map(|r| r.0),
        Some(Some(ErrorCode::TooManyAttempts))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_a_session_is_closed_after_the_timeout() {
    let mut fx = Fixture::new();
    let user = fx.user(PASSWORD);
    let daemon = start(&mut fx, "unauthenticated_timeout_secs = 2", "");
    let idle = daemon.dial().await;
    let with_session = daemon.dial().await;
    let session = with_session
        .auth(&user, "/", &mut PasswordConversation::new(PASSWORD))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(6);
    while !idle.is_closed() {
        assert!(
            Instant::now() < deadline,
            "a connection without a session was kept open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!with_session.is_closed());
    session.root().stat().await.unwrap();
}
