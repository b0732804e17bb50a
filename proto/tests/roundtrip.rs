//! Properties over generated messages: decoding inverts encoding for every message,
//! `check` frames exactly, and no truncation decodes by accident or panics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use srpc_proto::{
    check, decode, decode_bytes, encode, encode_into, AuthAnswers, AuthStep, Check, ErrorCode,
    Frame, Header, Kind, Limits, Message, Prompt, PromptStyle, Qid, QidType, Stat, HARD_LIMITS,
    HEADER_LEN,
};
use zeroize::Zeroizing;

/// Decoding limits wide enough for every generated message.
const WIDE: Limits = HARD_LIMITS;

fn name() -> impl Strategy<Value = String> {
    "[^/\u{0}]{1,12}".prop_filter("not . or ..", |s| s != "." && s != "..")
}

fn path() -> impl Strategy<Value = String> {
    vec(name(), 0..4).prop_map(|names| format!("/{}", names.join("/")))
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(max_message, max_fids, max_walk, max_name, max_pending)| Limits {
                max_message,
                max_fids,
                max_walk,
                max_name,
                max_pending,
            },
        )
}

fn qid() -> impl Strategy<Value = Qid> {
    (
        prop_oneof![
            Just(QidType::Dir),
            Just(QidType::Endpoint),
            Just(QidType::Auth)
        ],
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(kind, path, version)| Qid {
            kind,
            path,
            version,
        })
}

fn stat() -> impl Strategy<Value = Stat> {
    (
        qid(),
        any::<String>(),
        any::<(u32, u32, u32)>(),
        any::<(String, String)>(),
        any::<i64>(),
        option::of(any::<String>()),
    )
        .prop_map(
            |(qid, name, (mode, uid, gid), (owner, group), mtime, label)| Stat {
                qid,
                name,
                mode,
                uid,
                gid,
                owner,
                group,
                mtime,
                label,
            },
        )
}

fn data() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..300).prop_map(Bytes::from)
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<String>(), limits())
            .prop_map(|(version, limits)| Message::Tversion { version, limits }),
        (any::<String>(), limits())
            .prop_map(|(version, limits)| Message::Rversion { version, limits }),
        (any::<u32>(), name(), path()).prop_map(|(afid, uname, aname)| Message::Tauth {
            afid,
            uname,
            aname
        }),
        qid().prop_map(|aqid| Message::Rauth { aqid }),
        (any::<u32>(), any::<u32>(), name(), path()).prop_map(|(fid, afid, uname, aname)| {
            Message::Tattach {
                fid,
                afid,
                uname,
                aname,
            }
        }),
        qid().prop_map(|qid| Message::Rattach { qid }),
        (any::<u32>(), any::<u32>(), vec(name(), 0..8))
            .prop_map(|(fid, newfid, names)| Message::Twalk { fid, newfid, names }),
        vec(qid(), 0..8).prop_map(|qids| Message::Rwalk { qids }),
        any::<u32>().prop_map(|fid| Message::Tstat { fid }),
        stat().prop_map(|stat| Message::Rstat { stat }),
        any::<u32>().prop_map(|fid| Message::Tclunk { fid }),
        Just(Message::Rclunk),
        (any::<u32>(), data()).prop_map(|(fid, data)| Message::Tappend { fid, data }),
        data().prop_map(|data| Message::Rappend { data }),
        any::<u64>().prop_map(|oldseq| Message::Tflush { oldseq }),
        Just(Message::Rflush),
        // From numbers, as a decoder sees them: a known number is never `Unknown`.
        (any::<u32>(), any::<String>(), option::of(any::<i32>())).prop_map(
            |(code, message, errno)| Message::Rerror {
                code: ErrorCode::from_number(code % 40),
                message,
                errno,
            }
        ),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    (any::<u64>(), message()).prop_map(|(seq, msg)| Frame::new(seq, msg))
}

fn is_append(f: &Frame) -> bool {
    matches!(f.msg.kind(), Kind::Tappend | Kind::Rappend)
}

proptest! {
    #[test]
    fn decode_inverts_encode(f in frame()) {
        let bytes = encode(&f);
        prop_assert_eq!(decode(&bytes, &WIDE), Ok(f.clone()));
        prop_assert_eq!(decode_bytes(&Bytes::from(bytes.clone()), &WIDE), Ok(f.clone()));
        // encode_into appends, leaving what was there.
        let mut out = b"prefix".to_vec();
        encode_into(&f, &mut out);
        prop_assert_eq!(&out[..6], b"prefix");
        prop_assert_eq!(&out[6..], &bytes[..]);
    }

    #[test]
    fn check_frames_exactly(f in frame(), extra in vec(any::<u8>(), 0..40)) {
        let bytes = encode(&f);
        for n in 0..bytes.len() {
            prop_assert_eq!(check(&bytes[..n], &WIDE), Check::Incomplete, "prefix of {}", n);
        }
        prop_assert_eq!(check(&bytes, &WIDE), Check::Complete(bytes.len()));
        let mut longer = bytes.clone();
        longer.extend_from_slice(&extra);
        prop_assert_eq!(check(&longer, &WIDE), Check::Complete(bytes.len()));
    }

    #[test]
    fn no_truncation_decodes(f in frame()) {
        let bytes = encode(&f);
        for n in 0..bytes.len() {
            // As read from a stream: the header promises more than is there.
            prop_assert!(decode(&bytes[..n], &WIDE).is_err(), "prefix of {}", n);
            if n < HEADER_LEN {
                continue;
            }
            // A consistent header around a cut body. The JSON is cut short, so
            // only an append cut inside its raw data still decodes: to the same
            // message with the data cut.
            let mut cut = Header {
                kind: f.msg.kind() as u32,
                seq: f.seq,
                body_len: (n - HEADER_LEN) as u64,
            }
            .to_bytes()
            .to_vec();
            cut.extend_from_slice(&bytes[HEADER_LEN..n]);
            let data_start = bytes.len() - data_len_of(&f);
            let got = decode(&cut, &WIDE);
            if is_append(&f) && n >= data_start {
                let data = Bytes::copy_from_slice(&bytes[data_start..n]);
                prop_assert_eq!(got, Ok(with_data(&f, data)));
            } else {
                prop_assert!(got.is_err(), "{:?} cut at {} decoded", f, n);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..200)) {
        let _ = check(&bytes, &Limits::default());
        let _ = decode(&bytes, &Limits::default());
    }

    #[test]
    fn conversation_payloads_round_trip(
        prompts in vec(
            (
                prop_oneof![
                    Just(PromptStyle::EchoOff),
                    Just(PromptStyle::EchoOn),
                    Just(PromptStyle::Info),
                    Just(PromptStyle::Error),
                ],
                any::<String>(),
            ),
            0..5,
        ),
        answers in vec(any::<String>(), 0..5),
    ) {
        let step = AuthStep::Prompts(
            prompts.into_iter().map(|(style, text)| Prompt { style, text }).collect(),
        );
        prop_assert_eq!(AuthStep::decode(&step.encode()), Ok(step));
        let answers = AuthAnswers(answers.into_iter().map(Zeroizing::new).collect());
        prop_assert_eq!(AuthAnswers::decode(&answers.encode()), Ok(answers));
    }
}

/// Bytes of data a generated append carries.
fn data_len_of(f: &Frame) -> usize {
    match &f.msg {
        Message::Tappend { data, .. } | Message::Rappend { data } => data.len(),
        _ => 0,
    }
}

/// The append `f` with other data.
fn with_data(f: &Frame, data: Bytes) -> Frame {
    let msg = match &f.msg {
        Message::Tappend { fid, .. } => Message::Tappend { fid: *fid, data },
        Message::Rappend { .. } => Message::Rappend { data },
        other => other.clone(),
    };
    Frame::new(f.seq, msg)
}

#[test]
fn authenticated_step_round_trips() {
    assert_eq!(
        AuthStep::decode(&AuthStep::Authenticated.encode()),
        Ok(AuthStep::Authenticated)
    );
}

/// `encode_split`'s two parts, one after the other, are the frame `encode`
/// makes; data of `SPLIT_AT` bytes or more is the caller's own bytes (not a
/// copy), smaller data is copied into the head.
#[test]
fn a_split_encoding_is_the_same_frame() {
    use srpc_proto::{encode_split, SPLIT_AT};
    for len in [0, 1, SPLIT_AT - 1, SPLIT_AT, 3 * SPLIT_AT] {
        let data = bytes::Bytes::from(vec![7u8; len]);
        for msg in [
            Message::Tappend {
                fid: 9,
                data: data.clone(),
            },
            Message::Rappend { data: data.clone() },
            Message::Tclunk { fid: 9 },
        ] {
            let frame = Frame::new(42, msg);
            let split = encode_split(&frame);
            let joined: Vec<u8> = split.parts().concat();
            assert_eq!(joined, encode(&frame), "{len} bytes");
            assert_eq!(split.len(), joined.len());
            let kept = !split.data.is_empty();
            assert_eq!(
                kept,
                len >= SPLIT_AT && !matches!(frame.msg, Message::Tclunk { .. })
            );
            if kept {
                assert_eq!(split.data.as_ptr(), data.as_ptr(), "the data was copied");
            }
        }
    }
}
