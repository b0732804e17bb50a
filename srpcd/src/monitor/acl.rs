//! POSIX ACLs of canonical endpoints, carried to their clone sockets with the
//! same translation as the mode: an entry that may execute a handler (or read
//! a service descriptor) may call it — read and write on the socket.

use std::path::Path;

use rustix::fs::{lgetxattr, lremovexattr, lsetxattr, XattrFlags};
use rustix::io::Errno;

const ACCESS: &str = "system.posix_acl_access";
const VERSION: u32 = 2;
const HEADER: usize = 4;
const ENTRY: usize = 8;
/// ACL entries of up to ~500 users and groups; a larger ACL is refused rather
/// than cut.
const MAX_ACL: usize = 4096;

/// Gives `socket` the canonical node's ACL, each entry's permission turned
/// into read+write when it has `may` (execute 1 or read 4), else none. No ACL
/// on the canonical node removes any from the socket.
pub fn copy(canonical: &Path, socket: &Path, may: u16) -> Result<(), String> {
    let mut buf = [0u8; MAX_ACL];
    let len = match lgetxattr(canonical, ACCESS, &mut buf[..]) {
        Ok(len) => len,
        Err(Errno::NODATA | Errno::NOTSUP) => {
            return match lremovexattr(socket, ACCESS) {
                Ok(()) | Err(Errno::NODATA | Errno::NOTSUP) => Ok(()),
                Err(e) => Err(format!("{}: removing ACL: {e}", socket.display())),
            };
        }
        Err(e) => return Err(format!("{}: reading ACL: {e}", canonical.display())),
    };
    let acl = translate(buf.get(..len).unwrap_or_default(), may)
        .ok_or_else(|| format!("{}: malformed ACL", canonical.display()))?;
    lsetxattr(socket, ACCESS, &acl, XattrFlags::empty())
        .map_err(|e| format!("{}: setting ACL: {e}", socket.display()))
}

/// The translated ACL, or `None` if `acl` is not a version-2 POSIX ACL.
fn translate(acl: &[u8], may: u16) -> Option<Vec<u8>> {
    let (head, entries) = acl.split_first_chunk::<HEADER>()?;
    if u32::from_le_bytes(*head) != VERSION || entries.len() % ENTRY != 0 {
        return None;
    }
    let mut out = acl.to_vec();
    for entry in out.get_mut(HEADER..)?.chunks_exact_mut(ENTRY) {
        let perm = u16::from_le_bytes([entry[2], entry[3]]);
        let call: u16 = if perm & may != 0 { 0o6 } else { 0 };
        entry[2..4].copy_from_slice(&call.to_le_bytes());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::translate;

    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut v = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in entries {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        v
    }

    #[test]
    fn execute_becomes_read_write_per_entry() {
        // user::rwx, user:1001:--x, group::r-x, mask::r-x, other::---
        let input = acl(&[
            (1, 7, u32::MAX),
            (2, 1, 1001),
            (4, 5, u32::MAX),
            (16, 5, u32::MAX),
            (32, 0, u32::MAX),
        ]);
        let want = acl(&[
            (1, 6, u32::MAX),
            (2, 6, 1001),
            (4, 6, u32::MAX),
            (16, 6, u32::MAX),
            (32, 0, u32::MAX),
        ]);
        assert_eq!(translate(&input, 1).unwrap(), want);
        // For a descriptor, read decides: user:1001 has no r.
        let want = acl(&[
            (1, 6, u32::MAX),
            (2, 0, 1001),
            (4, 6, u32::MAX),
            (16, 6, u32::MAX),
            (32, 0, u32::MAX),
        ]);
        assert_eq!(translate(&input, 4).unwrap(), want);
        assert!(translate(&[1, 0, 0, 0], 1).is_none());
        assert!(translate(&[2, 0, 0, 0, 1], 1).is_none());
    }
}
