//! The label map: SELinux user → role, and role → worker type.
//!
//! The built-in map is `labels/data/label-map.toml`, compiled in; an admin's file (srpcd
//! reads `/etc/srpc/label-map.toml`) is laid over it: an entry there replaces the built-in
//! entry of the same name, new names are added, nothing is removed. Both files are strict
//! TOML (unknown tables and keys are errors, names must be SELinux identifiers), and every
//! entry remembers where it came from (file and line) so `explain-user` can say which one
//! decided. There is no wildcard or fallback entry: an unmapped user or role is refused.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// The admin's file, laid over the built-in map by srpcd.
pub const ADMIN_LABEL_MAP: &str = "/etc/srpc/label-map.toml";

/// The built-in map's text.
pub const BUILTIN_LABEL_MAP: &str = include_str!("../data/label-map.toml");

/// Where a map entry came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapOrigin {
    /// The map compiled into srpcd (`labels/data/label-map.toml`).
    Builtin,
    /// An admin's file.
    File(PathBuf),
}

impl fmt::Display for MapOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapOrigin::Builtin => f.write_str("built-in label map"),
            MapOrigin::File(p) => write!(f, "label map {}", p.display()),
        }
    }
}

/// One entry: `key = "value"` in `[table]`, with its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    /// `users` or `roles`.
    pub table: &'static str,
    /// The SELinux user or role.
    pub key: String,
    /// The role or worker type.
    pub value: String,
    /// The file.
    pub origin: MapOrigin,
    /// 1-based line of the entry.
    pub line: usize,
}

impl fmt::Display for MapEntry {
    /// `built-in label map line 27 ([users] user_u = "user_r")`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} line {} ([{}] {} = \"{}\")",
            self.origin, self.line, self.table, self.key, self.value
        )
    }
}

/// The merged map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMap {
    users: BTreeMap<String, MapEntry>,
    roles: BTreeMap<String, MapEntry>,
}

/// A label map file that cannot be read or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum LabelMapError {
    /// The file cannot be read.
    #[error("cannot read label map {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("{origin} line {line}: {message}")]
    Invalid {
        /// The file.
        origin: MapOrigin,
        /// 1-based line (0 if the TOML error has no position).
        line: usize,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MapFile {
    #[serde(default)]
    users: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    roles: BTreeMap<String, Spanned<String>>,
}

impl LabelMap {
    /// The built-in map alone.
    pub fn builtin() -> Result<LabelMap, LabelMapError> {
        LabelMap::parse(BUILTIN_LABEL_MAP, &MapOrigin::Builtin)
    }

    /// The built-in map with the admin's file at `path` laid over it; the built-in map
    /// alone when `path` does not exist (the file is optional). Any other read error, and
    /// any invalid entry, is an error.
    pub fn builtin_with_overrides(path: &Path) -> Result<LabelMap, LabelMapError> {
        let builtin = LabelMap::builtin()?;
        match std::fs::read_to_string(path) {
            Ok(text) => {
                Ok(builtin.overlaid(LabelMap::parse(&text, &MapOrigin::File(path.to_owned()))?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(builtin),
            Err(source) => Err(LabelMapError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Parses one map file's text.
    pub fn parse(text: &str, origin: &MapOrigin) -> Result<LabelMap, LabelMapError> {
        let line_of = |offset: usize| 1 + text[..offset.min(text.len())].matches('\n').count();
        let file: MapFile = toml::from_str(text).map_err(|e| LabelMapError::Invalid {
            origin: origin.clone(),
            line: e.span().map_or(0, |s| line_of(s.start)),
            message: e.message().trim_end().to_owned(),
        })?;
        let table = |table: &'static str, entries: BTreeMap<String, Spanned<String>>| {
            entries
                .into_iter()
                .map(|(key, value)| {
                    let line = line_of(value.span().start);
                    for (what, id) in [("name", &key), ("value", value.get_ref())] {
                        if !crate::valid_identifier(id) {
                            return Err(LabelMapError::Invalid {
                                origin: origin.clone(),
                                line,
                                message: format!(
                                    "[{table}] {key}: {what} '{id}' is not an SELinux identifier (letters, digits, '_', '.', '-')"
                                ),
                            });
                        }
                    }
                    let entry = MapEntry {
                        table,
                        key: key.clone(),
                        value: value.into_inner(),
                        origin: origin.clone(),
                        line,
                    };
                    Ok((key, entry))
                })
                .collect::<Result<BTreeMap<_, _>, _>>()
        };
        let users = table("users", file.users)?;
        let roles = table("roles", file.roles)?;
        Ok(LabelMap { users, roles })
    }

    /// `self` with every entry of `over` replacing or adding to it.
    #[must_use]
    pub fn overlaid(mut self, over: LabelMap) -> LabelMap {
        self.users.extend(over.users);
        self.roles.extend(over.roles);
        self
    }

    /// The entry giving SELinux user `seuser`'s role.
    pub fn role_for(&self, seuser: &str) -> Option<&MapEntry> {
        self.users.get(seuser)
    }

    /// The entry giving role `role`'s worker type.
    pub fn worker_type_for(&self, role: &str) -> Option<&MapEntry> {
        self.roles.get(role)
    }
}
