//! The root monitor cannot be turned against the host through a user's clone
//! (audit C1, C2a, C2b, M4; issue 7 item 11). Each test replays the audit's
//! attack with real users and asserts it failed: the target is untouched, the
//! other user's calls are served as that user. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "support/pam_fixture.rs"]
mod pam_fixture;
#[path = "support/daemon.rs"]
mod support;

use std::fs;
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pam_fixture::Fixture;
use srpc::client::{Client, PasswordConversation, Session};
use srpc_proto::ErrorCode;
use support::{install_example, status_field, uid_of, Daemon, Options};

const PASSWORD: &str = "clone safety pw";

async fn login(client: &Client, user: &str) -> Session {
    client
        .auth(user, "/", &mut PasswordConversation::new(PASSWORD))
        .await
        .unwrap_or_else(|e| panic!("login {user}: {e}"))
}

async fn whoami_uid(s: &Session) -> u64 {
    let fid = s.walk("/whoami").await.unwrap();
    let reply = fid.append(b"?".to_vec()).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    v["handler"]["uid"].as_u64().unwrap()
}

fn mode_owner(p: &Path) -> (u32, u32, u32) {
    let m = fs::symlink_metadata(p).unwrap();
    (m.mode() & 0o7777, m.uid(), m.gid())
}

fn start(fx: &mut Fixture, owner_of_team: u32, extra_tree: impl FnOnce(&Path)) -> Daemon {
    let opts = Options {
        service: fx.unix_service(),
        idle_secs: 300,
        extra: String::new(),
    };
    support::start(fx, &opts, |tree| {
        install_example("echo", &tree.join("echo"), 0o755);
        install_example("whoami", &tree.join("whoami"), 0o755);
        // A canonical directory the attacker owns and may write: in the
        // attacker's own clone it must still be root's.
        fs::create_dir(tree.join("team")).unwrap();
        fs::set_permissions(tree.join("team"), fs::Permissions::from_mode(0o755)).unwrap();
        chown(tree.join("team"), Some(owner_of_team), None).unwrap();
        install_example("echo", &tree.join("team/echo"), 0o755);
        extra_tree(tree);
    })
}

/// Runs `script` (Debian's or Fedora's python3, not a root-only shim) as
/// `user`, with `args`.
fn as_user(user: &str, script: &str, args: &[&str]) -> std::process::Child {
    Command::new("setpriv")
        .args([
            &format!("--reuid={user}"),
            &format!("--regid={user}"),
            "--init-groups",
            "/usr/bin/python3",
            "-c",
            script,
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The attacker of C1 and C2, as user A: for `secs` seconds, try every step
/// the audit used on A's clone directory (chmod it, move `tree` away, plant a
/// directory of symlinks, exchange `tree` with a symlink to the victim, write
/// below `tree`). Prints `tries wins` and each step that ever succeeded.
const ATTACKER: &str = r#"
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
users, target, victim, secs = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
D = os.path.join(users, sys.argv[5])
tries, won = 0, set()
def attempt(name, f):
    global tries
    tries += 1
    try:
        f(); won.add(name)
    except OSError:
        pass
def exchange():
    r = libc.renameat2(-100, (D + "/lnk").encode(), -100, (D + "/tree").encode(), 2)
    if r != 0: raise OSError(ctypes.get_errno(), "renameat2")
end = time.time() + secs
while time.time() < end:
    attempt("chmod users/A", lambda: os.chmod(D, 0o700))
    attempt("chmod tree", lambda: os.chmod(D + "/tree", 0o777))
    attempt("chmod tree/team", lambda: os.chmod(D + "/tree/team", 0o777))
    attempt("symlink in users/A", lambda: os.symlink(victim, D + "/lnk"))
    attempt("exchange tree", exchange)
    attempt("move tree", lambda: os.rename(D + "/tree", D + "/old"))
    attempt("plant in tree", lambda: os.symlink(target, D + "/tree/planted"))
    attempt("plant in tree/team", lambda: os.symlink(target, D + "/tree/team/planted"))
    attempt("replace an endpoint", lambda: os.rename(D + "/tree/team/echo", D + "/tree/team/x"))
    attempt("unlink an endpoint", lambda: os.unlink(D + "/tree/echo"))
print(tries, len(won), sorted(won))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_cannot_plant_anything_in_its_clone_and_resyncs_leave_the_host_alone() {
    let mut fx = Fixture::new();
    let a = fx.user(PASSWORD);
    let b = fx.user(PASSWORD);
    let targets = support::scratch("clone-targets");
    // C1's target: a root-only file; C2's victim: a root-only directory.
    let target = targets.0.join("target");
    fs::write(&target, "root-only secret\n").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
    let victim = targets.0.join("victimdir");
    fs::create_dir_all(victim.join("important")).unwrap();
    fs::write(victim.join("keep.txt"), "keep").unwrap();
    fs::write(victim.join("important/db"), "db").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o700)).unwrap();
    let target_before = mode_owner(&target);

    let daemon = start(&mut fx, uid_of(&a), |_| {});
    let users = daemon.dir.join("run/users");
    let client = daemon.dial().await;
    let a1 = login(&client, &a).await;
    let b1 = login(&client, &b).await;
    assert_eq!(whoami_uid(&b1).await, u64::from(uid_of(&b)));

    let attacker = as_user(
        &a,
        ATTACKER,
        &[
            users.to_str().unwrap(),
            target.to_str().unwrap(),
            victim.to_str().unwrap(),
            "8",
            &a,
        ],
    );
    // While A attacks: re-syncs with a session kept (C1, C2a), then first
    // syncs with the clone removed and made again (C2b).
    let started = Instant::now();
    let mut syncs = 0;
    let mut a1 = Some(a1);
    while started.elapsed() < Duration::from_secs(8) {
        let c = daemon.dial().await;
        let s = login(&c, &a).await;
        assert_eq!(whoami_uid(&s).await, u64::from(uid_of(&a)));
        s.close().await.unwrap();
        syncs += 1;
        if syncs == 5 {
            // A's last session ends from here on, between the logins.
            a1.take().unwrap().close().await.unwrap();
        }
    }
    let out = attacker.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    let mut fields = report.split_whitespace();
    let tries: u64 = fields.next().unwrap_or("0").parse().unwrap_or(0);
    let wins: u64 = fields.next().unwrap_or("1").parse().unwrap_or(1);
    assert!(
        tries >= 1000 && syncs >= 10,
        "the attack did not get enough tries: {tries} tries, {syncs} syncs; {report} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(wins, 0, "a step of the attack succeeded: {report}");
    assert_eq!(mode_owner(&target), target_before, "the target changed");
    assert_eq!(fs::read_to_string(victim.join("keep.txt")).unwrap(), "keep");
    assert_eq!(
        fs::read_to_string(victim.join("important/db")).unwrap(),
        "db"
    );
    // And the reason: nothing on A's clone path is A's, and none of it is
    // writable by A (a session keeps the clone there to look at).
    let _a_again = login(&daemon.dial().await, &a).await;
    for p in [
        users.join(&a),
        users.join(&a).join("tree"),
        users.join(&a).join("tree/team"),
        users.join(&a).join("tree/echo"),
    ] {
        let (mode, uid, _) = mode_owner(&p);
        assert_eq!(uid, 0, "{} is not root's", p.display());
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            assert_eq!(mode & 0o022, 0, "{} is group/other writable", p.display());
        }
    }

    // B's calls are still B's.
    assert_eq!(whoami_uid(&b1).await, u64::from(uid_of(&b)));
    let b2 = login(&daemon.dial().await, &b).await;
    assert_eq!(whoami_uid(&b2).await, u64::from(uid_of(&b)));
    let echo = b2.walk("/team/echo").await.unwrap();
    assert_eq!(&echo.append(b"hi".to_vec()).await.unwrap()[..], b"hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_acls_are_cloned_and_the_mask_never_becomes_group_bits() {
    let mut fx = Fixture::new();
    let in_group = fx.user(PASSWORD);
    let named = fx.user(PASSWORD);
    let group_gid = nix::unistd::User::from_name(&in_group)
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    let named_uid = uid_of(&named);
    let daemon = start(&mut fx, 0, |tree| {
        // chmod 700 d; setfacl -m u:<named>:rx d   (mode now reads 0750)
        let d = tree.join("d");
        fs::create_dir(&d).unwrap();
        install_example("echo", &d.join("echo"), 0o755);
        chown(&d, Some(0), Some(group_gid)).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
        let out = Command::new("setfacl")
            .args(["-m", &format!("u:{named_uid}:rx")])
            .arg(&d)
            .output()
            .unwrap();
        assert!(out.status.success(), "setfacl: {out:?}");
        assert_eq!(mode_owner(&d).0, 0o750);
    });
    let client = daemon.dial().await;
    let g = login(&client, &in_group).await;
    let n = login(&client, &named).await;
    // The owning group had nothing on the canonical directory: nothing here.
    let err = g.walk("/d/echo").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::PermissionDenied), "{err}");
    // The named user may search it, as on the canonical tree.
    let echo = n.walk("/d/echo").await.unwrap();
    assert_eq!(&echo.append(b"ok".to_vec()).await.unwrap()[..], b"ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_sparse_descriptor_is_not_read_and_does_not_stall_an_attach() {
    let mut fx = Fixture::new();
    let a = fx.user(PASSWORD);
    let a_uid = uid_of(&a);
    let daemon = start(&mut fx, a_uid, |_| {});
    // As the owner of /team: a 1 GiB sparse file (no blocks on disk).
    let big = daemon.dir.join("tree/team/big");
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={a}"),
            &format!("--regid={a}"),
            "--init-groups",
            "truncate",
            "-s",
            "1G",
        ])
        .arg(&big)
        .output()
        .unwrap();
    assert!(out.status.success(), "truncate: {out:?}");
    let t0 = Instant::now();
    let s = login(&daemon.dial().await, &a).await;
    let attach = t0.elapsed();
    let pid = daemon.child.id();
    let peak_kib: u64 = status_field(pid, "VmHWM:")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        attach < Duration::from_secs(3),
        "the attach took {attach:?}"
    );
    assert!(
        peak_kib < 200 * 1024,
        "the monitor's peak RSS reached {peak_kib} KiB"
    );
    let err = s.walk("/team/big").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NoSuchNode), "{err}");
    assert!(
        daemon.log_text().contains("larger than 4096"),
        "{}",
        daemon.log_text()
    );
}
