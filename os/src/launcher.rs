//! `srpc-launch`: the root-owned program the monitor's fork execs first. It is a
//! fresh single-threaded root process, so — unlike the monitor's fork — it may
//! allocate, read files and take its time, and the user cannot signal it while
//! it still is root. It reads its [`Spec`] from a pipe, joins the cgroup, sets
//! the resource limits, moves the listener to fd 3, sets the SELinux exec
//! context (if any), drops to the user's ids (each change checked), sets
//! `PR_SET_NO_NEW_PRIVS` and `LISTEN_PID` (exec keeps the pid) and execs the
//! program. Any failure is written to the status pipe
//! (close-on-exec, so a successful exec closes it with nothing written) and the
//! launcher exits 127.
//!
//! argv: `srpc-launch --srpc-launch <listener fd> <status fd> <spec fd>`; the
//! environment is empty.

use std::ffi::{CString, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use crate::launch_spec::{lossy, Spec, MAX_SPEC};
use crate::listen::LISTEN_FDS_START;

/// The first argument that marks a launcher invocation (so a test binary can
/// double as the launcher).
pub const LAUNCH_MARKER: &str = "--srpc-launch";

/// Runs the launcher with this process's arguments; never returns.
pub fn launcher_main() -> ! {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let fds: Option<Vec<RawFd>> = match args.as_slice() {
        [marker, rest @ ..] if marker.as_bytes() == LAUNCH_MARKER.as_bytes() && rest.len() == 3 => {
            rest.iter()
                .map(|a| std::str::from_utf8(a.as_bytes()).ok()?.parse().ok())
                .collect()
        }
        _ => None,
    };
    let Some(&[listener, status, spec]) = fds.as_deref() else {
        let _ = writeln!(
            io::stderr(),
            "srpc-launch: started by srpcd only ({LAUNCH_MARKER} <listener fd> <status fd> <spec fd>)"
        );
        std::process::exit(2);
    };
    let error = match launch(listener, status, spec) {
        Ok(never) => match never {},
        Err((status, what, e)) => (status, what, e),
    };
    report(error);
}

enum Never {}

type Failure = (Option<RawFd>, String, io::Error);

fn report((status, what, e): Failure) -> ! {
    let errno = e.raw_os_error().unwrap_or(0);
    let message = format!("{errno} {what}: {e}");
    match status {
        Some(fd) => {
            // SAFETY: `fd` is the status pipe's write end, which this process owns
            // (the monitor's fork passed it); nothing else uses it after this.
            let mut pipe = unsafe { std::fs::File::from_raw_fd(fd) };
            let _ = pipe.write_all(message.as_bytes());
        }
        None => {
            let _ = writeln!(io::stderr(), "srpc-launch: {message}");
        }
    }
    std::process::exit(127);
}

fn launch(listener: RawFd, status: RawFd, spec_fd: RawFd) -> Result<Never, Failure> {
    fn fail(s: Option<RawFd>, what: &str) -> impl FnOnce(io::Error) -> Failure {
        let what = what.to_owned();
        move |e| (s, what, e)
    }
    // The status fd must close at the final exec, and must not sit where the
    // listener goes.
    let status = move_above(status, LISTEN_FDS_START).map_err(fail(None, "status fd"))?;
    let st = Some(status);
    let mut bytes = Vec::new();
    // SAFETY: `spec_fd` is the spec pipe's read end, passed to this process
    // for it alone; the File owns and closes it.
    let spec_file = unsafe { std::fs::File::from_raw_fd(spec_fd) };
    spec_file
        .take(MAX_SPEC as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(fail(st, "reading the spec"))?;
    let spec =
        Spec::decode(&bytes).map_err(|m| (st, m, io::Error::from_raw_os_error(libc::EINVAL)))?;

    if let Some(cgroup) = &spec.cgroup {
        join_cgroup(cgroup).map_err(fail(st, &format!("joining cgroup {}", lossy(cgroup))))?;
    }
    for limit in &spec.rlimits {
        limit
            .apply()
            .map_err(fail(st, &format!("setrlimit({})", limit.resource.item())))?;
    }
    if listener != LISTEN_FDS_START {
        // SAFETY: dup2 onto fd 3: nothing in this process owns fd 3 (the status
        // fd was moved above it; std opened nothing there).
        if unsafe { libc::dup2(listener, LISTEN_FDS_START) } < 0 {
            return Err(fail(st, "dup2 of the listener")(io::Error::last_os_error()));
        }
        // SAFETY: closes the listener's old number, which this process owns.
        unsafe { libc::close(listener) };
    }
    // SAFETY: clears close-on-exec on fd 3 (an fcntl on an integer fd).
    if unsafe { libc::fcntl(LISTEN_FDS_START, libc::F_SETFD, 0) } < 0 {
        return Err(fail(st, "fcntl of the listener")(io::Error::last_os_error()));
    }
    // Everything else above 3 closes at exec, whoever opened it.
    // SAFETY: close_range with integer arguments only; it changes fd flags.
    if unsafe {
        libc::syscall(
            libc::SYS_close_range,
            LISTEN_FDS_START + 1,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    } != 0
    {
        return Err(fail(st, "close_range")(io::Error::last_os_error()));
    }
    // Set while still root (the policy lets srpcd_t, not the user, choose the
    // context); it holds across the id change and applies at the exec below,
    // which the kernel refuses if the policy does not allow the transition.
    if let Some(context) = &spec.exec_context {
        let text = lossy(context);
        crate::selinux::set_exec_context(&text)
            .map_err(fail(st, &format!("setting the exec context {text}")))?;
    }
    if let Some(c) = &spec.credentials {
        drop_ids(c.uid, c.gid, &c.groups).map_err(fail(st, "changing ids"))?;
    }
    // No exec after this may gain privileges (setuid bits, file caps).
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(fail(st, "PR_SET_NO_NEW_PRIVS")(io::Error::last_os_error()));
    }
    let pid_var = CString::new(format!("LISTEN_PID={}", std::process::id()))
        .map_err(|e| fail(st, "LISTEN_PID")(io::Error::other(e)))?;
    let mut envp: Vec<*const libc::c_char> = spec.env.iter().map(|v| v.as_ptr()).collect();
    envp.push(pid_var.as_ptr());
    envp.push(std::ptr::null());
    let mut argv: Vec<*const libc::c_char> = spec.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: argv and envp are null-terminated arrays of pointers to
    // NUL-terminated strings owned by `spec` and `pid_var`, alive across the
    // call, which returns only on failure.
    unsafe { libc::execve(spec.program.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    Err(fail(st, &format!("exec {}", lossy(&spec.program)))(
        io::Error::last_os_error(),
    ))
}

/// Moves `fd` to a close-on-exec number above `floor`.
fn move_above(fd: RawFd, floor: RawFd) -> io::Result<RawFd> {
    if fd > floor {
        // SAFETY: sets FD_CLOEXEC on an fd this process was given.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC makes a new fd for the same open file.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, floor + 1) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: closes the old number, which this process owns.
    unsafe { libc::close(fd) };
    Ok(new)
}

/// Writes this process's pid into `<dir>/cgroup.procs` (cgroup v2): it and
/// everything it starts then live, and are killed, with that cgroup.
fn join_cgroup(dir: &std::ffi::CStr) -> io::Result<()> {
    let procs =
        std::path::Path::new(std::ffi::OsStr::from_bytes(dir.to_bytes())).join("cgroup.procs");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags_nofollow()
        .open(procs)?;
    // "0" means the writing process itself.
    file.write_all(b"0\n")
}

trait NoFollow {
    fn custom_flags_nofollow(&mut self) -> &mut Self;
}

impl NoFollow for std::fs::OpenOptions {
    fn custom_flags_nofollow(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::custom_flags(self, libc::O_NOFOLLOW)
    }
}

/// groups, gid, uid — in that order, each checked after the change.
fn drop_ids(uid: u32, gid: u32, groups: &[u32]) -> io::Result<()> {
    // SAFETY: `groups` is a live slice of groups.len() gids.
    if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: setresgid takes plain integers.
    if unsafe { libc::setresgid(gid, gid, gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: setresuid takes plain integers.
    if unsafe { libc::setresuid(uid, uid, uid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: the three pointers are to live locals.
    let uids_ok = unsafe { libc::getresuid(&raw mut r, &raw mut e, &raw mut s) } == 0
        && [r, e, s] == [uid; 3];
    // SAFETY: the three pointers are to live locals.
    let gids_ok = unsafe { libc::getresgid(&raw mut r, &raw mut e, &raw mut s) } == 0
        && [r, e, s] == [gid; 3];
    let mut now = vec![0 as libc::gid_t; groups.len() + 1];
    // SAFETY: `now` has room for now.len() gids.
    let n = unsafe {
        libc::getgroups(
            i32::try_from(now.len()).unwrap_or(i32::MAX),
            now.as_mut_ptr(),
        )
    };
    let mut want = groups.to_vec();
    want.sort_unstable();
    want.dedup();
    let mut have: Vec<u32> = now
        .into_iter()
        .take(usize::try_from(n).unwrap_or(0))
        .collect();
    have.sort_unstable();
    have.dedup();
    if !uids_ok || !gids_ok || n < 0 || have != want {
        return Err(io::Error::from_raw_os_error(libc::EPERM));
    }
    Ok(())
}
