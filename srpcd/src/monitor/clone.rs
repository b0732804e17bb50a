//! The paper's attach: a user's session tree, cloned from the canonical tree.
//!
//! Directories become directories and endpoints become Unix sockets the
//! monitor binds; each gets the owner, group, mode and ACL that
//! [`super::attrs`] computes from its canonical node, so `chmod`, `chown`,
//! `setfacl` and group membership on the canonical tree decide, through the
//! kernel, who may call.
//!
//! Root must never be turned against the host here, so:
//! - `<runtime>/users/U` is root's, mode 0700 plus an ACL entry giving U
//!   search only, and no node below it is owned by U or writable by anyone
//!   but root: U cannot rename, plant or chmod anything in its clone;
//! - every operation is relative to a directory fd the monitor opened itself,
//!   with no symlink followed ([`super::fsat`]); sockets are made in root's
//!   own staging directory, given their attributes there, and renamed into
//!   place;
//! - the canonical tree is read the same way, and a descriptor file through
//!   an `O_NOFOLLOW` fd with a size cap.
//!
//! What a canonical node is cloned as is [`super::classify`]'s decision (the
//! same `srpcctl check-tree` reports): symlinks, hard-linked files and
//! anything but directories, executables and descriptors are not cloned, so
//! a clone holds only directories and sockets made here.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustix::fs::FileType;
use tokio::task::JoinHandle;

use super::attrs::{self, Canonical, NodeKind};
use super::classify::{self, Classified, Effect, Kind};
use super::fsat;
use super::labeling::{NodeTypes, UserLabels, UserSecurity};
use crate::users::Account;

/// What an endpoint is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointKind {
    /// An executable, started per user on the first call.
    Handler(PathBuf),
    /// A service socket that is handed each connection.
    Service(PathBuf),
}

impl EndpointKind {
    fn node(&self) -> NodeKind {
        match self {
            EndpointKind::Handler(_) => NodeKind::Handler,
            EndpointKind::Service(_) => NodeKind::Service,
        }
    }
}

/// A canonical node as cloned: any change re-creates the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    dev: u64,
    ino: u64,
    /// Moves with every chmod, chown and ACL change too.
    ctime: (i64, i64),
    attrs: Canonical,
    /// The clone node's SELinux label (a new file-context rule changes it).
    label: Option<String>,
}

/// Why a clone could not be made. The first two are the client's: the
/// attach path names no directory of the canonical tree (section 10.4 of the
/// protocol); anything else is the server's fault, for its log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloneError {
    /// An element of the attach path does not exist (symlinks, which are never
    /// cloned, count as absent).
    #[error("{0}: no such node")]
    NoSuchNode(String),
    /// An element of the attach path is not a directory.
    #[error("{0}: not a directory")]
    NotADirectory(String),
    /// A fault of the server's: its details stay in the log.
    #[error("{0}")]
    Internal(String),
}

impl From<String> for CloneError {
    fn from(message: String) -> CloneError {
        CloneError::Internal(message)
    }
}

/// One endpoint socket and the task serving it.
struct Endpoint {
    kind: EndpointKind,
    canonical: Fingerprint,
    /// The socket's inode in the clone.
    ino: u64,
    task: JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // Aborting drops the task's handler child, which kills it.
        self.task.abort();
    }
}

/// Where clones are made: directory fds opened once, at start.
pub struct Cloner {
    /// The canonical tree.
    tree_root: PathBuf,
    /// `<runtime>/users` as a path, for the worker's `--tree-root`.
    users_path: PathBuf,
    /// `<runtime>/users`: root's, 0711.
    users: Arc<OwnedFd>,
    /// `<runtime>/staging`: root's, 0700; sockets are made here, and clones
    /// being removed wait here.
    staging: Arc<OwnedFd>,
    /// Per-user handlers exit after this long without connections.
    handler_idle_secs: u32,
    /// Names in the staging directory.
    serial: AtomicU64,
    /// Opens the file-context rules for a labelled sync (with SELinux).
    file_types: Option<OpenTypes>,
    /// Where handlers report their starts and ends (the monitor's loop).
    reports: super::handlers::Reports,
}

/// Opens the node types for one sync.
pub type OpenTypes = Box<dyn Fn() -> Result<Box<dyn NodeTypes>, String> + Send + std::marker::Sync>;

/// One user's clone.
pub struct UserClone {
    name: String,
    endpoints: HashMap<PathBuf, Endpoint>,
}

/// Who the handlers of a clone run as.
#[derive(Clone)]
pub struct RunAs {
    /// The account.
    pub account: Account,
    /// PAM's environment for the user's processes.
    pub env: Vec<(String, String)>,
    /// The user's SELinux context and labels (`None` without SELinux).
    pub security: Option<UserSecurity>,
}

impl RunAs {
    fn labels(&self) -> Option<&UserLabels> {
        self.security.as_ref().map(|s| &s.labels)
    }
}

/// What one sync works on.
struct Sync<'a> {
    cloner: &'a Cloner,
    clone: &'a mut UserClone,
    run_as: &'a RunAs,
    /// The node types, when the clone is labelled.
    types: Option<Box<dyn NodeTypes>>,
}

impl Cloner {
    /// Opens `runtime` (made root's, 0755, by startup) and makes `users` and
    /// `staging` afresh below it: whatever an earlier run left there goes,
    /// removed without following anything in it.
    pub fn new(
        tree_root: PathBuf,
        runtime: &Path,
        handler_idle_secs: u32,
        file_types: Option<OpenTypes>,
        reports: super::handlers::Reports,
    ) -> io::Result<Cloner> {
        let run = fsat::open_root(runtime)?;
        let root_only = |mode: u32| attrs::CloneAttrs {
            uid: 0,
            gid: 0,
            mode,
            acl: None,
        };
        // `monitor` held the front's socket before srpcd handed the front a
        // socketpair; it goes too.
        for name in ["users", "staging", "monitor"] {
            fsat::remove(run.as_fd(), OsStr::new(name), 0)?;
        }
        let users = fsat::ensure_dir(run.as_fd(), OsStr::new("users"))?;
        fsat::apply(users.as_fd(), &root_only(0o711))?;
        let staging = fsat::ensure_dir(run.as_fd(), OsStr::new("staging"))?;
        fsat::apply(staging.as_fd(), &root_only(0o700))?;
        Ok(Cloner {
            tree_root,
            users_path: runtime.join("users"),
            users: Arc::new(users),
            staging: Arc::new(staging),
            handler_idle_secs,
            serial: AtomicU64::new(0),
            file_types,
            reports,
        })
    }

    /// The root of `user`'s clone, where the worker walks.
    pub fn tree_of(&self, user: &str) -> PathBuf {
        self.users_path.join(user).join("tree")
    }

    fn staging_name(&self, what: &str) -> OsString {
        OsString::from(format!(
            "{what}.{}",
            self.serial.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// Makes or brings up to date the clone of the subtree at `aname` for the
    /// user: new canonical nodes appear, removed ones go, attributes follow
    /// the canonical tree.
    pub fn sync(
        &self,
        clone: &mut Option<UserClone>,
        run_as: &RunAs,
        aname: &str,
    ) -> Result<(), CloneError> {
        let account = &run_as.account;
        // The name becomes a directory name: it must be one plain element
        // (PAM modules may rename the user).
        srpc_proto::validate_name(&account.name, srpc_proto::HARD_LIMITS.max_name)
            .map_err(|e| format!("user name {:?}: {e}", account.name))?;
        let name = OsStr::new(&account.name);
        let here = |what: &'static str| {
            let user = account.name.clone();
            move |e: io::Error| format!("clone of {user}: {what}: {e}")
        };
        let session = run_as.labels().map(UserLabels::session_dir);
        let dir = fsat::ensure_dir_labelled(self.users.as_fd(), name, session.as_deref())
            .map_err(here("users/<user>"))?;
        fsat::apply(dir.as_fd(), &attrs::private_to(account.uid, 0))
            .map_err(here("users/<user>"))?;
        let clone = clone.get_or_insert_with(|| UserClone {
            name: account.name.clone(),
            endpoints: HashMap::new(),
        });
        let mut canon = fsat::open_root(&self.tree_root)
            .map_err(|e| format!("{}: {e}", self.tree_root.display()))?;
        let types = match (run_as.labels(), &self.file_types) {
            (Some(_), Some(open)) => Some(open()?),
            (Some(_), None) => {
                return Err(CloneError::Internal(
                    "a labelled clone without file contexts".into(),
                ))
            }
            (None, _) => None,
        };
        let mut sync = Sync {
            cloner: self,
            clone,
            run_as,
            types,
        };
        let mut target = sync.make_dir(
            canon.as_fd(),
            dir.as_fd(),
            OsStr::new("tree"),
            Path::new(""),
        )?;
        // The directories down to the attach point, as in the canonical tree.
        let mut rel = PathBuf::new();
        for part in Path::new(aname).components() {
            let Component::Normal(part) = part else {
                continue;
            };
            rel.push(part);
            let next = fsat::open_dir(canon.as_fd(), part).map_err(|e| {
                let at = format!("/{}", rel.display());
                match rustix::io::Errno::from_io_error(&e) {
                    Some(rustix::io::Errno::NOENT | rustix::io::Errno::LOOP) => {
                        CloneError::NoSuchNode(at)
                    }
                    Some(rustix::io::Errno::NOTDIR) => CloneError::NotADirectory(at),
                    _ => CloneError::Internal(format!(
                        "{}: {e}",
                        self.tree_root.join(&rel).display()
                    )),
                }
            })?;
            let next_target = sync.make_dir(next.as_fd(), target.as_fd(), part, &rel)?;
            canon = next;
            target = next_target;
        }
        Ok(sync.dir(
            canon.as_fd(),
            target.as_fd(),
            &rel,
            rel.components().count(),
        )?)
    }

    /// Removes the clone and stops its handlers. The directory is renamed into
    /// root's staging directory at once (so a new login makes a fresh one) and
    /// emptied by the returned job, which may take long and runs off the loop.
    pub fn remove(&self, clone: UserClone) -> impl FnOnce() + Send + 'static {
        let name = clone.name.clone();
        drop(clone);
        let gone = self.staging_name("gone");
        let moved = fsat::rename(
            self.users.as_fd(),
            OsStr::new(&name),
            self.staging.as_fd(),
            &gone,
        );
        let staging = Arc::clone(&self.staging);
        move || {
            let removed = moved.and_then(|()| fsat::remove(staging.as_fd(), &gone, 0));
            if let Err(e) = removed {
                tracing::warn!(user = name, "removing the clone: {e}");
            }
        }
    }
}

impl Sync<'_> {
    /// The clone directory `name` below `parent` for the canonical directory
    /// `canon` (at `rel` in the tree), made if missing, labelled from its first
    /// moment, with the attributes of `canon`.
    fn make_dir(
        &mut self,
        canon: BorrowedFd<'_>,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        rel: &Path,
    ) -> Result<OwnedFd, String> {
        let (_, canonical, label) = classify::directory(canon, &|mode| self.label(rel, mode))
            .map_err(|e| format!("/{}: {e}", rel.display()))?;
        self.make_dir_as(parent, name, rel, &canonical, label.as_deref())
    }

    /// [`Sync::make_dir`] with the canonical directory's attributes and the
    /// clone label already read (by [`classify::classify`]).
    fn make_dir_as(
        &self,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        rel: &Path,
        canonical: &Canonical,
        label: Option<&str>,
    ) -> Result<OwnedFd, String> {
        let at = |e: &dyn std::fmt::Display| format!("/{}: {e}", rel.display());
        let target = fsat::ensure_dir_labelled(parent, name, label).map_err(|e| at(&e))?;
        let attrs = attrs::translate(canonical, NodeKind::Dir, self.run_as.account.uid)
            .map_err(|e| at(&e))?;
        fsat::apply(target.as_fd(), &attrs).map_err(|e| at(&e))?;
        Ok(target)
    }

    /// The clone node's label for the canonical node at `rel` of `mode`
    /// (`None` without SELinux).
    fn label(&self, rel: &Path, mode: u32) -> Result<Option<String>, String> {
        let (Some(labels), Some(types)) = (self.run_as.labels(), self.types.as_deref()) else {
            return Ok(None);
        };
        let canonical = if rel.as_os_str().is_empty() {
            self.cloner.tree_root.clone()
        } else {
            self.cloner.tree_root.join(rel)
        };
        labels
            .node(types, &canonical, mode)
            .and_then(classify::known_label)
            .map(Some)
    }

    fn dir(
        &mut self,
        canon: BorrowedFd<'_>,
        target: BorrowedFd<'_>,
        rel: &Path,
        depth: usize,
    ) -> Result<(), String> {
        let at = |e: io::Error| format!("{}: {e}", rel.display());
        let mut keep: Vec<OsString> = Vec::new();
        for entry in classify::entries(canon).map_err(|e| format!("/{}: {e}", rel.display()))? {
            let name = fsat::os(&entry);
            let child = rel.join(name);
            let path = self.cloner.tree_root.join(&child);
            let Classified { verdict, .. } =
                classify::classify(canon, name, &path, depth + 1, &|mode| {
                    self.label(&child, mode)
                });
            let node = match verdict {
                Ok(node) => node,
                Err(p) if p.effect == Effect::Refuse => {
                    return Err(format!("{}: {p}", path.display()))
                }
                Err(p) => {
                    tracing::warn!("{}: not cloned: {p}", path.display());
                    continue;
                }
            };
            let kind = match node.kind {
                Kind::Dir => {
                    let sub_target =
                        self.make_dir_as(target, name, &child, &node.attrs, node.label.as_deref())?;
                    self.dir(node.fd.as_fd(), sub_target.as_fd(), &child, depth + 1)?;
                    keep.push(name.to_owned());
                    continue;
                }
                Kind::Handler(exe) => EndpointKind::Handler(exe),
                Kind::Service(socket) => EndpointKind::Service(socket),
            };
            let st = node.st;
            let fingerprint = Fingerprint {
                dev: st.st_dev,
                ino: st.st_ino,
                ctime: (st.st_ctime, i64::try_from(st.st_ctime_nsec).unwrap_or(0)),
                attrs: node.attrs,
                label: node.label,
            };
            self.endpoint(target, name, &child, kind, fingerprint)?;
            keep.push(name.to_owned());
        }
        // What the canonical tree no longer has goes from the clone too.
        for entry in fsat::names(target).map_err(at)? {
            let name = fsat::os(&entry);
            if keep.iter().any(|k| k == name) {
                continue;
            }
            let child = rel.join(name);
            self.clone.endpoints.retain(|p, _| !p.starts_with(&child));
            fsat::remove(target, name, depth).map_err(at)?;
        }
        Ok(())
    }

    fn endpoint(
        &mut self,
        target: BorrowedFd<'_>,
        name: &OsStr,
        rel: &Path,
        kind: EndpointKind,
        canonical: Fingerprint,
    ) -> Result<(), String> {
        let at = |e: &dyn std::fmt::Display| format!("{}: {e}", rel.display());
        let attrs = attrs::translate(&canonical.attrs, kind.node(), self.run_as.account.uid)
            .map_err(|e| at(&e))?;
        // Unchanged, and the socket still the one we made: nothing to do.
        if let Some(e) = self.clone.endpoints.get(rel) {
            let in_place = fsat::open_node(target, name)
                .and_then(|fd| fsat::stat(fd.as_fd()))
                .is_ok_and(|st| st.st_ino == e.ino && fsat::kind(&st) == FileType::Socket);
            if e.kind == kind && e.canonical == canonical && in_place {
                return Ok(());
            }
        }
        // Any change makes a new socket and stops the old one's handler, so
        // connections made under the old permissions end: the kernel checks
        // every caller again.
        self.clone.endpoints.remove(rel);
        let staging = self.cloner.staging.as_fd();
        let tmp = self.cloner.staging_name("sock");
        let label = canonical.label.as_deref();
        let socket = self.run_as.labels().map(UserLabels::listener);
        let bound = fsat::labelled(label, socket, || {
            UnixListener::bind(fsat::path_in(staging, &tmp))
        });
        let made = bound.and_then(|listener| {
            let node = fsat::open_node(staging, &tmp)?;
            fsat::apply(node.as_fd(), &attrs)?;
            let ino = fsat::stat(node.as_fd())?.st_ino;
            if fsat::stat_at(target, name).is_ok_and(|st| fsat::kind(&st) == FileType::Directory) {
                fsat::remove(target, name, 0)?;
            }
            fsat::rename(staging, &tmp, target, name)?;
            listener.set_nonblocking(true)?;
            Ok((listener, ino))
        });
        let (listener, ino) = match made {
            Ok(made) => made,
            Err(e) => {
                let _ = fsat::remove(staging, &tmp, 0);
                return Err(at(&e));
            }
        };
        let endpoint = format!("/{}", rel.display());
        let task = match &kind {
            EndpointKind::Handler(exe) => tokio::spawn(super::handlers::serve_handler(
                listener,
                exe.clone(),
                endpoint,
                self.run_as.clone(),
                self.cloner.handler_idle_secs,
                self.cloner.reports.clone(),
            )),
            EndpointKind::Service(service) => tokio::spawn(super::handlers::serve_service(
                listener,
                service.clone(),
                endpoint,
            )),
        };
        self.clone.endpoints.insert(
            rel.to_owned(),
            Endpoint {
                kind,
                canonical,
                ino,
                task,
            },
        );
        Ok(())
    }
}
