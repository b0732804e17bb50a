//! What the monitor checks and prepares before anything is served.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::config::Config;

/// Why srpcd will not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A check failed; the message says what to fix.
    #[error("{0}")]
    Check(String),
    /// An operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// srpcd started, then stopped on a failure: the front died.
    #[error("stopping on a failure: {0}")]
    FrontDied(String),
}

impl StartError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
        let what = what.into();
        move |source| StartError::Io { what, source }
    }
}

/// The TLS credentials as read by root: the certificate chain and the key.
pub struct TlsFiles {
    /// Certificate chain, PEM.
    pub cert: Vec<u8>,
    /// Private key, PEM; wiped when dropped.
    pub key: Zeroizing<Vec<u8>>,
}

/// Reads the certificate and key, refusing a key that others may read or any
/// but its owner may change.
pub fn read_tls(config: &Config) -> Result<TlsFiles, StartError> {
    let key_path = &config.tls.key;
    let meta = fs::metadata(key_path)
        .map_err(StartError::io(format!("TLS key {}", key_path.display())))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o007 != 0 || mode & 0o020 != 0 {
        return Err(StartError::Check(format!(
            "TLS key {} has mode {mode:04o}: it must not be accessible to others or writable by its group (chmod 600 {})",
            key_path.display(),
            key_path.display()
        )));
    }
    if meta.uid() != 0 && meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(StartError::Check(format!(
            "TLS key {} is owned by uid {}: it must be owned by root",
            key_path.display(),
            meta.uid()
        )));
    }
    let key = Zeroizing::new(
        fs::read(key_path).map_err(StartError::io(format!("TLS key {}", key_path.display())))?,
    );
    let cert = fs::read(&config.tls.certificate).map_err(StartError::io(format!(
        "TLS certificate {}",
        config.tls.certificate.display()
    )))?;
    // The front builds the real acceptor; building one here refuses a bad pair
    // before anything starts and names the file at fault.
    crate::front::tls_acceptor(&cert, &key, true).map_err(|e| {
        StartError::Check(format!(
            "TLS certificate {} / key {}: {e}",
            config.tls.certificate.display(),
            key_path.display()
        ))
    })?;
    Ok(TlsFiles { cert, key })
}

/// Makes `dir` (and parents) with `mode`, owned by `uid:gid`, and checks an
/// existing one is not a symlink.
pub fn make_dir(dir: &Path, mode: u32, uid: u32, gid: u32) -> Result<(), StartError> {
    match fs::symlink_metadata(dir) {
        Ok(m) if !m.is_dir() => {
            return Err(StartError::Check(format!(
                "{} exists and is not a directory",
                dir.display()
            )))
        }
        Ok(_) => {}
        Err(_) => fs::create_dir_all(dir)
            .map_err(StartError::io(format!("creating {}", dir.display())))?,
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .map_err(StartError::io(format!("chmod {}", dir.display())))?;
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))
        .map_err(StartError::io(format!("chown {}", dir.display())))?;
    Ok(())
}

/// Where the helper executables are (front, worker, launcher): next to srpcd
/// unless configured. The launcher runs as root, so it, like the others, must
/// be root's alone.
pub fn libexec(config: &Config) -> Result<(PathBuf, PathBuf, PathBuf), StartError> {
    let dir = match &config.workers.libexec_dir {
        Some(dir) => dir.clone(),
        None => PathBuf::from("/usr/libexec/srpc"),
    };
    let front = dir.join("srpc-front");
    let worker = dir.join("srpc-worker");
    let launcher = dir.join("srpc-launch");
    for p in [&front, &worker, &launcher] {
        let m = fs::metadata(p).map_err(StartError::io(format!("{}", p.display())))?;
        if m.uid() != 0 || m.permissions().mode() & 0o022 != 0 {
            return Err(StartError::Check(format!(
                "{} must be owned by root and writable only by root",
                p.display()
            )));
        }
    }
    Ok((front, worker, launcher))
}

/// The `sha256:` pin of the first certificate in a PEM chain, for clients.
pub fn pin(cert_pem: &[u8]) -> Result<String, StartError> {
    use rustls::pki_types::pem::PemObject;
    let cert = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem)
        .next()
        .ok_or_else(|| StartError::Check("TLS certificate: no certificate in the file".into()))?
        .map_err(|e| StartError::Check(format!("TLS certificate: {e}")))?;
    srpc::client::fingerprint_of(&cert)
        .map(|f| f.to_string())
        .map_err(|e| StartError::Check(format!("TLS certificate: {e}")))
}

/// How the kernel runs SELinux, for the start checks and the log.
pub fn selinux_mode() -> Result<srpc_os::selinux::Mode, StartError> {
    srpc_os::selinux::mode().map_err(StartError::io("reading SELinux's mode"))
}

/// Without SELinux (or with it permissive) the kernel still enforces DAC on
/// every call, but not the policy module's types and levels: say so loudly,
/// or refuse when the config requires SELinux to enforce.
pub fn check_selinux(config: &Config) -> Result<srpc_os::selinux::Mode, StartError> {
    use srpc_os::selinux::Mode;
    let mode = selinux_mode()?;
    match (mode, config.require_selinux) {
        (Mode::Enforcing, _) => {}
        (Mode::Disabled, true) => {
            return Err(StartError::Check(
                "SELinux is not enabled in this kernel and require_selinux = true: not starting"
                    .into(),
            ))
        }
        (Mode::Permissive, true) => {
            return Err(StartError::Check(
                "SELinux is permissive (it logs denials but does not enforce them) and \
                 require_selinux = true: not starting (setenforce 1, or enforcing in \
                 /etc/selinux/config)"
                    .into(),
            ))
        }
        (Mode::Disabled, false) => tracing::warn!(
            "SELinux is not enabled: calls are checked by Unix permissions (DAC) alone; \
             set require_selinux = true to refuse to run like this"
        ),
        (Mode::Permissive, false) => tracing::warn!(
            "SELinux is permissive: workers and handlers run in their own contexts but \
             denials are only logged, so calls are checked by Unix permissions (DAC) alone; \
             set require_selinux = true to refuse to run like this"
        ),
    }
    Ok(mode)
}
