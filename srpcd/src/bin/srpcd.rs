//! srpcd: the sRPC daemon (its root monitor; it starts the front and workers).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use srpcd::config::{Config, DEFAULT_PATH};

const USAGE: &str = "\
Usage: srpcd [--config PATH] [--check-config | --generate-certificate]

The sRPC daemon. Runs as root; starts the TLS front as the configured
unprivileged user and one worker per authenticated user.

Options:
  -c, --config PATH   configuration file (default /etc/srpc/srpcd.toml)
      --check-config  check the configuration and the TLS and PAM files, then exit
      --generate-certificate
                      if neither TLS file of the configuration exists, write a
                      self-signed certificate and key there; print the pin, exit
  -h, --help          show this help
  -V, --version       show the version

Signals: SIGHUP reloads the configuration and TLS certificate; SIGTERM drains
and stops. Administration: srpcctl(8), over D-Bus (org.srpc.Srpcd1 on the
system bus). See srpcd(8) and srpcd.toml(5).";

fn main() -> ExitCode {
    let mut config_path = PathBuf::from(DEFAULT_PATH);
    let mut check_only = false;
    let mut generate = false;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("-c" | "--config") => match args.next() {
                Some(p) => config_path = PathBuf::from(p),
                None => return usage_error("--config needs a path"),
            },
            Some("--check-config") => check_only = true,
            Some("--generate-certificate") => generate = true,
            Some("-h" | "--help") => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            Some("-V" | "--version") => {
                println!("srpcd {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            _ => return usage_error(&format!("unknown argument {arg:?}")),
        }
    }
    if check_only && generate {
        return usage_error("--check-config and --generate-certificate exclude each other");
    }
    let config = match Config::load(&config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("srpcd: {e}");
            return ExitCode::from(2);
        }
    };
    if generate {
        return generate_certificate(&config);
    }
    if check_only {
        return match srpcd::monitor::check(&config) {
            Ok(pin) => {
                println!("{}: OK (server certificate {pin})", config_path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("srpcd: {e}");
                ExitCode::from(2)
            }
        };
    }
    let levels = srpcd::logging::init("srpcd");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("srpcd: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Exit status (srpcd(8)): 0 stopped by SIGTERM/SIGINT, 1 a failure (the
    // front died, an operation failed), 2 a check refused the configuration
    // before anything was served — so a unit can keep Restart=on-failure from
    // retrying a configuration that cannot work (RestartPreventExitStatus=2).
    match runtime.block_on(srpcd::monitor::run(config_path, config, levels)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("srpcd: {e}");
            match e {
                srpcd::monitor::StartError::Check(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// `--generate-certificate` (srpcd(8)): stdout goes to the journal when the unit
/// runs it, so the pin is shown there, once, next to srpcd's own start line.
fn generate_certificate(config: &Config) -> ExitCode {
    use srpcd::certificate::{default_names, generate_if_absent, Outcome};
    let (cert, key) = (config.tls.certificate.display(), config.tls.key.display());
    match generate_if_absent(config, default_names()) {
        Ok(Outcome::Existing(pin)) => {
            println!("srpcd: {cert} and {key} exist; clients pin {pin}");
            ExitCode::SUCCESS
        }
        Ok(Outcome::Generated(pin)) => {
            println!("srpcd: generated a self-signed certificate {cert} and key {key}; clients pin {pin}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("srpcd: {e}");
            ExitCode::from(2)
        }
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("srpcd: {message}\n\n{USAGE}");
    ExitCode::from(2)
}
