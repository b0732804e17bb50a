//! `ExplainUser`: what srpcd would do with a login of this user, and why —
//! the account, its groups, the lockout, the PAM service file, and the
//! SELinux user, role, level and context the user's worker would get (or why
//! the login would be refused), decided as a login decides them but without
//! holding a level. Runs on the blocking pool (NSS may be slow);
//! reads the lockout under its mutex, never the loop's state.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use super::types::Explanation;
use crate::lockout::Lockout;
use crate::users::Account;

/// What an explanation reads besides the account database.
#[derive(Clone)]
pub struct Ctx {
    /// The failure counts.
    pub lockout: Arc<Mutex<Lockout>>,
    /// The SELinux state (`None` without SELinux).
    pub security: Option<Arc<crate::monitor::security::Security>>,
    /// `pam.service`.
    pub pam_service: String,
    /// `admin.group`.
    pub admin_group: String,
}

/// The SELinux part of an explanation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelinuxPart {
    /// SELinux user.
    pub seuser: String,
    /// Role.
    pub role: String,
    /// Level.
    pub level: String,
    /// The context a worker would run in.
    pub context: String,
    /// How it was decided (seusers line, default context file), or why not.
    pub why: String,
}

/// The seuser, role, level and worker context `account` would get, and how
/// they were decided (or why the login would be refused).
pub fn selinux_part(
    account: &Account,
    security: Option<&crate::monitor::security::Security>,
) -> SelinuxPart {
    let Some(security) = security else {
        return SelinuxPart {
            why: "SELinux is not enabled: workers run on Unix permissions alone".to_owned(),
            ..SelinuxPart::default()
        };
    };
    match security.explain(account) {
        Ok(r) => SelinuxPart {
            seuser: r.seuser.clone(),
            role: r.role.clone(),
            level: r.level.to_string(),
            context: r.context.clone(),
            why: r.to_string(),
        },
        Err(why) => SelinuxPart {
            why,
            ..SelinuxPart::default()
        },
    }
}

/// Explains a login of `user`.
pub fn explain(user: &str, ctx: &Ctx) -> Explanation {
    let mut out = Explanation {
        user: user.to_owned(),
        exists: false,
        uid: 0,
        gid: 0,
        groups: Vec::new(),
        admin: String::new(),
        lockout: String::new(),
        pam_service: ctx.pam_service.clone(),
        pam_file: String::new(),
        verdict: String::new(),
        seuser: String::new(),
        role: String::new(),
        level: String::new(),
        context: String::new(),
        selinux: String::new(),
    };
    let pam_file = crate::pam::check_service_file(&ctx.pam_service);
    out.pam_file = match &pam_file {
        Ok(path) => path.display().to_string(),
        Err(e) => format!("none: {e}"),
    };
    // The user's own count: an unspecified source has none of its own.
    let unspecified = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let locked = crate::monitor::auth::lock(&ctx.lockout).check(user, unspecified);
    if let Err(l) = &locked {
        out.lockout = l.to_string();
    }
    let account = match Account::lookup(user) {
        Ok(a) => a,
        Err(e) => {
            out.verdict =
                format!("refused: {e} (the client is told auth_failed, as for a wrong password)");
            "not computed: no such account".clone_into(&mut out.selinux);
            return out;
        }
    };
    out.exists = true;
    out.uid = account.uid;
    out.gid = account.gid;
    out.groups = account.groups.iter().map(|g| group_name(*g)).collect();
    out.admin = if out.groups.contains(&ctx.admin_group) {
        format!(
            "member of {} (may call srpcctl's admin methods)",
            ctx.admin_group
        )
    } else {
        format!("not a member of {}", ctx.admin_group)
    };
    out.verdict = if let Err(e) = &pam_file {
        format!("refused: srpcd does not start without its PAM service file ({e})")
    } else if let Err(l) = &locked {
        format!("refused now without running PAM: {l}")
    } else {
        format!(
            "allowed to try: PAM service {} decides the password and the account",
            ctx.pam_service
        )
    };
    let selinux = selinux_part(&account, ctx.security.as_deref());
    out.seuser = selinux.seuser;
    out.role = selinux.role;
    out.level = selinux.level;
    out.context = selinux.context;
    out.selinux = selinux.why;
    out
}

fn group_name(gid: u32) -> String {
    match nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
        Ok(Some(g)) => g.name,
        _ => gid.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::{Arc, Mutex};

    use super::{explain, Ctx};
    use crate::lockout::Lockout;

    fn ctx(service: &str) -> Ctx {
        Ctx {
            lockout: Arc::new(Mutex::new(Lockout::new(&crate::config::Limits::default()))),
            security: None,
            pam_service: service.to_owned(),
            admin_group: "srpcadmin".to_owned(),
        }
    }

    #[test]
    fn an_unknown_user_is_refused_and_root_is_explained() {
        let c = ctx("chpasswd");
        let e = explain("srpcd-no-such-user-xyz", &c);
        assert!(!e.exists);
        assert!(e.verdict.starts_with("refused: "), "{}", e.verdict);

        let root = explain("root", &c);
        assert!(root.exists);
        assert_eq!(root.uid, 0);
        assert!(
            root.groups.contains(&"root".to_owned()),
            "{:?}",
            root.groups
        );
        assert!(root.pam_file.ends_with("/chpasswd"), "{}", root.pam_file);
        assert!(
            root.verdict.starts_with("allowed to try"),
            "{}",
            root.verdict
        );
        // This host runs no SELinux (the enforcing case is in vm-tests).
        if !std::path::Path::new("/sys/fs/selinux/enforce").exists() {
            assert!(root.context.is_empty(), "{}", root.context);
            assert!(
                root.selinux.starts_with("SELinux is not enabled"),
                "{}",
                root.selinux
            );
        }
    }

    #[test]
    fn a_missing_service_file_and_a_lockout_are_named() {
        let c = ctx("srpcd-test-no-such-service");
        let e = explain("root", &c);
        assert!(e.pam_file.starts_with("none: "), "{}", e.pam_file);
        assert!(e.verdict.contains("PAM service file"), "{}", e.verdict);

        let c = ctx("chpasswd");
        let source = "192.0.2.9".parse().unwrap();
        for _ in 0..crate::config::Limits::default().auth_attempts {
            crate::monitor::auth::lock(&c.lockout).record_failure("root", source);
        }
        let e = explain("root", &c);
        assert!(e.lockout.contains("user"), "{}", e.lockout);
        assert!(e.verdict.starts_with("refused now"), "{}", e.verdict);
    }
}
