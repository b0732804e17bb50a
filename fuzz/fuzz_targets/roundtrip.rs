//! Whatever decodes re-encodes to a frame that decodes to the same message, and
//! the canonical encoding is a fixed point; append payloads that are PAM steps,
//! answers or directory listings round-trip too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use srpc_proto::{decode, decode_listing, encode, encode_listing, AuthAnswers, AuthStep, Limits, Message};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(frame) = decode(data, &limits) {
        let bytes = encode(&frame);
        assert!(bytes.len() <= data.len(), "canonical form grew");
        let again = decode(&bytes, &limits);
        assert_eq!(again.as_ref(), Ok(&frame));
        assert_eq!(encode(&frame), bytes, "encode is not stable");
        // Append payloads may be PAM conversation steps: those round-trip too.
        if let Message::Tappend { data, .. } | Message::Rappend { data } = &frame.msg {
            if let Ok(answers) = AuthAnswers::decode(data) {
                assert_eq!(AuthAnswers::decode(&answers.encode()), Ok(answers));
            }
            if let Ok(step) = AuthStep::decode(data) {
                let enc = step.encode();
                assert_eq!(AuthStep::decode(&enc), Ok(step));
            }
            // …or directory listings.
            if let Ok(entries) = decode_listing(data) {
                assert_eq!(decode_listing(&encode_listing(&entries)), Ok(entries));
            }
        }
    }
});
