//! `srpcd --generate-certificate`: a self-signed server certificate on first start.
//!
//! A packaged srpcd has no certificate until the admin supplies one; the unit runs
//! this before srpcd (`ExecStartPre=`) so a fresh install starts, and clients pin
//! the generated key (`sha256:…`, printed here, logged at every start, shown by
//! `srpcd --check-config` and `srpcctl status`). Generating at first start rather
//! than at package install gives every machine cloned from one image its own key.
//!
//! Invariants: it writes only when *neither* configured file exists, so an
//! admin's certificate is never replaced and a half pair (one file without the
//! other) is refused, not completed. The key is created with `O_EXCL` and mode
//! 0600 before a byte of it is written, so it is never readable by others, and
//! the pair is then checked with the same code srpcd's start uses.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use zeroize::Zeroizing;

use crate::config::Config;
use crate::monitor::startup::{self, StartError};

/// What `--generate-certificate` found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Both files were there: nothing written. The existing certificate's pin.
    Existing(String),
    /// A new pair was written. Its pin.
    Generated(String),
}

/// Writes a self-signed certificate for `names` and its key to the configured
/// paths if neither exists; checks the pair either way.
pub fn generate_if_absent(config: &Config, names: Vec<String>) -> Result<Outcome, StartError> {
    let (cert_path, key_path) = (&config.tls.certificate, &config.tls.key);
    match (exists(cert_path)?, exists(key_path)?) {
        (true, true) => {
            let tls = startup::read_tls(config)?;
            return startup::pin(&tls.cert).map(Outcome::Existing);
        }
        (false, false) => {}
        (cert, _) => {
            let (there, absent) = if cert {
                (cert_path, key_path)
            } else {
                (key_path, cert_path)
            };
            return Err(StartError::Check(format!(
                "{} exists but {} does not: not generating half a pair (supply both, or remove {} to have both generated)",
                there.display(),
                absent.display(),
                there.display()
            )));
        }
    }
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| StartError::Check(format!("generating a certificate: {e}")))?;
    let key_pem = Zeroizing::new(generated.key_pair.serialize_pem());
    write_new(key_path, key_pem.as_bytes(), 0o600)?;
    write_new(cert_path, generated.cert.pem().as_bytes(), 0o644)?;
    let tls = startup::read_tls(config)?;
    startup::pin(&tls.cert).map(Outcome::Generated)
}

/// The names the generated certificate is for: this host's name (for clients
/// that check a name against a CA instead of pinning) and `localhost`.
pub fn default_names() -> Vec<String> {
    let mut names = Vec::new();
    // The kernel's hostname (uname's nodename), as the host calls itself.
    if let Ok(host) = fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() && host != "localhost" {
            names.push(host.to_owned());
        }
    }
    names.push("localhost".to_owned());
    names
}

fn exists(path: &Path) -> Result<bool, StartError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StartError::Io {
            what: format!("{}", path.display()),
            source: e,
        }),
    }
}

/// Creates `path` (never an existing file or symlink) with `mode`, writes
/// `bytes` and syncs; a missing parent is made root-only (0700).
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StartError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(StartError::io(format!("creating {}", dir.display())))?;
    }
    let what = format!("writing {}", path.display());
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(StartError::io(what.clone()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(StartError::io(what))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn config_in(dir: &Path) -> Config {
        let mut config = Config::default();
        config.tls.certificate = dir.join("tls/server.crt");
        config.tls.key = dir.join("tls/server.key");
        config
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("srpcd-cert-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn generates_once_then_keeps_the_pair() {
        let dir = scratch("once");
        let config = config_in(&dir);
        let Outcome::Generated(pin) = generate_if_absent(&config, default_names()).unwrap() else {
            panic!("nothing generated in an empty directory");
        };
        assert!(pin.starts_with("sha256:") && pin.len() == 7 + 64, "{pin}");
        let key_mode = fs::metadata(&config.tls.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(key_mode, 0o600);
        let dir_mode = fs::metadata(dir.join("tls")).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        let key_before = fs::read(&config.tls.key).unwrap();
        // A second run (every start) changes nothing and shows the same pin.
        assert_eq!(
            generate_if_absent(&config, default_names()).unwrap(),
            Outcome::Existing(pin)
        );
        assert_eq!(fs::read(&config.tls.key).unwrap(), key_before);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_to_complete_half_a_pair() {
        let dir = scratch("half");
        let config = config_in(&dir);
        fs::create_dir_all(dir.join("tls")).unwrap();
        fs::write(&config.tls.certificate, b"an admin's certificate").unwrap();
        let err = generate_if_absent(&config, default_names())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("server.crt exists but") && err.contains("server.key does not"),
            "{err}"
        );
        assert!(
            !config.tls.key.exists(),
            "a key was written next to a foreign certificate"
        );
        assert_eq!(
            fs::read(&config.tls.certificate).unwrap(),
            b"an admin's certificate"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
