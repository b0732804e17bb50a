//! The kernel's SELinux interface, as srpcd uses it: the enforcing mode, a
//! process's own context, checking a context and asking the policy what a new
//! process would become (selinuxfs), the per-thread creation contexts
//! (`/proc/thread-self/attr/{exec,fscreate,sockcreate}`) and a file's label
//! (`security.selinux`). This is what libselinux does for the same calls; doing
//! it here keeps srpcd off libselinux's process-wide state and its fallbacks
//! (`get_default_context` answers the failsafe sysadm context, `getseuserbyname`
//! drops the level without selinuxfs: see docs/selinux.md).
//!
//! The creation contexts are per *thread*: the monitor is multi-threaded, so a
//! caller sets one with [`CreateContext`], whose guard clears it again on drop,
//! and does the creation on the same thread in between (no `.await`).

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Where selinuxfs is mounted (every distribution since 2012).
const SELINUXFS: &str = "/sys/fs/selinux";

/// The longest context accepted from the kernel or a file's label.
const MAX_CONTEXT: usize = 4096;

/// Whether the kernel runs SELinux, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No SELinux in this kernel (or selinuxfs not mounted): DAC only.
    Disabled,
    /// SELinux runs but only logs denials.
    Permissive,
    /// SELinux runs and denies.
    Enforcing,
}

impl Mode {
    /// `enforcing`, `permissive` or `disabled`, as `getenforce` says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Disabled => "disabled",
            Mode::Permissive => "permissive",
            Mode::Enforcing => "enforcing",
        }
    }
}

/// The kernel's SELinux mode, from selinuxfs. `/etc/selinux/config` is not
/// consulted: it says what the next boot does, not what this kernel does.
pub fn mode() -> io::Result<Mode> {
    match std::fs::read_to_string(Path::new(SELINUXFS).join("enforce")) {
        Ok(text) => match text.trim() {
            "1" => Ok(Mode::Enforcing),
            "0" => Ok(Mode::Permissive),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{SELINUXFS}/enforce: unexpected {other:?}"),
            )),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Mode::Disabled),
        Err(e) => Err(e),
    }
}

/// This process's own context (`/proc/self/attr/current`).
pub fn current_context() -> io::Result<String> {
    read_attr("/proc/self/attr/current")
}

/// Whether `context` is valid in the loaded policy (selinuxfs `context`):
/// `Ok(false)` for a context the policy rejects.
pub fn check_context(context: &str) -> io::Result<bool> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(Path::new(SELINUXFS).join("context"))?;
    // The kernel takes the context with its terminating NUL, as libselinux
    // writes it.
    let mut bytes = context_bytes(context)?;
    bytes.push(0);
    match file.write(&bytes) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The context the policy gives a new object of `class` created by `source`
/// with `target` as its related object (selinuxfs `create`): for class
/// `process`, what a process in `source` becomes when it execs a file
/// labelled `target`.
pub fn compute_create(source: &str, target: &str, class: &str) -> io::Result<String> {
    if class.is_empty()
        || !class
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a class name: {class:?}"),
        ));
    }
    let index_path = Path::new(SELINUXFS).join("class").join(class).join("index");
    let index: u16 = std::fs::read_to_string(&index_path)?
        .trim()
        .parse()
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a class number", index_path.display()),
            )
        })?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(Path::new(SELINUXFS).join("create"))?;
    let source = std::str::from_utf8(&context_bytes(source)?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
        .to_owned();
    let target = std::str::from_utf8(&context_bytes(target)?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
        .to_owned();
    file.write_all(format!("{source} {target} {index}").as_bytes())?;
    let mut answer = Vec::new();
    file.take(MAX_CONTEXT as u64).read_to_end(&mut answer)?;
    decode_context(&answer, "selinuxfs create")
}

/// The label of the file at `path`, not following a final symlink.
pub fn file_context(path: &Path) -> io::Result<String> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut buf = vec![0u8; MAX_CONTEXT];
    // SAFETY: `c_path` and the attribute name are NUL-terminated strings that
    // outlive the call; `buf` is a writable buffer of `buf.len()` bytes, and the
    // kernel writes at most that many.
    let n = unsafe {
        libc::lgetxattr(
            c_path.as_ptr(),
            c"security.selinux".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    buf.truncate(n);
    decode_context(&buf, "security.selinux")
}

/// Sets the context this thread's next `execve` runs in (the launcher's last
/// step before it execs a worker or handler). It holds until that exec.
pub fn set_exec_context(context: &str) -> io::Result<()> {
    write_attr(Kind::Exec, Some(context))
}

/// Which per-thread creation context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exec,
    FsCreate,
    SockCreate,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Exec => "/proc/thread-self/attr/exec",
            Kind::FsCreate => "/proc/thread-self/attr/fscreate",
            Kind::SockCreate => "/proc/thread-self/attr/sockcreate",
        }
    }
}

/// The contexts this thread's next files and sockets are created with, held
/// until the guard drops (which resets both to the policy's default).
/// Nothing may `.await` while one is held: the task could move threads.
#[derive(Debug)]
pub struct CreateContext {
    files: bool,
    sockets: bool,
}

impl CreateContext {
    /// New files, directories and socket nodes on this thread get `context`.
    pub fn files(context: &str) -> io::Result<CreateContext> {
        write_attr(Kind::FsCreate, Some(context))?;
        Ok(CreateContext {
            files: true,
            sockets: false,
        })
    }

    /// New sockets on this thread get `context` as well.
    pub fn and_sockets(mut self, context: &str) -> io::Result<CreateContext> {
        write_attr(Kind::SockCreate, Some(context))?;
        self.sockets = true;
        Ok(self)
    }
}

impl Drop for CreateContext {
    fn drop(&mut self) {
        // A reset that fails would leave the next creation on this thread at a
        // user's level; the thread is the blocking pool's, so abort rather than
        // hand it on (it cannot fail for a thread writing its own attribute).
        for (held, kind) in [
            (self.files, Kind::FsCreate),
            (self.sockets, Kind::SockCreate),
        ] {
            if held && write_attr(kind, None).is_err() {
                std::process::abort();
            }
        }
    }
}

fn write_attr(kind: Kind, context: Option<&str>) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).open(kind.path())?;
    match context {
        Some(c) => file.write_all(&context_bytes(c)?),
        // An empty write clears it.
        None => file.write(&[]).map(drop),
    }
    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", kind.path())))
}

fn read_attr(path: &str) -> io::Result<String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_CONTEXT as u64)
        .read_to_end(&mut bytes)?;
    decode_context(&bytes, path)
}

/// A context as the kernel takes it: no NUL, no newline, not empty.
fn context_bytes(context: &str) -> io::Result<Vec<u8>> {
    if context.is_empty()
        || context.len() >= MAX_CONTEXT
        || context.bytes().any(|b| b == 0 || b == b'\n' || b == b' ')
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a security context: {context:?}"),
        ));
    }
    Ok(context.as_bytes().to_vec())
}

/// A context the kernel or an xattr gave: trailing NULs and newline trimmed.
fn decode_context(bytes: &[u8], what: &str) -> io::Result<String> {
    let end = bytes
        .iter()
        .rposition(|b| *b != 0 && *b != b'\n')
        .map_or(0, |i| i + 1);
    let text = std::str::from_utf8(&bytes[..end])
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{what}: not UTF-8")))?;
    if text.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what}: empty context"),
        ));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_from_the_kernel_lose_their_nul_and_newline() {
        assert_eq!(
            decode_context(b"system_u:system_r:srpcd_t:s0\0", "t").ok(),
            Some("system_u:system_r:srpcd_t:s0".to_owned())
        );
        assert_eq!(
            decode_context(b"u:r:t:s0\n", "t").ok(),
            Some("u:r:t:s0".to_owned())
        );
        assert!(decode_context(b"\0", "t").is_err());
        assert!(decode_context(&[0xff, b'a'], "t").is_err());
    }

    #[test]
    fn a_context_with_a_space_newline_or_nul_is_refused_before_the_kernel() {
        for bad in ["", "a b", "a\nb", "a\0b"] {
            let e = context_bytes(bad).err().map(|e| e.kind());
            assert_eq!(e, Some(io::ErrorKind::InvalidInput), "{bad:?}");
        }
        // A space would let a caller smuggle a second field into `create`.
        assert!(compute_create("a b", "c", "process").is_err());
        assert!(compute_create("a", "b", "pro cess").is_err());
    }

    #[test]
    fn without_selinux_the_mode_is_disabled() {
        // On an SELinux kernel this is checked in vm-tests instead.
        if !Path::new(SELINUXFS).join("enforce").exists() {
            assert_eq!(mode().ok(), Some(Mode::Disabled));
            assert!(check_context("system_u:object_r:etc_t:s0").is_err());
        }
    }
}
