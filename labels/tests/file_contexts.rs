//! The selabel file backend against the fixture file_contexts (and its .local), and the
//! policy-root discovery from /etc/selinux/config. Runs on any host: the backend needs no
//! SELinux kernel.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use srpc_labels::contexts::SESSION_DIR_TYPE;
use srpc_labels::selinux_config::{parse_selinux_type, PolicyPaths};
use srpc_labels::{listener_context, object_context, FileContexts, Level};

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFSOCK: u32 = 0o140_000;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn fc() -> FileContexts {
    FileContexts::open(&fixture("file_contexts")).unwrap()
}

#[test]
fn mode_selects_the_rule() {
    let fc = fc();
    let ty = |p: &str, mode| fc.lookup_type(Path::new(p), mode).unwrap();
    assert_eq!(ty("/srv/srpc", S_IFDIR | 0o755), "srpc_tree_t");
    assert_eq!(ty("/srv/srpc/svc", S_IFDIR | 0o755), "srpc_tree_t");
    assert_eq!(ty("/srv/srpc/svc/echo", S_IFREG | 0o755), "srpc_endpoint_t");
    assert_eq!(ty("/srv/srpc/data/x", S_IFREG | 0o644), "srpc_content_t");
    // A `--` rule does not match a socket: the socket falls to the next rule.
    assert_eq!(ty("/srv/srpc/data/x", S_IFSOCK | 0o666), "srpc_endpoint_t");
    assert_eq!(ty("/srv/srpc/svc/a.sock", S_IFSOCK | 0o666), "srpc_sock_t");
    assert_eq!(
        ty("/srv/srpc/svc/a.sock", S_IFREG | 0o644),
        "srpc_endpoint_t"
    );
    assert_eq!(
        ty("/run/srpc/users/alice", S_IFDIR | 0o700),
        "srpc_runtime_t"
    );
}

#[test]
fn local_rules_are_honoured() {
    let fc = fc();
    assert_eq!(
        fc.lookup_type(Path::new("/srv/srpc/ops/restart"), S_IFREG | 0o755)
            .unwrap(),
        "srpc_admin_endpoint_t"
    );
    assert_eq!(fc.path(), fixture("file_contexts"));
}

#[test]
fn none_and_unmatched_paths_are_errors_with_the_fix() {
    let fc = fc();
    let fcp = fixture("file_contexts");
    let err = fc
        .lookup_type(Path::new("/srv/srpc/unlabelled"), S_IFREG | 0o644)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "file contexts {} give no context for /srv/srpc/unlabelled (mode 0o100644): no rule matches or the rule is <<none>>; add one with `semanage fcontext -a -t <type> '/srv/srpc/unlabelled'`",
            fcp.display()
        )
    );
    let err = fc
        .lookup_type(Path::new("/elsewhere"), S_IFDIR | 0o755)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("give no context for /elsewhere (mode 0o40755)"),
        "{err}"
    );
}

#[test]
fn a_mode_without_file_type_bits_is_refused() {
    let err = fc()
        .lookup_type(Path::new("/srv/srpc/svc/echo"), 0o755)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "mode 0o755 for /srv/srpc/svc/echo has no file type bits (pass the node's own st_mode)"
    );
}

#[test]
fn a_nul_byte_in_a_path_is_refused() {
    use std::os::unix::ffi::OsStrExt;
    let p = Path::new(std::ffi::OsStr::from_bytes(b"/srv/srpc/a\0b"));
    let err = fc().lookup_type(p, S_IFREG).unwrap_err();
    assert_eq!(err.to_string(), "path /srv/srpc/a\0b contains a NUL byte");
}

#[test]
fn a_missing_file_contexts_is_an_open_error_naming_it() {
    let missing = fixture("no-such-file_contexts");
    let err = FileContexts::open(&missing).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot open file contexts {}: selabel_open() failed: No such file or directory (os error 2)",
            missing.display()
        )
    );
}

#[test]
fn object_and_listener_contexts_are_system_u_at_the_level() {
    let level: Level = "s0:c17,c402".parse().unwrap();
    assert_eq!(
        object_context(SESSION_DIR_TYPE, &level),
        "system_u:object_r:srpc_session_t:s0:c17,c402"
    );
    assert_eq!(
        listener_context(&level),
        "system_u:system_r:srpcd_t:s0:c17,c402"
    );
}

#[test]
fn the_policy_root_comes_from_selinuxtype() {
    let dir = fixture("etc-selinux");
    let paths = PolicyPaths::from_config(&dir).unwrap();
    assert_eq!(paths.root(), dir.join("default"));
    assert_eq!(paths.seusers(), dir.join("default/seusers"));
    assert_eq!(
        paths.file_contexts(),
        dir.join("default/contexts/files/file_contexts")
    );
}

#[test]
fn selinuxtype_parsing_follows_libselinux() {
    let p = Path::new("/etc/selinux/config");
    // Last line wins, the tag is case-insensitive, the value ends at whitespace.
    assert_eq!(
        parse_selinux_type("SELINUXTYPE=targeted\nselinuxtype=mls  # note\n", p).unwrap(),
        "mls"
    );
    assert_eq!(
        parse_selinux_type("SELINUX=enforcing\n", p)
            .unwrap_err()
            .to_string(),
        "/etc/selinux/config has no SELINUXTYPE= line"
    );
    for bad in ["..", "../../tmp/x", "\"default\"", ""] {
        let err = parse_selinux_type(&format!("# c\nSELINUXTYPE={bad}\n"), p).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "/etc/selinux/config line 2: SELINUXTYPE '{bad}' is not a policy name (letters, digits, '_', '.', '-')"
            )
        );
    }
    let err = PolicyPaths::from_config(&fixture("no-such-dir")).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot read {}: No such file or directory (os error 2)",
            fixture("no-such-dir/config").display()
        )
    );
}
