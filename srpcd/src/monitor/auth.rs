//! One task per authentication: drives its PAM transaction, relays prompts to
//! the front, and hands a success back to the monitor's loop (which then tells
//! the front, so the monitor knows of the success before the front can use it).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use srpc_proto::{AuthAnswers, AuthStep, ErrorCode};
use tokio::sync::mpsc;

use super::attach::Event;
use crate::ipc::{Channel, ToFront};
use crate::lockout::{Attempt, Lockout};
use crate::pam::{AuthenticatedUser, Failure, Step, Transaction};

/// What an authentication task tells the monitor's loop.
pub enum Outcome {
    /// PAM accepted the user; the transaction waits to open a session or finish.
    Authenticated {
        /// The authentication.
        auth: u64,
        /// Who.
        user: AuthenticatedUser,
        /// The live transaction.
        tx: Transaction,
    },
    /// The authentication is over without success (already told to the front).
    Ended {
        /// The authentication.
        auth: u64,
    },
}

/// Everything one authentication task needs.
pub struct Driver {
    /// The authentication.
    pub auth: u64,
    /// User name as the client gave it (for the lockout count).
    pub user: String,
    /// The client's address.
    pub rhost: IpAddr,
    /// The transaction.
    pub tx: Transaction,
    /// Answers from the front, one message per round.
    pub answers: mpsc::Receiver<AuthAnswers>,
    /// Where prompts and failures go.
    pub chan: Arc<Channel>,
    /// Where the outcome goes.
    pub events: mpsc::UnboundedSender<Event>,
    /// Failure counting.
    pub lockout: Arc<Mutex<Lockout>>,
    /// This attempt, counted when it started.
    pub attempt: Attempt,
    /// How long the whole conversation may take.
    pub deadline: Duration,
}

impl Driver {
    /// Runs the conversation to its end, or to the deadline: a login that
    /// takes longer is refused and its transaction dropped (which ends PAM's
    /// conversation), so no client holds a PAM thread longer than that.
    pub async fn run(self) {
        let (auth, deadline) = (self.auth, self.deadline);
        let (user, rhost) = (self.user.clone(), self.rhost);
        let chan = Arc::clone(&self.chan);
        let events = self.events.clone();
        if tokio::time::timeout(deadline, self.converse())
            .await
            .is_err()
        {
            crate::audit::Event::AuthFailed {
                user: &user,
                remote: rhost,
                reason: &format!("not completed within {} s", deadline.as_secs()),
            }
            .emit();
            let msg = ToFront::Failed {
                auth,
                code: ErrorCode::Timeout.number(),
                message: format!(
                    "authentication not completed within {} s (pam.auth_timeout_secs)",
                    deadline.as_secs()
                ),
            };
            let _ = chan.send(&msg, &[], None).await;
            let _ = events.send(Event::Auth(Outcome::Ended { auth }));
        }
    }

    async fn converse(mut self) {
        loop {
            match self.tx.next().await {
                Step::Prompts(prompts) => {
                    let step = AuthStep::Prompts(prompts).encode();
                    let msg = ToFront::AuthStep { auth: self.auth };
                    if self.chan.send(&msg, &step, None).await.is_err() {
                        return;
                    }
                    // While answers are due, `next` can only end the conversation
                    // (PAM's own timeout); it is cancel-safe, so wait on both.
                    let answers = tokio::select! {
                        answers = self.answers.recv() => answers,
                        step = self.tx.next() => {
                            if let Step::Failed(failure) = step {
                                self.fail(failure).await;
                            }
                            return;
                        }
                    };
                    let Some(answers) = answers else {
                        // The monitor dropped us: aborted. Dropping the
                        // transaction ends PAM's conversation.
                        return;
                    };
                    if let Err(e) = self.tx.answer(answers) {
                        // Not a wrong password (nothing was checked): a client
                        // that broke the protocol. Not counted as a failure.
                        crate::audit::Event::AuthFailed {
                            user: &self.user,
                            remote: self.rhost,
                            reason: &format!("bad answers: {e}"),
                        }
                        .emit();
                        self.refuse(ErrorCode::Protocol, &e.to_string()).await;
                        return;
                    }
                }
                Step::Authenticated(user) => {
                    lock(&self.lockout).succeeded(&self.attempt);
                    let _ = self.events.send(Event::Auth(Outcome::Authenticated {
                        auth: self.auth,
                        user,
                        tx: self.tx,
                    }));
                    return;
                }
                Step::Failed(failure) => {
                    self.fail(failure).await;
                    return;
                }
            }
        }
    }

    async fn refuse(&self, code: ErrorCode, message: &str) {
        let msg = ToFront::Failed {
            auth: self.auth,
            code: code.number(),
            message: message.to_owned(),
        };
        let _ = self.chan.send(&msg, &[], None).await;
        let _ = self
            .events
            .send(Event::Auth(Outcome::Ended { auth: self.auth }));
    }

    async fn fail(&self, failure: Failure) {
        // The attempt was counted when it began. What proved the password
        // right, or never got to check it through no fault of the client, is
        // given back; guesses, timeouts and abandoned attempts stay counted.
        if matches!(
            failure,
            Failure::PasswordExpired | Failure::AccountUnavailable | Failure::Internal
        ) {
            lock(&self.lockout).refund(&self.attempt);
        }
        crate::audit::Event::AuthFailed {
            user: &self.user,
            remote: self.rhost,
            reason: &failure.to_string(),
        }
        .emit();
        self.refuse(failure.code(), failure.message()).await;
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
