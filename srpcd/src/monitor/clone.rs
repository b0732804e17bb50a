//! The paper's attach: a user's session tree, cloned from the canonical tree.
//!
//! Directories are copied with the canonical owner, group and mode. Each
//! endpoint becomes a Unix socket that the monitor owns, with the canonical
//! owner and group, and a mode that gives read and write (what `connect`
//! needs) to each class that may *execute* a handler executable (executing it
//! is calling it) or *read* a service descriptor. So `chmod`, `chown` and
//! group membership on the canonical tree decide, through the kernel, who may
//! call.
//!
//! The clone of user U lives in `<runtime>/users/U/tree`; `<runtime>/users/U`
//! is U's own and not searchable by anyone else, so no other user can reach U's
//! sockets. Symlinks and hard-linked files in the canonical tree are not
//! cloned: a clone holds only directories and sockets made here.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use tokio::task::JoinHandle;

use crate::users::Account;

/// What a non-executable endpoint file holds: where its service listens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Descriptor {
    /// The service's fd-passing socket.
    service: PathBuf,
}

/// What an endpoint is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointKind {
    /// An executable, started per user on the first call.
    Handler(PathBuf),
    /// A service socket that is handed each connection.
    Service(PathBuf),
}

/// One endpoint socket and the task serving it.
struct Endpoint {
    kind: EndpointKind,
    /// The canonical node's device, inode, owner, group, mode and change time
    /// (which moves with ACL changes too) when cloned.
    canonical: (u64, u64, u32, u32, u32, i64, i64),
    task: JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // Aborting drops the task's handler child, which kills it.
        self.task.abort();
    }
}

/// How clones are made.
pub struct Cloner {
    /// The canonical tree.
    pub tree_root: PathBuf,
    /// `<runtime>/users`.
    pub users_dir: PathBuf,
    /// Per-user handlers exit after this long without connections.
    pub handler_idle_secs: u32,
}

/// One user's clone.
pub struct UserClone {
    dir: PathBuf,
    endpoints: HashMap<PathBuf, Endpoint>,
}

/// Who the handlers of a clone run as.
#[derive(Clone)]
pub struct RunAs {
    /// The account.
    pub account: Account,
    /// PAM's environment for the user's processes.
    pub env: Vec<(String, String)>,
}

impl Cloner {
    /// The root of `user`'s clone, where the worker walks.
    pub fn tree_of(&self, user: &str) -> PathBuf {
        self.users_dir.join(user).join("tree")
    }

    /// Makes or brings up to date the clone of the subtree at `aname` for the
    /// user: new canonical nodes appear, removed ones go, owners and modes
    /// follow the canonical tree.
    pub fn sync(
        &self,
        clone: &mut Option<UserClone>,
        run_as: &RunAs,
        aname: &str,
    ) -> Result<(), String> {
        let account = &run_as.account;
        // The name becomes a directory name: it must be one plain element
        // (PAM modules may rename the user).
        srpc_proto::validate_name(&account.name, srpc_proto::HARD_LIMITS.max_name)
            .map_err(|e| format!("user name {:?}: {e}", account.name))?;
        ensure_dir(&self.users_dir, 0o711, 0, 0)?;
        let dir = self.users_dir.join(&account.name);
        // The user's own, read and search only: nobody else can reach the
        // sockets below, and the user cannot rearrange them.
        ensure_dir(&dir, 0o500, account.uid, account.gid)?;
        let clone = clone.get_or_insert_with(|| UserClone {
            dir: dir.clone(),
            endpoints: HashMap::new(),
        });
        let tree = dir.join("tree");
        copy_dir_attrs(&self.tree_root, &tree)?;
        // The directories down to the attach point, as in the canonical tree.
        let mut rel = PathBuf::new();
        for part in Path::new(aname).components() {
            let Component::Normal(name) = part else {
                continue;
            };
            rel.push(name);
            let canon = self.tree_root.join(&rel);
            let meta =
                fs::symlink_metadata(&canon).map_err(|e| format!("{}: {e}", canon.display()))?;
            if !meta.is_dir() {
                return Err(format!("{}: not a directory", canon.display()));
            }
            copy_dir_attrs(&canon, &tree.join(&rel))?;
        }
        self.sync_dir(clone, run_as, &rel)
    }

    fn sync_dir(&self, clone: &mut UserClone, run_as: &RunAs, rel: &Path) -> Result<(), String> {
        let canon = self.tree_root.join(rel);
        let target = clone.dir.join("tree").join(rel);
        let mut keep = Vec::new();
        let entries = fs::read_dir(&canon).map_err(|e| format!("{}: {e}", canon.display()))?;
        for entry in entries.flatten() {
            let name = PathBuf::from(entry.file_name());
            let child = rel.join(&name);
            let path = canon.join(&name);
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                copy_dir_attrs(&path, &target.join(&name))?;
                self.sync_dir(clone, run_as, &child)?;
                keep.push(name);
                continue;
            }
            let Some(kind) = endpoint_kind(&path, &meta) else {
                continue;
            };
            self.sync_endpoint(clone, run_as, &child, kind, &meta)?;
            keep.push(name);
        }
        // What the canonical tree no longer has goes from the clone too.
        if let Ok(existing) = fs::read_dir(&target) {
            for entry in existing.flatten() {
                let name = PathBuf::from(entry.file_name());
                if keep.contains(&name) {
                    continue;
                }
                let child = rel.join(&name);
                clone.endpoints.retain(|p, _| !p.starts_with(&child));
                let path = target.join(&name);
                let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
            }
        }
        Ok(())
    }

    fn sync_endpoint(
        &self,
        clone: &mut UserClone,
        run_as: &RunAs,
        rel: &Path,
        kind: EndpointKind,
        meta: &fs::Metadata,
    ) -> Result<(), String> {
        let socket = clone.dir.join("tree").join(rel);
        let canonical = (
            meta.dev(),
            meta.ino(),
            meta.uid(),
            meta.gid(),
            meta.mode(),
            meta.ctime(),
            meta.ctime_nsec(),
        );
        // Any change makes a new socket and stops the old one's handler, so
        // connections made under the old permissions end: the kernel checks
        // every caller again.
        let same = clone
            .endpoints
            .get(rel)
            .is_some_and(|e| e.kind == kind && e.canonical == canonical);
        if !same {
            clone.endpoints.remove(rel);
            let _ = fs::remove_dir_all(&socket).or_else(|_| fs::remove_file(&socket));
            let listener =
                UnixListener::bind(&socket).map_err(|e| format!("{}: {e}", socket.display()))?;
            listener
                .set_nonblocking(true)
                .map_err(|e| format!("{}: {e}", socket.display()))?;
            let name = format!("/{}", rel.display());
            let task = match &kind {
                EndpointKind::Handler(exe) => tokio::spawn(super::handlers::serve_handler(
                    listener,
                    exe.clone(),
                    name,
                    run_as.clone(),
                    self.handler_idle_secs,
                )),
                EndpointKind::Service(service) => tokio::spawn(super::handlers::serve_service(
                    listener,
                    service.clone(),
                    name,
                )),
            };
            clone.endpoints.insert(
                rel.to_owned(),
                Endpoint {
                    kind,
                    canonical,
                    task,
                },
            );
        }
        // Permissions follow the canonical node at every sync.
        std::os::unix::fs::chown(&socket, Some(meta.uid()), Some(meta.gid()))
            .map_err(|e| format!("chown {}: {e}", socket.display()))?;
        let kind = kind_of(clone, rel);
        let mode = call_mode(&kind, meta.mode());
        fs::set_permissions(&socket, fs::Permissions::from_mode(mode))
            .map_err(|e| format!("chmod {}: {e}", socket.display()))?;
        let may = match kind {
            EndpointKind::Handler(_) => 0o1,
            EndpointKind::Service(_) => 0o4,
        };
        super::acl::copy(&self.tree_root.join(rel), &socket, may)
    }
}

impl UserClone {
    /// Removes the clone and stops its handlers.
    pub fn remove(self) {
        let dir = self.dir.clone();
        drop(self);
        if let Err(e) = fs::remove_dir_all(&dir) {
            tracing::warn!("removing {}: {e}", dir.display());
        }
    }
}

fn kind_of(clone: &UserClone, rel: &Path) -> EndpointKind {
    clone
        .endpoints
        .get(rel)
        .map_or(EndpointKind::Service(PathBuf::new()), |e| e.kind.clone())
}

/// The socket mode for a canonical endpoint: read and write (connect) for each
/// class that may execute a handler, or read a service descriptor.
pub fn call_mode(kind: &EndpointKind, canonical: u32) -> u32 {
    let bits: [(u32, u32); 3] = match kind {
        EndpointKind::Handler(_) => [(0o100, 0o600), (0o010, 0o060), (0o001, 0o006)],
        EndpointKind::Service(_) => [(0o400, 0o600), (0o040, 0o060), (0o004, 0o006)],
    };
    bits.iter()
        .filter(|(may, _)| canonical & may != 0)
        .fold(0, |mode, (_, rw)| mode | rw)
}

/// Whether a canonical file is an endpoint, and which kind.
fn endpoint_kind(path: &Path, meta: &fs::Metadata) -> Option<EndpointKind> {
    if !meta.file_type().is_file() {
        // Symlinks, sockets, devices: never cloned.
        return None;
    }
    if meta.nlink() > 1 {
        tracing::warn!(
            "{}: not cloned: it has {} hard links (an endpoint must be a file of its own)",
            path.display(),
            meta.nlink()
        );
        return None;
    }
    if meta.mode() & 0o111 != 0 {
        return Some(EndpointKind::Handler(path.to_owned()));
    }
    let text = fs::read_to_string(path).ok()?;
    match toml::from_str::<Descriptor>(&text) {
        Ok(d) if d.service.is_absolute() => Some(EndpointKind::Service(d.service)),
        Ok(_) => {
            tracing::warn!(
                "{}: not cloned: `service` must be an absolute path",
                path.display()
            );
            None
        }
        Err(e) => {
            tracing::warn!(
                "{}: not cloned: not a service descriptor: {}",
                path.display(),
                e.message()
            );
            None
        }
    }
}

fn ensure_dir(dir: &Path, mode: u32, uid: u32, gid: u32) -> Result<(), String> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            fs::remove_file(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            fs::create_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        Err(_) => fs::create_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?,
    }
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))
        .map_err(|e| format!("chown {}: {e}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", dir.display()))
}

fn copy_dir_attrs(canon: &Path, clone: &Path) -> Result<(), String> {
    let meta = fs::symlink_metadata(canon).map_err(|e| format!("{}: {e}", canon.display()))?;
    ensure_dir(clone, meta.mode() & 0o7777, meta.uid(), meta.gid())
}

#[cfg(test)]
mod tests {
    use super::{call_mode, EndpointKind};
    use std::path::PathBuf;

    #[test]
    fn who_may_execute_a_handler_or_read_a_descriptor_may_call() {
        let handler = EndpointKind::Handler(PathBuf::new());
        assert_eq!(call_mode(&handler, 0o755), 0o666);
        assert_eq!(call_mode(&handler, 0o750), 0o660);
        assert_eq!(call_mode(&handler, 0o700), 0o600);
        assert_eq!(call_mode(&handler, 0o644), 0o000);
        assert_eq!(call_mode(&handler, 0o4711), 0o666);
        let service = EndpointKind::Service(PathBuf::new());
        assert_eq!(call_mode(&service, 0o644), 0o666);
        assert_eq!(call_mode(&service, 0o640), 0o660);
        assert_eq!(call_mode(&service, 0o600), 0o600);
    }
}
