//! Arbitrary bytes through `check` and `decode`: neither may panic, and they
//! must agree on where a frame ends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use srpc_proto::{check, decode, Check, DecodeError, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let whole = decode(data, &limits);
    match check(data, &limits) {
        Check::Incomplete => {
            // Not a whole frame yet: decoding must say so, never succeed.
            assert!(
                matches!(whole, Err(DecodeError::Truncated { .. })),
                "check said Incomplete, decode gave {whole:?}"
            );
        }
        Check::Invalid(e) => {
            // The header is unacceptable: decode must reject it the same way.
            assert_eq!(whole, Err(e));
        }
        Check::Complete(n) => {
            assert!(n <= data.len());
            let exact = decode(&data[..n], &limits);
            // Framing agrees: the exact frame is never truncated or trailing…
            assert!(
                !matches!(
                    exact,
                    Err(DecodeError::Truncated { .. } | DecodeError::TrailingBytes { .. })
                ),
                "check said Complete({n}), decode gave {exact:?}"
            );
            // …and anything after it is reported as trailing bytes.
            if n < data.len() {
                assert_eq!(
                    whole,
                    Err(DecodeError::TrailingBytes {
                        extra: data.len() - n
                    })
                );
            } else {
                assert_eq!(whole, exact);
            }
        }
    }
});
