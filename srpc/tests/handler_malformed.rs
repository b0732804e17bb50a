//! Bad bytes on the handler link: a malformed frame is answered and the
//! connection goes on; a bad header is answered and the connection closed; other
//! connections never notice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod handler_support;

use handler_support::{expect_error, LinkClient, Server};
use srpc::handler::Call;
use srpc_proto::{ErrorCode, Header, Kind, Message, HEADER_LEN};

fn echo_server() -> Server {
    Server::start(|call: Call| async move { Ok(call.data) })
}

/// A frame with this type, seq and body, whatever the body holds.
fn raw_frame(kind: u32, seq: u64, body: &[u8]) -> Vec<u8> {
    let header = Header {
        kind,
        seq,
        body_len: body.len() as u64,
    };
    let mut out = header.to_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// An append body: u32 control length, control, data.
fn append_body(control: &[u8], data: &[u8]) -> Vec<u8> {
    let mut body = u32::try_from(control.len()).unwrap().to_be_bytes().to_vec();
    body.extend_from_slice(control);
    body.extend_from_slice(data);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_rerror_malformed_and_the_connection_goes_on() {
    let server = echo_server();
    let mut client = LinkClient::connect(&server.path).await;
    let tappend = Kind::Tappend as u32;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            raw_frame(tappend, 1, &append_body(b"{\"fid\":", b"")),
            "JSON",
        ),
        (
            raw_frame(tappend, 2, &append_body(b"{\"fid\":0,\"fid\":0}", b"x")),
            "duplicate field",
        ),
        (
            raw_frame(tappend, 3, &append_body(b"{\"fid\":0,\"extra\":1}", b"x")),
            "unknown field",
        ),
        (raw_frame(tappend, 4, &[0, 0, 1, 0, b'{']), "control length"),
        (
            raw_frame(Kind::Tflush as u32, 5, b"{\"oldseq\":\"one\"}"),
            "oldseq",
        ),
    ];
    for (bytes, needle) in cases {
        let seq = Header::parse(&bytes).unwrap().seq;
        client.send_raw(&bytes).await;
        let reply = client.recv().await.unwrap();
        assert_eq!(reply.seq, seq);
        let (code, message) = expect_error(&reply.msg);
        assert_eq!(code, ErrorCode::Malformed, "{message}");
        assert!(message.contains(needle), "{needle}: {message}");
    }
    assert_eq!(client.call_ok(6, "still here").await, "still here");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_header_is_answered_then_the_connection_closes_and_others_carry_on() {
    let server = echo_server();
    let mut bystander = LinkClient::connect(&server.path).await;
    assert_eq!(bystander.call_ok(1, "before").await, "before");

    // A declared length far over max_message: refused before any body arrives.
    let mut huge = LinkClient::connect(&server.path).await;
    let header = Header {
        kind: Kind::Tappend as u32,
        seq: 77,
        body_len: 1 << 40,
    };
    huge.send_raw(&header.to_bytes()).await;
    let reply = huge.recv().await.unwrap();
    assert_eq!(reply.seq, 77);
    assert_eq!(expect_error(&reply.msg).0, ErrorCode::LimitExceeded);
    assert!(huge.recv().await.is_none(), "connection must close");

    // An unknown message type: the stream cannot be resynchronised either.
    let mut unknown = LinkClient::connect(&server.path).await;
    unknown.send_raw(&raw_frame(0xdead, 78, b"{}")).await;
    let reply = unknown.recv().await.unwrap();
    assert_eq!(reply.seq, 78);
    assert_eq!(expect_error(&reply.msg).0, ErrorCode::Malformed);
    assert!(unknown.recv().await.is_none(), "connection must close");

    // A connection that ends in the middle of a frame is just closed.
    let mut cut = LinkClient::connect(&server.path).await;
    cut.send_raw(&[0u8; HEADER_LEN / 2]).await;
    cut.shutdown_write().await;
    assert!(cut.recv().await.is_none());

    assert_eq!(bystander.call_ok(2, "after").await, "after");
    let mut fresh = LinkClient::connect(&server.path).await;
    assert_eq!(fresh.call_ok(1, "new").await, "new");
    assert!(matches!(
        fresh.call(2, "again").await,
        Message::Rappend { .. }
    ));
    server.stop().await;
}
