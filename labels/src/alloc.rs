//! Per-user MCS levels, chosen as sVirt chooses them for virtual machines.
//!
//! MCS separates two users only if neither's category set dominates the other's, and the
//! stock mappings give everyone `s0-s0:c0.c1023`. So srpcd gives each *active* user (one
//! with at least one session) a single level of their own inside their seusers range:
//!
//! - The level has the range's low sensitivity and the low level's categories (it must
//!   dominate the low level), plus two more categories from the high level that the low
//!   level does not have: a pair `{a, b}`, `a < b`, as sVirt's `s0:cA,cB`.
//! - Which pair: number the pairs of the free categories (ascending) `0..N`, ordered by
//!   their larger then their smaller category (`c0,c1`, `c0,c2`, `c1,c2`, `c0,c3`, ...).
//!   Start at `splitmix64(uid) mod N` and take the first pair, probing upwards with
//!   wrap-around, whose level conflicts with no other active user's. The same uid
//!   therefore gets the same pair whenever that pair is free, on every host.
//! - With exactly one free category the level is the low level plus that category; with
//!   none it is the low level itself (a fixed range such as `s0:c5`), if that has
//!   categories. A level without categories (`s0`) is never a level of one's own: every
//!   other level dominates it.
//! - Conflict: level `L` conflicts with another user's active level `M` if `M` dominates
//!   `L` (they could reach ours), or if `L` dominates `M` and `M` is not shared (we could
//!   reach theirs). A user on a shared level has given up that protection.
//! - Stable: a second `allocate` for an active user returns the same allocation (if it is
//!   still inside the range given); `release` frees it. srpcd releases when the user's last
//!   session ends.
//!
//! Where no level of one's own exists the answer is an error naming the `semanage` command
//! that fixes it, unless the caller allows a shared level: then the user gets the range's
//! low level, flagged as shared, with the names of the active users whose levels dominate
//! it (for srpcd's loud log line). Sharing exposes only the user who shares: a shared level
//! that would dominate another user's own level (a second user fixed at `s0:c5` while the
//! first holds it) is refused even when sharing is allowed.

use std::collections::BTreeMap;
use std::fmt;

use crate::level::{Level, Range};
use crate::seusers::LoginName;

/// The range srpcd suggests in its fixes: all MCS categories.
pub const SUGGESTED_RANGE: &str = "s0-s0:c0.c1023";

/// A user's level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The level the user's worker, handlers and clone carry.
    pub level: Level,
    /// True when the level is not the user's own (allowed by `allow_shared`); srpcd logs
    /// it loudly at every such login.
    pub shared: bool,
    /// For a shared level: the active users whose levels it conflicts with, at the time it
    /// was given. Empty for a level of one's own.
    pub shares_with: Vec<String>,
}

/// What `allocate` needs to know about a login.
#[derive(Debug, Clone, Copy)]
pub struct LevelRequest<'a> {
    /// The Linux user name (the allocation's key).
    pub user: &'a str,
    /// The uid, which seeds the choice of pair.
    pub uid: u32,
    /// The user's range from seusers.
    pub range: &'a Range,
    /// The seusers line's name (for the fix command).
    pub login: &'a LoginName,
    /// The SELinux user (for the fix command).
    pub seuser: &'a str,
    /// Whether a shared level is acceptable when no level of one's own exists.
    pub allow_shared: bool,
}

/// Why no level was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// The range has no categories to give.
    #[error(
        "user {user}'s range {range} (SELinux user {seuser}) holds no categories, so {user} cannot have an MCS level of their own; {fix}"
    )]
    NoCategories {
        /// The Linux user.
        user: String,
        /// The SELinux user.
        seuser: String,
        /// The range.
        range: String,
        /// The fix, as a sentence.
        fix: Box<Fix>,
    },
    /// Every candidate level conflicts with another active user's.
    #[error(
        "every level of user {user}'s range {range} (SELinux user {seuser}) conflicts with an active user's level ({holders}); {fix}"
    )]
    AllTaken {
        /// The Linux user.
        user: String,
        /// The SELinux user.
        seuser: String,
        /// The range.
        range: String,
        /// The conflicting users and levels, e.g. `bob at s0:c5`.
        holders: String,
        /// The fix.
        fix: Box<Fix>,
    },
    /// A shared level would reach an active user's own level (dominate it), so even with
    /// sharing allowed the login is refused: sharing may expose the user who shares, never
    /// someone else.
    #[error(
        "user {user} has no level of their own, and the shared level {level} would reach the own level of {holders}; {}", fix.without_sharing()
    )]
    SharedWouldReach {
        /// The Linux user.
        user: String,
        /// The shared level.
        level: String,
        /// The users it would reach, e.g. `bob at s0:c5`.
        holders: String,
        /// The fix.
        fix: Box<Fix>,
    },
    /// The user is active at a level the range no longer contains.
    #[error(
        "user {user} is active at level {level}, which the range {range} no longer contains; end {user}'s sessions to apply the new range"
    )]
    ActiveOutsideRange {
        /// The Linux user.
        user: String,
        /// The active level.
        level: String,
        /// The new range.
        range: String,
    },
    /// The user holds a shared level from an earlier login and shared levels are no longer
    /// allowed.
    #[error(
        "user {user} is active at the shared level {level} from an earlier login, and shared levels are not allowed now; end {user}'s sessions"
    )]
    SharedNoLongerAllowed {
        /// The Linux user.
        user: String,
        /// The shared level.
        level: String,
    },
}

/// The fix for a user without a level of their own, printed as a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fix {
    /// The `semanage login` command that gives the user a range with categories.
    pub login_command: String,
    /// The `semanage user` command that widens the SELinux user's own range, needed first
    /// when that range is narrower (Debian's `user_u` has `s0` only).
    pub user_command: String,
    /// The SELinux user.
    pub seuser: String,
}

impl Fix {
    fn for_login(user: &str, login: &LoginName, seuser: &str) -> Fix {
        let login_cmd = match login {
            LoginName::User(_) => format!("semanage login -m -r {SUGGESTED_RANGE} {user}"),
            // A %group or __default__ line: give the user a line of their own rather than
            // widening everyone's.
            LoginName::Group(_) | LoginName::Default => {
                format!("semanage login -a -s {seuser} -r {SUGGESTED_RANGE} {user}")
            }
        };
        Fix {
            login_command: login_cmd,
            user_command: format!("semanage user -m -r {SUGGESTED_RANGE} {seuser}"),
            seuser: seuser.to_owned(),
        }
    }
}

impl Fix {
    /// The fix without the shared-level alternative.
    fn without_sharing(&self) -> String {
        format!(
            "fix: `{}` (first `{}` if {}'s own range is narrower)",
            self.login_command, self.user_command, self.seuser
        )
    }
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fix: `{}` (first `{}` if {}'s own range is narrower), or set selinux.allow_shared_level = true to let such users share a level",
            self.login_command, self.user_command, self.seuser
        )
    }
}

/// The active users' levels. Not internally locked: srpcd keeps it behind its own mutex.
/// `Clone` lets `explain-user` resolve on a copy without holding a level.
#[derive(Debug, Clone, Default)]
pub struct LevelAllocator {
    active: BTreeMap<String, Allocation>,
}

impl LevelAllocator {
    /// No active users.
    pub fn new() -> LevelAllocator {
        LevelAllocator::default()
    }

    /// The user's level: the one they hold if active, else a new one (see the module doc).
    pub fn allocate(&mut self, req: &LevelRequest<'_>) -> Result<Allocation, AllocError> {
        if let Some(held) = self.active.get(req.user) {
            if !req.range.contains(&held.level) {
                return Err(AllocError::ActiveOutsideRange {
                    user: req.user.to_owned(),
                    level: held.level.to_string(),
                    range: req.range.to_string(),
                });
            }
            if held.shared && !req.allow_shared {
                return Err(AllocError::SharedNoLongerAllowed {
                    user: req.user.to_owned(),
                    level: held.level.to_string(),
                });
            }
            return Ok(held.clone());
        }
        let allocation = match self.own_level(req) {
            Ok(level) => Allocation {
                level,
                shared: false,
                shares_with: Vec::new(),
            },
            Err(_) if req.allow_shared => {
                let level = req.range.low().clone();
                // Sharing exposes this user, never someone with a level of their own.
                let reached: Vec<String> = self
                    .active
                    .iter()
                    .filter(|(_, a)| !a.shared && level.dominates(&a.level))
                    .map(|(u, a)| format!("{u} at {}", a.level))
                    .collect();
                if !reached.is_empty() {
                    return Err(AllocError::SharedWouldReach {
                        user: req.user.to_owned(),
                        level: level.to_string(),
                        holders: reached.join(", "),
                        fix: Box::new(Fix::for_login(req.user, req.login, req.seuser)),
                    });
                }
                let shares_with = self.conflicts(&level).map(|(u, _)| u.to_owned()).collect();
                Allocation {
                    level,
                    shared: true,
                    shares_with,
                }
            }
            Err(e) => return Err(e),
        };
        self.active.insert(req.user.to_owned(), allocation.clone());
        Ok(allocation)
    }

    /// Frees the user's level; returns what they held.
    pub fn release(&mut self, user: &str) -> Option<Allocation> {
        self.active.remove(user)
    }

    /// The level the user holds, if active.
    pub fn current(&self, user: &str) -> Option<&Allocation> {
        self.active.get(user)
    }

    /// The active users and their levels, by user name.
    pub fn active(&self) -> impl Iterator<Item = (&str, &Allocation)> {
        self.active.iter().map(|(u, a)| (u.as_str(), a))
    }

    fn own_level(&self, req: &LevelRequest<'_>) -> Result<Level, AllocError> {
        let low = req.range.low();
        let free = req.range.high().categories.difference(&low.categories);
        let with = |extra: &[u32]| {
            let mut level = low.clone();
            for c in extra {
                level.categories.insert(*c);
            }
            level
        };
        let fix = || Box::new(Fix::for_login(req.user, req.login, req.seuser));
        let candidate = match free.len() {
            0 if low.categories.is_empty() => {
                return Err(AllocError::NoCategories {
                    user: req.user.to_owned(),
                    seuser: req.seuser.to_owned(),
                    range: req.range.to_string(),
                    fix: fix(),
                });
            }
            0 => self.free(low.clone()),
            1 => self.free(with(&free)),
            n => {
                let pairs = (n as u64) * (n as u64 - 1) / 2;
                let start = splitmix64(u64::from(req.uid)) % pairs;
                (0..pairs).find_map(|k| {
                    let (i, j) = nth_pair((start + k) % pairs);
                    self.free(with(&[free[i], free[j]]))
                })
            }
        };
        candidate.ok_or_else(|| {
            let mut holders: Vec<String> = self
                .active
                .iter()
                .filter(|(_, a)| {
                    req.range.high().dominates(&a.level) || a.level.dominates(req.range.low())
                })
                .map(|(u, a)| format!("{u} at {}", a.level))
                .collect();
            holders.truncate(8);
            AllocError::AllTaken {
                user: req.user.to_owned(),
                seuser: req.seuser.to_owned(),
                range: req.range.to_string(),
                holders: holders.join(", "),
                fix: fix(),
            }
        })
    }

    /// `Some(level)` if it conflicts with no active user's level.
    fn free(&self, level: Level) -> Option<Level> {
        let taken = self.conflicts(&level).next().is_some();
        (!taken).then_some(level)
    }

    fn conflicts<'s>(
        &'s self,
        level: &'s Level,
    ) -> impl Iterator<Item = (&'s str, &'s Allocation)> {
        self.active
            .iter()
            .filter(move |(_, a)| {
                a.level.dominates(level) || (!a.shared && level.dominates(&a.level))
            })
            .map(|(u, a)| (u.as_str(), a))
    }
}

/// The `idx`-th pair `(i, j)`, `i < j`, in the order `(0,1) (0,2) (1,2) (0,3) ...`:
/// pair `(i, j)` has index `j(j-1)/2 + i`.
fn nth_pair(idx: u64) -> (usize, usize) {
    // j is the largest with j(j-1)/2 <= idx: floor((1 + sqrt(1 + 8 idx)) / 2), which is
    // ceil(isqrt(1 + 8 idx) / 2) in exact integer arithmetic.
    let j = (1 + 8 * idx).isqrt().div_ceil(2);
    let i = idx - j * (j - 1) / 2;
    #[allow(clippy::cast_possible_truncation)]
    (i as usize, j as usize)
}

/// SplitMix64's finaliser: a fixed, well-mixed function of the uid (so neighbouring uids
/// land far apart), identical on every host and release.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nth_pair_enumerates_every_pair_once_in_order() {
        let mut expected = Vec::new();
        for j in 1..60usize {
            for i in 0..j {
                expected.push((i, j));
            }
        }
        let got: Vec<_> = (0..expected.len() as u64).map(nth_pair).collect();
        assert_eq!(got, expected);
        // The largest MCS index: c1022,c1023.
        assert_eq!(nth_pair(1024 * 1023 / 2 - 1), (1022, 1023));
    }

    #[test]
    fn splitmix64_is_the_published_function() {
        // First outputs of the reference SplitMix64 generator seeded with 0 are
        // splitmix64(0), splitmix64(0x9e3779b97f4a7c15), ...
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
    }
}
