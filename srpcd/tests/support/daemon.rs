//! Starting the real srpcd for a test: a scratch directory with a TLS
//! certificate, a config and a canonical tree the test builds; helpers to find
//! its processes in /proc.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use srpc::client::{Client, Trust};

use crate::pam_fixture::Fixture;

/// Failures are answered this long after the attempt began.
pub const FAILURE_DELAY: Duration = Duration::from_millis(400);

/// What a test may set.
pub struct Options {
    /// The PAM service.
    pub service: String,
    /// Worker (and handler) idle timeout.
    pub idle_secs: u32,
    /// More TOML appended to the config (new tables only).
    pub extra: String,
}

/// A running srpcd with its scratch directory; stopped (SIGTERM) on drop.
pub struct Daemon {
    pub child: Child,
    pub dir: PathBuf,
    pub addr: String,
    pub trust: Trust,
    pub log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        stop(&mut self.child);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

pub fn stop(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn gid_of(user: &str) -> u32 {
    nix::unistd::User::from_name(user)
        .unwrap()
        .unwrap()
        .gid
        .as_raw()
}

pub fn uid_of(user: &str) -> u32 {
    nix::unistd::User::from_name(user)
        .unwrap()
        .unwrap()
        .uid
        .as_raw()
}

/// Starts srpcd with a tree: `/pub` (0755) holding an endpoint `echo`, and
/// `/private` (0700, owned by `private_owner`) holding `secret`.
/// A scratch directory with a tree, TLS files and a config, not yet served.
pub struct Prepared {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub pin: srpc::client::Fingerprint,
    pub addr: String,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if !self.dir.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Prepares and starts srpcd.
pub fn start(fx: &mut Fixture, opts: &Options, build_tree: impl FnOnce(&Path)) -> Daemon {
    launch(prepare(fx, opts, build_tree))
}

/// Makes the scratch directory: the tree `build_tree` fills, a self-signed
/// certificate and key (0600), and the config.
pub fn prepare(fx: &mut Fixture, opts: &Options, build_tree: impl FnOnce(&Path)) -> Prepared {
    let dir = std::env::temp_dir().join(format!(
        "srpcd-test-daemon-{}-{}",
        std::process::id(),
        free_port()
    ));
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let tree = dir.join("tree");
    fs::create_dir_all(&tree).unwrap();
    fs::set_permissions(&tree, fs::Permissions::from_mode(0o755)).unwrap();
    build_tree(&tree);

    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_path = dir.join("server.crt");
    let key_path = dir.join("server.key");
    fs::write(&cert_path, cert.cert.pem()).unwrap();
    fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).unwrap();
    let pin = srpc::client::fingerprint_of(cert.cert.der()).unwrap();

    let front_user = fx.user("front user, never logs in");
    let port = free_port();
    let libexec = Path::new(env!("CARGO_BIN_EXE_srpcd")).parent().unwrap();
    let config = format!(
        "listen = \"127.0.0.1:{port}\"\n\
         [tls]\ncertificate = \"{}\"\nkey = \"{}\"\n\
         [tree]\nroot = \"{}\"\nruntime_dir = \"{}\"\n\
         [pam]\nservice = \"{}\"\nfailure_delay_ms = {}\n\
         [workers]\nidle_timeout_secs = {}\nfront_user = \"{front_user}\"\nlibexec_dir = \"{}\"\n{}\n",
        cert_path.display(),
        key_path.display(),
        tree.display(),
        dir.join("run").display(),
        opts.service,
        FAILURE_DELAY.as_millis(),
        opts.idle_secs,
        libexec.display(),
        opts.extra,
    );
    let config_path = dir.join("srpcd.toml");
    fs::write(&config_path, config).unwrap();
    Prepared {
        dir,
        config: config_path,
        cert: cert_path,
        key: key_path,
        pin,
        addr: format!("127.0.0.1:{port}"),
    }
}

/// Starts srpcd on a prepared directory and waits until it listens.
pub fn launch(p: Prepared) -> Daemon {
    let mut srpcd = Command::new(env!("CARGO_BIN_EXE_srpcd"));
    srpcd.arg("--config").arg(&p.config);
    launch_command(p, srpcd)
}

/// Starts `command` — srpcd on `p.config`, or something that execs it (a
/// `prlimit`, a shell that joins a cgroup first) — with srpcd's log in the
/// scratch directory, and waits until it listens.
pub fn launch_command(mut p: Prepared, mut command: Command) -> Daemon {
    let dir = std::mem::take(&mut p.dir);
    let log = dir.join("srpcd.log");
    // Tests never touch the host's system bus (a second test daemon there
    // would find the name taken): only a test that brings its own bus sets
    // the address.
    if !command
        .get_envs()
        .any(|(k, _)| k == "DBUS_SYSTEM_BUS_ADDRESS")
    {
        command.env(
            "DBUS_SYSTEM_BUS_ADDRESS",
            "unix:path=/nonexistent/srpcd-test-no-system-bus",
        );
    }
    let child = command
        .env("SRPC_LOG_STDERR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut daemon = Daemon {
        child,
        dir,
        addr: p.addr.clone(),
        trust: Trust::Pin(p.pin),
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if std::net::TcpStream::connect(&daemon.addr).is_ok() {
            break;
        }
        if let Ok(Some(status)) = daemon.child.try_wait() {
            panic!(
                "srpcd exited ({status}): {}",
                fs::read_to_string(&daemon.log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "srpcd did not listen: {}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon
}

impl Daemon {
    pub async fn dial(&self) -> Client {
        Client::dial(&self.addr, "localhost", self.trust.clone())
            .await
            .unwrap_or_else(|e| panic!("dial: {e}\n{}", self.log_text()))
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Processes whose executable is `name`, with their real uid.
pub fn processes(name: &str) -> Vec<(u32, u32)> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(exe) = fs::read_link(entry.path().join("exe")) else {
            continue;
        };
        if exe.file_name().and_then(|n| n.to_str()) != Some(name) {
            continue;
        }
        if let Some(uid) =
            status_field(pid, "Uid:").and_then(|v| v.split_whitespace().next().map(str::to_owned))
        {
            found.push((pid, uid.parse().unwrap()));
        }
    }
    found
}

pub fn status_field(pid: u32, field: &str) -> Option<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_owned()))
}

pub fn worker_of(user: &str) -> Option<u32> {
    let uid = uid_of(user);
    processes("srpc-worker")
        .into_iter()
        .find(|(_, u)| *u == uid)
        .map(|(pid, _)| pid)
}

/// A handler built from `srpc/examples` (cargo test builds the workspace's
/// examples), copied into the tree at `to` with `mode`.
pub fn install_example(name: &str, to: &Path, mode: u32) {
    let deps = std::env::current_exe().unwrap();
    let examples = deps.parent().unwrap().parent().unwrap().join("examples");
    let from = examples.join(name);
    assert!(
        from.exists(),
        "{} is missing: build the handler examples first (cargo build -p srpc --examples)",
        from.display()
    );
    fs::copy(&from, to).unwrap();
    fs::set_permissions(to, fs::Permissions::from_mode(mode)).unwrap();
}

/// The pids of processes running the executable at `exe` as `uid` (by full
/// path, so a handler of another test's tree is never taken for ours).
pub fn pids_of(exe: &Path, uid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if fs::read_link(entry.path().join("exe")).ok().as_deref() != Some(exe) {
            continue;
        }
        let uid_now = status_field(pid, "Uid:").and_then(|v| {
            v.split_whitespace()
                .next()
                .and_then(|u| u.parse::<u32>().ok())
        });
        if uid_now == Some(uid) {
            found.push(pid);
        }
    }
    found
}

/// A scratch directory outside the tree (0755), removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A fresh scratch directory named for `tag` and this test process.
pub fn scratch(tag: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("srpcd-test-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    Scratch(dir)
}

/// `/etc/security/limits.d/srpcd-test-<tag>-<pid>-<n>.conf` holding `text`,
/// removed on drop (a failing assert included).
pub struct LimitsDropIn(PathBuf);

impl LimitsDropIn {
    pub fn new(tag: &str, text: &str) -> LimitsDropIn {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = PathBuf::from("/etc/security/limits.d");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!(
            "srpcd-test-{tag}-{}-{}.conf",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        LimitsDropIn(path)
    }
}

impl Drop for LimitsDropIn {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}
