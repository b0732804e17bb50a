//! The login: the password from a file descriptor or the terminal, and the
//! answers to the server's PAM conversation.

use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, PoisonError};

use rustix::termios::{self, LocalModes, OptionalActions, Termios};
use srpc::client::{Conversation, ConversationError};
use srpc::proto::{Prompt, PromptStyle};
use zeroize::Zeroizing;

use crate::show::printable;

/// Longest line accepted as a password or an answer. The buffer is reserved at
/// this size up front, so it never grows and leaves an unwiped copy behind.
const MAX_LINE: usize = 4096;

/// Reads one line from `input`, byte by byte so that nothing after the newline
/// is consumed (a call's request may follow the password on stdin). The newline
/// (and a `\r` before it) is not part of the line; end of input ends it too.
pub fn read_line(input: &mut impl Read) -> io::Result<Zeroizing<String>> {
    let mut line = Zeroizing::new(Vec::with_capacity(MAX_LINE));
    let mut byte = Zeroizing::new([0u8; 1]);
    loop {
        match input.read(byte.as_mut()) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) if line.len() == MAX_LINE => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the line is longer than {MAX_LINE} bytes"),
                ))
            }
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    match std::str::from_utf8(&line) {
        Ok(text) => Ok(Zeroizing::new(text.to_owned())),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the line is not valid UTF-8",
        )),
    }
}

/// The controlling terminal (`/dev/tty`), where questions are asked even when
/// stdin and stdout carry a call's data.
pub struct Tty {
    file: File,
    /// The settings to put back while echo is off.
    saved: Mutex<Option<Termios>>,
}

impl Tty {
    /// Opens the controlling terminal; fails when the process has none.
    pub fn open() -> io::Result<Tty> {
        let file = File::options().read(true).write(true).open("/dev/tty")?;
        Ok(Tty {
            file,
            saved: Mutex::new(None),
        })
    }

    /// Shows `prompt` and reads the answer, with the typed text hidden unless
    /// `echo`.
    pub fn ask(&self, prompt: &str, echo: bool) -> io::Result<Zeroizing<String>> {
        // Echo goes off before the prompt shows, so nothing typed after the
        // prompt can be echoed; what was typed before it is discarded.
        if !echo {
            self.echo_off()?;
        }
        let answer = self.prompt_and_read(prompt);
        self.restore();
        answer
    }

    fn prompt_and_read(&self, prompt: &str) -> io::Result<Zeroizing<String>> {
        (&self.file).write_all(printable(prompt).as_bytes())?;
        (&self.file).flush()?;
        read_line(&mut &self.file)
    }

    fn echo_off(&self) -> io::Result<()> {
        let normal = termios::tcgetattr(&self.file)?;
        let mut quiet = normal.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        // The newline the user types is still shown, so output starts on a new line.
        quiet.local_modes.insert(LocalModes::ECHONL);
        *self.saved.lock().unwrap_or_else(PoisonError::into_inner) = Some(normal);
        termios::tcsetattr(&self.file, OptionalActions::Flush, &quiet)?;
        Ok(())
    }

    /// Puts echo back if it is off (also called when the user interrupts).
    pub fn restore(&self) {
        let saved = self
            .saved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(normal) = saved {
            // Best effort: there is nothing better to do if the terminal is gone.
            let _ = termios::tcsetattr(&self.file, OptionalActions::Now, &normal);
        }
    }
}

/// Answers the server's PAM prompts: the password from `--password-fd` when
/// given, otherwise what the user types on the terminal; messages go to stderr.
pub struct Login {
    password: Option<Zeroizing<String>>,
    tty: Option<Arc<Tty>>,
}

impl Login {
    pub fn new(password: Option<Zeroizing<String>>, tty: Option<Arc<Tty>>) -> Login {
        Login { password, tty }
    }

    async fn ask(
        &self,
        prompt: &Prompt,
        echo: bool,
    ) -> Result<Zeroizing<String>, ConversationError> {
        let Some(tty) = self.tty.clone() else {
            return Err(ConversationError::new(format!(
                "the server asks {:?} and there is no terminal to answer on",
                printable(&prompt.text)
            )));
        };
        let text = prompt.text.clone();
        tokio::task::spawn_blocking(move || tty.ask(&text, echo))
            .await
            .map_err(|e| ConversationError::new(format!("asking on the terminal failed: {e}")))?
            .map_err(|e| ConversationError::new(format!("reading from the terminal failed: {e}")))
    }
}

impl Conversation for Login {
    async fn respond(
        &mut self,
        prompts: &[Prompt],
    ) -> Result<Vec<Zeroizing<String>>, ConversationError> {
        let mut answers = Vec::with_capacity(prompts.len());
        for prompt in prompts {
            let answer = match (prompt.style, &self.password) {
                (PromptStyle::EchoOff, Some(password)) => password.clone(),
                (PromptStyle::EchoOff, None) => self.ask(prompt, false).await?,
                (PromptStyle::EchoOn, _) => self.ask(prompt, true).await?,
                (PromptStyle::Info | PromptStyle::Error, _) => {
                    eprintln!("{}", printable(&prompt.text));
                    Zeroizing::new(String::new())
                }
            };
            answers.push(answer);
        }
        Ok(answers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_read_up_to_its_newline_and_no_further() {
        let mut input: &[u8] = b"s3cret\r\n\0binary\xff";
        assert_eq!(read_line(&mut input).unwrap().as_str(), "s3cret");
        assert_eq!(input, b"\0binary\xff");
        let mut input: &[u8] = b"no newline";
        assert_eq!(read_line(&mut input).unwrap().as_str(), "no newline");
        let mut input: &[u8] = b"";
        assert_eq!(read_line(&mut input).unwrap().as_str(), "");
    }

    #[test]
    fn bad_lines_are_errors() {
        let mut input: &[u8] = b"\xff\xfe\n";
        assert_eq!(
            read_line(&mut input).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        let long = vec![b'a'; MAX_LINE + 1];
        assert!(read_line(&mut long.as_slice())
            .unwrap_err()
            .to_string()
            .contains("longer than"));
        let mut exact = vec![b'a'; MAX_LINE];
        exact.push(b'\n');
        assert_eq!(read_line(&mut exact.as_slice()).unwrap().len(), MAX_LINE);
    }

    #[tokio::test]
    async fn the_given_password_answers_hidden_prompts_and_messages_get_empty_answers() {
        let mut login = Login::new(Some(Zeroizing::new("pw".into())), None);
        let prompt = |style, text: &str| Prompt {
            style,
            text: text.into(),
        };
        let answers = login
            .respond(&[
                prompt(PromptStyle::Info, "Welcome"),
                prompt(PromptStyle::EchoOff, "Password: "),
                prompt(PromptStyle::Error, "expires soon"),
            ])
            .await
            .unwrap();
        let answers: Vec<&str> = answers.iter().map(|a| a.as_str()).collect();
        assert_eq!(answers, ["", "pw", ""]);
        // A question that needs typing fails without a terminal, naming it.
        let err = login
            .respond(&[prompt(PromptStyle::EchoOn, "token: ")])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("token: "), "{err}");
    }
}
