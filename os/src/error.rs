//! The one error type of this crate: an `io::Error` plus the operation that failed.

use std::fmt;
use std::io;

/// A failed operating-system operation. `operation` names what was being done
/// (`"recvmsg"`, `"getsockopt(SO_PEERCRED)"`, `"LISTEN_FDS"`, …) so a log line says
/// which step failed without a backtrace.
#[derive(Debug)]
pub struct Error {
    operation: &'static str,
    source: io::Error,
}

impl Error {
    /// An error from the last system call (`errno`).
    pub(crate) fn last_os(operation: &'static str) -> Error {
        Error::from_io(operation, io::Error::last_os_error())
    }

    pub(crate) fn from_io(operation: &'static str, source: io::Error) -> Error {
        Error { operation, source }
    }

    /// An error that is not an `errno`: bad input or an unexpected answer.
    pub(crate) fn invalid(operation: &'static str, kind: io::ErrorKind, detail: String) -> Error {
        Error::from_io(operation, io::Error::new(kind, detail))
    }

    /// The operation that failed.
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// The kind of the underlying I/O error (`WouldBlock` on a non-blocking socket
    /// with nothing to read, `InvalidData` for a message this crate refuses, …).
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }

    /// The `errno`, when a system call failed.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.operation, self.source)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl From<Error> for io::Error {
    /// Keeps the kind, so `WouldBlock` still means "not ready" to tokio's `try_io`;
    /// `WouldBlock` is passed through bare since it is routine, not a fault.
    fn from(e: Error) -> io::Error {
        if e.source.kind() == io::ErrorKind::WouldBlock {
            return e.source;
        }
        io::Error::new(e.source.kind(), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_operation_and_io_conversion_keeps_the_kind() {
        let e = Error::from_io("recvmsg", io::Error::from_raw_os_error(libc::EBADF));
        assert!(e.to_string().starts_with("recvmsg: "));
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
        let io: io::Error = Error::from_io("x", io::ErrorKind::WouldBlock.into()).into();
        assert_eq!(io.kind(), io::ErrorKind::WouldBlock);
        let io: io::Error = Error::invalid("y", io::ErrorKind::InvalidData, "bad".into()).into();
        assert_eq!(io.kind(), io::ErrorKind::InvalidData);
        assert!(io.to_string().contains("y: bad"));
    }
}
