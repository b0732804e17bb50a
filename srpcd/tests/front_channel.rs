//! The front cannot turn the monitor against the host (audit H1) and is
//! hardened (L3): the monitor channel is a socketpair the front inherits, so
//! there is no socket path in a front-owned directory for root to chown; the
//! front is not dumpable, has no core limit, and stops when the monitor dies.
//! Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "support/pam_fixture.rs"]
mod pam_fixture;
#[path = "support/daemon.rs"]
mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pam_fixture::Fixture;
use support::{pids_of, stop, uid_of, Options};

/// The audit's lurker, as the front user: for `secs` seconds, plant a symlink
/// to the target in `<run>/monitor` and exchange it with `monitor.sock` — in
/// the old layout root chowned that path right after binding it. Prints
/// `tries wins`.
const LURKER: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char dir[4096], sock[4096], lnk[4096];
    snprintf(dir, sizeof dir, "%s/monitor", argv[1]);
    snprintf(sock, sizeof sock, "%s/monitor.sock", dir);
    snprintf(lnk, sizeof lnk, "%s/.lnk", dir);
    time_t end = time(NULL) + atoi(argv[3]);
    long tries = 0, wins = 0;
    struct stat st;
    while (time(NULL) < end) {
        tries++;
        mkdir(dir, 0700);
        symlink(argv[2], lnk);
        if (renameat2(AT_FDCWD, lnk, AT_FDCWD, sock, RENAME_EXCHANGE) == 0
            && lstat(lnk, &st) == 0 && S_ISSOCK(st.st_mode)) {
            wins++;
            unlink(lnk);
        }
    }
    printf("%ld %ld\n", tries, wins);
    return 0;
}
"#;

fn compile(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("lurker.c");
    let bin = dir.join("lurker");
    fs::write(&src, LURKER).unwrap();
    let out = Command::new("gcc")
        .args(["-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success(), "gcc: {out:?}");
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn front_user_of(config: &Path) -> String {
    let text = fs::read_to_string(config).unwrap();
    let line = text.lines().find(|l| l.starts_with("front_user")).unwrap();
    line.split('"').nth(1).unwrap().to_owned()
}

fn start_srpcd(config: &Path, log: &Path, addr: &str) -> Child {
    try_start(config, log, addr).unwrap_or_else(|| {
        panic!(
            "srpcd exited: {}",
            fs::read_to_string(log).unwrap_or_default()
        )
    })
}

/// Starts srpcd and waits until it listens; `None` if it exited first.
fn try_start(config: &Path, log: &Path, addr: &str) -> Option<Child> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_srpcd"))
        .arg("--config")
        .arg(config)
        .env("SRPC_LOG_STDERR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(log)
                .unwrap(),
        )
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        assert!(Instant::now() < deadline, "srpcd did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(child)
}

fn front_exe() -> std::path::PathBuf {
    Path::new(env!("CARGO_BIN_EXE_srpcd"))
        .parent()
        .unwrap()
        .join("srpc-front")
}

#[test]
fn a_front_user_process_cannot_make_root_chown_anything_across_restarts() {
    let mut fx = Fixture::new();
    let opts = Options {
        service: fx.unix_service(),
        idle_secs: 60,
        extra: String::new(),
    };
    let prepared = support::prepare(&mut fx, &opts, |_| {});
    let dir = prepared.dir.clone();
    let run = dir.join("run");
    let front = front_user_of(&prepared.config);
    let target = dir.join("target");
    fs::write(&target, "root-only\n").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
    let lurker = compile(&dir);
    let log = dir.join("srpcd.log");

    // What a compromised front leaves behind (L1), spinning through the
    // restarts as the audit's did.
    let mut first = start_srpcd(&prepared.config, &log, &prepared.addr);
    stop(&mut first);
    let spinner = Command::new("setpriv")
        .args([
            &format!("--reuid={front}"),
            &format!("--regid={front}"),
            "--init-groups",
        ])
        .arg(&lurker)
        .arg(&run)
        .arg(&target)
        .arg("12")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let (mut restarts, mut failed) = (0, 0);
    while started.elapsed() < Duration::from_secs(11) {
        restarts += 1;
        let Some(mut srpcd) = try_start(&prepared.config, &log, &prepared.addr) else {
            failed += 1;
            continue;
        };
        // Nothing below the runtime directory is the front user's.
        for entry in fs::read_dir(&run).unwrap().flatten() {
            // (An entry may go between the listing and the lstat.)
            let Ok(meta) = fs::symlink_metadata(entry.path()) else {
                continue;
            };
            assert_ne!(
                meta.uid(),
                uid_of(&front),
                "{} belongs to the front user",
                entry.path().display()
            );
        }
        stop(&mut srpcd);
    }
    let out = spinner.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    let mut f = report.split_whitespace();
    let tries: u64 = f.next().unwrap_or("0").parse().unwrap();
    let wins: u64 = f.next().unwrap_or("1").parse().unwrap();
    let meta = fs::metadata(&target).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (0, 0, 0o600),
        "the target changed"
    );
    assert_eq!(wins, 0, "a monitor socket was swapped");
    assert!(!run.join("monitor").exists());
    assert!(
        tries > 100_000 && restarts >= 5,
        "too few tries: {tries} tries over {restarts} restarts"
    );
    assert_eq!(
        failed,
        0,
        "srpcd failed to start: {}",
        fs::read_to_string(&log).unwrap()
    );
    drop(prepared);
}

#[test]
fn the_front_is_not_dumpable_has_no_core_and_stops_with_the_monitor() {
    let mut fx = Fixture::new();
    let opts = Options {
        service: fx.unix_service(),
        idle_secs: 60,
        extra: String::new(),
    };
    let prepared = support::prepare(&mut fx, &opts, |_| {});
    let front = front_user_of(&prepared.config);
    let front_uid = uid_of(&front);
    let log = prepared.dir.join("srpcd.log");
    let mut srpcd = start_srpcd(&prepared.config, &log, &prepared.addr);
    // The port listens before the launcher has exec'd the front: wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pids = pids_of(&front_exe(), front_uid);
    while pids.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        pids = pids_of(&front_exe(), front_uid);
    }
    assert_eq!(pids.len(), 1, "one front: {pids:?}");
    let pid = pids[0];
    // The front hardens itself first thing in main, a moment after its exec:
    // give it that moment (an unhardened front never gets there).
    let core_limit = || {
        let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .unwrap()
            .to_owned();
        let fields: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        (fields[4..6].to_vec(), line)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut core, mut line) = core_limit();
    while core != ["0", "0"] && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        (core, line) = core_limit();
    }
    assert_eq!(core, ["0", "0"], "{line}");
    // Another process of the front's uid may not read its memory or environment.
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={front}"),
            &format!("--regid={front}"),
            "--init-groups",
            "cat",
        ])
        .arg(format!("/proc/{pid}/environ"))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the front user read the front's environment"
    );
    // The monitor dies without a word: the front must not serve on alone.
    srpcd.kill().unwrap();
    srpcd.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pids_of(&front_exe(), front_uid).is_empty() {
        assert!(Instant::now() < deadline, "the front outlived the monitor");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(prepared);
}
