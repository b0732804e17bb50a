//! What a node of the canonical tree is, decided in one place: the clone
//! ([`super::clone`]) clones what this calls a directory or an endpoint and
//! nothing else, and `srpcctl check-tree` ([`super::admin::check_tree`])
//! reports exactly what this calls a problem. Two copies of these rules
//! could drift; one cannot.
//!
//! Invariants:
//! - Every read is relative to a directory fd, with no symlink followed
//!   ([`super::fsat`]); a node's attributes come from its own fd.
//! - A node is one of: a directory (below [`fsat::MAX_DEPTH`]), a per-user
//!   handler (a regular executable file with one link), a service (a regular
//!   non-executable file with one link holding a valid descriptor). Anything
//!   else is a [`Problem`], whose [`Effect`] says what the clone does with it:
//!   skip the node, or refuse (fail) the whole sync.
//! - With SELinux, a node the file-context rules give no type is a problem
//!   too: the clone cannot label it.

use std::ffi::{CString, OsStr};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Stat};
use serde::Deserialize;

use super::attrs::Canonical;
use super::fsat;

/// Largest service descriptor read (it holds one short line).
pub const MAX_DESCRIPTOR: usize = 4096;

/// What a non-executable endpoint file holds: where its service listens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Descriptor {
    /// The service's fd-passing socket.
    service: PathBuf,
}

/// What a canonical node is cloned as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A per-user handler: the executable's path in the canonical tree.
    Handler(PathBuf),
    /// A service: the socket its descriptor names.
    Service(PathBuf),
}

/// A node the clone takes, with what it was decided from.
#[derive(Debug)]
pub struct Node {
    /// What it is.
    pub kind: Kind,
    /// Its `fstat`, from its own fd.
    pub st: Stat,
    /// Its access attributes, read from its own fd.
    pub attrs: Canonical,
    /// The clone node's label, from the label function (`None` without
    /// SELinux).
    pub label: Option<String>,
    /// A directory: an open directory fd; a file: an `O_PATH` fd.
    pub fd: OwnedFd,
}

/// What the clone does with a problem node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The node (and what is below it) is left out of the clone.
    Skip,
    /// The sync fails: the user's attach (or re-sync) is refused.
    Refuse,
}

impl Effect {
    /// `skipped` or `refused`, as check-tree shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Skip => "skipped",
            Effect::Refuse => "refused",
        }
    }
}

/// Why a canonical node is not cloned as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What the clone does about it.
    pub effect: Effect,
    /// The precise reason, for the log and for check-tree.
    pub message: String,
}

impl Problem {
    fn skip(message: impl Into<String>) -> Problem {
        Problem {
            effect: Effect::Skip,
            message: message.into(),
        }
    }

    fn refuse(message: impl Into<String>) -> Problem {
        Problem {
            effect: Effect::Refuse,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// One classified node: its `lstat` when it could be read, and the verdict.
#[derive(Debug)]
pub struct Classified {
    /// The node's `lstat` (`None`: it could not be read).
    pub st: Option<Stat>,
    /// A node the clone takes, or why not.
    pub verdict: Result<Node, Problem>,
}

/// The clone label of a node of `st_mode` (`Ok(None)` without SELinux), or
/// why there is none.
pub type LabelFn<'a> = &'a dyn Fn(u32) -> Result<Option<String>, String>;

/// The name of a node's file type, as check-tree shows problem nodes.
pub fn type_name(st: &Stat) -> &'static str {
    match fsat::kind(st) {
        FileType::Directory => "directory",
        FileType::RegularFile if st.st_mode & 0o111 != 0 => "executable",
        FileType::RegularFile => "file",
        FileType::Symlink => "symlink",
        FileType::Socket => "socket",
        FileType::Fifo => "fifo",
        FileType::BlockDevice => "block device",
        FileType::CharacterDevice => "character device",
        FileType::Unknown => "unknown",
    }
}

/// The names in the canonical directory `dir`. A directory that cannot be
/// listed, or holds more than [`fsat::MAX_ENTRIES`], fails the sync.
pub fn entries(dir: BorrowedFd<'_>) -> Result<Vec<CString>, Problem> {
    fsat::names(dir).map_err(|e| Problem::refuse(format!("cannot be listed: {e}")))
}

/// A canonical directory the clone mirrors (the tree's root, each directory
/// of an attach path, each directory below): its attributes and label. A
/// directory whose attributes or label cannot be had fails the sync, since
/// its clone cannot be made right.
pub fn directory(
    fd: BorrowedFd<'_>,
    label: LabelFn<'_>,
) -> Result<(Stat, Canonical, Option<String>), Problem> {
    let (st, attrs) = canonical_of(fd)
        .map_err(|e| Problem::refuse(format!("its attributes cannot be read: {e}")))?;
    let label =
        label(st.st_mode).map_err(|e| Problem::refuse(format!("no SELinux file type: {e}")))?;
    Ok((st, attrs, label))
}

/// What the node `name` below the canonical directory `parent` is. `path`
/// is its path in the canonical tree (a handler's executable), `depth` the
/// number of elements of its path below the tree's root.
pub fn classify(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    path: &Path,
    depth: usize,
    label: LabelFn<'_>,
) -> Classified {
    let st = match fsat::stat_at(parent, name) {
        Ok(st) => st,
        Err(e) => {
            return Classified {
                st: None,
                verdict: Err(Problem::skip(format!("cannot be read: {e}"))),
            }
        }
    };
    let verdict = match fsat::kind(&st) {
        FileType::Directory => subdirectory(parent, name, depth, label),
        FileType::RegularFile => endpoint(parent, name, path, label),
        FileType::Symlink => Err(Problem::skip(
            "a symlink: never cloned or followed (put the directory or endpoint itself here)",
        )),
        _ => Err(Problem::skip(format!(
            "a {}: only directories, executables (handlers) and service descriptors are cloned",
            type_name(&st)
        ))),
    };
    Classified {
        st: Some(st),
        verdict,
    }
}

fn subdirectory(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    depth: usize,
    label: LabelFn<'_>,
) -> Result<Node, Problem> {
    if depth > fsat::MAX_DEPTH {
        return Err(Problem::skip(format!(
            "nested deeper than {} directories",
            fsat::MAX_DEPTH
        )));
    }
    let fd = fsat::open_dir(parent, name)
        .map_err(|e| Problem::skip(format!("cannot be opened: {e}")))?;
    let (st, attrs, label) = directory(fd.as_fd(), label)?;
    Ok(Node {
        kind: Kind::Dir,
        st,
        attrs,
        label,
        fd,
    })
}

fn endpoint(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    path: &Path,
    label: LabelFn<'_>,
) -> Result<Node, Problem> {
    let fd = fsat::open_node(parent, name)
        .map_err(|e| Problem::skip(format!("cannot be opened: {e}")))?;
    let (st, attrs) = canonical_of(fd.as_fd())
        .map_err(|e| Problem::skip(format!("its attributes cannot be read: {e}")))?;
    if fsat::kind(&st) != FileType::RegularFile {
        return Err(Problem::skip("replaced while it was read"));
    }
    if st.st_nlink > 1 {
        return Err(Problem::skip(format!(
            "it has {} hard links (an endpoint must be a file of its own)",
            st.st_nlink
        )));
    }
    let label =
        label(st.st_mode).map_err(|e| Problem::skip(format!("no SELinux file type: {e}")))?;
    let kind = if st.st_mode & 0o111 != 0 {
        Kind::Handler(path.to_owned())
    } else {
        Kind::Service(descriptor(parent, name)?)
    };
    Ok(Node {
        kind,
        st,
        attrs,
        label,
        fd,
    })
}

/// The service socket a descriptor names.
fn descriptor(parent: BorrowedFd<'_>, name: &OsStr) -> Result<PathBuf, Problem> {
    let bad = |why: String| Problem::skip(format!("not a service descriptor: {why}"));
    let bytes = fsat::read_small(parent, name, MAX_DESCRIPTOR).map_err(|e| bad(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| bad("not UTF-8".to_owned()))?;
    let d = toml::from_str::<Descriptor>(&text).map_err(|e| bad(e.message().to_owned()))?;
    if !d.service.is_absolute() {
        return Err(bad(format!(
            "`service` must be an absolute path, not {:?}",
            d.service.display().to_string()
        )));
    }
    Ok(d.service)
}

/// `label` if the loaded policy knows it; otherwise why not. A label the
/// kernel refuses could not go on the clone node (its create would fail), so
/// the label functions of the clone and of check-tree both pass theirs
/// through here: an unknown type is a problem of the node, found the same way
/// by both.
pub fn known_label(label: String) -> Result<String, String> {
    match srpc_os::selinux::check_context(&label) {
        Ok(true) => Ok(label),
        Ok(false) => Err(format!(
            "{label} is not valid in the loaded policy (an unknown type?)"
        )),
        Err(e) => Err(format!("checking {label}: {e}")),
    }
}

/// A canonical node's `fstat` and access attributes, read from its own fd.
pub fn canonical_of(fd: BorrowedFd<'_>) -> io::Result<(Stat, Canonical)> {
    let st = fsat::stat(fd)?;
    let acl = fsat::acl_of(fd)?;
    let attrs = Canonical {
        uid: st.st_uid,
        gid: st.st_gid,
        mode: st.st_mode & 0o7777,
        acl,
    };
    Ok((st, attrs))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A scratch directory of the test's own, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("srpcd-classify-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir(&dir).unwrap();
            Scratch(dir)
        }

        fn file(&self, name: &str, text: &str, mode: u32) {
            let path = self.0.join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }

        fn classify(&self, name: &str, depth: usize, label: LabelFn<'_>) -> Classified {
            let dir = fsat::open_root(&self.0).unwrap();
            classify(
                dir.as_fd(),
                OsStr::new(name),
                &self.0.join(name),
                depth,
                label,
            )
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Without SELinux: no label, never a failure.
    const NO_LABELS: LabelFn<'static> = &|_| Ok(None);

    fn problem(c: &Classified) -> &Problem {
        match &c.verdict {
            Ok(node) => panic!("cloned as {:?}", node.kind),
            Err(p) => p,
        }
    }

    #[test]
    fn directories_executables_and_descriptors_are_cloned_as_what_they_are() {
        let s = Scratch::new("good");
        std::fs::create_dir(s.0.join("math")).unwrap();
        s.file("echo", "#!/bin/sh\n", 0o750);
        s.file("time", "service = \"/run/timed.sock\"\n", 0o640);
        let dir = s.classify("math", 1, NO_LABELS);
        assert_eq!(dir.verdict.as_ref().unwrap().kind, Kind::Dir);
        let echo = s.classify("echo", 1, NO_LABELS);
        let node = echo.verdict.as_ref().unwrap();
        assert_eq!(node.kind, Kind::Handler(s.0.join("echo")));
        assert_eq!(node.attrs.mode, 0o750);
        assert_eq!(echo.st.unwrap().st_mode & 0o7777, 0o750);
        let time = s.classify("time", 1, NO_LABELS);
        assert_eq!(
            time.verdict.unwrap().kind,
            Kind::Service(PathBuf::from("/run/timed.sock"))
        );
    }

    #[test]
    fn symlinks_hard_links_and_special_files_are_skipped_with_the_reason() {
        let s = Scratch::new("odd");
        s.file("echo", "#!/bin/sh\n", 0o755);
        std::os::unix::fs::symlink(s.0.join("echo"), s.0.join("link")).unwrap();
        std::fs::hard_link(s.0.join("echo"), s.0.join("twin")).unwrap();
        std::os::unix::net::UnixListener::bind(s.0.join("sock")).unwrap();

        let link = s.classify("link", 1, NO_LABELS);
        assert_eq!(problem(&link).effect, Effect::Skip);
        assert!(
            problem(&link).message.starts_with("a symlink"),
            "{}",
            problem(&link)
        );
        let twin = s.classify("twin", 1, NO_LABELS);
        assert_eq!(
            problem(&twin).message,
            "it has 2 hard links (an endpoint must be a file of its own)"
        );
        let sock = s.classify("sock", 1, NO_LABELS);
        assert!(
            problem(&sock)
                .message
                .starts_with("a socket: only directories"),
            "{}",
            problem(&sock)
        );
        let gone = s.classify("gone", 1, NO_LABELS);
        assert!(gone.st.is_none());
        assert!(
            problem(&gone).message.starts_with("cannot be read"),
            "{}",
            problem(&gone)
        );
    }

    #[test]
    fn a_bad_descriptor_is_skipped_saying_what_is_wrong_with_it() {
        let s = Scratch::new("desc");
        s.file("relative", "service = \"timed.sock\"\n", 0o644);
        s.file("unknown", "service = \"/run/a\"\nport = 3\n", 0o644);
        s.file("big", &"#".repeat(MAX_DESCRIPTOR + 1), 0o644);
        std::fs::write(s.0.join("binary"), [0xffu8, 0xfe]).unwrap();
        let message = |name: &str| problem(&s.classify(name, 1, NO_LABELS)).message.clone();
        assert_eq!(
            message("relative"),
            "not a service descriptor: `service` must be an absolute path, not \"timed.sock\""
        );
        assert!(
            message("unknown").contains("unknown field `port`"),
            "{}",
            message("unknown")
        );
        assert_eq!(message("binary"), "not a service descriptor: not UTF-8");
        assert!(
            message("big").contains("larger than 4096"),
            "{}",
            message("big")
        );
    }

    #[test]
    fn depth_and_labels_are_rules_of_the_classification_too() {
        let s = Scratch::new("deep");
        std::fs::create_dir(s.0.join("d")).unwrap();
        s.file("echo", "#!/bin/sh\n", 0o755);
        let deep = s.classify("d", fsat::MAX_DEPTH + 1, NO_LABELS);
        assert_eq!(
            problem(&deep).message,
            format!("nested deeper than {} directories", fsat::MAX_DEPTH)
        );
        assert!(s.classify("d", fsat::MAX_DEPTH, NO_LABELS).verdict.is_ok());

        let unlabelled = |_: u32| Err::<Option<String>, _>("no rule matches".to_owned());
        let echo = s.classify("echo", 1, &unlabelled);
        assert_eq!(problem(&echo).effect, Effect::Skip);
        assert_eq!(
            problem(&echo).message,
            "no SELinux file type: no rule matches"
        );
        // A directory the clone cannot label fails the whole sync.
        let dir = s.classify("d", 1, &unlabelled);
        assert_eq!(problem(&dir).effect, Effect::Refuse);
        let labelled = |mode: u32| Ok(Some(format!("t{:o}", mode & 0o170_000)));
        let node = s.classify("echo", 1, &labelled).verdict.unwrap();
        assert_eq!(node.label.as_deref(), Some("t100000"));
    }
}
