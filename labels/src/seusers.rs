//! The `seusers` file (`/etc/selinux/<type>/seusers`), parsed here rather than through
//! libselinux.
//!
//! Why not `getseuserbyname()`: libselinux drops the level whenever it believes MLS is off
//! (no selinuxfs), and falls back to the Linux name for an unmatched user; both would give
//! srpcd a context without a level or for a user that does not exist. This parser reads the
//! file as `semanage login` writes it: `name:seuser[:range]`, `%group:seuser[:range]`,
//! `__default__:seuser[:range]`, `#` comment lines and blank lines. Unlike libselinux, which
//! skips a line it cannot read, a bad line is an error naming the file and line: a typo in
//! this file decides who gets which privileges, so it fails closed.
//!
//! Lookup follows libselinux's order: a line naming the user exactly wins wherever it is;
//! otherwise the first `%group` line (in file order) naming one of the user's groups; otherwise
//! the first `__default__` line.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::level::{LevelError, Range};

/// What the left-hand side of a line names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginName {
    /// A Linux user name.
    User(String),
    /// `%group`: members of a Linux group.
    Group(String),
    /// `__default__`.
    Default,
}

impl fmt::Display for LoginName {
    /// As `semanage login` takes it: `alice`, `%staff`, `__default__`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoginName::User(n) => f.write_str(n),
            LoginName::Group(g) => write!(f, "%{g}"),
            LoginName::Default => f.write_str("__default__"),
        }
    }
}

/// One mapping line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeuserEntry {
    /// 1-based line number in the file.
    pub line: usize,
    /// Who the line is for.
    pub login: LoginName,
    /// The SELinux user.
    pub seuser: String,
    /// The MLS/MCS range, if the line has one (`semanage login` always writes one on an
    /// MCS/MLS policy).
    pub range: Option<Range>,
}

/// A parsed seusers file.
#[derive(Debug, Clone)]
pub struct Seusers {
    path: PathBuf,
    entries: Vec<SeuserEntry>,
}

/// The seusers line that applies to a user, and the file it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeuserMatch<'a> {
    /// The file (for explanations).
    pub path: &'a Path,
    /// The line.
    pub entry: &'a SeuserEntry,
}

impl fmt::Display for SeuserMatch<'_> {
    /// `/etc/selinux/default/seusers line 3 (__default__:unconfined_u:s0-s0:c0.c1023)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.entry;
        write!(
            f,
            "{} line {} ({}:{}",
            self.path.display(),
            e.line,
            e.login,
            e.seuser
        )?;
        if let Some(r) = &e.range {
            write!(f, ":{r}")?;
        }
        f.write_str(")")
    }
}

/// A seusers file that cannot be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum SeusersError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is malformed.
    #[error("{} line {line}: {message}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A line's range does not parse.
    #[error("{} line {line}: {source}", path.display())]
    Range {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The parse error.
        source: LevelError,
    },
}

impl Seusers {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Seusers, SeusersError> {
        let text = std::fs::read_to_string(path).map_err(|source| SeusersError::Read {
            path: path.to_owned(),
            source,
        })?;
        Seusers::parse(&text, path)
    }

    /// Parses `text`; `path` is recorded for error messages and explanations.
    pub fn parse(text: &str, path: &Path) -> Result<Seusers, SeusersError> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            entries.push(parse_line(trimmed, line, path)?);
        }
        Ok(Seusers {
            path: path.to_owned(),
            entries,
        })
    }

    /// The file this came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The mapping lines, in file order.
    pub fn entries(&self) -> &[SeuserEntry] {
        &self.entries
    }

    /// The line that applies to Linux user `user` whose groups (primary and supplementary,
    /// by name) are `groups`, in libselinux's order (see the module doc); `None` when no
    /// line applies and there is no `__default__`.
    pub fn lookup<S: AsRef<str>>(&self, user: &str, groups: &[S]) -> Option<SeuserMatch<'_>> {
        let exact = self
            .entries
            .iter()
            .find(|e| matches!(&e.login, LoginName::User(n) if n == user));
        let group = || {
            self.entries.iter().find(|e| {
                matches!(&e.login, LoginName::Group(g) if groups.iter().any(|m| m.as_ref() == g))
            })
        };
        let default = || self.entries.iter().find(|e| e.login == LoginName::Default);
        exact
            .or_else(group)
            .or_else(default)
            .map(|entry| SeuserMatch {
                path: &self.path,
                entry,
            })
    }
}

fn parse_line(text: &str, line: usize, path: &Path) -> Result<SeuserEntry, SeusersError> {
    let bad = |message: String| SeusersError::Line {
        path: path.to_owned(),
        line,
        message,
    };
    let mut parts = text.splitn(3, ':');
    let name = parts.next().unwrap_or_default();
    let Some(seuser) = parts.next() else {
        return Err(bad(format!(
            "expected name:seuser[:range], found '{text}' (no ':')"
        )));
    };
    let range = parts.next();
    let login = if name == "__default__" {
        LoginName::Default
    } else if let Some(group) = name.strip_prefix('%') {
        if !valid_name(group) {
            return Err(bad(format!("'{name}' is not a valid %group name")));
        }
        LoginName::Group(group.to_owned())
    } else if valid_name(name) {
        LoginName::User(name.to_owned())
    } else {
        return Err(bad(format!("'{name}' is not a valid login name")));
    };
    if !crate::valid_identifier(seuser) {
        return Err(bad(format!(
            "'{seuser}' is not a valid SELinux user name (letters, digits, '_', '.', '-')"
        )));
    }
    let range = match range {
        None => None,
        Some(r) => Some(r.parse::<Range>().map_err(|source| SeusersError::Range {
            path: path.to_owned(),
            line,
            source,
        })?),
    };
    Ok(SeuserEntry {
        line,
        login,
        seuser: seuser.to_owned(),
        range,
    })
}

/// A Linux user or group name: non-empty, no whitespace, ':' or '%' (shadow-utils allows
/// more than POSIX portable names, e.g. `DOMAIN\user` from sssd, so this is permissive).
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ':' || c == '%')
}
