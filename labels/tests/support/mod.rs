//! A fixture `Policy`: the parts of Debian's default policy plus the srpcd module that
//! `security_check_context` consults (users' roles and ranges, roles' types), so resolve
//! tests ask the same question srpcd asks the kernel, on any host.
#![allow(dead_code)]

use std::collections::BTreeMap;

use srpc_labels::{Policy, Range};

pub struct FixturePolicy {
    /// SELinux user → (roles, range).
    users: BTreeMap<String, (Vec<String>, Range)>,
    /// role → types it may hold.
    roles: BTreeMap<String, Vec<String>>,
    /// When set, every question fails with this errno (policy not readable).
    pub errno: Option<i32>,
}

impl FixturePolicy {
    /// Debian 12's users (`seinfo -u -x`) and the module's `role R types T` lines.
    pub fn debian() -> FixturePolicy {
        let mut p = FixturePolicy {
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
            errno: None,
        };
        let all = "s0-s0:c0.c1023";
        p.user("root", &["staff_r", "sysadm_r", "system_r"], all);
        p.user("staff_u", &["staff_r", "sysadm_r"], all);
        p.user("sysadm_u", &["sysadm_r"], all);
        p.user("system_u", &["system_r"], all);
        p.user("unconfined_u", &["system_r", "unconfined_r"], all);
        p.user("user_u", &["user_r"], "s0");
        p.user("xdm", &["xdm_r"], "s0");
        for (role, ty) in [
            ("user_r", "user_srpc_worker_t"),
            ("staff_r", "staff_srpc_worker_t"),
            ("sysadm_r", "sysadm_srpc_worker_t"),
            ("unconfined_r", "unconfined_srpc_worker_t"),
        ] {
            p.roles.insert(role.into(), vec![ty.into()]);
        }
        p
    }

    /// Adds `role R types T`.
    pub fn add_role_type(&mut self, role: &str, ty: &str) {
        self.roles.entry(role.into()).or_default().push(ty.into());
    }

    /// Adds or replaces a user, as `semanage user -a/-m -R roles -r range`.
    pub fn user(&mut self, name: &str, roles: &[&str], range: &str) {
        self.users.insert(
            name.into(),
            (
                roles.iter().map(|r| (*r).to_owned()).collect(),
                range.parse().unwrap(),
            ),
        );
    }
}

impl Policy for FixturePolicy {
    fn check_context(&self, context: &str) -> std::io::Result<bool> {
        if let Some(errno) = self.errno {
            return Err(std::io::Error::from_raw_os_error(errno));
        }
        let mut parts = context.splitn(4, ':');
        let (Some(user), Some(role), Some(ty), Some(level)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Ok(false);
        };
        let Ok(level) = level.parse::<srpc_labels::Level>() else {
            return Ok(false);
        };
        let Some((roles, range)) = self.users.get(user) else {
            return Ok(false);
        };
        let role_ok = roles.iter().any(|r| r == role);
        let type_ok = self
            .roles
            .get(role)
            .is_some_and(|types| types.iter().any(|t| t == ty));
        Ok(role_ok && type_ok && range.contains(&level))
    }
}
