//! The worker's view of the tree: fids bound to nodes, and attach, walk and stat
//! done as real system calls with the worker's (the user's) credentials, so the
//! kernel decides what the user may see.
//!
//! Every node is opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`
//! relative to the session's attach root: the kernel itself refuses any path —
//! `..`, an absolute symlink, a symlink climbing out — that would leave it.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{openat2, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use srpc_proto::{validate_name, ErrorCode, Message, Qid, QidType, Stat};

/// A refusal, as the protocol reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Protocol code.
    pub code: ErrorCode,
    /// What happened.
    pub message: String,
    /// The kernel's errno when a syscall refused.
    pub errno: Option<i32>,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
            errno: None,
        }
    }

    /// The kernel said no: keep its errno and say it in the protocol's words.
    fn from_errno(e: Errno, what: &str) -> Refusal {
        let code = match e {
            Errno::NOENT => ErrorCode::NoSuchNode,
            // XDEV: RESOLVE_BENEATH refused a path (a symlink) that leaves the tree.
            Errno::ACCESS | Errno::PERM | Errno::XDEV => ErrorCode::PermissionDenied,
            Errno::NOTDIR => ErrorCode::NotDirectory,
            // MFILE/NFILE: past the budget's reserve; the budget is meant to
            // refuse first (`FdBudget`), this says the same if it did not.
            Errno::NAMETOOLONG | Errno::LOOP | Errno::MFILE | Errno::NFILE => {
                ErrorCode::LimitExceeded
            }
            _ => ErrorCode::Internal,
        };
        let detail = if e == Errno::XDEV {
            "a symlink leads outside the tree".to_owned()
        } else {
            std::io::Error::from(e).to_string()
        };
        Refusal {
            code,
            message: format!("{what}: {detail}"),
            errno: Some(e.raw_os_error()),
        }
    }

    /// The refusal as an `Rerror`.
    pub fn into_message(self) -> Message {
        Message::Rerror {
            code: self.code,
            message: self.message,
            errno: self.errno,
        }
    }
}

/// A bound fid: an `O_PATH` descriptor of the node, and where it is below the
/// attach root (walks resolve from the root so `RESOLVE_BENEATH` confines them).
struct Node {
    root: Arc<OwnedFd>,
    /// The canonical directory at the attach path, when the worker can see it.
    canon: Option<Arc<OwnedFd>>,
    rel: PathBuf,
    fd: Arc<OwnedFd>,
    /// The node's kind and (device, inode), read at its first call: an fd's
    /// inode never changes, so neither can change while the fid lives.
    ident: OnceCell<(QidType, (u64, u64))>,
}

/// The node behind a fid, as a call needs it.
pub struct CallNode {
    pub kind: QidType,
    /// Held by the call while in flight, even if the fid is clunked meanwhile.
    pub fd: Arc<OwnedFd>,
    /// (device, inode): the key of the node's handler connection.
    pub key: (u64, u64),
}

/// The fids of one worker link.
pub struct Tree {
    root_dir: PathBuf,
    /// The canonical tree, which stat describes (protocol section 7).
    canonical: Option<OwnedFd>,
    user: String,
    fids: HashMap<u32, Node>,
    /// Attach roots held (each an fd; shared by the fids walked from it).
    roots: usize,
    /// At most this many fds held by fids (fid fds plus roots).
    fd_budget: usize,
}

/// Descriptors kept out of the fid budget: stdio, the front's link, the
/// runtime's own, and room for handler connections and listings.
pub const FD_RESERVE_MIN: u64 = 32;

/// The fids' share of a soft `RLIMIT_NOFILE` of `soft`: everything but a
/// reserve of 32 plus a quarter of the limit (handler connections grow with
/// the calls in flight). Without a limit (unlimited), `usize::MAX`.
pub fn fd_budget(soft: Option<u64>) -> usize {
    soft.map_or(usize::MAX, |soft| {
        let reserve = FD_RESERVE_MIN + soft / 4;
        usize::try_from(soft.saturating_sub(reserve)).unwrap_or(usize::MAX)
    })
}

fn open_beneath(root: &impl AsFd, rel: &Path) -> Result<OwnedFd, Errno> {
    let path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    openat2(
        root,
        path,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    )
}

impl Node {
    /// The canonical node at `rel` below this node's attach root, if visible.
    fn canonical(&self, rel: &Path) -> Option<rustix::fs::Stat> {
        self.canon.as_deref().and_then(|c| canonical_stat(c, rel))
    }
}

/// `fd`'s view of the canonical tree at `rel`: no symlink followed (the clone
/// has none), nothing outside it.
fn open_canonical(canon: &OwnedFd, rel: &Path) -> Result<OwnedFd, Errno> {
    let path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    openat2(
        canon,
        path,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
}

/// The canonical node's `fstat`, where the user can see it.
fn canonical_stat(canon: &OwnedFd, rel: &Path) -> Option<rustix::fs::Stat> {
    let fd = open_canonical(canon, rel).ok()?;
    rustix::fs::fstat(&fd).ok()
}

/// The clone node's qid: its kind from the clone node (`fd`), its identity
/// and version from the canonical node it was made from when that is known.
/// What a node of this mode is in an RPC tree; `None` for FIFOs, devices and
/// dangling symlinks, which are not nodes of one.
fn kind_of(mode: u32) -> Option<QidType> {
    match FileType::from_raw_mode(mode) {
        FileType::Directory => Some(QidType::Dir),
        FileType::RegularFile | FileType::Socket => Some(QidType::Endpoint),
        _ => None,
    }
}

fn qid_of(
    fd: &OwnedFd,
    canonical: Option<&rustix::fs::Stat>,
) -> Result<(Qid, rustix::fs::Stat), Errno> {
    let own = rustix::fs::fstat(fd)?;
    let kind = kind_of(own.st_mode).ok_or(Errno::NOENT)?;
    // A canonical node of another kind (replaced since the clone was made)
    // describes nothing here.
    let same_kind = |c: &&rustix::fs::Stat| {
        (FileType::from_raw_mode(c.st_mode) == FileType::Directory) == (kind == QidType::Dir)
    };
    let st = *canonical.filter(same_kind).unwrap_or(&own);
    let qid = Qid {
        kind,
        path: st.st_ino,
        version: u64::try_from(st.st_mtime).unwrap_or(0),
    };
    Ok((qid, st))
}

fn stat_of(
    fd: &OwnedFd,
    name: String,
    canonical: Option<&rustix::fs::Stat>,
) -> Result<Stat, Errno> {
    let (qid, st) = qid_of(fd, canonical)?;
    Ok(Stat {
        qid,
        name,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        owner: super::names::user_name(st.st_uid),
        group: super::names::group_name(st.st_gid),
        mtime: st.st_mtime,
        label: label_of(fd),
    })
}

/// The node's SELinux label, as the kernel checks it on a call: the type the
/// monitor gave its clone node, at the user's level. `None` without SELinux
/// (no `security.selinux` attribute) or when it cannot be read.
fn label_of(fd: &OwnedFd) -> Option<String> {
    use std::os::fd::AsRawFd;
    // An O_PATH fd takes no fgetxattr; its /proc link names the same inode.
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let mut buf = [0u8; 256];
    let n = rustix::fs::getxattr(path.as_str(), "security.selinux", &mut buf[..]).ok()?;
    let bytes = buf.get(..n)?;
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    std::str::from_utf8(&bytes[..end])
        .ok()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
}

impl Tree {
    /// A tree rooted at `tree_root`, for the worker of `user`, whose fids may
    /// hold `fd_budget(this process's soft RLIMIT_NOFILE)` descriptors.
    pub fn new(tree_root: PathBuf, user: String) -> Tree {
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        Tree::with_fd_budget(tree_root, user, fd_budget(soft))
    }

    /// The same with a budget of `fd_budget` descriptors for fids.
    pub fn with_fd_budget(tree_root: PathBuf, user: String, fd_budget: usize) -> Tree {
        Tree {
            root_dir: tree_root,
            canonical: None,
            user,
            fids: HashMap::new(),
            roots: 0,
            fd_budget,
        }
    }

    /// Describes nodes by the canonical tree at `root` (the monitor's
    /// `tree.root`): a node's qid, mode, owner, group and mtime are those of
    /// the canonical node the clone node was made from, so they are the same
    /// for every user and every session. The canonical tree is looked up with
    /// the user's rights, without following symlinks, and only ever `stat`ed;
    /// where a canonical node cannot be seen (changed since the clone was
    /// made), the clone node is described instead.
    pub fn canonical(mut self, root: &Path) -> Result<Tree, (Tree, std::io::Error)> {
        match rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => {
                self.canonical = Some(fd);
                Ok(self)
            }
            Err(e) => Err((self, e.into())),
        }
    }

    /// Refuses, before the kernel would say `EMFILE` to this and every other
    /// session of the user, a bind that needs `more` descriptors than are left.
    fn charge(&self, more: usize) -> Result<(), Refusal> {
        let held = self.fids.len() + self.roots;
        if held + more > self.fd_budget {
            return Err(Refusal::new(
                ErrorCode::LimitExceeded,
                format!(
                    "the user's worker holds {held} file descriptors for fids, its budget of {} \
                     (its soft RLIMIT_NOFILE less a reserve): clunk fids, or raise the user's \
                     nofile limit (limits.conf)",
                    self.fd_budget
                ),
            ));
        }
        Ok(())
    }

    /// Fids bound now.
    pub fn len(&self) -> usize {
        self.fids.len()
    }

    /// True when no fid is bound.
    pub fn is_empty(&self) -> bool {
        self.fids.is_empty()
    }

    fn unbound(&self, fid: u32) -> Result<(), Refusal> {
        if self.fids.contains_key(&fid) {
            Err(Refusal::new(
                ErrorCode::FidInUse,
                format!("fid {fid} is in use"),
            ))
        } else {
            Ok(())
        }
    }

    fn node(&self, fid: u32) -> Result<&Node, Refusal> {
        self.fids
            .get(&fid)
            .ok_or_else(|| Refusal::new(ErrorCode::BadFid, format!("fid {fid} is not bound")))
    }

    /// Binds `fid` to `aname` (an absolute path in the tree) for `uname`, who
    /// must be this worker's user.
    pub fn attach(&mut self, fid: u32, uname: &str, aname: &str) -> Result<Qid, Refusal> {
        if uname != self.user {
            // The front routes by user; a mismatch is a front bug, never allowed.
            return Err(Refusal::new(
                ErrorCode::PermissionDenied,
                format!("this worker serves {}, not {uname}", self.user),
            ));
        }
        self.unbound(fid)?;
        // The attach root, the fid's own descriptor and the canonical root.
        self.charge(3)?;
        srpc_proto::validate_path(aname, u32::MAX)
            .map_err(|e| Refusal::new(ErrorCode::Malformed, format!("aname: {e}")))?;
        let tree = rustix::fs::open(
            &self.root_dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Refusal::from_errno(e, "tree root"))?;
        let rel = aname.trim_start_matches('/');
        let root =
            open_beneath(&tree, Path::new(rel)).map_err(|e| Refusal::from_errno(e, aname))?;
        let canon_root = self
            .canonical
            .as_ref()
            .and_then(|c| canonical_stat(c, Path::new(rel)));
        let (qid, _) =
            qid_of(&root, canon_root.as_ref()).map_err(|e| Refusal::from_errno(e, aname))?;
        if qid.kind != QidType::Dir {
            return Err(Refusal::new(
                ErrorCode::NotDirectory,
                format!("{aname}: not a directory"),
            ));
        }
        let fd = root
            .try_clone()
            .map_err(|e| Refusal::new(ErrorCode::Internal, format!("dup: {e}")))?;
        let canon = self
            .canonical
            .as_ref()
            .and_then(|c| open_canonical(c, Path::new(rel)).ok())
            .map(Arc::new);
        self.fids.insert(
            fid,
            Node {
                root: Arc::new(root),
                canon,
                rel: PathBuf::new(),
                fd: Arc::new(fd),
                ident: OnceCell::new(),
            },
        );
        self.roots += 1;
        Ok(qid)
    }

    /// Walks from `fid` through `names`; binds `newfid` only if every name was
    /// walked. Any failure is the kernel's refusal for the name at fault (no
    /// short 9P-style `Rwalk`: the client learns why).
    pub fn walk(&mut self, fid: u32, newfid: u32, names: &[String]) -> Result<Vec<Qid>, Refusal> {
        let from = self.node(fid)?;
        if newfid != fid {
            self.unbound(newfid)?;
            self.charge(1)?;
        }
        let root = Arc::clone(&from.root);
        let canon = from.canon.clone();
        let mut rel = from.rel.clone();
        let mut qids = Vec::with_capacity(names.len());
        let mut last = None;
        for (i, name) in names.iter().enumerate() {
            let at = |e: Errno| Refusal::from_errno(e, &names[..=i].join("/"));
            validate_name(name, u32::MAX)
                .map_err(|e| Refusal::new(ErrorCode::Malformed, format!("names[{i}]: {e}")))?;
            rel.push(name);
            let described = canon.as_deref().and_then(|c| canonical_stat(c, &rel));
            let step = open_beneath(&*root, &rel)
                .and_then(|fd| qid_of(&fd, described.as_ref()).map(|(q, _)| (q, fd)));
            match step {
                Ok((qid, fd)) => {
                    qids.push(qid);
                    last = Some(fd);
                }
                Err(e) => return Err(at(e)),
            }
        }
        let fd = match last {
            Some(fd) => Arc::new(fd),
            // A walk of no names names the same node: share its descriptor.
            None => Arc::clone(&self.node(fid)?.fd),
        };
        self.fids.insert(
            newfid,
            Node {
                root,
                canon,
                rel,
                fd,
                ident: OnceCell::new(),
            },
        );
        Ok(qids)
    }

    /// Describes the node behind `fid`, as the user sees it.
    pub fn stat(&self, fid: u32) -> Result<Stat, Refusal> {
        let node = self.node(fid)?;
        let name = node
            .rel
            .file_name()
            .map_or_else(|| "/".to_owned(), |n| n.to_string_lossy().into_owned());
        let described = node.canonical(&node.rel);
        stat_of(&node.fd, name, described.as_ref()).map_err(|e| Refusal::from_errno(e, "stat"))
    }

    /// What a call to `fid` needs of its node. One `fstat` per fid, at its
    /// first call; none after.
    pub fn node_fd(&self, fid: u32) -> Result<CallNode, Refusal> {
        let node = self.node(fid)?;
        let (kind, key) = if let Some(ident) = node.ident.get() {
            *ident
        } else {
            let st = rustix::fs::fstat(&*node.fd).map_err(|e| Refusal::from_errno(e, "stat"))?;
            let kind =
                kind_of(st.st_mode).ok_or_else(|| Refusal::from_errno(Errno::NOENT, "stat"))?;
            *node.ident.get_or_init(|| (kind, (st.st_dev, st.st_ino)))
        };
        Ok(CallNode {
            kind,
            fd: Arc::clone(&node.fd),
            key,
        })
    }

    /// The entries of the directory behind `fid` that the user can see, by
    /// name. Reading the directory needs the user's read permission on it.
    pub fn list(&self, fid: u32) -> Result<Vec<Stat>, Refusal> {
        let node = self.node(fid)?;
        let what = node.rel.display().to_string();
        let dir = openat2(
            &*node.root,
            if node.rel.as_os_str().is_empty() {
                Path::new(".")
            } else {
                &node.rel
            },
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| Refusal::from_errno(e, &what))?;
        // `Dir::read_from` would reopen "." through the fd, a lookup that
        // needs search permission: a directory the user may read but not
        // search must still list (its entries are then all left out, as
        // section 12.2 says). A dup needs no permission.
        let entries = dir
            .try_clone()
            .map_err(|e| Refusal::new(ErrorCode::Internal, format!("dup: {e}")))
            .and_then(|fd| rustix::fs::Dir::new(fd).map_err(|e| Refusal::from_errno(e, &what)))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Refusal::from_errno(e, &what))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "." || name == ".." {
                continue;
            }
            let described = node.canonical(&node.rel.join(&name));
            let stat = open_beneath(&dir, Path::new(&name))
                .and_then(|fd| stat_of(&fd, name, described.as_ref()));
            if let Ok(stat) = stat {
                out.push(stat);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Frees `fid`.
    pub fn clunk(&mut self, fid: u32) -> Result<(), Refusal> {
        let node = self
            .fids
            .remove(&fid)
            .ok_or_else(|| Refusal::new(ErrorCode::BadFid, format!("fid {fid} is not bound")))?;
        // The last fid of an attach closes its root.
        if Arc::strong_count(&node.root) == 1 {
            self.roots = self.roots.saturating_sub(1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A scratch tree, removed when dropped (also when the test fails).
    struct Scratch(PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    impl std::ops::Deref for Scratch {
        type Target = PathBuf;
        fn deref(&self) -> &PathBuf {
            &self.0
        }
    }

    fn tmp_tree() -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "srpc-tree-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/b/echo"), b"#!/bin/sh\n").unwrap();
        std::fs::write(dir.join("outside-secret"), b"x").unwrap();
        Scratch(dir)
    }

    fn rand_suffix() -> u64 {
        use std::hash::{BuildHasher, RandomState};
        RandomState::new().hash_one(0u8)
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn attach_walk_stat_clunk() {
        let dir = tmp_tree();
        let mut t = Tree::new(dir.clone(), "u".into());
        let root = t.attach(1, "u", "/a").unwrap();
        assert_eq!(root.kind, QidType::Dir);
        let qids = t.walk(1, 2, &names(&["b", "echo"])).unwrap();
        assert_eq!(qids.len(), 2);
        assert_eq!(qids[1].kind, QidType::Endpoint);
        let st = t.stat(2).unwrap();
        assert_eq!(st.name, "echo");
        assert_eq!(st.owner, "root");
        assert_eq!(t.stat(1).unwrap().name, "/");
        // A walk failing after its first name is an error too; newfid unbound.
        let e = t.walk(1, 3, &names(&["b", "nope"])).unwrap_err();
        assert_eq!((e.code, e.errno), (ErrorCode::NoSuchNode, Some(2)));
        assert!(e.message.starts_with("b/nope: "), "{}", e.message);
        assert_eq!(t.stat(3).unwrap_err().code, ErrorCode::BadFid);
        // First element fails: an error with the kernel's errno.
        let e = t.walk(1, 3, &names(&["nope"])).unwrap_err();
        assert_eq!((e.code, e.errno), (ErrorCode::NoSuchNode, Some(2)));
        // Empty walk clones; walking onto a bound fid is refused.
        t.walk(1, 4, &[]).unwrap();
        assert_eq!(t.walk(1, 2, &[]).unwrap_err().code, ErrorCode::FidInUse);
        t.clunk(4).unwrap();
        assert_eq!(t.clunk(4).unwrap_err().code, ErrorCode::BadFid);
        let names: Vec<String> = t.list(1).unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["b"]);
        assert_eq!(t.list(2).unwrap_err().code, ErrorCode::NotDirectory);
    }

    #[test]
    fn stat_shows_the_nodes_selinux_label_and_none_without_one() {
        let dir = tmp_tree();
        // Without SELinux, root may still set the attribute (tmpfs and ext4
        // keep it), which is what the monitor's labelling leaves on a clone.
        let label = "system_u:object_r:srpc_endpoint_t:s0:c1,c2";
        let set = rustix::fs::setxattr(
            dir.join("a/b/echo"),
            "security.selinux",
            format!("{label}\0").as_bytes(),
            rustix::fs::XattrFlags::empty(),
        );
        let mut t = Tree::new(dir.clone(), "u".into());
        t.attach(1, "u", "/a").unwrap();
        t.walk(1, 2, &names(&["b", "echo"])).unwrap();
        if std::path::Path::new("/sys/fs/selinux/enforce").exists() {
            // The kernel labels every node; vm-tests check which label.
            assert!(t.stat(1).unwrap().label.is_some());
            return;
        }
        set.unwrap();
        assert_eq!(t.stat(2).unwrap().label.as_deref(), Some(label));
        assert_eq!(t.stat(1).unwrap().label, None);
    }

    #[test]
    fn stat_walk_and_list_describe_the_canonical_node_not_the_clone() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let clone = tmp_tree();
        let canon = tmp_tree();
        let set_mode = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        };
        // The canonical endpoint as the admin made it; its clone node as the
        // monitor would: another inode, another mode, another time.
        set_mode(&canon.join("a/b/echo"), 0o750);
        set_mode(&clone.join("a/b/echo"), 0o666);
        let old = rustix::fs::Timespec {
            tv_sec: 1_000_000,
            tv_nsec: 0,
        };
        let times = rustix::fs::Timestamps {
            last_access: old,
            last_modification: old,
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            canon.join("a/b/echo"),
            &times,
            rustix::fs::AtFlags::empty(),
        )
        .unwrap();
        let canon_echo = std::fs::metadata(canon.join("a/b/echo")).unwrap();
        let canon_b = std::fs::metadata(canon.join("a/b")).unwrap();
        let mut t = Tree::new(clone.to_path_buf(), "u".into())
            .canonical(&canon)
            .map_err(|(_, e)| e)
            .unwrap();
        t.attach(1, "u", "/a").unwrap();
        let qids = t.walk(1, 2, &names(&["b", "echo"])).unwrap();
        assert_eq!(qids[0].path, canon_b.ino());
        assert_eq!(qids[1].path, canon_echo.ino());
        assert_eq!(qids[1].version, 1_000_000);
        let st = t.stat(2).unwrap();
        assert_eq!(
            (st.mode, st.mtime, st.qid.kind),
            (0o750, 1_000_000, QidType::Endpoint)
        );
        let listed = t
            .walk(1, 3, &names(&["b"]))
            .and_then(|_| t.list(3))
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].qid.path, listed[0].mode),
            (canon_echo.ino(), 0o750)
        );
        // Gone from the canonical tree since the clone was made: the clone
        // node is what there is to describe.
        std::fs::remove_file(canon.join("a/b/echo")).unwrap();
        let st = t.stat(2).unwrap();
        assert_eq!(st.mode, 0o666);
        assert_eq!(
            st.qid.path,
            std::fs::metadata(clone.join("a/b/echo")).unwrap().ino()
        );
    }

    #[test]
    fn fids_are_refused_past_the_fd_budget_before_the_kernel_runs_out() {
        assert_eq!(fd_budget(Some(64)), 16);
        assert_eq!(fd_budget(Some(1024)), 736);
        assert_eq!(fd_budget(None), usize::MAX);
        let dir = tmp_tree();
        // An attach holds two fds (root and fid), a walked fid one more.
        let mut t = Tree::with_fd_budget(dir.clone(), "u".into(), 4);
        t.attach(1, "u", "/a").unwrap();
        t.walk(1, 2, &names(&["b"])).unwrap();
        t.walk(1, 3, &names(&["b", "echo"])).unwrap();
        let e = t.walk(1, 4, &names(&["b"])).unwrap_err();
        assert_eq!(e.code, ErrorCode::LimitExceeded);
        assert!(e.message.contains("budget of 4"), "{}", e.message);
        assert_eq!(
            t.attach(5, "u", "/").unwrap_err().code,
            ErrorCode::LimitExceeded
        );
        // Walking a fid onto itself needs nothing more.
        t.walk(2, 2, &names(&["echo"])).unwrap();
        // Clunking the attach fid keeps its root (fids 2, 3 still use it).
        t.clunk(1).unwrap();
        t.walk(2, 4, &[]).unwrap();
        assert_eq!(
            t.walk(2, 5, &[]).unwrap_err().code,
            ErrorCode::LimitExceeded
        );
        // The last fid of the attach frees its root: room for a new attach.
        for fid in [2, 3, 4] {
            t.clunk(fid).unwrap();
        }
        t.attach(6, "u", "/").unwrap();
    }

    #[test]
    fn symlinks_that_leave_the_attach_root_are_refused() {
        let dir = tmp_tree();
        symlink("../outside-secret", dir.join("a/up")).unwrap();
        symlink("/etc/passwd", dir.join("a/abs")).unwrap();
        symlink("b/echo", dir.join("a/inside")).unwrap();
        let mut t = Tree::new(dir.clone(), "u".into());
        t.attach(1, "u", "/a").unwrap();
        let e = t.walk(1, 2, &names(&["up"])).unwrap_err();
        assert_eq!((e.code, e.errno), (ErrorCode::PermissionDenied, Some(18)));
        let e = t.walk(1, 2, &names(&["abs"])).unwrap_err();
        assert_eq!(e.code, ErrorCode::PermissionDenied);
        // A symlink that stays inside is an ordinary path.
        let q = t.walk(1, 2, &names(&["inside"])).unwrap();
        assert_eq!(q[0].kind, QidType::Endpoint);
        // `..` never reaches the kernel.
        assert_eq!(
            t.walk(1, 3, &names(&[".."])).unwrap_err().code,
            ErrorCode::Malformed
        );
    }

    #[test]
    fn attach_checks_user_and_kind() {
        let dir = tmp_tree();
        let mut t = Tree::new(dir.clone(), "u".into());
        assert_eq!(
            t.attach(1, "v", "/").unwrap_err().code,
            ErrorCode::PermissionDenied
        );
        assert_eq!(
            t.attach(1, "u", "/a/b/echo").unwrap_err().code,
            ErrorCode::NotDirectory
        );
        assert_eq!(
            t.attach(1, "u", "/missing").unwrap_err().code,
            ErrorCode::NoSuchNode
        );
    }
}
