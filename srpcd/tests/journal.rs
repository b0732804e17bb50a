//! The audit trail in a real journal: srpcd runs in a private mount namespace
//! with its own systemd-journald (a tmpfs on /run, the journal files bound to
//! a scratch directory), and what a failed login, a successful one and a
//! call the kernel refused leave there is read back with `journalctl -o
//! json`. Needs root and systemd-journald (package systemd).
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
use serde_json::Value;
use srpc::client::{Error, PasswordConversation};
use srpc_proto::ErrorCode;
use support::{install_example, Options};

const PASSWORD: &str = "journal test pw";
const WRONG: &str = "journal wrong pw";

const AUTH_FAILED: &str = "24a28da7785b4b0fad97c5c369022391";
const AUTH_SUCCEEDED: &str = "0bc51f1981bb472ebf6b05274a2e4422";
const SESSION_STARTED: &str = "12ec425e64da47b8b0213acbf97b432f";
const SESSION_ENDED: &str = "64946e2033d14929b92b910f03ba0134";
const WORKER_STARTED: &str = "6d909b70ba82496ebfbc09d241af2012";
const CALL_DENIED: &str = "aee29760aff3421b98a90aca65fe5656";

/// Starts journald in the namespace, waits for its socket, runs srpcd
/// (`"$@"`) in the foreground with logging to the journal, passes SIGTERM on
/// and stops journald after it.
const IN_NAMESPACE: &str = r#"
set -eu
journal="$1"; shift
mount --make-rprivate /
mount -t tmpfs tmpfs /run
mkdir -p /run/log/journal /run/systemd/journal
mount --bind "$journal" /run/log/journal
/lib/systemd/systemd-journald & j=$!
i=0; while [ ! -S /run/systemd/journal/socket ]; do
  i=$((i+1)); [ $i -lt 100 ] || { echo "journald did not start" >&2; exit 1; }; sleep 0.05
done
unset SRPC_LOG_STDERR
"$@" & s=$!
trap 'kill -TERM $s' TERM
status=0; wait $s || status=$?
# The trap interrupts the first wait: wait for srpcd itself to end.
wait $s || status=$?
kill $j; wait $j || true
exit $status
"#;

fn entries(dir: &std::path::Path) -> Vec<Value> {
    let out = Command::new("journalctl")
        .arg("--directory")
        .arg(dir)
        .args(["-o", "json", "--no-pager"])
        .output()
        .expect("journalctl (package systemd) must be installed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn field<'a>(e: &'a Value, name: &str) -> Option<&'a str> {
    e.get(name).and_then(Value::as_str)
}

/// The entries with `message_id`, waiting (bounded) until `want` of them
/// are there: journald writes asynchronously.
fn wait_for(dir: &std::path::Path, message_id: &str, want: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<Value> = entries(dir)
            .into_iter()
            .filter(|e| field(e, "MESSAGE_ID") == Some(message_id))
            .collect();
        if found.len() >= want || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// srpcd in its own mount namespace with its own journald writing to
/// `journal`; `/echo` anyone may call, `/private/secret` only its owner.
fn start_in_namespace(fx: &mut Fixture, journal: &std::path::Path) -> support::Daemon {
    let owner = fx.user("owner never logs in");
    let owner_uid = support::uid_of(&owner);
    let opts = Options {
        service: fx.unix_service(),
        idle_secs: 300,
        extra: String::new(),
    };
    let p = support::prepare(fx, &opts, |tree| {
        install_example("echo", &tree.join("echo"), 0o755);
        let private = tree.join("private");
        fs::create_dir(&private).unwrap();
        install_example("echo", &private.join("secret"), 0o755);
        std::os::unix::fs::chown(&private, Some(owner_uid), None).unwrap();
        fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    });
    let mut command = Command::new("unshare");
    command
        .args(["-m", "sh", "-c", IN_NAMESPACE, "sh"])
        .arg(journal)
        .arg(env!("CARGO_BIN_EXE_srpcd"))
        .arg("--config")
        .arg(&p.config);
    support::launch_command(p, command)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_sessions_workers_and_denials_are_in_the_journal_as_fields() {
    let mut fx = Fixture::new();
    let alice = fx.user(PASSWORD);
    let journal = support::scratch("journal");
    let daemon = start_in_namespace(&mut fx, &journal.0);

    let client = daemon.dial().await;
    let refused = client
        .auth(&alice, "/", &mut PasswordConversation::new(WRONG))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            &refused,
            Error::Server {
                code: ErrorCode::AuthFailed,
                ..
            }
        ),
        "{refused}"
    );
    let session = client
        .auth(&alice, "/", &mut PasswordConversation::new(PASSWORD))
        .await
        .unwrap();
    assert_eq!(
        session
            .walk("echo")
            .await
            .unwrap()
            .append(b"hi".to_vec())
            .await
            .unwrap()
            .as_ref(),
        b"hi"
    );
    let denied = session.walk("private/secret").await.err().unwrap();
    assert!(
        matches!(
            &denied,
            Error::Server {
                code: ErrorCode::PermissionDenied,
                ..
            }
        ),
        "{denied}"
    );
    drop(session);
    drop(client);

    let dir = &journal.0;
    let failed = wait_for(dir, AUTH_FAILED, 1);
    let [failed] = failed.as_slice() else {
        panic!("one auth_failed: {failed:?}");
    };
    assert_eq!(field(failed, "SRPC_EVENT"), Some("auth_failed"));
    assert_eq!(field(failed, "SRPC_USER"), Some(alice.as_str()));
    assert_eq!(field(failed, "SRPC_REMOTE"), Some("127.0.0.1"));
    assert!(field(failed, "SRPC_REASON").is_some_and(|r| !r.is_empty()));
    // From the monitor: root, srpcd's own identifier.
    assert_eq!(field(failed, "_UID"), Some("0"));
    assert_eq!(field(failed, "SYSLOG_IDENTIFIER"), Some("srpcd"));
    assert_eq!(field(failed, "PRIORITY"), Some("4"));

    let ok = wait_for(dir, AUTH_SUCCEEDED, 1);
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert_eq!(field(&ok[0], "SRPC_USER"), Some(alice.as_str()));

    let started = wait_for(dir, SESSION_STARTED, 1);
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(field(&started[0], "SRPC_ANAME"), Some("/"));
    let session_id = field(&started[0], "SRPC_SESSION").unwrap().to_owned();

    let worker = wait_for(dir, WORKER_STARTED, 1);
    assert_eq!(worker.len(), 1, "{worker:?}");
    let pid: u32 = field(&worker[0], "SRPC_PID").unwrap().parse().unwrap();
    assert!(pid > 1);
    assert_eq!(
        field(&worker[0], "SRPC_UID"),
        Some(support::uid_of(&alice).to_string().as_str())
    );

    // Reported by the front (its own user, its own identifier), with the
    // user and the path from its tables and the kernel's errno.
    let denial = wait_for(dir, CALL_DENIED, 1);
    assert_eq!(denial.len(), 1, "{denial:?}");
    let d = &denial[0];
    assert_eq!(field(d, "SYSLOG_IDENTIFIER"), Some("srpc-front"));
    assert_ne!(field(d, "_UID"), Some("0"));
    assert_eq!(field(d, "SRPC_USER"), Some(alice.as_str()));
    assert_eq!(field(d, "SRPC_ENDPOINT"), Some("/private/secret"));
    assert_eq!(field(d, "SRPC_OPERATION"), Some("walk"));
    assert_eq!(field(d, "SRPC_ERRNO"), Some("13"));

    let ended = wait_for(dir, SESSION_ENDED, 1);
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(field(&ended[0], "SRPC_SESSION"), Some(session_id.as_str()));
    assert_eq!(field(&ended[0], "SRPC_REASON"), Some("client"));

    // Secrets never logged, in any field of any entry.
    for e in entries(dir) {
        let text = e.to_string();
        assert!(!text.contains(PASSWORD) && !text.contains(WRONG), "{text}");
    }
    drop(daemon);
}
