//! The resource limits a user's worker and handlers start with, computed the
//! way pam_limits computes them from `/etc/security/limits.conf` and
//! `/etc/security/limits.d/*.conf` (Linux-PAM 1.5).
//!
//! pam_limits cannot do this itself: session modules run inside the root
//! monitor (see `crate::pam`), where `setrlimit` would change the monitor and
//! not the user's processes. So the monitor reads the same files, works out
//! the limits here, and hands them to the launcher (`ListenFdCommand::rlimit`),
//! which sets them as root just before it drops to the user's ids.
//!
//! # What starts out
//!
//! Every limit starts at the monitor's own value, except `core`, which starts
//! at soft 0, hard 0: a worker holds other users' call data in memory, and a
//! core file is the user's to read. A limits.conf entry overrides either
//! start, `core` included (set the hard limit too: a soft limit above the
//! hard one is cut to it, as pam_limits does).
//!
//! # The subset of limits.conf(5) applied
//!
//! * Files: `limits.conf`, then `limits.d/*.conf` (no dot files) in byte
//!   order of their names, as if concatenated. Each is read by root through an
//!   `O_NOFOLLOW` fd ([`files`]); a file that is not a regular file, not owned
//!   by root, writable by others (or by a group other than root's), or larger
//!   than [`files::MAX_FILE`] is skipped with a warning. So is `limits.d`
//!   itself when not root's. A missing file or directory is no limits.
//!   The vendor directory of Linux-PAM 1.6 (`/usr/lib/security`) is not read.
//! * Lines: `<domain> <type> <item> <value>`; `#` starts a comment. A line
//!   that does not parse is skipped with a warning naming `file:line`, as
//!   pam_limits does. srpcd is stricter than pam_limits' `strtoul` on values:
//!   `12abc` or a value with spaces is an error here, not 12.
//! * Domains: the user name; `@group` (the user's primary or any
//!   supplementary group); `@:gid` (any group); `@min:max`, `@min:` (the
//!   primary gid); `:uid`, `min:max`, `min:` (the uid, counted as a user
//!   entry, as pam_limits does); `*`. `%` and `%group` apply to `maxlogins`
//!   only and are ignored. As in Linux-PAM 1.5's code, `*` and group entries
//!   also apply to root.
//! * Precedence: a user entry beats a group entry beats `*`, separately for
//!   the soft and the hard half; among entries of the same kind the later
//!   wins. For type `-`, a soft half that loses also drops the hard half
//!   (pam_limits' order).
//! * `<domain> -` (two fields) matching the user: pam_limits then sets no
//!   limits at all; srpcd gives the starting values above.
//! * Types `soft`, `hard`, `-`. Items: `as core cpu data fsize locks memlock
//!   msgqueue nice nofile nproc rss rtprio rttime sigpending stack`, scaled
//!   as pam_limits scales them (KB for `as core data fsize memlock rss
//!   stack`, minutes for `cpu`, `nice` n as `20 - n` clamped to -20..19).
//!   `maxlogins`, `maxsyslogins`, `priority`, `nonewprivs` and `chroot` are
//!   not applied (skipped, logged at debug level).
//! * Values: numbers; `-1`, `-`, `unlimited`, `infinity` for no limit
//!   (`nofile` unlimited is `/proc/sys/fs/nr_open`, as pam_limits does).
//!
//! A limit the kernel refuses makes the launcher fail the start, as
//! pam_limits fails the session.

pub mod files;

use std::collections::HashMap;

use srpc_os::{Resource, Rlimit};

use crate::users::Account;

/// One configuration file's text, named for warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfFile {
    /// The path, as warnings name it.
    pub name: String,
    /// Its contents.
    pub text: String,
}

/// Who the limits are for.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    /// The user name.
    pub name: &'a str,
    /// The uid.
    pub uid: u32,
    /// The primary gid.
    pub gid: u32,
    /// Every gid of the user (primary and supplementary).
    pub groups: &'a [u32],
}

/// What the evaluation needs from the system.
pub struct Host<'a> {
    /// The starting value of a limit (the monitor's own).
    pub base: &'a dyn Fn(Resource) -> Option<Rlimit>,
    /// A group's gid by name.
    pub group_gid: &'a dyn Fn(&str) -> Option<u32>,
    /// `/proc/sys/fs/nr_open`, what `nofile unlimited` means.
    pub nr_open: Option<u64>,
}

/// The limits to set and what was wrong with the files.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Evaluated {
    /// Limits that differ from the starting values or are srpcd's defaults.
    pub limits: Vec<Rlimit>,
    /// Lines skipped, each naming `file:line`.
    pub warnings: Vec<String>,
}

/// The limits for `account`, from the host's files; problems are logged.
/// Reads a few small local files (and, for `@group` lines, looks the group
/// up): cheap enough for every worker and handler start.
pub fn for_account(account: &Account) -> Vec<Rlimit> {
    let (confs, mut warnings) = files::read_all(
        std::path::Path::new(files::LIMITS_CONF),
        std::path::Path::new(files::LIMITS_D),
    );
    let who = Who {
        name: &account.name,
        uid: account.uid,
        gid: account.gid,
        groups: &account.groups,
    };
    let base = |r: Resource| Rlimit::current(r).ok();
    let group_gid = |name: &str| {
        nix::unistd::Group::from_name(name)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
    };
    let host = Host {
        base: &base,
        group_gid: &group_gid,
        nr_open: files::nr_open(),
    };
    let evaluated = evaluate(&confs, &who, &host);
    warnings.extend(evaluated.warnings);
    for w in &warnings {
        tracing::warn!(user = account.name, "limits.conf: {w}");
    }
    evaluated.limits
}

/// Where an entry came from; a lower one wins (pam_limits' `LIMITS_DEF_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Src {
    User,
    Group,
    Default,
    None,
}

/// One limit while the files are read.
#[derive(Debug, Clone, Copy)]
struct Slot {
    soft: Option<u64>,
    hard: Option<u64>,
    src_soft: Src,
    src_hard: Src,
}

/// Items limits.conf knows that are not rlimits and srpcd does not apply.
const NOT_APPLIED: [&str; 5] = [
    "maxlogins",
    "maxsyslogins",
    "priority",
    "nonewprivs",
    "chroot",
];

/// The limits `who` gets from `files` (in reading order).
pub fn evaluate(files: &[ConfFile], who: &Who<'_>, host: &Host<'_>) -> Evaluated {
    let mut eval = Evaluation {
        who,
        host,
        slots: HashMap::new(),
        groups: HashMap::new(),
        warnings: Vec::new(),
    };
    let mut no_limits = false;
    'files: for file in files {
        for (n, line) in file.text.lines().enumerate() {
            let at = format!("{}:{}", file.name, n + 1);
            if eval.line(&at, line) == Flow::NoLimits {
                tracing::debug!("{at}: no limits for {}", who.name);
                no_limits = true;
                break 'files;
            }
        }
    }
    let mut limits = Vec::new();
    if !no_limits {
        let mut set: Vec<(Resource, Slot)> = eval
            .slots
            .iter()
            .filter(|(_, s)| s.src_soft != Src::None || s.src_hard != Src::None)
            .map(|(r, s)| (*r, *s))
            .collect();
        set.sort_by_key(|(r, _)| r.item());
        limits = set
            .into_iter()
            .map(|(resource, s)| Rlimit {
                resource,
                soft: clamp(s.soft, s.hard),
                hard: s.hard,
            })
            .collect();
    }
    if !limits.iter().any(|l| l.resource == Resource::Core) {
        limits.push(Rlimit {
            resource: Resource::Core,
            soft: Some(0),
            hard: Some(0),
        });
    }
    Evaluated {
        limits,
        warnings: eval.warnings,
    }
}

/// The soft limit, no higher than the hard one (`None` is unlimited).
fn clamp(soft: Option<u64>, hard: Option<u64>) -> Option<u64> {
    match (soft, hard) {
        (_, None) => soft,
        (None, Some(h)) => Some(h),
        (Some(s), Some(h)) => Some(s.min(h)),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Next,
    NoLimits,
}

/// A domain with a `:`: `[@%]min:max`, `[@%]min:`, `[@%]:id`.
#[derive(Debug, Clone, Copy)]
enum Range {
    None,
    One(u32),
    From(u32),
    Between(u32, u32),
}

impl Range {
    fn parse(domain: &str) -> Result<Range, ()> {
        let Some((lo, hi)) = domain.split_once(':') else {
            return Ok(Range::None);
        };
        let lo = lo.strip_prefix(['@', '%']).unwrap_or(lo);
        let id = |s: &str| {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(());
            }
            s.parse::<u32>().map_err(|_| ())
        };
        match (lo.is_empty(), hi.is_empty()) {
            (true, true) => Err(()),
            (true, false) => Ok(Range::One(id(hi)?)),
            (false, true) => Ok(Range::From(id(lo)?)),
            (false, false) => Ok(Range::Between(id(lo)?, id(hi)?)),
        }
    }

    fn holds(self, id: u32) -> bool {
        match self {
            Range::None => false,
            Range::One(x) => id == x,
            Range::From(lo) => id >= lo,
            Range::Between(lo, hi) => lo <= id && id <= hi,
        }
    }
}

struct Evaluation<'a> {
    who: &'a Who<'a>,
    host: &'a Host<'a>,
    slots: HashMap<Resource, Slot>,
    /// Group names looked up so far.
    groups: HashMap<String, Option<u32>>,
    warnings: Vec<String>,
}

impl Evaluation<'_> {
    fn warn(&mut self, at: &str, what: &str) {
        self.warnings.push(format!("{at}: {what} - skipped"));
    }

    fn line(&mut self, at: &str, line: &str) -> Flow {
        let line = line.split('#').next().unwrap_or("");
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(&domain) = fields.first() else {
            return Flow::Next;
        };
        let Ok(range) = Range::parse(domain) else {
            self.warn(at, &format!("invalid uid range {domain:?}"));
            return Flow::Next;
        };
        match fields[..] {
            [_, kind, item, value] => {
                let (kind, item, value) = (
                    kind.to_ascii_lowercase(),
                    item.to_ascii_lowercase(),
                    value.to_ascii_lowercase(),
                );
                // Checked whether or not it is the user's, so that a typo
                // shows at the first start, not when that user logs in.
                match parse_limit(&kind, &item, &value, self.host.nr_open) {
                    Ok(Some(limit)) => {
                        if let Some(src) = self.source(domain, range) {
                            self.apply(src, limit);
                        }
                    }
                    Ok(None) => tracing::debug!("{at}: {item:?} is not applied by srpcd"),
                    Err(e) => self.warn(at, &e),
                }
                Flow::Next
            }
            [_, "-"] => {
                if self.no_limits_matches(domain, range) {
                    Flow::NoLimits
                } else {
                    Flow::Next
                }
            }
            _ => {
                self.warn(
                    at,
                    &format!(
                        "invalid line {:?}: want <domain> <type> <item> <value>",
                        line.trim()
                    ),
                );
                Flow::Next
            }
        }
    }

    fn in_group_named(&mut self, name: &str) -> bool {
        let host = self.host;
        let gid = *self
            .groups
            .entry(name.to_owned())
            .or_insert_with(|| (host.group_gid)(name));
        gid.is_some_and(|g| self.who.groups.contains(&g) || g == self.who.gid)
    }

    /// Which kind of entry `domain` is for the user, if it is the user's.
    fn source(&mut self, domain: &str, range: Range) -> Option<Src> {
        if domain == self.who.name {
            return Some(Src::User);
        }
        if let Some(group) = domain.strip_prefix('@') {
            let member = match range {
                Range::None => self.in_group_named(group),
                Range::One(g) => self.who.gid == g || self.who.groups.contains(&g),
                r => r.holds(self.who.gid),
            };
            return member.then_some(Src::Group);
        }
        if domain.starts_with('%') {
            // maxlogins only: pam_limits ignores it for every rlimit.
            return None;
        }
        match range {
            Range::None => (domain == "*").then_some(Src::Default),
            r => r.holds(self.who.uid).then_some(Src::User),
        }
    }

    /// Whether a `<domain> -` line is the user's (pam_limits: name, any
    /// `@` form, uid ranges; not `*`).
    fn no_limits_matches(&mut self, domain: &str, range: Range) -> bool {
        match self.source(domain, range) {
            Some(Src::User | Src::Group) => true,
            Some(Src::Default | Src::None) | None => false,
        }
    }

    fn apply(&mut self, src: Src, limit: Parsed) {
        let start = self.host.base;
        let slot = self.slots.entry(limit.resource).or_insert_with(|| {
            let (soft, hard) = if limit.resource == Resource::Core {
                (Some(0), Some(0))
            } else {
                start(limit.resource).map_or((None, None), |l| (l.soft, l.hard))
            };
            Slot {
                soft,
                hard,
                src_soft: Src::None,
                src_hard: Src::None,
            }
        });
        if limit.soft {
            if slot.src_soft < src {
                return;
            }
            slot.soft = limit.value;
            slot.src_soft = src;
        }
        if limit.hard {
            if slot.src_hard < src {
                return;
            }
            slot.hard = limit.value;
            slot.src_hard = src;
        }
    }
}

/// A parsed `<type> <item> <value>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parsed {
    resource: Resource,
    soft: bool,
    hard: bool,
    value: Option<u64>,
}

/// `Ok(None)`: an item srpcd does not apply.
fn parse_limit(
    kind: &str,
    item: &str,
    value: &str,
    nr_open: Option<u64>,
) -> Result<Option<Parsed>, String> {
    if NOT_APPLIED.contains(&item) {
        return Ok(None);
    }
    let Some(resource) = Resource::from_item(item) else {
        return Err(format!("unknown limit item {item:?}"));
    };
    let (soft, hard) = match kind {
        "soft" => (true, false),
        "hard" => (false, true),
        "-" => (true, true),
        other => return Err(format!("unknown limit type {other:?}")),
    };
    let bad = || format!("wrong limit value {value:?} for {item}");
    let value = if resource == Resource::Nice {
        let n: i64 = value.parse().map_err(|_| bad())?;
        let n = n.clamp(-20, 19);
        Some(u64::try_from(20 - n).map_err(|_| bad())?)
    } else if matches!(value, "-1" | "-" | "unlimited" | "infinity") {
        match resource {
            Resource::Nofile => nr_open,
            _ => None,
        }
    } else {
        if !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = value.parse().map_err(|_| bad())?;
        let scale = match resource {
            Resource::Cpu => 60,
            Resource::As
            | Resource::Core
            | Resource::Data
            | Resource::Fsize
            | Resource::Memlock
            | Resource::Rss
            | Resource::Stack => 1024,
            _ => 1,
        };
        // Too large to scale is unlimited, as in pam_limits.
        n.checked_mul(scale).filter(|v| *v != u64::MAX)
    };
    Ok(Some(Parsed {
        resource,
        soft,
        hard,
        value,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE_GROUPS: [u32; 3] = [1000, 50, 60];

    fn alice() -> Who<'static> {
        Who {
            name: "alice",
            uid: 1000,
            gid: 1000,
            groups: &ALICE_GROUPS,
        }
    }

    #[allow(clippy::unnecessary_wraps)] // the shape `Host::base` takes
    fn base(r: Resource) -> Option<Rlimit> {
        Some(Rlimit {
            resource: r,
            soft: Some(1024),
            hard: Some(4096),
        })
    }

    fn gid(name: &str) -> Option<u32> {
        match name {
            "staff" => Some(50),
            "dev" => Some(60),
            "other" => Some(70),
            _ => None,
        }
    }

    fn run(who: &Who<'_>, files: &[(&str, &str)]) -> Evaluated {
        let files: Vec<ConfFile> = files
            .iter()
            .map(|(n, t)| ConfFile {
                name: (*n).to_owned(),
                text: (*t).to_owned(),
            })
            .collect();
        let host = Host {
            base: &base,
            group_gid: &gid,
            nr_open: Some(1_048_576),
        };
        evaluate(&files, who, &host)
    }

    fn get(e: &Evaluated, r: Resource) -> Option<(Option<u64>, Option<u64>)> {
        e.limits
            .iter()
            .find(|l| l.resource == r)
            .map(|l| (l.soft, l.hard))
    }

    #[test]
    fn nothing_configured_gives_core_zero_only() {
        let e = run(&alice(), &[("limits.conf", "# all commented\n\n")]);
        assert_eq!(
            e.limits,
            vec![Rlimit {
                resource: Resource::Core,
                soft: Some(0),
                hard: Some(0)
            }]
        );
        assert!(e.warnings.is_empty());
    }

    #[test]
    fn user_beats_group_beats_default_in_any_order() {
        let text = "alice hard nofile 300\n\
                    @staff hard nofile 200\n\
                    * hard nofile 100\n\
                    * soft nofile 50\n\
                    @dev soft nofile 60\n";
        let e = run(&alice(), &[("limits.conf", text)]);
        assert_eq!(get(&e, Resource::Nofile), Some((Some(60), Some(300))));
        // Someone else gets the default, and the base's untouched halves.
        let bob = Who {
            name: "bob",
            uid: 1001,
            gid: 1001,
            groups: &[1001],
        };
        let e = run(&bob, &[("limits.conf", text)]);
        assert_eq!(get(&e, Resource::Nofile), Some((Some(50), Some(100))));
    }

    #[test]
    fn later_lines_and_later_files_override_the_same_kind() {
        let e = run(
            &alice(),
            &[
                ("limits.conf", "alice - nproc 10\nalice soft nproc 5\n"),
                ("limits.d/a.conf", "alice hard nproc 20\n@staff - nproc 1\n"),
            ],
        );
        assert_eq!(get(&e, Resource::Nproc), Some((Some(5), Some(20))));
    }

    #[test]
    fn soft_above_hard_is_cut_and_only_soft_keeps_the_base_hard() {
        let e = run(&alice(), &[("f", "alice soft nofile 9000\n")]);
        assert_eq!(get(&e, Resource::Nofile), Some((Some(4096), Some(4096))));
        // core's start is 0/0: a soft limit alone cannot raise it.
        let e = run(&alice(), &[("f", "* soft core unlimited\n")]);
        assert_eq!(get(&e, Resource::Core), Some((Some(0), Some(0))));
        let e = run(&alice(), &[("f", "* - core unlimited\n")]);
        assert_eq!(get(&e, Resource::Core), Some((None, None)));
    }

    #[test]
    fn units_and_special_values_follow_pam_limits() {
        let text = "alice - core 2\nalice - cpu 3\nalice - nofile -1\n\
                    alice - stack infinity\nalice - nice -5\nalice - msgqueue 7\n\
                    alice - data 18446744073709551615\nalice - nice 100\n\
                    ALICE - nproc 1\n";
        let e = run(&alice(), &[("f", text)]);
        assert_eq!(get(&e, Resource::Core), Some((Some(2048), Some(2048))));
        assert_eq!(get(&e, Resource::Cpu), Some((Some(180), Some(180))));
        assert_eq!(
            get(&e, Resource::Nofile),
            Some((Some(1_048_576), Some(1_048_576)))
        );
        assert_eq!(get(&e, Resource::Stack), Some((None, None)));
        assert_eq!(get(&e, Resource::Nice), Some((Some(1), Some(1))));
        assert_eq!(get(&e, Resource::Msgqueue), Some((Some(7), Some(7))));
        assert_eq!(get(&e, Resource::Data), Some((None, None)));
        // User names are case-sensitive, as in pam_limits.
        assert_eq!(get(&e, Resource::Nproc), None);
    }

    #[test]
    fn group_and_uid_ranges() {
        let e = run(
            &alice(),
            &[(
                "f",
                "@:60 hard nproc 1\n@1000: hard locks 2\n@0:999 hard rtprio 3\n\
                 :1000 hard sigpending 4\n900:1100 hard msgqueue 5\n1001: hard fsize 6\n\
                 @other hard memlock 7\n@nosuch hard rss 8\n%staff hard as 9\n% hard data 10\n",
            )],
        );
        assert_eq!(get(&e, Resource::Nproc).map(|l| l.1), Some(Some(1)));
        assert_eq!(get(&e, Resource::Locks).map(|l| l.1), Some(Some(2)));
        assert_eq!(get(&e, Resource::Rtprio), None, "range: primary gid only");
        assert_eq!(get(&e, Resource::Sigpending).map(|l| l.1), Some(Some(4)));
        assert_eq!(get(&e, Resource::Msgqueue).map(|l| l.1), Some(Some(5)));
        assert_eq!(get(&e, Resource::Fsize), None);
        assert_eq!(get(&e, Resource::Memlock), None);
        assert_eq!(get(&e, Resource::Rss), None);
        assert_eq!(get(&e, Resource::As), None, "% is maxlogins only");
        assert_eq!(get(&e, Resource::Data), None);
        assert!(e.warnings.is_empty(), "{:?}", e.warnings);
    }

    #[test]
    fn uid_range_counts_as_a_user_entry() {
        let e = run(
            &alice(),
            &[(
                "f",
                "1000: hard nofile 10\nalice hard nofile 20\n@staff hard nofile 5\n",
            )],
        );
        assert_eq!(get(&e, Resource::Nofile).map(|l| l.1), Some(Some(20)));
    }

    #[test]
    fn a_no_limits_line_stops_everything_but_srpcd_defaults() {
        let files = [
            ("limits.conf", "* hard nofile 100\n@staff -\n"),
            ("limits.d/z.conf", "* hard nproc 5\n"),
        ];
        let e = run(&alice(), &files);
        assert_eq!(get(&e, Resource::Nofile), None);
        assert_eq!(get(&e, Resource::Nproc), None);
        assert_eq!(get(&e, Resource::Core), Some((Some(0), Some(0))));
        // `* -` is not a no-limits line for anyone.
        let e = run(&alice(), &[("f", "* -\n* hard nproc 5\n")]);
        assert_eq!(get(&e, Resource::Nproc).map(|l| l.1), Some(Some(5)));
    }

    #[test]
    fn bad_lines_are_skipped_with_file_and_line() {
        let text = "alice hard nofile 10\n\
                    alice hard\n\
                    alice hard nofile\n\
                    alice sometimes nofile 5\n\
                    alice hard nofiles 5\n\
                    alice hard nofile 12abc\n\
                    alice hard nofile 1 2\n\
                    alice - nice high\n\
                    1x:2 hard nproc 3\n\
                    : hard nproc 3\n\
                    alice hard nproc 99999999999999999999999\n\
                    alice - maxlogins 4\n\
                    alice - priority 1\n\
                    \u{0} \u{ff} \t\n";
        let e = run(&alice(), &[("limits.d/x.conf", text)]);
        assert_eq!(get(&e, Resource::Nofile).map(|l| l.1), Some(Some(10)));
        assert_eq!(get(&e, Resource::Nproc), None);
        let lines: Vec<&str> = e
            .warnings
            .iter()
            .map(|w| w.split(": ").next().unwrap())
            .collect();
        assert_eq!(
            lines,
            [
                "limits.d/x.conf:2",
                "limits.d/x.conf:3",
                "limits.d/x.conf:4",
                "limits.d/x.conf:5",
                "limits.d/x.conf:6",
                "limits.d/x.conf:7",
                "limits.d/x.conf:8",
                "limits.d/x.conf:9",
                "limits.d/x.conf:10",
                "limits.d/x.conf:11",
                "limits.d/x.conf:14",
            ],
            "{:#?}",
            e.warnings
        );
        assert!(e.warnings.iter().all(|w| w.ends_with("- skipped")));
    }

    #[test]
    fn comments_and_blanks_are_ignored() {
        let e = run(
            &alice(),
            &[(
                "f",
                "  # x\n\t\nalice hard nofile 10 # ten\nalice#hard nofile 5\n",
            )],
        );
        assert_eq!(get(&e, Resource::Nofile).map(|l| l.1), Some(Some(10)));
        assert_eq!(e.warnings.len(), 1, "{:?}", e.warnings);
    }
}
