//! The worker's end of its link to the front: srpc frames over a Unix stream,
//! with fids and sequence numbers already rewritten by the front.

use bytes::BytesMut;
use srpc_proto::{check, decode_bytes, encode, Check, ErrorCode, Frame, Limits, Message};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::tree::Tree;

/// Serves the link until the front closes it. Requests are answered in order;
/// attach, walk, stat and clunk are single system calls on the user's behalf.
pub async fn serve<S>(mut link: S, mut tree: Tree, limits: Limits) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(8192);
    loop {
        match check(&buf, &limits) {
            Check::Complete(len) => {
                let frame = buf.split_to(len).freeze();
                let reply = match decode_bytes(&frame, &limits) {
                    Ok(Frame { seq, msg }) => Frame::new(seq, handle(&mut tree, msg)),
                    Err(e) => Frame::new(
                        srpc_proto::Header::parse(&frame).map_or(0, |h| h.seq),
                        Message::error(e.code(), e.to_string()),
                    ),
                };
                link.write_all(&encode(&reply)).await?;
            }
            Check::Invalid(e) => {
                // The front never sends this; the stream cannot be trusted further.
                tracing::error!("worker link: {e}");
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
            }
            Check::Incomplete => {
                if link.read_buf(&mut buf).await? == 0 {
                    return Ok(());
                }
                if buf.capacity() - buf.len() < 1024 {
                    buf.reserve(8192);
                }
            }
        }
    }
}

fn handle(tree: &mut Tree, msg: Message) -> Message {
    let result = match msg {
        Message::Tattach {
            fid, uname, aname, ..
        } => tree
            .attach(fid, &uname, &aname)
            .map(|qid| Message::Rattach { qid }),
        Message::Twalk { fid, newfid, names } => tree
            .walk(fid, newfid, &names)
            .map(|qids| Message::Rwalk { qids }),
        Message::Tstat { fid } => tree.stat(fid).map(|stat| Message::Rstat { stat }),
        Message::Tclunk { fid } => tree.clunk(fid).map(|()| Message::Rclunk),
        Message::Tappend { .. } => {
            return Message::error(
                ErrorCode::Unavailable,
                "calls to endpoints are not served by this version of srpcd",
            )
        }
        Message::Tflush { .. } => return Message::Rflush,
        other => {
            return Message::error(
                ErrorCode::Protocol,
                format!("{:?} is not a worker request", other.kind()),
            )
        }
    };
    result.unwrap_or_else(super::tree::Refusal::into_message)
}
