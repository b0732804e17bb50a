//! The async side of a PAM transaction, used by the monitor.

use std::fmt;
use std::net::IpAddr;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use srpc_proto::{AuthAnswers, PromptStyle};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::thread::{self, Command, Event, Job};
use super::{check_service_file, AuthenticatedUser, Failure, PamError, Settings, Step};

/// Longest user name handed to PAM (Linux's `LOGIN_NAME_MAX`).
const MAX_USER: usize = 256;

/// One authentication: PAM runs in a thread of its own, and this handle
/// relays its conversation. Dropping it aborts the transaction.
///
/// ```no_run
/// use srpcd::pam::{Settings, Step, Transaction};
/// use srpc_proto::AuthAnswers;
/// use std::time::Duration;
/// use zeroize::Zeroizing;
///
/// # async fn f() -> Result<(), srpcd::pam::PamError> {
/// let settings = Settings::new("srpcd", Duration::from_secs(2));
/// let mut tx = Transaction::start(&settings, "alice", "192.0.2.7".parse().unwrap());
/// loop {
///     match tx.next().await {
///         Step::Prompts(prompts) => {
///             // Relay to the client; here, answer every prompt alike.
///             let answers = prompts.iter()
///                 .map(|p| Zeroizing::new(if p.style.wants_answer() { "pw".into() } else { String::new() }))
///                 .collect();
///             tx.answer(AuthAnswers(answers))?;
///         }
///         Step::Authenticated(user) => {
///             println!("{} is uid {}", user.pam_user, user.account.uid);
///             let session = tx.open_session().await?;
///             // … start the user's worker; when it exits:
///             session.close().await?;
///             return Ok(());
///         }
///         Step::Failed(failure) => {
///             println!("{} ({})", failure.message(), failure.code());
///             return Ok(());
///         }
///     }
/// }
/// # }
/// ```
pub struct Transaction {
    events: mpsc::UnboundedReceiver<Event>,
    commands: std_mpsc::Sender<Command>,
    failure_delay: Duration,
    /// Failures are reported no earlier than `failure_delay` after this: the
    /// start, then each answer.
    delay_from: Instant,
    state: State,
}

#[derive(Debug)]
enum State {
    /// PAM is working; the next event will tell.
    Running,
    /// A round was handed out; its answers are due (styles of its prompts).
    Awaiting(Vec<PromptStyle>),
    /// Over, unsuccessfully.
    Failed(Failure),
    /// Authenticated; the PAM thread waits to open a session or finish.
    /// (Boxed: it is most of the size, and a transaction is moved around.)
    Authenticated(Box<AuthenticatedUser>),
}

impl Transaction {
    /// Starts authenticating `user`, who connects from `rhost` (set as
    /// `PAM_RHOST`). Never fails here: every problem, including a service file
    /// that has gone missing since startup, comes out of [`next`](Self::next)
    /// as a [`Step::Failed`], delayed like any other failure. A name PAM cannot
    /// take (empty, with a NUL, over 256 bytes) fails as
    /// [`Failure::AuthFailed`] without running PAM.
    pub fn start(settings: &Settings, user: &str, rhost: IpAddr) -> Transaction {
        let (event_tx, events) = mpsc::unbounded_channel();
        let (commands, command_rx) = std_mpsc::channel();
        let rhost = rhost.to_canonical();
        let span = tracing::info_span!("pam", service = %settings.service, user, %rhost);
        let mut tx = Transaction {
            events,
            commands,
            failure_delay: settings.failure_delay,
            delay_from: Instant::now(),
            state: State::Running,
        };
        if user.is_empty() || user.len() > MAX_USER || user.contains('\0') {
            tx.state = State::Failed(Failure::AuthFailed);
            return tx;
        }
        if let Err(e) = check_service_file(&settings.service) {
            tracing::error!(parent: &span, error = %e, "not running PAM");
            tx.state = State::Failed(Failure::Internal);
            return tx;
        }
        thread::spawn(Job {
            service: settings.service.clone(),
            user: user.to_owned(),
            rhost,
            timeout: settings.conversation_timeout,
            events: event_tx,
            commands: command_rx,
            span,
        });
        tx
    }

    /// Waits for what PAM does next. After [`Step::Prompts`], call
    /// [`answer`](Self::answer) before calling this again (if called while the
    /// answers are still due, it waits for the conversation to time out).
    /// A failure is reported no earlier than the failure delay after the later
    /// of the start and the last answer; success is not delayed. Once the
    /// transaction is over, this returns its outcome again. Cancel-safe.
    pub async fn next(&mut self) -> Step {
        loop {
            match &self.state {
                State::Failed(failure) => {
                    let failure = *failure;
                    tokio::time::sleep_until(self.delay_from + self.failure_delay).await;
                    return Step::Failed(failure);
                }
                State::Authenticated(user) => return Step::Authenticated((**user).clone()),
                State::Running | State::Awaiting(_) => {}
            }
            self.state = match self.events.recv().await {
                Some(Event::Prompts(prompts)) => {
                    self.state = State::Awaiting(prompts.iter().map(|p| p.style).collect());
                    return Step::Prompts(prompts);
                }
                Some(Event::Authenticated(user)) => State::Authenticated(Box::new(user)),
                Some(Event::Failed(failure)) => State::Failed(failure),
                // The thread ended without saying how (it could not start).
                Some(Event::SessionOpened(_) | Event::Ended(_)) | None => {
                    State::Failed(Failure::Internal)
                }
            };
        }
    }

    /// Answers the last round: one answer per prompt, in order, and an empty
    /// one for each info or error message. A wrong count (or a non-empty
    /// answer to a message, or a NUL) is refused and the round stays open.
    pub fn answer(&mut self, answers: AuthAnswers) -> Result<(), PamError> {
        let State::Awaiting(styles) = &self.state else {
            return Err(PamError::NoPrompts);
        };
        if answers.0.len() != styles.len() {
            return Err(PamError::AnswerCount {
                expected: styles.len(),
                got: answers.0.len(),
            });
        }
        for (index, (answer, style)) in answers.0.iter().zip(styles).enumerate() {
            if !style.wants_answer() && !answer.is_empty() {
                return Err(PamError::AnswerToMessage { index });
            }
            if answer.contains('\0') {
                return Err(PamError::NulInAnswer { index });
            }
        }
        let wanted = answers
            .0
            .into_iter()
            .zip(styles)
            .filter(|(_, style)| style.wants_answer())
            .map(|(answer, _)| answer)
            .collect();
        self.delay_from = Instant::now();
        if self.commands.send(Command::Answers(wanted)).is_err() {
            self.state = State::Failed(Failure::Internal);
            return Err(PamError::Finished);
        }
        self.state = State::Running;
        Ok(())
    }

    /// Gives up: a waiting conversation fails and PAM ends in its thread.
    /// Dropping the transaction does the same.
    pub fn abort(self) {}

    /// After [`Step::Authenticated`]: `pam_setcred(PAM_ESTABLISH_CRED)` then
    /// `pam_open_session`, on the PAM thread, which keeps the handle until the
    /// session closes.
    ///
    /// Credentials come first, as OpenSSH does and the Linux-PAM Application
    /// Developers' Guide describes: session modules may need the credentials
    /// (a Kerberos ticket to mount a home directory, group memberships from
    /// pam_group). pam-client2 also runs `pam_setcred(PAM_REINITIALIZE_CRED)`
    /// after the session opens, for modules written to the other reading of the
    /// standard, and deletes the credentials again if the session cannot open.
    ///
    /// An authenticated transaction left unused for the conversation timeout
    /// has ended by itself; this then returns [`PamError::Finished`].
    pub async fn open_session(mut self) -> Result<Session, PamError> {
        if !matches!(self.state, State::Authenticated(_)) {
            return Err(PamError::NotAuthenticated);
        }
        self.commands
            .send(Command::OpenSession)
            .map_err(|_| PamError::Finished)?;
        match self.events.recv().await {
            Some(Event::SessionOpened(Ok(env))) => Ok(Session {
                events: self.events,
                commands: self.commands,
                env,
            }),
            Some(Event::SessionOpened(Err(e))) => Err(e),
            _ => Err(PamError::Finished),
        }
    }

    /// After [`Step::Authenticated`]: ends the transaction without a session
    /// (the user's worker already runs under an earlier login's session), and
    /// waits until `pam_end` has run.
    pub async fn finish(mut self) -> Result<(), PamError> {
        if !matches!(self.state, State::Authenticated(_)) {
            return Err(PamError::NotAuthenticated);
        }
        end(&self.commands, &mut self.events).await
    }
}

/// Tells the PAM thread to finish (end the transaction, closing any session)
/// and waits until it has.
async fn end(
    commands: &std_mpsc::Sender<Command>,
    events: &mut mpsc::UnboundedReceiver<Event>,
) -> Result<(), PamError> {
    commands
        .send(Command::Finish)
        .map_err(|_| PamError::Finished)?;
    match events.recv().await {
        Some(Event::Ended(result)) => result,
        _ => Err(PamError::Finished),
    }
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// An open PAM session. The PAM thread holds the handle; [`close`](Self::close)
/// (or dropping this) runs `pam_close_session` then
/// `pam_setcred(PAM_DELETE_CRED)` there and ends the transaction.
pub struct Session {
    events: mpsc::UnboundedReceiver<Event>,
    commands: std_mpsc::Sender<Command>,
    env: Vec<(String, String)>,
}

impl Session {
    /// The PAM environment after the session opened (`pam_getenvlist`): what
    /// modules such as pam_env and pam_systemd set for the user's processes.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Closes the session and waits until PAM is done with it.
    pub async fn close(mut self) -> Result<(), PamError> {
        end(&self.commands, &mut self.events).await
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}
