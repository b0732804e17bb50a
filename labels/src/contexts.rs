//! The contexts srpcd sets on what it creates for a user (names from the SELinux
//! contract): every object is `system_u` (UBAC never separates a `system_u` object from a
//! user, and the monitor creates it without an identity-change exemption) at the user's
//! single level, so MCS, not the SELinux user, keeps users apart.

use crate::level::Level;

/// The type of `/run/srpc/users/<user>`.
pub const SESSION_DIR_TYPE: &str = "srpc_session_t";

/// The monitor's domain, which owns every clone listening socket.
pub const MONITOR_TYPE: &str = "srpcd_t";

/// A clone directory, sock_file or session directory:
/// `system_u:object_r:<file_type>:<level>`.
pub fn object_context(file_type: &str, level: &Level) -> String {
    format!("system_u:object_r:{file_type}:{level}")
}

/// A clone listening socket (for `setsockcreatecon`): `system_u:system_r:srpcd_t:<level>`.
/// A worker's connectto is checked against the listener's label, so the listener carries
/// the user's level, not the monitor's `s0`.
pub fn listener_context(level: &Level) -> String {
    format!("system_u:system_r:{MONITOR_TYPE}:{level}")
}
