//! The monitor's loop never waits on work a client or a user controls (audit
//! M4; issue 7 item 3): a PAM session module that takes seconds, or a big
//! tree to clone, holds up only the login it belongs to. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "support/pam_fixture.rs"]
mod pam_fixture;
#[path = "support/daemon.rs"]
mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pam_fixture::Fixture;
use srpc::client::{Conversation, ConversationError, PasswordConversation};
use srpc_proto::Prompt;
use support::{install_example, Options};
use zeroize::Zeroizing;

const PASSWORD: &str = "monitor loop pw";

/// Answers with the password and notes when it was first asked.
struct Timed {
    first_prompt: Option<Instant>,
}

impl Conversation for Timed {
    async fn respond(
        &mut self,
        prompts: &[Prompt],
    ) -> Result<Vec<Zeroizing<String>>, ConversationError> {
        self.first_prompt.get_or_insert_with(Instant::now);
        Ok(prompts
            .iter()
            .map(|_| Zeroizing::new(PASSWORD.to_owned()))
            .collect())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_session_module_and_a_big_clone_hold_up_only_their_own_login() {
    let mut fx = Fixture::new();
    let a = fx.user(PASSWORD);
    let b = fx.user(PASSWORD);
    // Opening a session takes 3 s (a slow pam_systemd or an LDAP lookup).
    let service = fx.service(
        "auth     required pam_unix.so nodelay\n\
         account  required pam_unix.so\n\
         session  required pam_exec.so /bin/sleep 3\n\
         session  required pam_unix.so\n",
    );
    let opts = Options {
        service,
        idle_secs: 60,
        extra: String::new(),
    };
    let daemon = support::start(&mut fx, &opts, |tree| {
        install_example("echo", &tree.join("echo"), 0o755);
        // And a tree that takes a while to clone.
        let big = tree.join("big");
        fs::create_dir(&big).unwrap();
        fs::set_permissions(&big, fs::Permissions::from_mode(0o755)).unwrap();
        for i in 0..3000 {
            let p = big.join(format!("svc{i:05}"));
            fs::write(&p, "service = \"/run/nothing.sock\"\n").unwrap();
        }
    });
    let a_client = Arc::new(daemon.dial().await);
    let a_login = {
        let (client, a) = (Arc::clone(&a_client), a.clone());
        tokio::spawn(async move {
            let t0 = Instant::now();
            let s = client
                .auth(&a, "/", &mut PasswordConversation::new(PASSWORD))
                .await
                .unwrap();
            (s, t0.elapsed())
        })
    };
    // While A's session opens: B's first prompt, and B's own login.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b_client = daemon.dial().await;
    let t0 = Instant::now();
    let mut conv = Timed { first_prompt: None };
    let b_login = b_client.auth(&b, "/", &mut conv);
    let (s_b, b_total) = {
        let s = b_login.await.unwrap();
        (s, t0.elapsed())
    };
    let b_prompt = conv.first_prompt.unwrap().duration_since(t0);
    let (s_a, a_total) = a_login.await.unwrap();
    assert!(
        a_total >= Duration::from_secs(3),
        "the slow module did not run: A took {a_total:?}"
    );
    assert!(
        b_prompt < Duration::from_millis(1500),
        "B's first prompt waited {b_prompt:?} behind A's session"
    );
    // B's own session takes its 3 s, no more than that plus the clone.
    assert!(b_total < Duration::from_secs(8), "B took {b_total:?}");
    for s in [&s_a, &s_b] {
        let echo = s.walk("/echo").await.unwrap();
        assert_eq!(&echo.append(b"x".to_vec()).await.unwrap()[..], b"x");
    }
}
