//! Crafted bad frames: each decode fault is reported as its own precise error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write;
use std::sync::mpsc;
use std::time::Duration;

use srpc_proto::{
    check, decode, Check, DecodeError, ErrorCode, FieldError, Header, Kind, Limits, NameError,
    HEADER_LEN,
};

fn frame(kind: Kind, body: &[u8]) -> Vec<u8> {
    let mut out = Header {
        kind: kind as u32,
        seq: 7,
        body_len: body.len() as u64,
    }
    .to_bytes()
    .to_vec();
    out.extend_from_slice(body);
    out
}

fn decode_body(kind: Kind, body: &str) -> Result<(), DecodeError> {
    decode(&frame(kind, body.as_bytes()), &Limits::default()).map(|_| ())
}

fn field(name: &str, error: FieldError) -> Result<(), DecodeError> {
    Err(DecodeError::Field {
        field: name.into(),
        error,
    })
}

fn name_err(name: &str, error: NameError) -> Result<(), DecodeError> {
    Err(DecodeError::Name {
        field: name.into(),
        error,
    })
}

#[test]
fn a_header_claiming_2_pow_63_bytes_is_invalid_from_the_header_alone() {
    let header = Header {
        kind: Kind::Tappend as u32,
        seq: 1,
        body_len: 1 << 63,
    }
    .to_bytes();
    let want = DecodeError::TooLarge {
        declared: 1 << 63,
        max: 1024 * 1024,
    };
    // Only the 20 header bytes exist: the verdict cannot depend on reading a body.
    assert_eq!(
        check(&header, &Limits::default()),
        Check::Invalid(want.clone())
    );
    assert_eq!(decode(&header, &Limits::default()), Err(want.clone()));
    assert_eq!(want.code(), ErrorCode::LimitExceeded);
}

#[test]
fn a_frame_one_byte_over_max_message_is_too_large() {
    let limits = Limits {
        max_message: 4096,
        ..Limits::default()
    };
    let body = vec![b' '; 4096 - HEADER_LEN + 1];
    let bytes = frame(Kind::Tclunk, &body);
    let want = DecodeError::TooLarge {
        declared: body.len() as u64,
        max: 4096,
    };
    assert_eq!(check(&bytes, &limits), Check::Invalid(want.clone()));
    assert_eq!(decode(&bytes, &limits), Err(want));
    // Exactly at the limit the framing is fine (the body is then just bad JSON).
    let at_limit = frame(Kind::Tclunk, &body[1..]);
    assert_eq!(check(&at_limit, &limits), Check::Complete(4096));
}

#[test]
fn unknown_type() {
    let bytes = frame(Kind::Tclunk, b"{\"fid\":1}");
    for n in [0u32, 99, 106, 132, u32::MAX] {
        let mut b = bytes.clone();
        b[..4].copy_from_slice(&n.to_be_bytes());
        assert_eq!(
            check(&b, &Limits::default()),
            Check::Invalid(DecodeError::UnknownType(n))
        );
        assert_eq!(
            decode(&b, &Limits::default()),
            Err(DecodeError::UnknownType(n))
        );
    }
}

#[test]
fn truncated_and_trailing() {
    let bytes = frame(Kind::Tclunk, b"{\"fid\":1}");
    assert_eq!(
        decode(&bytes[..bytes.len() - 1], &Limits::default()),
        Err(DecodeError::Truncated {
            expected: bytes.len(),
            got: bytes.len() - 1
        })
    );
    assert_eq!(
        decode(&bytes[..5], &Limits::default()),
        Err(DecodeError::Truncated {
            expected: HEADER_LEN,
            got: 5
        })
    );
    let mut long = bytes.clone();
    long.extend_from_slice(b"xyz");
    assert_eq!(
        decode(&long, &Limits::default()),
        Err(DecodeError::TrailingBytes { extra: 3 })
    );
}

#[test]
fn invalid_utf8_in_a_name_is_reported_with_its_offset() {
    let body = b"{\"afid\":1,\"uname\":\"al\xc3\x28e\",\"aname\":\"/\"}";
    assert_eq!(
        decode(&frame(Kind::Tauth, body), &Limits::default()),
        Err(DecodeError::InvalidUtf8 { offset: 21 })
    );
}

#[test]
fn json_syntax_and_shape() {
    for bad in ["{\"fid\":1", "{fid:1}", "", "{\"fid\":1}}", "{\"fid\":01}"] {
        assert!(
            matches!(decode_body(Kind::Tclunk, bad), Err(DecodeError::Json(_))),
            "{bad:?} gave {:?}",
            decode_body(Kind::Tclunk, bad)
        );
    }
    for not_object in ["[]", "1", "\"fid\"", "null", "true"] {
        assert_eq!(
            decode_body(Kind::Tclunk, not_object),
            Err(DecodeError::NotObject)
        );
    }
}

#[test]
fn unknown_fields_at_every_depth() {
    assert_eq!(
        decode_body(Kind::Tclunk, r#"{"fid":1,"force":true}"#),
        Err(DecodeError::UnknownField("force".into()))
    );
    assert_eq!(
        decode_body(Kind::Rclunk, r#"{"fid":1}"#),
        Err(DecodeError::UnknownField("fid".into()))
    );
    assert_eq!(
        decode_body(
            Kind::Rattach,
            r#"{"qid":{"type":"dir","path":1,"version":2,"mode":0}}"#
        ),
        Err(DecodeError::UnknownField("qid.mode".into()))
    );
    assert_eq!(
        decode_body(
            Kind::Rwalk,
            r#"{"qids":[{"type":"dir","path":1,"version":2},{"type":"dir","path":1,"version":2,"x":0}]}"#
        ),
        Err(DecodeError::UnknownField("qids[1].x".into()))
    );
}

#[test]
fn duplicate_fields_top_level_and_nested() {
    assert_eq!(
        decode_body(Kind::Tstat, r#"{"fid":1,"fid":1}"#),
        Err(DecodeError::DuplicateField("fid".into()))
    );
    assert_eq!(
        decode_body(
            Kind::Tversion,
            r#"{"version":"srpc/1","limits":{"max_message":4096,"max_fids":2,"max_walk":1,"max_name":1,"max_pending":1,"max_walk":64}}"#
        ),
        Err(DecodeError::DuplicateField("limits.max_walk".into()))
    );
    // Whitespace and key order are free; duplicates are not, however spelt.
    assert_eq!(
        decode_body(Kind::Tstat, "{ \"fid\" : 1 , \"f\\u0069d\" : 2 }"),
        Err(DecodeError::DuplicateField("fid".into()))
    );
}

#[test]
fn missing_and_wrongly_typed_fields() {
    assert_eq!(
        decode_body(Kind::Tattach, r#"{"fid":1,"uname":"a","aname":"/"}"#),
        field("afid", FieldError::Missing)
    );
    assert_eq!(
        decode_body(Kind::Tversion, r#"{"version":"srpc/1"}"#),
        field("limits", FieldError::Missing)
    );
    let integer = FieldError::WrongType("a non-negative integer");
    assert_eq!(
        decode_body(Kind::Tclunk, r#"{"fid":"1"}"#),
        field("fid", integer.clone())
    );
    assert_eq!(
        decode_body(Kind::Tclunk, r#"{"fid":1.5}"#),
        field("fid", integer.clone())
    );
    assert_eq!(
        decode_body(Kind::Tclunk, r#"{"fid":1e0}"#),
        field("fid", integer.clone())
    );
    assert_eq!(
        decode_body(Kind::Tclunk, r#"{"fid":-1}"#),
        field("fid", integer.clone())
    );
    assert_eq!(
        decode_body(Kind::Tclunk, r#"{"fid":null}"#),
        field("fid", integer)
    );
    assert_eq!(
        decode_body(Kind::Tauth, r#"{"afid":1,"uname":7,"aname":"/"}"#),
        field("uname", FieldError::WrongType("a string"))
    );
    assert_eq!(
        decode_body(Kind::Twalk, r#"{"fid":1,"newfid":2,"names":"a"}"#),
        field("names", FieldError::WrongType("an array"))
    );
    assert_eq!(
        decode_body(Kind::Twalk, r#"{"fid":1,"newfid":2,"names":["a",3]}"#),
        field("names[1]", FieldError::WrongType("a string"))
    );
    assert_eq!(
        decode_body(Kind::Tversion, r#"{"version":"srpc/1","limits":[]}"#),
        field("limits", FieldError::WrongType("object"))
    );
    // An optional field is omitted, never null.
    assert_eq!(
        decode_body(Kind::Rerror, r#"{"code":1,"message":"m","errno":null}"#),
        field("errno", FieldError::WrongType("a 32-bit integer"))
    );
    assert_eq!(
        decode_body(
            Kind::Rerror,
            r#"{"code":1,"message":"m","errno":2147483648}"#
        ),
        field("errno", FieldError::WrongType("a 32-bit integer"))
    );
    assert_eq!(
        decode_body(
            Kind::Rstat,
            r#"{"stat":{"qid":{"type":"dir","path":1,"version":2},"name":"/","mode":493,"uid":0,"gid":0,"owner":"root","group":"root","mtime":0,"label":null}}"#
        ),
        field("stat.label", FieldError::WrongType("a string"))
    );
}

#[test]
fn out_of_range_values() {
    assert_eq!(
        decode_body(Kind::Tclunk, r#"{"fid":4294967296}"#),
        field(
            "fid",
            FieldError::OutOfRange("4294967296 exceeds 4294967295".into())
        )
    );
    // Beyond u64: serde_json reads it as a float, which is no integer.
    assert_eq!(
        decode_body(Kind::Tflush, r#"{"oldseq":18446744073709551616}"#),
        field("oldseq", FieldError::WrongType("a non-negative integer"))
    );
    assert_eq!(
        decode_body(
            Kind::Rauth,
            r#"{"aqid":{"type":"file","path":1,"version":0}}"#
        ),
        field(
            "aqid.type",
            FieldError::OutOfRange("unknown qid type `file`".into())
        )
    );
}

#[test]
fn bad_walk_names() {
    let walk = |name: &str| {
        decode_body(
            Kind::Twalk,
            &format!(r#"{{"fid":1,"newfid":2,"names":["ok",{name}]}}"#),
        )
    };
    assert_eq!(walk(r#""""#), name_err("names[1]", NameError::Empty));
    assert_eq!(walk(r#"".""#), name_err("names[1]", NameError::Dot));
    assert_eq!(walk(r#""..""#), name_err("names[1]", NameError::DotDot));
    assert_eq!(walk(r#""a\u0000""#), name_err("names[1]", NameError::Nul));
    assert_eq!(walk(r#""a/b""#), name_err("names[1]", NameError::Slash));
    // `/` escaped as `\/` is still a slash.
    assert_eq!(walk(r#""a\/b""#), name_err("names[1]", NameError::Slash));
    assert_eq!(
        walk(&format!("\"{}\"", "x".repeat(256))),
        name_err("names[1]", NameError::TooLong { len: 256, max: 255 })
    );
    // The limit counts UTF-8 bytes, not characters: 128 × "é" is 256 bytes.
    assert_eq!(
        walk(&format!("\"{}\"", "é".repeat(128))),
        name_err("names[1]", NameError::TooLong { len: 256, max: 255 })
    );
    assert!(walk(&format!("\"{}\"", "x".repeat(255))).is_ok());
}

#[test]
fn bad_user_names_and_attach_paths() {
    let auth = |uname: &str, aname: &str| {
        decode_body(
            Kind::Tauth,
            &format!(r#"{{"afid":1,"uname":{uname},"aname":{aname}}}"#),
        )
    };
    assert_eq!(auth(r#""""#, r#""/""#), name_err("uname", NameError::Empty));
    assert_eq!(auth(r#"".""#, r#""/""#), name_err("uname", NameError::Dot));
    assert_eq!(
        auth(r#""..""#, r#""/""#),
        name_err("uname", NameError::DotDot)
    );
    assert_eq!(
        auth(r#""root\u0000""#, r#""/""#),
        name_err("uname", NameError::Nul)
    );
    assert_eq!(
        auth(r#""a/b""#, r#""/""#),
        name_err("uname", NameError::Slash)
    );
    assert_eq!(
        auth(&format!("\"{}\"", "u".repeat(300)), r#""/""#),
        name_err("uname", NameError::TooLong { len: 300, max: 255 })
    );
    assert_eq!(
        auth(r#""alice""#, r#""demo""#),
        name_err("aname", NameError::NotAbsolute)
    );
    assert_eq!(
        auth(r#""alice""#, r#""""#),
        name_err("aname", NameError::NotAbsolute)
    );
    assert_eq!(
        auth(r#""alice""#, r#""/demo/""#),
        name_err("aname", NameError::Empty)
    );
    assert_eq!(
        auth(r#""alice""#, r#""/demo/../etc""#),
        name_err("aname", NameError::DotDot)
    );
    // The same rules hold in Tattach.
    assert_eq!(
        decode_body(
            Kind::Tattach,
            r#"{"fid":2,"afid":1,"uname":"alice","aname":"//"}"#
        ),
        name_err("aname", NameError::Empty)
    );
}

#[test]
fn names_are_checked_against_the_negotiated_max_name() {
    let limits = Limits {
        max_name: 4,
        ..Limits::default()
    };
    let bytes = frame(
        Kind::Twalk,
        br#"{"fid":1,"newfid":2,"names":["abcd","abcde"]}"#,
    );
    assert_eq!(
        decode(&bytes, &limits).map(|_| ()),
        name_err("names[1]", NameError::TooLong { len: 5, max: 4 })
    );
}

#[test]
fn too_many_walk_elements() {
    let walk = |n: usize| {
        let names = vec!["\"a\""; n].join(",");
        decode_body(
            Kind::Twalk,
            &format!(r#"{{"fid":1,"newfid":2,"names":[{names}]}}"#),
        )
    };
    assert!(walk(16).is_ok());
    let err = walk(17).unwrap_err();
    assert_eq!(err, DecodeError::TooManyWalkElements { count: 17, max: 16 });
    assert_eq!(err.code(), ErrorCode::LimitExceeded);
}

#[test]
fn bad_append_layouts() {
    for short in [&b""[..], b"\x00", b"\x00\x00\x00"] {
        assert_eq!(
            decode(&frame(Kind::Tappend, short), &Limits::default()),
            Err(DecodeError::BadAppendLayout {
                control_len: 0,
                body_len: short.len()
            })
        );
    }
    let past_end = b"\x00\x00\x00\x0a{\"fid\":1}";
    assert_eq!(
        decode(&frame(Kind::Tappend, past_end), &Limits::default()),
        Err(DecodeError::BadAppendLayout {
            control_len: 10,
            body_len: 13
        })
    );
    let huge = b"\xff\xff\xff\xff{}";
    assert_eq!(
        decode(&frame(Kind::Rappend, huge), &Limits::default()),
        Err(DecodeError::BadAppendLayout {
            control_len: u64::from(u32::MAX),
            body_len: 6
        })
    );
    // The control part itself is held to the usual rules.
    assert_eq!(
        decode(
            &frame(Kind::Tappend, b"\x00\x00\x00\x02{}data"),
            &Limits::default()
        ),
        Err(DecodeError::Field {
            field: "fid".into(),
            error: FieldError::Missing
        })
    );
}

#[test]
fn every_body_fault_maps_to_malformed() {
    assert_eq!(
        DecodeError::DuplicateField("x".into()).code(),
        ErrorCode::Malformed
    );
    assert_eq!(
        DecodeError::InvalidUtf8 { offset: 0 }.code(),
        ErrorCode::Malformed
    );
    assert_eq!(DecodeError::UnknownType(1).code(), ErrorCode::Malformed);
}

/// Regression: duplicate detection was a pairwise scan, so one frame of ~90 000
/// distinct keys (1 MiB, the default `max_message`) cost about 20 s of CPU in a
/// release build. It must be linear. The timeout only stops a hang; the fixed
/// code takes milliseconds even unoptimised.
#[test]
fn an_object_with_many_keys_decodes_in_linear_time() {
    let mut body = String::from("{");
    let mut i = 0;
    while body.len() < 1_000_000 {
        if i > 0 {
            body.push(',');
        }
        write!(body, "\"k{i}\":0").unwrap();
        i += 1;
    }
    body.push('}');
    let bytes = frame(Kind::Tstat, body.as_bytes());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(decode(&bytes, &Limits::default()));
    });
    let got = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("decoding 90 000 keys took over 30 s: quadratic duplicate check?");
    assert_eq!(got.map(|_| ()), field("fid", FieldError::Missing));
}
