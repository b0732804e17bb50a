//! Encoding and decoding of whole frames.

use bytes::Bytes;

use crate::error::{DecodeError, ErrorCode, FieldError};
use crate::header::{Header, HEADER_LEN};
use crate::json::{item_name, item_object, parse_object, write_array, Fields, ObjWriter};
use crate::limits::Limits;
use crate::message::{Frame, Kind, Message, Qid, QidType, Stat};

/// Encodes a frame.
pub fn encode(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(frame, &mut out);
    out
}

/// Appends the encoding of `frame` to `out`.
pub fn encode_into(frame: &Frame, out: &mut Vec<u8>) {
    let data = encode_head(frame, out);
    out.extend_from_slice(data);
}

/// A frame encoded in two parts: the header and control part, then an
/// append's data, the caller's bytes as they were (not copied). Written one
/// after the other, they are the frame [`encode`] makes.
#[derive(Debug, Clone, Default)]
pub struct Encoded {
    pub head: Vec<u8>,
    pub data: Bytes,
}

impl Encoded {
    /// The frame's length on the wire.
    pub fn len(&self) -> usize {
        self.head.len() + self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The two parts, in order.
    pub fn parts(&self) -> [&[u8]; 2] {
        [&self.head, &self.data]
    }

    /// Puts `seq` in the header (a link numbers a frame only once it has
    /// room in its queue).
    pub fn set_seq(&mut self, seq: u64) {
        if let (Some(header), Some(head)) =
            (Header::parse(&self.head), self.head.get_mut(..HEADER_LEN))
        {
            head.copy_from_slice(&Header { seq, ..header }.to_bytes());
        }
    }
}

/// Data at least this large stays out of [`Encoded::head`]; smaller data is
/// copied into it.
pub const SPLIT_AT: usize = 16 * 1024;

/// Encodes `frame` without copying an append's data of [`SPLIT_AT`] bytes or
/// more ([`Encoded`]). Smaller data is copied: a small `Bytes` may share (and
/// keep alive) a much larger read buffer, which a queue charged by frame
/// length must not hold.
pub fn encode_split(frame: &Frame) -> Encoded {
    let mut head = Vec::new();
    let data = encode_head(frame, &mut head);
    if data.len() < SPLIT_AT {
        head.extend_from_slice(data);
        return Encoded {
            head,
            data: Bytes::new(),
        };
    }
    let data = data.clone();
    Encoded { head, data }
}

/// Appends the header and control part of `frame` to `out`, the header
/// counting the append data too, and returns that data (empty if none).
fn encode_head<'a>(frame: &'a Frame, out: &mut Vec<u8>) -> &'a Bytes {
    static NONE: Bytes = Bytes::new();
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    let data = match &frame.msg {
        Message::Tappend { data, .. } | Message::Rappend { data } => Some(data),
        _ => None,
    };
    if data.is_some() {
        // Append bodies: u32 control length, control JSON, then the raw data.
        let prefix_at = out.len();
        out.extend_from_slice(&[0u8; 4]);
        write_control(&frame.msg, out);
        let control_len = out.len() - prefix_at - 4;
        let control_len = u32::try_from(control_len).unwrap_or(u32::MAX);
        out[prefix_at..prefix_at + 4].copy_from_slice(&control_len.to_be_bytes());
    } else {
        write_control(&frame.msg, out);
    }
    let data_len = data.map_or(0, Bytes::len);
    let header = Header {
        kind: frame.msg.kind() as u32,
        seq: frame.seq,
        body_len: (out.len() - start - HEADER_LEN + data_len) as u64,
    };
    out[start..start + HEADER_LEN].copy_from_slice(&header.to_bytes());
    data.unwrap_or(&NONE)
}

fn write_limits(out: &mut Vec<u8>, l: &Limits) {
    ObjWriter::begin(out)
        .num("max_message", l.max_message)
        .num("max_fids", l.max_fids)
        .num("max_walk", l.max_walk)
        .num("max_name", l.max_name)
        .num("max_pending", l.max_pending)
        .end();
}

fn write_qid(out: &mut Vec<u8>, q: &Qid) {
    ObjWriter::begin(out)
        .str("type", q.kind.as_str())
        .num("path", q.path)
        .num("version", q.version)
        .end();
}

fn write_control(msg: &Message, out: &mut Vec<u8>) {
    let mut w = ObjWriter::begin(out);
    match msg {
        Message::Tversion { version, limits } | Message::Rversion { version, limits } => {
            w.str("version", version)
                .with("limits", |o| write_limits(o, limits));
        }
        Message::Tauth { afid, uname, aname } => {
            w.num("afid", afid).str("uname", uname).str("aname", aname);
        }
        Message::Rauth { aqid } => {
            w.with("aqid", |o| write_qid(o, aqid));
        }
        Message::Tattach {
            fid,
            afid,
            uname,
            aname,
        } => {
            w.num("fid", fid)
                .num("afid", afid)
                .str("uname", uname)
                .str("aname", aname);
        }
        Message::Rattach { qid } => {
            w.with("qid", |o| write_qid(o, qid));
        }
        Message::Twalk { fid, newfid, names } => {
            w.num("fid", fid).num("newfid", newfid).with("names", |o| {
                write_array(o, names, |o, n| crate::json::write_str(o, n));
            });
        }
        Message::Rwalk { qids } => {
            w.with("qids", |o| write_array(o, qids, write_qid));
        }
        Message::Tstat { fid } | Message::Tclunk { fid } | Message::Tappend { fid, .. } => {
            w.num("fid", fid);
        }
        Message::Rstat { stat } => {
            w.with("stat", |o| write_stat(o, stat));
        }
        Message::Tflush { oldseq } => {
            w.num("oldseq", oldseq);
        }
        Message::Rclunk | Message::Rflush | Message::Rappend { .. } => {}
        Message::Rerror {
            code,
            message,
            errno,
        } => {
            w.num("code", code.number()).str("message", message);
            if let Some(errno) = errno {
                w.num("errno", errno);
            }
        }
    }
    w.end();
}

pub(crate) fn write_stat(out: &mut Vec<u8>, s: &Stat) {
    let mut w = ObjWriter::begin(out);
    w.with("qid", |o| write_qid(o, &s.qid))
        .str("name", &s.name)
        .num("mode", s.mode)
        .num("uid", s.uid)
        .num("gid", s.gid)
        .str("owner", &s.owner)
        .str("group", &s.group)
        .num("mtime", s.mtime);
    if let Some(label) = &s.label {
        w.str("label", label);
    }
    w.end();
}

/// Decodes exactly one frame from `buf`, which must hold the whole frame and
/// nothing after it. Names are checked against `limits`.
pub fn decode(buf: &[u8], limits: &Limits) -> Result<Frame, DecodeError> {
    decode_with(buf, limits, Bytes::copy_from_slice)
}

/// As [`decode`], taking the frame as [`Bytes`] so append data is not copied.
pub fn decode_bytes(buf: &Bytes, limits: &Limits) -> Result<Frame, DecodeError> {
    decode_with(buf, limits, |data| buf.slice_ref(data))
}

fn decode_with(
    buf: &[u8],
    limits: &Limits,
    data_of: impl FnOnce(&[u8]) -> Bytes,
) -> Result<Frame, DecodeError> {
    let header = Header::parse(buf).ok_or(DecodeError::Truncated {
        expected: HEADER_LEN,
        got: buf.len(),
    })?;
    let kind = Kind::from_u32(header.kind).ok_or(DecodeError::UnknownType(header.kind))?;
    let len = header.frame_len(limits)?;
    if buf.len() < len {
        return Err(DecodeError::Truncated {
            expected: len,
            got: buf.len(),
        });
    }
    if buf.len() > len {
        return Err(DecodeError::TrailingBytes {
            extra: buf.len() - len,
        });
    }
    let body = &buf[HEADER_LEN..];
    let msg = match kind {
        Kind::Tappend | Kind::Rappend => {
            let (control, data) = split_append(body)?;
            let mut f = parse_object(control)?;
            let data = data_of(data);
            let msg = if kind == Kind::Tappend {
                Message::Tappend {
                    fid: f.u32("fid")?,
                    data,
                }
            } else {
                Message::Rappend { data }
            };
            f.finish()?;
            msg
        }
        _ => {
            let mut f = parse_object(body)?;
            let msg = decode_control(kind, &mut f, limits)?;
            f.finish()?;
            msg
        }
    };
    Ok(Frame {
        seq: header.seq,
        msg,
    })
}

fn split_append(body: &[u8]) -> Result<(&[u8], &[u8]), DecodeError> {
    let bad = |control_len| DecodeError::BadAppendLayout {
        control_len,
        body_len: body.len(),
    };
    let (prefix, rest) = body.split_first_chunk::<4>().ok_or(bad(0))?;
    let control_len = u32::from_be_bytes(*prefix);
    let n = control_len as usize;
    if n > rest.len() {
        return Err(bad(u64::from(control_len)));
    }
    Ok(rest.split_at(n))
}

fn decode_control(kind: Kind, f: &mut Fields, limits: &Limits) -> Result<Message, DecodeError> {
    let max_name = limits.max_name;
    Ok(match kind {
        Kind::Tversion | Kind::Rversion => {
            let version = f.string("version")?;
            let limits = read_limits(f.object("limits")?)?;
            if kind == Kind::Tversion {
                Message::Tversion { version, limits }
            } else {
                Message::Rversion { version, limits }
            }
        }
        Kind::Tauth => Message::Tauth {
            afid: f.u32("afid")?,
            uname: f.name("uname", max_name)?,
            aname: f.path_value("aname", max_name)?,
        },
        Kind::Rauth => Message::Rauth {
            aqid: read_qid(f.object("aqid")?)?,
        },
        Kind::Tattach => Message::Tattach {
            fid: f.u32("fid")?,
            afid: f.u32("afid")?,
            uname: f.name("uname", max_name)?,
            aname: f.path_value("aname", max_name)?,
        },
        Kind::Rattach => Message::Rattach {
            qid: read_qid(f.object("qid")?)?,
        },
        Kind::Twalk => {
            let fid = f.u32("fid")?;
            let newfid = f.u32("newfid")?;
            let names = f.array("names", |v, path| item_name(v, path, max_name))?;
            if names.len() > limits.max_walk as usize {
                return Err(DecodeError::TooManyWalkElements {
                    count: names.len(),
                    max: limits.max_walk,
                });
            }
            Message::Twalk { fid, newfid, names }
        }
        Kind::Rwalk => Message::Rwalk {
            qids: f.array("qids", |v, path| read_qid(item_object(v, &path)?))?,
        },
        Kind::Tstat => Message::Tstat { fid: f.u32("fid")? },
        Kind::Rstat => Message::Rstat {
            stat: read_stat(f.object("stat")?)?,
        },
        Kind::Tclunk => Message::Tclunk { fid: f.u32("fid")? },
        Kind::Rclunk => Message::Rclunk,
        Kind::Tflush => Message::Tflush {
            oldseq: f.u64("oldseq")?,
        },
        Kind::Rflush => Message::Rflush,
        Kind::Rerror => Message::Rerror {
            code: ErrorCode::from_number(f.u32("code")?),
            message: f.string("message")?,
            errno: f.opt_i32("errno")?,
        },
        // Handled by the caller: append bodies have their own layout.
        Kind::Tappend | Kind::Rappend => {
            return Err(DecodeError::field(
                "fid",
                FieldError::OutOfRange("append body without its layout".into()),
            ))
        }
    })
}

fn read_limits(mut f: Fields) -> Result<Limits, DecodeError> {
    let limits = Limits {
        max_message: f.u32("max_message")?,
        max_fids: f.u32("max_fids")?,
        max_walk: f.u32("max_walk")?,
        max_name: f.u32("max_name")?,
        max_pending: f.u32("max_pending")?,
    };
    f.finish()?;
    Ok(limits)
}

fn read_qid(mut f: Fields) -> Result<Qid, DecodeError> {
    let kind = f.string("type")?;
    let kind = QidType::parse(&kind).ok_or_else(|| {
        DecodeError::field(
            f.path("type"),
            FieldError::OutOfRange(format!("unknown qid type `{kind}`")),
        )
    })?;
    let qid = Qid {
        kind,
        path: f.u64("path")?,
        version: f.u64("version")?,
    };
    f.finish()?;
    Ok(qid)
}

pub(crate) fn read_stat(mut f: Fields) -> Result<Stat, DecodeError> {
    let stat = Stat {
        qid: read_qid(f.object("qid")?)?,
        name: f.string("name")?,
        mode: f.u32("mode")?,
        uid: f.u32("uid")?,
        gid: f.u32("gid")?,
        owner: f.string("owner")?,
        group: f.string("group")?,
        mtime: f.i64("mtime")?,
        label: f.opt_string("label")?,
    };
    f.finish()?;
    Ok(stat)
}
