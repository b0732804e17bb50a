//! srpcd.toml(5) documents every configuration key srpcd reads, with its real
//! default (issue 10: every config key is in its man page, checked in CI).
//!
//! The page's ```toml block is parsed by srpcd's own parser: it must be accepted
//! (every key shown exists, every value is valid) and give `Config::default()`
//! (every default shown is the real one). The other direction — every key of the
//! config structs is shown — asks the structs themselves: an unknown key put into
//! a table makes serde answer with the table's full list of fields
//! (`deny_unknown_fields`), and each of those must be in the page's table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use srpcd::config::{Config, ConfigError};

const PAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/man/srpcd.toml.5.md");
const PROBE: &str = "__probe__";

/// The page's (first) ```toml block.
fn page_block() -> String {
    let page = std::fs::read_to_string(PAGE).unwrap();
    let start = page
        .find("```toml\n")
        .expect("srpcd.toml.5.md has a ```toml block")
        + 8;
    let len = page[start..]
        .find("```")
        .expect("the ```toml block is closed");
    page[start..start + len].to_owned()
}

/// The fields serde lists for the table at `path` (empty: the top level), got by
/// putting an unknown key there.
fn fields_of(doc: &toml::Table, path: &[&str]) -> Vec<String> {
    let mut probed = doc.clone();
    let mut table = &mut probed;
    for name in path {
        table = table.get_mut(*name).unwrap().as_table_mut().unwrap();
    }
    table.insert(PROBE.into(), toml::Value::Integer(0));
    let text = toml::to_string(&probed).unwrap();
    let message = match Config::parse(&text, Path::new("probe.toml")) {
        Err(ConfigError::Invalid { message, .. }) => message,
        other => panic!(
            "an unknown key in [{}] was not refused: {other:?}",
            path.join(".")
        ),
    };
    assert!(
        message.contains(&format!("unknown field `{PROBE}`")),
        "unexpected message for [{}]: {message}",
        path.join(".")
    );
    let expected = message.split_once("expected").map_or("", |(_, rest)| rest);
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Every key of the table at `path` is in the page, recursively; returns the
/// dotted names of those missing.
fn missing_keys(doc: &toml::Table, path: &[&str]) -> Vec<String> {
    let mut table = doc;
    for name in path {
        table = table[*name].as_table().unwrap();
    }
    let fields = fields_of(doc, path);
    assert!(
        !fields.is_empty(),
        "serde listed no fields for [{}]",
        path.join(".")
    );
    let mut missing = Vec::new();
    for field in &fields {
        let dotted = path
            .iter()
            .copied()
            .chain([field.as_str()])
            .collect::<Vec<_>>();
        match table.get(field) {
            None => missing.push(dotted.join(".")),
            Some(toml::Value::Table(_)) => missing.extend(missing_keys(doc, &dotted)),
            Some(_) => {}
        }
    }
    missing
}

#[test]
fn the_page_shows_the_real_defaults() {
    let block = page_block();
    let mut parsed = Config::parse(&block, Path::new("srpcd.toml.5.md"))
        .unwrap_or_else(|e| panic!("srpcd.toml(5)'s example is refused: {e}"));
    // The page shows where the helpers are looked for when the key is absent
    // (the default is "unset": srpcd then uses this directory).
    assert_eq!(
        parsed.workers.libexec_dir.take(),
        Some(PathBuf::from("/usr/libexec/srpc"))
    );
    assert_eq!(
        parsed,
        Config::default(),
        "srpcd.toml(5) shows other defaults than srpcd has"
    );
}

#[test]
fn every_config_key_is_in_the_page() {
    let doc: toml::Table = toml::from_str(&page_block()).unwrap();
    let missing = missing_keys(&doc, &[]);
    assert!(
        missing.is_empty(),
        "keys srpcd reads that srpcd.toml(5)'s ```toml block does not show: {missing:?}"
    );
}

#[test]
fn a_key_left_out_of_the_page_is_found() {
    // The check itself can fail: drop one documented key and it is reported.
    let mut doc: toml::Table = toml::from_str(&page_block()).unwrap();
    doc["limits"]
        .as_table_mut()
        .unwrap()
        .remove("auth_attempts");
    doc.remove("listen");
    assert_eq!(missing_keys(&doc, &[]), ["listen", "limits.auth_attempts"]);
}
