//! SELinux labels for sRPC workers, handlers and clone nodes: pure logic plus libselinux's
//! safe selabel API (raw FFI lives in `srpc-os`).
//!
//! srpcd computes every context itself (never `get_default_context*`, which from srpcd_t
//! returns the failsafe sysadm context, nor `getseuserbyname`, which drops the level
//! without selinuxfs):
//!
//! - [`seusers`]: the Linux user's SELinux user and range, from the seusers file
//!   (`%group`, `__default__`) with libselinux's precedence;
//! - [`label_map`]: SELinux user → role → worker type, from the built-in
//!   `data/label-map.toml` and the admin's `/etc/srpc/label-map.toml`;
//! - [`alloc`]: a level of the user's own inside the range, as sVirt gives VMs theirs
//!   (how it is chosen is documented there), or a refusal naming the `semanage` fix;
//! - [`resolve()`]: all of the above into `<seuser>:<role>:<worker type>:<level>`, checked
//!   against the loaded [`Policy`], with the reasons for `explain-user`;
//! - [`file_contexts`]: canonical node (path, st_mode) → file type;
//! - [`contexts`]: `system_u:object_r:<type>:<level>` for clone nodes and the session
//!   directory, `system_u:system_r:srpcd_t:<level>` for clone listening sockets;
//! - [`selinux_config`]: `/etc/selinux/config` → the policy's seusers and file_contexts.
//!
//! See `labels/README.md` for the admin's view.
#![forbid(unsafe_code)]

pub mod alloc;
pub mod contexts;
pub mod file_contexts;
pub mod label_map;
pub mod level;
pub mod policy;
pub mod resolve;
pub mod selinux_config;
pub mod seusers;

pub use alloc::{AllocError, Allocation, LevelAllocator, LevelRequest};
pub use contexts::{listener_context, object_context};
pub use file_contexts::{FileContextError, FileContexts};
pub use label_map::{LabelMap, LabelMapError, MapEntry, MapOrigin};
pub use level::{CategorySet, Level, LevelError, Range};
pub use policy::Policy;
pub use resolve::{resolve, ResolveError, ResolveErrorKind, Resolved, Sources, UserIdentity};
pub use selinux_config::{PolicyPaths, SelinuxConfigError};
pub use seusers::{LoginName, SeuserEntry, SeuserMatch, Seusers, SeusersError};

/// An SELinux identifier (user, role, type or policy name): non-empty, letters, digits,
/// `_`, `.`, `-`. Rejects `:` and whitespace, which would change a context's fields.
pub(crate) fn valid_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}
