//! `CheckTree`: every node of the canonical tree as the clone sees it — what
//! it is, its mode, owner, group and SELinux label — and each problem the
//! clone would skip or refuse, in the clone's own words.
//!
//! Invariants:
//! - The verdicts are [`classify`]'s, the same function the clone runs: a node
//!   reported `cloned` is cloned, one reported `skipped` is left out, and a
//!   `refused` one fails the sync of every attach that reaches it.
//! - The tree is read fd-relative, no symlink followed, like the clone; the
//!   walk is blocking work and runs on a blocking thread, never on the
//!   monitor's loop.
//! - Below a skipped directory nothing is reported (the clone does not look
//!   there either); the walk is bounded as the clone is (depth, entries).

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use rustix::fs::Stat;

use super::types::TreeNode;
use crate::monitor::classify::{self, Classified, Kind};
use crate::monitor::fsat;
use crate::monitor::labeling::NodeTypes;

/// The nodes of the canonical tree at `root`, root first, each directory's
/// entries sorted by name. `types` are the file-context rules when SELinux
/// is on (a node they give no type is a problem). Fails only when the root
/// itself cannot be opened.
pub fn check_tree(root: &Path, types: Option<&dyn NodeTypes>) -> Result<Vec<TreeNode>, String> {
    let dir = fsat::open_root(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let walk = Walk { root, types };
    let mut out = Vec::new();
    let label = |mode: u32| walk.label(Path::new(""), mode);
    let st = fsat::stat(dir.as_fd()).ok();
    match classify::directory(dir.as_fd(), &label) {
        Ok(_) => {
            out.push(row("/", st.as_ref(), Some(dir.as_fd()), Ok(&Kind::Dir)));
            walk.dir(dir.as_fd(), Path::new(""), 0, &mut out);
        }
        Err(p) => out.push(row("/", st.as_ref(), Some(dir.as_fd()), Err(&p))),
    }
    Ok(out)
}

struct Walk<'a> {
    root: &'a Path,
    types: Option<&'a dyn NodeTypes>,
}

impl Walk<'_> {
    /// What the clone would label the node: the type the rules give its
    /// canonical path (the clone adds the user's level).
    fn label(&self, rel: &Path, mode: u32) -> Result<Option<String>, String> {
        match self.types {
            Some(types) => types.type_of(&self.root.join(rel), mode).map(Some),
            None => Ok(None),
        }
    }

    fn dir(&self, canon: BorrowedFd<'_>, rel: &Path, depth: usize, out: &mut Vec<TreeNode>) {
        let mut names = match classify::entries(canon) {
            Ok(names) => names,
            Err(p) => {
                // The directory itself is already listed: its listing is the
                // problem, reported on it.
                if let Some(last) = out.last_mut() {
                    p.effect.as_str().clone_into(&mut last.verdict);
                    last.problem = p.message;
                }
                return;
            }
        };
        names.sort();
        for entry in names {
            let name = fsat::os(&entry);
            let child = rel.join(name);
            let path = self.root.join(&child);
            let Classified { st, verdict } =
                classify::classify(canon, name, &path, depth + 1, &|mode| {
                    self.label(&child, mode)
                });
            let shown = format!("/{}", child.display());
            match verdict {
                Ok(node) => {
                    out.push(row(
                        &shown,
                        Some(&node.st),
                        Some(node.fd.as_fd()),
                        Ok(&node.kind),
                    ));
                    if node.kind == Kind::Dir {
                        self.dir(node.fd.as_fd(), &child, depth + 1, out);
                    }
                }
                Err(p) => {
                    let fd = fsat::open_node(canon, name).ok();
                    out.push(row(
                        &shown,
                        st.as_ref(),
                        fd.as_ref().map(AsFd::as_fd),
                        Err(&p),
                    ));
                }
            }
        }
    }
}

/// One node as `CheckTree` shows it.
fn row(
    path: &str,
    st: Option<&Stat>,
    fd: Option<BorrowedFd<'_>>,
    verdict: Result<&Kind, &classify::Problem>,
) -> TreeNode {
    let (uid, gid, mode) = st.map_or((0, 0, 0), |st| (st.st_uid, st.st_gid, st.st_mode & 0o7777));
    let type_name = st.map_or("unknown", classify::type_name);
    let (kind, verdict, problem, service) = match verdict {
        Ok(Kind::Dir) => ("directory", "cloned", String::new(), String::new()),
        Ok(Kind::Handler(_)) => ("handler", "cloned", String::new(), String::new()),
        Ok(Kind::Service(socket)) => (
            "service",
            "cloned",
            String::new(),
            socket.display().to_string(),
        ),
        Err(p) => (
            type_name,
            p.effect.as_str(),
            p.message.clone(),
            String::new(),
        ),
    };
    TreeNode {
        path: path.to_owned(),
        kind: kind.to_owned(),
        verdict: verdict.to_owned(),
        problem,
        mode,
        uid,
        owner: user_name(uid, st.is_some()),
        gid,
        group: group_name(gid, st.is_some()),
        label: fd
            .and_then(|fd| fsat::label_of(fd).ok().flatten())
            .unwrap_or_default(),
        service,
    }
}

fn user_name(uid: u32, known: bool) -> String {
    if !known {
        return String::new();
    }
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name)
}

fn group_name(gid: u32, known: bool) -> String {
    if !known {
        return String::new();
    }
    nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
        .ok()
        .flatten()
        .map_or_else(|| gid.to_string(), |g| g.name)
}
