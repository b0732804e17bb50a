//! The handler link: pipelined calls answered out of order, flush, the in-flight
//! cap, handler errors and requests that are not part of the link.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod handler_support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use handler_support::{expect_error, LinkClient, Server};
use srpc::handler::{Bytes, Call, CallError, ErrorCode, MAX_CALLS_IN_FLIGHT};
use srpc_proto::{Frame, Message};
use tokio::sync::Semaphore;

/// A short pseudo-random delay for call `i`; call 0 waits longest, so it cannot be
/// answered first.
fn delay_for(i: u64) -> Duration {
    if i == 0 {
        return Duration::from_millis(40);
    }
    let mixed = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 59; // 0..32
    Duration::from_millis(mixed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_pipelined_calls_are_answered_out_of_order_and_matched_by_seq() {
    let server = Server::start(|call: Call| async move {
        let i: u64 = std::str::from_utf8(&call.data).unwrap().parse().unwrap();
        tokio::time::sleep(delay_for(i)).await;
        Ok(Bytes::from(format!("reply {i}")))
    });
    let mut client = LinkClient::connect(&server.path).await;
    let seq_of = |i: u64| 5000 + i * 7;
    for i in 0..200 {
        client.append(seq_of(i), i.to_string()).await;
    }
    let mut replies = HashMap::new();
    let mut order = Vec::new();
    for _ in 0..200 {
        let frame = client.recv().await.unwrap();
        let Message::Rappend { data } = frame.msg else {
            panic!("expected Rappend, got {:?}", frame.msg);
        };
        assert!(
            replies.insert(frame.seq, data).is_none(),
            "seq {} twice",
            frame.seq
        );
        order.push(frame.seq);
    }
    for i in 0..200 {
        assert_eq!(replies[&seq_of(i)], format!("reply {i}").as_bytes());
    }
    let sent: Vec<u64> = (0..200).map(seq_of).collect();
    assert_ne!(order, sent, "replies came back in sending order");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_call_is_never_answered_and_its_seq_can_be_reused() {
    let started = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&started);
    let server = Server::start(move |call: Call| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move {
            if &call.data[..] == b"block" {
                std::future::pending::<()>().await;
            }
            Ok(call.data)
        }
    });
    let mut client = LinkClient::connect(&server.path).await;
    client.append(1, "block").await;
    client
        .send(&Frame::new(2, Message::Tflush { oldseq: 1 }))
        .await;
    let frame = client.recv().await.unwrap();
    assert_eq!(frame, Frame::new(2, Message::Rflush));
    // Seq 1 is free again; the next frame is this call's reply, not the old one's.
    assert_eq!(client.call_ok(1, "again").await, "again");
    // Flushing a call that was answered already is answered at once.
    assert_eq!(client.call_ok(3, "done").await, "done");
    client
        .send(&Frame::new(4, Message::Tflush { oldseq: 3 }))
        .await;
    assert_eq!(client.recv().await.unwrap(), Frame::new(4, Message::Rflush));
    assert_eq!(started.load(Ordering::SeqCst), 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_the_in_flight_cap_get_limit_exceeded() {
    let gate = Arc::new(Semaphore::new(0));
    let handler_gate = Arc::clone(&gate);
    let server = Server::start(move |call: Call| {
        let gate = Arc::clone(&handler_gate);
        async move {
            let _permit = gate.acquire().await.unwrap();
            Ok(call.data)
        }
    });
    let mut client = LinkClient::connect(&server.path).await;
    let total = MAX_CALLS_IN_FLIGHT as u64 + 3;
    for seq in 0..total {
        client.append(seq, "x").await;
    }
    // The excess is refused at once, while the others wait at the gate.
    for expected in MAX_CALLS_IN_FLIGHT as u64..total {
        let frame = client.recv().await.unwrap();
        assert_eq!(frame.seq, expected);
        assert_eq!(expect_error(&frame.msg).0, ErrorCode::LimitExceeded);
    }
    gate.add_permits(MAX_CALLS_IN_FLIGHT);
    let mut answered = 0;
    while answered < MAX_CALLS_IN_FLIGHT {
        let frame = client.recv().await.unwrap();
        assert!(frame.seq < MAX_CALLS_IN_FLIGHT as u64);
        assert!(matches!(frame.msg, Message::Rappend { .. }), "{frame:?}");
        answered += 1;
    }
    // With the calls answered, there is room again.
    gate.add_permits(1);
    assert_eq!(client.call_ok(99_999, "room").await, "room");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_errors_are_sent_as_rerror() {
    let server = Server::start(|call: Call| async move {
        match &call.data[..] {
            b"deny" => Err(CallError::denied("not you")),
            b"fail" => Err(CallError::failed("it broke")),
            _ => Err(CallError::new(ErrorCode::Unavailable, "later")),
        }
    });
    let mut client = LinkClient::connect(&server.path).await;
    for (data, code, text) in [
        ("deny", ErrorCode::PermissionDenied, "not you"),
        ("fail", ErrorCode::CallFailed, "it broke"),
        ("other", ErrorCode::Unavailable, "later"),
    ] {
        let reply = client.call(7, data).await;
        assert_eq!(expect_error(&reply), (code, text));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_over_the_message_limit_becomes_limit_exceeded() {
    // The handler link's limit is the ceiling (protocol.md section 16): a reply
    // of exactly that many data bytes cannot fit with its header.
    let max = srpc_proto::INTERNAL_LINK_LIMITS.max_message as usize;
    let server = Server::start(move |_call: Call| async move { Ok(Bytes::from(vec![b'x'; max])) });
    let mut client = LinkClient::connect(&server.path).await;
    let reply = client.call(1, "big").await;
    let (code, message) = expect_error(&reply);
    assert_eq!(code, ErrorCode::LimitExceeded);
    assert!(message.contains("over the limit"), "{message}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_are_not_calls_are_protocol_errors() {
    let server = Server::start(|call: Call| async move {
        if &call.data[..] == b"slow" {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(call.data)
    });
    let mut client = LinkClient::connect(&server.path).await;
    let reply = client.call(1, Bytes::new()).await;
    assert_eq!(reply, Message::Rappend { data: Bytes::new() });
    let reply = {
        client
            .send(&Frame::new(2, Message::Tclunk { fid: 0 }))
            .await;
        client.recv().await.unwrap()
    };
    assert_eq!(reply.seq, 2);
    assert_eq!(expect_error(&reply.msg).0, ErrorCode::Protocol);
    let reply = {
        let data = Bytes::from_static(b"x");
        client.send(&Frame::new(3, Message::Rappend { data })).await;
        client.recv().await.unwrap()
    };
    assert_eq!(expect_error(&reply.msg).0, ErrorCode::Protocol);
    let reply = {
        let data = Bytes::from_static(b"x");
        client
            .send(&Frame::new(4, Message::Tappend { fid: 9, data }))
            .await;
        client.recv().await.unwrap()
    };
    assert_eq!(expect_error(&reply.msg).0, ErrorCode::BadFid);
    // A seq still pending cannot start a second call.
    client.append(5, "slow").await;
    client.append(5, "dup").await;
    let dup = client.recv().await.unwrap();
    assert_eq!(dup.seq, 5);
    assert_eq!(expect_error(&dup.msg).0, ErrorCode::Protocol);
    let slow = client.recv().await.unwrap();
    assert_eq!(
        slow,
        Frame::new(
            5,
            Message::Rappend {
                data: "slow".into()
            }
        )
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_still_arrive_after_the_worker_shuts_down_its_writing_side() {
    let server = Server::start(|call: Call| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(call.data)
    });
    let mut client = LinkClient::connect(&server.path).await;
    client.append(1, "a").await;
    client.append(2, "b").await;
    client.shutdown_write().await;
    let mut seqs = vec![
        client.recv().await.unwrap().seq,
        client.recv().await.unwrap().seq,
    ];
    seqs.sort_unstable();
    assert_eq!(seqs, [1, 2]);
    assert!(
        client.recv().await.is_none(),
        "connection closes after the last reply"
    );
    server.stop().await;
}
