//! The fallback where srpcd has no cgroup of its own: every child leads its
//! own session and process group (the spawn's `setsid`), so a user's handlers
//! and worker are ended by `killpg` of the groups they were started in — which
//! reaches what they started unless that called `setsid()` or `setpgid()`
//! itself. The front user is a dedicated account, so "every front-user process"
//! is every process of its uid: a child started as that user (through the
//! launcher) runs `kill(-1, SIGKILL)`, which the kernel applies to all of the
//! uid's processes at once, so none can fork away meanwhile.

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::time::Duration;

use rustix::process::{kill_process_group, test_kill_process_group, Pid, Signal};
use srpc_os::{Credentials, ListenFdCommand};

use super::{lock, Place};
use crate::monitor::launch::{self, Role, Tag};
use crate::users::Account;

/// Groups recorded per user before the ones that ended are pruned.
const PRUNE_AT: usize = 32;

/// How long the front user's killer may take.
const KILLER_DEADLINE: Duration = Duration::from_secs(5);

/// The process groups of the children srpcd started, by user.
#[derive(Default)]
pub struct Groups {
    users: Mutex<HashMap<u32, User>>,
}

#[derive(Default)]
struct User {
    worker: Option<i32>,
    handlers: Vec<i32>,
}

impl Groups {
    /// A child started: its pid is its process group.
    pub fn started(&self, place: Place, pid: u32) {
        let Ok(group) = i32::try_from(pid) else {
            return;
        };
        let mut users = lock(&self.users);
        match place {
            Place::Front => {}
            Place::Worker(uid) => users.entry(uid).or_default().worker = Some(group),
            Place::Handler(uid) => {
                let handlers = &mut users.entry(uid).or_default().handlers;
                if handlers.len() >= PRUNE_AT {
                    // A group nobody is in any more has nothing to kill.
                    handlers.retain(|g| {
                        Pid::from_raw(*g).is_some_and(|p| test_kill_process_group(p).is_ok())
                    });
                }
                handlers.push(group);
            }
        }
    }

    /// Ends the groups of the user's handlers.
    pub fn kill_handlers(&self, uid: u32) {
        let groups = lock(&self.users)
            .get_mut(&uid)
            .map(|u| std::mem::take(&mut u.handlers))
            .unwrap_or_default();
        kill_groups(uid, &groups);
    }

    /// Ends every group the user's children were started in.
    pub fn user_done(&self, uid: u32) {
        if let Some(user) = lock(&self.users).remove(&uid) {
            kill_groups(uid, &user.all());
        }
    }

    /// Ends every group of every user.
    pub fn kill_all(&self) {
        let users: Vec<(u32, User)> = lock(&self.users).drain().collect();
        for (uid, user) in users {
            kill_groups(uid, &user.all());
        }
    }
}

impl User {
    fn all(&self) -> Vec<i32> {
        self.handlers.iter().copied().chain(self.worker).collect()
    }
}

/// `killpg(SIGKILL)` of each of `groups` that still has a process of `uid` in
/// it: a group whose last member exited may have had its number reused by an
/// unrelated process group, which must not be hit.
fn kill_groups(uid: u32, groups: &[i32]) {
    if groups.is_empty() {
        return;
    }
    let wanted: HashSet<i32> = groups.iter().copied().collect();
    for pgid in live_groups_of(uid, &wanted) {
        if let Some(p) = Pid::from_raw(pgid) {
            let _ = kill_process_group(p, Signal::KILL);
        }
    }
}

/// Which of `wanted` have a member whose real uid is `uid` (from /proc).
fn live_groups_of(uid: u32, wanted: &HashSet<i32>) -> HashSet<i32> {
    let mut live = HashSet::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return live;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Some(pgrp) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| process_group(&s))
        else {
            continue;
        };
        if wanted.contains(&pgrp) && !live.contains(&pgrp) && real_uid(pid) == Some(uid) {
            live.insert(pgrp);
        }
    }
    live
}

/// The process group in `/proc/<pid>/stat` (after the command name, which may
/// hold any character: from the last `)`, fields state, ppid, pgrp).
fn process_group(stat: &str) -> Option<i32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(2)?.parse().ok()
}

fn real_uid(pid: &str) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Kills every process of the front user: `/bin/sh`'s `kill -KILL -1`, run
/// as that user through the launcher (so with its ids only, and no raw
/// syscalls here).
pub async fn kill_all_of(front: &Account) {
    let killer = async {
        let (_, end) = std::os::unix::net::UnixStream::pair()?;
        let mut cmd = ListenFdCommand::new("/bin/sh", OwnedFd::from(end), "srpc-kill");
        cmd.arg("-c")
            .arg("kill -KILL -1 2>/dev/null; exit 0")
            .env("PATH", "/usr/bin:/bin")
            .credentials(Credentials {
                uid: front.uid,
                gid: front.gid,
                groups: front.groups.clone(),
            });
        let tag = Tag {
            role: Role::Front,
            user: front.name.clone(),
            endpoint: None,
        };
        let mut child = launch::prepare(cmd, tag)?.spawn_tokio()?;
        match tokio::time::timeout(KILLER_DEADLINE, child.wait()).await {
            Ok(status) => status.map(drop),
            Err(_) => Err(std::io::Error::other("it did not finish in time")),
        }
    };
    let result: std::io::Result<()> = killer.await;
    if let Err(e) = result {
        tracing::error!(user = front.name, "killing the front user's processes: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_group_is_read_past_the_command_name() {
        assert_eq!(process_group("12 (sh) S 1 12 12 0 -1"), Some(12));
        assert_eq!(process_group("13 (a) b) c) R 12 40 13 0"), Some(40));
        assert_eq!(process_group("garbage"), None);
    }
}
