//! Receiving listening sockets the way systemd socket activation hands them over
//! (`sd_listen_fds` semantics): `LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`, fds
//! from 3 up.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::Error;

/// The first fd passed (`SD_LISTEN_FDS_START`).
pub(crate) const LISTEN_FDS_START: RawFd = 3;

/// More fds than this in `LISTEN_FDS` is refused as nonsense.
const MAX_LISTEN_FDS: usize = 256;

const OP: &str = "LISTEN_FDS";
const VARS: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

/// Takes the listening sockets this process was started with, each with its name
/// from `LISTEN_FDNAMES` (`None` when no names were given).
///
/// Follows `sd_listen_fds(unset_environment = true)`: when `LISTEN_PID` is absent or
/// is not this process's pid the answer is empty (the variables were meant for
/// another process, e.g. a parent shell); otherwise `LISTEN_FDS` fds starting at 3
/// are checked to be open — if any is not, nothing is adopted and it is an error —
/// then made close-on-exec and returned as owned fds. In every case the three
/// variables are removed from the environment, so a second call returns nothing and
/// children do not inherit them.
///
/// Call it **once, first thing in `main`, before any thread starts** (before
/// building a tokio runtime): removing environment variables races with any other
/// thread reading the environment, and the fds it adopts must not have been claimed
/// by anything else in the meantime.
///
/// ```no_run
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let fds = srpc_os::listen_fds()?;
///     for (fd, name) in fds {
///         println!("got a socket named {name:?}");
///         let listener = std::os::unix::net::UnixListener::from(fd);
///         # drop(listener);
///     }
///     Ok(())
/// }
/// ```
pub fn listen_fds() -> Result<Vec<(OwnedFd, Option<String>)>, Error> {
    let env = ListenEnv::from_process()?;
    for var in VARS {
        // Single-threaded by this function's contract (see above).
        std::env::remove_var(var);
    }
    let planned = env.plan(std::process::id())?;
    adopt(planned)
}

/// The three variables as found.
#[derive(Debug, Default)]
struct ListenEnv {
    pid: Option<String>,
    fds: Option<String>,
    names: Option<String>,
}

impl ListenEnv {
    fn from_process() -> Result<ListenEnv, Error> {
        let read = |name: &'static str| match std::env::var(name) {
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(bad(format!("{name} is not UTF-8"))),
        };
        Ok(ListenEnv {
            pid: read("LISTEN_PID")?,
            fds: read("LISTEN_FDS")?,
            names: read("LISTEN_FDNAMES")?,
        })
    }

    /// Which fds are ours and their names, without touching any fd.
    fn plan(&self, my_pid: u32) -> Result<Vec<(RawFd, Option<String>)>, Error> {
        let Some(pid) = &self.pid else {
            return Ok(Vec::new());
        };
        let pid: u32 = pid
            .parse()
            .map_err(|_| bad(format!("LISTEN_PID `{pid}` is not a pid")))?;
        if pid != my_pid {
            return Ok(Vec::new());
        }
        let Some(count) = &self.fds else {
            return Ok(Vec::new());
        };
        let count: usize = count
            .parse()
            .map_err(|_| bad(format!("LISTEN_FDS `{count}` is not a count")))?;
        if count > MAX_LISTEN_FDS {
            return Err(bad(format!(
                "LISTEN_FDS {count} is over the limit of {MAX_LISTEN_FDS}"
            )));
        }
        let names: Vec<Option<String>> = match self.names.as_deref() {
            None | Some("") => vec![None; count],
            Some(list) => list
                .split(':')
                .map(|n| (!n.is_empty()).then(|| n.to_owned()))
                .collect(),
        };
        if names.len() != count {
            return Err(bad(format!(
                "LISTEN_FDNAMES has {} names for {count} fds",
                names.len()
            )));
        }
        Ok((LISTEN_FDS_START..)
            .zip(names)
            .take(count)
            .collect::<Vec<_>>())
    }
}

/// Takes ownership of the planned fds: all or none.
fn adopt(planned: Vec<(RawFd, Option<String>)>) -> Result<Vec<(OwnedFd, Option<String>)>, Error> {
    for (fd, _) in &planned {
        // SAFETY: F_GETFD only reads the fd's flags; on a closed fd it fails with
        // EBADF and has no other effect.
        if unsafe { libc::fcntl(*fd, libc::F_GETFD) } < 0 {
            return Err(Error::from_io(
                "fcntl(F_GETFD)",
                io::Error::new(
                    io::Error::last_os_error().kind(),
                    format!("fd {fd} named by LISTEN_FDS is not open"),
                ),
            ));
        }
    }
    let mut adopted = Vec::with_capacity(planned.len());
    for (fd, name) in planned {
        // SAFETY: `fd` is open (checked above) and was handed to this process by the
        // one that started it; LISTEN_PID matched and the variables are now removed,
        // so this is the only place that takes ownership of it, exactly once.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: F_SETFD on an fd we now own only changes its close-on-exec flag.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
            return Err(Error::last_os("fcntl(F_SETFD)"));
        }
        adopted.push((owned, name));
    }
    Ok(adopted)
}

fn bad(detail: String) -> Error {
    Error::invalid(OP, io::ErrorKind::InvalidData, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, IntoRawFd};
    use std::os::unix::net::UnixListener;
    use std::process::Command;

    fn env(pid: Option<&str>, fds: Option<&str>, names: Option<&str>) -> ListenEnv {
        ListenEnv {
            pid: pid.map(Into::into),
            fds: fds.map(Into::into),
            names: names.map(Into::into),
        }
    }

    #[test]
    fn a_wrong_or_missing_pid_means_the_fds_are_not_ours() {
        assert!(env(Some("41"), Some("1"), None)
            .plan(42)
            .unwrap()
            .is_empty());
        assert!(env(None, Some("1"), None).plan(42).unwrap().is_empty());
        assert!(env(Some("42"), None, None).plan(42).unwrap().is_empty());
    }

    #[test]
    fn fds_start_at_three_with_their_names() {
        let got = env(Some("42"), Some("2"), Some("/echo:")).plan(42).unwrap();
        assert_eq!(got, vec![(3, Some("/echo".to_owned())), (4, None)]);
        let got = env(Some("42"), Some("2"), None).plan(42).unwrap();
        assert_eq!(got, vec![(3, None), (4, None)]);
    }

    #[test]
    fn nonsense_is_refused() {
        for (e, needle) in [
            (env(Some("x"), Some("1"), None), "not a pid"),
            (env(Some("42"), Some("-1"), None), "not a count"),
            (env(Some("42"), Some("100000"), None), "over the limit"),
            (env(Some("42"), Some("1"), Some("a:b")), "2 names for 1 fds"),
        ] {
            let err = e.plan(42).unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn a_closed_fd_is_refused_and_nothing_is_adopted() {
        let open = std::fs::File::open("/dev/null").unwrap().into_raw_fd();
        let closed: RawFd = 1_000_000;
        let err = adopt(vec![(open, None), (closed, None)]).unwrap_err();
        assert!(err.to_string().contains("fd 1000000"), "{err}");
        // Not adopted, so still open: close it ourselves.
        // SAFETY: `open` came from into_raw_fd above and nothing else owns it.
        let still_open = unsafe { OwnedFd::from_raw_fd(open) };
        // SAFETY: F_GETFD reads flags only.
        assert!(unsafe { libc::fcntl(still_open.as_raw_fd(), libc::F_GETFD) } >= 0);
    }

    const CHILD_ENV: &str = "SRPC_OS_TEST_LISTEN_CHILD";

    /// Not a test by itself: the body the tests below run in a child process (this
    /// test binary re-executed), where changing the environment and fd 3 is safe.
    #[test]
    #[ignore = "run by the listen tests in a child process"]
    fn child_entry() {
        if std::env::var_os(CHILD_ENV).is_none() {
            return;
        }
        let report = match listen_fds() {
            Ok(fds) => {
                let names: Vec<_> = fds.iter().map(|(_, n)| n.clone()).collect();
                let listeners: Vec<_> = fds
                    .iter()
                    .map(|(fd, _)| {
                        use std::os::fd::AsFd;
                        crate::is_unix_stream_listener(fd.as_fd()).unwrap()
                    })
                    .collect();
                // SAFETY: F_GETFD reads flags only.
                let cloexec: Vec<_> = fds
                    .iter()
                    .map(|(fd, _)| unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) })
                    .collect();
                let left: Vec<_> = VARS
                    .iter()
                    .filter(|v| std::env::var_os(v).is_some())
                    .collect();
                let again = listen_fds().unwrap().len();
                format!(
                    "fds={} names={names:?} listeners={listeners:?} cloexec={cloexec:?} \
                     env_left={left:?} again={again}",
                    fds.len()
                )
            }
            Err(e) => format!("error={e}"),
        };
        println!("CHILD-REPORT {report}");
    }

    /// Runs only `child_entry` in the re-executed test binary.
    const CHILD_ARGS: [&str; 6] = [
        "--ignored",
        "--exact",
        "listen::tests::child_entry",
        "--nocapture",
        "--test-threads",
        "1",
    ];

    fn run_child(cmd: &mut Command) -> String {
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // libtest prints the test's name on the same line, before the report.
        stdout
            .split("CHILD-REPORT ")
            .nth(1)
            .and_then(|rest| rest.lines().next())
            .unwrap_or_else(|| panic!("no report in {stdout}"))
            .to_owned()
    }

    fn test_listener(tag: &str) -> (UnixListener, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("srpc-os-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        (UnixListener::bind(&path).unwrap(), path)
    }

    #[test]
    fn a_child_started_with_a_listen_fd_takes_it_once_and_clears_the_environment() {
        let (listener, path) = test_listener("listen-child");
        let exe = std::env::current_exe().unwrap();
        let mut spawn = crate::ListenFdCommand::new(&exe, listener.into(), "/echo");
        spawn.env(CHILD_ENV, "1");
        for arg in CHILD_ARGS {
            spawn.arg(arg);
        }
        // The launcher example `cargo test` builds beside this test binary.
        let launcher = exe
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("examples/srpc-launch");
        let mut launch = spawn.into_command(&launcher).unwrap();
        let report = run_child(&mut launch.command);
        std::fs::remove_file(path).unwrap();
        assert_eq!(
            report,
            r#"fds=1 names=[Some("/echo")] listeners=[true] cloexec=[1] env_left=[] again=0"#
        );
    }

    #[test]
    fn a_child_given_someone_elses_listen_pid_takes_nothing() {
        let exe = std::env::current_exe().unwrap();
        let report = run_child(
            Command::new(exe)
                .args(CHILD_ARGS)
                .env(CHILD_ENV, "1")
                .env("LISTEN_PID", "1")
                .env("LISTEN_FDS", "1")
                .env("LISTEN_FDNAMES", "/echo"),
        );
        assert_eq!(
            report,
            "fds=0 names=[] listeners=[] cloexec=[] env_left=[] again=0"
        );
    }
}
