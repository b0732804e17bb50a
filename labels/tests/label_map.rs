//! The built-in label map, an admin's overrides, and every error message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use srpc_labels::label_map::BUILTIN_LABEL_MAP;
use srpc_labels::{LabelMap, MapOrigin};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The 1-based line of the built-in map that starts with `prefix`.
fn builtin_line(prefix: &str) -> usize {
    1 + BUILTIN_LABEL_MAP
        .lines()
        .position(|l| l.starts_with(prefix))
        .unwrap()
}

#[test]
fn the_builtin_map_has_the_contract_names() {
    let map = LabelMap::builtin().unwrap();
    for (user, role) in [
        ("user_u", "user_r"),
        ("staff_u", "staff_r"),
        ("sysadm_u", "sysadm_r"),
        ("unconfined_u", "unconfined_r"),
        ("root", "staff_r"),
    ] {
        assert_eq!(map.role_for(user).unwrap().value, role, "{user}");
    }
    for (role, ty) in [
        ("user_r", "user_srpc_worker_t"),
        ("staff_r", "staff_srpc_worker_t"),
        ("sysadm_r", "sysadm_srpc_worker_t"),
        ("unconfined_r", "unconfined_srpc_worker_t"),
    ] {
        assert_eq!(map.worker_type_for(role).unwrap().value, ty, "{role}");
    }
    // No fallback entries.
    assert!(map.role_for("system_u").is_none());
    assert!(map.role_for("xdm").is_none());
    assert!(map.worker_type_for("system_r").is_none());
}

#[test]
fn entries_say_where_they_come_from() {
    let map = LabelMap::builtin().unwrap();
    let e = map.role_for("user_u").unwrap();
    assert_eq!(e.origin, MapOrigin::Builtin);
    assert_eq!(e.line, builtin_line("user_u ="));
    assert_eq!(
        e.to_string(),
        format!(
            "built-in label map line {} ([users] user_u = \"user_r\")",
            builtin_line("user_u =")
        )
    );
    let e = map.worker_type_for("staff_r").unwrap();
    assert_eq!(
        e.to_string(),
        format!(
            "built-in label map line {} ([roles] staff_r = \"staff_srpc_worker_t\")",
            builtin_line("staff_r =")
        )
    );
}

#[test]
fn an_admin_file_replaces_and_adds_entries() {
    let path = fixture("label-map-override.toml");
    let map = LabelMap::builtin_with_overrides(&path).unwrap();
    let root = map.role_for("root").unwrap();
    assert_eq!(root.value, "sysadm_r");
    assert_eq!(
        root.to_string(),
        format!(
            "label map {} line 4 ([users] root = \"sysadm_r\")",
            path.display()
        )
    );
    assert_eq!(map.role_for("guest_u").unwrap().value, "guest_r");
    assert_eq!(
        map.worker_type_for("guest_r").unwrap().value,
        "guest_srpc_worker_t"
    );
    // Untouched entries stay built in.
    assert_eq!(map.role_for("user_u").unwrap().origin, MapOrigin::Builtin);
    assert_eq!(
        map.worker_type_for("user_r").unwrap().value,
        "user_srpc_worker_t"
    );
}

#[test]
fn a_missing_admin_file_leaves_the_builtin_map() {
    let map = LabelMap::builtin_with_overrides(&fixture("no-such-map.toml")).unwrap();
    assert_eq!(map, LabelMap::builtin().unwrap());
}

#[test]
fn an_unreadable_admin_file_is_an_error() {
    // A directory cannot be read as a file.
    let dir = fixture("");
    let err = LabelMap::builtin_with_overrides(&dir).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot read label map {}: Is a directory (os error 21)",
            dir.display()
        )
    );
}

#[test]
fn every_parse_error_names_file_and_line() {
    let origin = MapOrigin::File("/etc/srpc/label-map.toml".into());
    for (text, line, message) in [
        (
            "[users]\nuser_u = \"user_r\"\n[user]\nx = \"y\"\n",
            3,
            "unknown field `user`, expected `users` or `roles`",
        ),
        ("[users]\n\nuser_u = 5\n", 3, "invalid type: integer `5`, expected a string"),
        (
            "[users]\n\"user u\" = \"user_r\"\n",
            2,
            "[users] user u: name 'user u' is not an SELinux identifier (letters, digits, '_', '.', '-')",
        ),
        (
            "[roles]\nuser_r = \"user_t:s0\"\n",
            2,
            "[roles] user_r: value 'user_t:s0' is not an SELinux identifier (letters, digits, '_', '.', '-')",
        ),
        (
            "[roles]\nuser_r = \"\"\n",
            2,
            "[roles] user_r: value '' is not an SELinux identifier (letters, digits, '_', '.', '-')",
        ),
        (
            "[users]\nuser_u = \"a\"\nuser_u = \"b\"\n",
            3,
            "duplicate key",
        ),
        ("[users\n", 1, "unclosed table, expected `]`"),
    ] {
        let err = LabelMap::parse(text, &origin).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("label map /etc/srpc/label-map.toml line {line}: {message}"),
            "{text:?}"
        );
    }
}
