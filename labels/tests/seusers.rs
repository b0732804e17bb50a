//! The seusers parser and lookup against the fixture file, in libselinux's order; every
//! parse error's message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use srpc_labels::{LoginName, Seusers};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seusers")
}

fn seusers() -> Seusers {
    Seusers::load(&fixture()).unwrap()
}

/// The line number the lookup picks for `user` with `groups`.
fn line_for(s: &Seusers, user: &str, groups: &[&str]) -> Option<usize> {
    s.lookup(user, groups).map(|m| m.entry.line)
}

#[test]
fn the_fixture_parses_with_comments_and_blank_lines_skipped() {
    let s = seusers();
    assert_eq!(s.entries().len(), 12);
    let root = &s.entries()[0];
    assert_eq!(root.line, 4);
    assert_eq!(root.login, LoginName::User("root".into()));
    assert_eq!(root.seuser, "unconfined_u");
    assert_eq!(root.range.as_ref().unwrap().to_string(), "s0-s0:c0.c1023");
    let norange = s.entries().iter().find(|e| e.line == 12).unwrap();
    assert_eq!(norange.range, None);
    assert_eq!(s.entries()[2].login, LoginName::Group("wheel".into()));
    assert_eq!(s.entries()[10].login, LoginName::Default);
}

#[test]
fn lookup_order_is_exact_name_then_first_group_then_first_default() {
    let s = seusers();
    // An exact line wins even after a matching %group line.
    assert_eq!(line_for(&s, "dave", &["wheel"]), Some(9));
    // The first %group line in file order, not the first group in the user's list.
    assert_eq!(line_for(&s, "erin", &["admins", "wheel"]), Some(6));
    assert_eq!(line_for(&s, "frank", &["users", "admins"]), Some(7));
    // Nothing else: the first __default__.
    assert_eq!(line_for(&s, "gina", &["users"]), Some(14));
    assert_eq!(line_for(&s, "gina", &[] as &[&str]), Some(14));
    // A group name is not a user name and the reverse.
    assert_eq!(line_for(&s, "wheel", &[] as &[&str]), Some(14));
    assert_eq!(line_for(&s, "erin", &["alice"]), Some(14));
    // Owned group names work too.
    let owned = vec!["wheel".to_owned()];
    assert_eq!(s.lookup("erin", &owned).unwrap().entry.seuser, "staff_u");
}

#[test]
fn a_group_line_beats_an_earlier_default() {
    let s = Seusers::parse(
        "__default__:user_u:s0\n%wheel:staff_u:s0:c1\n",
        Path::new("x"),
    )
    .unwrap();
    assert_eq!(line_for(&s, "erin", &["wheel"]), Some(2));
    assert_eq!(line_for(&s, "gina", &["users"]), Some(1));
}

#[test]
fn no_line_and_no_default_is_none() {
    let s = Seusers::parse("alice:user_u:s0\n%wheel:staff_u:s0\n", Path::new("x")).unwrap();
    assert!(s.lookup("bob", &["users"]).is_none());
    assert!(Seusers::parse("", Path::new("x"))
        .unwrap()
        .lookup("root", &[] as &[&str])
        .is_none());
}

#[test]
fn a_match_displays_file_line_and_entry() {
    let s = seusers();
    let m = s.lookup("erin", &["wheel"]).unwrap();
    assert_eq!(
        m.to_string(),
        format!(
            "{} line 6 (%wheel:staff_u:s0-s0:c0.c1023)",
            fixture().display()
        )
    );
    let m = s.lookup("norange", &[] as &[&str]).unwrap();
    assert_eq!(
        m.to_string(),
        format!("{} line 12 (norange:user_u)", fixture().display())
    );
}

#[test]
fn every_parse_error_names_file_and_line() {
    let p = Path::new("/etc/selinux/default/seusers");
    for (line, message) in [
        (
            "alice",
            "expected name:seuser[:range], found 'alice' (no ':')",
        ),
        (":user_u:s0", "'' is not a valid login name"),
        ("al ice:user_u:s0", "'al ice' is not a valid login name"),
        ("%:user_u:s0", "'%' is not a valid %group name"),
        ("%wh%eel:user_u:s0", "'%wh%eel' is not a valid %group name"),
        (
            "alice::s0",
            "'' is not a valid SELinux user name (letters, digits, '_', '.', '-')",
        ),
        (
            "alice:user u:s0",
            "'user u' is not a valid SELinux user name (letters, digits, '_', '.', '-')",
        ),
        (
            "alice:user_u:s0:c5.c1",
            "invalid MCS level or range 's0:c5.c1': category range c5.c1 does not run upwards",
        ),
        (
            "alice:user_u:",
            "invalid MCS level or range '': it is empty",
        ),
    ] {
        let text = format!("# comment\n\n{line}\n");
        let err = Seusers::parse(&text, p).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("/etc/selinux/default/seusers line 3: {message}"),
            "{line}"
        );
    }
    let missing = Path::new("/nonexistent/seusers");
    assert_eq!(
        Seusers::load(missing).unwrap_err().to_string(),
        "cannot read /nonexistent/seusers: No such file or directory (os error 2)"
    );
}

#[test]
fn surrounding_whitespace_and_crlf_are_ignored_as_libselinux_does() {
    let s = Seusers::parse(
        "  alice:user_u:s0:c1  \r\n\t# indented comment\r\n",
        Path::new("x"),
    )
    .unwrap();
    assert_eq!(s.entries().len(), 1);
    assert_eq!(s.entries()[0].range.as_ref().unwrap().to_string(), "s0:c1");
}
