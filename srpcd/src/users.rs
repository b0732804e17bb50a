//! The Unix account of a user, as the system's name service (NSS: `/etc/passwd`,
//! SSSD, LDAP, …) reports it: what a worker needs to run as that user.

use std::ffi::CString;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::unistd::{getgrouplist, User};

/// A user's identity: the uid, primary gid and every group the user is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The name, as the name service spells it.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory (it need not exist).
    pub home: PathBuf,
    /// Every group of the user, the primary group first and no duplicates: the
    /// list to hand to `setgroups` before dropping to the user.
    pub groups: Vec<u32>,
}

/// A user that could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The name cannot be a user name (it is empty or contains NUL).
    #[error("{0:?} is not a valid user name")]
    InvalidName(String),
    /// The name service knows no such user.
    #[error("no such user: {0:?}")]
    NotFound(String),
    /// The password database lookup itself failed.
    #[error("looking up user {name:?}: {source}")]
    Lookup {
        /// The user.
        name: String,
        /// Why.
        source: Errno,
    },
    /// The user's groups could not be listed.
    #[error("listing the groups of user {name:?}: {source}")]
    Groups {
        /// The user.
        name: String,
        /// Why.
        source: Errno,
    },
}

impl Account {
    /// Looks up `name` (`getpwnam`) and the user's groups (`getgrouplist`).
    /// Both may block on a network directory (SSSD, LDAP): call this off async
    /// executors (the PAM thread does; elsewhere `spawn_blocking`).
    ///
    /// ```
    /// let root = srpcd::users::Account::lookup("root").unwrap();
    /// assert_eq!((root.uid, root.gid), (0, 0));
    /// assert_eq!(root.groups[0], 0);
    /// ```
    pub fn lookup(name: &str) -> Result<Account, UserError> {
        let cname = match CString::new(name) {
            Ok(c) if !name.is_empty() => c,
            _ => return Err(UserError::InvalidName(name.to_owned())),
        };
        let user = User::from_name(name)
            .map_err(|source| UserError::Lookup {
                name: name.to_owned(),
                source,
            })?
            .ok_or_else(|| UserError::NotFound(name.to_owned()))?;
        let listed = getgrouplist(&cname, user.gid).map_err(|source| UserError::Groups {
            name: name.to_owned(),
            source,
        })?;
        let gid = user.gid.as_raw();
        let mut groups = vec![gid];
        for g in listed.into_iter().map(nix::unistd::Gid::as_raw) {
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
        Ok(Account {
            name: user.name,
            uid: user.uid.as_raw(),
            gid,
            home: user.dir,
            groups,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_with_its_groups() {
        let root = Account::lookup("root").unwrap();
        assert_eq!(root.name, "root");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(root.groups.first(), Some(&0));
        let mut sorted = root.groups.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), root.groups.len(), "no duplicate groups");
    }

    #[test]
    fn unknown_and_invalid_names_are_clear_errors() {
        let e = Account::lookup("srpc-no-such-user-x").unwrap_err();
        assert!(matches!(e, UserError::NotFound(_)), "{e:?}");
        assert_eq!(e.to_string(), "no such user: \"srpc-no-such-user-x\"");
        assert!(matches!(
            Account::lookup("a\0b"),
            Err(UserError::InvalidName(_))
        ));
        assert!(matches!(
            Account::lookup(""),
            Err(UserError::InvalidName(_))
        ));
    }
}
