//! How stats and listings are printed. Everything the server names is escaped,
//! so a hostile name cannot move the cursor, rewrite the screen or split a line.

use std::borrow::Cow;
use std::fmt::Write;

use srpc::proto::{QidType, Stat};

/// `text` with control characters, Unicode direction overrides and `\` written as
/// Rust escapes (`\n`, `\u{1b}`, `\\`), so it is one line that shows what it is.
pub fn printable(text: &str) -> Cow<'_, str> {
    fn needs_escape(c: char) -> bool {
        c.is_control()
            || c == '\\'
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The permission bits as `ls` writes them (`rwxr-x---`, with `s`/`S` and `t`/`T`
/// for set-id and sticky bits).
pub fn permissions(mode: u32) -> String {
    let bit = |mask: u32, c: char| if mode & mask != 0 { c } else { '-' };
    let exec = |mask: u32, special: u32, set: char| match (mode & mask != 0, mode & special != 0) {
        (true, true) => set,
        (false, true) => set.to_ascii_uppercase(),
        (true, false) => 'x',
        (false, false) => '-',
    };
    [
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        exec(0o100, 0o4000, 's'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        exec(0o010, 0o2000, 's'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        exec(0o001, 0o1000, 't'),
    ]
    .iter()
    .collect()
}

/// Seconds since the epoch as ISO 8601 in UTC (`2023-11-14T22:13:20Z`).
pub fn utc(secs: i64) -> String {
    let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to a civil date (proleptic Gregorian), H. Hinnant's `civil_from_days`;
    // an i64 of seconds stays far from overflow in every step.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

fn kind_letter(kind: QidType) -> char {
    match kind {
        QidType::Dir => 'd',
        QidType::Endpoint => 'e',
        QidType::Auth => 'a',
    }
}

/// A directory listing, one line per entry as `ls -l` lays it out: type and
/// permissions, owner, group, the SELinux label when the server reports labels
/// (`?` for an entry without one), modification time, name.
pub fn listing(entries: &[Stat]) -> String {
    struct Row<'a> {
        mode: String,
        owner: Cow<'a, str>,
        group: Cow<'a, str>,
        label: Cow<'a, str>,
        mtime: String,
        name: Cow<'a, str>,
    }
    let rows: Vec<Row> = entries
        .iter()
        .map(|e| Row {
            mode: format!("{}{}", kind_letter(e.qid.kind), permissions(e.mode)),
            owner: printable(&e.owner),
            group: printable(&e.group),
            label: e.label.as_deref().map_or(Cow::Borrowed("?"), printable),
            mtime: utc(e.mtime),
            name: printable(&e.name),
        })
        .collect();
    let width = |column: &dyn Fn(&Row) -> usize| rows.iter().map(column).max().unwrap_or(0);
    let owner_w = width(&|r| r.owner.chars().count());
    let group_w = width(&|r| r.group.chars().count());
    let label_w = width(&|r| r.label.chars().count());
    let labels = entries.iter().any(|e| e.label.is_some());
    let mut out = String::new();
    for r in &rows {
        let _ = write!(out, "{} {:owner_w$} {:group_w$} ", r.mode, r.owner, r.group);
        if labels {
            let _ = write!(out, "{:label_w$} ", r.label);
        }
        let _ = writeln!(out, "{} {}", r.mtime, r.name);
    }
    out
}

/// A stat as `key: value` lines.
pub fn stat(s: &Stat) -> String {
    let mut out = format!(
        "name: {}\ntype: {}\nmode: {:04o} ({})\nuid: {}\ngid: {}\nowner: {}\ngroup: {}\n\
         mtime: {}\nqid.path: {}\nqid.version: {}\n",
        printable(&s.name),
        s.qid.kind.as_str(),
        s.mode,
        permissions(s.mode),
        s.uid,
        s.gid,
        printable(&s.owner),
        printable(&s.group),
        utc(s.mtime),
        s.qid.path,
        s.qid.version,
    );
    if let Some(label) = &s.label {
        let _ = writeln!(out, "label: {}", printable(label));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use srpc::proto::Qid;

    fn entry(name: &str, kind: QidType, mode: u32, owner: &str, label: Option<&str>) -> Stat {
        Stat {
            qid: Qid {
                kind,
                path: 42,
                version: 7,
            },
            name: name.into(),
            mode,
            uid: 1000,
            gid: 100,
            owner: owner.into(),
            group: "users".into(),
            mtime: 1_700_000_000,
            label: label.map(str::to_owned),
        }
    }

    #[test]
    fn times_are_utc_iso_8601() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(-1), "1969-12-31T23:59:59Z");
        assert_eq!(utc(253_402_300_799), "9999-12-31T23:59:59Z");
        // The extremes print something rather than overflow.
        assert!(utc(i64::MAX).ends_with('Z'));
        assert!(utc(i64::MIN).ends_with('Z'));
    }

    #[test]
    fn permissions_read_like_ls() {
        assert_eq!(permissions(0o755), "rwxr-xr-x");
        assert_eq!(permissions(0o640), "rw-r-----");
        assert_eq!(permissions(0o4755), "rwsr-xr-x");
        assert_eq!(permissions(0o2640), "rw-r-S---");
        assert_eq!(permissions(0o1777), "rwxrwxrwt");
        assert_eq!(permissions(0o1000), "--------T");
    }

    #[test]
    fn server_text_cannot_break_lines_or_drive_the_terminal() {
        assert!(matches!(printable("plain name"), Cow::Borrowed(_)));
        assert_eq!(printable("a\nb"), "a\\nb");
        assert_eq!(printable("\u{1b}[2J"), "\\u{1b}[2J");
        assert_eq!(printable("back\\slash"), "back\\\\slash");
        assert_eq!(printable("evil\u{202e}txt"), "evil\\u{202e}txt");
        assert_eq!(printable("naïve"), "naïve");
    }

    #[test]
    fn listings_align_columns_and_show_labels_only_when_there_are_any() {
        let plain = [
            entry("echo", QidType::Endpoint, 0o750, "alice", None),
            entry("sub", QidType::Dir, 0o755, "root", None),
        ];
        assert_eq!(
            listing(&plain),
            "erwxr-x--- alice users 2023-11-14T22:13:20Z echo\n\
             drwxr-xr-x root  users 2023-11-14T22:13:20Z sub\n"
        );
        let labelled = [
            entry(
                "a",
                QidType::Endpoint,
                0o700,
                "u",
                Some("system_u:object_r:x_t:s0"),
            ),
            entry("b\nc", QidType::Endpoint, 0o700, "u", None),
        ];
        assert_eq!(
            listing(&labelled),
            "erwx------ u users system_u:object_r:x_t:s0 2023-11-14T22:13:20Z a\n\
             erwx------ u users ?                        2023-11-14T22:13:20Z b\\nc\n"
        );
        assert_eq!(listing(&[]), "");
    }

    #[test]
    fn stats_are_key_value_lines() {
        let s = entry("echo", QidType::Endpoint, 0o750, "alice", Some("l"));
        assert_eq!(
            stat(&s),
            "name: echo\ntype: endpoint\nmode: 0750 (rwxr-x---)\nuid: 1000\ngid: 100\n\
             owner: alice\ngroup: users\nmtime: 2023-11-14T22:13:20Z\nqid.path: 42\n\
             qid.version: 7\nlabel: l\n"
        );
        let s = entry("/", QidType::Dir, 0o755, "root", None);
        assert!(!stat(&s).contains("label"));
    }
}
