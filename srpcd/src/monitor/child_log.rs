//! A child's stderr, logged by the monitor as that child's: children never
//! share srpcd's own stderr (a handler could forge srpcd's log lines, or
//! truncate its log file). Each child's stderr is a pipe read here, on a task
//! of its own: lines are capped in length, control characters and invalid
//! UTF-8 escaped, and each is logged quoted, under the target `srpcd::child`,
//! with the child's role, user, pid (and endpoint) as `SRPC_ROLE`,
//! `SRPC_USER`, `SRPC_PID`, `SRPC_ENDPOINT` in the journal, so a forged
//! "INFO authenticated" line is visibly a child's text.

use std::fmt::Write as _;
use std::os::fd::OwnedFd;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::launch::Tag;

/// Longer lines are cut here (the rest up to the newline is dropped).
const MAX_LINE: usize = 2048;

/// Logs what the child writes to `stderr` until it closes.
pub fn forward(stderr: OwnedFd, tag: Tag, pid: u32) {
    tokio::spawn(async move {
        let Ok(pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(stderr) else {
            return;
        };
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        let mut cut = false;
        while let Ok(buf) = reader.fill_buf().await {
            if buf.is_empty() {
                if !line.is_empty() {
                    emit(&tag, pid, &line, cut);
                }
                break;
            }
            let (chunk, newline) = match buf.iter().position(|b| *b == b'\n') {
                Some(i) => (&buf[..i], Some(i)),
                None => (buf, None),
            };
            let room = MAX_LINE.saturating_sub(line.len());
            cut |= chunk.len() > room;
            line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            let used = newline.map_or(chunk.len(), |i| i + 1);
            reader.consume(used);
            if newline.is_some() {
                emit(&tag, pid, &line, cut);
                line.clear();
                cut = false;
            }
        }
    });
}

fn emit(tag: &Tag, pid: u32, line: &[u8], cut: bool) {
    let role = tag.role.as_str();
    let text = quote(line);
    let more = if cut { " (line cut)" } else { "" };
    tracing::info!(
        target: "srpcd::child",
        srpc_role = role,
        srpc_user = tag.user,
        srpc_pid = pid,
        srpc_endpoint = tag.endpoint,
        "{role} stderr: {text}{more}"
    );
}

/// `bytes` in double quotes: `"` and `\` escaped, control characters as
/// `\u{..}`, bytes that are not UTF-8 as `\xNN`.
pub fn quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quoting_escapes_what_could_pass_for_log_structure() {
        assert_eq!(quote(b"plain text"), "\"plain text\"");
        assert_eq!(quote(b"a \"b\" \\c"), r#""a \"b\" \\c""#);
        assert_eq!(
            quote(b"cr\rtab\tesc\x1b[31m"),
            r#""cr\u{d}tab\u{9}esc\u{1b}[31m""#
        );
        assert_eq!(
            quote(b"bad \xff\xfe utf8 \xc3\xa9"),
            r#""bad \xff\xfe utf8 é""#
        );
    }
}
