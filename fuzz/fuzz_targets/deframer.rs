//! Arbitrary bytes through the `Deframer`, cut into arbitrary reads: the
//! frames and the final verdict must not depend on how the stream was cut,
//! every frame is within `max_message` and is exactly the next bytes of the
//! stream, and nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use srpc_proto::{DeframeError, Deframer, Limits};

/// Feeds `stream` in pieces of the given sizes (cycled); returns the frames
/// and how it ended (`None`: cleanly, between frames).
fn run(stream: &[u8], cuts: &[u8], limits: &Limits) -> (Vec<Vec<u8>>, Option<DeframeError>) {
    let mut d = Deframer::new();
    let mut frames = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    loop {
        loop {
            match d.next_frame(limits) {
                Ok(Some(raw)) => frames.push(raw.bytes().to_vec()),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
        if rest.is_empty() {
            return (frames, d.end(limits).err());
        }
        let n = cuts
            .get(i % cuts.len().max(1))
            .map_or(rest.len(), |&c| usize::from(c) + 1);
        let (piece, tail) = rest.split_at(n.min(rest.len()));
        d.buffer(limits).extend_from_slice(piece);
        rest = tail;
        i += 1;
    }
}

fuzz_target!(|data: &[u8]| {
    // First byte: how many cut sizes follow; the rest is the stream.
    let Some((&ncuts, data)) = data.split_first() else {
        return;
    };
    let (cuts, stream) = data.split_at(usize::from(ncuts % 16).min(data.len()));
    // A small max_message, so size refusals are reached.
    let limits = Limits {
        max_message: 4096,
        ..Limits::default()
    };
    let (whole, end_whole) = run(stream, &[], &limits);
    let (cut, end_cut) = run(stream, cuts, &limits);
    assert_eq!(whole, cut);
    let consumed: usize = whole.iter().map(Vec::len).sum();
    assert_eq!(whole.concat(), stream[..consumed]);
    for f in &whole {
        assert!(f.len() <= limits.max_message as usize);
    }
    // Same verdict; a truncation's received count may only depend on the stream.
    assert_eq!(end_whole, end_cut);
    if end_whole.is_none() {
        assert_eq!(consumed, stream.len());
    }
});
