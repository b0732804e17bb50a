//! Root's filesystem operations on clones and the canonical tree, each relative
//! to a directory fd the monitor opened itself, never following a symlink.
//!
//! Every lookup is `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS` of one name below an fd; attributes are set on the
//! node's own fd (`fchown`, `fchmod`, `fsetxattr`, or `/proc/self/fd/N` for an
//! `O_PATH` fd of a socket, which names that inode and nothing else); removal
//! is `unlinkat` on directory fds. So a planted symlink or a renamed directory
//! can at worst make an operation fail; it can never redirect one.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{
    openat2, statat, unlinkat, AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags, Stat,
};
use rustix::io::Errno;
use srpc_os::selinux::CreateContext;

use super::attrs::{CloneAttrs, ACL_XATTR, MAX_ACL};

/// Deepest directory nesting a clone copies (and removal descends).
pub const MAX_DEPTH: usize = 32;
/// Most entries read from one directory.
pub const MAX_ENTRIES: usize = 10_000;

fn resolve() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS
}

fn io_err(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// A plain name: one path element, not `.`/`..`.
fn element(name: &OsStr) -> io::Result<&OsStr> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a plain name"),
        ));
    }
    Ok(name)
}

/// Opens a directory by path (the configured roots, which the admin owns).
pub fn open_root(path: &Path) -> io::Result<OwnedFd> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err)?;
    Ok(fd)
}

/// Opens the directory `name` below `parent`.
pub fn open_dir(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    openat2(
        parent,
        element(name)?,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        resolve(),
    )
    .map_err(io_err)
}

/// An `O_PATH` fd of `name` below `parent` (the node itself, even a symlink).
pub fn open_node(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    openat2(
        parent,
        element(name)?,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        resolve(),
    )
    .map_err(io_err)
}

/// `lstat` of `name` below `parent`.
pub fn stat_at(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<Stat> {
    statat(parent, element(name)?, AtFlags::SYMLINK_NOFOLLOW).map_err(io_err)
}

/// `fstat`.
pub fn stat(fd: BorrowedFd<'_>) -> io::Result<Stat> {
    rustix::fs::fstat(fd).map_err(io_err)
}

/// The node's type.
pub fn kind(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// The names in a directory (without `.` and `..`), at most [`MAX_ENTRIES`].
pub fn names(dir: BorrowedFd<'_>) -> io::Result<Vec<CString>> {
    let mut out = Vec::new();
    let mut entries = Dir::read_from(dir).map_err(io_err)?;
    while let Some(entry) = entries.read() {
        let entry = entry.map_err(io_err)?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        if out.len() >= MAX_ENTRIES {
            return Err(io::Error::other(format!(
                "more than {MAX_ENTRIES} entries in one directory"
            )));
        }
        out.push(name.to_owned());
    }
    Ok(out)
}

/// The `OsStr` of a directory entry name.
pub fn os(name: &CStr) -> &OsStr {
    OsStr::from_bytes(name.to_bytes())
}

/// Reads the regular file `name` below `parent` through an `O_NOFOLLOW` fd,
/// refusing anything but a regular file of at most `cap` bytes (checked on
/// the open fd, and by reading no more than `cap + 1`).
pub fn read_small(parent: BorrowedFd<'_>, name: &OsStr, cap: usize) -> io::Result<Vec<u8>> {
    let fd = openat2(
        parent,
        element(name)?,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
        resolve(),
    )
    .map_err(io_err)?;
    let st = stat(fd.as_fd())?;
    if kind(&st) != FileType::RegularFile {
        return Err(io::Error::other("not a regular file"));
    }
    if usize::try_from(st.st_size).map_or(true, |n| n > cap) {
        return Err(io::Error::other(format!(
            "{} bytes: larger than {cap}",
            st.st_size
        )));
    }
    let mut out = vec![0u8; cap + 1];
    let mut len = 0;
    while len < out.len() {
        let Some(rest) = out.get_mut(len..) else {
            break;
        };
        match rustix::io::read(&fd, rest) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    if len > cap {
        return Err(io::Error::other(format!("larger than {cap} bytes")));
    }
    out.truncate(len);
    Ok(out)
}

/// The path that names exactly the inode of `fd` (an `O_PATH` fd included).
fn proc_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// The access ACL of the node `fd` refers to, if it has one.
pub fn acl_of(fd: BorrowedFd<'_>) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; MAX_ACL];
    match rustix::fs::getxattr(proc_path(fd), ACL_XATTR, &mut buf[..]) {
        Ok(len) => {
            buf.truncate(len);
            Ok(Some(buf))
        }
        Err(Errno::NODATA | Errno::NOTSUP) => Ok(None),
        Err(Errno::RANGE) => Err(io::Error::other(format!(
            "its ACL is larger than {MAX_ACL} bytes"
        ))),
        Err(e) => Err(io_err(e)),
    }
}

/// Gives the node `fd` refers to its owner, group, mode and ACL, in that
/// order (the ACL last: setting it also sets the group bits to its mask).
pub fn apply(fd: BorrowedFd<'_>, attrs: &CloneAttrs) -> io::Result<()> {
    use rustix::fs::{Gid, Uid};
    rustix::fs::chownat(
        fd,
        c"",
        Some(Uid::from_raw_unchecked(attrs.uid)),
        Some(Gid::from_raw_unchecked(attrs.gid)),
        AtFlags::EMPTY_PATH,
    )
    .map_err(io_err)?;
    // chmod through /proc/self/fd works for O_PATH fds (sockets), and names
    // this inode only; the mode never carries setuid, setgid or sticky bits.
    let path = proc_path(fd);
    rustix::fs::chmod(&path, Mode::from_raw_mode(attrs.mode & 0o777)).map_err(io_err)?;
    match &attrs.acl {
        Some(acl) => rustix::fs::setxattr(&path, ACL_XATTR, acl, rustix::fs::XattrFlags::empty())
            .map_err(io_err),
        None => match rustix::fs::removexattr(&path, ACL_XATTR) {
            Ok(()) | Err(Errno::NODATA | Errno::NOTSUP) => Ok(()),
            Err(e) => Err(io_err(e)),
        },
    }
}

/// Where the node's SELinux label is kept.
const LABEL_XATTR: &str = "security.selinux";

/// The SELinux label of the node `fd` refers to (`None` when it has none).
pub fn label_of(fd: BorrowedFd<'_>) -> io::Result<Option<String>> {
    let mut buf = [0u8; 512];
    match rustix::fs::getxattr(proc_path(fd), LABEL_XATTR, &mut buf[..]) {
        Ok(len) => {
            let bytes = &buf[..len];
            let end = bytes.iter().position(|b| *b == 0).unwrap_or(len);
            Ok(std::str::from_utf8(&bytes[..end]).ok().map(str::to_owned))
        }
        Err(Errno::NODATA | Errno::NOTSUP) => Ok(None),
        Err(e) => Err(io_err(e)),
    }
}

/// Gives the node `fd` refers to the SELinux label `label`, unless it has it.
pub fn relabel(fd: BorrowedFd<'_>, label: &str) -> io::Result<()> {
    if label_of(fd)?.as_deref() == Some(label) {
        return Ok(());
    }
    rustix::fs::setxattr(
        proc_path(fd),
        LABEL_XATTR,
        label.as_bytes(),
        rustix::fs::XattrFlags::empty(),
    )
    .map_err(io_err)
}

/// Runs `make` with the nodes it creates on this thread labelled `label`, and
/// the sockets `socket` (each when given): labelled from their first moment.
/// `make` must not move threads (it is synchronous).
pub fn labelled<T>(
    label: Option<&str>,
    socket: Option<&str>,
    make: impl FnOnce() -> io::Result<T>,
) -> io::Result<T> {
    let _held = match (label, socket) {
        (Some(l), Some(s)) => Some(CreateContext::files(l)?.and_sockets(s)?),
        (Some(l), None) => Some(CreateContext::files(l)?),
        (None, _) => None,
    };
    make()
}

/// The directory `name` below `parent`, made if missing (mode 0700, root's,
/// until [`apply`] gives it its attributes). Anything else of that name is
/// removed first.
pub fn ensure_dir(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    ensure_dir_labelled(parent, name, None)
}

/// [`ensure_dir`], the directory labelled `label` if it is made here (and
/// relabelled to it if it was there already).
pub fn ensure_dir_labelled(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    label: Option<&str>,
) -> io::Result<OwnedFd> {
    let fd = labelled(label, None, || make_dir(parent, name))?;
    if let Some(label) = label {
        relabel(fd.as_fd(), label)?;
    }
    Ok(fd)
}

fn make_dir(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    match rustix::fs::mkdirat(parent, element(name)?, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(io_err(e)),
    }
    match open_dir(parent, name) {
        Ok(fd) => Ok(fd),
        // A symlink or a file where the directory should be (left by an older
        // srpcd, say): it goes, without being followed.
        Err(e) if is_errno(&e, Errno::LOOP) || is_errno(&e, Errno::NOTDIR) => {
            remove(parent, name, 0)?;
            rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700)).map_err(io_err)?;
            open_dir(parent, name)
        }
        Err(e) => Err(e),
    }
}

fn is_errno(e: &io::Error, errno: Errno) -> bool {
    e.raw_os_error() == Some(errno.raw_os_error())
}

/// Removes `name` below `parent`: a directory with everything in it (depth
/// at most [`MAX_DEPTH`] below `depth`), anything else with `unlinkat`.
pub fn remove(parent: BorrowedFd<'_>, name: &OsStr, depth: usize) -> io::Result<()> {
    let st = match stat_at(parent, name) {
        Ok(st) => st,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if kind(&st) == FileType::Directory {
        if depth >= MAX_DEPTH {
            return Err(io::Error::other(format!(
                "nested more than {MAX_DEPTH} directories deep"
            )));
        }
        let dir = open_dir(parent, name)?;
        for child in names(dir.as_fd())? {
            remove(dir.as_fd(), os(&child), depth + 1)?;
        }
        unlinkat(parent, name, AtFlags::REMOVEDIR).map_err(io_err)
    } else {
        unlinkat(parent, name, AtFlags::empty()).map_err(io_err)
    }
}

/// Moves `name` from below `from` to `to_name` below `to`, replacing a
/// non-directory there.
pub fn rename(
    from: BorrowedFd<'_>,
    name: &OsStr,
    to: BorrowedFd<'_>,
    to_name: &OsStr,
) -> io::Result<()> {
    rustix::fs::renameat(from, element(name)?, to, element(to_name)?).map_err(io_err)
}

/// The path of `name` below the directory `fd` (for `bind`, which takes a
/// path: used only in root's own staging directory).
pub fn path_in(fd: impl AsFd, name: &OsStr) -> PathBuf {
    proc_path(fd.as_fd()).join(name)
}
