//! The PAM conversation function, on the PAM thread: it turns PAM's messages
//! into rounds for the client and blocks until the answers come back.

use std::ffi::{CStr, CString};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use pam_client2::{ConversationHandler, ErrorCode};
use srpc_proto::{Prompt, PromptStyle};
use tokio::sync::mpsc::UnboundedSender;
use zeroize::{Zeroize, Zeroizing};

use super::thread::{Command, Event};
use super::Failure;

/// One transaction's conversation. pam-client2 calls it once per PAM message
/// and needs each answer before it shows the next message, so a round carries
/// exactly one prompt that wants an answer, preceded by the info and error
/// messages that came before it.
pub(super) struct Conversation {
    events: UnboundedSender<Event>,
    /// `None` once the authentication is over: modules that converse while a
    /// session opens or closes get a conversation error (there is no one to
    /// answer then).
    commands: Option<Receiver<Command>>,
    timeout: Duration,
    /// Info and error messages not yet shown.
    pending: Vec<Prompt>,
    /// Set when the conversation broke; later calls fail at once.
    failure: Option<Failure>,
}

impl Conversation {
    pub(super) fn new(
        events: UnboundedSender<Event>,
        commands: Receiver<Command>,
        timeout: Duration,
    ) -> Conversation {
        Conversation {
            events,
            commands: Some(commands),
            timeout,
            pending: Vec::new(),
            failure: None,
        }
    }

    /// Why the conversation broke, if it did (the client went away or did not
    /// answer in time). PAM reports that as some error of its own; this names
    /// the real cause.
    pub(super) fn failure(&self) -> Option<Failure> {
        self.failure
    }

    /// Shows messages still pending after a successful authentication as a
    /// round of their own (answered with empty strings).
    pub(super) fn flush(&mut self) -> Result<(), Failure> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let messages = std::mem::take(&mut self.pending);
        match self.round(messages) {
            Ok(answers) if answers.is_empty() => Ok(()),
            Ok(_) => Err(Failure::Internal),
            Err(_) => Err(self.failure.unwrap_or(Failure::Internal)),
        }
    }

    /// Ends the conversation with the client and hands over the command
    /// channel for the session phase.
    pub(super) fn take_commands(&mut self) -> Option<Receiver<Command>> {
        self.pending.clear();
        self.commands.take()
    }

    fn ask(&mut self, style: PromptStyle, text: &CStr) -> Result<CString, ErrorCode> {
        let mut prompts = std::mem::take(&mut self.pending);
        prompts.push(Prompt {
            style,
            text: text.to_string_lossy().into_owned(),
        });
        let mut answers = self.round(prompts)?;
        match (answers.pop(), answers.is_empty()) {
            (Some(answer), true) => into_cstring(answer).ok_or(ErrorCode::CONV_ERR),
            _ => Err(ErrorCode::CONV_ERR),
        }
    }

    /// Sends one round and waits for the answers to its prompts (only those
    /// that want one; the async side has checked the rest are empty).
    fn round(&mut self, prompts: Vec<Prompt>) -> Result<Vec<Zeroizing<String>>, ErrorCode> {
        if self.failure.is_some() {
            return Err(ErrorCode::CONV_ERR);
        }
        let Some(commands) = &self.commands else {
            return Err(ErrorCode::CONV_ERR);
        };
        let broke = if self.events.send(Event::Prompts(prompts)).is_err() {
            Failure::ConversationAborted
        } else {
            match commands.recv_timeout(self.timeout) {
                Ok(Command::Answers(answers)) => return Ok(answers),
                Ok(Command::OpenSession | Command::Finish)
                | Err(RecvTimeoutError::Disconnected) => Failure::ConversationAborted,
                Err(RecvTimeoutError::Timeout) => Failure::ConversationTimeout,
            }
        };
        self.failure = Some(broke);
        Err(ErrorCode::CONV_ERR)
    }
}

impl ConversationHandler for Conversation {
    fn prompt_echo_on(&mut self, prompt: &CStr) -> Result<CString, ErrorCode> {
        self.ask(PromptStyle::EchoOn, prompt)
    }

    fn prompt_echo_off(&mut self, prompt: &CStr) -> Result<CString, ErrorCode> {
        self.ask(PromptStyle::EchoOff, prompt)
    }

    fn text_info(&mut self, msg: &CStr) {
        self.pending.push(Prompt {
            style: PromptStyle::Info,
            text: msg.to_string_lossy().into_owned(),
        });
    }

    fn error_msg(&mut self, msg: &CStr) {
        self.pending.push(Prompt {
            style: PromptStyle::Error,
            text: msg.to_string_lossy().into_owned(),
        });
    }
}

/// Moves an answer into the `CString` pam-client2 wants, leaving no copy of
/// ours behind: the buffer is sized so that adding the NUL neither grows nor
/// shrinks it (either would leave an unwiped copy in freed memory), and the
/// `Zeroizing` original is wiped on return.
///
/// What happens after is pam-client2's and libpam's: pam-client2 `strdup`s the
/// string into the response array and drops the `CString`, whose destructor
/// clears only its first byte; libpam hands the copy to the module, and Linux-PAM
/// modules (`pam_get_authtok`, `pam_prompt`) overwrite it before freeing it and
/// wipe `PAM_AUTHTOK` at `pam_end`.
fn into_cstring(answer: Zeroizing<String>) -> Option<CString> {
    let mut bytes = Vec::with_capacity(answer.len() + 1);
    bytes.extend_from_slice(answer.as_bytes());
    drop(answer);
    match CString::new(bytes) {
        Ok(c) => Some(c),
        Err(e) => {
            // Unreachable in practice: answers with NUL are refused before they
            // reach this thread.
            e.into_vec().zeroize();
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_c_strings_and_nul_is_refused() {
        let c = into_cstring(Zeroizing::new("s3cret".to_owned())).unwrap();
        assert_eq!(c.as_bytes(), b"s3cret");
        assert!(into_cstring(Zeroizing::new("a\0b".to_owned())).is_none());
    }
}
