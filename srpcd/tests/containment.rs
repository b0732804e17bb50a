//! Nothing outlives its owner (audit L1): what a per-user handler starts ends
//! with the user's last session, what the front user leaves ends when srpcd
//! stops, and srpcd's cgroup subtree goes with it. Each test runs with cgroups
//! (`workers.cgroups = "auto"`: this machine's cgroup2 mount, srpcd in the root
//! cgroup) and with the process-group fallback (`"off"`). Real users, the real
//! daemon. Needs root, and (for the cgroup cases) a test process in a cgroup
//! srpcd may use: the cgroup2 root, as on the CI machine (no systemd as PID 1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "support/pam_fixture.rs"]
mod pam_fixture;
#[path = "support/daemon.rs"]
mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pam_fixture::Fixture;
use srpc::client::PasswordConversation;
use support::{install_example, pids_of, status_field, uid_of, worker_of, Daemon, Options};

const PASSWORD: &str = "containment test pw";
/// What was left behind must be gone within this.
const BOUND: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Cgroups,
    Fallback,
}

fn start(fx: &mut Fixture, mode: Mode, build: impl FnOnce(&Path)) -> Daemon {
    let extra = match mode {
        Mode::Cgroups => "cgroups = \"auto\"",
        Mode::Fallback => "cgroups = \"off\"",
    };
    let opts = Options {
        service: fx.unix_service(),
        idle_secs: 300,
        extra: extra.to_owned(),
    };
    support::start(fx, &opts, build)
}

/// Kills whatever a test user still runs, so the fixture can remove it even
/// when an assertion failed.
struct Reaper(Vec<u32>);
impl Drop for Reaper {
    fn drop(&mut self) {
        for uid in &self.0 {
            for pid in pids_where(|pid| real_uid(pid) == Some(*uid)) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

fn real_uid(pid: u32) -> Option<u32> {
    status_field(pid, "Uid:")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn pids_where(keep: impl Fn(u32) -> bool) -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| keep(*pid))
        .collect()
}

/// The `sleep 600` processes running as `uid`.
fn sleeps_of(uid: u32) -> Vec<u32> {
    pids_where(|pid| {
        real_uid(pid) == Some(uid)
            && fs::read(format!("/proc/{pid}/cmdline")).ok().as_deref() == Some(b"sleep\x00600\x00")
    })
}

/// Waits until `done` holds, for at most `bound`.
async fn eventually(bound: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The cgroup2 mount of this machine and the cgroup (relative) of `pid`.
fn cgroup_of(pid: u32) -> (PathBuf, String) {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mount = mountinfo
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split(' ').next()? == "cgroup2").then(|| left.split(' ').nth(4).unwrap())
        })
        .expect("a cgroup2 mount");
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap()
        .to_owned();
    (PathBuf::from(mount), rel)
}

/// srpcd's subtree: `<its cgroup>/srpcd-<pid>` (it stays in its cgroup, the
/// root one here, where there is no delegation to move into).
fn subtree_of(srpcd: u32) -> PathBuf {
    let (mount, rel) = cgroup_of(srpcd);
    mount
        .join(rel.trim_start_matches('/'))
        .join(format!("srpcd-{srpcd}"))
}

fn front_user_of(daemon: &Daemon) -> String {
    let config = fs::read_to_string(daemon.dir.join("srpcd.toml")).unwrap();
    config
        .lines()
        .find_map(|l| l.strip_prefix("front_user = \""))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap()
        .to_owned()
}

/// (a) The audit's tree/bg handler: it leaves a `sleep 600` behind (through
/// `setsid` where cgroups contain it; in its own process group for the
/// fallback, which `setsid` would escape) and serves as the echo handler.
/// After the user's last session ends the sleep is gone, while the worker
/// lives on through its idle time.
async fn handler_leftovers_end_with_the_last_session(mode: Mode) {
    let mut fx = Fixture::new();
    let user = fx.user(PASSWORD);
    let uid = uid_of(&user);
    let _reaper = Reaper(vec![uid]);
    let daemon = start(&mut fx, mode, |tree| {
        let echo = tree.join("echo");
        install_example("echo", &echo, 0o755);
        let detach = match mode {
            Mode::Cgroups => "setsid ",
            Mode::Fallback => "",
        };
        let bg = tree.join("bg");
        fs::write(
            &bg,
            format!(
                "#!/bin/sh\n{detach}sh -c 'exec sleep 600' </dev/null >/dev/null 2>&1 &\nexec {}\n",
                echo.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&bg, fs::Permissions::from_mode(0o755)).unwrap();
    });
    let client = daemon.dial().await;
    let s = client
        .auth(&user, "/", &mut PasswordConversation::new(PASSWORD))
        .await
        .unwrap();
    let bg = s.walk("/bg").await.unwrap();
    let reply = bg.append(b"hi".to_vec()).await.unwrap();
    assert_eq!(&reply[..], b"hi");
    assert!(
        eventually(BOUND, || !sleeps_of(uid).is_empty()).await,
        "the handler left no sleep behind"
    );
    let sleeps = sleeps_of(uid);
    if mode == Mode::Cgroups {
        let (_, rel) = cgroup_of(sleeps[0]);
        assert!(
            rel.ends_with(&format!("/srpcd-{}/user-{uid}/handlers", daemon.child.id())),
            "the sleep is in {rel}"
        );
    }
    drop(bg);
    s.close().await.unwrap();
    assert!(
        eventually(BOUND, || sleeps_of(uid).is_empty()).await,
        "{mode:?}: the handler's leftover {sleeps:?} outlived the user's last session\n{}",
        daemon.log_text()
    );
    assert!(
        worker_of(&user).is_some(),
        "the worker lives through its idle time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_leftovers_end_with_the_last_session_in_a_cgroup() {
    handler_leftovers_end_with_the_last_session(Mode::Cgroups).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_leftovers_end_with_the_last_session_by_process_group() {
    handler_leftovers_end_with_the_last_session(Mode::Fallback).await;
}

/// A process as `user`: `sleep 600` through setpriv (which execs it, so the
/// child's pid is the sleep's).
fn sleep_as(user: &str) -> Child {
    Command::new("setpriv")
        .args(["--reuid", user, "--regid", user, "--clear-groups", "--"])
        .args(["sleep", "600"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// (b) A process the front user left behind (in the front's cgroup where
/// there is one, anywhere in the fallback) is gone once srpcd stops; (c) so
/// is srpcd's cgroup subtree.
async fn front_user_leftovers_end_with_srpcd(mode: Mode) {
    let mut fx = Fixture::new();
    let mut daemon = start(&mut fx, mode, |_| {});
    let front_user = front_user_of(&daemon);
    let front_uid = uid_of(&front_user);
    let _reaper = Reaper(vec![front_uid]);
    let srpcd = daemon.child.id();
    let subtree = subtree_of(srpcd);
    let front_exe = Path::new(env!("CARGO_BIN_EXE_srpcd"))
        .parent()
        .unwrap()
        .join("srpc-front");
    let front = front_pids(&front_exe, front_uid);
    assert_eq!(front.len(), 1, "one front: {front:?}");

    let mut leftover = sleep_as(&front_user);
    match mode {
        Mode::Cgroups => {
            let (mount, rel) = cgroup_of(front[0]);
            assert_eq!(
                mount.join(rel.trim_start_matches('/')),
                subtree.join("front"),
                "the front runs in srpcd's front cgroup"
            );
            fs::write(
                subtree.join("front/cgroup.procs"),
                format!("{}\n", leftover.id()),
            )
            .unwrap();
        }
        Mode::Fallback => assert!(
            !subtree.exists(),
            "no cgroup subtree with cgroups off: {}",
            subtree.display()
        ),
    }
    support::stop(&mut daemon.child);
    let gone = eventually(BOUND, || matches!(leftover.try_wait(), Ok(Some(_)))).await;
    if !gone {
        let _ = leftover.kill();
        let _ = leftover.wait();
    }
    assert!(
        gone,
        "{mode:?}: a front-user process outlived srpcd\n{}",
        daemon.log_text()
    );
    assert!(
        !subtree.exists(),
        "srpcd's cgroup subtree {} outlived it",
        subtree.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn front_user_leftovers_and_the_subtree_end_with_srpcd_in_a_cgroup() {
    front_user_leftovers_end_with_srpcd(Mode::Cgroups).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn front_user_leftovers_end_with_srpcd_by_uid() {
    front_user_leftovers_end_with_srpcd(Mode::Fallback).await;
}

/// A cgroup made by the test, removed (after killing what is left) on drop.
struct TestCgroup(PathBuf);
impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = fs::write(self.0.join("cgroup.kill"), "1");
        for _ in 0..100 {
            if fs::remove_dir(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Starts srpcd on `p` from inside the cgroup `dir` (a shell moves itself
/// there, then execs srpcd), and waits until it listens.
fn launch_in(p: support::Prepared, dir: &Path) -> Daemon {
    let mut command = Command::new("sh");
    command
        .args([
            "-c",
            "echo $$ > \"$0/cgroup.procs\" && exec \"$1\" --config \"$2\"",
        ])
        .arg(dir)
        .arg(env!("CARGO_BIN_EXE_srpcd"))
        .arg(&p.config);
    support::launch_command(p, command)
}

fn procs_of(dir: &Path) -> String {
    fs::read_to_string(dir.join("cgroup.procs")).unwrap()
}

/// Under a delegated cgroup (`Delegate=yes`: systemd sets `trusted.delegate`)
/// srpcd moves itself into a leaf of its subtree, so the delegated cgroup
/// holds no process; the front is in `front`; at stop the subtree is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_delegated_cgroup_srpcd_keeps_the_delegated_cgroup_empty() {
    let mut fx = Fixture::new();
    let (mount, rel) = cgroup_of(std::process::id());
    let delegated = TestCgroup(
        mount
            .join(rel.trim_start_matches('/'))
            .join(format!("srpc-test-delegated-{}", std::process::id())),
    );
    fs::create_dir(&delegated.0).unwrap();
    rustix::fs::setxattr(
        &delegated.0,
        "trusted.delegate",
        b"1",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let opts = Options {
        service: fx.unix_service(),
        idle_secs: 300,
        extra: String::new(),
    };
    let mut daemon = launch_in(support::prepare(&mut fx, &opts, |_| {}), &delegated.0);
    let srpcd = daemon.child.id();
    let subtree = delegated.0.join(format!("srpcd-{srpcd}"));
    assert_eq!(
        procs_of(&delegated.0),
        "",
        "the delegated cgroup holds no process"
    );
    assert_eq!(procs_of(&subtree.join("monitor")), format!("{srpcd}\n"));
    let front_uid = uid_of(&front_user_of(&daemon));
    let _reaper = Reaper(vec![front_uid]);
    let front_exe = Path::new(env!("CARGO_BIN_EXE_srpcd"))
        .parent()
        .unwrap()
        .join("srpc-front");
    let front = front_pids(&front_exe, front_uid);
    assert_eq!(front.len(), 1, "one front: {front:?}");
    assert_eq!(procs_of(&subtree.join("front")), format!("{}\n", front[0]));
    support::stop(&mut daemon.child);
    assert!(
        !subtree.exists(),
        "srpcd's subtree outlived it\n{}",
        daemon.log_text()
    );
}

/// The subtree of an srpcd that died without cleaning up (here made by hand,
/// for a pid that is gone, with a `sleep` in it) is killed and removed when
/// the next srpcd starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_subtree_is_killed_and_removed_at_start() {
    let mut fx = Fixture::new();
    let (mount, rel) = cgroup_of(std::process::id());
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let stale = TestCgroup(
        mount
            .join(rel.trim_start_matches('/'))
            .join(format!("srpcd-{dead}")),
    );
    fs::create_dir_all(stale.0.join("user-1/handlers")).unwrap();
    let mut sleeper = Command::new("sleep").arg("600").spawn().unwrap();
    fs::write(
        stale.0.join("user-1/handlers/cgroup.procs"),
        sleeper.id().to_string(),
    )
    .unwrap();
    let opts = Options {
        service: fx.unix_service(),
        idle_secs: 300,
        extra: String::new(),
    };
    let daemon = support::start(&mut fx, &opts, |_| {});
    let _reaper = Reaper(vec![uid_of(&front_user_of(&daemon))]);
    let killed = eventually(BOUND, || matches!(sleeper.try_wait(), Ok(Some(_)))).await;
    if !killed {
        let _ = sleeper.kill();
        let _ = sleeper.wait();
    }
    assert!(killed, "the stale subtree's process lives");
    assert!(!stale.0.exists(), "the stale subtree is still there");
}

/// The front's pids. srpcd answers TCP (its listener's backlog) before the
/// front has exec'd: until then the process is still `srpc-launch`, so under
/// load the front may need a moment to show up (bounded: 10 s).
fn front_pids(exe: &Path, uid: u32) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = pids_of(exe, uid);
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
