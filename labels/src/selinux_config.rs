//! Finding the policy's files: `/etc/selinux/config`'s `SELINUXTYPE` names the policy
//! directory `/etc/selinux/<type>`, which holds `seusers` and
//! `contexts/files/file_contexts` (plus `.local`, which the selabel file backend reads).
//!
//! The type becomes a path component, so it must be a plain name: a `SELINUXTYPE=../x`
//! would point srpcd at files nobody reviewed.

use std::path::{Path, PathBuf};

/// The default directory holding `config` and the policy directories.
pub const SELINUX_DIR: &str = "/etc/selinux";

/// A policy directory `/etc/selinux/<type>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyPaths {
    root: PathBuf,
}

/// `/etc/selinux/config` cannot be read or names no usable policy type.
#[derive(Debug, thiserror::Error)]
pub enum SelinuxConfigError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No `SELINUXTYPE=` line.
    #[error("{} has no SELINUXTYPE= line", path.display())]
    NoType {
        /// The file.
        path: PathBuf,
    },
    /// `SELINUXTYPE=` is not a plain name.
    #[error("{} line {line}: SELINUXTYPE '{value}' is not a policy name (letters, digits, '_', '.', '-')", path.display())]
    BadType {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The value.
        value: String,
    },
}

/// The `SELINUXTYPE` value of a config file's text (the last such line wins, as in
/// libselinux; quotes are not stripped, as libselinux does not); `path` is for error messages.
pub fn parse_selinux_type(text: &str, path: &Path) -> Result<String, SelinuxConfigError> {
    let mut found = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        // As libselinux: the tag is case-insensitive, the value ends at whitespace.
        let tag = "SELINUXTYPE=";
        if line.len() >= tag.len()
            && line.is_char_boundary(tag.len())
            && line[..tag.len()].eq_ignore_ascii_case(tag)
        {
            let value = line[tag.len()..]
                .split_whitespace()
                .next()
                .unwrap_or_default();
            if !crate::valid_identifier(value) || value == "." || value == ".." {
                return Err(SelinuxConfigError::BadType {
                    path: path.to_owned(),
                    line: i + 1,
                    value: value.to_owned(),
                });
            }
            found = Some(value.to_owned());
        }
    }
    found.ok_or_else(|| SelinuxConfigError::NoType {
        path: path.to_owned(),
    })
}

impl PolicyPaths {
    /// The policy directory named by `<selinux_dir>/config` (srpcd passes [`SELINUX_DIR`]).
    pub fn from_config(selinux_dir: &Path) -> Result<PolicyPaths, SelinuxConfigError> {
        let path = selinux_dir.join("config");
        let text = std::fs::read_to_string(&path).map_err(|source| SelinuxConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let policy_type = parse_selinux_type(&text, &path)?;
        Ok(PolicyPaths::new(selinux_dir.join(policy_type)))
    }

    /// The policy directory `root` itself (tests, or an alternate root).
    pub fn new(root: PathBuf) -> PolicyPaths {
        PolicyPaths { root }
    }

    /// `/etc/selinux/<type>`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/seusers`.
    pub fn seusers(&self) -> PathBuf {
        self.root.join("seusers")
    }

    /// `<root>/contexts/files/file_contexts`.
    pub fn file_contexts(&self) -> PathBuf {
        self.root.join("contexts/files/file_contexts")
    }
}
