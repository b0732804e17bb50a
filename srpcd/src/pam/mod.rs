//! PAM in the monitor: authentication, account checks and sessions.
//!
//! # Threads
//!
//! Each [`Transaction`] runs PAM in an OS thread of its own, which owns the PAM
//! handle from `pam_start` to `pam_end`: PAM modules need not be thread-safe,
//! and a handle must stay on one thread. The thread runs `pam_authenticate`,
//! then `pam_acct_mgmt`, then waits for the monitor to open a session (it then
//! keeps the handle until the session closes) or to finish. The monitor talks
//! to it through the async [`Transaction`] and [`Session`] handles.
//!
//! Transactions of different clients run at the same time on different
//! handles, which Linux-PAM supports; a module that keeps global state without
//! locking could still trip over that. The service file should use common,
//! reentrant modules (pam_unix, pam_sss, pam_userdb); a module that is not would
//! need a process per transaction (as cockpit-session does) instead.
//!
//! # Conversation rounds
//!
//! PAM's messages reach the client as rounds ([`Step::Prompts`]), which the
//! client answers with one answer per message, empty for info and error
//! messages (the protocol's rule). pam-client2 hands us PAM's messages one at
//! a time and needs each answer before it shows the next, so:
//!
//! * a round holds exactly one prompt that wants an answer, last, preceded by
//!   the info and error messages PAM showed since the previous round;
//! * messages still pending when authentication succeeds are sent as a final
//!   round of messages only (answered with empty strings) before
//!   [`Step::Authenticated`];
//! * messages pending when authentication fails are not shown: every failure
//!   reaches the client as its fixed message only, so failures look alike;
//! * a module that converses while a session opens or closes gets a
//!   conversation error (the client is no longer in the conversation).
//!
//! A round not answered within the conversation timeout (default
//! [`CONVERSATION_TIMEOUT`]) fails the transaction with
//! [`Failure::ConversationTimeout`]; an authenticated transaction left unused
//! that long ends by itself.
//!
//! # Failures and timing
//!
//! A wrong password and an unknown user give the same [`Failure::AuthFailed`]
//! and the same message. Every failure is reported no earlier than the
//! configured failure delay after the transaction began *and* after the last
//! answer: the hash check that only a known user costs happens after the
//! answer, so a client that answers slowly must not be able to time it either.
//! Success is not delayed. The service file should pass `nodelay` to pam_unix:
//! srpcd's fixed delay replaces PAM's randomised one (which would otherwise be
//! added on top).
//!
//! # Secrets
//!
//! Answers are held in [`zeroize::Zeroizing`] strings from the wire to the PAM
//! thread, never logged and never `Debug`-printed. The `CString` handed to
//! pam-client2 is the last copy of ours; see `conversation.rs` for what
//! pam-client2 and libpam do with it after that.
//!
//! # Sessions and process state
//!
//! Session modules run in the monitor's process. Modules that change the
//! calling process would change the monitor itself, not the user's worker, so
//! [`check_service_file`] refuses them in the `session` stack (at start, in
//! `--check-config` and before each transaction), naming the file, the line
//! and what the module would change: pam_limits (rlimits), pam_loginuid (the
//! audit loginuid), pam_keyinit (a session keyring), pam_systemd (the login
//! scope), pam_selinux (exec and key contexts), pam_namespace (the mount
//! namespace), pam_umask (the umask). It follows `@include`, `include` and
//! `substack` (and `-session` lines) through /etc/pam.d then /usr/lib/pam.d,
//! as Linux-PAM does, at most 16 deep. pam_env is allowed: it only sets PAM
//! environment variables, which the worker gets from [`Session::env`].
//! What they would have done for the user is done elsewhere: the monitor
//! applies limits.conf itself (`monitor/user_limits.rs`). A PAM process per
//! login, which could run them for real, is later work.

mod conversation;
mod service_file;
mod thread;
mod transaction;

use std::path::PathBuf;
use std::time::Duration;

use srpc_proto::{ErrorCode, Prompt};

use crate::config;
use crate::users::Account;

pub use service_file::{check_service_file, SERVICE_DIRS};
pub use transaction::{Session, Transaction};

/// How long a conversation round may wait for its answers, by default.
pub const CONVERSATION_TIMEOUT: Duration = Duration::from_secs(120);

/// How transactions run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The PAM service (`/etc/pam.d/<service>`).
    pub service: String,
    /// Failures are reported no earlier than this after the transaction began
    /// and after the last answer.
    pub failure_delay: Duration,
    /// How long a round waits for its answers.
    pub conversation_timeout: Duration,
}

impl Settings {
    /// Settings with the default conversation timeout.
    ///
    /// ```
    /// let s = srpcd::pam::Settings::new("srpcd", std::time::Duration::from_secs(2));
    /// assert_eq!(s.conversation_timeout, srpcd::pam::CONVERSATION_TIMEOUT);
    /// ```
    pub fn new(service: impl Into<String>, failure_delay: Duration) -> Settings {
        Settings {
            service: service.into(),
            failure_delay,
            conversation_timeout: CONVERSATION_TIMEOUT,
        }
    }
}

impl From<&config::Pam> for Settings {
    fn from(pam: &config::Pam) -> Settings {
        Settings {
            conversation_timeout: pam.answer_timeout,
            ..Settings::new(pam.service.clone(), pam.failure_delay)
        }
    }
}

/// What a transaction does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A conversation round for the client: answer with
    /// [`Transaction::answer`].
    Prompts(Vec<Prompt>),
    /// PAM accepted the user and the account.
    Authenticated(AuthenticatedUser),
    /// The transaction is over.
    Failed(Failure),
}

/// Who authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedUser {
    /// `PAM_USER` after the stack ran (modules may change it from the name the
    /// client gave).
    pub pam_user: String,
    /// That user's account.
    pub account: Account,
}

/// Why an authentication failed, as the client may learn it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Wrong credentials or unknown user (never told apart).
    AuthFailed,
    /// The credentials are right but the password has expired
    /// (`PAM_NEW_AUTHTOK_REQD` from `pam_acct_mgmt`).
    PasswordExpired,
    /// The account may not log in: expired, locked, denied by policy, or
    /// without a Unix account.
    AccountUnavailable,
    /// A round was not answered within the conversation timeout.
    ConversationTimeout,
    /// The monitor aborted the conversation (the client went away).
    ConversationAborted,
    /// PAM could not run (its service file vanished, `pam_start` failed, the
    /// thread could not start); details are in the log.
    Internal,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Failure {}

impl Failure {
    /// The protocol error code the client gets.
    pub fn code(self) -> ErrorCode {
        match self {
            Failure::AuthFailed | Failure::ConversationAborted => ErrorCode::AuthFailed,
            Failure::PasswordExpired => ErrorCode::PasswordExpired,
            Failure::AccountUnavailable => ErrorCode::AccountUnavailable,
            Failure::ConversationTimeout => ErrorCode::Timeout,
            Failure::Internal => ErrorCode::Internal,
        }
    }

    /// The message the client gets (fixed per failure, never PAM's text).
    pub fn message(self) -> &'static str {
        match self {
            Failure::AuthFailed => "authentication failed",
            Failure::PasswordExpired => "password expired",
            Failure::AccountUnavailable => "account unavailable",
            Failure::ConversationTimeout => "authentication timed out",
            Failure::ConversationAborted => "authentication aborted",
            Failure::Internal => "internal error",
        }
    }
}

/// A misuse of the PAM layer or a PAM error outside authentication.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PamError {
    /// No file configures the service.
    #[error("{}", missing_service_file(service, searched))]
    MissingServiceFile {
        /// The service.
        service: String,
        /// Every path looked at, in order.
        searched: Vec<PathBuf>,
    },
    /// The service's path exists but is not a file.
    #[error("{}: the PAM service file is not a regular file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// The service's `session` stack runs a module that would change the
    /// monitor's own process (or the stack cannot be read to check it).
    #[error("{}", bad_session_stack(file, *line, why, via))]
    BadSessionStack {
        /// The file holding the line.
        file: PathBuf,
        /// Its line number (0: the file as a whole).
        line: usize,
        /// What is wrong.
        why: String,
        /// The `file:line` of each include that led there, outermost first.
        via: Vec<String>,
    },
    /// The service name is not a plain file name.
    #[error("{0:?} is not a valid PAM service name")]
    InvalidServiceName(String),
    /// The answers do not match the round's prompts one to one.
    #[error("{got} answers to a round of {expected} prompts")]
    AnswerCount {
        /// Prompts in the round.
        expected: usize,
        /// Answers given.
        got: usize,
    },
    /// An info or error message got a non-empty answer.
    #[error("answer {index} is to a message, not a prompt, and must be empty")]
    AnswerToMessage {
        /// Position in the round.
        index: usize,
    },
    /// An answer contains a NUL byte, which PAM cannot take.
    #[error("answer {index} contains a NUL byte")]
    NulInAnswer {
        /// Position in the round.
        index: usize,
    },
    /// Answers came while no round was open.
    #[error("no prompts are waiting for answers")]
    NoPrompts,
    /// A session was asked of a transaction that has not (yet) succeeded.
    #[error("the user is not authenticated")]
    NotAuthenticated,
    /// The PAM thread has ended (aborted, timed out or already finished).
    #[error("the PAM transaction has ended")]
    Finished,
    /// A PAM call failed.
    #[error("{call} failed: {message}")]
    Pam {
        /// What was being done.
        call: &'static str,
        /// PAM's message and code.
        message: String,
    },
}

fn bad_session_stack(file: &std::path::Path, line: usize, why: &str, via: &[String]) -> String {
    let at = if line == 0 {
        file.display().to_string()
    } else {
        format!("{}:{line}", file.display())
    };
    if via.is_empty() {
        format!("{at}: {why}")
    } else {
        format!("{at}: {why} (included from {})", via.join(" via "))
    }
}

fn missing_service_file(service: &str, searched: &[PathBuf]) -> String {
    let paths: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
    format!(
        "PAM service {service:?} is not configured: neither {} exists; srpcd will not \
         run without it, because PAM would fall back to the \"other\" service",
        paths.join(" nor ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_map_to_protocol_codes_and_fixed_messages() {
        assert_eq!(Failure::AuthFailed.code(), ErrorCode::AuthFailed);
        assert_eq!(Failure::PasswordExpired.code(), ErrorCode::PasswordExpired);
        assert_eq!(
            Failure::AccountUnavailable.code(),
            ErrorCode::AccountUnavailable
        );
        assert_eq!(Failure::ConversationTimeout.code(), ErrorCode::Timeout);
        assert_eq!(Failure::Internal.code(), ErrorCode::Internal);
        for f in [
            Failure::AuthFailed,
            Failure::PasswordExpired,
            Failure::AccountUnavailable,
            Failure::ConversationTimeout,
            Failure::ConversationAborted,
            Failure::Internal,
        ] {
            assert_eq!(f.to_string(), f.message());
        }
    }
}
