//! Authentication: the PAM conversation carried on an auth fid, then attach.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use srpc_proto::PromptStyle;
use srpc_proto::{validate_name, validate_path, AuthAnswers, AuthStep, Kind, Message, Prompt};
use zeroize::Zeroizing;

use super::call::{unexpected, FidSlot};
use super::dial::Client;
use super::error::Error;
use super::session::{Fid, Session};

/// Rounds of questions after which a server is assumed to be looping.
const MAX_AUTH_ROUNDS: usize = 32;

/// Why a [`Conversation`] gave up. Its text is shown in [`Error::Conversation`], so
/// it must not contain an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ConversationError {
    reason: String,
}

impl ConversationError {
    /// A conversation error with this explanation.
    ///
    /// ```
    /// use srpc::client::ConversationError;
    ///
    /// let e = ConversationError::new("the user cancelled");
    /// assert_eq!(e.to_string(), "the user cancelled");
    /// ```
    pub fn new(reason: impl Into<String>) -> ConversationError {
        ConversationError {
            reason: reason.into(),
        }
    }
}

/// Answers the server's PAM prompts during [`Client::auth`].
///
/// Each round, `respond` gets the server's prompts and returns exactly one answer
/// per prompt, in order: the typed text for [`PromptStyle::EchoOff`] and
/// [`PromptStyle::EchoOn`], and `""` for [`PromptStyle::Info`] and
/// [`PromptStyle::Error`] (those are messages to show the user). Answers are
/// wiped from memory after sending.
///
/// ```
/// use srpc::client::{Conversation, ConversationError};
/// use srpc::proto::{Prompt, PromptStyle};
/// use zeroize::Zeroizing;
///
/// /// Answers a one-time code; shows messages on stderr.
/// struct Otp(String);
///
/// impl Conversation for Otp {
///     async fn respond(
///         &mut self,
///         prompts: &[Prompt],
///     ) -> Result<Vec<Zeroizing<String>>, ConversationError> {
///         prompts
///             .iter()
///             .map(|p| match p.style {
///                 PromptStyle::EchoOff | PromptStyle::EchoOn => Ok(Zeroizing::new(self.0.clone())),
///                 PromptStyle::Info | PromptStyle::Error => {
///                     eprintln!("{}", p.text);
///                     Ok(Zeroizing::new(String::new()))
///                 }
///             })
///             .collect()
///     }
/// }
/// ```
pub trait Conversation: Send {
    /// Answers one round of prompts.
    fn respond(
        &mut self,
        prompts: &[Prompt],
    ) -> impl Future<Output = Result<Vec<Zeroizing<String>>, ConversationError>> + Send;
}

/// A ready [`Conversation`] for password logins: it answers every
/// [`PromptStyle::EchoOff`] prompt with the password, and an
/// [`PromptStyle::EchoOn`] prompt with the user name if one was given with
/// [`PasswordConversation::with_username`] (PAM's "login:" question); any other
/// echo-on question fails the conversation. Info and error messages are kept for
/// [`PasswordConversation::messages`].
///
/// The password is wiped from memory when the conversation is dropped and is
/// never printed (its `Debug` output is redacted).
///
/// ```no_run
/// # async fn demo(client: srpc::client::Client) -> Result<(), srpc::client::Error> {
/// use srpc::client::PasswordConversation;
///
/// let mut conv = PasswordConversation::new("s3cret").with_username("alice");
/// let session = client.auth("alice", "/", &mut conv).await?;
/// for m in conv.messages() {
///     eprintln!("server says: {}", m.text);
/// }
/// # let _ = session;
/// # Ok(()) }
/// ```
pub struct PasswordConversation {
    password: Zeroizing<String>,
    username: Option<String>,
    messages: Vec<Prompt>,
}

impl fmt::Debug for PasswordConversation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordConversation")
            .field("password", &"<redacted>")
            .field("username", &self.username)
            .field("messages", &self.messages)
            .finish()
    }
}

impl PasswordConversation {
    /// A conversation that answers password prompts with `password`.
    ///
    /// ```
    /// use srpc::client::PasswordConversation;
    ///
    /// let conv = PasswordConversation::new(String::from("s3cret"));
    /// assert!(!format!("{conv:?}").contains("s3cret"));
    /// ```
    pub fn new(password: impl Into<String>) -> PasswordConversation {
        PasswordConversation {
            password: Zeroizing::new(password.into()),
            username: None,
            messages: Vec::new(),
        }
    }

    /// Also answers echo-on prompts, with `username`.
    ///
    /// ```
    /// use srpc::client::PasswordConversation;
    ///
    /// let conv = PasswordConversation::new("s3cret").with_username("alice");
    /// # let _ = conv;
    /// ```
    #[must_use]
    pub fn with_username(mut self, username: impl Into<String>) -> PasswordConversation {
        self.username = Some(username.into());
        self
    }

    /// The info and error messages the server sent, in order.
    ///
    /// ```
    /// use srpc::client::PasswordConversation;
    ///
    /// assert!(PasswordConversation::new("pw").messages().is_empty());
    /// ```
    pub fn messages(&self) -> &[Prompt] {
        &self.messages
    }

    fn answer(&mut self, prompt: &Prompt) -> Result<Zeroizing<String>, ConversationError> {
        match prompt.style {
            PromptStyle::EchoOff => Ok(self.password.clone()),
            PromptStyle::EchoOn => self.username.clone().map(Zeroizing::new).ok_or_else(|| {
                ConversationError::new(format!(
                    "the server asked {:?} (echo on), and only a password is configured",
                    prompt.text
                ))
            }),
            PromptStyle::Info | PromptStyle::Error => {
                self.messages.push(prompt.clone());
                Ok(Zeroizing::new(String::new()))
            }
        }
    }
}

impl Conversation for PasswordConversation {
    async fn respond(
        &mut self,
        prompts: &[Prompt],
    ) -> Result<Vec<Zeroizing<String>>, ConversationError> {
        prompts.iter().map(|p| self.answer(p)).collect()
    }
}

impl Client {
    /// Authenticates `uname` for a session attached at `aname` (an absolute path in
    /// the server's tree; `"/"` for its root): opens an auth fid, lets
    /// `conversation` answer the server's PAM prompts for as many rounds as the
    /// server asks, then attaches a new root fid. The auth fid is clunked
    /// afterwards. Each call makes an independent session, so several users can
    /// share one connection.
    ///
    /// Fails with [`Error::Server`] and [`srpc_proto::ErrorCode::AuthFailed`] when
    /// the server rejects the answers.
    ///
    /// ```no_run
    /// # async fn demo(client: srpc::client::Client) -> Result<(), srpc::client::Error> {
    /// use srpc::client::PasswordConversation;
    ///
    /// let alice = client.auth("alice", "/", &mut PasswordConversation::new("pw-a")).await?;
    /// let bob = client.auth("bob", "/", &mut PasswordConversation::new("pw-b")).await?;
    /// # let _ = (alice, bob);
    /// # Ok(()) }
    /// ```
    pub async fn auth<C>(
        &self,
        uname: &str,
        aname: &str,
        conversation: &mut C,
    ) -> Result<Session, Error>
    where
        C: Conversation,
    {
        let conn = self.conn();
        let max_name = conn.limits().max_name;
        validate_name(uname, max_name).map_err(|error| Error::InvalidName {
            name: uname.to_owned(),
            error,
        })?;
        validate_path(aname, max_name).map_err(|error| Error::InvalidName {
            name: aname.to_owned(),
            error,
        })?;

        let slot = FidSlot::new(&conn.shared)?;
        let msg = Message::Tauth {
            afid: slot.fid(),
            uname: uname.to_owned(),
            aname: aname.to_owned(),
        };
        let (reply, slot) = conn.exchange(msg, slot, conn.call_timeout).await?;
        let aqid = match reply {
            Message::Rauth { aqid } => aqid,
            other => return Err(unexpected(other, Kind::Tauth)),
        };
        // Dropped on any failure below: the auth fid is then clunked in the background.
        let auth_fid = Fid::new(slot, Arc::clone(conn), aqid);
        converse(&auth_fid, conversation).await?;

        let slot = FidSlot::new(&conn.shared)?;
        let msg = Message::Tattach {
            fid: slot.fid(),
            afid: auth_fid.id(),
            uname: uname.to_owned(),
            aname: aname.to_owned(),
        };
        let (reply, slot) = conn.exchange(msg, slot, conn.call_timeout).await?;
        let qid = match reply {
            Message::Rattach { qid } => qid,
            other => return Err(unexpected(other, Kind::Tattach)),
        };
        let root = Fid::new(slot, Arc::clone(conn), qid);
        // The session lives on in its root fid; the auth fid has done its work.
        if let Err(e) = auth_fid.clunk().await {
            tracing::debug!(error = %e, "clunking the auth fid after attach failed");
        }
        Ok(Session::new(root, uname.to_owned(), aname.to_owned()))
    }
}

/// Runs the conversation on `afid` until the server says the user is authenticated.
async fn converse<C>(afid: &Fid, conversation: &mut C) -> Result<(), Error>
where
    C: Conversation,
{
    // The first append carries no answers.
    let mut answers = AuthAnswers::default();
    for _ in 0..MAX_AUTH_ROUNDS {
        // The encoded answers stay in wiped memory until the frame is written.
        let payload = Bytes::from_owner(answers.encode());
        drop(answers);
        let reply = afid.append(payload).await?;
        let step = AuthStep::decode(&reply).map_err(|e| {
            Error::Protocol(format!(
                "the server sent a malformed authentication step: {e}"
            ))
        })?;
        let prompts = match step {
            AuthStep::Authenticated => return Ok(()),
            AuthStep::Prompts(prompts) => prompts,
        };
        let given = conversation.respond(&prompts).await?;
        if given.len() != prompts.len() {
            return Err(ConversationError::new(format!(
                "the conversation gave {} answers to {} prompts",
                given.len(),
                prompts.len()
            ))
            .into());
        }
        answers = AuthAnswers(given);
    }
    Err(Error::Protocol(format!(
        "the server asked more than {MAX_AUTH_ROUNDS} rounds of authentication questions"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(style: PromptStyle, text: &str) -> Prompt {
        Prompt {
            style,
            text: text.into(),
        }
    }

    #[tokio::test]
    async fn password_conversation_answers_and_collects_messages() {
        let mut conv = PasswordConversation::new("pw");
        let answers = conv
            .respond(&[
                prompt(PromptStyle::Info, "hello"),
                prompt(PromptStyle::EchoOff, "Password: "),
            ])
            .await
            .unwrap();
        let answers: Vec<&str> = answers.iter().map(|a| a.as_str()).collect();
        assert_eq!(answers, ["", "pw"]);
        assert_eq!(conv.messages(), [prompt(PromptStyle::Info, "hello")]);
    }

    #[tokio::test]
    async fn echo_on_needs_a_configured_username() {
        let login = [prompt(PromptStyle::EchoOn, "login: ")];
        let err = PasswordConversation::new("hunter2")
            .respond(&login)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("login: "), "{err}");
        assert!(!err.to_string().contains("hunter2"));
        let mut conv = PasswordConversation::new("hunter2").with_username("alice");
        let answers = conv.respond(&login).await.unwrap();
        assert_eq!(answers[0].as_str(), "alice");
    }
}
