//! Parsing, printing and dominance of MCS levels and ranges; every parse error's message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use srpc_labels::{CategorySet, Level, Range};

fn level(s: &str) -> Level {
    s.parse().unwrap()
}

fn range(s: &str) -> Range {
    s.parse().unwrap()
}

#[test]
fn levels_print_as_the_kernel_prints_them() {
    for (input, printed) in [
        ("s0", "s0"),
        ("s0:c1,c5", "s0:c1,c5"),
        ("s0:c0.c1023", "s0:c0.c1023"),
        ("s15:c3", "s15:c3"),
        // Runs of two stay comma-separated, runs of three or more become cA.cB.
        ("s0:c1.c2", "s0:c1,c2"),
        ("s0:c1,c2,c3,c7", "s0:c1.c3,c7"),
        ("s0:c5,c1", "s0:c1,c5"),
        ("s0:c0.c3,c10.c12,c64", "s0:c0.c3,c10.c12,c64"),
    ] {
        assert_eq!(level(input).to_string(), printed, "{input}");
    }
}

#[test]
fn ranges_parse_and_print() {
    let r = range("s0-s0:c0.c1023");
    assert_eq!(r.low(), &level("s0"));
    assert_eq!(r.high(), &level("s0:c0.c1023"));
    assert_eq!(r.high().categories.len(), 1024);
    assert_eq!(r.to_string(), "s0-s0:c0.c1023");
    // A single level is the range low = high, printed once (as semanage prints user_u's s0).
    let single = range("s0:c5");
    assert_eq!(single.low(), single.high());
    assert_eq!(single.to_string(), "s0:c5");
    assert_eq!(range("s0-s0").to_string(), "s0");
    assert_eq!(range("s0:c1-s1:c1,c2").to_string(), "s0:c1-s1:c1,c2");
}

#[test]
fn dominance() {
    let all = level("s0:c0.c1023");
    let a = level("s0:c1,c2");
    let b = level("s0:c2,c3");
    let s0 = level("s0");
    assert!(all.dominates(&a) && all.dominates(&s0) && a.dominates(&s0));
    assert!(a.dominates(&a));
    assert!(!a.dominates(&b) && !b.dominates(&a));
    assert!(!s0.dominates(&a) && !a.dominates(&all));
    // Sensitivity counts too.
    assert!(level("s1:c1").dominates(&level("s0:c1")));
    assert!(!level("s0:c1").dominates(&level("s1:c1")));
    assert!(!level("s1").dominates(&level("s0:c1")));

    let r = range("s0-s0:c0.c1023");
    assert!(r.contains(&a) && r.contains(&s0) && r.contains(&all));
    assert!(!range("s0").contains(&a));
    assert!(!range("s0:c5-s0:c0.c1023").contains(&a));
    assert!(range("s0:c5-s0:c0.c1023").contains(&level("s0:c5,c7")));
}

#[test]
fn every_parse_error_names_input_and_cause() {
    for (input, message) in [
        ("", "it is empty"),
        ("s0-", "it is empty"),
        (
            "SystemLow",
            "expected a sensitivity such as s0, found 'SystemLow' (translated names such as SystemLow are not accepted)",
        ),
        (
            "s",
            "expected a sensitivity such as s0, found 's' (translated names such as SystemLow are not accepted)",
        ),
        (
            "s01",
            "expected a sensitivity such as s0, found 's01' (translated names such as SystemLow are not accepted)",
        ),
        (
            "s-1",
            "expected a sensitivity such as s0, found 's' (translated names such as SystemLow are not accepted)",
        ),
        ("s0:", "expected a category such as c5, found ''"),
        ("s0:c1,", "expected a category such as c5, found ''"),
        ("s0:c05", "expected a category such as c5, found 'c05'"),
        ("s0:c1 ", "expected a category such as c5, found 'c1 '"),
        ("s0:x1", "expected a category such as c5, found 'x1'"),
        ("s0:c99999999999", "category c99999999999 is above c65535"),
        ("s0:c65536", "category c65536 is above c65535"),
        ("s0:c5.c1", "category range c5.c1 does not run upwards"),
        ("s0:c5.c5", "category range c5.c5 does not run upwards"),
        ("s0:c1,c1", "category c1 is given twice"),
        ("s0:c0.c3,c2", "category c2 is given twice"),
        ("s0-s0-s0", "a range has one '-' between its low and high level"),
        (
            "s0:c1-s0",
            "the high level s0 does not dominate the low level s0:c1",
        ),
        (
            "s1-s0:c0.c1023",
            "the high level s0:c0.c1023 does not dominate the low level s1",
        ),
    ] {
        let err = input.parse::<Range>().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("invalid MCS level or range '{input}': {message}"),
            "{input:?}"
        );
    }
    // A level is never a range.
    let err = "s0-s0".parse::<Level>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid MCS level or range 's0-s0': expected a sensitivity such as s0, found 's0-s0' (translated names such as SystemLow are not accepted)"
    );
    let err = Range::new(level("s0:c1"), level("s0:c2")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid MCS level or range 's0:c1-s0:c2': the high level s0:c2 does not dominate the low level s0:c1"
    );
}

#[test]
fn category_set_operations() {
    let mut set = CategorySet::new();
    assert!(set.is_empty());
    assert!(set.insert(700));
    assert!(!set.insert(700));
    assert!(set.insert(3));
    assert_eq!(set.iter().collect::<Vec<_>>(), [3, 700]);
    assert_eq!(set.len(), 2);
    assert!(set.contains(3) && !set.contains(4) && !set.contains(100_000));
    let small: CategorySet = [3].into_iter().collect();
    assert!(set.is_superset(&small) && !small.is_superset(&set));
    assert_eq!(set.difference(&small), [700]);
    assert!(CategorySet::new().is_superset(&CategorySet::new()));
    // Nothing above MAX_CATEGORY is stored (no gigabyte bitmap for c4294967295).
    assert!(!set.insert(u32::MAX));
    assert!(!set.insert(srpc_labels::level::MAX_CATEGORY + 1));
    assert!(set.insert(srpc_labels::level::MAX_CATEGORY));
    assert_eq!(set.len(), 3);
    let collected: CategorySet = [1, u32::MAX].into_iter().collect();
    assert_eq!(collected.iter().collect::<Vec<_>>(), [1]);
}

fn any_level() -> impl Strategy<Value = Level> {
    (0u32..3, prop::collection::btree_set(0u32..200, 0..12)).prop_map(|(s, cats)| Level {
        sensitivity: s,
        categories: cats.into_iter().collect(),
    })
}

proptest! {
    #[test]
    fn printing_then_parsing_is_the_identity(l in any_level()) {
        let printed = l.to_string();
        prop_assert_eq!(printed.parse::<Level>().unwrap(), l);
    }

    #[test]
    fn dominance_is_a_partial_order(a in any_level(), b in any_level(), c in any_level()) {
        prop_assert!(a.dominates(&a));
        if a.dominates(&b) && b.dominates(&a) {
            prop_assert_eq!(&a, &b);
        }
        if a.dominates(&b) && b.dominates(&c) {
            prop_assert!(a.dominates(&c));
        }
    }
}
