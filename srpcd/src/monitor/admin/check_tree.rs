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
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use rustix::fs::Stat;

use super::types::TreeNode;
use crate::monitor::classify::{self, Classified, Kind};
use crate::monitor::fsat;
use crate::monitor::labeling::NodeTypes;

/// Most nodes one `CheckTree` lists (a larger tree is checked a subtree at a
/// time), so the answer stays well below the bus's message size limit.
pub const MAX_NODES: usize = 100_000;

/// Why a check could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// The path asked for is not a directory of the tree.
    #[error("{0}")]
    InvalidArgs(String),
    /// The tree could not be read, or is too large to list at once.
    #[error("{0}")]
    Failed(String),
}

/// The nodes of the canonical tree at `root` from the directory `at` (`/`,
/// or a path below the root as an attach path names it) down: `at` first,
/// each directory's entries sorted by name, every path shown from the
/// tree's root. `types` are the file-context rules when SELinux is on (a
/// node they give no type is a problem).
pub fn check_tree(
    root: &Path,
    at: &str,
    types: Option<&dyn NodeTypes>,
) -> Result<Vec<TreeNode>, CheckError> {
    srpc_proto::validate_path(at, srpc_proto::HARD_LIMITS.max_name)
        .map_err(|e| CheckError::InvalidArgs(format!("{at:?}: {e}")))?;
    let mut dir = fsat::open_root(root)
        .map_err(|e| CheckError::Failed(format!("{}: {e}", root.display())))?;
    // Down to `at` as an attach walks it: one directory at a time, no
    // symlink followed.
    let mut rel = PathBuf::new();
    for part in Path::new(at).components() {
        let Component::Normal(part) = part else {
            continue;
        };
        rel.push(part);
        dir = fsat::open_dir(dir.as_fd(), part).map_err(|e| {
            CheckError::InvalidArgs(format!(
                "/{}: not a directory of the tree: {e}",
                rel.display()
            ))
        })?;
    }
    let walk = Walk { root, types };
    let mut out = Vec::new();
    let label = |mode: u32| walk.label(&rel, mode);
    let st = fsat::stat(dir.as_fd()).ok();
    let shown = format!("/{}", rel.display());
    match classify::directory(dir.as_fd(), &label) {
        Ok(_) => {
            out.push(row(&shown, st.as_ref(), Some(dir.as_fd()), Ok(&Kind::Dir)));
            let depth = rel.components().count();
            walk.dir(dir.as_fd(), &rel, depth, &mut out)?;
        }
        Err(p) => out.push(row(&shown, st.as_ref(), Some(dir.as_fd()), Err(&p))),
    }
    Ok(out)
}

struct Walk<'a> {
    root: &'a Path,
    types: Option<&'a dyn NodeTypes>,
}

impl Walk<'_> {
    /// What the clone would label the node: the type the rules give its
    /// canonical path, checked against the loaded policy at `s0` (the clone
    /// puts it at the user's level, which the policy accepts for every type
    /// it knows).
    fn label(&self, rel: &Path, mode: u32) -> Result<Option<String>, String> {
        let Some(types) = self.types else {
            return Ok(None);
        };
        let file_type = types.type_of(&self.root.join(rel), mode)?;
        let level = srpc_labels::Level::from_str("s0").map_err(|e| e.to_string())?;
        classify::known_label(srpc_labels::contexts::object_context(&file_type, &level))
            .map(|_| Some(file_type))
    }

    fn dir(
        &self,
        canon: BorrowedFd<'_>,
        rel: &Path,
        depth: usize,
        out: &mut Vec<TreeNode>,
    ) -> Result<(), CheckError> {
        let mut names = match classify::entries(canon) {
            Ok(names) => names,
            Err(p) => {
                // The directory itself is already listed: its listing is the
                // problem, reported on it.
                if let Some(last) = out.last_mut() {
                    p.effect.as_str().clone_into(&mut last.verdict);
                    last.problem = p.message;
                }
                return Ok(());
            }
        };
        names.sort();
        for entry in names {
            if out.len() >= MAX_NODES {
                return Err(CheckError::Failed(format!(
                    "more than {MAX_NODES} nodes: check a subtree at a time \
                     (srpcctl check-tree PATH)"
                )));
            }
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
                        self.dir(node.fd.as_fd(), &child, depth + 1, out)?;
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
        Ok(())
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

/// The name NSS gives `id` (`lookup`), the number where it has none, and
/// nothing when the node could not be read at all.
fn name_of(id: u32, known: bool, lookup: impl Fn(u32) -> Option<String>) -> String {
    if !known {
        return String::new();
    }
    lookup(id).unwrap_or_else(|| id.to_string())
}

fn user_name(uid: u32, known: bool) -> String {
    name_of(uid, known, |uid| {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
    })
}

fn group_name(gid: u32, known: bool) -> String {
    name_of(gid, known, |gid| {
        nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
            .ok()
            .flatten()
            .map(|g| g.name)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::path::PathBuf;

    use super::*;

    /// A scratch tree of the test's own, removed on drop.
    struct Tree(PathBuf);

    impl Tree {
        fn new(tag: &str) -> Tree {
            let dir =
                std::env::temp_dir().join(format!("srpcd-check-tree-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir(&dir).unwrap();
            Tree(dir)
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn find<'a>(nodes: &'a [TreeNode], path: &str) -> &'a TreeNode {
        nodes
            .iter()
            .find(|n| n.path == path)
            .unwrap_or_else(|| panic!("no {path}"))
    }

    #[test]
    fn nothing_below_a_skipped_directory_is_listed() {
        let t = Tree::new("deep");
        let mut dir = t.0.clone();
        for i in 0..=fsat::MAX_DEPTH + 1 {
            dir.push(format!("d{i}"));
        }
        std::fs::create_dir_all(&dir).unwrap();
        let nodes = check_tree(&t.0, "/", None).unwrap();
        // The root, MAX_DEPTH directories cloned, the next one skipped.
        assert_eq!(nodes.len(), fsat::MAX_DEPTH + 2, "{nodes:#?}");
        let last = nodes.last().unwrap();
        assert_eq!(last.kind, "directory");
        assert_eq!(last.verdict, "skipped");
        assert_eq!(
            last.problem,
            format!("nested deeper than {} directories", fsat::MAX_DEPTH)
        );
        assert!(nodes[..nodes.len() - 1]
            .iter()
            .all(|n| n.verdict == "cloned"));
    }

    #[test]
    fn a_directory_the_clone_cannot_list_is_refused_on_itself() {
        let t = Tree::new("wide");
        let wide = t.0.join("wide");
        std::fs::create_dir(&wide).unwrap();
        for i in 0..=fsat::MAX_ENTRIES {
            std::fs::File::create(wide.join(i.to_string())).unwrap();
        }
        std::fs::write(t.0.join("a"), "service = \"/run/a.sock\"\n").unwrap();
        let nodes = check_tree(&t.0, "/", None).unwrap();
        let paths: Vec<&str> = nodes.iter().map(|n| n.path.as_str()).collect();
        assert_eq!(paths, ["/", "/a", "/wide"]);
        let wide = find(&nodes, "/wide");
        assert_eq!(wide.verdict, "refused");
        assert_eq!(
            wide.problem,
            format!(
                "cannot be listed: more than {} entries in one directory",
                fsat::MAX_ENTRIES
            )
        );
        assert_eq!(find(&nodes, "/a").service, "/run/a.sock");
    }

    #[test]
    fn a_subtree_is_shown_from_the_trees_root_and_a_bad_path_refused() {
        let t = Tree::new("sub");
        std::fs::create_dir_all(t.0.join("x/y")).unwrap();
        let nodes = check_tree(&t.0, "/x", None).unwrap();
        let paths: Vec<&str> = nodes.iter().map(|n| n.path.as_str()).collect();
        assert_eq!(paths, ["/x", "/x/y"]);
        assert_eq!(
            check_tree(&t.0, "/x/z", None),
            Err(CheckError::InvalidArgs(
                "/x/z: not a directory of the tree: No such file or directory (os error 2)"
                    .to_owned()
            ))
        );
        assert!(matches!(
            check_tree(&t.0, "x", None),
            Err(CheckError::InvalidArgs(_))
        ));
    }
}
