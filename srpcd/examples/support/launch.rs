//! Starting srpcd for the demo and the benchmark: a self-signed certificate,
//! a config in the work directory, the daemon from this build.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use srpc::client::{Fingerprint, Trust};

/// A running srpcd, stopped with SIGTERM when dropped.
pub struct Srpcd {
    pub child: Child,
    pub addr: String,
    pub pin: Fingerprint,
    pub log: PathBuf,
}

impl Srpcd {
    pub fn trust(&self) -> Trust {
        Trust::Pin(self.pin)
    }

    pub fn stop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Srpcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where this build's binaries are (srpcd, srpc-front, srpc-worker).
#[allow(dead_code)] // used through `start`
pub fn bin_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/<profile>/examples/<name> → target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| "cannot find the build directory".into())
}

/// Starts srpcd serving `dir/tree` on 127.0.0.1 with PAM service `service`.
#[allow(dead_code)] // the demo's entry; the bench (its own crate) uses `start_with`
pub fn start(dir: &Path, service: &str, front_user: &str) -> Result<Srpcd, String> {
    start_with(dir, service, front_user, &bin_dir()?, "")
}

/// [`start`] with the binaries from `bins` and `extra` appended to the config
/// (whole TOML tables, e.g. `[limits]`).
pub fn start_with(
    dir: &Path,
    service: &str,
    front_user: &str,
    bins: &Path,
    extra: &str,
) -> Result<Srpcd, String> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])
        .map_err(|e| format!("certificate: {e}"))?;
    let pin = srpc::client::fingerprint_of(cert.cert.der()).map_err(|e| e.to_string())?;
    let (cert_path, key_path) = (dir.join("server.crt"), dir.join("server.key"));
    fs::write(&cert_path, cert.cert.pem()).map_err(|e| e.to_string())?;
    fs::write(&key_path, cert.key_pair.serialize_pem()).map_err(|e| e.to_string())?;
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let config = format!(
        "listen = \"127.0.0.1:{port}\"\n\
         [tls]\ncertificate = \"{}\"\nkey = \"{}\"\n\
         [tree]\nroot = \"{}\"\nruntime_dir = \"{}\"\n\
         [pam]\nservice = \"{service}\"\n\
         [workers]\nfront_user = \"{front_user}\"\nlibexec_dir = \"{}\"\n{extra}",
        cert_path.display(),
        key_path.display(),
        dir.join("tree").display(),
        dir.join("run").display(),
        bins.display(),
    );
    let config_path = dir.join("srpcd.toml");
    fs::write(&config_path, config).map_err(|e| e.to_string())?;
    let log = dir.join("srpcd.log");
    let child = Command::new(bins.join("srpcd"))
        .arg("--config")
        .arg(&config_path)
        .env("SRPC_LOG_STDERR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("starting srpcd: {e}"))?;
    let _ = fs::write(dir.join("srpcd.pid"), child.id().to_string());
    let mut srpcd = Srpcd {
        child,
        addr: format!("127.0.0.1:{port}"),
        pin,
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&srpcd.addr).is_err() {
        if let Ok(Some(status)) = srpcd.child.try_wait() {
            let log = fs::read_to_string(&srpcd.log).unwrap_or_default();
            return Err(format!("srpcd exited ({status}):\n{log}"));
        }
        if Instant::now() > deadline {
            return Err("srpcd did not start listening".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(srpcd)
}
