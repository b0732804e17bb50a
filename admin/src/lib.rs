//! The D-Bus interface `org.srpc.Srpcd1` of srpcd: its names, and the plain
//! structs its methods return, shared by srpcd (which serves them) and
//! srpcctl (which calls them) so the two cannot drift. A struct's field order
//! is its D-Bus signature (documented in srpcctl(8); a test holds the two
//! together). Adding a field changes the signature, so it means a new
//! interface version (`org.srpc.Srpcd2`), never an edit here.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use zvariant::Type;

/// The well-known bus name srpcd owns on the system bus.
pub const BUS_NAME: &str = "org.srpc.Srpcd1";
/// The object path.
pub const OBJECT_PATH: &str = "/org/srpc/Srpcd1";
/// The interface (its version is the `1`).
pub const INTERFACE: &str = "org.srpc.Srpcd1";

/// `Status()`: `(stssssuuu)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Status {
    /// srpcd's version.
    pub version: String,
    /// Seconds since srpcd started.
    pub uptime_secs: u64,
    /// `enforcing`, `permissive` or `disabled` (DAC only).
    pub selinux: String,
    /// The TLS listen address.
    pub listen: String,
    /// The server certificate's pin, `sha256:<hex>`.
    pub pin: String,
    /// The D-Bus interface version, `org.srpc.Srpcd1`.
    pub interface: String,
    /// Sessions attached.
    pub sessions: u32,
    /// Workers (running, starting or stopping).
    pub workers: u32,
    /// PAM conversations in progress.
    pub logins_in_progress: u32,
}

/// One session, `ListSessions()`: `a(tssstut)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Session {
    /// The session id (`KillSession` takes it).
    pub id: u64,
    /// The user.
    pub user: String,
    /// The client's address.
    pub remote: String,
    /// The attach path.
    pub aname: String,
    /// When it attached, seconds since the Unix epoch.
    pub started_unix: u64,
    /// Fids bound to it, as the front counts (updated every few seconds).
    pub fids: u32,
    /// Calls it made, as the front counts (likewise).
    pub calls: u64,
}

/// One worker, `ListWorkers()`: `a(suusutttss)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Worker {
    /// The user it runs as.
    pub user: String,
    /// The user's uid.
    pub uid: u32,
    /// Its pid; 0 while it starts or after it died.
    pub pid: u32,
    /// `starting`, `running`, `idle`, `stopping` or `died`.
    pub state: String,
    /// Sessions it serves.
    pub sessions: u32,
    /// Calls made by those sessions (as the front counts).
    pub calls: u64,
    /// When it started, seconds since the Unix epoch (0: not started).
    pub started_unix: u64,
    /// Seconds since its last session ended (0 while it has sessions).
    pub idle_secs: u64,
    /// Its SELinux context; empty without SELinux.
    pub context: String,
    /// Its MLS/MCS level; empty without SELinux.
    pub level: String,
}

/// `ExplainUser(s)`: `(sbuuasssssssssss)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Explanation {
    /// The name asked about.
    pub user: String,
    /// Whether the account exists (NSS).
    pub exists: bool,
    /// Its uid (0 when it does not exist).
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    /// Its groups, by name (numbers where a group has no name).
    pub groups: Vec<String>,
    /// Whether srpcd's admin group is among them.
    pub admin: String,
    /// Empty, or why the lockout refuses this user now.
    pub lockout: String,
    /// The PAM service srpcd uses.
    pub pam_service: String,
    /// The service file PAM will read, or why there is none.
    pub pam_file: String,
    /// `login possible (PAM decides the password)` or why it would be refused.
    pub verdict: String,
    /// SELinux user; empty without SELinux or a context (see `selinux`).
    pub seuser: String,
    /// SELinux role; empty likewise.
    pub role: String,
    /// SELinux level; empty likewise.
    pub level: String,
    /// SELinux context a worker would get; empty likewise.
    pub context: String,
    /// How the SELinux part was decided, or why it is not known.
    pub selinux: String,
}

/// One node of the canonical tree, `CheckTree(s path)`: `a(ssssuususss)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct TreeNode {
    /// Its path below the tree's root (`/` is the root).
    pub path: String,
    /// `directory`, `handler` or `service` when it is cloned; otherwise its
    /// file type (`symlink`, `file`, `executable`, `socket`, `fifo`, `block
    /// device`, `character device`, `directory`, `unknown`).
    pub kind: String,
    /// `cloned`, `skipped` (left out of every clone) or `refused` (an attach
    /// or re-sync that reaches it fails).
    pub verdict: String,
    /// Why it is skipped or refused; empty when it is cloned.
    pub problem: String,
    /// `st_mode & 0o7777` (0 when it could not be read).
    pub mode: u32,
    /// Its owner's uid.
    pub uid: u32,
    /// Its owner's name (the uid where it has none; empty if unread).
    pub owner: String,
    /// Its group's gid.
    pub gid: u32,
    /// Its group's name (likewise).
    pub group: String,
    /// Its own SELinux label; empty without one.
    pub label: String,
    /// For a service, the socket its descriptor names; empty otherwise.
    pub service: String,
}

/// One per-user handler the monitor started, `ListHandlers()`: `a(ssutuss)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Handler {
    /// The user it runs as.
    pub user: String,
    /// The endpoint path in the user's clone.
    pub endpoint: String,
    /// Its pid.
    pub pid: u32,
    /// When it started, seconds since the Unix epoch.
    pub started_unix: u64,
    /// How many times this endpoint's handler was started for this user
    /// (1 for the first; a crash or an idle exit and a new call add one).
    pub starts: u32,
    /// The SELinux context it runs in; empty without SELinux.
    pub context: String,
    /// Its MLS/MCS level (the user's); empty without SELinux.
    pub level: String,
}

#[cfg(test)]
mod tests {
    use zvariant::Type;

    use super::{Explanation, Handler, Session, Status, TreeNode, Worker};

    #[test]
    fn the_signatures_are_those_srpcctl_8_documents() {
        let page = include_str!("../../docs/man/srpcctl.8.md");
        for (name, signature) in [
            ("Status()", Status::SIGNATURE.to_string()),
            ("ListSessions()", format!("a{}", Session::SIGNATURE)),
            ("ListWorkers()", format!("a{}", Worker::SIGNATURE)),
            ("ExplainUser(s user)", Explanation::SIGNATURE.to_string()),
            ("CheckTree(s path)", format!("a{}", TreeNode::SIGNATURE)),
            ("ListHandlers()", format!("a{}", Handler::SIGNATURE)),
        ] {
            let row = format!("| `{name}` | `→ {signature}`");
            assert!(page.contains(&row), "srpcctl.8.md lacks {row}");
        }
    }
}
