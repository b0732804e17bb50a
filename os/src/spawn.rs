//! Starting a program with a listening socket on fd 3, systemd style, with
//! `LISTEN_PID` set to the child's own pid.
//!
//! `LISTEN_PID` cannot be known before `fork`, and after `fork` in a threaded parent
//! only async-signal-safe calls are allowed — `setenv` is not (it allocates). So the
//! child's environment is prepared in full before the fork, with a fixed-size slot
//! for `LISTEN_PID`; in the child a `pre_exec` hook writes the digits of `getpid()`
//! into that slot and calls `execve` itself with the prepared arrays. Everything the
//! hook touches was allocated before the fork. std's `Command` still does the fork,
//! the standard-stream setup and the reporting of an exec failure to the parent.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use crate::listen::LISTEN_FDS_START;
use crate::Error;

/// Most arguments (program name included) and environment entries a spawned
/// program gets; the child builds its `argv`/`envp` arrays on its stack.
const MAX_ARGS: usize = 256;
const MAX_ENV: usize = 256;

const PID_PREFIX: &[u8] = b"LISTEN_PID=";
/// `LISTEN_PID=` plus up to 20 digits plus NUL.
const PID_ENTRY_LEN: usize = 32;

const OP: &str = "spawn with LISTEN_FDS";

/// The ids a child takes before it runs the program: supplementary groups
/// (replacing the parent's, also when empty), then gid, then uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

/// A program to start with one listening socket as fd 3 and `LISTEN_FDS=1`,
/// `LISTEN_FDNAMES=<name>`, `LISTEN_PID=<its pid>` — what [`crate::listen_fds`]
/// (and systemd's `sd_listen_fds`) in the child expects.
///
/// The child's arguments, environment and credentials are set here and nowhere
/// else: the environment is exactly the variables given with [`env`](Self::env)
/// plus the three `LISTEN_*` ones (nothing is inherited). [`into_command`]
/// (Self::into_command) returns a `std::process::Command` on which standard
/// streams, the working directory and the process group may still be set; changes
/// to its program, arguments, environment, uid/gid or further `pre_exec` hooks have
/// no effect, since the hook installed here calls `execve` itself.
///
/// ```no_run
/// use std::os::unix::net::UnixListener;
/// use srpc_os::{Credentials, ListenFdCommand};
///
/// let listener = UnixListener::bind("/run/srpc/users/alice/echo")?;
/// let mut handler = ListenFdCommand::new("/srv/srpc/echo", listener.into(), "/echo");
/// handler
///     .env("PATH", "/usr/bin:/bin")
///     .credentials(Credentials { uid: 1000, gid: 1000, groups: vec![1000] });
/// let mut command = handler.into_command()?;
/// let child = command.spawn()?;
/// drop(command); // closes this process's copy of the listener
/// # drop(child);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ListenFdCommand {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    listener: OwnedFd,
    name: String,
    credentials: Option<Credentials>,
}

impl ListenFdCommand {
    /// `program` is run by path (no `PATH` search, so it must contain a `/`);
    /// `name` goes in `LISTEN_FDNAMES` (no `:` allowed).
    pub fn new(program: impl AsRef<Path>, listener: OwnedFd, name: &str) -> ListenFdCommand {
        ListenFdCommand {
            program: program.as_ref().as_os_str().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            listener,
            name: name.to_owned(),
            credentials: None,
        }
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut ListenFdCommand {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds an environment variable (not one of the `LISTEN_*` ones).
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Runs the program with these ids instead of this process's.
    pub fn credentials(&mut self, credentials: Credentials) -> &mut ListenFdCommand {
        self.credentials = Some(credentials);
        self
    }

    /// Checks everything and prepares the exec, returning the command to spawn.
    /// The command owns the listener until it is dropped.
    pub fn into_command(self) -> Result<Command, Error> {
        let invalid = |detail: String| Error::invalid(OP, io::ErrorKind::InvalidInput, detail);
        if !self.program.as_bytes().contains(&b'/') {
            return Err(invalid(format!(
                "program {:?} must be a path (contain a `/`)",
                self.program
            )));
        }
        if self.name.contains(':') || self.name.contains('\0') {
            return Err(invalid(format!(
                "fd name {:?} may not contain `:` or NUL",
                self.name
            )));
        }
        // argv holds the program too; envp the three LISTEN_* variables too.
        if self.args.len() + 1 > MAX_ARGS || self.env.len() + 3 > MAX_ENV {
            return Err(invalid(format!(
                "too many arguments or environment variables (at most {MAX_ARGS} and {MAX_ENV})"
            )));
        }
        let cstring = |bytes: Vec<u8>| {
            CString::new(bytes).map_err(|_| invalid("NUL byte in program, argument or env".into()))
        };
        let mut env = Vec::with_capacity(self.env.len() + 2);
        for (key, value) in &self.env {
            let key = key.as_bytes();
            if key.is_empty() || key.contains(&b'=') || key.starts_with(b"LISTEN_") {
                return Err(invalid(format!(
                    "environment variable name {:?} is not allowed here",
                    String::from_utf8_lossy(key)
                )));
            }
            env.push(cstring([key, b"=", value.as_bytes()].concat())?);
        }
        env.push(cstring(b"LISTEN_FDS=1".to_vec())?);
        env.push(cstring(
            [b"LISTEN_FDNAMES=".as_slice(), self.name.as_bytes()].concat(),
        )?);
        let mut argv = Vec::with_capacity(self.args.len() + 1);
        argv.push(cstring(self.program.as_bytes().to_vec())?);
        for arg in &self.args {
            argv.push(cstring(arg.as_bytes().to_vec())?);
        }
        let mut image = ExecImage {
            program: cstring(self.program.as_bytes().to_vec())?,
            argv,
            env,
            pid_entry: [0; PID_ENTRY_LEN],
            listener: at_or_above_fd_3(&self.listener)?,
            credentials: self.credentials,
        };
        for (slot, byte) in image.pid_entry.iter_mut().zip(PID_PREFIX) {
            *slot = *byte;
        }
        drop(self.listener);

        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .env_clear()
            .envs(self.env)
            .env("LISTEN_FDS", "1")
            .env("LISTEN_FDNAMES", &self.name);
        // SAFETY: the hook runs in the forked child, where only async-signal-safe
        // operations are allowed. `ExecImage::exec` calls only setgroups,
        // setresgid, setresuid, getres[ug]id, prctl, dup2, fcntl, close_range,
        // getpid and execve; it does not allocate, lock or
        // panic (no indexing, only iterators over memory prepared before the fork),
        // and touches only memory the closure owns.
        unsafe {
            command.pre_exec(move || Err(image.exec()));
        }
        Ok(command)
    }
}

/// A close-on-exec duplicate of `fd` numbered 3 or more. Holding the listener at or
/// above 3 keeps std's own stdio setup (fds 0–2) from clobbering it in the child,
/// and when fd 3 is free it takes 3 itself, so std's exec-error pipe cannot land
/// there and be overwritten by the `dup2` to 3.
fn at_or_above_fd_3(fd: &OwnedFd) -> Result<OwnedFd, Error> {
    // SAFETY: F_DUPFD_CLOEXEC creates a new fd referring to the same open file; it
    // has no memory effects.
    let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, LISTEN_FDS_START) };
    if dup < 0 {
        return Err(Error::last_os("fcntl(F_DUPFD_CLOEXEC)"));
    }
    // SAFETY: `dup` is a new fd just returned by the kernel; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

/// Everything the child needs, prepared before the fork.
struct ExecImage {
    program: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    /// `LISTEN_PID=` followed by room for the digits, filled in by the child.
    pid_entry: [u8; PID_ENTRY_LEN],
    listener: OwnedFd,
    credentials: Option<Credentials>,
}

impl ExecImage {
    /// Runs in the forked child; returns only if something failed.
    fn exec(&mut self) -> io::Error {
        // The one place a spawned process's identity is applied: groups, gid,
        // uid, each checked after the change (SELinux's exec context joins here).
        if let Some(c) = &self.credentials {
            // SAFETY: `groups` is a live slice of c.groups.len() gids.
            if unsafe { libc::setgroups(c.groups.len(), c.groups.as_ptr()) } != 0 {
                return io::Error::last_os_error();
            }
            // SAFETY: setresgid takes plain integers.
            if unsafe { libc::setresgid(c.gid, c.gid, c.gid) } != 0 {
                return io::Error::last_os_error();
            }
            // SAFETY: setresuid takes plain integers.
            if unsafe { libc::setresuid(c.uid, c.uid, c.uid) } != 0 {
                return io::Error::last_os_error();
            }
            let (mut r, mut e, mut s) = (0, 0, 0);
            // SAFETY: the three pointers are to live locals.
            let uids_ok = unsafe { libc::getresuid(&mut r, &mut e, &mut s) } == 0
                && r == c.uid
                && e == c.uid
                && s == c.uid;
            // SAFETY: the three pointers are to live locals.
            let gids_ok = unsafe { libc::getresgid(&mut r, &mut e, &mut s) } == 0
                && r == c.gid
                && e == c.gid
                && s == c.gid;
            if !uids_ok || !gids_ok {
                return io::Error::from_raw_os_error(libc::EPERM);
            }
        }
        // No exec after this may gain privileges (setuid bits, file caps).
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return io::Error::last_os_error();
        }
        let fd = self.listener.as_raw_fd();
        // SAFETY: dup2 onto fd 3 in the child: fd 3 is not owned by anything that
        // runs after this (only execve follows), so replacing it is sound.
        if fd != LISTEN_FDS_START && unsafe { libc::dup2(fd, LISTEN_FDS_START) } < 0 {
            return io::Error::last_os_error();
        }
        // SAFETY: clears close-on-exec on fd 3 (set when the listener itself is 3).
        if unsafe { libc::fcntl(LISTEN_FDS_START, libc::F_SETFD, 0) } < 0 {
            return io::Error::last_os_error();
        }
        // Every other fd closes at exec, whoever opened it without O_CLOEXEC (a
        // PAM module, say). Marking rather than closing keeps std's exec-error
        // pipe open until the exec itself.
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
            return io::Error::last_os_error();
        }
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        write_decimal(&mut self.pid_entry, PID_PREFIX.len(), pid.unsigned_abs());

        let mut argv = [std::ptr::null::<libc::c_char>(); MAX_ARGS + 1];
        for (arg, slot) in self.argv.iter().zip(argv.iter_mut()) {
            *slot = arg.as_ptr();
        }
        let mut envp = [std::ptr::null::<libc::c_char>(); MAX_ENV + 1];
        let mut slots = envp.iter_mut();
        for (var, slot) in self.env.iter().zip(slots.by_ref()) {
            *slot = var.as_ptr();
        }
        if let Some(slot) = slots.next() {
            *slot = self.pid_entry.as_ptr().cast();
        }
        // SAFETY: every pointer in argv/envp points at a NUL-terminated string owned
        // by `self` (pid_entry has its NUL written by write_decimal), both arrays end
        // in a null pointer (they have one more slot than into_command allows
        // entries), and all of it stays alive across the call, which returns only on
        // failure.
        unsafe { libc::execve(self.program.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        io::Error::last_os_error()
    }
}

/// Writes `n` in decimal into `out` from `at`, followed by a NUL. Panic-free and
/// allocation-free (it runs between fork and exec).
fn write_decimal(out: &mut [u8], at: usize, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut len = 0;
    for d in &mut digits {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
        len += 1;
        if n == 0 {
            break;
        }
    }
    let tail = digits.iter().take(len).rev().chain(std::iter::once(&0));
    for (slot, byte) in out.iter_mut().skip(at).zip(tail) {
        *slot = *byte;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn decimal_digits_are_written_with_a_nul() {
        let mut buf = [b'x'; 16];
        write_decimal(&mut buf, 2, 40_213);
        assert_eq!(&buf[..8], b"xx40213\0");
        write_decimal(&mut buf, 0, 0);
        assert_eq!(&buf[..2], b"0\0");
        write_decimal(&mut buf, 0, u32::MAX);
        assert_eq!(&buf[..11], b"4294967295\0");
    }

    fn listener(tag: &str) -> (UnixListener, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("srpc-os-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        (UnixListener::bind(&path).unwrap(), path)
    }

    #[test]
    fn the_child_gets_the_socket_on_fd_3_its_own_pid_and_the_given_ids() {
        let (listener, path) = listener("spawn");
        let inode = std::fs::read_link(format!("/proc/self/fd/{}", listener.as_raw_fd())).unwrap();
        let script = r#"echo "$LISTEN_PID $$ $LISTEN_FDS $LISTEN_FDNAMES $EXTRA"
            readlink /proc/$$/fd/3; id -u; id -g; id -G; env | grep -c . "#;
        let mut spawn = ListenFdCommand::new("/bin/sh", listener.into(), "/echo");
        spawn
            .arg("-c")
            .arg(script)
            .env("EXTRA", "x y")
            .env("PATH", "/usr/bin:/bin")
            .credentials(Credentials {
                uid: 65534,
                gid: 65534,
                groups: vec![65534],
            });
        let mut command = spawn.into_command().unwrap();
        let child = command
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(command);
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        std::fs::remove_file(path).unwrap();
        assert!(out.status.success());
        let out = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], format!("{pid} {pid} 1 /echo x y"));
        assert_eq!(lines[1], inode.to_str().unwrap());
        assert_eq!(&lines[2..5], ["65534", "65534", "65534"]);
        // EXTRA, PATH, the three LISTEN_* and the shell's own PWD: nothing inherited.
        assert_eq!(lines[5], "6");
    }

    #[test]
    fn the_child_cannot_gain_privileges_or_inherit_stray_fds() {
        let (listener, path) = listener("hardening");
        // An fd opened without O_CLOEXEC, as a careless library might.
        // SAFETY: a plain open of a NUL-terminated literal path.
        let stray = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
        assert!(stray > 3);
        let script = format!(
            "grep NoNewPrivs /proc/$$/status; test -e /proc/$$/fd/{stray} && echo leaked; \
             cat /proc/$$/status | grep -E '^(Uid|Gid):'"
        );
        let mut spawn = ListenFdCommand::new("/bin/sh", listener.into(), "/x");
        spawn.arg("-c").arg(script).credentials(Credentials {
            uid: 65534,
            gid: 65534,
            groups: vec![],
        });
        let mut command = spawn.into_command().unwrap();
        let out = command
            .stdout(std::process::Stdio::piped())
            .output()
            .unwrap();
        drop(command);
        // SAFETY: closes the fd this test opened.
        unsafe { libc::close(stray) };
        std::fs::remove_file(path).unwrap();
        let out = String::from_utf8(out.stdout).unwrap();
        assert!(out.contains("NoNewPrivs:\t1"), "{out}");
        assert!(!out.contains("leaked"), "{out}");
        assert!(out.contains("Uid:\t65534\t65534\t65534\t65534"), "{out}");
        assert!(out.contains("Gid:\t65534\t65534\t65534\t65534"), "{out}");
    }

    #[test]
    fn an_exec_failure_is_a_spawn_error() {
        let (listener, path) = listener("spawn-fail");
        let spawn = ListenFdCommand::new("/nonexistent/handler", listener.into(), "/x");
        let err = spawn.into_command().unwrap().spawn().unwrap_err();
        std::fs::remove_file(path).unwrap();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn bad_settings_are_refused_before_spawning() {
        let cases: [(&str, &str, Option<&str>); 4] = [
            ("sh", "/x", None),
            ("/bin/sh", "a:b", None),
            ("/bin/sh", "/x", Some("LISTEN_PID")),
            ("/bin/sh", "/x", Some("A=B")),
        ];
        for (program, name, var) in cases {
            let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
            let mut spawn = ListenFdCommand::new(program, a.into(), name);
            if let Some(var) = var {
                spawn.env(var, "1");
            }
            let err = spawn.into_command().unwrap_err();
            assert_eq!(
                err.kind(),
                io::ErrorKind::InvalidInput,
                "{program} {name} {var:?}"
            );
        }
    }
}
