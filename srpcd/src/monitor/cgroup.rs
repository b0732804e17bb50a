//! Containment (audit L1): nothing srpcd starts outlives its owner. Per-user
//! handlers and whatever they start end with the user's last session; the
//! user's worker (and anything it left) when it is reaped; every front-user
//! process with the front; everything when srpcd stops.
//!
//! Where srpcd may make a cgroup v2 subtree — its own cgroup is the root of the
//! cgroup2 mount (no systemd, as on the CI machine) or is delegated to it
//! (systemd's `Delegate=yes` marks it with the `trusted.delegate` xattr) — it
//! makes `<own>/srpcd-<pid>/` with `front`, `user-<uid>/worker` and
//! `user-<uid>/handlers`; the launcher joins the child's one as root before
//! it drops ids (`ListenFdCommand::cgroup`), and no process can leave it (a
//! move needs write access to root's `cgroup.procs`). Under a delegation the
//! monitor first moves itself into `srpcd-<pid>/monitor`, so the service's
//! cgroup keeps no processes of its own (cgroup v2's no-internal-processes
//! rule, should controllers be enabled below it). Ending a group is one
//! write of `1` to its `cgroup.kill` (the kernel kills every member,
//! descendants included, and none can fork away meanwhile); without
//! `cgroup.kill` (kernels before 5.14) every pid in `cgroup.procs` is killed,
//! in rounds until none is left. Subtrees of srpcd instances that died
//! without cleaning up are killed and removed at start.
//!
//! Every cgroupfs operation is relative to a directory fd srpcd opened
//! itself, one plain name at a time with `O_NOFOLLOW`; only the launcher gets
//! a path (its `cgroup.procs` is opened with `O_NOFOLLOW` too). Where no
//! cgroup can be made, or `workers.cgroups = "off"`, [`pgroups`] is the
//! fallback.

mod pgroups;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustix::fs::{mkdirat, openat, unlinkat, AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;
use srpc_os::ListenFdCommand;

use crate::config::CgroupMode;
use crate::users::Account;

/// How deep removal descends (srpcd makes three levels; nobody else can add).
const MAX_DEPTH: usize = 8;
/// Rounds of killing `cgroup.procs` where `cgroup.kill` is missing.
const KILL_ROUNDS: usize = 50;
/// How long srpcd waits for a killed subtree to empty at start and stop.
const DRAIN: Duration = Duration::from_secs(5);

/// Where a child goes.
#[derive(Debug, Clone, Copy)]
pub enum Place {
    /// The TLS front.
    Front,
    /// A user's worker.
    Worker(u32),
    /// A user's per-user handler.
    Handler(u32),
}

enum Containment {
    Cgroups(Tree),
    Groups(pgroups::Groups),
}

static CONTAINMENT: OnceLock<Containment> = OnceLock::new();

/// Sets up containment, once, before the first child starts: a cgroup
/// subtree where possible (unless `mode` is off), else the fallback.
pub fn init(mode: CgroupMode) {
    let chosen = match mode {
        CgroupMode::Off => {
            tracing::info!("workers.cgroups is off: containing children by process group");
            Containment::Groups(pgroups::Groups::default())
        }
        CgroupMode::Auto => match Tree::create() {
            Ok(tree) => {
                tracing::info!(cgroup = %tree.base_path.display(), "containing children in a cgroup");
                Containment::Cgroups(tree)
            }
            Err(why) => {
                tracing::warn!(
                    "no cgroup v2 subtree ({why}): containing children by process group; \
                     a descendant that calls setsid() escapes that"
                );
                Containment::Groups(pgroups::Groups::default())
            }
        },
    };
    let _ = CONTAINMENT.set(chosen);
}

/// Puts the child `cmd` will start in its place (the launcher joins the
/// cgroup). An error means the child must not start: it would not be
/// contained.
pub fn place(cmd: &mut ListenFdCommand, place: Place) -> io::Result<()> {
    if let Some(Containment::Cgroups(tree)) = CONTAINMENT.get() {
        cmd.cgroup(tree.leaf(place)?);
    }
    Ok(())
}

/// A child was started (the fallback remembers its process group; with
/// cgroups nothing is needed).
pub fn started(place: Place, pid: Option<u32>) {
    if let (Some(Containment::Groups(groups)), Some(pid)) = (CONTAINMENT.get(), pid) {
        groups.started(place, pid);
    }
}

/// The user's last session ended: its handlers and everything they started
/// end now (the worker keeps its idle time).
pub fn sessions_ended(uid: u32) {
    match CONTAINMENT.get() {
        Some(Containment::Cgroups(tree)) => tree.kill_handlers(uid),
        Some(Containment::Groups(groups)) => groups.kill_handlers(uid),
        None => {}
    }
}

/// The user's worker was reaped: everything left of the user ends, and its
/// cgroups go (now, or at a later [`tidy`] if they are still emptying).
pub fn user_done(user: &str, uid: u32) {
    match CONTAINMENT.get() {
        Some(Containment::Cgroups(tree)) => tree.user_done(user, uid),
        Some(Containment::Groups(groups)) => groups.user_done(uid),
        None => {}
    }
}

/// Removes the cgroups of users that were still emptying, unless the user
/// has a worker again (`has_worker`). Runs on the monitor's loop, as do the
/// worker starts' beginnings, so a removal never races a start.
pub fn tidy(has_worker: impl Fn(&str) -> bool) {
    if let Some(Containment::Cgroups(tree)) = CONTAINMENT.get() {
        tree.tidy(has_worker);
    }
}

/// Before the front starts: in the fallback, processes left by the front
/// user (an srpcd that was killed) are killed, so none can lie in wait for
/// this start (audit H1). With cgroups they died with the stale subtree.
pub async fn before_front(front: &Account) {
    if let Some(Containment::Groups(_)) = CONTAINMENT.get() {
        pgroups::kill_all_of(front).await;
    }
}

/// srpcd stops: every process it started, and everything those started,
/// ends; the cgroup subtree goes.
pub async fn stop(front: &Account) {
    match CONTAINMENT.get() {
        Some(Containment::Cgroups(tree)) => tree.stop().await,
        Some(Containment::Groups(groups)) => {
            groups.kill_all();
            pgroups::kill_all_of(front).await;
        }
        None => {}
    }
}

/// srpcd's subtree.
struct Tree {
    /// srpcd's own cgroup (where the monitor goes back to at stop).
    own: OwnedFd,
    /// `<own>/srpcd-<pid>`.
    base: OwnedFd,
    base_name: String,
    /// Its path, for the launcher.
    base_path: PathBuf,
    /// The monitor moved itself into `<base>/monitor`.
    moved: bool,
    /// Users whose cgroups were still emptying when their worker was reaped.
    leftover: Mutex<HashMap<String, u32>>,
}

impl Tree {
    fn create() -> Result<Tree, String> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
        let (mount, mount_root) =
            cgroup2_mount(&mountinfo).ok_or("no cgroup2 filesystem is mounted")?;
        let ours = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("/proc/self/cgroup: {e}"))?;
        let own_rel = unified_path(&ours).ok_or("/proc/self/cgroup has no cgroup v2 entry")?;
        // A cgroup namespace or a bind mount shows only part of the
        // hierarchy: the own cgroup must lie below the mount's root.
        let below = own_rel
            .strip_prefix(mount_root.as_str())
            .filter(|rest| mount_root == "/" || rest.is_empty() || rest.starts_with('/'))
            .ok_or_else(|| format!("own cgroup {own_rel} is outside the cgroup2 mount"))?;
        let mut own = open_path(&mount).map_err(|e| format!("{}: {e}", mount.display()))?;
        let mut own_path = mount.clone();
        for part in below.split('/').filter(|p| !p.is_empty()) {
            own = open_dir(own.as_fd(), part).map_err(|e| format!("cgroup {own_rel}: {e}"))?;
            own_path.push(part);
        }
        let root = below.split('/').all(str::is_empty);
        if !root && !delegated(own.as_fd()) {
            return Err(format!(
                "own cgroup {own_rel} is not delegated to srpcd (Delegate=yes)"
            ));
        }
        remove_stale(own.as_fd(), &own_rel);
        let pid = std::process::id();
        let base_name = format!("srpcd-{pid}");
        let base = make_dir(own.as_fd(), &base_name)
            .map_err(|e| format!("creating {}/{base_name}: {e}", own_path.display()))?;
        let base_path = own_path.join(&base_name);
        let mut tree = Tree {
            own,
            base,
            base_name,
            base_path,
            moved: false,
            leftover: Mutex::new(HashMap::new()),
        };
        if !root {
            // Out of the delegated cgroup itself, into a leaf of ours.
            let moved = make_dir(tree.base.as_fd(), "monitor")
                .and_then(|m| write_file(m.as_fd(), "cgroup.procs", b"0\n"));
            match moved {
                Ok(()) => tree.moved = true,
                Err(e) => tracing::warn!(
                    "moving srpcd into {}/monitor: {e}",
                    tree.base_path.display()
                ),
            }
        }
        make_dir(tree.base.as_fd(), "front").map_err(|e| format!("front cgroup: {e}"))?;
        Ok(tree)
    }

    /// The cgroup directory a child joins, made if need be.
    fn leaf(&self, place: Place) -> io::Result<PathBuf> {
        let (user, leaf) = match place {
            Place::Front => return Ok(self.base_path.join("front")),
            Place::Worker(uid) => (uid, "worker"),
            Place::Handler(uid) => (uid, "handlers"),
        };
        let name = user_dir(user);
        let dir = make_dir(self.base.as_fd(), &name)?;
        make_dir(dir.as_fd(), leaf)?;
        Ok(self.base_path.join(name).join(leaf))
    }

    fn kill_handlers(&self, uid: u32) {
        let handlers = open_dir(self.base.as_fd(), &user_dir(uid))
            .and_then(|u| open_dir(u.as_fd(), "handlers"));
        match handlers {
            Ok(dir) => {
                if let Err(e) = kill(dir.as_fd()) {
                    tracing::error!(uid, "ending the user's handlers: {e}");
                }
            }
            Err(e) if e.raw_os_error() == Some(libc_enoent()) => {}
            Err(e) => tracing::error!(uid, "ending the user's handlers: {e}"),
        }
    }

    fn user_done(&self, user: &str, uid: u32) {
        let name = user_dir(uid);
        match open_dir(self.base.as_fd(), &name) {
            Ok(dir) => {
                if let Err(e) = kill(dir.as_fd()) {
                    tracing::error!(user, "ending the user's processes: {e}");
                }
            }
            Err(e) if e.raw_os_error() == Some(libc_enoent()) => return,
            Err(e) => return tracing::error!(user, "ending the user's processes: {e}"),
        }
        // The killed usually need a moment to exit: removed at a later tick.
        if remove(self.base.as_fd(), &name, 0).is_err() {
            lock(&self.leftover).insert(user.to_owned(), uid);
        }
    }

    fn tidy(&self, has_worker: impl Fn(&str) -> bool) {
        lock(&self.leftover).retain(|user, uid| {
            if has_worker(user) {
                return false;
            }
            remove(self.base.as_fd(), &user_dir(*uid), 0).is_err()
        });
    }

    async fn stop(&self) {
        let back = self.moved && write_file(self.own.as_fd(), "cgroup.procs", b"0\n").is_ok();
        let killed = if !self.moved || back {
            kill(self.base.as_fd())
        } else {
            // Still inside: end everything but the monitor's own leaf.
            children(self.base.as_fd()).and_then(|names| {
                for name in names.iter().filter(|n| *n != "monitor") {
                    kill(open_dir(self.base.as_fd(), name)?.as_fd())?;
                }
                Ok(())
            })
        };
        if let Err(e) = killed {
            tracing::error!("ending srpcd's children: {e}");
        }
        // Still inside its leaf, the monitor's own does not count.
        let skip_monitor = self.moved && !back;
        let deadline = Instant::now() + DRAIN;
        loop {
            let busy = children(self.base.as_fd()).is_ok_and(|names| {
                names
                    .iter()
                    .filter(|n| !(skip_monitor && *n == "monitor"))
                    .any(|n| {
                        open_dir(self.base.as_fd(), n)
                            .and_then(|d| populated(d.as_fd()))
                            .unwrap_or(false)
                    })
            });
            if !busy || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let removed = if skip_monitor {
            children(self.base.as_fd()).and_then(|names| {
                for name in names.iter().filter(|n| *n != "monitor") {
                    remove(self.base.as_fd(), name, 0)?;
                }
                Ok(())
            })
        } else {
            remove(self.own.as_fd(), &self.base_name, 0)
        };
        if let Err(e) = removed {
            tracing::error!("removing {}: {e}", self.base_path.display());
        }
    }
}

fn user_dir(uid: u32) -> String {
    format!("user-{uid}")
}

fn libc_enoent() -> i32 {
    Errno::NOENT.raw_os_error()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The first cgroup2 mount: its mount point and the root of the hierarchy
/// it shows.
fn cgroup2_mount(mountinfo: &str) -> Option<(PathBuf, String)> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split(' ').next()? != "cgroup2" {
            return None;
        }
        let mut fields = left.split(' ');
        let root = unescape(fields.nth(3)?);
        let point = unescape(fields.next()?);
        let root = String::from_utf8(root).ok()?;
        Some((PathBuf::from(std::ffi::OsStr::from_bytes(&point)), root))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push(
                    d.iter()
                        .fold(0u8, |n, c| n.wrapping_mul(8).wrapping_add(c - b'0')),
                );
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The `0::<path>` line of `/proc/<pid>/cgroup`.
fn unified_path(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .filter(|p| p.starts_with('/') && !p.ends_with(" (deleted)"))
        .map(str::to_owned)
}

/// systemd marks a delegated cgroup with `trusted.delegate=1` (or
/// `user.delegate` for a user manager).
fn delegated(dir: BorrowedFd<'_>) -> bool {
    ["trusted.delegate", "user.delegate"].iter().any(|name| {
        let mut value = [0u8; 8];
        rustix::fs::fgetxattr(dir, *name, &mut value)
            .is_ok_and(|n| value.get(..n) == Some(b"1".as_slice()))
    })
}

/// Kills and removes `srpcd-<pid>` subtrees whose srpcd is gone.
fn remove_stale(own: BorrowedFd<'_>, own_rel: &str) {
    let Ok(names) = children(own) else {
        return;
    };
    let me = std::process::id();
    for name in names {
        let Some(pid) = name
            .strip_prefix("srpcd-")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me || alive_srpcd(pid, own_rel, &name) {
            continue;
        }
        tracing::info!(
            cgroup = name,
            "removing the cgroup of an srpcd that is gone"
        );
        let Ok(dir) = open_dir(own, &name) else {
            continue;
        };
        if let Err(e) = kill(dir.as_fd()) {
            tracing::warn!(cgroup = name, "killing its processes: {e}");
        }
        let deadline = Instant::now() + DRAIN;
        while populated(dir.as_fd()).unwrap_or(false) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Err(e) = remove(own, &name, 0) {
            tracing::warn!(cgroup = name, "removing it: {e}");
        }
    }
}

/// Process `pid` is an srpcd in this cgroup or in its subtree's monitor leaf
/// (so the subtree is not stale, only someone else's).
fn alive_srpcd(pid: u32, own_rel: &str, name: &str) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim_end() != "srpcd" {
        return false;
    }
    let Some(cg) = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .and_then(|t| unified_path(&t))
    else {
        return false;
    };
    let leaf = format!("{}/{name}/monitor", own_rel.trim_end_matches('/'));
    cg == own_rel || cg == leaf
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

fn io_err(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// One plain name: no `/`, not `.` or `..`.
fn plain(name: &str) -> io::Result<&str> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a plain name"),
        ));
    }
    Ok(name)
}

fn open_path(path: &Path) -> io::Result<OwnedFd> {
    rustix::fs::open(path, dir_flags(), Mode::empty()).map_err(io_err)
}

fn open_dir(parent: BorrowedFd<'_>, name: &str) -> io::Result<OwnedFd> {
    openat(parent, plain(name)?, dir_flags(), Mode::empty()).map_err(io_err)
}

fn make_dir(parent: BorrowedFd<'_>, name: &str) -> io::Result<OwnedFd> {
    match mkdirat(parent, plain(name)?, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => open_dir(parent, name),
        Err(e) => Err(io_err(e)),
    }
}

fn write_file(dir: BorrowedFd<'_>, name: &str, bytes: &[u8]) -> io::Result<()> {
    let fd = openat(
        dir,
        plain(name)?,
        OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err)?;
    std::fs::File::from(fd).write_all(bytes)
}

fn read_file(dir: BorrowedFd<'_>, name: &str) -> io::Result<String> {
    let fd = openat(
        dir,
        plain(name)?,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err)?;
    let mut text = String::new();
    std::fs::File::from(fd)
        .take(1 << 20)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// The child cgroups (subdirectories) of `dir`.
fn children(dir: BorrowedFd<'_>) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    let mut entries = Dir::read_from(dir).map_err(io_err)?;
    while let Some(entry) = entries.read() {
        let entry = entry.map_err(io_err)?;
        if entry.file_type() != FileType::Directory {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "." && name != ".." {
            names.push(name);
        }
    }
    Ok(names)
}

/// `cgroup.events` says a process lives in the subtree.
fn populated(dir: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(read_file(dir, "cgroup.events")?
        .lines()
        .any(|l| l == "populated 1"))
}

/// Kills every process in the subtree `dir`.
fn kill(dir: BorrowedFd<'_>) -> io::Result<()> {
    match write_file(dir, "cgroup.kill", b"1\n") {
        Err(e) if e.raw_os_error() == Some(libc_enoent()) => {}
        other => return other,
    }
    // Before 5.14: kill the members until none is left (a forking process
    // may add one between a read and its kill, hence the rounds).
    for _ in 0..KILL_ROUNDS {
        if kill_members(dir, 0)? == 0 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(io::Error::other("processes kept appearing in the cgroup"))
}

/// SIGKILLs the pids listed in the subtree; returns how many there were.
fn kill_members(dir: BorrowedFd<'_>, depth: usize) -> io::Result<usize> {
    let mut found = 0;
    if depth < MAX_DEPTH {
        for name in children(dir)? {
            found += kill_members(open_dir(dir, &name)?.as_fd(), depth + 1)?;
        }
    }
    for pid in read_file(dir, "cgroup.procs")?.lines() {
        let pid = pid
            .trim()
            .parse::<i32>()
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            found += 1;
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
    Ok(found)
}

/// Removes the cgroup `name` below `parent` and its children (rmdir: fails
/// with EBUSY while a process lives in one).
fn remove(parent: BorrowedFd<'_>, name: &str, depth: usize) -> io::Result<()> {
    if depth >= MAX_DEPTH {
        return Err(io::Error::other("cgroup tree too deep"));
    }
    match open_dir(parent, name) {
        Ok(dir) => {
            for child in children(dir.as_fd())? {
                remove(dir.as_fd(), &child, depth + 1)?;
            }
        }
        Err(e) if e.raw_os_error() == Some(libc_enoent()) => return Ok(()),
        Err(e) => return Err(e),
    }
    match unlinkat(parent, plain(name)?, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(io_err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup2_mount_is_found_in_mountinfo() {
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                      32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(hybrid),
            Some((PathBuf::from("/sys/fs/cgroup/unified"), "/".to_owned()))
        );
        let fedora =
            "35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            cgroup2_mount(fedora),
            Some((PathBuf::from("/sys/fs/cgroup"), "/".to_owned()))
        );
        let escaped = "1 2 0:3 /sub /a\\040b rw - cgroup2 none rw\n";
        assert_eq!(
            cgroup2_mount(escaped),
            Some((PathBuf::from("/a b"), "/sub".to_owned()))
        );
        assert_eq!(cgroup2_mount(hybrid.lines().next().unwrap_or("")), None);
    }

    #[test]
    fn the_unified_line_of_proc_cgroup_is_used() {
        assert_eq!(
            unified_path("9:name=systemd:/\n4:memory:/x\n0::/\n"),
            Some("/".to_owned())
        );
        assert_eq!(
            unified_path("0::/system.slice/srpcd.service\n"),
            Some("/system.slice/srpcd.service".to_owned())
        );
        assert_eq!(unified_path("1:cpu:/\n"), None);
        assert_eq!(unified_path("0::/gone (deleted)\n"), None);
    }

    #[test]
    fn names_are_plain() {
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(plain(bad).is_err(), "{bad:?}");
        }
        assert!(plain("user-1000").is_ok());
    }
}
