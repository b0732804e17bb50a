//! The test vectors and tables of `docs/protocol.md` checked against the code: every
//! vector decodes and re-encodes to the same bytes, every invalid vector fails with
//! the stated error, and the spec's tables of types, error codes, limits and field
//! orders say what the code does. Any drift between the spec and the code fails here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;

use srpc_proto::{
    check, decode, decode_bytes, decode_listing, encode, encode_listing, AuthAnswers, AuthStep,
    Check, ErrorCode, Kind, Limits, PromptStyle, QidType, HARD_LIMITS,
};

const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md");

fn spec() -> String {
    std::fs::read_to_string(SPEC).unwrap_or_else(|e| panic!("reading {SPEC}: {e}"))
}

/// One fenced vector block of the spec.
struct Vector {
    /// The block's first line.
    name: String,
    /// Line number of the opening fence, for messages.
    line: usize,
    bytes: Vec<u8>,
    /// `error:` and `code:` lines of an invalid vector.
    error: Option<String>,
    code: Option<String>,
}

impl Vector {
    /// The first word of the name: a message type name, `AuthAnswers`, `AuthStep`
    /// or `Listing`.
    fn what(&self) -> &str {
        self.name.split_whitespace().next().unwrap_or("")
    }

    /// True for a payload (the data of an append) rather than a whole frame.
    fn is_payload(&self) -> bool {
        matches!(self.what(), "AuthAnswers" | "AuthStep" | "Listing")
    }
}

/// The blocks whose info string is exactly `info`.
fn blocks(spec: &str, info: &str) -> Vec<Vector> {
    let fence = format!("```{info}");
    let mut out = Vec::new();
    let mut lines = spec.lines().enumerate();
    while let Some((at, line)) = lines.next() {
        if line.trim_end() != fence {
            continue;
        }
        let mut name = None;
        let (mut hex, mut error, mut code) = (String::new(), None, None);
        loop {
            let (_, line) = lines
                .next()
                .unwrap_or_else(|| panic!("unterminated {info} block at line {}", at + 1));
            if line.trim_end() == "```" {
                break;
            }
            if name.is_none() {
                name = Some(line.trim().to_owned());
            } else if let Some(e) = line.strip_prefix("error: ") {
                error = Some(e.to_owned());
            } else if let Some(c) = line.strip_prefix("code: ") {
                code = Some(c.trim().to_owned());
            } else {
                hex.extend(line.chars().filter(|c| !c.is_whitespace()));
            }
        }
        let name = name.unwrap_or_else(|| panic!("empty {info} block at line {}", at + 1));
        let bytes = hex::decode(&hex)
            .unwrap_or_else(|e| panic!("{info} `{name}` (line {}): bad hex: {e}", at + 1));
        out.push(Vector {
            name,
            line: at + 1,
            bytes,
            error,
            code,
        });
    }
    out
}

fn kind_named(name: &str) -> Option<Kind> {
    Kind::ALL.iter().copied().find(|k| format!("{k:?}") == name)
}

#[test]
fn every_frame_vector_decodes_and_reencodes_to_the_same_bytes() {
    let limits = Limits::default();
    let vectors = blocks(&spec(), "vector");
    let frames: Vec<_> = vectors.iter().filter(|v| !v.is_payload()).collect();
    assert!(frames.len() >= Kind::ALL.len());
    for v in frames {
        let kind = kind_named(v.what())
            .unwrap_or_else(|| panic!("vector `{}` (line {}): no such type", v.name, v.line));
        assert_eq!(
            check(&v.bytes, &limits),
            Check::Complete(v.bytes.len()),
            "vector `{}`",
            v.name
        );
        let frame = decode(&v.bytes, &limits)
            .unwrap_or_else(|e| panic!("vector `{}` (line {}): {e}", v.name, v.line));
        assert_eq!(frame.msg.kind(), kind, "vector `{}` is mislabelled", v.name);
        assert_eq!(
            encode(&frame),
            v.bytes,
            "vector `{}` (line {}) is not canonical",
            v.name,
            v.line
        );
        let shared = bytes::Bytes::from(v.bytes.clone());
        assert_eq!(decode_bytes(&shared, &limits).as_ref(), Ok(&frame));
    }
}

#[test]
fn every_message_type_has_a_vector() {
    let named: HashSet<String> = blocks(&spec(), "vector")
        .iter()
        .map(|v| v.what().to_owned())
        .collect();
    for kind in Kind::ALL {
        assert!(
            named.contains(&format!("{kind:?}")),
            "no test vector for {kind:?}"
        );
    }
}

#[test]
fn conversation_payload_vectors_round_trip() {
    let vectors = blocks(&spec(), "vector");
    let (mut answers, mut steps) = (0, 0);
    let mut styles = HashSet::new();
    let mut authenticated = false;
    for v in vectors.iter().filter(|v| v.what().starts_with("Auth")) {
        match v.what() {
            "AuthAnswers" => {
                let a = AuthAnswers::decode(&v.bytes)
                    .unwrap_or_else(|e| panic!("vector `{}`: {e}", v.name));
                assert_eq!(*a.encode(), v.bytes, "vector `{}` is not canonical", v.name);
                answers += 1;
            }
            "AuthStep" => {
                let s = AuthStep::decode(&v.bytes)
                    .unwrap_or_else(|e| panic!("vector `{}`: {e}", v.name));
                assert_eq!(s.encode(), v.bytes, "vector `{}` is not canonical", v.name);
                match s {
                    AuthStep::Authenticated => authenticated = true,
                    AuthStep::Prompts(p) => styles.extend(p.iter().map(|p| p.style)),
                }
                steps += 1;
            }
            other => panic!("vector `{}`: unknown payload kind {other}", v.name),
        }
    }
    assert!(answers >= 2 && steps >= 2);
    assert!(authenticated, "no vector for the authenticated step");
    for style in [
        PromptStyle::EchoOn,
        PromptStyle::EchoOff,
        PromptStyle::Info,
        PromptStyle::Error,
    ] {
        assert!(styles.contains(&style), "no vector with a {style:?} prompt");
    }
}

#[test]
fn listing_payload_vectors_round_trip() {
    let vectors = blocks(&spec(), "vector");
    let listings: Vec<_> = vectors.iter().filter(|v| v.what() == "Listing").collect();
    let (mut kinds, mut labelled, mut unlabelled, mut empty) =
        (HashSet::new(), false, false, false);
    for v in &listings {
        let entries =
            decode_listing(&v.bytes).unwrap_or_else(|e| panic!("vector `{}`: {e}", v.name));
        assert_eq!(
            encode_listing(&entries),
            v.bytes,
            "vector `{}` is not canonical",
            v.name
        );
        assert!(
            entries.windows(2).all(|w| w[0].name < w[1].name),
            "vector `{}`: entries are not sorted by name",
            v.name
        );
        kinds.extend(entries.iter().map(|e| e.qid.kind));
        labelled |= entries.iter().any(|e| e.label.is_some());
        empty |= entries.is_empty();
    }
    // The listing carried by the `Rappend list` frame is a listing too.
    for v in vectors.iter().filter(|v| v.name == "Rappend list") {
        let frame = decode(&v.bytes, &Limits::default()).unwrap();
        let srpc_proto::Message::Rappend { data } = frame.msg else {
            panic!("vector `{}` is not an Rappend", v.name)
        };
        let entries = decode_listing(&data).unwrap();
        unlabelled |= entries.iter().any(|e| e.label.is_none());
        kinds.extend(entries.iter().map(|e| e.qid.kind));
    }
    assert!(listings.len() >= 2, "too few listing vectors");
    assert!(kinds.contains(&QidType::Dir) && kinds.contains(&QidType::Endpoint));
    assert!(labelled && unlabelled, "listings with and without labels");
    assert!(empty, "no vector for an empty listing");
}

#[test]
fn invalid_vectors_fail_with_the_stated_error() {
    let limits = Limits::default();
    let vectors = blocks(&spec(), "invalid-vector");
    assert!(vectors.len() >= 20);
    for v in &vectors {
        let want = v
            .error
            .as_deref()
            .unwrap_or_else(|| panic!("invalid vector `{}` has no error line", v.name));
        let err = match v.what() {
            "AuthAnswers" => AuthAnswers::decode(&v.bytes).err(),
            "AuthStep" => AuthStep::decode(&v.bytes).err(),
            "Listing" => decode_listing(&v.bytes).err(),
            _ => {
                // check() must agree with decode() on header faults.
                let err = decode(&v.bytes, &limits).err();
                if let Check::Invalid(e) = check(&v.bytes, &limits) {
                    assert_eq!(Some(e), err, "invalid vector `{}`", v.name);
                }
                err
            }
        };
        let err = err.unwrap_or_else(|| panic!("invalid vector `{}` decodes", v.name));
        assert_eq!(err.to_string(), want, "invalid vector `{}`", v.name);
        assert_eq!(
            Some(err.code().name()),
            v.code.as_deref(),
            "invalid vector `{}`",
            v.name
        );
    }
}

/// The cells of the first markdown table after the heading line starting with
/// `heading`, header and separator rows skipped.
fn table(spec: &str, heading: &str) -> Vec<Vec<String>> {
    let mut lines = spec
        .lines()
        .skip_while(|l| !l.starts_with(heading))
        .skip(1)
        .skip_while(|l| !l.starts_with('|'));
    let rows: Vec<Vec<String>> = lines
        .by_ref()
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect();
    assert!(rows.len() > 2, "no table under `{heading}`");
    rows[2..].to_vec()
}

fn unquote(cell: &str) -> &str {
    cell.trim_matches('`')
}

#[test]
fn type_table_matches_the_code() {
    let rows = table(&spec(), "### Message types");
    let listed: Vec<(u32, String)> = rows
        .iter()
        .map(|r| (r[0].parse().unwrap(), r[1].clone()))
        .collect();
    let code: Vec<(u32, String)> = Kind::ALL
        .iter()
        .map(|k| (*k as u32, format!("{k:?}")))
        .collect();
    assert_eq!(listed, code);
}

#[test]
fn error_code_table_matches_the_code() {
    let rows = table(&spec(), "### 14.1");
    let listed: Vec<(u32, String)> = rows
        .iter()
        .map(|r| (r[0].parse().unwrap(), unquote(&r[1]).to_owned()))
        .collect();
    let code: Vec<(u32, String)> = ErrorCode::ALL
        .iter()
        .map(|c| (c.number(), c.name().to_owned()))
        .collect();
    assert_eq!(listed, code);
}

#[test]
fn limits_table_matches_the_code() {
    let rows = table(&spec(), "## 15. Limits");
    let num = |cell: &str| -> u32 { cell.split_whitespace().next().unwrap().parse().unwrap() };
    let pick = |l: &Limits, name: &str| match name {
        "max_message" => l.max_message,
        "max_fids" => l.max_fids,
        "max_walk" => l.max_walk,
        "max_name" => l.max_name,
        "max_pending" => l.max_pending,
        other => panic!("unknown limit {other}"),
    };
    assert_eq!(rows.len(), 5);
    for r in &rows {
        let name = unquote(&r[0]);
        assert_eq!(num(&r[2]), pick(&Limits::default(), name), "{name} default");
        assert_eq!(num(&r[3]), pick(&HARD_LIMITS, name), "{name} ceiling");
        assert_eq!(num(&r[4]), pick(&Limits::FLOOR, name), "{name} floor");
    }
}

/// The top-level keys, in order, of a compact JSON object.
fn top_level_keys(json: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(json).unwrap();
    let (mut keys, mut depth, mut in_str, mut escaped) = (Vec::new(), 0, false, false);
    let mut current: Option<String> = None;
    let mut prev = ' ';
    for c in text.chars() {
        if in_str {
            if let Some(k) = current.as_mut() {
                k.push(c);
            }
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
                if let Some(mut k) = current.take() {
                    k.pop();
                    keys.push(k);
                }
            }
            continue;
        }
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            '"' => {
                in_str = true;
                if depth == 1 && (prev == '{' || prev == ',') {
                    current = Some(String::new());
                }
            }
            _ => {}
        }
        prev = c;
    }
    keys
}

#[test]
fn field_orders_in_the_type_table_match_the_vectors() {
    let spec = spec();
    let rows = table(&spec, "### Message types");
    for v in blocks(&spec, "vector").iter().filter(|v| !v.is_payload()) {
        let frame = decode(&v.bytes, &Limits::default()).unwrap();
        let row = rows
            .iter()
            .find(|r| r[1] == v.what())
            .unwrap_or_else(|| panic!("type {} is not in the table", v.what()));
        // `name` for required fields, `name`? for optional ones.
        let fields: Vec<(String, bool)> = row[3]
            .split(',')
            .filter_map(|f| {
                let f = f.trim();
                let start = f.find('`')? + 1;
                let end = start + f[start..].find('`')?;
                Some((f[start..end].to_owned(), f[end + 1..].starts_with('?')))
            })
            .collect();
        let body = &v.bytes[srpc_proto::HEADER_LEN..];
        let control = match frame.msg.kind() {
            Kind::Tappend | Kind::Rappend => {
                let n = u32::from_be_bytes(body[..4].try_into().unwrap()) as usize;
                &body[4..4 + n]
            }
            _ => body,
        };
        let keys = top_level_keys(control);
        let expected: Vec<&str> = fields
            .iter()
            .filter(|(name, optional)| !optional || keys.contains(name))
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(keys, expected, "vector `{}`: key order", v.name);
    }
}
