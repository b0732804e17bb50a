//! srpcd end to end: the real daemon (monitor, front, workers) started from its
//! binaries, real PAM users, real TLS, the srpc client library. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// Shared with the PAM tests; not every helper is used here.
#[allow(dead_code)]
#[path = "support/pam_fixture.rs"]
mod pam_fixture;
#[path = "support/daemon.rs"]
mod support;

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::time::{Duration, Instant};

use pam_fixture::Fixture;
use srpc::client::{Conversation, ConversationError, Error, PasswordConversation};
use srpc_proto::{ErrorCode, Prompt, PromptStyle, QidType};
use zeroize::Zeroizing;

use support::{status_field, uid_of, worker_of, Daemon, Options, FAILURE_DELAY};

const PASSWORD: &str = "daemon test pw";

/// A tree with `/pub` (0755) holding an endpoint `echo`, and `/private`
/// (0700, owned by `private_owner`) holding `secret`.
fn start(fx: &mut Fixture, service: &str, private_owner: &str, idle_secs: u32) -> Daemon {
    let owner = uid_of(private_owner);
    let opts = Options {
        service: service.to_owned(),
        idle_secs,
        extra: String::new(),
    };
    support::start(fx, &opts, |tree| {
        fs::create_dir_all(tree.join("pub")).unwrap();
        fs::create_dir_all(tree.join("private")).unwrap();
        fs::write(tree.join("private/secret"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(
            tree.join("private/secret"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        fs::write(tree.join("pub/echo"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(tree.join("pub/echo"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(tree.join("pub"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(tree.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
        chown(tree.join("private"), Some(owner), None).unwrap();
    })
}

fn server_code(e: &Error) -> Option<ErrorCode> {
    e.code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_attach_walk_stat_and_the_kernel_decides() {
    let mut fx = Fixture::new();
    let alice = fx.user(PASSWORD);
    let bob = fx.user(PASSWORD);
    let service = fx.unix_service();
    let daemon = start(&mut fx, &service, &bob, 300);
    let client = daemon.dial().await;

    // Two users multiplexed on one connection.
    let alice_s = client
        .auth(&alice, "/", &mut PasswordConversation::new(PASSWORD))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", daemon.log_text()));
    let bob_s = client
        .auth(&bob, "/", &mut PasswordConversation::new(PASSWORD))
        .await
        .unwrap();

    let echo = alice_s.walk("/pub/echo").await.unwrap();
    assert_eq!(echo.qid().kind, QidType::Endpoint);
    let st = echo.stat().await.unwrap();
    // Stat describes the canonical node (protocol 7.2): the endpoint as the
    // admin made it, executable by all (0755), not its clone socket (0666).
    assert_eq!(
        (st.name.as_str(), st.mode, st.owner.as_str()),
        ("echo", 0o755, "root")
    );
    let root = alice_s.root().stat().await.unwrap();
    assert_eq!(root.qid.kind, QidType::Dir);

    // /private is 0700 bob's: the kernel lets bob in and keeps alice out
    // (she may see the directory itself, as `ls -ld` would).
    let err = alice_s.walk("/private/secret").await.unwrap_err();
    assert_eq!(
        server_code(&err),
        Some(ErrorCode::PermissionDenied),
        "{err}"
    );
    assert_eq!(
        alice_s
            .walk("/private")
            .await
            .unwrap()
            .stat()
            .await
            .unwrap()
            .uid,
        uid_of(&bob)
    );
    let secret = bob_s.walk("/private/secret").await.unwrap();
    assert_eq!(secret.stat().await.unwrap().name, "secret");
    let err = alice_s.walk("/nothing").await.unwrap_err();
    assert_eq!(server_code(&err), Some(ErrorCode::NoSuchNode), "{err}");

    // Each worker runs as its user, with that user's groups; the front is not root.
    for user in [&alice, &bob] {
        let pid = worker_of(user).unwrap_or_else(|| panic!("no worker for {user}"));
        let account = nix::unistd::User::from_name(user).unwrap().unwrap();
        let uid = account.uid.as_raw();
        let gid = account.gid.as_raw();
        assert_eq!(
            status_field(pid, "Uid:").unwrap(),
            format!("{uid}\t{uid}\t{uid}\t{uid}")
        );
        assert_eq!(
            status_field(pid, "Gid:").unwrap(),
            format!("{gid}\t{gid}\t{gid}\t{gid}")
        );
        let mut groups: Vec<u32> = status_field(pid, "Groups:")
            .unwrap()
            .split_whitespace()
            .map(|g| g.parse().unwrap())
            .collect();
        groups.sort_unstable();
        let users_gid = nix::unistd::Group::from_name("users")
            .unwrap()
            .unwrap()
            .gid
            .as_raw();
        let mut expected = vec![gid, users_gid];
        expected.sort_unstable();
        assert_eq!(groups, expected, "worker groups of {user}");
        assert_eq!(status_field(pid, "NoNewPrivs:").unwrap(), "1");
    }
    let fronts = support::processes("srpc-front");
    assert!(!fronts.is_empty());
    assert!(
        fronts.iter().all(|(_, uid)| *uid != 0),
        "front runs as root: {fronts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_look_the_same() {
    let mut fx = Fixture::new();
    let alice = fx.user(PASSWORD);
    let expired_account = fx.user(PASSWORD);
    let expired_password = fx.user(PASSWORD);
    pam_fixture::chage(&expired_account, &["-E", "0"]);
    pam_fixture::chage(&expired_password, &["-d", "0"]);
    let service = fx.unix_service();
    let d = start(&mut fx, &service, &alice, 300);
    let client = d.dial().await;

    let started = Instant::now();
    let wrong = client
        .auth(&alice, "/", &mut PasswordConversation::new("not it"))
        .await
        .unwrap_err();
    let wrong_took = started.elapsed();
    let started = Instant::now();
    let unknown = client
        .auth(
            "srpctnosuchuser",
            "/",
            &mut PasswordConversation::new("not it"),
        )
        .await
        .unwrap_err();
    let unknown_took = started.elapsed();
    assert_eq!(server_code(&wrong), Some(ErrorCode::AuthFailed));
    assert_eq!(wrong.to_string(), unknown.to_string());
    assert!(wrong_took >= FAILURE_DELAY && unknown_took >= FAILURE_DELAY);
    let gap = wrong_took.abs_diff(unknown_took);
    assert!(
        gap < Duration::from_millis(150),
        "timing differs by {gap:?}"
    );

    let e = client
        .auth(
            &expired_account,
            "/",
            &mut PasswordConversation::new(PASSWORD),
        )
        .await
        .unwrap_err();
    assert_eq!(server_code(&e), Some(ErrorCode::AccountUnavailable), "{e}");
    let e = client
        .auth(
            &expired_password,
            "/",
            &mut PasswordConversation::new(PASSWORD),
        )
        .await
        .unwrap_err();
    assert_eq!(server_code(&e), Some(ErrorCode::PasswordExpired), "{e}");
    assert!(e.to_string().contains("password expired"), "{e}");

    // The connection still serves a good login afterwards.
    client
        .auth(&alice, "/", &mut PasswordConversation::new(PASSWORD))
        .await
        .unwrap();
    assert!(
        !d.log_text().contains(PASSWORD),
        "a password reached the log"
    );
}

/// Answers pam_unix's password prompt, then the second factor's.
struct TwoFactor {
    rounds: usize,
}

impl Conversation for TwoFactor {
    async fn respond(
        &mut self,
        prompts: &[Prompt],
    ) -> Result<Vec<Zeroizing<String>>, ConversationError> {
        self.rounds += 1;
        let round = self.rounds;
        Ok(prompts
            .iter()
            .map(|p| match (p.style, round) {
                (PromptStyle::EchoOff, 1) => Zeroizing::new(PASSWORD.to_owned()),
                (PromptStyle::EchoOff, _) => Zeroizing::new("123456".to_owned()),
                _ => Zeroizing::new(String::new()),
            })
            .collect())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_prompt_stack_takes_two_rounds() {
    let mut fx = Fixture::new();
    let alice = fx.user(PASSWORD);
    let db = fx.userdb(&[(&alice, "123456")]);
    let service = fx.service(&format!(
        "auth     required pam_unix.so nodelay\n\
         auth     required pam_userdb.so db={}\n\
         account  required pam_unix.so\n\
         session  required pam_unix.so\n",
        db.display()
    ));
    let d = start(&mut fx, &service, &alice, 300);
    let client = d.dial().await;
    let mut conv = TwoFactor { rounds: 0 };
    let s = client.auth(&alice, "/", &mut conv).await.unwrap();
    assert_eq!(conv.rounds, 2);
    s.walk("/pub").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_are_reaped_when_idle_and_restarted_after_a_crash() {
    let mut fx = Fixture::new();
    let alice = fx.user(PASSWORD);
    let service = fx.unix_service();
    let d = start(&mut fx, &service, &alice, 1);
    let client = d.dial().await;
    let s = client
        .auth(&alice, "/", &mut PasswordConversation::new(PASSWORD))
        .await
        .unwrap();
    let echo = s.walk("/pub/echo").await.unwrap();
    let pid = worker_of(&alice).unwrap();

    // Stop the worker so a call is surely in flight, then kill it: the call
    // fails with an error, and the next call works on a fresh worker.
    let nix_pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
    nix::sys::signal::kill(nix_pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let pending = {
        let echo = &echo;
        async move { echo.stat().await }
    };
    let killer = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        nix::sys::signal::kill(nix_pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    };
    let (result, ()) = tokio::join!(pending, killer);
    let e = result.unwrap_err();
    assert_eq!(server_code(&e), Some(ErrorCode::Unavailable), "{e}");
    let st = echo.stat().await.unwrap();
    assert_eq!(st.name, "echo");
    let second = worker_of(&alice).unwrap();
    assert_ne!(second, pid);

    // Idle reap: once the session is gone the worker exits after the timeout.
    drop(echo);
    s.close().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while worker_of(&alice).is_some() {
        assert!(Instant::now() < deadline, "idle worker was not reaped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_over_the_negotiated_max_message_is_refused_not_sent() {
    let mut fx = Fixture::new();
    let alice = fx.user(PASSWORD);
    let opts = Options {
        service: fx.unix_service(),
        idle_secs: 300,
        extra: String::new(),
    };
    let daemon = support::start(&mut fx, &opts, |tree| {
        fs::create_dir(tree.join("many")).unwrap();
        fs::set_permissions(tree.join("many"), fs::Permissions::from_mode(0o755)).unwrap();
        for i in 0..80 {
            let p = tree.join(format!("many/endpoint-with-a-long-name-{i:03}"));
            fs::write(&p, "#!/bin/sh\n").unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        }
    });
    let small = srpc_proto::Limits {
        max_message: 4096,
        ..srpc_proto::Limits::default()
    };
    let client = srpc::client::DialOptions::new()
        .limits(small)
        .dial(&daemon.addr, "localhost", daemon.trust.clone())
        .await
        .unwrap();
    assert_eq!(client.limits().max_message, 4096);
    let s = client
        .auth(&alice, "/", &mut PasswordConversation::new(PASSWORD))
        .await
        .unwrap();
    let many = s.walk("/many").await.unwrap();
    let err = many.list().await.unwrap_err();
    assert_eq!(server_code(&err), Some(ErrorCode::LimitExceeded), "{err}");
    // The connection is fine afterwards.
    assert_eq!(s.root().list().await.unwrap().len(), 1);
}
