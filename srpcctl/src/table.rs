//! Aligned text tables for people (`--json` is for scripts): a header row,
//! then one row per item, each column as wide as its widest cell, two spaces
//! between columns, no trailing spaces.

use std::fmt::Write as _;

/// Renders `header` and `rows` as aligned lines.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let head: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&head).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `"<key>:"` padded, then the value: for one item's fields.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for (k, v) in pairs {
        let key = format!("{k}:");
        let _ = writeln!(out, "{key:width$} {v}");
    }
    out
}

/// A duration in seconds for people: `45s`, `12m03s`, `3h07m`, `2d04h`.
pub fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::{duration, fields, render};

    #[test]
    fn columns_line_up_under_their_headers() {
        let rows = vec![
            vec!["1".to_owned(), "alice".to_owned(), "/".to_owned()],
            vec!["12".to_owned(), "bo".to_owned(), "/pub".to_owned()],
        ];
        assert_eq!(
            render(&["ID", "USER", "ANAME"], &rows),
            "ID  USER   ANAME\n1   alice  /\n12  bo     /pub\n"
        );
        assert_eq!(render(&["ID", "USER"], &[]), "ID  USER\n");
    }

    #[test]
    fn fields_and_durations_read_as_people_expect() {
        assert_eq!(
            fields(&[("version", "0.1.0".into()), ("uptime", "5s".into())]),
            "version: 0.1.0\nuptime:  5s\n"
        );
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(723), "12m03s");
        assert_eq!(duration(3 * 3600 + 7 * 60), "3h07m");
        assert_eq!(duration(2 * 86_400 + 4 * 3600), "2d04h");
    }
}
