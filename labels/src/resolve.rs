//! From a logged-in Linux user to the worker's full context, with the reasons.
//!
//! seusers line → SELinux user and range; label map → role, then worker type; allocator →
//! level; then `<seuser>:<role>:<worker type>:<level>`, which the loaded policy must
//! accept. Every step that finds nothing is an error naming user, SELinux user, role, level
//! and context as far as they were known, with the fix; nothing falls back to a default
//! context. A level given for a login that then fails is released again, so a refused
//! login holds nothing.

use std::fmt;

use crate::alloc::{AllocError, LevelAllocator, LevelRequest, SUGGESTED_RANGE};
use crate::label_map::{LabelMap, MapEntry, ADMIN_LABEL_MAP};
use crate::level::{Level, Range};
use crate::policy::Policy;
use crate::seusers::{LoginName, SeuserEntry, Seusers};

/// Who logged in.
#[derive(Debug, Clone, Copy)]
pub struct UserIdentity<'a> {
    /// The Linux user name.
    pub name: &'a str,
    /// The uid.
    pub uid: u32,
    /// The names of the user's groups, primary and supplementary (for `%group` lines).
    pub groups: &'a [String],
}

/// What the answer is computed from.
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    /// The parsed seusers file.
    pub seusers: &'a Seusers,
    /// The label map (built-in plus the admin's file).
    pub label_map: &'a LabelMap,
    /// The loaded policy.
    pub policy: &'a dyn Policy,
    /// srpcd's `selinux.allow_shared_level`.
    pub allow_shared_level: bool,
}

/// A user's worker context and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The Linux user.
    pub user: String,
    /// The SELinux user.
    pub seuser: String,
    /// The role.
    pub role: String,
    /// The worker type.
    pub worker_type: String,
    /// The level (the user's own unless `shared_level`).
    pub level: Level,
    /// The level is shared (allowed by `allow_shared_level`): log it loudly.
    pub shared_level: bool,
    /// For a shared level, the active users it conflicts with.
    pub shares_with: Vec<String>,
    /// `<seuser>:<role>:<worker type>:<level>`, accepted by the policy.
    pub context: String,
    /// The seusers line that matched, with the file.
    pub seusers_line: String,
    /// The label map entry that gave the role.
    pub role_entry: MapEntry,
    /// The label map entry that gave the worker type.
    pub type_entry: MapEntry,
}

impl fmt::Display for Resolved {
    /// The `explain-user` text: the context, then one line per decision.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "user {}: worker context {}", self.user, self.context)?;
        writeln!(f, "  SELinux user {}: {}", self.seuser, self.seusers_line)?;
        writeln!(f, "  role {}: {}", self.role, self.role_entry)?;
        writeln!(f, "  worker type {}: {}", self.worker_type, self.type_entry)?;
        if self.shared_level {
            write!(
                f,
                "  level {}: SHARED (no level of the user's own; allowed by selinux.allow_shared_level)",
                self.level
            )?;
            if !self.shares_with.is_empty() {
                write!(f, ", shared with {}", self.shares_with.join(", "))?;
            }
            Ok(())
        } else {
            write!(
                f,
                "  level {}: the user's own (no other active user's level dominates it or is dominated by it)",
                self.level
            )
        }
    }
}

/// A login that gets no context. Display names user, SELinux user, role, level and the
/// context tried (`-` where not reached), then the cause and its fix.
#[derive(Debug, thiserror::Error)]
#[error(
    "no SELinux context for user {} (SELinux user {}, role {}, level {}, context tried {}): {}",
    .0.user, dash(.0.known.seuser.as_deref()), dash(.0.known.role.as_deref()),
    dash(.0.known.level.as_deref()), dash(.0.known.context.as_deref()), .0.kind
)]
pub struct ResolveError(Box<ErrorParts>);

#[derive(Debug)]
struct ErrorParts {
    user: String,
    known: Known,
    kind: ResolveErrorKind,
}

impl ResolveError {
    /// The Linux user.
    pub fn user(&self) -> &str {
        &self.0.user
    }

    /// The SELinux user, if the seusers lookup got that far.
    pub fn seuser(&self) -> Option<&str> {
        self.0.known.seuser.as_deref()
    }

    /// The role, if known.
    pub fn role(&self) -> Option<&str> {
        self.0.known.role.as_deref()
    }

    /// The level, if one was given.
    pub fn level(&self) -> Option<&str> {
        self.0.known.level.as_deref()
    }

    /// The context tried, if one was built.
    pub fn context(&self) -> Option<&str> {
        self.0.known.context.as_deref()
    }

    /// The cause.
    pub fn kind(&self) -> &ResolveErrorKind {
        &self.0.kind
    }
}

#[derive(Debug, Clone, Default)]
struct Known {
    seuser: Option<String>,
    role: Option<String>,
    level: Option<String>,
    context: Option<String>,
}

fn dash(s: Option<&str>) -> &str {
    s.unwrap_or("-")
}

/// Why a login gets no context.
#[derive(Debug, thiserror::Error)]
pub enum ResolveErrorKind {
    /// No seusers line applies.
    #[error(
        "no line of {seusers} applies to {user} and it has no __default__ line; fix: `semanage login -a -s <SELinux user> -r {SUGGESTED_RANGE} {user}`"
    )]
    NoSeusersLine {
        /// The Linux user.
        user: String,
        /// The seusers file.
        seusers: String,
    },
    /// The seusers line has no range.
    #[error("{line} gives no MCS range; fix: `semanage login -m -r {SUGGESTED_RANGE} {login}`")]
    NoRange {
        /// The line, with file and number.
        line: String,
        /// The line's name, for the command.
        login: String,
    },
    /// The label map has no role for the SELinux user.
    #[error(
        "the label map has no role for SELinux user {seuser} (from {line}); fix: add `{seuser} = \"<role>\"` under [users] in {ADMIN_LABEL_MAP}"
    )]
    UnmappedSeuser {
        /// The SELinux user.
        seuser: String,
        /// The seusers line that gave it.
        line: String,
    },
    /// The label map has no worker type for the role.
    #[error(
        "the label map has no worker type for role {role} (from {entry}); fix: add `{role} = \"<worker type>\"` under [roles] in {ADMIN_LABEL_MAP}"
    )]
    UnmappedRole {
        /// The role.
        role: String,
        /// The entry that gave the role.
        entry: MapEntry,
    },
    /// No level.
    #[error(transparent)]
    Level(AllocError),
    /// The policy rejects the context.
    #[error(
        "the loaded policy rejects the context; check that the srpcd policy module is loaded (`semodule -l | grep srpcd`), that SELinux user {seuser} may hold role {role} (`semanage user -l`), and that the module lets role {role} hold type {worker_type}"
    )]
    Rejected {
        /// The SELinux user.
        seuser: String,
        /// The role.
        role: String,
        /// The worker type.
        worker_type: String,
    },
    /// The policy could not be asked.
    #[error("cannot ask the loaded policy whether the context is valid: {0}")]
    PolicyUnavailable(std::io::Error),
}

/// The worker context for `user`, holding a level in `levels` on success (see the module
/// doc). For a dry run (`explain-user` for a user who is not logged in), call it on a
/// clone of the allocator.
pub fn resolve(
    user: &UserIdentity<'_>,
    sources: &Sources<'_>,
    levels: &mut LevelAllocator,
) -> Result<Resolved, ResolveError> {
    // What is known so far, for the error message.
    let mut known = Known::default();
    let fail = |known: &Known, kind| {
        ResolveError(Box::new(ErrorParts {
            user: user.name.to_owned(),
            known: known.clone(),
            kind,
        }))
    };
    let id = identity(user, sources, &mut known).map_err(|kind| fail(&known, kind))?;

    let was_active = levels.current(user.name).is_some();
    let allocation = levels
        .allocate(&LevelRequest {
            user: user.name,
            uid: user.uid,
            range: id.range,
            login: id.login,
            seuser: id.seuser,
            allow_shared: sources.allow_shared_level,
        })
        .map_err(|e| fail(&known, ResolveErrorKind::Level(e)))?;
    let level = allocation.level.clone();
    let context = format!(
        "{}:{}:{}:{level}",
        id.seuser, id.role_entry.value, id.type_entry.value
    );
    known.level = Some(level.to_string());
    known.context = Some(context.clone());

    let refused = match sources.policy.check_context(&context) {
        Ok(true) => None,
        Ok(false) => Some(ResolveErrorKind::Rejected {
            seuser: id.seuser.to_owned(),
            role: id.role_entry.value.clone(),
            worker_type: id.type_entry.value.clone(),
        }),
        Err(e) => Some(ResolveErrorKind::PolicyUnavailable(e)),
    };
    if let Some(kind) = refused {
        if !was_active {
            levels.release(user.name);
        }
        return Err(fail(&known, kind));
    }
    Ok(Resolved {
        user: user.name.to_owned(),
        seuser: id.seuser.to_owned(),
        role: id.role_entry.value.clone(),
        worker_type: id.type_entry.value.clone(),
        level,
        shared_level: allocation.shared,
        shares_with: allocation.shares_with,
        context,
        seusers_line: id.seusers_line,
        role_entry: id.role_entry.clone(),
        type_entry: id.type_entry.clone(),
    })
}

/// The seusers line and label map entries for a user.
struct Identity<'s> {
    seusers_line: String,
    login: &'s LoginName,
    seuser: &'s str,
    range: &'s Range,
    role_entry: &'s MapEntry,
    type_entry: &'s MapEntry,
}

fn identity<'s>(
    user: &UserIdentity<'_>,
    sources: &Sources<'s>,
    known: &mut Known,
) -> Result<Identity<'s>, ResolveErrorKind> {
    let matched = sources
        .seusers
        .lookup(user.name, user.groups)
        .ok_or_else(|| ResolveErrorKind::NoSeusersLine {
            user: user.name.to_owned(),
            seusers: sources.seusers.path().display().to_string(),
        })?;
    let seusers_line = matched.to_string();
    let SeuserEntry {
        login,
        seuser,
        range,
        ..
    } = matched.entry;
    known.seuser = Some(seuser.clone());
    let Some(range) = range else {
        let login = match login {
            LoginName::User(_) => login.to_string(),
            LoginName::Group(_) | LoginName::Default => user.name.to_owned(),
        };
        return Err(ResolveErrorKind::NoRange {
            line: seusers_line,
            login,
        });
    };
    let Some(role_entry) = sources.label_map.role_for(seuser) else {
        return Err(ResolveErrorKind::UnmappedSeuser {
            seuser: seuser.clone(),
            line: seusers_line,
        });
    };
    known.role = Some(role_entry.value.clone());
    let Some(type_entry) = sources.label_map.worker_type_for(&role_entry.value) else {
        return Err(ResolveErrorKind::UnmappedRole {
            role: role_entry.value.clone(),
            entry: role_entry.clone(),
        });
    };
    Ok(Identity {
        seusers_line,
        login,
        seuser,
        range,
        role_entry,
        type_entry,
    })
}
