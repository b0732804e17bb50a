//! The SELinux labels of a user's clone: every directory and endpoint node
//! carries `system_u:object_r:<type>:<the user's level>`, where `<type>` is
//! what the file-context rules (the policy module's `.fc` plus the admin's
//! `semanage fcontext` rules) give the *canonical* path with the canonical
//! node's own mode; the user's session directory is `srpc_session_t`; each
//! endpoint's listening socket is the monitor's own type at the user's level,
//! so a worker or handler at another level can neither reach nor accept it.
//!
//! The labels go on at creation (the per-thread create contexts,
//! [`srpc_os::selinux::CreateContext`]): no node exists, even in root's staging
//! directory, unlabelled or at another level. A node made earlier whose type
//! changed since (`semanage fcontext`) is relabelled in place.

use std::path::Path;

/// The type of the user's session directory (`<runtime>/users/<user>`).
pub const SESSION_TYPE: &str = "srpc_session_t";

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

/// One user's clone labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserLabels {
    level: String,
    listener: String,
}

impl UserLabels {
    /// Labels at `level`, with listening sockets in the monitor's own
    /// `monitor_context`'s user, role and type.
    pub fn new(level: &str, monitor_context: &str) -> Result<UserLabels, String> {
        let mut fields = monitor_context.splitn(4, ':');
        let (Some(user), Some(role), Some(kind), Some(_)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(format!(
                "srpcd's own context {monitor_context:?} is not user:role:type:level"
            ));
        };
        Ok(UserLabels {
            level: level.to_owned(),
            listener: format!("{user}:{role}:{kind}:{level}"),
        })
    }

    /// The user's session directory's label.
    pub fn session_dir(&self) -> String {
        object(SESSION_TYPE, &self.level)
    }

    /// The label of the clone node for the canonical node at `canonical`.
    pub fn node(
        &self,
        types: &dyn NodeTypes,
        canonical: &Path,
        mode: u32,
    ) -> Result<String, String> {
        let kind = types.type_of(canonical, mode)?;
        Ok(object(&kind, &self.level))
    }

    /// The label of the endpoints' listening sockets.
    pub fn listener(&self) -> &str {
        &self.listener
    }
}

fn object(kind: &str, level: &str) -> String {
    format!("system_u:object_r:{kind}:{level}")
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
        let l = UserLabels::new("s0:c3,c9", "system_u:system_r:srpcd_t:s0").unwrap();
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

    #[test]
    fn a_monitor_context_without_four_fields_is_refused() {
        let e = UserLabels::new("s0:c1,c2", "srpcd_t").err().unwrap();
        assert!(e.contains("\"srpcd_t\" is not user:role:type:level"), "{e}");
    }
}
