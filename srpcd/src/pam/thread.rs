//! The PAM thread: one per transaction, owning the PAM handle from `pam_start`
//! to `pam_end`, so every PAM call on a handle happens on one thread and a
//! module that is not thread-safe never sees two of our calls at once on it.

use std::net::IpAddr;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use pam_client2::{Context, ErrorCode, ErrorWith, Flag};
use srpc_proto::Prompt;
use tokio::sync::mpsc::UnboundedSender;
use tracing::Span;
use zeroize::Zeroizing;

use super::conversation::Conversation;
use super::{AuthenticatedUser, Failure, PamError};
use crate::users::Account;

/// What the PAM thread tells the async side.
pub(super) enum Event {
    /// A conversation round; the thread waits for [`Command::Answers`].
    Prompts(Vec<Prompt>),
    /// `pam_authenticate` and `pam_acct_mgmt` succeeded.
    Authenticated(AuthenticatedUser),
    /// The authentication failed; the handle is ended.
    Failed(Failure),
    /// The session opened (with the PAM environment), or did not.
    SessionOpened(Result<Vec<(String, String)>, PamError>),
    /// The transaction is over (session closed if one was open, `pam_end` done).
    Ended(Result<(), PamError>),
}

/// What the async side tells the PAM thread. Dropping the sender aborts: a
/// waiting conversation fails, an open session is closed.
pub(super) enum Command {
    /// Answers to the prompts of the last round that want one, in order.
    Answers(Vec<Zeroizing<String>>),
    /// After authentication: establish credentials and open the session.
    OpenSession,
    /// After authentication: end without a session; with a session: close it.
    Finish,
}

/// Everything the thread needs.
pub(super) struct Job {
    pub service: String,
    pub user: String,
    pub rhost: IpAddr,
    pub timeout: Duration,
    pub events: UnboundedSender<Event>,
    pub commands: Receiver<Command>,
    pub span: Span,
}

/// Starts the thread. If it cannot start, the job's channel closes, which the
/// async side reports as an internal failure.
pub(super) fn spawn(job: Job) {
    let span = job.span.clone();
    if let Err(e) = std::thread::Builder::new()
        .name("srpcd-pam".into())
        .spawn(move || run(job))
    {
        tracing::error!(parent: &span, error = %e, "cannot start a PAM thread");
    }
}

fn run(job: Job) {
    let Job {
        service,
        user,
        rhost,
        timeout,
        events,
        commands,
        span,
    } = job;
    let _entered = span.entered();
    let conversation = Conversation::new(events.clone(), commands, timeout);
    let mut ctx = match Context::new(&service, Some(&user), conversation) {
        Ok(ctx) => ctx,
        Err(e) => {
            tracing::error!(error = %e, "pam_start failed");
            let _ = events.send(Event::Failed(Failure::Internal));
            return;
        }
    };
    // For modules that decide by origin (pam_access) and for PAM's own log.
    if let Err(e) = ctx.set_rhost(Some(&rhost.to_string())) {
        tracing::error!(error = %e, "setting PAM_RHOST failed");
        drop(ctx);
        let _ = events.send(Event::Failed(Failure::Internal));
        return;
    }
    let outcome = authenticate(&mut ctx).and_then(|user| {
        ctx.conversation_mut().flush()?;
        Ok(user)
    });
    match outcome {
        Ok(user) => {
            tracing::info!(pam_user = %user.pam_user, "authenticated");
            if events.send(Event::Authenticated(user)).is_err() {
                return;
            }
        }
        Err(failure) => {
            drop(ctx);
            let _ = events.send(Event::Failed(failure));
            return;
        }
    }
    let Some(commands) = ctx.conversation_mut().take_commands() else {
        return;
    };
    // An authentication nobody uses within the timeout ends, so an idle
    // client cannot pin a thread and a PAM handle.
    let ended = match commands.recv_timeout(timeout) {
        Ok(Command::OpenSession) => hold_session(&mut ctx, &commands, &events),
        Ok(Command::Finish) => Ok(()),
        Ok(Command::Answers(_)) => Err(PamError::NoPrompts),
        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
    };
    drop(ctx);
    let _ = events.send(Event::Ended(ended));
}

/// `pam_authenticate`, then `pam_acct_mgmt`, then the account of the user PAM
/// settled on (modules may rename `PAM_USER`).
fn authenticate(ctx: &mut Context<Conversation>) -> Result<AuthenticatedUser, Failure> {
    // A network service never accepts an empty password, whatever `nullok` says.
    let flags = Flag::DISALLOW_NULL_AUTHTOK;
    if let Err(e) = ctx.authenticate(flags) {
        // Every refusal looks the same to the client: a distinct answer for an
        // unknown user would tell which names exist.
        let failure = ctx.conversation().failure().unwrap_or(Failure::AuthFailed);
        tracing::info!(pam = %e, code = ?e.code(), "pam_authenticate: {failure}");
        return Err(failure);
    }
    if let Err(e) = ctx.acct_mgmt(flags) {
        let failure = ctx.conversation().failure().unwrap_or(match e.code() {
            ErrorCode::NEW_AUTHTOK_REQD => Failure::PasswordExpired,
            _ => Failure::AccountUnavailable,
        });
        tracing::info!(pam = %e, code = ?e.code(), "pam_acct_mgmt: {failure}");
        return Err(failure);
    }
    let pam_user = ctx.user().map_err(|e| {
        tracing::error!(pam = %e, "reading PAM_USER failed");
        Failure::Internal
    })?;
    let account = Account::lookup(&pam_user).map_err(|e| {
        tracing::warn!(error = %e, "PAM accepted a user without an account");
        Failure::AccountUnavailable
    })?;
    Ok(AuthenticatedUser { pam_user, account })
}

/// Opens the session, reports it, and keeps it open until told to close it or
/// until the async side goes away.
fn hold_session(
    ctx: &mut Context<Conversation>,
    commands: &Receiver<Command>,
    events: &UnboundedSender<Event>,
) -> Result<(), PamError> {
    // pam-client2 runs pam_setcred(ESTABLISH_CRED), then pam_open_session, then
    // pam_setcred(REINITIALIZE_CRED), and undoes the first if the second fails.
    let session = match ctx.open_session(Flag::NONE) {
        Ok(session) => session,
        Err(e) => {
            let error = pam_error("opening the PAM session", &e);
            tracing::warn!(error = %error, "session not opened");
            let _ = events.send(Event::SessionOpened(Err(error.clone())));
            return Err(error);
        }
    };
    let env = session
        .envlist()
        .iter_tuples()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    if events.send(Event::SessionOpened(Ok(env))).is_ok() {
        // Finish, or the Session was dropped: close either way.
        let _ = commands.recv();
    }
    // pam_close_session, then pam_setcred(DELETE_CRED). On failure the session
    // comes back in the error and its destructor tries both once more.
    session
        .close(Flag::NONE)
        .map_err(|e| pam_error("closing the PAM session", &e))
}

fn pam_error<T>(call: &'static str, e: &ErrorWith<T>) -> PamError {
    PamError::Pam {
        call,
        message: format!("{e} ({:?})", e.code()),
    }
}
