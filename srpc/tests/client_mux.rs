//! The connection multiplexer against the test server: pipelining, flush,
//! timeouts, connection loss, malformed replies and limits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/test_server.rs"]
mod test_server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use srpc::client::{DialOptions, Error, Trust};
use srpc::proto::{Limits, Message};
use test_server::{login, Knobs, TestServer};

/// Only guards against a hang; the tests never wait this long when they pass.
const HANG: Duration = Duration::from_secs(10);

async fn dial_with(server: &TestServer, limits: Limits) -> srpc::client::Client {
    DialOptions::new()
        .limits(limits)
        .dial(server.addr, "localhost", Trust::Pin(server.fingerprint))
        .await
        .unwrap()
}

fn is_append_to(fid: u32) -> impl Fn(&srpc::proto::Frame) -> bool {
    move |f| matches!(f.msg, Message::Tappend { fid: g, .. } if g == fid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_pipelined_appends_get_their_own_replies() {
    const N: usize = 1000;
    let server = TestServer::start(Knobs {
        collect: N,
        ..Knobs::default()
    })
    .await;
    let client = server.dial().await;
    let session = login(&client, "alice").await;
    let collect = Arc::new(session.walk("collect").await.unwrap());

    let mut calls = tokio::task::JoinSet::new();
    for i in 0..N {
        let collect = Arc::clone(&collect);
        calls.spawn(async move {
            let request = format!("request {i}").into_bytes();
            let reply = collect.append(request.clone()).await.unwrap();
            assert_eq!(
                &reply[..],
                &request[..],
                "reply {i} belongs to another request"
            );
            i
        });
    }
    let mut done = vec![false; N];
    while let Some(i) = tokio::time::timeout(HANG, calls.join_next()).await.unwrap() {
        done[i.unwrap()] = true;
    }
    assert!(done.iter().all(|d| *d));
    // The server held all of them before answering, so all were in flight at once.
    assert_eq!(server.max_outstanding(), N);
}

#[tokio::test]
async fn max_pending_bounds_the_requests_in_flight_keeping_a_slot_for_flushes() {
    // With max_pending 5, calls may use 4 slots (one is kept for flushes). The
    // gate holds calls until the test opens it, so whatever the client sends piles
    // up at the server, and the server refuses anything over 5.
    let server = TestServer::start(Knobs::default()).await;
    let client = dial_with(
        &server,
        Limits {
            max_pending: 5,
            ..Limits::default()
        },
    )
    .await;
    assert_eq!(client.limits().max_pending, 5);
    let session = login(&client, "alice").await;
    let gate = Arc::new(session.walk("gate").await.unwrap());
    let mark = server.mark();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..12 {
        let gate = Arc::clone(&gate);
        calls.spawn(async move {
            let request = vec![i; 3];
            assert_eq!(gate.append(request.clone()).await.unwrap(), request);
        });
    }
    let gate_fid = gate.id();
    for round in 1..=3 {
        server
            .wait_until("four more gated calls", |frames| {
                let n = frames[mark..]
                    .iter()
                    .filter(|f| is_append_to(gate_fid)(f))
                    .count();
                (n >= 4 * round).then_some(())
            })
            .await;
        server.open_gate();
    }
    while let Some(r) = tokio::time::timeout(HANG, calls.join_next()).await.unwrap() {
        r.unwrap();
    }
    assert_eq!(server.max_outstanding(), 4);
}

#[tokio::test]
async fn a_call_at_the_pending_limit_can_still_be_flushed() {
    let server = TestServer::start(Knobs::default()).await;
    let client = dial_with(
        &server,
        Limits {
            max_pending: 2,
            ..Limits::default()
        },
    )
    .await;
    let session = login(&client, "alice").await;
    let hold = session
        .walk("hold")
        .await
        .unwrap()
        .with_timeout(Duration::from_millis(100));
    let err = hold.append(&b"stuck"[..]).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    server
        .wait_for("the flush", |f| matches!(f.msg, Message::Tflush { .. }))
        .await;
    // The call's slot is free again once the Rflush is in.
    let echo = session.walk("echo").await.unwrap();
    assert_eq!(&echo.append(&b"next"[..]).await.unwrap()[..], b"next");
    assert_eq!(server.max_outstanding(), 2, "the held call and its flush");
}

#[tokio::test]
async fn a_dropped_call_is_flushed_its_late_reply_ignored_and_its_seq_reused() {
    let server = TestServer::start(Knobs {
        late_reply: true,
        ..Knobs::default()
    })
    .await;
    let client = server.dial().await;
    let session = login(&client, "alice").await;
    let hold = session.walk("hold").await.unwrap();
    let echo = session.walk("echo").await.unwrap();
    // Fid numbers are reused (the auth fid's among them): look only at what follows.
    let mark = server.mark();

    let call = Box::pin(hold.append(&b"first"[..]));
    let parked = {
        let mut call = call;
        let seen = tokio::select! {
            r = &mut call => panic!("hold answered: {r:?}"),
            f = server.wait_for_after(mark, "the held append", is_append_to(hold.id())) => f,
        };
        drop(call);
        seen
    };
    let flush = server
        .wait_for(
            "a flush of the dropped call",
            |f| matches!(f.msg, Message::Tflush { oldseq } if oldseq == parked.seq),
        )
        .await;
    assert_ne!(flush.seq, parked.seq);

    // The server answered the held call ("late") before Rflush. Once a later reply
    // is in, both have been processed; the late reply must have been dropped, not
    // taken as a protocol fault or delivered to anyone.
    session.root().stat().await.unwrap();
    assert!(!client.is_closed());

    let reply = echo.append(&b"second"[..]).await.unwrap();
    assert_eq!(&reply[..], b"second");
    let second = server
        .wait_for_after(mark, "the second append", is_append_to(echo.id()))
        .await;
    assert_eq!(second.seq, parked.seq, "the flushed seq was not reused");
}

#[tokio::test]
async fn a_call_without_reply_times_out_and_is_flushed() {
    let server = TestServer::start(Knobs::default()).await;
    let client = server.dial().await;
    let session = login(&client, "alice").await;
    let hold = session
        .walk("hold")
        .await
        .unwrap()
        .with_timeout(Duration::from_millis(200));
    let mark = server.mark();

    let started = Instant::now();
    let err = hold.append(&b"never answered"[..]).await.unwrap_err();
    assert!(
        matches!(err, Error::Timeout { after } if after == Duration::from_millis(200)),
        "{err:?}"
    );
    assert!(started.elapsed() < HANG);
    let timed_out = server
        .wait_for_after(mark, "the held append", is_append_to(hold.id()))
        .await;
    server
        .wait_for(
            "a flush of the timed-out call",
            |f| matches!(f.msg, Message::Tflush { oldseq } if oldseq == timed_out.seq),
        )
        .await;
    // The connection is still good.
    let echo = session.walk("echo").await.unwrap();
    assert_eq!(&echo.append(&b"x"[..]).await.unwrap()[..], b"x");
}

#[tokio::test]
async fn the_server_closing_fails_every_pending_call() {
    let server = TestServer::start(Knobs::default()).await;
    let client = server.dial().await;
    let session = login(&client, "alice").await;
    let hold = Arc::new(session.walk("hold").await.unwrap().with_timeout(None));
    let close = session.walk("close").await.unwrap();
    let mark = server.mark();

    let mut pending = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let hold = Arc::clone(&hold);
        pending.spawn(async move { hold.append(&b"wait"[..]).await });
    }
    let held_fid = hold.id();
    server
        .wait_until("three held appends", |frames| {
            let count = frames[mark..]
                .iter()
                .filter(|f| is_append_to(held_fid)(f))
                .count();
            (count == 3).then_some(())
        })
        .await;
    let err = tokio::time::timeout(HANG, close.append(&b"bye"[..]))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::ConnectionClosed { .. }), "{err:?}");
    while let Some(r) = tokio::time::timeout(HANG, pending.join_next())
        .await
        .unwrap()
    {
        let err = r.unwrap().unwrap_err();
        assert!(matches!(err, Error::ConnectionClosed { .. }), "{err:?}");
        assert!(err.to_string().contains("server closed"), "{err}");
    }
    assert!(client.is_closed());
    let err = hold.stat().await.unwrap_err();
    assert!(matches!(err, Error::ConnectionClosed { .. }), "{err:?}");
}

#[tokio::test]
async fn a_malformed_reply_is_a_protocol_error_for_every_pending_call() {
    let server = TestServer::start(Knobs::default()).await;
    let client = server.dial().await;
    let session = login(&client, "alice").await;
    let hold = Arc::new(session.walk("hold").await.unwrap().with_timeout(None));
    let garbage = session.walk("garbage").await.unwrap();
    let mark = server.mark();
    let waiting = {
        let hold = Arc::clone(&hold);
        tokio::spawn(async move { hold.append(&b"wait"[..]).await })
    };
    server
        .wait_for_after(mark, "the held append", is_append_to(hold.id()))
        .await;

    let err = garbage.append(&b"x"[..]).await.unwrap_err();
    let Error::Protocol(detail) = &err else {
        panic!("{err:?}")
    };
    assert!(detail.contains("malformed Rappend"), "{detail}");
    let err = tokio::time::timeout(HANG, waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "{err:?}");
    assert!(client.is_closed());
}

#[tokio::test]
async fn an_oversized_reply_is_a_protocol_error() {
    let server = TestServer::start(Knobs::default()).await;
    let client = server.dial().await;
    let session = login(&client, "alice").await;
    let huge = session.walk("huge").await.unwrap();
    let err = huge.append(&b"x"[..]).await.unwrap_err();
    let Error::Protocol(detail) = &err else {
        panic!("{err:?}")
    };
    assert!(detail.contains("over the limit"), "{detail}");
    assert!(client.is_closed());
}

#[tokio::test]
async fn a_reply_of_the_wrong_type_names_what_arrived() {
    let server = TestServer::start(Knobs::default()).await;
    let client = server.dial().await;
    let session = login(&client, "alice").await;
    let wrong = session.walk("wrongtype").await.unwrap();
    let err = wrong.append(&b"x"[..]).await.unwrap_err();
    let Error::Protocol(detail) = &err else {
        panic!("{err:?}")
    };
    assert!(detail.contains("expected Rappend"), "{detail}");
    assert!(detail.contains("received Rclunk"), "{detail}");
    // A well-formed reply of the wrong type spoils only its own call.
    let echo = session.walk("echo").await.unwrap();
    assert_eq!(&echo.append(&b"ok"[..]).await.unwrap()[..], b"ok");
}

#[tokio::test]
async fn a_dropped_fid_is_clunked_and_its_number_reused() {
    let server = TestServer::start(Knobs::default()).await;
    let client = server.dial().await;
    let session = login(&client, "alice").await;
    let echo = session.walk("echo").await.unwrap();
    let id = echo.id();
    let mark = server.mark();
    drop(echo);
    server
        .wait_for_after(
            mark,
            "a clunk of the dropped fid",
            |f| matches!(f.msg, Message::Tclunk { fid } if fid == id),
        )
        .await;
    // Replies come in order here, so the clunk is answered once this is.
    session.root().stat().await.unwrap();
    assert_eq!(session.walk("echo").await.unwrap().id(), id);
}

#[tokio::test]
async fn fid_and_message_limits_are_enforced_before_sending() {
    let server = TestServer::start(Knobs::default()).await;
    let client = dial_with(
        &server,
        Limits {
            max_fids: 3,
            max_message: 4096,
            max_walk: 1,
            ..Limits::default()
        },
    )
    .await;
    let session = login(&client, "alice").await;
    let sent_before = server.received().len();
    let err = session.walk("sub/leaf").await.unwrap_err();
    assert!(
        matches!(&err, Error::LimitExceeded(m) if m.contains("max_walk")),
        "{err:?}"
    );

    let echo = session.walk("echo").await.unwrap();
    let sub = session.walk("sub").await.unwrap();
    let err = sub.walk("leaf").await.unwrap_err();
    assert!(
        matches!(&err, Error::LimitExceeded(m) if m.contains("fids")),
        "{err:?}"
    );
    echo.clunk().await.unwrap();
    let leaf = sub.walk("leaf").await.unwrap();

    let err = leaf.append(vec![0u8; 5000]).await.unwrap_err();
    assert!(
        matches!(&err, Error::LimitExceeded(m) if m.contains("max_message")),
        "{err:?}"
    );
    assert_eq!(
        server.received().len(),
        sent_before + 4,
        "only the requests within the limits went out (three walks and a clunk)"
    );
    assert_eq!(&leaf.append(&b"fits"[..]).await.unwrap()[..], b"fits");
}
