//! `/etc/srpc/srpcd.toml`: every setting, its default, and checks that name the
//! file, the line and the key of anything wrong.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// Where srpcd reads its configuration unless told otherwise.
pub const DEFAULT_PATH: &str = "/etc/srpc/srpcd.toml";

/// The whole configuration. Every field has a default, so an empty file is valid
/// (but the TLS files must exist for the daemon to start).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address and port of the TLS listener.
    pub listen: SocketAddr,
    /// Refuse to start when SELinux is not enabled, instead of running on DAC alone.
    pub require_selinux: bool,
    /// TLS settings.
    pub tls: Tls,
    /// The canonical tree and runtime state.
    pub tree: Tree,
    /// PAM settings.
    pub pam: Pam,
    /// Resource limits.
    pub limits: Limits,
    /// Worker processes.
    pub workers: Workers,
    /// SELinux: the label map and levels.
    pub selinux: Selinux,
    /// The D-Bus admin interface.
    pub admin: Admin,
}

/// `[admin]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Serve `org.srpc.Srpcd1` on the system bus. Without a system bus srpcd
    /// runs on (with a warning); a bus where another process owns the name
    /// refuses the start.
    pub dbus: bool,
    /// Members of this group (and root) may call the admin methods; the bus
    /// policy file must name the same group.
    pub group: String,
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            dbus: true,
            group: "srpcadmin".into(),
        }
    }
}

/// `[tls]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// PEM certificate chain, server certificate first.
    pub certificate: PathBuf,
    /// PEM private key; must not be readable by group or others.
    pub key: PathBuf,
    /// Lowest TLS version accepted: "1.3" (default) or "1.2".
    pub min_version: TlsVersion,
}

/// The lowest TLS version srpcd accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    V1_2,
    /// TLS 1.3 only.
    V1_3,
}

impl<'de> Deserialize<'de> for TlsVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "1.3" => Ok(TlsVersion::V1_3),
            "1.2" => Ok(TlsVersion::V1_2),
            other => Err(de::Error::custom(format!(
                "unsupported TLS version \"{other}\" (expected \"1.3\" or \"1.2\")"
            ))),
        }
    }
}

/// `[tree]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tree {
    /// The canonical RPC tree.
    #[serde(deserialize_with = "absolute_path")]
    pub root: PathBuf,
    /// Runtime state: sockets, users' session trees.
    #[serde(deserialize_with = "absolute_path")]
    pub runtime_dir: PathBuf,
}

/// `[pam]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pam {
    /// PAM service name; `/etc/pam.d/<service>` must exist.
    #[serde(deserialize_with = "service_name")]
    pub service: String,
    /// Every failed authentication is answered this long after it began, so an
    /// unknown user and a wrong password cannot be told apart by timing.
    #[serde(deserialize_with = "millis", rename = "failure_delay_ms")]
    pub failure_delay: Duration,
    /// How long a conversation round (the first one included) waits for the
    /// client's answers.
    #[serde(deserialize_with = "auth_seconds", rename = "answer_timeout_secs")]
    pub answer_timeout: Duration,
    /// How long a login may take in all, from its first request to success.
    #[serde(deserialize_with = "auth_seconds", rename = "auth_timeout_secs")]
    pub auth_timeout: Duration,
}

/// `[limits]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// TLS connections open at once.
    #[serde(deserialize_with = "positive")]
    pub connections: u32,
    /// TLS connections open at once from one source address.
    #[serde(deserialize_with = "positive")]
    pub connections_per_source: u32,
    /// Sessions (attached users) at once per user, over all connections.
    #[serde(deserialize_with = "positive")]
    pub sessions_per_user: u32,
    /// Fids bound at once on one connection.
    #[serde(deserialize_with = "fids")]
    pub fids_per_connection: u32,
    /// Requests in flight on one connection.
    #[serde(deserialize_with = "pending")]
    pub pending_requests: u32,
    /// Largest protocol message in bytes, header included.
    #[serde(deserialize_with = "max_message")]
    pub max_message: u32,
    /// Request and reply bytes the front holds for one connection before it
    /// stops reading that connection's requests (until replies are read).
    #[serde(deserialize_with = "connection_buffer")]
    pub connection_buffer_bytes: u32,
    /// The same over all connections: past it, no connection is read.
    #[serde(deserialize_with = "total_buffer")]
    pub total_buffer_bytes: u64,
    /// Failed authentications allowed per user and per source within the window.
    #[serde(deserialize_with = "positive")]
    pub auth_attempts: u32,
    /// The window for `auth_attempts`, and how long a lockout lasts.
    #[serde(deserialize_with = "seconds", rename = "lockout_window_secs")]
    pub lockout_window: Duration,
    /// PAM conversations running at once, in all.
    #[serde(deserialize_with = "conversations")]
    pub auth_conversations: u32,
    /// … from one source (IPv4 address or IPv6 /64).
    #[serde(deserialize_with = "conversations")]
    pub auth_conversations_per_source: u32,
    /// … on one connection.
    #[serde(deserialize_with = "conversations")]
    pub auth_conversations_per_connection: u32,
    /// A connection without an attached session for this long is closed.
    #[serde(
        deserialize_with = "auth_seconds",
        rename = "unauthenticated_timeout_secs"
    )]
    pub unauthenticated_timeout: Duration,
}

/// `[workers]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workers {
    /// A worker with no session for this long exits (and its PAM session closes).
    #[serde(deserialize_with = "seconds", rename = "idle_timeout_secs")]
    pub idle_timeout: Duration,
    /// The unprivileged system user the TLS front runs as.
    #[serde(deserialize_with = "service_name")]
    pub front_user: String,
    /// Where `srpc-front` and `srpc-worker` are (default `/usr/libexec/srpc`).
    #[serde(deserialize_with = "opt_absolute_path")]
    pub libexec_dir: Option<PathBuf>,
    /// A call to an endpoint not answered within this long fails with
    /// `timeout` and its handler connection is closed.
    #[serde(deserialize_with = "call_timeout", rename = "call_timeout_secs")]
    pub call_timeout: Duration,
    /// Contain the processes srpcd starts in a cgroup v2 subtree where one
    /// can be made ("auto"), or use the process-group fallback ("off").
    pub cgroups: CgroupMode,
    /// Threads of the TLS front's runtime (read at start): 1 runs it on one
    /// thread with no cross-thread wake-up per request (docs/architecture.md,
    /// "Cost per call"); the default is 2 while a stall seen with 1 is open.
    #[serde(deserialize_with = "front_threads")]
    pub front_threads: u32,
}

/// `[selinux]` (used when the kernel runs SELinux).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Selinux {
    /// The admin's additions to the shipped label map (SELinux user → role →
    /// worker type); a missing file means the shipped map alone.
    #[serde(deserialize_with = "absolute_path")]
    pub label_map: PathBuf,
    /// Let users whose SELinux range holds no category set of their own (e.g.
    /// `user_u`'s stock `s0`) log in at a level other users share, which MCS
    /// then does not separate (logged as a warning at every such login).
    pub allow_shared_level: bool,
}

/// `workers.cgroups`: how srpcd contains what it starts (read at start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CgroupMode {
    /// A cgroup v2 subtree where the own cgroup is delegated (or is the root).
    #[default]
    Auto,
    /// Process groups and a kill of every front-user process (the fallback).
    Off,
}

impl<'de> Deserialize<'de> for CgroupMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "auto" => Ok(CgroupMode::Auto),
            "off" => Ok(CgroupMode::Off),
            other => Err(de::Error::custom(format!(
                "unknown cgroups mode \"{other}\" (expected \"auto\" or \"off\")"
            ))),
        }
    }
}

/// The range of `workers.call_timeout_secs` (also checked by the worker).
pub const CALL_TIMEOUT_SECS: std::ops::RangeInclusive<u32> = 1..=3600;

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 5640)),
            require_selinux: false,
            tls: Tls::default(),
            tree: Tree::default(),
            pam: Pam::default(),
            limits: Limits::default(),
            workers: Workers::default(),
            admin: Admin::default(),
            selinux: Selinux::default(),
        }
    }
}

impl Default for Selinux {
    fn default() -> Self {
        Selinux {
            label_map: PathBuf::from("/etc/srpc/label-map.toml"),
            allow_shared_level: false,
        }
    }
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            certificate: PathBuf::from("/etc/srpc/tls/server.crt"),
            key: PathBuf::from("/etc/srpc/tls/server.key"),
            min_version: TlsVersion::V1_3,
        }
    }
}

impl Default for Tree {
    fn default() -> Self {
        Tree {
            root: PathBuf::from("/srv/srpc"),
            runtime_dir: PathBuf::from("/run/srpc"),
        }
    }
}

impl Default for Pam {
    fn default() -> Self {
        Pam {
            service: "srpcd".into(),
            failure_delay: Duration::from_secs(2),
            answer_timeout: Duration::from_secs(30),
            auth_timeout: Duration::from_secs(120),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        let proto = srpc_proto::Limits::default();
        Limits {
            connections: 1024,
            connections_per_source: 64,
            sessions_per_user: 64,
            fids_per_connection: proto.max_fids,
            pending_requests: proto.max_pending,
            max_message: proto.max_message,
            connection_buffer_bytes: 16 * 1024 * 1024,
            total_buffer_bytes: 512 * 1024 * 1024,
            auth_attempts: 5,
            lockout_window: Duration::from_secs(300),
            auth_conversations: 64,
            auth_conversations_per_source: 8,
            auth_conversations_per_connection: 2,
            unauthenticated_timeout: Duration::from_secs(30),
        }
    }
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            idle_timeout: Duration::from_secs(300),
            front_user: "srpc".into(),
            libexec_dir: None,
            call_timeout: Duration::from_secs(60),
            cgroups: CgroupMode::Auto,
            front_threads: 2,
        }
    }
}

impl Limits {
    /// The protocol limits srpcd offers in `Rversion` (before taking the
    /// minimum with the client's proposal).
    pub fn protocol(&self) -> srpc_proto::Limits {
        srpc_proto::Limits {
            max_message: self.max_message,
            max_fids: self.fids_per_connection,
            max_pending: self.pending_requests,
            ..srpc_proto::Limits::default()
        }
    }
}

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid: syntax, an unknown key or a bad value.
    #[error("{path}:{line}: {key}{message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the fault (0 when the parser gave no position).
        line: usize,
        /// The key at fault, as `key: ` (empty when unknown).
        key: KeyPrefix,
        /// What is wrong.
        message: String,
    },
}

/// The `key: ` prefix of an error message, empty when no key is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPrefix(pub Option<String>);

impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(key) => write!(f, "{key}: "),
            None => Ok(()),
        }
    }
}

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and checks `text`; `path` is used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |span| {
                1 + text[..span.start.min(text.len())].matches('\n').count()
            });
            ConfigError::Invalid {
                path: path.to_owned(),
                line,
                key: KeyPrefix(key_at(text, e.span())),
                message: e.message().trim_end().to_owned(),
            }
        })
    }
}

/// The dotted key whose line the error span starts on: the `[table]` header in
/// force there plus the key on that line.
fn key_at(text: &str, span: Option<std::ops::Range<usize>>) -> Option<String> {
    let start = span?.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = text[line_start..line_end].trim();
    let key = line.split_once('=')?.0.trim().trim_matches('"');
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_owned(),
    })
}

fn range_u32<'de, D: Deserializer<'de>>(d: D, min: u32, max: u32) -> Result<u32, D::Error> {
    let v = i64::deserialize(d)?;
    match u32::try_from(v) {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(de::Error::custom(format!(
            "{v} is out of range (expected {min} to {max})"
        ))),
    }
}

fn front_threads<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    range_u32(d, 1, MAX_FRONT_THREADS)
}

/// The most threads `workers.front_threads` may ask for.
pub const MAX_FRONT_THREADS: u32 = 64;

fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    range_u32(d, 1, u32::MAX)
}

fn fids<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let (f, h) = (srpc_proto::Limits::FLOOR, srpc_proto::HARD_LIMITS);
    range_u32(d, f.max_fids, h.max_fids)
}

fn pending<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let (f, h) = (srpc_proto::Limits::FLOOR, srpc_proto::HARD_LIMITS);
    range_u32(d, f.max_pending, h.max_pending)
}

fn max_message<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let (f, h) = (srpc_proto::Limits::FLOOR, srpc_proto::HARD_LIMITS);
    range_u32(d, f.max_message, h.max_message)
}

/// 64 KiB to 1 GiB. One request over it still passes (on an idle connection).
fn connection_buffer<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    range_u32(d, 64 * 1024, 1 << 30)
}

/// 1 MiB to 64 GiB.
fn total_buffer<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let (min, max) = (1u64 << 20, 64u64 << 30);
    let v = i64::deserialize(d)?;
    match u64::try_from(v) {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(de::Error::custom(format!(
            "{v} is out of range (expected {min} to {max})"
        ))),
    }
}

fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    // A day is far beyond any sensible timeout and keeps arithmetic safe.
    range_u32(d, 1, 86_400).map(|s| Duration::from_secs(u64::from(s)))
}

fn conversations<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    // Each conversation is a PAM thread in the root monitor.
    range_u32(d, 1, 4096)
}

fn auth_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    range_u32(d, 1, 600).map(|s| Duration::from_secs(u64::from(s)))
}

fn call_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let (min, max) = (*CALL_TIMEOUT_SECS.start(), *CALL_TIMEOUT_SECS.end());
    range_u32(d, min, max).map(|s| Duration::from_secs(u64::from(s)))
}

fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    range_u32(d, 0, 60_000).map(|ms| Duration::from_millis(u64::from(ms)))
}

fn absolute_path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let p = PathBuf::deserialize(d)?;
    if p.is_absolute() {
        Ok(p)
    } else {
        Err(de::Error::custom(format!(
            "\"{}\" is not an absolute path",
            p.display()
        )))
    }
}

fn opt_absolute_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    absolute_path(d).map(Some)
}

/// PAM service and user names: a plain name, so it cannot point outside
/// `/etc/pam.d` or be mistaken for an option.
fn service_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    let ok = !s.is_empty()
        && s.len() <= 64
        && !s.starts_with(['-', '.'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(s)
    } else {
        Err(de::Error::custom(format!(
            "\"{s}\" is not a valid name (letters, digits, '-', '_', '.'; at most 64)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/etc/srpc/srpcd.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.listen.port(), 5640);
        assert_eq!(c.tree.root, Path::new("/srv/srpc"));
        assert_eq!(c.pam.service, "srpcd");
        assert_eq!(c.tls.min_version, TlsVersion::V1_3);
    }

    #[test]
    fn settings_are_read() {
        let c = parse(
            "listen = \"127.0.0.1:7000\"\nrequire_selinux = true\n[tls]\nmin_version = \"1.2\"\n\
             [limits]\nmax_message = 65536\nlockout_window_secs = 60\n[pam]\nfailure_delay_ms = 100\n",
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:7000".parse().unwrap());
        assert!(c.require_selinux);
        assert_eq!(c.tls.min_version, TlsVersion::V1_2);
        assert_eq!(c.limits.max_message, 65536);
        assert_eq!(c.limits.lockout_window, Duration::from_secs(60));
        assert_eq!(c.pam.failure_delay, Duration::from_millis(100));
        let c = parse("[workers]\ncall_timeout_secs = 5\n").unwrap();
        assert_eq!(c.workers.call_timeout, Duration::from_secs(5));
        assert_eq!(
            Config::default().workers.call_timeout,
            Duration::from_secs(60)
        );
        assert_eq!(Config::default().workers.cgroups, CgroupMode::Auto);
        assert_eq!(Config::default().workers.front_threads, 2);
        assert_eq!(
            parse("[workers]\nfront_threads = 4\n")
                .unwrap()
                .workers
                .front_threads,
            4
        );
        let e = parse("[workers]\nfront_threads = 0\n").unwrap_err();
        assert!(
            e.contains("workers.front_threads: 0 is out of range (expected 1 to 64)"),
            "{e}"
        );
        let c = parse("[workers]\ncgroups = \"off\"\n").unwrap();
        assert_eq!(c.workers.cgroups, CgroupMode::Off);
        let e = parse("[workers]\ncgroups = \"yes\"\n").unwrap_err();
        assert!(
            e.contains(
                "workers.cgroups: unknown cgroups mode \"yes\" (expected \"auto\" or \"off\")"
            ),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = parse("listen = \"127.0.0.1:7000\"\n\n[limits]\nconections = 5\n").unwrap_err();
        assert!(
            e.starts_with("/etc/srpc/srpcd.toml:4: limits.conections: unknown field `conections`"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_file_line_and_key() {
        let e = parse("[limits]\nmax_message = 10\n").unwrap_err();
        assert_eq!(
            e,
            "/etc/srpc/srpcd.toml:2: limits.max_message: 10 is out of range (expected 4096 to 16777216)"
        );
        let e = parse("[tree]\nroot = \"srv\"\n").unwrap_err();
        assert_eq!(
            e,
            "/etc/srpc/srpcd.toml:2: tree.root: \"srv\" is not an absolute path"
        );
        let e = parse("[pam]\nservice = \"../shadow\"\n").unwrap_err();
        assert!(
            e.starts_with("/etc/srpc/srpcd.toml:2: pam.service: \"../shadow\" is not a valid name"),
            "{e}"
        );
        let e = parse("listen = \"nowhere\"\n").unwrap_err();
        assert!(e.starts_with("/etc/srpc/srpcd.toml:1: listen: "), "{e}");
        let e = parse("[tls]\nmin_version = \"1.1\"\n").unwrap_err();
        assert!(
            e.contains("tls.min_version: unsupported TLS version \"1.1\""),
            "{e}"
        );
        let e = parse("[workers]\ncall_timeout_secs = 0\n").unwrap_err();
        assert_eq!(
            e,
            "/etc/srpc/srpcd.toml:2: workers.call_timeout_secs: 0 is out of range (expected 1 to 3600)"
        );
        let e = parse("[workers]\ncall_timeout_secs = 3601\n").unwrap_err();
        assert!(
            e.contains("workers.call_timeout_secs: 3601 is out of range"),
            "{e}"
        );
        let e = parse("[limits]\nconnections = -1\n").unwrap_err();
        assert!(e.contains("limits.connections: -1 is out of range"), "{e}");
        let e = parse("[limits]\nconnections = \"many\"\n").unwrap_err();
        assert!(e.contains("limits.connections: "), "{e}");

        let e = parse("[limits]\nconnection_buffer_bytes = 1000\n").unwrap_err();
        assert!(
            e.contains("limits.connection_buffer_bytes: 1000 is out of range (expected 65536 to 1073741824)"),
            "{e}"
        );
        let e = parse("[limits]\ntotal_buffer_bytes = 0\n").unwrap_err();
        assert!(
            e.contains("limits.total_buffer_bytes: 0 is out of range"),
            "{e}"
        );
        let c = parse("[limits]\ntotal_buffer_bytes = 8589934592\n").unwrap();
        assert_eq!(c.limits.total_buffer_bytes, 8 << 30);
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let e = Config::load(Path::new("/nonexistent/srpcd.toml")).unwrap_err();
        assert!(
            e.to_string().starts_with("/nonexistent/srpcd.toml: "),
            "{e}"
        );
    }
}
