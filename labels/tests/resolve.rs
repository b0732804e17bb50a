//! resolve(): fixture seusers + label map + allocator + a fixture policy modelled on
//! Debian's, end to end; the trap cases; every error's message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};

use srpc_labels::{
    resolve, LabelMap, LevelAllocator, MapOrigin, ResolveError, ResolveErrorKind, Resolved,
    Seusers, Sources, UserIdentity,
};
use support::FixturePolicy;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

struct World {
    seusers: Seusers,
    map: LabelMap,
    policy: FixturePolicy,
    allow_shared: bool,
    levels: LevelAllocator,
}

impl World {
    fn new() -> World {
        World {
            seusers: Seusers::load(&fixture("seusers")).unwrap(),
            map: LabelMap::builtin().unwrap(),
            policy: FixturePolicy::debian(),
            allow_shared: false,
            levels: LevelAllocator::new(),
        }
    }

    fn login(&mut self, name: &str, uid: u32, groups: &[&str]) -> Result<Resolved, ResolveError> {
        let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        resolve(
            &UserIdentity {
                name,
                uid,
                groups: &groups,
            },
            &Sources {
                seusers: &self.seusers,
                label_map: &self.map,
                policy: &self.policy,
                allow_shared_level: self.allow_shared,
            },
            &mut self.levels,
        )
    }
}

fn seusers_line(n: usize, text: &str) -> String {
    format!("{} line {n} ({text})", fixture("seusers").display())
}

#[test]
fn root_gets_an_unconfined_worker_at_a_pair_of_its_own() {
    let mut w = World::new();
    let r = w.login("root", 0, &["root"]).unwrap();
    assert_eq!(r.seuser, "unconfined_u");
    assert_eq!(r.role, "unconfined_r");
    assert_eq!(r.worker_type, "unconfined_srpc_worker_t");
    assert_eq!(r.level.categories.len(), 2);
    assert!(!r.shared_level);
    assert_eq!(
        r.context,
        format!(
            "unconfined_u:unconfined_r:unconfined_srpc_worker_t:{}",
            r.level
        )
    );
    assert_eq!(
        r.seusers_line,
        seusers_line(4, "root:unconfined_u:s0-s0:c0.c1023")
    );
    assert_eq!(r.role_entry.key, "unconfined_u");
    assert_eq!(r.type_entry.key, "unconfined_r");
    assert_eq!(w.levels.current("root").unwrap().level, r.level);
}

#[test]
fn default_users_get_distinct_pairs() {
    // The trap: __default__ maps everyone to unconfined_u:s0-s0:c0.c1023, which as a level
    // would dominate every other user.
    let mut w = World::new();
    let a = w.login("gina", 1001, &["users"]).unwrap();
    let b = w.login("hank", 1002, &["users"]).unwrap();
    assert_eq!(
        a.seusers_line,
        seusers_line(14, "__default__:unconfined_u:s0-s0:c0.c1023")
    );
    assert_eq!(a.seuser, "unconfined_u");
    assert_eq!(b.seuser, "unconfined_u");
    assert_ne!(a.level, b.level);
    assert!(!a.level.dominates(&b.level) && !b.level.dominates(&a.level));
    assert_eq!(a.level.categories.len(), 2);
    assert!(!a.context.ends_with("c0.c1023"));
}

#[test]
fn groups_pick_staff_and_sysadm() {
    let mut w = World::new();
    let erin = w.login("erin", 1003, &["admins", "wheel"]).unwrap();
    assert_eq!(erin.role, "staff_r");
    assert_eq!(erin.worker_type, "staff_srpc_worker_t");
    assert_eq!(
        erin.seusers_line,
        seusers_line(6, "%wheel:staff_u:s0-s0:c0.c1023")
    );
    let frank = w.login("frank", 1004, &["admins"]).unwrap();
    assert_eq!(
        frank.context,
        format!("sysadm_u:sysadm_r:sysadm_srpc_worker_t:{}", frank.level)
    );
}

#[test]
fn a_second_login_keeps_the_context() {
    let mut w = World::new();
    let first = w.login("gina", 1001, &[]).unwrap();
    assert_eq!(w.login("gina", 1001, &[]).unwrap(), first);
    w.levels.release("gina");
    assert!(w.levels.current("gina").is_none());
}

#[test]
fn user_u_at_s0_is_refused_with_the_semanage_fix() {
    let mut w = World::new();
    let err = w.login("alice", 1000, &["users"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no SELinux context for user alice (SELinux user user_u, role user_r, level -, context tried -): user alice's range s0 (SELinux user user_u) holds no categories, so alice cannot have an MCS level of their own; fix: `semanage login -m -r s0-s0:c0.c1023 alice` (first `semanage user -m -r s0-s0:c0.c1023 user_u` if user_u's own range is narrower), or set selinux.allow_shared_level = true to let such users share a level"
    );
    assert!(matches!(err.kind(), ResolveErrorKind::Level(_)));
    assert_eq!(err.user(), "alice");
    assert_eq!(err.seuser(), Some("user_u"));
    assert_eq!(err.role(), Some("user_r"));
    assert_eq!(err.level(), None);
    assert_eq!(err.context(), None);
    assert!(w.levels.current("alice").is_none());
}

#[test]
fn user_u_at_s0_shares_when_allowed_and_says_so() {
    let mut w = World::new();
    w.allow_shared = true;
    w.login("gina", 1001, &[]).unwrap();
    let r = w.login("alice", 1000, &[]).unwrap();
    assert_eq!(r.context, "user_u:user_r:user_srpc_worker_t:s0");
    assert!(r.shared_level);
    assert_eq!(r.shares_with, ["gina"]);
    let explained = r.to_string();
    assert!(
        explained.ends_with(
            "  level s0: SHARED (no level of the user's own; allowed by selinux.allow_shared_level), shared with gina"
        ),
        "{explained}"
    );
}

#[test]
fn a_range_the_policy_does_not_allow_is_refused_and_releases_the_level() {
    // dave is mapped to user_u:s0-s0:c0.c1023 in seusers, but the policy's user_u is s0
    // only (semanage would refuse to write this; a hand edit does not).
    let mut w = World::new();
    let err = w.login("dave", 1010, &[]).unwrap_err();
    let level = err.level().unwrap().to_owned();
    assert_eq!(
        err.to_string(),
        format!(
            "no SELinux context for user dave (SELinux user user_u, role user_r, level {level}, context tried user_u:user_r:user_srpc_worker_t:{level}): the loaded policy rejects the context; check that the srpcd policy module is loaded (`semodule -l | grep srpcd`), that SELinux user user_u may hold role user_r (`semanage user -l`), and that the module lets role user_r hold type user_srpc_worker_t"
        )
    );
    assert!(
        w.levels.current("dave").is_none(),
        "the refused login holds no level"
    );
    // After `semanage user -m -r s0-s0:c0.c1023 user_u` the same login works.
    w.policy.user("user_u", &["user_r"], "s0-s0:c0.c1023");
    let r = w.login("dave", 1010, &[]).unwrap();
    assert_eq!(
        r.context,
        format!("user_u:user_r:user_srpc_worker_t:{level}")
    );
}

#[test]
fn a_refusal_for_an_active_user_keeps_the_level_held() {
    let mut w = World::new();
    let held = w.login("gina", 1001, &[]).unwrap();
    w.policy.errno = Some(2);
    let err = w.login("gina", 1001, &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "no SELinux context for user gina (SELinux user unconfined_u, role unconfined_r, level {0}, context tried {1}): cannot ask the loaded policy whether the context is valid: No such file or directory (os error 2)",
            held.level, held.context
        )
    );
    assert_eq!(w.levels.current("gina").unwrap().level, held.level);
}

#[test]
fn a_line_without_range_is_refused() {
    let mut w = World::new();
    let err = w.login("norange", 1011, &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "no SELinux context for user norange (SELinux user user_u, role -, level -, context tried -): {} gives no MCS range; fix: `semanage login -m -r s0-s0:c0.c1023 norange`",
            seusers_line(12, "norange:user_u")
        )
    );
}

#[test]
fn a_group_or_default_line_without_range_names_the_user_in_the_fix() {
    let mut w = World::new();
    w.seusers = Seusers::parse("%staff:staff_u\n", Path::new("/s")).unwrap();
    let err = w.login("ivy", 1, &["staff"]).unwrap_err();
    assert!(
        err.to_string().ends_with(
            "/s line 1 (%staff:staff_u) gives no MCS range; fix: `semanage login -m -r s0-s0:c0.c1023 ivy`"
        ),
        "{err}"
    );
}

#[test]
fn an_unmapped_seuser_is_refused_and_an_admin_entry_maps_it() {
    let mut w = World::new();
    let err = w.login("nomap", 1012, &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "no SELinux context for user nomap (SELinux user guest_u, role -, level -, context tried -): the label map has no role for SELinux user guest_u (from {}); fix: add `guest_u = \"<role>\"` under [users] in /etc/srpc/label-map.toml",
            seusers_line(13, "nomap:guest_u:s0-s0:c0.c1023")
        )
    );
    w.map = LabelMap::builtin_with_overrides(&fixture("label-map-override.toml")).unwrap();
    w.policy.user("guest_u", &["guest_r"], "s0-s0:c0.c1023");
    // The policy has no `role guest_r types guest_srpc_worker_t` yet.
    let err = w.login("nomap", 1012, &[]).unwrap_err();
    assert!(
        matches!(err.kind(), ResolveErrorKind::Rejected { .. }),
        "{err}"
    );
    let r = {
        let mut p = FixturePolicy::debian();
        p.user("guest_u", &["guest_r"], "s0-s0:c0.c1023");
        p.add_role_type("guest_r", "guest_srpc_worker_t");
        w.policy = p;
        w.login("nomap", 1012, &[]).unwrap()
    };
    assert_eq!(
        r.context,
        format!("guest_u:guest_r:guest_srpc_worker_t:{}", r.level)
    );
    assert_eq!(
        r.role_entry.origin,
        MapOrigin::File(fixture("label-map-override.toml"))
    );
}

#[test]
fn an_unmapped_role_is_refused() {
    let mut w = World::new();
    w.map = LabelMap::builtin().unwrap().overlaid(
        LabelMap::parse(
            "[users]\nstaff_u = \"odd_r\"\n",
            &MapOrigin::File("/m.toml".into()),
        )
        .unwrap(),
    );
    let err = w.login("erin", 1003, &["wheel"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no SELinux context for user erin (SELinux user staff_u, role odd_r, level -, context tried -): the label map has no worker type for role odd_r (from label map /m.toml line 2 ([users] staff_u = \"odd_r\")); fix: add `odd_r = \"<worker type>\"` under [roles] in /etc/srpc/label-map.toml"
    );
}

#[test]
fn no_seusers_line_is_refused() {
    let mut w = World::new();
    w.seusers = Seusers::parse(
        "root:unconfined_u:s0-s0:c0.c1023\n",
        Path::new("/etc/selinux/default/seusers"),
    )
    .unwrap();
    let err = w.login("jo", 1020, &["users"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no SELinux context for user jo (SELinux user -, role -, level -, context tried -): no line of /etc/selinux/default/seusers applies to jo and it has no __default__ line; fix: `semanage login -a -s <SELinux user> -r s0-s0:c0.c1023 jo`"
    );
}

#[test]
fn explain_names_every_decision() {
    let mut w = World::new();
    let r = w.login("erin", 1003, &["wheel"]).unwrap();
    let builtin_line = |prefix: &str| {
        1 + srpc_labels::label_map::BUILTIN_LABEL_MAP
            .lines()
            .position(|l| l.starts_with(prefix))
            .unwrap()
    };
    assert_eq!(
        r.to_string(),
        format!(
            "user erin: worker context {ctx}\n  SELinux user staff_u: {line}\n  role staff_r: built-in label map line {u} ([users] staff_u = \"staff_r\")\n  worker type staff_srpc_worker_t: built-in label map line {t} ([roles] staff_r = \"staff_srpc_worker_t\")\n  level {lvl}: the user's own (no other active user's level dominates it or is dominated by it)",
            ctx = r.context,
            line = seusers_line(6, "%wheel:staff_u:s0-s0:c0.c1023"),
            u = builtin_line("staff_u ="),
            t = builtin_line("staff_r ="),
            lvl = r.level,
        )
    );
}

#[test]
fn a_dry_run_on_a_clone_holds_nothing() {
    let w = World::new();
    let mut copy = w.levels.clone();
    let groups: Vec<String> = Vec::new();
    let r = resolve(
        &UserIdentity {
            name: "gina",
            uid: 1001,
            groups: &groups,
        },
        &Sources {
            seusers: &w.seusers,
            label_map: &w.map,
            policy: &w.policy,
            allow_shared_level: false,
        },
        &mut copy,
    )
    .unwrap();
    assert!(copy.current("gina").is_some());
    assert!(w.levels.current("gina").is_none());
    assert_eq!(r.seuser, "unconfined_u");
}
