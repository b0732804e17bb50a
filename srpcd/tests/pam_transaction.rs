//! PAM transactions against real users and real PAM service files (needs root).
//!
//! Creating a user costs a few hundred milliseconds of fsyncs, so each test
//! makes the users it needs once and runs its checks on them concurrently.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/pam_fixture.rs"]
mod pam_fixture;

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use pam_fixture::Fixture;
use srpc_proto::{AuthAnswers, ErrorCode, Prompt, PromptStyle};
use srpcd::pam::{check_service_file, Failure, PamError, Settings, Step, Transaction};
use zeroize::Zeroizing;

const DELAY: Duration = Duration::from_millis(300);
/// Only to turn a hang into a failure.
const HANG: Duration = Duration::from_secs(20);
const PASSWORD: &str = "correct horse";

fn settings(service: &str) -> Settings {
    Settings::new(service, DELAY)
}

fn rhost() -> IpAddr {
    "192.0.2.10".parse().unwrap()
}

async fn next(tx: &mut Transaction) -> Step {
    tokio::time::timeout(HANG, tx.next())
        .await
        .expect("PAM step timed out")
}

/// The answers a client gives to a round: `secrets` in turn for prompts,
/// empty for messages.
fn answers(round: &[Prompt], secrets: &mut std::slice::Iter<'_, &str>) -> AuthAnswers {
    AuthAnswers(
        round
            .iter()
            .map(|p| {
                let a = if p.style.wants_answer() {
                    secrets.next().expect("more prompts than secrets")
                } else {
                    ""
                };
                Zeroizing::new((*a).to_owned())
            })
            .collect(),
    )
}

/// Runs a transaction to its end, answering with `secrets`. Returns the final
/// step and every round seen.
async fn drive(tx: &mut Transaction, secrets: &[&str]) -> (Step, Vec<Vec<Prompt>>) {
    let mut secrets = secrets.iter();
    let mut rounds = Vec::new();
    loop {
        match next(tx).await {
            Step::Prompts(round) => {
                tx.answer(answers(&round, &mut secrets)).unwrap();
                rounds.push(round);
            }
            end => return (end, rounds),
        }
    }
}

fn password_round() -> Vec<Prompt> {
    vec![Prompt {
        style: PromptStyle::EchoOff,
        text: "Password: ".into(),
    }]
}

/// pam_unix for auth, account and session, one ordinary user.
#[tokio::test]
async fn pam_unix_stack() {
    let mut fx = Fixture::new();
    let user = fx.user(PASSWORD);
    let service = fx.unix_service();
    let db = fx.userdb(&[(&user, "123456")]);
    let two_factor = fx.service(&format!(
        "auth     required pam_unix.so nodelay\n\
         auth     required pam_userdb.so db={}\n\
         account  required pam_unix.so\n",
        db.display()
    ));
    let chatty = fx.service(
        "auth     optional pam_echo.so hello %u\n\
         auth     required pam_unix.so nodelay\n\
         auth     optional pam_echo.so bye\n\
         account  required pam_unix.so\n",
    );
    let s = settings(&service);
    let s2 = settings(&two_factor);
    let s3 = settings(&chatty);
    tokio::join!(
        login_succeeds_with_one_password_round_and_the_users_account(&s, &user),
        wrong_password_and_unknown_user_look_the_same(&s, &user),
        a_slow_answer_does_not_skip_the_failure_delay(&s, &user),
        answers_must_match_the_round(&s, &user),
        a_session_opens_and_closes(&s, &user),
        open_session_needs_a_successful_authentication(&s, &user),
        an_unanswered_round_times_out(&s, &user),
        a_second_factor_is_a_second_round(&s2, &user),
        messages_ride_with_the_next_prompt_or_a_final_round(&s3, &user),
    );
}

async fn login_succeeds_with_one_password_round_and_the_users_account(s: &Settings, user: &str) {
    let mut tx = Transaction::start(s, user, rhost());
    let (end, rounds) = drive(&mut tx, &[PASSWORD]).await;
    let Step::Authenticated(who) = end else {
        panic!("expected success, got {end:?}");
    };
    assert_eq!(rounds, vec![password_round()]);
    assert_eq!(who.pam_user, user);
    assert_eq!(who.account.name, user);
    let id = |flag: &str| {
        let out = std::process::Command::new("id")
            .args([flag, user])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    assert_eq!(who.account.uid.to_string(), id("-u"));
    assert_eq!(who.account.gid.to_string(), id("-g"));
    assert_eq!(who.account.groups[0], who.account.gid);
    let mut groups: Vec<String> = who.account.groups.iter().map(u32::to_string).collect();
    groups.sort();
    let mut expected: Vec<String> = id("-G").split(' ').map(str::to_owned).collect();
    expected.sort();
    assert_eq!(groups, expected, "primary group and the `users` group");
    // A second login of a user whose worker runs: no session.
    tokio::time::timeout(HANG, tx.finish())
        .await
        .unwrap()
        .unwrap();
}

async fn wrong_password_and_unknown_user_look_the_same(s: &Settings, user: &str) {
    let attempt = |name: String| async move {
        let started = Instant::now();
        let mut tx = Transaction::start(s, &name, rhost());
        let (end, rounds) = drive(&mut tx, &["wrong"]).await;
        (end, rounds, started.elapsed())
    };
    let ((wrong_end, wrong_rounds, wrong_time), (unknown_end, unknown_rounds, unknown_time)) =
        tokio::join!(attempt(user.to_owned()), attempt(format!("{user}nx")));

    assert_eq!(wrong_end, Step::Failed(Failure::AuthFailed));
    assert_eq!(unknown_end, Step::Failed(Failure::AuthFailed));
    assert_eq!(Failure::AuthFailed.code(), ErrorCode::AuthFailed);
    assert_eq!(Failure::AuthFailed.message(), "authentication failed");
    // Same conversation…
    assert_eq!(wrong_rounds, vec![password_round()]);
    assert_eq!(unknown_rounds, wrong_rounds);
    // …and the same time: both padded to the failure delay.
    assert!(wrong_time >= DELAY, "{wrong_time:?}");
    assert!(unknown_time >= DELAY, "{unknown_time:?}");
    let gap = wrong_time
        .max(unknown_time)
        .saturating_sub(wrong_time.min(unknown_time));
    assert!(
        gap < Duration::from_millis(250),
        "{wrong_time:?} vs {unknown_time:?}"
    );
}

async fn a_slow_answer_does_not_skip_the_failure_delay(s: &Settings, user: &str) {
    let mut tx = Transaction::start(s, user, rhost());
    let Step::Prompts(round) = next(&mut tx).await else {
        panic!("expected the password prompt");
    };
    // Answer only after the delay has passed since the start.
    tokio::time::sleep(DELAY + Duration::from_millis(50)).await;
    let answered = Instant::now();
    tx.answer(answers(&round, &mut ["wrong"].iter())).unwrap();
    assert_eq!(next(&mut tx).await, Step::Failed(Failure::AuthFailed));
    assert!(answered.elapsed() >= DELAY, "{:?}", answered.elapsed());
}

async fn answers_must_match_the_round(s: &Settings, user: &str) {
    let mut tx = Transaction::start(s, user, rhost());
    assert_eq!(
        tx.answer(AuthAnswers::default()).unwrap_err(),
        PamError::NoPrompts
    );
    let Step::Prompts(round) = next(&mut tx).await else {
        panic!("expected the password prompt");
    };
    assert_eq!(
        tx.answer(AuthAnswers::default()).unwrap_err(),
        PamError::AnswerCount {
            expected: 1,
            got: 0
        }
    );
    let nul = AuthAnswers(vec![Zeroizing::new("p\0w".into())]);
    assert_eq!(
        tx.answer(nul).unwrap_err(),
        PamError::NulInAnswer { index: 0 }
    );
    // The round is still open after refused answers.
    tx.answer(answers(&round, &mut [PASSWORD].iter())).unwrap();
    let end = next(&mut tx).await;
    assert!(matches!(end, Step::Authenticated(_)), "{end:?}");
}

async fn a_session_opens_and_closes(s: &Settings, user: &str) {
    let mut tx = Transaction::start(s, user, rhost());
    let (end, _) = drive(&mut tx, &[PASSWORD]).await;
    assert!(matches!(end, Step::Authenticated(_)), "{end:?}");
    let session = tokio::time::timeout(HANG, tx.open_session())
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(HANG, session.close())
        .await
        .unwrap()
        .unwrap();
}

async fn open_session_needs_a_successful_authentication(s: &Settings, user: &str) {
    let mut tx = Transaction::start(s, user, rhost());
    let (end, _) = drive(&mut tx, &["nope"]).await;
    assert_eq!(end, Step::Failed(Failure::AuthFailed));
    assert_eq!(
        tx.open_session().await.unwrap_err(),
        PamError::NotAuthenticated
    );
}

async fn an_unanswered_round_times_out(s: &Settings, user: &str) {
    let s = Settings {
        conversation_timeout: Duration::from_millis(200),
        failure_delay: Duration::ZERO,
        ..s.clone()
    };
    let mut tx = Transaction::start(&s, user, rhost());
    assert!(matches!(next(&mut tx).await, Step::Prompts(_)));
    // Waiting without answering: the only thing that can come is the timeout.
    assert_eq!(
        next(&mut tx).await,
        Step::Failed(Failure::ConversationTimeout)
    );
    assert_eq!(Failure::ConversationTimeout.code(), ErrorCode::Timeout);
}

/// pam_unix then pam_userdb, which asks for its own password.
async fn a_second_factor_is_a_second_round(s: &Settings, user: &str) {
    let mut tx = Transaction::start(s, user, rhost());
    let (end, rounds) = drive(&mut tx, &[PASSWORD, "123456"]).await;
    assert!(matches!(end, Step::Authenticated(_)), "{end:?}");
    assert_eq!(rounds.len(), 2, "{rounds:?}");
    assert!(rounds
        .iter()
        .all(|r| r.len() == 1 && r[0].style == PromptStyle::EchoOff));

    let mut tx = Transaction::start(s, user, rhost());
    let (end, rounds) = drive(&mut tx, &[PASSWORD, "654321"]).await;
    assert_eq!(end, Step::Failed(Failure::AuthFailed));
    assert_eq!(rounds.len(), 2);
}

/// pam_echo shows info messages before and after pam_unix's prompt.
async fn messages_ride_with_the_next_prompt_or_a_final_round(s: &Settings, user: &str) {
    let mut tx = Transaction::start(s, user, rhost());
    let (end, rounds) = drive(&mut tx, &[PASSWORD]).await;
    assert!(matches!(end, Step::Authenticated(_)), "{end:?}");
    let info = |text: String| Prompt {
        style: PromptStyle::Info,
        text,
    };
    let mut first = vec![info(format!("hello {user}"))];
    first.extend(password_round());
    assert_eq!(rounds, vec![first, vec![info("bye".into())]]);

    // A message is answered with an empty string, nothing else.
    let mut tx = Transaction::start(s, user, rhost());
    let Step::Prompts(round) = next(&mut tx).await else {
        panic!("expected a round");
    };
    let swapped = AuthAnswers(vec![Zeroizing::new(PASSWORD.into()), Zeroizing::default()]);
    assert_eq!(
        tx.answer(swapped).unwrap_err(),
        PamError::AnswerToMessage { index: 0 }
    );
    tx.answer(answers(&round, &mut ["wrong"].iter())).unwrap();
    // Failures show no pending message: only the fixed failure.
    assert_eq!(next(&mut tx).await, Step::Failed(Failure::AuthFailed));
}

/// Accounts that may not log in although the password is right.
#[tokio::test]
async fn account_states() {
    let mut fx = Fixture::new();
    let stale_password = fx.user(PASSWORD);
    pam_fixture::chage(&stale_password, &["-d", "0"]);
    let expired_account = fx.user(PASSWORD);
    pam_fixture::chage(&expired_account, &["-E", "0"]);
    let service = fx.unix_service();
    let vendor_service = fx.vendor_service(
        "auth     required pam_unix.so nodelay\n\
         account  required pam_permit.so\n",
    );
    let s = settings(&service);

    let expired_password_is_reported = async {
        let mut tx = Transaction::start(&s, &stale_password, rhost());
        let (end, _) = drive(&mut tx, &[PASSWORD]).await;
        assert_eq!(end, Step::Failed(Failure::PasswordExpired));
        assert_eq!(Failure::PasswordExpired.code(), ErrorCode::PasswordExpired);
    };
    let expired_account_is_unavailable = async {
        let mut tx = Transaction::start(&s, &expired_account, rhost());
        let (end, _) = drive(&mut tx, &[PASSWORD]).await;
        assert_eq!(end, Step::Failed(Failure::AccountUnavailable));
        assert_eq!(
            Failure::AccountUnavailable.code(),
            ErrorCode::AccountUnavailable
        );
    };
    // The vendor directory we accept is one libpam really reads: pam_unix's
    // account check (ours, and `other`'s on Debian) refuses the expired
    // account, the vendor file's pam_permit lets it through.
    let vendor_file_is_the_one_pam_uses = async {
        assert_eq!(
            check_service_file(&vendor_service).unwrap(),
            Path::new("/usr/lib/pam.d").join(&vendor_service)
        );
        let mut tx = Transaction::start(&settings(&vendor_service), &expired_account, rhost());
        let (end, _) = drive(&mut tx, &[PASSWORD]).await;
        assert!(matches!(end, Step::Authenticated(_)), "{end:?}");
    };
    tokio::join!(
        expired_password_is_reported,
        expired_account_is_unavailable,
        vendor_file_is_the_one_pam_uses
    );
}

#[tokio::test]
async fn a_missing_service_file_is_refused() {
    let mut fx = Fixture::new();
    let present = fx.unix_service();
    assert_eq!(
        check_service_file(&present).unwrap(),
        Path::new("/etc/pam.d").join(&present)
    );

    let missing = format!("{present}-missing");
    let e = check_service_file(&missing).unwrap_err();
    assert!(matches!(e, PamError::MissingServiceFile { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&format!("{missing:?}")), "{msg}");
    assert!(msg.contains(&format!("/etc/pam.d/{missing}")), "{msg}");
    assert!(msg.contains(&format!("/usr/lib/pam.d/{missing}")), "{msg}");

    // A transaction does not fall back to `other` either: it fails before any
    // prompt, however valid the user.
    let mut tx = Transaction::start(&settings(&missing), "root", rhost());
    let (end, rounds) = drive(&mut tx, &[]).await;
    assert_eq!(end, Step::Failed(Failure::Internal));
    assert!(rounds.is_empty());
}
