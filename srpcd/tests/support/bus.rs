//! A private system-style D-Bus for a test: a real `dbus-daemon` with the
//! deny-by-default policy of a system bus, which includes srpcd's shipped
//! policy file (`dist/dbus/org.srpc.Srpcd1.conf`) with the admin group
//! renamed to the test's own group (so tests never need a real `srpcadmin`).
//! Stopped on drop.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running bus.
pub struct Bus {
    child: Child,
    /// `unix:path=…`, for `DBUS_SYSTEM_BUS_ADDRESS`.
    pub address: String,
    dir: PathBuf,
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The shipped policy file.
pub fn shipped_policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/dbus/org.srpc.Srpcd1.conf")
}

/// Starts a bus in a fresh directory named for `tag`, whose policy is the
/// shipped one with `srpcadmin` replaced by `admin_group`.
pub fn start(tag: &str, admin_group: &str) -> Bus {
    start_with(tag, admin_group, "")
}

/// A policy that lets every user call every method of srpcd: a mistaken
/// bus policy, which srpcd's own check must still catch.
pub const WIDE_OPEN: &str = r#"<policy context="default">
    <allow send_destination="org.srpc.Srpcd1"/>
  </policy>"#;

/// [`start`], with `extra` policy after the shipped file's.
pub fn start_with(tag: &str, admin_group: &str, extra: &str) -> Bus {
    let dir = std::env::temp_dir().join(format!("srpcd-test-bus-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let policy = fs::read_to_string(shipped_policy())
        .unwrap()
        .replace("group=\"srpcadmin\"", &format!("group=\"{admin_group}\""));
    let policy_path = dir.join("org.srpc.Srpcd1.conf");
    fs::write(&policy_path, policy).unwrap();
    let socket = dir.join("bus.sock");
    let conf = dir.join("bus.conf");
    fs::write(
        &conf,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <include>{policy}</include>
  {extra}
</busconfig>
"#,
            socket = socket.display(),
            policy = policy_path.display(),
        ),
    )
    .unwrap();
    let mut child = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", conf.display()))
        .args(["--nofork", "--print-address=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("dbus-daemon (package dbus-daemon) must be installed");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("unix:"), "dbus-daemon printed {line:?}");
    // Others (the test's unprivileged users) connect too.
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o777)).unwrap();
    Bus {
        child,
        address: format!("unix:path={}", socket.display()),
        dir,
    }
}
