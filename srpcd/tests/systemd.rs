//! What srpcd ships for systemd, checked with systemd's own tools where they
//! work without systemd as PID 1 (`systemd-analyze verify`,
//! `systemd-sysusers --root`, `systemd-tmpfiles --root`), srpcd's PAM check
//! on the shipped PAM file, and the notification protocol against a real
//! datagram socket. Running the unit under systemd itself is the SELinux
//! VM's test. Needs root and systemd (package systemd).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "support/pam_fixture.rs"]
mod pam_fixture;
#[path = "support/daemon.rs"]
mod support;

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pam_fixture::Fixture;
use support::Options;

fn dist(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dist")
        .join(path)
}

#[test]
fn the_shipped_unit_passes_systemd_analyze_verify() {
    let scratch = support::scratch("unit");
    let unit = fs::read_to_string(dist("systemd/srpcd.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/sbin/srpcd\n"), "{unit}");
    // The built binary stands in for /usr/sbin/srpcd (verify checks that
    // the commands exist).
    let here = unit.replace("/usr/sbin/srpcd", env!("CARGO_BIN_EXE_srpcd"));
    let path = scratch.join("srpcd.service");
    fs::write(&path, here).unwrap();
    // --man=no: the man pages are Markdown in docs/man, not installed here.
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (package systemd) must be installed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.trim().is_empty(),
        "systemd-analyze verify is not clean: {err}"
    );
    for directive in [
        "Type=notify\n",
        "Delegate=yes\n",
        "ExecReload=",
        "KillMode=mixed\n",
    ] {
        assert!(unit.contains(directive), "{directive}");
    }
    // Breaks pam_unix's unix_chkpwd (and SELinux transitions): never set.
    assert!(!unit.contains("\nNoNewPrivileges="), "{unit}");
}

#[test]
fn the_sysusers_and_tmpfiles_entries_make_the_user_group_and_runtime_dir() {
    let root = support::scratch("sysroot");
    fs::create_dir_all(root.join("etc")).unwrap();
    let out = Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.0.display()))
        .arg(dist("systemd/srpcd.sysusers.conf"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
    let group = fs::read_to_string(root.join("etc/group")).unwrap();
    let srpc = passwd.lines().find(|l| l.starts_with("srpc:")).unwrap();
    assert!(srpc.ends_with(":/usr/sbin/nologin"), "{srpc}");
    assert!(
        group.lines().any(|l| l.starts_with("srpcadmin:")),
        "{group}"
    );

    let out = Command::new("systemd-tmpfiles")
        .arg(format!("--root={}", root.0.display()))
        .arg("--create")
        .arg(dist("systemd/srpcd.tmpfiles.conf"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta = fs::metadata(root.join("run/srpc")).unwrap();
    assert!(meta.is_dir());
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777,
        0o755
    );
}

#[test]
fn srpcd_accepts_the_shipped_pam_file() {
    let mut fx = Fixture::new();
    let body = fs::read_to_string(dist("pam.d/srpcd")).unwrap();
    let opts = Options {
        service: fx.service(&body),
        idle_secs: 300,
        extra: String::new(),
    };
    let p = support::prepare(&mut fx, &opts, |_| {});
    let out = Command::new(env!("CARGO_BIN_EXE_srpcd"))
        .arg("--check-config")
        .arg("--config")
        .arg(&p.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Notifications received on `sock` until one contains `want` (bounded).
fn until(sock: &UnixDatagram, want: &str, seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen.push(text.clone());
            if text.lines().any(|l| l == want) {
                return text;
            }
        }
    }
    panic!("no {want} within 15 s; got {seen:?}");
}

#[test]
fn srpcd_tells_systemd_ready_reloading_and_stopping() {
    let mut fx = Fixture::new();
    let scratch = support::scratch("notify");
    let path = scratch.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let opts = Options {
        service: fx.unix_service(),
        idle_secs: 300,
        extra: String::new(),
    };
    let p = support::prepare(&mut fx, &opts, |_| {});
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_srpcd"));
    cmd.arg("--config")
        .arg(&p.config)
        .env("NOTIFY_SOCKET", &path);
    let mut daemon = support::launch_command(p, cmd);
    let mut seen = Vec::new();
    let ready = until(&sock, "READY=1", &mut seen);
    assert!(
        ready.contains(&format!("STATUS=serving on {}", daemon.addr)),
        "{ready}"
    );

    let pid = nix::unistd::Pid::from_raw(i32::try_from(daemon.child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let reloading = until(&sock, "RELOADING=1", &mut seen);
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC: {reloading}"))
        .parse()
        .unwrap();
    assert!(usec > 0);
    until(&sock, "READY=1", &mut seen);

    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    until(&sock, "STOPPING=1", &mut seen);
    support::stop(&mut daemon.child);
}
