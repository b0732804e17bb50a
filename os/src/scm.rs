//! Passing one file descriptor with a few bytes of data over a Unix socket
//! (`SCM_RIGHTS`).
//!
//! Both functions work on blocking and non-blocking sockets; on a non-blocking one
//! "not ready" is an error of kind `WouldBlock`, so tokio callers wrap them in
//! `UnixStream::try_io`.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::Error;

/// Room for this many fds in the receive buffer: more than one so that a message
/// carrying two is reported as such (and both closed) rather than as truncated.
const RECV_FD_ROOM: usize = 4;

/// Control buffer, aligned for `cmsghdr` (u64 alignment covers `size_t`).
/// 64 bytes hold one header plus [`RECV_FD_ROOM`] fds on every Linux target.
type ControlBuf = [u64; 8];

/// Bytes of `fds` file descriptors in a control message.
fn fd_bytes(fds: usize) -> u32 {
    u32::try_from(fds * size_of::<RawFd>()).unwrap_or(u32::MAX)
}

fn cmsg_space(fds: usize) -> usize {
    // SAFETY: CMSG_SPACE is pure arithmetic on its argument.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes(fds)) };
    space as usize
}

/// Sends `data` (at least one byte) and a copy of `fd` as one message on `sock`.
///
/// The whole of `data` must go out in the one `sendmsg`, or the receiver would see
/// data without its fd; a short send is an error. Keep `data` small (a path).
/// `MSG_NOSIGNAL` is set: a closed peer is `EPIPE`, not a signal.
///
/// ```no_run
/// use std::os::fd::AsFd;
/// use std::os::unix::net::UnixStream;
///
/// let service = UnixStream::connect("/run/srpc/services/clock.sock")?;
/// let (ours, theirs) = UnixStream::pair()?;
/// srpc_os::send_fd(service.as_fd(), theirs.as_fd(), b"/clock")?;
/// drop(theirs); // the service now holds the only other end
/// # drop(ours);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>, data: &[u8]) -> Result<(), Error> {
    const OP: &str = "sendmsg(SCM_RIGHTS)";
    if data.is_empty() {
        // A stream socket drops ancillary data sent with no bytes.
        return Err(Error::invalid(
            OP,
            io::ErrorKind::InvalidInput,
            "an fd must travel with at least one byte of data".into(),
        ));
    }
    let mut control: ControlBuf = [0; 8];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain old data; all-zero is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = cmsg_space(1) as _;
    // SAFETY: msg_control points at `control`, which is aligned for cmsghdr and at
    // least msg_controllen (CMSG_SPACE of one fd, 24 bytes) long, so the first header
    // and its data lie inside it; CMSG_FIRSTHDR returns non-null since
    // msg_controllen >= sizeof(cmsghdr).
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes(1)) as _;
        let raw = fd.as_raw_fd().to_ne_bytes();
        std::ptr::copy_nonoverlapping(raw.as_ptr(), libc::CMSG_DATA(cmsg), raw.len());
    }
    let sent = loop {
        // SAFETY: `msg` points at `iov` (over `data`, borrowed for this call) and at
        // `control`, both alive for the duration of the call; the kernel only reads
        // them.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &raw const msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            break n.unsigned_abs();
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(Error::from_io(OP, err));
        }
    };
    if sent != data.len() {
        return Err(Error::invalid(
            OP,
            io::ErrorKind::WriteZero,
            format!("short send: {sent} of {} bytes", data.len()),
        ));
    }
    Ok(())
}

/// Receives one message sent by [`send_fd`]: the fd (close-on-exec) and the number
/// of data bytes written to the front of `buf`.
///
/// `Ok(None)` is end of stream. A message with data but no fd, with more than one
/// fd, or with truncated control data is refused (every fd it carried is closed),
/// as is one that fills `buf` completely (its data may have been cut short).
///
/// ```no_run
/// use std::os::fd::AsFd;
/// use std::os::unix::net::UnixStream;
///
/// # let sock: UnixStream = todo!();
/// let mut buf = [0u8; 4096];
/// if let Some((fd, n)) = srpc_os::recv_fd(sock.as_fd(), &mut buf)? {
///     let endpoint = std::str::from_utf8(&buf[..n])?;
///     let call = UnixStream::from(fd);
///     # drop((endpoint, call));
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn recv_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> Result<Option<(OwnedFd, usize)>, Error> {
    const OP: &str = "recvmsg(SCM_RIGHTS)";
    let mut control: ControlBuf = [0; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain old data; all-zero is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = cmsg_space(RECV_FD_ROOM).min(size_of::<ControlBuf>()) as _;
    let received = loop {
        // SAFETY: `msg` points at `iov` (over `buf`, exclusively borrowed) and at
        // `control`, both alive for the call and at least as long as the lengths
        // given; the kernel writes only within them.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &raw mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n.unsigned_abs();
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(Error::from_io(OP, err));
        }
    };
    // Take ownership of every fd first, so that each early return below closes them.
    let fds = adopt_rights(&msg);
    let refuse = |detail: String| Err(Error::invalid(OP, io::ErrorKind::InvalidData, detail));
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return refuse(format!(
            "control data truncated (more than {RECV_FD_ROOM} fds or other ancillary data)"
        ));
    }
    if received == buf.len() && !buf.is_empty() {
        return refuse(format!("message fills the {}-byte buffer", buf.len()));
    }
    let mut fds = fds.into_iter();
    match (fds.next(), fds.len()) {
        (None, _) if received == 0 => Ok(None),
        (None, _) => refuse(format!("{received} bytes arrived without an fd")),
        (Some(fd), 0) => Ok(Some((fd, received))),
        (Some(_), extra) => refuse(format!("message carried {} fds, expected 1", extra + 1)),
    }
}

/// The fds of every `SCM_RIGHTS` header in a received message, now owned.
fn adopt_rights(msg: &libc::msghdr) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    // SAFETY: `msg` was filled by recvmsg: msg_control/msg_controllen describe the
    // control bytes the kernel wrote, so CMSG_FIRSTHDR/CMSG_NXTHDR walk only headers
    // inside that buffer and return null at its end.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !cmsg.is_null() {
        // SAFETY: non-null headers from CMSG_FIRSTHDR/NXTHDR lie within the buffer.
        let hdr = unsafe { &*cmsg };
        if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN is pure arithmetic.
            let header_len = unsafe { libc::CMSG_LEN(0) } as usize;
            let count = (hdr.cmsg_len as usize).saturating_sub(header_len) / size_of::<RawFd>();
            for i in 0..count {
                let mut raw = [0u8; size_of::<RawFd>()];
                // SAFETY: the kernel wrote `count` fds after this header (cmsg_len
                // covers them and lies within the buffer); copied bytewise since
                // they may be unaligned.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        libc::CMSG_DATA(cmsg).add(i * raw.len()),
                        raw.as_mut_ptr(),
                        raw.len(),
                    );
                }
                let raw = RawFd::from_ne_bytes(raw);
                // SAFETY: SCM_RIGHTS installed `raw` as a new fd in this process just
                // now; nothing else knows it, so adopting it here is the only owner.
                fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
        // SAFETY: as above; `cmsg` is a valid header of `msg`.
        cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
    }
    fds
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn an_fd_and_its_data_arrive_together_and_the_fd_works() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        send_fd(a.as_fd(), theirs.as_fd(), b"/clock").unwrap();
        drop(theirs);
        let mut buf = [0u8; 64];
        let (fd, n) = recv_fd(b.as_fd(), &mut buf).unwrap().unwrap();
        assert_eq!(&buf[..n], b"/clock");
        let flags = fd_flags(&fd);
        assert_ne!(
            flags & libc::FD_CLOEXEC,
            0,
            "received fd must be close-on-exec"
        );
        let mut got = UnixStream::from(fd);
        got.write_all(b"hi").unwrap();
        let mut two = [0u8; 2];
        ours.read_exact(&mut two).unwrap();
        assert_eq!(&two, b"hi");
    }

    fn fd_flags(fd: &OwnedFd) -> i32 {
        // SAFETY: F_GETFD on an fd we own has no memory effects.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) }
    }

    #[test]
    fn end_of_stream_is_none() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(a);
        assert!(recv_fd(b.as_fd(), &mut [0u8; 16]).unwrap().is_none());
    }

    #[test]
    fn data_without_an_fd_is_refused() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(b"/x").unwrap();
        let err = recv_fd(b.as_fd(), &mut [0u8; 16]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("without an fd"), "{err}");
    }

    #[test]
    fn a_message_with_two_fds_is_refused_and_both_are_closed() {
        let (a, b) = UnixStream::pair().unwrap();
        let (x, x_peer) = UnixStream::pair().unwrap();
        let (y, y_peer) = UnixStream::pair().unwrap();
        send_raw_fds(&a, &[x.as_raw_fd(), y.as_raw_fd()], b"/two");
        drop((x, y));
        let err = recv_fd(b.as_fd(), &mut [0u8; 16]).unwrap_err();
        assert!(err.to_string().contains("carried 2 fds"), "{err}");
        // Both received copies were closed: the peers see end of stream.
        for mut peer in [x_peer, y_peer] {
            let mut one = [0u8; 1];
            assert_eq!(peer.read(&mut one).unwrap(), 0);
        }
    }

    #[test]
    fn too_many_fds_for_the_control_buffer_is_truncation() {
        let (a, b) = UnixStream::pair().unwrap();
        let pairs: Vec<_> = (0..RECV_FD_ROOM + 2)
            .map(|_| UnixStream::pair().unwrap())
            .collect();
        let raws: Vec<RawFd> = pairs.iter().map(|(s, _)| s.as_raw_fd()).collect();
        send_raw_fds(&a, &raws, b"/many");
        let err = recv_fd(b.as_fd(), &mut [0u8; 16]).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn a_message_filling_the_buffer_is_refused() {
        let (a, b) = UnixStream::pair().unwrap();
        let (x, _x_peer) = UnixStream::pair().unwrap();
        send_fd(a.as_fd(), x.as_fd(), b"/abcdefgh").unwrap();
        let err = recv_fd(b.as_fd(), &mut [0u8; 4]).unwrap_err();
        assert!(err.to_string().contains("fills"), "{err}");
    }

    #[test]
    fn nonblocking_socket_with_nothing_to_read_is_would_block() {
        let (_a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let err = recv_fd(b.as_fd(), &mut [0u8; 16]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(io::Error::from(err).kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn empty_data_is_refused_before_sending() {
        let (a, _b) = UnixStream::pair().unwrap();
        let err = send_fd(a.as_fd(), a.as_fd(), b"").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    /// A sender that does what `send_fd` refuses to: several fds in one message.
    fn send_raw_fds(sock: &UnixStream, fds: &[RawFd], data: &[u8]) {
        let mut control = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: data.as_ptr().cast_mut().cast(),
            iov_len: data.len(),
        };
        let payload = fd_bytes(fds.len());
        // SAFETY: test-only sender; msghdr is POD, the buffers outlive the call and
        // control (128 bytes) holds CMSG_SPACE of up to 16 fds.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &raw mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(payload) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(payload) as _;
            let bytes: Vec<u8> = fds.iter().flat_map(|fd| fd.to_ne_bytes()).collect();
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), libc::CMSG_DATA(cmsg), bytes.len());
            assert!(libc::sendmsg(sock.as_raw_fd(), &raw const msg, 0) > 0);
        }
    }
}
