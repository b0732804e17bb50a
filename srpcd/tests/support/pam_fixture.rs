//! Real Linux users, PAM service files and pam_userdb databases for tests.
//!
//! Everything is named `srpct<pid>x<n>` (users, their groups) or
//! `srpcd-test-<pid>x<n>` (service files, scratch directories) and removed when
//! the [`Fixture`] drops, even when the test fails. Leftovers of a process that
//! was killed are swept the first time a fixture is made: their pid no longer
//! runs (or is ours, reused).
//!
//! Needs root: creating users and writing `/etc/pam.d` cannot be faked. A test
//! run without root fails with a message saying so.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, Once, PoisonError};

const USER_PREFIX: &str = "srpct";
const FILE_PREFIX: &str = "srpcd-test-";
const VENDOR_DIR: &str = "/usr/lib/pam.d";

/// shadow-utils takes its file locks without waiting; tests in one binary run
/// in parallel threads, so their account changes go one at a time.
static ACCOUNTS: Mutex<()> = Mutex::new(());

fn accounts() -> MutexGuard<'static, ()> {
    ACCOUNTS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Fails the test unless it runs as root.
pub fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test creates real users and PAM service files and needs root \
         (CI runs the tests as root): run `cargo test` as root"
    );
}

/// Users, service files and scratch files, removed on drop.
#[derive(Default)]
pub struct Fixture {
    users: Vec<String>,
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Fixture {
    pub fn new() -> Fixture {
        require_root();
        sweep_stale();
        Fixture::default()
    }

    /// A new user (no home, nologin shell, also in group `users`) with this
    /// password. Returns the name.
    pub fn user(&mut self, password: &str) -> String {
        let name = format!("{USER_PREFIX}{}", tag());
        let _lock = accounts();
        run(Command::new("useradd").args([
            "-M",
            "-U",
            "-G",
            "users",
            "-s",
            "/usr/sbin/nologin",
            &name,
        ]));
        self.users.push(name.clone());
        let mut child = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .expect("chpasswd (package passwd) must be installed");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{name}:{password}\n").as_bytes())
            .unwrap();
        assert!(
            child.wait().unwrap().success(),
            "chpasswd failed for {name}"
        );
        name
    }

    /// Writes `/etc/pam.d/<service>` and returns the service name.
    pub fn service(&mut self, body: &str) -> String {
        self.service_in(Path::new("/etc/pam.d"), body)
    }

    /// Writes the service into the distribution's directory (`/usr/lib/pam.d`)
    /// only.
    pub fn vendor_service(&mut self, body: &str) -> String {
        fs::create_dir_all(VENDOR_DIR).unwrap();
        self.service_in(Path::new(VENDOR_DIR), body)
    }

    /// pam_unix for everything, without PAM's own failure delay.
    pub fn unix_service(&mut self) -> String {
        self.service(
            "auth     required pam_unix.so nodelay\n\
             account  required pam_unix.so\n\
             session  required pam_unix.so\n",
        )
    }

    /// A pam_userdb database of `user → password` (plain text). Returns the
    /// path to pass as `db=` (pam_userdb adds `.db`).
    pub fn userdb(&mut self, entries: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("{FILE_PREFIX}{}", tag()));
        fs::create_dir_all(&dir).unwrap();
        self.dirs.push(dir.clone());
        let input = dir.join("input");
        let mut text = String::new();
        for (user, password) in entries {
            for line in [user, password] {
                text.push_str(line);
                text.push('\n');
            }
        }
        fs::write(&input, text).unwrap();
        let db = dir.join("otp");
        let status = Command::new("db_load")
            .args(["-T", "-t", "hash", "-f"])
            .arg(&input)
            .arg(db.with_extension("db"))
            .status()
            .expect("db_load (package db-util) must be installed");
        assert!(status.success(), "db_load failed");
        db
    }

    fn service_in(&mut self, dir: &Path, body: &str) -> String {
        let name = format!("{FILE_PREFIX}{}", tag());
        let path = dir.join(&name);
        fs::write(&path, body).unwrap();
        self.files.push(path);
        name
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _lock = accounts();
        for user in &self.users {
            remove_user(user);
        }
        for file in &self.files {
            let _ = fs::remove_file(file);
        }
        for dir in &self.dirs {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// Runs `chage <args> <user>` (password and account ageing).
pub fn chage(user: &str, args: &[&str]) {
    let _lock = accounts();
    run(Command::new("chage").args(args).arg(user));
}

/// `<pid>x<n>`, unique within this process.
fn tag() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn remove_user(user: &str) {
    // userdel also removes the user's own group.
    let _ = Command::new("userdel")
        .arg(user)
        .stderr(Stdio::null())
        .status();
    let _ = Command::new("groupdel")
        .arg(user)
        .stderr(Stdio::null())
        .status();
}

/// Whether `<pid>x<n>` names something a dead process (or an earlier process
/// with our pid) left behind.
fn stale(tag: &str) -> bool {
    let Some(pid) = tag.split_once('x').and_then(|(p, _)| p.parse::<u32>().ok()) else {
        return false;
    };
    pid == std::process::id() || !Path::new(&format!("/proc/{pid}")).exists()
}

fn sweep_stale() {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(|| {
        let _lock = accounts();
        for db in ["/etc/passwd", "/etc/group"] {
            let text = fs::read_to_string(db).unwrap_or_default();
            for name in text.lines().filter_map(|l| l.split(':').next()) {
                if name.strip_prefix(USER_PREFIX).is_some_and(stale) {
                    remove_user(name);
                }
            }
        }
        let temp = std::env::temp_dir();
        for dir in [
            Path::new("/etc/pam.d"),
            Path::new(VENDOR_DIR),
            temp.as_path(),
        ] {
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.strip_prefix(FILE_PREFIX).is_some_and(stale) {
                    let path = entry.path();
                    let _ = fs::remove_file(&path).or_else(|_| fs::remove_dir_all(&path));
                }
            }
        }
    });
}
