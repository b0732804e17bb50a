//! What the kernel says about a connected or listening socket: the peer's
//! credentials and security label, and the socket's own kind.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::Error;

/// The peer of a Unix socket connection as the kernel recorded it when the
/// connection was made (`SO_PEERCRED`): the connecting process's pid and effective
/// uid and gid at `connect()` time. Note that for a `socketpair` this is the creator
/// of the pair, not a process that later inherited one end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    /// Process id (0 if the peer is in a pid namespace this one cannot see).
    pub pid: i32,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

/// Largest security label accepted from `SO_PEERSEC`; SELinux contexts are far
/// shorter, this only bounds the buffer growth.
const MAX_LABEL: usize = 64 * 1024;

/// The credentials of the process at the other end of the Unix socket `fd`.
///
/// ```no_run
/// use std::os::fd::AsFd;
/// use std::os::unix::net::UnixStream;
///
/// let conn = UnixStream::connect("/run/example.sock")?;
/// let peer = srpc_os::peer_credentials(conn.as_fd())?;
/// println!("peer uid {} pid {}", peer.uid, peer.pid);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn peer_credentials(fd: BorrowedFd<'_>) -> Result<PeerCred, Error> {
    const OP: &str = "getsockopt(SO_PEERCRED)";
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = socklen_of::<libc::ucred>();
    // SAFETY: the kernel writes at most `len` bytes into `cred`, a ucred we own for
    // the duration of the call, and stores the written length in `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::from_mut(&mut cred).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(Error::last_os(OP));
    }
    if len as usize != size_of::<libc::ucred>() {
        return Err(Error::invalid(
            OP,
            io::ErrorKind::InvalidData,
            format!("kernel returned {len} bytes, expected a ucred"),
        ));
    }
    Ok(PeerCred {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// The security label (SELinux context) of the peer of the Unix socket `fd`
/// (`SO_PEERSEC`), or `None` when the kernel has no security module that labels
/// sockets (`ENOPROTOOPT`, `EINVAL`, `EOPNOTSUPP`) or the label is empty.
///
/// ```no_run
/// use std::os::fd::AsFd;
/// use std::os::unix::net::UnixStream;
///
/// let conn = UnixStream::connect("/run/example.sock")?;
/// match srpc_os::peer_security_context(conn.as_fd())? {
///     Some(context) => println!("peer runs in {context}"),
///     None => println!("no SELinux on this kernel"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn peer_security_context(fd: BorrowedFd<'_>) -> Result<Option<String>, Error> {
    const OP: &str = "getsockopt(SO_PEERSEC)";
    let mut buf = vec![0u8; 256];
    loop {
        let mut len = libc::socklen_t::try_from(buf.len()).unwrap_or(libc::socklen_t::MAX);
        // SAFETY: the kernel writes at most `len` bytes (the buffer's length) into
        // `buf` and stores the label's length in `len`.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERSEC,
                buf.as_mut_ptr().cast(),
                &raw mut len,
            )
        };
        if rc == 0 {
            buf.truncate((len as usize).min(buf.len()));
            break;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENOPROTOOPT | libc::EINVAL | libc::EOPNOTSUPP) => return Ok(None),
            // The kernel reports the size it needs in `len`.
            Some(libc::ERANGE) if (len as usize) > buf.len() && (len as usize) <= MAX_LABEL => {
                buf.resize(len as usize, 0);
            }
            _ => return Err(Error::from_io(OP, err)),
        }
    }
    while buf.last() == Some(&0) {
        buf.pop();
    }
    if buf.is_empty() {
        return Ok(None);
    }
    String::from_utf8(buf).map(Some).map_err(|e| {
        Error::invalid(
            OP,
            io::ErrorKind::InvalidData,
            format!(
                "label is not UTF-8 (at byte {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// True if `fd` is a listening Unix stream socket — what a handler must be handed
/// on fd 3. Any other fd (a regular file, a connected socket, a TCP listener) is
/// `false`.
///
/// ```
/// use std::os::fd::AsFd;
/// use std::os::unix::net::UnixStream;
///
/// let (a, _b) = UnixStream::pair()?;
/// assert!(!srpc_os::is_unix_stream_listener(a.as_fd())?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn is_unix_stream_listener(fd: BorrowedFd<'_>) -> Result<bool, Error> {
    let domain = match int_option(fd, libc::SO_DOMAIN, "getsockopt(SO_DOMAIN)") {
        Ok(domain) => domain,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => return Ok(false),
        Err(e) => return Err(e),
    };
    let kind = int_option(fd, libc::SO_TYPE, "getsockopt(SO_TYPE)")?;
    let listening = int_option(fd, libc::SO_ACCEPTCONN, "getsockopt(SO_ACCEPTCONN)")?;
    Ok(domain == libc::AF_UNIX && kind == libc::SOCK_STREAM && listening != 0)
}

fn socklen_of<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

fn int_option(fd: BorrowedFd<'_>, option: libc::c_int, op: &'static str) -> Result<i32, Error> {
    let mut value: libc::c_int = 0;
    let mut len = socklen_of::<libc::c_int>();
    // SAFETY: the kernel writes at most `len` bytes (one c_int) into `value`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            std::ptr::from_mut(&mut value).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(Error::last_os(op));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::{UnixListener, UnixStream};

    fn temp_socket_path(tag: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("srpc-os-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn peer_credentials_on_a_listener_connection_are_this_process() {
        let path = temp_socket_path("peercred");
        let listener = UnixListener::bind(&path).unwrap();
        let client = UnixStream::connect(&path).unwrap();
        let (server, _) = listener.accept().unwrap();
        std::fs::remove_file(&path).unwrap();
        let me = std::process::id();
        for end in [server.as_fd(), client.as_fd()] {
            let peer = peer_credentials(end).unwrap();
            assert_eq!(peer.pid.unsigned_abs(), me);
            assert_eq!(peer.uid, crate::effective_uid());
            assert_eq!(peer.gid, crate::effective_gid());
        }
    }

    #[test]
    fn peer_credentials_of_a_socketpair_are_its_creator() {
        let (a, _b) = UnixStream::pair().unwrap();
        let peer = peer_credentials(a.as_fd()).unwrap();
        assert_eq!(peer.pid.unsigned_abs(), std::process::id());
    }

    #[test]
    fn peer_credentials_of_a_non_socket_is_an_error() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let err = peer_credentials(file.as_fd()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTSOCK));
        assert_eq!(err.operation(), "getsockopt(SO_PEERCRED)");
    }

    #[test]
    fn peer_security_context_is_none_without_selinux() {
        // This machine's kernel has no security module that labels sockets; with
        // SELinux the answer is the peer's context, checked in vm-tests.
        if std::path::Path::new("/sys/fs/selinux/enforce").exists() {
            return;
        }
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(peer_security_context(a.as_fd()).unwrap(), None);
    }

    #[test]
    fn listener_check_tells_listeners_from_other_fds() {
        let path = temp_socket_path("islistener");
        let listener = UnixListener::bind(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(is_unix_stream_listener(listener.as_fd()).unwrap());
        let (a, _b) = UnixStream::pair().unwrap();
        assert!(!is_unix_stream_listener(a.as_fd()).unwrap());
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(!is_unix_stream_listener(file.as_fd()).unwrap());
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(!is_unix_stream_listener(tcp.as_fd()).unwrap());
    }
}
