//! The audit trail: one typed event per thing an administrator must be able
//! to find later — logins, lockouts, sessions, workers and handlers coming
//! and going, calls the kernel refused, admin actions, reloads.
//!
//! Invariants:
//! - Each kind has a fixed 128-bit `MESSAGE_ID` ([`Kind::message_id`]),
//!   listed in `docs/audit.md` (a test holds the two together), so
//!   `journalctl MESSAGE_ID=…` finds every event of a kind across versions.
//! - Every detail is its own `SRPC_*` field (tracing-journald, no field
//!   prefix: `srpc_user` becomes `SRPC_USER`), so `journalctl SRPC_USER=alice`
//!   works without parsing the message text.
//! - Events are emitted only by the monitor (root) and the front (the `srpc`
//!   user), never by a worker or a handler: those run as the user, and the
//!   journal's trusted `_UID` tells a forged event apart. A denial is
//!   reported by the front, which knows the session's user and the path from
//!   its own tables; only the errno comes from the worker's answer.
//! - No secret is ever a field: there is no variant that could carry one.

use std::net::IpAddr;

/// The target every audit event is logged under (`RUST_LOG` filters on it).
pub const TARGET: &str = "srpcd::audit";

/// The kinds of audit event, each with its own `MESSAGE_ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// PAM accepted a login.
    AuthSucceeded,
    /// A login failed (wrong password, unknown user, expired, timed out…).
    AuthFailed,
    /// A login was refused without running PAM: too many recent failures.
    LockedOut,
    /// A session attached.
    SessionStarted,
    /// A session ended (the client let go, or an administrator killed it).
    SessionEnded,
    /// A user's worker started.
    WorkerStarted,
    /// A user's worker exited.
    WorkerExited,
    /// A per-user handler started.
    HandlerStarted,
    /// A per-user handler exited.
    HandlerExited,
    /// The kernel refused a call (walk, stat or call) for the session's user.
    CallDenied,
    /// An administrator changed something over D-Bus (or was refused).
    AdminAction,
    /// The configuration was reloaded, or a reload was refused.
    ConfigReloaded,
}

impl Kind {
    /// Every kind, in the order `docs/audit.md` lists them.
    pub const ALL: [Kind; 12] = [
        Kind::AuthSucceeded,
        Kind::AuthFailed,
        Kind::LockedOut,
        Kind::SessionStarted,
        Kind::SessionEnded,
        Kind::WorkerStarted,
        Kind::WorkerExited,
        Kind::HandlerStarted,
        Kind::HandlerExited,
        Kind::CallDenied,
        Kind::AdminAction,
        Kind::ConfigReloaded,
    ];

    /// The journal's `MESSAGE_ID`: fixed forever for this kind.
    pub const fn message_id(self) -> &'static str {
        match self {
            Kind::AuthSucceeded => "0bc51f1981bb472ebf6b05274a2e4422",
            Kind::AuthFailed => "24a28da7785b4b0fad97c5c369022391",
            Kind::LockedOut => "8b56c546f1684f10ae8544bed60e4311",
            Kind::SessionStarted => "12ec425e64da47b8b0213acbf97b432f",
            Kind::SessionEnded => "64946e2033d14929b92b910f03ba0134",
            Kind::WorkerStarted => "6d909b70ba82496ebfbc09d241af2012",
            Kind::WorkerExited => "c295183dbfa5443ab0781bcce65bcda6",
            Kind::HandlerStarted => "59a00c5391984796a4a4a636ea5c756b",
            Kind::HandlerExited => "494b6e16c13f4ab5a474397b71925d60",
            Kind::CallDenied => "aee29760aff3421b98a90aca65fe5656",
            Kind::AdminAction => "33965241ceb1453fbf4fb569fa4d6e7a",
            Kind::ConfigReloaded => "45341b54aa794c1f92afdd42caf0159e",
        }
    }

    /// The `SRPC_EVENT` field: the kind's name.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::AuthSucceeded => "auth_succeeded",
            Kind::AuthFailed => "auth_failed",
            Kind::LockedOut => "locked_out",
            Kind::SessionStarted => "session_started",
            Kind::SessionEnded => "session_ended",
            Kind::WorkerStarted => "worker_started",
            Kind::WorkerExited => "worker_exited",
            Kind::HandlerStarted => "handler_started",
            Kind::HandlerExited => "handler_exited",
            Kind::CallDenied => "call_denied",
            Kind::AdminAction => "admin_action",
            Kind::ConfigReloaded => "config_reloaded",
        }
    }
}

/// One audit event. Borrowed fields: built where the facts are, emitted at
/// once.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// PAM accepted `user` from `remote`.
    AuthSucceeded {
        /// The PAM user.
        user: &'a str,
        /// The client's address.
        remote: IpAddr,
    },
    /// A login of `user` from `remote` failed for `reason`.
    AuthFailed {
        /// The user name as the client gave it.
        user: &'a str,
        /// The client's address.
        remote: IpAddr,
        /// Why (the server-side reason; the client saw a uniform message).
        reason: &'a str,
    },
    /// A login was refused by the lockout.
    LockedOut {
        /// The user name as the client gave it.
        user: &'a str,
        /// The client's address.
        remote: IpAddr,
        /// Which count refused it.
        reason: &'a str,
    },
    /// Session `session` of `user` attached at `aname`.
    SessionStarted {
        /// The session id (the monitor's authentication id).
        session: u64,
        /// The user.
        user: &'a str,
        /// The client's address.
        remote: IpAddr,
        /// The attach path.
        aname: &'a str,
    },
    /// Session `session` ended.
    SessionEnded {
        /// The session id.
        session: u64,
        /// The user.
        user: &'a str,
        /// `client` (the client let go) or `killed by uid N`.
        reason: &'a str,
    },
    /// A worker started.
    WorkerStarted {
        /// Its user.
        user: &'a str,
        /// Its uid.
        uid: u32,
        /// Its pid.
        pid: u32,
        /// Its SELinux context, once workers get one (the labels work).
        context: Option<&'a str>,
    },
    /// A worker exited.
    WorkerExited {
        /// Its user.
        user: &'a str,
        /// Its pid.
        pid: u32,
        /// How it ended, as `ExitStatus` shows it.
        status: &'a str,
        /// Its SELinux context, once workers get one.
        context: Option<&'a str>,
    },
    /// A per-user handler started.
    HandlerStarted {
        /// Its user.
        user: &'a str,
        /// The endpoint path.
        endpoint: &'a str,
        /// Its pid (none if it was reaped before it could be read).
        pid: Option<u32>,
        /// The SELinux context it was started in (`None` without SELinux).
        context: Option<&'a str>,
    },
    /// A per-user handler exited.
    HandlerExited {
        /// Its user.
        user: &'a str,
        /// The endpoint path.
        endpoint: &'a str,
        /// Its pid (none if it was reaped before it could be read).
        pid: Option<u32>,
        /// How it ended.
        status: &'a str,
        /// The SELinux context it was started in (`None` without SELinux).
        context: Option<&'a str>,
    },
    /// The kernel refused `operation` on `endpoint` for `user`.
    CallDenied {
        /// The session's user (from the front's own table).
        user: &'a str,
        /// The client's address.
        remote: IpAddr,
        /// The path below the attach root (from the front's own table).
        endpoint: &'a str,
        /// `walk`, `stat` or `call`.
        operation: &'a str,
        /// The kernel's errno, as the worker reported it (13 is EACCES).
        errno: Option<i32>,
    },
    /// An administrator called `method` over D-Bus.
    AdminAction {
        /// The caller's uid, from the bus daemon (never from the message).
        caller_uid: u32,
        /// The D-Bus method.
        method: &'a str,
        /// What it was about (a session id, a user, a level), if anything.
        target: &'a str,
        /// `ok`, `refused: …` or `failed: …`.
        result: &'a str,
    },
    /// A reload was done or refused.
    ConfigReloaded {
        /// `SIGHUP` or `dbus uid N`.
        trigger: &'a str,
        /// `ok` or why it was refused.
        result: &'a str,
    },
}

impl Event<'_> {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Event::AuthSucceeded { .. } => Kind::AuthSucceeded,
            Event::AuthFailed { .. } => Kind::AuthFailed,
            Event::LockedOut { .. } => Kind::LockedOut,
            Event::SessionStarted { .. } => Kind::SessionStarted,
            Event::SessionEnded { .. } => Kind::SessionEnded,
            Event::WorkerStarted { .. } => Kind::WorkerStarted,
            Event::WorkerExited { .. } => Kind::WorkerExited,
            Event::HandlerStarted { .. } => Kind::HandlerStarted,
            Event::HandlerExited { .. } => Kind::HandlerExited,
            Event::CallDenied { .. } => Kind::CallDenied,
            Event::AdminAction { .. } => Kind::AdminAction,
            Event::ConfigReloaded { .. } => Kind::ConfigReloaded,
        }
    }

    /// Logs the event: warnings for failures and refusals, info otherwise.
    pub fn emit(&self) {
        let kind = self.kind();
        let (message_id, srpc_event) = (kind.message_id(), kind.name());
        match *self {
            Event::AuthSucceeded { user, remote } => tracing::info!(
                target: TARGET, message_id, srpc_event, srpc_user = user,
                srpc_remote = %remote, "login of {user} from {remote} succeeded"
            ),
            Event::AuthFailed {
                user,
                remote,
                reason,
            } => tracing::warn!(
                target: TARGET, message_id, srpc_event, srpc_user = user,
                srpc_remote = %remote, srpc_reason = reason,
                "login of {user} from {remote} failed: {reason}"
            ),
            Event::LockedOut {
                user,
                remote,
                reason,
            } => tracing::warn!(
                target: TARGET, message_id, srpc_event, srpc_user = user,
                srpc_remote = %remote, srpc_reason = reason,
                "login of {user} from {remote} refused: {reason}"
            ),
            Event::SessionStarted {
                session,
                user,
                remote,
                aname,
            } => tracing::info!(
                target: TARGET, message_id, srpc_event, srpc_session = session,
                srpc_user = user, srpc_remote = %remote, srpc_aname = aname,
                "session {session} of {user} from {remote} attached at {aname}"
            ),
            Event::SessionEnded {
                session,
                user,
                reason,
            } => tracing::info!(
                target: TARGET, message_id, srpc_event, srpc_session = session,
                srpc_user = user, srpc_reason = reason,
                "session {session} of {user} ended ({reason})"
            ),
            _ => self.emit_process(message_id, srpc_event),
        }
    }

    /// The events about processes, calls and administration.
    fn emit_process(&self, message_id: &str, srpc_event: &str) {
        match *self {
            Event::WorkerStarted {
                user,
                uid,
                pid,
                context,
            } => tracing::info!(
                target: TARGET, message_id, srpc_event, srpc_user = user,
                srpc_uid = uid, srpc_pid = pid, srpc_context = context,
                "worker started: {user} (pid {pid})"
            ),
            Event::WorkerExited {
                user,
                pid,
                status,
                context,
            } => tracing::info!(
                target: TARGET, message_id, srpc_event, srpc_user = user,
                srpc_pid = pid, srpc_exit_status = status, srpc_context = context,
                "worker exited: {user} (pid {pid}): {status}"
            ),
            Event::HandlerStarted {
                user,
                endpoint,
                pid,
                context,
            } => tracing::info!(
                target: TARGET, message_id, srpc_event, srpc_user = user,
                srpc_endpoint = endpoint, srpc_pid = pid, srpc_context = context,
                "handler started: {endpoint} of {user} (pid {})", pid_text(pid)
            ),
            Event::HandlerExited {
                user,
                endpoint,
                pid,
                status,
                context,
            } => tracing::info!(
                target: TARGET, message_id, srpc_event, srpc_user = user,
                srpc_endpoint = endpoint, srpc_pid = pid, srpc_exit_status = status,
                srpc_context = context,
                "handler exited: {endpoint} of {user} (pid {}): {status}", pid_text(pid)
            ),
            Event::CallDenied {
                user,
                remote,
                endpoint,
                operation,
                errno,
            } => tracing::warn!(
                target: TARGET, message_id, srpc_event, srpc_user = user,
                srpc_remote = %remote, srpc_endpoint = endpoint,
                srpc_operation = operation, srpc_errno = errno,
                "{operation} of {endpoint} denied to {user} (errno {})",
                errno.map_or_else(|| "unknown".to_owned(), |e| e.to_string())
            ),
            Event::AdminAction {
                caller_uid,
                method,
                target,
                result,
            } => tracing::info!(
                target: TARGET, message_id, srpc_event, srpc_caller_uid = caller_uid,
                srpc_method = method, srpc_target = target, srpc_result = result,
                "admin {method}({target}) by uid {caller_uid}: {result}"
            ),
            Event::ConfigReloaded { trigger, result } => tracing::info!(
                target: TARGET, message_id, srpc_event, srpc_trigger = trigger,
                srpc_result = result, "configuration reload ({trigger}): {result}"
            ),
            // Logins and sessions: `emit`.
            Event::AuthSucceeded { .. }
            | Event::AuthFailed { .. }
            | Event::LockedOut { .. }
            | Event::SessionStarted { .. }
            | Event::SessionEnded { .. } => {}
        }
    }
}

fn pid_text(pid: Option<u32>) -> String {
    pid.map_or_else(|| "unknown".to_owned(), |p| p.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::{BTreeMap, HashSet};
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context, SubscriberExt};
    use tracing_subscriber::Layer;

    use super::{Event, Kind, TARGET};

    type Seen = Arc<Mutex<Vec<(String, BTreeMap<String, String>)>>>;

    /// Records each event's target and fields, as the journald layer would
    /// see them.
    struct Capture(Seen);

    struct Fields<'a>(&'a mut BTreeMap<String, String>);

    impl Visit for Fields<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.insert(field.name().to_owned(), format!("{value:?}"));
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.insert(field.name().to_owned(), value.to_owned());
        }
    }

    impl<S: tracing::Subscriber> Layer<S> for Capture {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            let mut fields = BTreeMap::new();
            event.record(&mut Fields(&mut fields));
            let target = event.metadata().target().to_owned();
            self.0.lock().unwrap().push((target, fields));
        }
    }

    fn capture(f: impl FnOnce()) -> Vec<(String, BTreeMap<String, String>)> {
        let seen = Seen::default();
        let subscriber = tracing_subscriber::registry().with(Capture(Arc::clone(&seen)));
        tracing::subscriber::with_default(subscriber, f);
        let out = seen.lock().unwrap().clone();
        out
    }

    #[test]
    fn every_kind_has_its_own_well_formed_message_id_and_the_docs_list_it() {
        let docs = include_str!("../../docs/audit.md");
        let mut ids = HashSet::new();
        for kind in Kind::ALL {
            let id = kind.message_id();
            assert_eq!(id.len(), 32, "{kind:?}");
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            assert!(ids.insert(id), "{kind:?} reuses {id}");
            assert!(
                docs.contains(&format!("| `{}` | `{id}` |", kind.name())),
                "docs/audit.md does not list {} with {id}",
                kind.name()
            );
        }
    }

    #[test]
    fn an_event_carries_its_message_id_and_details_as_separate_fields() {
        let remote = "192.0.2.7".parse().unwrap();
        let seen = capture(|| {
            Event::AuthFailed {
                user: "alice",
                remote,
                reason: "wrong password or unknown user",
            }
            .emit();
            Event::CallDenied {
                user: "bob",
                remote,
                endpoint: "/private/secret",
                operation: "walk",
                errno: Some(13),
            }
            .emit();
            Event::WorkerStarted {
                user: "bob",
                uid: 1001,
                pid: 42,
                context: None,
            }
            .emit();
        });
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|(t, _)| t == TARGET));
        let failed = &seen[0].1;
        assert_eq!(failed["message_id"], Kind::AuthFailed.message_id());
        assert_eq!(failed["srpc_event"], "auth_failed");
        assert_eq!(failed["srpc_user"], "alice");
        assert_eq!(failed["srpc_remote"], "192.0.2.7");
        assert_eq!(failed["srpc_reason"], "wrong password or unknown user");
        let denied = &seen[1].1;
        assert_eq!(denied["message_id"], Kind::CallDenied.message_id());
        assert_eq!(denied["srpc_endpoint"], "/private/secret");
        assert_eq!(denied["srpc_errno"], "13");
        // No context yet (no SELinux): the field is absent, not empty.
        assert!(!seen[2].1.contains_key("srpc_context"));
        assert_eq!(seen[2].1["srpc_pid"], "42");
    }
}
