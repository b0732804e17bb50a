//! Using an fd that the process was given by number (`--password-fd 3` after a
//! shell's `3<file`).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::Error;

/// Fds below this are never handed out by [`dup_fd`], so the copy can never land on
/// stdin, stdout or stderr.
const FIRST_FREE_FD: RawFd = 3;

/// A new close-on-exec fd for the open file behind fd number `fd`
/// (`fcntl(F_DUPFD_CLOEXEC)`): reading it reads the same pipe, file offset or
/// terminal as `fd` does.
///
/// It duplicates rather than adopts: whoever owns `fd` (the process's stdin, or
/// nobody when it was inherited at exec) keeps it, so no fd is ever closed twice
/// and any number is safe to pass. A number that is not open is an error
/// (`EBADF`).
///
/// ```no_run
/// use std::io::Read;
///
/// // The caller ran us with `3<secret.txt`.
/// let mut secret = String::new();
/// std::fs::File::from(srpc_os::dup_fd(3)?).read_to_string(&mut secret)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn dup_fd(fd: RawFd) -> Result<OwnedFd, Error> {
    if fd < 0 {
        return Err(Error::invalid(
            "fcntl(F_DUPFD_CLOEXEC)",
            io::ErrorKind::InvalidInput,
            format!("{fd} is not an fd number"),
        ));
    }
    // SAFETY: F_DUPFD_CLOEXEC reads no memory; on an fd that is not open it fails
    // with EBADF and has no other effect. It neither closes nor changes `fd`.
    let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, FIRST_FREE_FD) };
    if copy < 0 {
        return Err(Error::from_io(
            "fcntl(F_DUPFD_CLOEXEC)",
            io::Error::new(
                io::Error::last_os_error().kind(),
                format!("fd {fd} is not open"),
            ),
        ));
    }
    // SAFETY: `copy` was just created by the kernel for this call and nothing else
    // knows its number, so this is its one and only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_copy_reads_the_same_stream_and_leaves_the_original_open() {
        let (mut ours, mut theirs) = UnixStream::pair().unwrap();
        theirs.write_all(b"pw\n").unwrap();
        drop(theirs);
        let copy = dup_fd(ours.as_raw_fd()).unwrap();
        assert!(copy.as_raw_fd() >= FIRST_FREE_FD);
        assert_ne!(copy.as_raw_fd(), ours.as_raw_fd());
        let mut got = Vec::new();
        UnixStream::from(copy).read_to_end(&mut got).unwrap();
        assert_eq!(got, b"pw\n");
        // The original is still ours and still open (at end of input now).
        assert_eq!(ours.read(&mut [0u8; 4]).unwrap(), 0);
    }

    #[test]
    fn closed_and_negative_numbers_are_errors() {
        // A number no process has open (over any fd limit), so no other test
        // thread can open it meanwhile.
        let err = dup_fd(RawFd::MAX).unwrap_err();
        assert!(err
            .to_string()
            .contains(&format!("fd {} is not open", RawFd::MAX)));
        assert_eq!(dup_fd(-1).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
