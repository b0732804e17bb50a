//! The per-user level allocator: distinct pairs, the documented probe order, stability,
//! release, fixed levels, refusals with their fix, shared levels, and (proptest) that no
//! two active users' levels ever dominate one another.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use srpc_labels::{AllocError, Allocation, Level, LevelAllocator, LevelRequest, LoginName, Range};

const ALL: &str = "s0-s0:c0.c1023";

struct Req {
    user: String,
    uid: u32,
    range: Range,
    login: LoginName,
    seuser: String,
    allow_shared: bool,
}

impl Req {
    fn new(user: &str, uid: u32, range: &str) -> Req {
        Req {
            user: user.into(),
            uid,
            range: range.parse().unwrap(),
            login: LoginName::User(user.into()),
            seuser: "staff_u".into(),
            allow_shared: false,
        }
    }

    fn get(&self, a: &mut LevelAllocator) -> Result<Allocation, AllocError> {
        a.allocate(&LevelRequest {
            user: &self.user,
            uid: self.uid,
            range: &self.range,
            login: &self.login,
            seuser: &self.seuser,
            allow_shared: self.allow_shared,
        })
    }
}

fn cats(l: &Level) -> Vec<u32> {
    l.categories.iter().collect()
}

#[test]
fn default_range_users_get_distinct_non_dominating_pairs() {
    let mut a = LevelAllocator::new();
    let mut levels = Vec::new();
    for uid in 1000..1200 {
        let got = Req::new(&format!("u{uid}"), uid, ALL).get(&mut a).unwrap();
        assert!(!got.shared && got.shares_with.is_empty());
        assert_eq!(got.level.sensitivity, 0);
        assert_eq!(got.level.categories.len(), 2, "{:?}", got.level);
        levels.push(got.level);
    }
    for (i, x) in levels.iter().enumerate() {
        for y in &levels[i + 1..] {
            assert!(!x.dominates(y) && !y.dominates(x), "{x:?} vs {y:?}");
        }
    }
}

#[test]
fn the_same_uid_gets_the_same_pair_on_every_allocator() {
    let first = Req::new("alice", 1000, ALL)
        .get(&mut LevelAllocator::new())
        .unwrap();
    let again = Req::new("alice", 1000, ALL)
        .get(&mut LevelAllocator::new())
        .unwrap();
    assert_eq!(first, again);
    let other = Req::new("bob", 1001, ALL)
        .get(&mut LevelAllocator::new())
        .unwrap();
    assert_ne!(first.level, other.level, "neighbouring uids land apart");
}

#[test]
fn a_taken_pair_probes_to_the_next_in_the_documented_order() {
    // Two names with one uid start at the same pair; the second takes the next one in
    // the order (0,1) (0,2) (1,2) (0,3) ...: (a+1, b), or (0, b+1) after (b-1, b).
    let mut a = LevelAllocator::new();
    for uid in [0, 7, 1000, 65534, 4_000_000_000] {
        let first = Req::new(&format!("x{uid}"), uid, ALL).get(&mut a).unwrap();
        let second = Req::new(&format!("y{uid}"), uid, ALL).get(&mut a).unwrap();
        let [x, y] = cats(&first.level)[..] else {
            panic!()
        };
        let expected = if x + 1 < y {
            vec![x + 1, y]
        } else if y < 1023 {
            vec![0, y + 1]
        } else {
            vec![0, 1]
        };
        assert_eq!(cats(&second.level), expected, "uid {uid}");
    }
}

#[test]
fn an_active_user_keeps_the_level_until_released() {
    let mut a = LevelAllocator::new();
    let alice = Req::new("alice", 1000, ALL);
    let first = alice.get(&mut a).unwrap();
    assert_eq!(alice.get(&mut a).unwrap(), first);
    assert_eq!(a.current("alice"), Some(&first));
    assert_eq!(a.active().map(|(u, _)| u).collect::<Vec<_>>(), ["alice"]);
    assert_eq!(a.release("alice"), Some(first.clone()));
    assert_eq!(a.current("alice"), None);
    assert_eq!(a.release("alice"), None);
    // Free again: the same uid gets the same pair back.
    assert_eq!(alice.get(&mut a).unwrap(), first);
}

#[test]
fn a_range_without_categories_is_refused_with_the_semanage_fix() {
    let mut a = LevelAllocator::new();
    let mut alice = Req::new("alice", 1000, "s0");
    alice.seuser = "user_u".into();
    assert_eq!(
        alice.get(&mut a).unwrap_err().to_string(),
        "user alice's range s0 (SELinux user user_u) holds no categories, so alice cannot have an MCS level of their own; fix: `semanage login -m -r s0-s0:c0.c1023 alice` (first `semanage user -m -r s0-s0:c0.c1023 user_u` if user_u's own range is narrower), or set selinux.allow_shared_level = true to let such users share a level"
    );
    assert_eq!(a.current("alice"), None, "a refusal holds nothing");
    // From a %group or __default__ line the fix adds a line for the user.
    for login in [LoginName::Default, LoginName::Group("users".into())] {
        let mut bob = Req::new("bob", 1001, "s0-s0");
        bob.seuser = "user_u".into();
        bob.login = login;
        let err = bob.get(&mut a).unwrap_err().to_string();
        assert!(
            err.contains("range s0 (SELinux user user_u)")
                && err.contains("fix: `semanage login -a -s user_u -r s0-s0:c0.c1023 bob` (first `semanage user -m -r s0-s0:c0.c1023 user_u`"),
            "{err}"
        );
    }
}

#[test]
fn a_fixed_level_is_exclusive_and_a_second_holder_is_refused_or_shares() {
    let mut a = LevelAllocator::new();
    let first = Req::new("fixed5", 1005, "s0:c5").get(&mut a).unwrap();
    assert_eq!(first.level.to_string(), "s0:c5");
    assert!(!first.shared);
    let mut second = Req::new("fixed5b", 1006, "s0:c5");
    assert_eq!(
        second.get(&mut a).unwrap_err().to_string(),
        "every level of user fixed5b's range s0:c5 (SELinux user staff_u) conflicts with an active user's level (fixed5 at s0:c5); fix: `semanage login -m -r s0-s0:c0.c1023 fixed5b` (first `semanage user -m -r s0-s0:c0.c1023 staff_u` if staff_u's own range is narrower), or set selinux.allow_shared_level = true to let such users share a level"
    );
    // Sharing would let fixed5b reach fixed5's own level: refused even when allowed.
    second.allow_shared = true;
    assert_eq!(
        second.get(&mut a).unwrap_err().to_string(),
        "user fixed5b has no level of their own, and the shared level s0:c5 would reach the own level of fixed5 at s0:c5; fix: `semanage login -m -r s0-s0:c0.c1023 fixed5b` (first `semanage user -m -r s0-s0:c0.c1023 staff_u` if staff_u's own range is narrower)"
    );
    assert_eq!(a.current("fixed5b"), None);
}

#[test]
fn a_shared_fixed_level_lists_the_users_who_reach_it() {
    let mut a = LevelAllocator::new();
    // alice's pair will contain c5 if she is given a range that forces it.
    let alice = Req::new("alice", 1000, "s0:c5-s0:c0.c1023")
        .get(&mut a)
        .unwrap();
    assert!(alice.level.categories.contains(5));
    let mut fixed = Req::new("fixed5", 1005, "s0:c5");
    assert!(fixed.get(&mut a).is_err(), "alice's level dominates s0:c5");
    fixed.allow_shared = true;
    let shared = fixed.get(&mut a).unwrap();
    assert_eq!(shared.level.to_string(), "s0:c5");
    assert!(shared.shared);
    assert_eq!(shared.shares_with, ["alice"]);
}

#[test]
fn pairs_avoid_categories_fixed_users_hold() {
    let mut a = LevelAllocator::new();
    Req::new("fixed5", 1005, "s0:c5").get(&mut a).unwrap();
    for uid in 2000..2300 {
        let got = Req::new(&format!("u{uid}"), uid, ALL).get(&mut a).unwrap();
        assert!(!got.level.categories.contains(5), "{:?}", got.level);
    }
}

#[test]
fn one_free_category_and_low_categories() {
    let mut a = LevelAllocator::new();
    let got = Req::new("one", 1, "s0-s0:c7").get(&mut a).unwrap();
    assert_eq!(got.level.to_string(), "s0:c7");
    // The level keeps the low level's categories and adds a pair.
    let got = Req::new("low", 2, "s0:c9-s0:c0.c1023").get(&mut a).unwrap();
    let c = cats(&got.level);
    assert!(c.contains(&9) && c.len() == 3, "{c:?}");
    // Sensitivity is the low one.
    let got = Req::new("mls", 3, "s1-s2:c0.c1023").get(&mut a).unwrap();
    assert_eq!(got.level.sensitivity, 1);
}

#[test]
fn every_pair_taken_is_refused_naming_the_holders() {
    let mut a = LevelAllocator::new();
    // c0.c2 has three pairs.
    for (i, user) in ["a", "b", "c"].iter().enumerate() {
        Req::new(user, u32::try_from(i).unwrap(), "s0-s0:c0.c2")
            .get(&mut a)
            .unwrap();
    }
    let err = Req::new("d", 9, "s0-s0:c0.c2").get(&mut a).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("every level of user d's range s0-s0:c0.c2 (SELinux user staff_u) conflicts with an active user's level (a at s0:c")
            && text.contains("b at s0:c")
            && text.contains("c at s0:c"),
        "{text}"
    );
}

#[test]
fn shared_users_lose_protection_but_do_not_block_others() {
    let mut a = LevelAllocator::new();
    let mut guest = Req::new("guest", 500, "s0");
    guest.allow_shared = true;
    let shared = guest.get(&mut a).unwrap();
    assert_eq!(shared.level.to_string(), "s0");
    assert!(shared.shared);
    // Everyone dominates s0; the exclusive user is still given a level.
    let own = Req::new("alice", 1000, ALL).get(&mut a).unwrap();
    assert!(!own.shared);
    // A second shared user lists who is active.
    let mut guest2 = Req::new("guest2", 501, "s0");
    guest2.allow_shared = true;
    let mut with = guest2.get(&mut a).unwrap().shares_with;
    with.sort();
    assert_eq!(with, ["alice", "guest"]);
}

#[test]
fn an_active_user_whose_range_changed_is_refused() {
    let mut a = LevelAllocator::new();
    let held = Req::new("alice", 1000, ALL).get(&mut a).unwrap();
    let err = Req::new("alice", 1000, "s0:c5").get(&mut a).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "user alice is active at level {}, which the range s0:c5 no longer contains; end alice's sessions to apply the new range",
            held.level
        )
    );
    // The held level is kept.
    assert_eq!(a.current("alice"), Some(&held));
}

#[test]
fn a_shared_holder_is_refused_once_sharing_is_off() {
    let mut a = LevelAllocator::new();
    let mut guest = Req::new("guest", 500, "s0");
    guest.allow_shared = true;
    guest.get(&mut a).unwrap();
    guest.allow_shared = false;
    assert_eq!(
        guest.get(&mut a).unwrap_err().to_string(),
        "user guest is active at the shared level s0 from an earlier login, and shared levels are not allowed now; end guest's sessions"
    );
}

/// One step of a random session history.
#[derive(Debug, Clone)]
enum Op {
    Login {
        user: usize,
        range: usize,
        allow_shared: bool,
    },
    Logout(usize),
}

/// Ranges over a small category space, so conflicts and exhaustion happen.
const RANGES: [&str; 8] = [
    "s0-s0:c0.c5",
    "s0:c1-s0:c0.c5",
    "s0:c2",
    "s0:c2,c3",
    "s0-s0:c4",
    "s0",
    "s0-s0:c3.c5",
    "s0:c0.c5",
];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..8, 0usize..RANGES.len(), any::<bool>()).prop_map(|(user, range, allow_shared)| {
            Op::Login {
                user,
                range,
                allow_shared,
            }
        }),
        (0usize..8).prop_map(Op::Logout),
    ]
}

proptest! {
    #[test]
    fn no_active_level_ever_dominates_an_exclusive_one(ops in prop::collection::vec(op(), 1..60)) {
        let mut a = LevelAllocator::new();
        for op in ops {
            match op {
                Op::Login { user, range, allow_shared } => {
                    let mut req = Req::new(&format!("u{user}"), u32::try_from(user).unwrap(), RANGES[range]);
                    req.allow_shared = allow_shared;
                    let was = a.current(&req.user).cloned();
                    if let Ok(got) = req.get(&mut a) {
                        prop_assert!(req.range.contains(&got.level));
                        prop_assert!(allow_shared || !got.shared);
                        if let Some(was) = was {
                            prop_assert_eq!(was, got);
                        }
                    } else {
                        // A refusal changes nothing.
                        prop_assert_eq!(a.current(&req.user).cloned(), was);
                    }
                }
                Op::Logout(user) => {
                    a.release(&format!("u{user}"));
                }
            }
            let active: Vec<(String, Allocation)> =
                a.active().map(|(u, x)| (u.to_owned(), x.clone())).collect();
            for (u, x) in &active {
                if x.shared {
                    continue;
                }
                prop_assert!(!x.level.categories.is_empty(), "{} exclusive at s0", u);
                for (v, y) in &active {
                    if u != v {
                        prop_assert!(!y.level.dominates(&x.level), "{} at {} reaches {} at {}", v, y.level, u, x.level);
                        if !y.shared {
                            prop_assert!(!x.level.dominates(&y.level), "{} at {} reaches {} at {}", u, x.level, v, y.level);
                        }
                    }
                }
            }
        }
    }
}
