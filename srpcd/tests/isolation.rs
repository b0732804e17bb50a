//! Children cannot reach back into the monitor: a user cannot freeze it by
//! stopping a half-spawned child (audit M1). The real daemon with real users;
//! the attacks of the December audit, replayed. Needs root and a C compiler
//! (`cc`) for the attacker.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "support/pam_fixture.rs"]
mod pam_fixture;
#[path = "support/daemon.rs"]
mod support;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pam_fixture::Fixture;
use srpc::client::{Conversation, ConversationError, PasswordConversation};
use srpc_proto::Prompt;
use support::{uid_of, Options};
use zeroize::Zeroizing;

const PASSWORD: &str = "isolation test pw";

fn opts(fx: &mut Fixture) -> Options {
    Options {
        service: fx.unix_service(),
        idle_secs: 300,
        extra: String::new(),
    }
}

/// Kills every process running as `uid` (a test user's leftovers, so the
/// fixture can remove the user).
fn kill_all_of(uid: u32) {
    for pid in pids_with_uid(uid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn pids_with_uid(uid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let real = support::status_field(pid, "Uid:").and_then(|v| {
            v.split_whitespace()
                .next()
                .and_then(|u| u.parse::<u32>().ok())
        });
        if real == Some(uid) {
            found.push(pid);
        }
    }
    found
}

/// The audit's stopper (Appendix B), sharpened: run as the attacker, it watches
/// the monitor's new children (`/proc/<monitor>/task/*/children`, readable by
/// anyone) and spins `kill(pid, SIGSTOP)` on each: that fails with EPERM while
/// the child is root and succeeds the moment it has taken the attacker's uid.
/// A child it stopped before its exec of the worker (the monitor's fork in the
/// old code, comm `srpcd`; the launcher now, `srpc-launch`) it leaves stopped
/// and reports as `caught`; a worker it stopped it SIGKILLs, so the next login
/// spawns again.
const STOPPER_C: &str = r#"
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#define MAXT 256
#define MAXDONE 4096
static int done[MAXDONE], ndone;
static int is_done(int p) { for (int i = 0; i < ndone; i++) if (done[i] == p) return 1; return 0; }
int main(int argc, char **argv) {
    time_t end = time(NULL) + atoi(argv[1]);
    int monitor = atoi(argv[2]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int fds[MAXT], nfds = 0;
    long iter = 0;
    while (time(NULL) < end) {
        if (iter++ % 2000 == 0) {
            for (int i = 0; i < nfds; i++) close(fds[i]);
            nfds = 0;
            char dir[64];
            snprintf(dir, sizeof dir, "/proc/%d/task", monitor);
            DIR *d = opendir(dir);
            if (!d) return 2;
            struct dirent *e;
            while ((e = readdir(d)) && nfds < MAXT) {
                if (e->d_name[0] == '.') continue;
                char path[128];
                snprintf(path, sizeof path, "/proc/%d/task/%s/children", monitor, e->d_name);
                int fd = open(path, O_RDONLY);
                if (fd >= 0) fds[nfds++] = fd;
            }
            closedir(d);
        }
        for (int i = 0; i < nfds; i++) {
            char buf[4096];
            ssize_t n = pread(fds[i], buf, sizeof buf - 1, 0);
            if (n <= 0) continue;
            buf[n] = 0;
            for (char *tok = strtok(buf, " \n"); tok; tok = strtok(NULL, " \n")) {
                int p = atoi(tok);
                if (p <= 1 || is_done(p)) continue;
                int stopped = 0;
                struct timespec t0, t;
                clock_gettime(CLOCK_MONOTONIC, &t0);
                do {
                    stopped = kill(p, SIGSTOP) == 0;
                    clock_gettime(CLOCK_MONOTONIC, &t);
                } while (!stopped && (t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 300000000L);
                if (ndone < MAXDONE) done[ndone++] = p;
                if (!stopped) continue;
                /* A stop sent during the exec takes effect after it: let it
                 * settle before asking what was stopped. */
                usleep(20000);
                char cpath[64], comm[64] = {0};
                snprintf(cpath, sizeof cpath, "/proc/%d/comm", p);
                FILE *c = fopen(cpath, "r");
                if (c) { if (!fgets(comm, sizeof comm, c)) comm[0] = 0; fclose(c); }
                comm[strcspn(comm, "\n")] = 0;
                if (strcmp(comm, "srpc-worker") == 0) {
                    kill(p, SIGKILL);
                } else {
                    printf("caught %d %s\n", p, comm);
                }
            }
        }
    }
    return 0;
}
"#;

fn build_stopper(dir: &Path) -> PathBuf {
    let src = dir.join("stopper.c");
    let bin = dir.join("stopper");
    fs::write(&src, STOPPER_C).unwrap();
    let out = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("cc (a C compiler) is needed for the attacker");
    assert!(out.status.success(), "cc: {out:?}");
    bin
}

/// Runs `program` as `user` (uid, gid and groups), as the audit ran "as A".
fn as_user(user: &str, program: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", user, "--regid", user, "--init-groups", "--"])
        .arg(program);
    cmd
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Records when PAM's first prompt arrived.
struct Timed {
    inner: PasswordConversation,
    first: Option<Instant>,
}

impl Conversation for Timed {
    async fn respond(
        &mut self,
        prompts: &[Prompt],
    ) -> Result<Vec<Zeroizing<String>>, ConversationError> {
        self.first.get_or_insert_with(Instant::now);
        self.inner.respond(prompts).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_stopping_its_own_spawns_does_not_freeze_the_monitor() {
    let mut fx = Fixture::new();
    let alice = fx.user(PASSWORD);
    let bob = fx.user(PASSWORD);
    let dir = support::scratch("m1");
    let stopper = build_stopper(&dir.0);
    let o = opts(&mut fx);
    let daemon = support::start(&mut fx, &o, |_| {});

    // A's stopper runs for a bounded time while A logs in again and again (it
    // kills what it stops, so each login spawns A's worker anew).
    let attack_secs = 12;
    let mut child = as_user(&alice, &stopper)
        .arg(attack_secs.to_string())
        .arg(daemon.child.id().to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let stopper_guard = Killed(child);
    let caught = Arc::new(AtomicBool::new(false));
    let caught_by_reader = Arc::clone(&caught);
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            eprintln!("stopper: {line}");
            if line.starts_with("caught") {
                caught_by_reader.store(true, Ordering::SeqCst);
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(attack_secs - 2);
    let mut logins = 0;
    while Instant::now() < deadline && !caught.load(Ordering::SeqCst) {
        let Ok(Ok(client)) = tokio::time::timeout(
            Duration::from_secs(3),
            srpc::client::Client::dial(&daemon.addr, "localhost", daemon.trust.clone()),
        )
        .await
        else {
            break;
        };
        let mut conv = PasswordConversation::new(PASSWORD);
        let login = client.auth(&alice, "/", &mut conv);
        match tokio::time::timeout(Duration::from_secs(3), login).await {
            Ok(Ok(session)) => {
                let _ = tokio::time::timeout(Duration::from_secs(1), session.root().stat()).await;
            }
            Ok(Err(_)) => {}
            // The monitor no longer answers (the old code, caught).
            Err(_) => break,
        }
        logins += 1;
    }

    // B's first prompt must come promptly, and B must be served.
    let client = tokio::time::timeout(Duration::from_secs(5), daemon.dial())
        .await
        .unwrap_or_else(|_| panic!("no TLS connection after the attack\n{}", daemon.log_text()));
    let mut conv = Timed {
        inner: PasswordConversation::new(PASSWORD),
        first: None,
    };
    let started = Instant::now();
    let login =
        tokio::time::timeout(Duration::from_secs(15), client.auth(&bob, "/", &mut conv)).await;
    let first = conv.first.map(|t| t.duration_since(started));
    assert!(
        first.is_some_and(|t| t < Duration::from_secs(5)),
        "B's first PAM prompt took {first:?} after {logins} logins of A (caught: {}): \
         the monitor is frozen\n{}",
        caught.load(Ordering::SeqCst),
        daemon.log_text()
    );
    let session = login.unwrap().unwrap();
    session.root().stat().await.unwrap();
    let caught = caught.load(Ordering::SeqCst);
    eprintln!("A logged in {logins} times; a spawn caught mid-way: {caught}");
    assert!(logins > 0, "A never logged in");
    if caught {
        // The stopped launcher is killed at its deadline, and said so.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !daemon.log_text().contains("did not start its program") {
            assert!(Instant::now() < deadline, "{}", daemon.log_text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    drop(stopper_guard);
    kill_all_of(uid_of(&alice));
    drop(daemon);
}

/// A per-user handler (runs as the caller) that forges an srpcd log line on
/// stderr and reports its session, controlling tty and whether /dev/tty opens.
fn forging_handler(report: &Path, marker: &str) -> String {
    format!(
        "#!/bin/sh\n\
         echo '2026-12-01T00:00:00.000000Z  INFO authenticated auth=4242 user=root {marker}' >&2\n\
         read -r pid comm state ppid pgrp sid tty rest < /proc/$$/stat\n\
         if (: < /dev/tty) 2>/dev/null; then t=opened; else t=refused; fi\n\
         echo \"$$ $sid $tty $t\" > {report}.tmp && mv {report}.tmp {report}\n\
         exec sleep 30\n",
        report = report.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_has_no_terminal_and_its_stderr_is_logged_as_its_own() {
    let mut fx = Fixture::new();
    let alice = fx.user(PASSWORD);
    let dir = support::scratch("h2");
    fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    let report = dir.0.join("report");
    let marker = format!("FORGED-{}", std::process::id());
    let script = forging_handler(&report, &marker);
    let o = opts(&mut fx);
    let daemon = support::start(&mut fx, &o, |tree| {
        fs::write(tree.join("forge"), &script).unwrap();
        fs::set_permissions(
            tree.join("forge"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    });
    let client = daemon.dial().await;
    let session = client
        .auth(&alice, "/", &mut PasswordConversation::new(PASSWORD))
        .await
        .unwrap();
    // The call itself never gets an answer; the handler's start is what counts.
    let fid = session.walk("/forge").await.unwrap();
    let call = tokio::spawn(async move { fid.append(b"x".to_vec()).await.map(drop) });

    let deadline = Instant::now() + Duration::from_secs(10);
    while !report.exists() || !daemon.log_text().contains(&marker) {
        assert!(
            Instant::now() < deadline,
            "no report or line\n{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = fs::read_to_string(&report).unwrap();
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [pid, sid, tty, dev_tty] = fields.as_slice() else {
        panic!("report: {text}");
    };
    assert_eq!(sid, pid, "the handler leads its own session");
    assert_eq!(*tty, "0", "the handler has no controlling terminal");
    assert_eq!(*dev_tty, "refused", "the handler opened /dev/tty");

    let log = daemon.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&marker)).collect();
    assert!(!lines.is_empty(), "{log}");
    for line in lines {
        // Quoted after the child's tag, with its user and pid: never at the
        // start of a line, where srpcd's own "INFO authenticated" would be.
        let (head, _) = line.split_once("INFO authenticated auth=4242").unwrap();
        assert!(head.contains("handler stderr: \""), "untagged: {line}");
        assert!(line.contains(&format!("pid={pid}")), "no pid: {line}");
        assert!(line.contains(&alice), "no user: {line}");
        assert!(line.contains("endpoint=\"/forge\""), "no endpoint: {line}");
    }
    call.abort();
    drop(session);
    drop(daemon);
    kill_all_of(uid_of(&alice));
}
