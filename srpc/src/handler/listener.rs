//! Where calls come from: a socket handed over at start (per-user handlers), one
//! bound by the program, or a service socket srpcd passes connections over.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::ServeError;

/// The endpoint name used when the starter gave the socket no name (what
/// `sd_listen_fds_with_names` reports in that case).
const UNNAMED: &str = "unknown";

/// The environment variable in which srpcd tells a per-user handler how long to
/// stay idle before it exits: a whole number of seconds, at least 1. Read by
/// [`Listener::from_env`].
pub const IDLE_TIMEOUT_ENV: &str = "SRPC_IDLE_TIMEOUT_SECS";

/// A source of call connections for [`serve`](super::serve) and
/// [`serve_until`](super::serve_until), and how long serving may stay idle.
#[derive(Debug)]
pub struct Listener {
    pub(crate) socket: UnixListener,
    pub(crate) mode: Mode,
    pub(crate) idle_timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
pub(crate) enum Mode {
    /// Every accepted connection is a call connection for this endpoint.
    Direct(Arc<str>),
    /// Every accepted connection is srpcd passing call connections.
    FdPassing,
}

impl Listener {
    /// The socket srpcd started this per-user handler with: `LISTEN_FDS=1`,
    /// `LISTEN_PID` equal to this process, fd 3, and the endpoint path in
    /// `LISTEN_FDNAMES` (`"unknown"` if absent).
    ///
    /// If [`SRPC_IDLE_TIMEOUT_SECS`](IDLE_TIMEOUT_ENV) is set, serving this listener
    /// stops once it has been idle that long (see
    /// [`with_idle_timeout`](Self::with_idle_timeout)): srpcd starts the handler
    /// again on the next call. A value that is not a whole number of seconds from 1
    /// to 4294967295 is an error ([`ServeError::BadIdleTimeout`]).
    ///
    /// Call it first thing in `main`, **before any thread starts** (before the
    /// tokio runtime is built): it takes the fd and removes the `LISTEN_*`
    /// variables from the environment (see [`srpc_os::listen_fds`]). It fails if
    /// there is no socket, more than one, or one that is not a listening Unix stream
    /// socket.
    ///
    /// ```no_run
    /// use srpc::handler::{serve, Call, Listener};
    ///
    /// fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let listener = Listener::from_env()?;
    ///     let runtime = tokio::runtime::Runtime::new()?;
    ///     runtime.block_on(serve(listener, |call: Call| async move { Ok(call.data) }))?;
    ///     Ok(())
    /// }
    /// ```
    pub fn from_env() -> Result<Listener, ServeError> {
        let idle_timeout = idle_timeout_from(std::env::var_os(IDLE_TIMEOUT_ENV))?;
        let mut fds = srpc_os::listen_fds()?;
        if fds.len() > 1 {
            return Err(ServeError::TooManySockets(fds.len()));
        }
        let (fd, name) = fds.pop().ok_or(ServeError::NoSocket)?;
        if !srpc_os::is_unix_stream_listener(fd.as_fd())? {
            return Err(ServeError::NotAListener);
        }
        let endpoint = name.unwrap_or_else(|| UNNAMED.to_owned());
        let listener = Listener::from_std(UnixListener::from(fd), endpoint);
        Ok(match idle_timeout {
            Some(timeout) => listener.with_idle_timeout(timeout),
            None => listener,
        })
    }

    /// A listening socket the program has itself, serving calls to `endpoint` on
    /// every connection accepted (tests, manual runs, services that take direct
    /// connections).
    ///
    /// ```no_run
    /// use std::os::unix::net::UnixListener;
    /// use srpc::handler::Listener;
    ///
    /// let socket = UnixListener::bind("/tmp/echo.sock")?;
    /// let listener = Listener::from_std(socket, "/echo");
    /// # drop(listener);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn from_std(socket: UnixListener, endpoint: impl Into<String>) -> Listener {
        Listener {
            socket,
            mode: Mode::Direct(Arc::from(endpoint.into())),
            idle_timeout: None,
        }
    }

    /// Service mode on a socket the program has: each connection accepted is from
    /// srpcd, which sends over it call connections (one fd per message, with the
    /// endpoint path as the message's bytes). Each received connection is served
    /// like a direct one; the caller is the peer of *that* connection.
    ///
    /// Only connections from root (srpcd's monitor) or from this process's own uid
    /// are accepted as passers; others are logged and closed. The identity of a
    /// caller never depends on who passed its connection, only the endpoint name
    /// does.
    ///
    /// ```no_run
    /// use std::os::unix::net::UnixListener;
    /// use srpc::handler::Listener;
    ///
    /// let socket = UnixListener::bind("/run/srpc/services/clock.sock")?;
    /// let listener = Listener::fd_passing(socket);
    /// # drop(listener);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn fd_passing(socket: UnixListener) -> Listener {
        Listener {
            socket,
            mode: Mode::FdPassing,
            idle_timeout: None,
        }
    }

    /// [`fd_passing`](Self::fd_passing) on a socket bound at `path` with mode 0600
    /// (only root and this service's user can connect). A socket file left at
    /// `path` by an earlier run is replaced; any other file there is an error.
    ///
    /// ```no_run
    /// use srpc::handler::{serve, Call, Listener};
    ///
    /// # async fn run() -> Result<(), srpc::handler::ServeError> {
    /// let listener = Listener::bind_fd_passing("/run/srpc/services/clock.sock")?;
    /// serve(listener, |call: Call| async move {
    ///     Ok(format!("{} asked for the time", call.caller.uid).into())
    /// })
    /// .await
    /// # }
    /// ```
    pub fn bind_fd_passing(path: impl AsRef<Path>) -> Result<Listener, ServeError> {
        let path = path.as_ref();
        let io = |what: &'static str| move |source: io::Error| ServeError::Io { what, source };
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                std::fs::remove_file(path).map_err(io("remove the old service socket"))?;
            }
            Ok(_) => {
                return Err(ServeError::Io {
                    what: "bind the service socket",
                    source: io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} exists and is not a socket", path.display()),
                    ),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("inspect the service socket path")(e)),
        }
        let socket = UnixListener::bind(path).map_err(io("bind the service socket"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io("restrict the service socket"))?;
        Ok(Listener::fd_passing(socket))
    }

    /// Makes [`serve`](super::serve) and [`serve_until`](super::serve_until) return
    /// `Ok(())` once no connection has been open for `timeout`. The clock starts
    /// when serving starts and restarts whenever a connection opens or closes; a
    /// connection counts as open until the calls it carried are answered, so a call
    /// in flight keeps the handler alive. In service mode srpcd's fd-passing
    /// connections count too.
    ///
    /// A connection that arrives in the instant of stopping stays queued on the
    /// socket, which the starter still holds, for the next handler it starts (as
    /// with systemd socket activation).
    ///
    /// ```
    /// use std::os::unix::net::UnixListener;
    /// use std::time::Duration;
    /// use srpc::handler::Listener;
    ///
    /// let path = std::env::temp_dir().join(format!("doc-idle-{}", std::process::id()));
    /// let listener = Listener::from_std(UnixListener::bind(&path)?, "/echo")
    ///     .with_idle_timeout(Duration::from_secs(30));
    /// assert_eq!(listener.idle_timeout(), Some(Duration::from_secs(30)));
    /// # std::fs::remove_file(path)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[must_use]
    pub fn with_idle_timeout(self, timeout: Duration) -> Listener {
        Listener {
            idle_timeout: Some(timeout),
            ..self
        }
    }

    /// How long serving this listener may stay idle before it stops (`None`:
    /// until shut down).
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }
}

/// The idle timeout srpcd asked for, if any.
fn idle_timeout_from(value: Option<std::ffi::OsString>) -> Result<Option<Duration>, ServeError> {
    let Some(value) = value else {
        return Ok(None);
    };
    // u32 keeps every deadline far from `Instant` overflow.
    match value.to_str().map(str::parse::<u32>) {
        Some(Ok(secs)) if secs > 0 => Ok(Some(Duration::from_secs(secs.into()))),
        _ => Err(ServeError::BadIdleTimeout(
            value.to_string_lossy().into_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idle_timeout_is_a_positive_whole_number_of_seconds() {
        assert_eq!(idle_timeout_from(None).unwrap(), None);
        assert_eq!(
            idle_timeout_from(Some("1".into())).unwrap(),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            idle_timeout_from(Some("4294967295".into())).unwrap(),
            Some(Duration::from_secs(4_294_967_295))
        );
        for bad in ["", "0", "-1", "1.5", " 5", "5s", "4294967296", "ten"] {
            let err = idle_timeout_from(Some(bad.into())).unwrap_err();
            assert!(
                matches!(&err, ServeError::BadIdleTimeout(v) if v == bad),
                "{bad:?}"
            );
            assert!(err.to_string().contains(IDLE_TIMEOUT_ENV), "{err}");
        }
    }
}
