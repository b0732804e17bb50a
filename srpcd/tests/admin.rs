//! What an administrator meets: `--check-config`, certificate reload on
//! SIGHUP, attempt lockout, connection limits, a clean stop on SIGTERM. The
//! real daemon with real users. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "support/pam_fixture.rs"]
mod pam_fixture;
#[path = "support/daemon.rs"]
mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use pam_fixture::Fixture;
use srpc::client::{Client, Error, PasswordConversation, Trust};
use srpc_proto::ErrorCode;
use support::{worker_of, Options};

const PASSWORD: &str = "admin test pw";

fn opts(fx: &mut Fixture, extra: &str) -> Options {
    Options {
        service: fx.unix_service(),
        idle_secs: 300,
        extra: extra.to_owned(),
    }
}

fn check_config(config: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_srpcd"))
        .arg("--check-config")
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn check_config_names_what_is_wrong() {
    let mut fx = Fixture::new();
    let o = opts(&mut fx, "");
    let p = support::prepare(&mut fx, &o, |_| {});

    let (ok, text) = check_config(&p.config);
    assert!(ok, "{text}");
    assert!(text.contains(&p.pin.to_string()), "prints the pin: {text}");

    fs::set_permissions(&p.key, fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, text) = check_config(&p.config);
    assert!(!ok);
    assert!(
        text.contains("has mode 0644") && text.contains("chmod 600"),
        "{text}"
    );
    fs::set_permissions(&p.key, fs::Permissions::from_mode(0o600)).unwrap();

    // A missing PAM service file would make PAM fall back to `other`.
    let config = fs::read_to_string(&p.config).unwrap();
    let missing = config.replace(&o.service, "srpcd-test-no-such-service");
    fs::write(&p.config, &missing).unwrap();
    let (ok, text) = check_config(&p.config);
    assert!(!ok);
    assert!(
        text.contains("srpcd-test-no-such-service") && text.contains("/etc/pam.d"),
        "{text}"
    );

    fs::write(&p.config, format!("{config}\n[limits]\nmax_message = 12\n")).unwrap();
    let (ok, text) = check_config(&p.config);
    assert!(!ok);
    assert!(
        text.contains("limits.max_message: 12 is out of range"),
        "{text}"
    );
}

/// pam_limits (and its kind) in the session stack would run inside the root
/// monitor and change it, not the user's worker: refused, by file and line,
/// also when an included file holds it.
#[test]
fn check_config_refuses_process_changing_session_modules() {
    let mut fx = Fixture::new();
    let o = opts(&mut fx, "");
    let p = support::prepare(&mut fx, &o, |_| {});
    let config = fs::read_to_string(&p.config).unwrap();
    let use_service = |service: &str| {
        fs::write(&p.config, config.replace(&o.service, service)).unwrap();
        check_config(&p.config)
    };

    let direct = fx.service(
        "auth     required pam_unix.so nodelay\n\
         account  required pam_unix.so\n\
         session  required pam_unix.so\n\
         session  required pam_limits.so\n",
    );
    let (ok, text) = use_service(&direct);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!(
            "/etc/pam.d/{direct}:4: session module pam_limits.so would run inside srpcd's root monitor"
        )) && text.contains("not the user's worker"),
        "{text}"
    );

    let inner =
        fx.service("session optional pam_env.so\n-session optional pam_keyinit.so revoke\n");
    let outer = fx.service(&format!(
        "auth     required pam_unix.so nodelay\n\
         account  required pam_unix.so\n\
         session  required pam_unix.so\n\
         @include {inner}\n"
    ));
    let (ok, text) = use_service(&outer);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!(
            "/etc/pam.d/{inner}:2: session module pam_keyinit.so"
        )) && text.contains(&format!("included from /etc/pam.d/{outer}:4")),
        "{text}"
    );

    // pam_env alone is fine.
    let env = fx.service("session optional pam_env.so\n");
    let env_only = fx.service(&format!(
        "auth     required pam_unix.so nodelay\n\
         account  required pam_unix.so\n\
         session  include {env}\n"
    ));
    let (ok, text) = use_service(&env_only);
    assert!(ok, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_without_a_restart() {
    let mut fx = Fixture::new();
    let alice = fx.user(PASSWORD);
    let o = opts(&mut fx, "");
    let p = support::prepare(&mut fx, &o, |_| {});
    let (cert_path, key_path, old_pin) = (p.cert.clone(), p.key.clone(), p.pin);
    let daemon = support::launch(p);
    let kept = daemon.dial().await;
    let session = kept
        .auth(&alice, "/", &mut PasswordConversation::new(PASSWORD))
        .await
        .unwrap();

    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    fs::write(&cert_path, cert.cert.pem()).unwrap();
    fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let new_pin = srpc::client::fingerprint_of(cert.cert.der()).unwrap();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(daemon.child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Client::dial(&daemon.addr, "localhost", Trust::Pin(new_pin)).await {
            Ok(_) => break,
            Err(Error::PinMismatch { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("after SIGHUP: {e}\n{}", daemon.log_text()),
        }
    }
    let err = Client::dial(&daemon.addr, "localhost", Trust::Pin(old_pin))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PinMismatch { .. }), "{err}");
    // The connection made before the reload goes on working.
    session.root().stat().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_lock_the_user_out() {
    let mut fx = Fixture::new();
    let alice = fx.user(PASSWORD);
    let o = opts(
        &mut fx,
        "[limits]\nauth_attempts = 2\nlockout_window_secs = 60\n",
    );
    let daemon = support::start(&mut fx, &o, |_| {});
    let client = daemon.dial().await;
    for _ in 0..2 {
        let err = client
            .auth(&alice, "/", &mut PasswordConversation::new("wrong"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::AuthFailed), "{err}");
    }
    // Even the right password is refused now, without asking PAM.
    let err = client
        .auth(&alice, "/", &mut PasswordConversation::new(PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TooManyAttempts), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_source_are_limited() {
    let mut fx = Fixture::new();
    let o = opts(&mut fx, "[limits]\nconnections_per_source = 1\n");
    let daemon = support::start(&mut fx, &o, |_| {});
    // The harness's readiness probe held the one slot for a moment.
    let first = dial_within(&daemon, Duration::from_secs(5)).await;
    let second = Client::dial(&daemon.addr, "localhost", daemon.trust.clone()).await;
    assert!(
        second.is_err(),
        "a second connection from 127.0.0.1 was served"
    );
    drop(first);
    dial_within(&daemon, Duration::from_secs(5)).await;
}

/// Dials until it succeeds, failing the test after `limit`.
async fn dial_within(daemon: &support::Daemon, limit: Duration) -> Client {
    let deadline = Instant::now() + limit;
    loop {
        match Client::dial(&daemon.addr, "localhost", daemon.trust.clone()).await {
            Ok(client) => return client,
            Err(e) => assert!(Instant::now() < deadline, "no free slot: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_everything_cleanly() {
    let mut fx = Fixture::new();
    let alice = fx.user(PASSWORD);
    let o = opts(&mut fx, "");
    let mut daemon = support::start(&mut fx, &o, |_| {});
    let client = daemon.dial().await;
    let session = client
        .auth(&alice, "/", &mut PasswordConversation::new(PASSWORD))
        .await
        .unwrap();
    session.root().stat().await.unwrap();
    assert!(worker_of(&alice).is_some());
    let runtime = daemon.dir.join("run/users").join(&alice);
    assert!(runtime.exists());

    support::stop(&mut daemon.child);
    let status = daemon.child.try_wait().unwrap().unwrap();
    assert!(
        status.success(),
        "srpcd exited with {status}: {}",
        daemon.log_text()
    );
    assert!(worker_of(&alice).is_none(), "a worker outlived srpcd");
    assert!(support::processes("srpc-front").iter().all(|(pid, _)| {
        // Fronts of other tests may run; ours is gone with its parent.
        fs::read_to_string(format!("/proc/{pid}/status")).map_or(true, |s| {
            !s.contains(&format!("PPid:\t{}", daemon.child.id()))
        })
    }));
    assert!(!runtime.exists(), "the user's clone was not removed");
}
