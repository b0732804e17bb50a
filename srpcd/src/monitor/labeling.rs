//! The SELinux labels of a user's clone: every directory and endpoint node
//! carries `system_u:object_r:<type>:<the user's level>`, where `<type>` is
//! what the file-context rules (the policy module's `.fc` plus the admin's
//! `semanage fcontext` rules) give the *canonical* path with the canonical
//! node's own mode; the user's session directory is `srpc_session_t`; each
//! endpoint's listening socket is `srpcd_t` at the user's level,
//! so a worker or handler at another level can neither reach nor accept it.
//!
//! The labels go on at creation (the per-thread create contexts,
//! [`srpc_os::selinux::CreateContext`]): no node exists, even in root's staging
//! directory, unlabelled or at another level. A node made earlier whose type
//! changed since (`semanage fcontext`) is relabelled in place.

use std::path::Path;

use srpc_labels::contexts::{listener_context, object_context, SESSION_DIR_TYPE};
use srpc_labels::Level;

/// Where node types come from: the file-context rules, opened afresh for each
/// sync (so an admin's `semanage fcontext` applies at the next attach; the
/// handle has no reload of its own).
pub trait NodeTypes {
    /// The type the rules give `canonical` (an absolute path in the canonical
    /// tree) for a node of `mode` (`st_mode`, file type bits included).
    fn type_of(&self, canonical: &Path, mode: u32) -> Result<String, String>;
}

/// A user's SELinux side: the context the worker runs in and the clone's
/// labels (both at the user's level).
#[derive(Clone)]
pub struct UserSecurity {
    /// The worker's context (`seuser:role:type:level`), checked valid.
    pub worker: String,
    /// The clone's labels.
    pub labels: UserLabels,
}

/// One user's clone labels: everything at the user's level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserLabels {
    level: Level,
    listener: String,
}

impl UserLabels {
    /// Labels at `level`.
    pub fn new(level: Level) -> UserLabels {
        UserLabels {
            listener: listener_context(&level),
            level,
        }
    }

    /// The user's session directory's label.
    pub fn session_dir(&self) -> String {
        object_context(SESSION_DIR_TYPE, &self.level)
    }

    /// The label of the clone node for the canonical node at `canonical`.
    pub fn node(
        &self,
        types: &dyn NodeTypes,
        canonical: &Path,
        mode: u32,
    ) -> Result<String, String> {
        Ok(object_context(
            &types.type_of(canonical, mode)?,
            &self.level,
        ))
    }

    /// The label of the endpoints' listening sockets.
    pub fn listener(&self) -> &str {
        &self.listener
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct ByKind;

    impl NodeTypes for ByKind {
        fn type_of(&self, canonical: &Path, mode: u32) -> Result<String, String> {
            match mode & 0o170_000 {
                0o040_000 => Ok("srpc_tree_t".into()),
                0o100_000 if canonical.starts_with("/srv/srpc/ops") => {
                    Ok("srpc_admin_endpoint_t".into())
                }
                0o100_000 => Ok("srpc_endpoint_t".into()),
                _ => Err(format!("{}: no rule", canonical.display())),
            }
        }
    }

    #[test]
    fn every_label_is_at_the_users_level_and_sockets_are_the_monitors_type() {
        let l = UserLabels::new("s0:c3,c9".parse().unwrap());
        assert_eq!(l.session_dir(), "system_u:object_r:srpc_session_t:s0:c3,c9");
        assert_eq!(
            l.node(&ByKind, Path::new("/srv/srpc/math"), 0o040_755)
                .unwrap(),
            "system_u:object_r:srpc_tree_t:s0:c3,c9"
        );
        assert_eq!(
            l.node(&ByKind, Path::new("/srv/srpc/ops/reboot"), 0o100_750)
                .unwrap(),
            "system_u:object_r:srpc_admin_endpoint_t:s0:c3,c9"
        );
        assert_eq!(l.listener(), "system_u:system_r:srpcd_t:s0:c3,c9");
        assert!(l
            .node(&ByKind, Path::new("/srv/srpc/x"), 0o140_000)
            .is_err());
    }
}
