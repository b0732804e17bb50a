//! Owner and group names for `stat`, as the system's name service gives them.

use nix::unistd::{Gid, Group, Uid, User};

/// The user's name, or the uid in decimal when it has none.
pub fn user_name(uid: u32) -> String {
    match User::from_uid(Uid::from_raw(uid)) {
        Ok(Some(user)) => user.name,
        _ => uid.to_string(),
    }
}

/// The group's name, or the gid in decimal when it has none.
pub fn group_name(gid: u32) -> String {
    match Group::from_gid(Gid::from_raw(gid)) {
        Ok(Some(group)) => group.name,
        _ => gid.to_string(),
    }
}
