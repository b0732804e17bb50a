//! User ids and names.

use std::ffi::CStr;
use std::io;

use crate::Error;

/// Largest buffer offered to `getpwuid_r`; a passwd entry needing more is refused.
const MAX_PASSWD_BUF: usize = 1024 * 1024;

/// The name of user `uid` from the user database (`getpwuid_r`, so NSS sources such
/// as SSSD count), or `None` if no user has that uid.
///
/// This may block on a network directory; call it off async executors (e.g. in
/// `tokio::task::spawn_blocking`).
///
/// ```
/// assert_eq!(srpc_os::user_name(0)?.as_deref(), Some("root"));
/// # Ok::<(), srpc_os::Error>(())
/// ```
pub fn user_name(uid: u32) -> Result<Option<String>, Error> {
    const OP: &str = "getpwuid_r";
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: passwd is plain old data (integers and pointers); all-zero is valid.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: `pwd` and `result` are ours to write; `buf` is writable for
        // buf.len() bytes, and the strings the entry points at are placed in it.
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &raw mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &raw mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < MAX_PASSWD_BUF {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(Error::from_io(OP, io::Error::from_raw_os_error(rc)));
        }
        if result.is_null() || pwd.pw_name.is_null() {
            return Ok(None);
        }
        // SAFETY: on success pw_name points at a NUL-terminated string inside `buf`,
        // which is alive and not modified while we copy it out.
        let name = unsafe { CStr::from_ptr(pwd.pw_name) };
        return name.to_str().map(|s| Some(s.to_owned())).map_err(|e| {
            Error::invalid(
                OP,
                io::ErrorKind::InvalidData,
                format!("name of uid {uid} is not UTF-8: {e}"),
            )
        });
    }
}

/// The effective user id of this process.
///
/// ```
/// let uid = srpc_os::effective_uid();
/// # let _ = uid;
/// ```
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The effective group id of this process.
///
/// ```
/// let gid = srpc_os::effective_gid();
/// # let _ = gid;
/// ```
pub fn effective_gid() -> u32 {
    // SAFETY: getegid has no preconditions and cannot fail.
    unsafe { libc::getegid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_root_and_nobody_is_nobody() {
        assert_eq!(user_name(0).unwrap().as_deref(), Some("root"));
        assert_eq!(user_name(65534).unwrap().as_deref(), Some("nobody"));
    }

    #[test]
    fn an_unused_uid_has_no_name() {
        assert_eq!(user_name(3_999_999_999).unwrap(), None);
    }

    #[test]
    fn effective_ids_match_the_proc_filesystem() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let field = |name: &str| -> u32 {
            let line = status.lines().find(|l| l.starts_with(name)).unwrap();
            // Real, effective, saved, filesystem: the second is the effective id.
            line.split_whitespace().nth(2).unwrap().parse().unwrap()
        };
        assert_eq!(effective_uid(), field("Uid:"));
        assert_eq!(effective_gid(), field("Gid:"));
    }
}
