//! Starting a program with a listening socket on fd 3, systemd style, with
//! `LISTEN_PID` set to the child's own pid, as another user — through the
//! launcher (`srpc-launch`, [`crate::launcher_main`]).
//!
//! The monitor is threaded, so its fork may run only async-signal-safe code; and
//! once a fork has switched to the user's uid the user may SIGSTOP it, which would
//! leave std's `spawn()` waiting for the exec forever (audit M1). So the fork
//! changes nothing about identity: it starts its own session (no controlling
//! tty), clears close-on-exec on the three fds the launcher needs and execs the
//! launcher — still root, so `spawn()` returns at once. The launcher, a fresh
//! single-threaded root process, applies the cgroup, the limits and the ids and
//! execs the program. Its verdict comes back on a status pipe: nothing written
//! and end-of-file means the program was exec'd; anything else is the error
//! ([`LaunchStatus`]). The caller waits for it off its event loop, with a
//! deadline: a launcher that has dropped its ids can be stopped by the user, so
//! a missing verdict is answered by killing the child (root can).

use std::ffi::{CString, OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::launch_spec::{Spec, MAX_SPEC};
use crate::launcher::LAUNCH_MARKER;
use crate::rlimit::Rlimit;
use crate::Error;

/// Most arguments (program name included) and environment entries a spawned
/// program gets.
const MAX_ARGS: usize = 256;
const MAX_ENV: usize = 256;

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
/// The child's arguments, environment, credentials, limits and cgroup are set
/// here and nowhere else: the environment is exactly the variables given with
/// [`env`](Self::env) plus the three `LISTEN_*` ones (nothing is inherited).
/// [`into_command`](Self::into_command) returns a [`Launch`]: a
/// `std::process::Command` (for the launcher) on which standard streams and the
/// working directory may still be set, and the [`LaunchStatus`] to read once it
/// is spawned. Changes to the command's program, arguments, environment,
/// uid/gid or further `pre_exec` hooks are not supported.
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
/// let mut launch = handler.into_command("/usr/libexec/srpc/srpc-launch".as_ref())?;
/// let child = launch.command.spawn()?;
/// drop(launch.command); // closes this process's copies of the fds
/// launch.status.wait()?; // the program runs (blocking; srpcd waits async)
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
    rlimits: Vec<Rlimit>,
    cgroup: Option<PathBuf>,
    exec_context: Option<String>,
}

/// A prepared spawn: the launcher's command and the pipe its verdict comes on.
#[derive(Debug)]
pub struct Launch {
    /// Spawn this, then drop it (it holds this process's copies of the
    /// listener and of the status pipe's write end, which must close for the
    /// status to end).
    pub command: Command,
    /// The launcher's verdict.
    pub status: LaunchStatus,
}

/// The read end of the launcher's close-on-exec status pipe.
#[derive(Debug)]
pub struct LaunchStatus(OwnedFd);

impl LaunchStatus {
    /// The pipe, to read asynchronously (then [`decode`](Self::decode)).
    pub fn into_fd(self) -> OwnedFd {
        self.0
    }

    /// Blocks until the verdict: `Ok` once the program was exec'd.
    pub fn wait(self) -> io::Result<()> {
        let mut bytes = Vec::new();
        std::fs::File::from(self.0)
            .take(4096)
            .read_to_end(&mut bytes)?;
        LaunchStatus::decode(&bytes)
    }

    /// What the status pipe said, read to its end: nothing is success;
    /// otherwise `<errno> <what failed>: <error>`, returned with the errno's kind.
    pub fn decode(bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(bytes);
        let (errno, message) = text.split_once(' ').unwrap_or(("0", &text));
        let kind = match errno.parse::<i32>() {
            Ok(n) if n != 0 => io::Error::from_raw_os_error(n).kind(),
            _ => io::ErrorKind::Other,
        };
        Err(io::Error::new(kind, format!("launcher: {message}")))
    }
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
            rlimits: Vec::new(),
            cgroup: None,
            exec_context: None,
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

    /// Sets this resource limit (as root, before the ids change).
    pub fn rlimit(&mut self, limit: Rlimit) -> &mut ListenFdCommand {
        self.rlimits.push(limit);
        self
    }

    /// Joins this cgroup v2 directory (as root, before anything else).
    pub fn cgroup(&mut self, dir: impl AsRef<Path>) -> &mut ListenFdCommand {
        self.cgroup = Some(dir.as_ref().to_owned());
        self
    }

    /// Execs the program in this SELinux context (set by the launcher as its
    /// last step before the exec, in its own single thread).
    pub fn exec_context(&mut self, context: impl Into<String>) -> &mut ListenFdCommand {
        self.exec_context = Some(context.into());
        self
    }

    /// Checks everything and prepares the exec of `launcher`, returning the
    /// command to spawn and its status pipe.
    pub fn into_command(self, launcher: &Path) -> Result<Launch, Error> {
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
        if self.args.len() + 1 > MAX_ARGS || self.env.len() + 3 > MAX_ENV {
            return Err(invalid(format!(
                "too many arguments or environment variables (at most {MAX_ARGS} and {MAX_ENV})"
            )));
        }
        let cstring = |bytes: &[u8]| {
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
            env.push(cstring(&[key, b"=", value.as_bytes()].concat())?);
        }
        env.push(cstring(b"LISTEN_FDS=1")?);
        env.push(cstring(
            &[b"LISTEN_FDNAMES=".as_slice(), self.name.as_bytes()].concat(),
        )?);
        let mut argv = vec![cstring(self.program.as_bytes())?];
        for arg in &self.args {
            argv.push(cstring(arg.as_bytes())?);
        }
        let spec = Spec {
            program: cstring(self.program.as_bytes())?,
            argv,
            env,
            credentials: self.credentials,
            rlimits: self.rlimits,
            cgroup: self
                .cgroup
                .as_deref()
                .map(|p| cstring(p.as_os_str().as_bytes()))
                .transpose()?,
            exec_context: self
                .exec_context
                .as_deref()
                .map(|c| cstring(c.as_bytes()))
                .transpose()?,
        }
        .encode();
        if spec.len() > MAX_SPEC {
            return Err(invalid(format!(
                "arguments and environment too large ({} bytes, at most {MAX_SPEC})",
                spec.len()
            )));
        }

        let listener = above_stdio(&self.listener)?;
        drop(self.listener);
        let (status_read, status_write) = pipe()?;
        let (spec_read, spec_write) = pipe()?;
        let (status_write, spec_read) = (above_stdio(&status_write)?, above_stdio(&spec_read)?);
        // Fits the pipe's buffer (checked above), so this does not block; the
        // write end closes here, so the launcher reads to end-of-file.
        std::fs::File::from(spec_write)
            .write_all(&spec)
            .map_err(|e| Error::from_io("writing the launch spec", e))?;

        let fds = [listener, status_write, spec_read];
        let raw: [RawFd; 3] = [fds[0].as_raw_fd(), fds[1].as_raw_fd(), fds[2].as_raw_fd()];
        let mut command = Command::new(launcher);
        command
            .arg(LAUNCH_MARKER)
            .args(raw.map(|fd| fd.to_string()));
        command.env_clear();
        // SAFETY: the hook runs in the forked child, where only async-signal-safe
        // operations are allowed: setsid, close_range and fcntl on integers, no
        // allocation, no locks, no panics (no indexing: a fixed array iterated).
        // The fds it names stay open in the parent while the command lives: the
        // closure owns them.
        unsafe {
            command.pre_exec(move || {
                let _owned = &fds;
                prepare_child(&raw)
            });
        }
        Ok(Launch {
            command,
            status: LaunchStatus(status_read),
        })
    }
}

/// In the forked child: a session of its own, every fd above stdio
/// close-on-exec except the launcher's three.
fn prepare_child(keep: &[RawFd; 3]) -> io::Result<()> {
    // Its own session, so no controlling terminal: no child can reach the
    // terminal srpcd was started from (TIOCSTI into root's shell) or get its
    // signals. Fails only for a process-group leader, which a fork is not.
    // SAFETY: setsid has no memory effects.
    if unsafe { libc::setsid() } < 0 {
        return Err(io::Error::last_os_error());
    }
    // Marking rather than closing keeps std's exec-error pipe open until the
    // exec itself; whoever opened an fd without O_CLOEXEC (a PAM module), it
    // does not reach the launcher.
    // SAFETY: close_range with integer arguments only; it changes fd flags.
    if unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    for fd in keep {
        // SAFETY: clears close-on-exec on an fd the parent keeps open.
        if unsafe { libc::fcntl(*fd, libc::F_SETFD, 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the live local array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::last_os("pipe2"));
    }
    let [r, w] = fds;
    // SAFETY: both are new fds just returned by the kernel; nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(r), OwnedFd::from_raw_fd(w)) })
}

/// A close-on-exec duplicate of `fd` numbered 3 or more, so std's own stdio
/// setup in the child (fds 0–2) cannot clobber it.
fn above_stdio(fd: &OwnedFd) -> Result<OwnedFd, Error> {
    // SAFETY: F_DUPFD_CLOEXEC creates a new fd referring to the same open file; it
    // has no memory effects.
    let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        return Err(Error::last_os("fcntl(F_DUPFD_CLOEXEC)"));
    }
    // SAFETY: `dup` is a new fd just returned by the kernel; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rlimit::Resource;
    use std::os::unix::net::UnixListener;
    use std::process::Stdio;

    /// The launcher example `cargo test` builds beside this test binary.
    fn launcher() -> PathBuf {
        let exe = std::env::current_exe().unwrap();
        let path = exe
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("examples/srpc-launch");
        assert!(
            path.exists(),
            "{} is missing (cargo test builds it)",
            path.display()
        );
        path
    }

    fn listener(tag: &str) -> (UnixListener, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("srpc-os-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        (UnixListener::bind(&path).unwrap(), path)
    }

    fn nobody(groups: Vec<u32>) -> Credentials {
        Credentials {
            uid: 65534,
            gid: 65534,
            groups,
        }
    }

    /// Spawns, waits for the launcher's verdict, and collects stdout.
    fn run(spawn: ListenFdCommand) -> (u32, io::Result<()>, std::process::Output) {
        let mut launch = spawn.into_command(&launcher()).unwrap();
        let child = launch.command.stdout(Stdio::piped()).spawn().unwrap();
        drop(launch.command);
        let pid = child.id();
        let status = launch.status.wait();
        (pid, status, child.wait_with_output().unwrap())
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
            .credentials(nobody(vec![65534]));
        let (pid, status, out) = run(spawn);
        std::fs::remove_file(path).unwrap();
        status.unwrap();
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
    fn an_exec_context_the_kernel_does_not_take_fails_the_launch_before_exec() {
        // Without SELinux the kernel refuses the exec context; with SELinux, an
        // invalid context is refused the same way (vm-tests). Either way the
        // program must not run in whatever context it would have had.
        if std::path::Path::new("/sys/fs/selinux/enforce").exists() {
            return;
        }
        let (listener, path) = listener("context");
        let mut spawn = ListenFdCommand::new("/bin/sh", listener.into(), "/x");
        spawn
            .arg("-c")
            .arg("echo ran")
            .credentials(nobody(vec![]))
            .exec_context("staff_u:staff_r:staff_srpc_worker_t:s0:c1,c2");
        let (_, status, out) = run(spawn);
        std::fs::remove_file(path).unwrap();
        let e = status.unwrap_err().to_string();
        assert!(
            e.contains("setting the exec context staff_u:staff_r:staff_srpc_worker_t:s0:c1,c2"),
            "{e}"
        );
        assert!(out.stdout.is_empty());
        assert!(!out.status.success());
    }

    #[test]
    fn the_child_cannot_gain_privileges_or_inherit_stray_fds() {
        let (listener, path) = listener("hardening");
        // An fd opened without O_CLOEXEC, as a careless library might, moved
        // above 3 (the listener's number in the child): the lowest free fd
        // depends on what the other tests have open at that moment.
        // SAFETY: a plain open of a NUL-terminated literal path.
        let opened = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
        assert!(opened >= 0);
        // SAFETY: F_DUPFD on an fd this test owns; the copy has no FD_CLOEXEC.
        let stray = unsafe { libc::fcntl(opened, libc::F_DUPFD, 10) };
        // SAFETY: closes the original, which this test owns and no longer uses.
        unsafe { libc::close(opened) };
        assert!(stray >= 10);
        let script = format!(
            "grep NoNewPrivs /proc/$$/status; test -e /proc/$$/fd/{stray} && echo leaked; \
             ls /proc/$$/fd | tr '\\n' ' '; echo; \
             cat /proc/$$/status | grep -E '^(Uid|Gid|Groups):'; \
             read -r pid comm state ppid pgrp sid tty rest < /proc/$$/stat; \
             echo \"session $(( sid == $$ )) tty $tty\""
        );
        let mut spawn = ListenFdCommand::new("/bin/sh", listener.into(), "/x");
        spawn.arg("-c").arg(script).credentials(nobody(vec![]));
        let (_, status, out) = run(spawn);
        // SAFETY: closes the fd this test opened.
        unsafe { libc::close(stray) };
        std::fs::remove_file(path).unwrap();
        status.unwrap();
        let out = String::from_utf8(out.stdout).unwrap();
        assert!(out.contains("NoNewPrivs:\t1"), "{out}");
        assert!(!out.contains("leaked"), "{out}");
        // Only stdio and the listener (the shell's `ls` adds its own dir fd).
        assert!(out.contains("\n0 1 2 3 "), "{out}");
        assert!(out.contains("Uid:\t65534\t65534\t65534\t65534"), "{out}");
        assert!(out.contains("Gid:\t65534\t65534\t65534\t65534"), "{out}");
        assert!(out.contains("Groups:\t \n"), "{out}");
        // Its own session, no controlling terminal.
        assert!(out.contains("session 1 tty 0"), "{out}");
    }

    #[test]
    fn limits_are_applied_before_the_ids_change() {
        let (listener, path) = listener("rlimit");
        let mut spawn = ListenFdCommand::new("/bin/sh", listener.into(), "/x");
        spawn
            .arg("-c")
            .arg("ulimit -Sn; ulimit -Hn; ulimit -Hc")
            .credentials(nobody(vec![]))
            .rlimit(Rlimit {
                resource: Resource::Nofile,
                soft: Some(77),
                hard: Some(88),
            })
            .rlimit(Rlimit {
                resource: Resource::Core,
                soft: Some(0),
                hard: Some(0),
            });
        let (_, status, out) = run(spawn);
        std::fs::remove_file(path).unwrap();
        status.unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "77\n88\n0\n");
    }

    #[test]
    fn an_exec_failure_is_a_spawn_error() {
        let (listener, path) = listener("spawn-fail");
        let spawn = ListenFdCommand::new("/nonexistent/handler", listener.into(), "/x");
        let (_, status, out) = run(spawn);
        std::fs::remove_file(path).unwrap();
        let err = status.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        assert!(err.to_string().contains("/nonexistent/handler"), "{err}");
        assert_eq!(out.status.code(), Some(127));
        // A launcher that is not there fails std's spawn itself.
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let spawn = ListenFdCommand::new("/bin/true", a.into(), "/x");
        let mut launch = spawn
            .into_command(Path::new("/nonexistent/launch"))
            .unwrap();
        assert_eq!(
            launch.command.spawn().unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn a_refused_id_change_is_a_spawn_error() {
        // An unprivileged launcher cannot take another user's ids: run it as
        // nobody (through a first launch) asking for uid 1.
        let (listener, path) = listener("ids-refused");
        let inner = launcher();
        let mut spawn = ListenFdCommand::new("/bin/true", listener.into(), "/x");
        spawn.credentials(Credentials {
            uid: 1,
            gid: 1,
            groups: vec![],
        });
        let mut launch = spawn.into_command(&inner).unwrap();
        let child = launch.command.uid(65534).gid(65534).spawn().unwrap();
        drop(launch.command);
        let err = launch.status.wait().unwrap_err();
        let _ = child.wait_with_output();
        std::fs::remove_file(path).unwrap();
        assert!(err.to_string().contains("launcher:"), "{err}");
    }

    #[test]
    fn status_messages_decode_to_the_errno_kind() {
        assert!(LaunchStatus::decode(b"").is_ok());
        let e = LaunchStatus::decode(b"13 exec /x: Permission denied").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("exec /x"));
        let e = LaunchStatus::decode(b"garbage").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Other);
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
            let err = spawn.into_command(&launcher()).unwrap_err();
            assert_eq!(
                err.kind(),
                io::ErrorKind::InvalidInput,
                "{program} {name} {var:?}"
            );
        }
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut spawn = ListenFdCommand::new("/bin/sh", a.into(), "/x");
        spawn.env("BIG", "x".repeat(MAX_SPEC));
        let err = spawn.into_command(&launcher()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
