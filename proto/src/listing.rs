//! Directory listings: what an append with no data to a directory fid returns.
//! The entries are the stat objects of `Rstat`, so a listing is read with the
//! same rules as a stat.

use crate::codec::{read_stat, write_stat};
use crate::error::DecodeError;
use crate::json::{item_object, parse_object, write_array, ObjWriter};
use crate::message::Stat;

/// The `Rappend` payload listing a directory: `{"entries":[stat, …]}`.
pub fn encode_listing(entries: &[Stat]) -> Vec<u8> {
    let mut out = Vec::new();
    ObjWriter::begin(&mut out)
        .with("entries", |o| write_array(o, entries, write_stat))
        .end();
    out
}

/// Reads a directory listing payload.
pub fn decode_listing(data: &[u8]) -> Result<Vec<Stat>, DecodeError> {
    let mut f = parse_object(data)?;
    let entries = f.array("entries", |v, path| read_stat(item_object(v, &path)?))?;
    f.finish()?;
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Qid, QidType};

    #[test]
    fn listings_round_trip_and_are_strict() {
        let stat = Stat {
            qid: Qid {
                kind: QidType::Endpoint,
                path: 7,
                version: 1,
            },
            name: "echo".into(),
            mode: 0o755,
            uid: 0,
            gid: 0,
            owner: "root".into(),
            group: "root".into(),
            mtime: 1_700_000_000,
            label: None,
        };
        let bytes = encode_listing(std::slice::from_ref(&stat));
        assert_eq!(decode_listing(&bytes).unwrap(), vec![stat]);
        assert_eq!(decode_listing(br#"{"entries":[]}"#).unwrap(), vec![]);
        assert!(decode_listing(br#"{"entries":[],"more":true}"#).is_err());
        assert!(decode_listing(br#"{"entries":[{"name":"x"}]}"#).is_err());
    }
}
