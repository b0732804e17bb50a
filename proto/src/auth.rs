//! The PAM conversation carried by appends on an auth fid.
//!
//! The client appends [`AuthAnswers`] (the first append carries none); the server
//! replies with an [`AuthStep`]: more prompts, or "authenticated". A failure is an
//! `Rerror` on the append instead. Any number of rounds may happen.

use zeroize::Zeroizing;

use crate::error::{DecodeError, FieldError};
use crate::json::{item_object, item_string, parse_object, write_array, write_str, ObjWriter};

/// How a prompt is to be shown, as PAM's message styles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PromptStyle {
    /// Ask, hiding what is typed (`PAM_PROMPT_ECHO_OFF`: passwords, codes).
    EchoOff,
    /// Ask, showing what is typed (`PAM_PROMPT_ECHO_ON`).
    EchoOn,
    /// Show, no answer expected (`PAM_TEXT_INFO`).
    Info,
    /// Show as an error, no answer expected (`PAM_ERROR_MSG`).
    Error,
}

impl PromptStyle {
    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            PromptStyle::EchoOff => "echo_off",
            PromptStyle::EchoOn => "echo_on",
            PromptStyle::Info => "info",
            PromptStyle::Error => "error",
        }
    }

    fn parse(s: &str) -> Option<PromptStyle> {
        match s {
            "echo_off" => Some(PromptStyle::EchoOff),
            "echo_on" => Some(PromptStyle::EchoOn),
            "info" => Some(PromptStyle::Info),
            "error" => Some(PromptStyle::Error),
            _ => None,
        }
    }

    /// True for the styles that take an answer.
    pub fn wants_answer(self) -> bool {
        matches!(self, PromptStyle::EchoOff | PromptStyle::EchoOn)
    }
}

/// One message of a PAM conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// How to show it.
    pub style: PromptStyle,
    /// The text PAM gave.
    pub text: String,
}

/// The server's side of one conversation round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// Answer these (one answer per prompt, `""` for info and error).
    Prompts(Vec<Prompt>),
    /// The user is authenticated; the afid may now be used in `Tattach`.
    Authenticated,
}

impl AuthStep {
    /// The step as an `Rappend` payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = ObjWriter::begin(&mut out);
        match self {
            AuthStep::Authenticated => w.str("status", "authenticated").end(),
            AuthStep::Prompts(prompts) => w
                .str("status", "prompts")
                .with("prompts", |out| {
                    write_array(out, prompts, |out, p| {
                        ObjWriter::begin(out)
                            .str("style", p.style.as_str())
                            .str("text", &p.text)
                            .end();
                    });
                })
                .end(),
        }
        out
    }

    /// Reads a step from an `Rappend` payload.
    pub fn decode(data: &[u8]) -> Result<AuthStep, DecodeError> {
        let mut f = parse_object(data)?;
        let status = f.string("status")?;
        let step = match status.as_str() {
            "authenticated" => AuthStep::Authenticated,
            "prompts" => AuthStep::Prompts(f.array("prompts", |v, path| {
                let mut p = item_object(v, &path)?;
                let style = p.string("style")?;
                let style = PromptStyle::parse(&style).ok_or_else(|| {
                    DecodeError::field(
                        format!("{path}.style"),
                        FieldError::OutOfRange(format!("unknown prompt style `{style}`")),
                    )
                })?;
                let text = p.string("text")?;
                p.finish()?;
                Ok(Prompt { style, text })
            })?),
            other => {
                return Err(DecodeError::field(
                    "status",
                    FieldError::OutOfRange(format!("unknown status `{other}`")),
                ))
            }
        };
        f.finish()?;
        Ok(step)
    }
}

/// The client's side of one round: answers to the previous prompts, in order.
/// Answers are secrets; they are wiped when dropped and never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthAnswers(pub Vec<Zeroizing<String>>);

impl std::fmt::Debug for AuthAnswers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthAnswers({} redacted)", self.0.len())
    }
}

impl AuthAnswers {
    /// The answers as a `Tappend` payload (wiped when dropped).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        // Room for the worst case (every byte escaped as \u00XX) so the buffer
        // never reallocates and leaves an unwiped copy of a secret behind.
        let mut out = Zeroizing::new(Vec::with_capacity(
            16 + self.0.iter().map(|a| a.len() * 6 + 3).sum::<usize>(),
        ));
        out.extend_from_slice(b"{\"answers\":[");
        for (i, answer) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            // Written straight into our own wiped buffer: no intermediate String
            // holds the secret.
            write_str(&mut out, answer.as_str());
        }
        out.extend_from_slice(b"]}");
        out
    }

    /// Reads answers from a `Tappend` payload.
    pub fn decode(data: &[u8]) -> Result<AuthAnswers, DecodeError> {
        let mut f = parse_object(data)?;
        let answers = f.array("answers", |v, path| {
            item_string(v, path).map(Zeroizing::new)
        })?;
        f.finish()?;
        Ok(AuthAnswers(answers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_trip() {
        let step = AuthStep::Prompts(vec![
            Prompt {
                style: PromptStyle::EchoOff,
                text: "Password: ".into(),
            },
            Prompt {
                style: PromptStyle::Info,
                text: "hello".into(),
            },
        ]);
        assert_eq!(AuthStep::decode(&step.encode()).unwrap(), step);
        assert_eq!(
            AuthStep::decode(&AuthStep::Authenticated.encode()).unwrap(),
            AuthStep::Authenticated
        );
    }

    #[test]
    fn answers_round_trip_and_are_redacted_in_debug() {
        let a = AuthAnswers(vec![Zeroizing::new("s\"ecr\\et\u{1}".into())]);
        assert_eq!(AuthAnswers::decode(&a.encode()).unwrap(), a);
        assert!(!format!("{a:?}").contains("ecr"));
    }

    #[test]
    fn bad_payloads_are_precise() {
        assert!(matches!(
            AuthStep::decode(br#"{"status":"maybe"}"#),
            Err(DecodeError::Field { .. })
        ));
        assert_eq!(
            AuthAnswers::decode(br#"{"answers":[],"x":1}"#),
            Err(DecodeError::UnknownField("x".into()))
        );
        assert!(matches!(
            AuthAnswers::decode(br#"{"answers":[1]}"#),
            Err(DecodeError::Field { .. })
        ));
    }
}
