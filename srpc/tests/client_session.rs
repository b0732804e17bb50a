//! Authentication, sessions, walk/stat and server errors against the test server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/test_server.rs"]
mod test_server;

use srpc::client::{Error, PasswordConversation};
use srpc::proto::{ErrorCode, Message, NameError, PromptStyle, QidType};
use test_server::{login, Knobs, TestServer, LEAF_LABEL};

#[tokio::test]
async fn a_two_round_conversation_authenticates_and_keeps_messages() {
    let server = TestServer::start(Knobs::default()).await;
    let client = server.dial().await;
    let mut conv = PasswordConversation::new("wonderland");
    let session = client.auth("alice", "/", &mut conv).await.unwrap();
    assert_eq!(session.user(), "alice");
    assert_eq!(session.aname(), "/");
    let messages: Vec<_> = conv
        .messages()
        .iter()
        .map(|p| (p.style, p.text.as_str()))
        .collect();
    assert_eq!(messages, [(PromptStyle::Info, "Welcome, alice")]);

    // Three appends on the auth fid (empty, then one per round), then attach,
    // then the auth fid is clunked.
    let frames = server.received();
    let Some(Message::Tauth { afid, .. }) = frames
        .iter()
        .map(|f| &f.msg)
        .find(|m| matches!(m, Message::Tauth { .. }))
    else {
        panic!("no Tauth")
    };
    let rounds = frames
        .iter()
        .filter(|f| matches!(f.msg, Message::Tappend { fid, .. } if fid == *afid))
        .count();
    assert_eq!(rounds, 3);
    assert!(frames
        .iter()
        .any(|f| matches!(f.msg, Message::Tclunk { fid } if fid == *afid)));
}

#[tokio::test]
async fn a_wrong_password_is_auth_failed_and_leaves_no_fid_behind() {
    let server = TestServer::start(Knobs::default()).await;
    let client = server.dial().await;
    let err = client
        .auth(
            "alice",
            "/",
            &mut PasswordConversation::new("not the password"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AuthFailed), "{err:?}");
    assert!(!err.to_string().contains("not the password"));
    // The auth fid is clunked in the background.
    let afid = server
        .wait_for("Tauth", |f| matches!(f.msg, Message::Tauth { .. }))
        .await;
    let Message::Tauth { afid, .. } = afid.msg else {
        unreachable!()
    };
    server
        .wait_for(
            "a clunk of the auth fid",
            |f| matches!(f.msg, Message::Tclunk { fid } if fid == afid),
        )
        .await;
    // And the connection still serves a correct login.
    login(&client, "alice").await;
}

#[tokio::test]
async fn two_users_share_a_connection_with_independent_fids() {
    let server = TestServer::start(Knobs::default()).await;
    let client = server.dial().await;
    // Two conversations at once, one from another task.
    let other = client.clone();
    let bob = tokio::spawn(async move { login(&other, "bob").await });
    let alice = login(&client, "alice").await;
    let bob = bob.await.unwrap();
    assert_ne!(alice.root().id(), bob.root().id());
    assert_eq!(alice.root().stat().await.unwrap().owner, "alice");
    assert_eq!(bob.root().stat().await.unwrap().owner, "bob");

    let alice_echo = alice.walk("echo").await.unwrap();
    let bob_echo = bob.walk("echo").await.unwrap();
    assert_ne!(alice_echo.id(), bob_echo.id());
    assert_eq!(alice_echo.stat().await.unwrap().owner, "alice");
    assert_eq!(bob_echo.stat().await.unwrap().owner, "bob");

    // Ending alice's session does not touch bob's.
    alice_echo.clunk().await.unwrap();
    alice.close().await.unwrap();
    assert_eq!(
        &bob_echo.append(&b"still here"[..]).await.unwrap()[..],
        b"still here"
    );
    assert_eq!(bob.root().stat().await.unwrap().owner, "bob");
}

#[tokio::test]
async fn walk_and_stat_describe_the_tree() {
    let server = TestServer::start(Knobs::default()).await;
    let client = server.dial().await;
    let session = login(&client, "alice").await;
    let root = session.root().stat().await.unwrap();
    assert_eq!(root.name, "/");
    assert_eq!(root.qid.kind, QidType::Dir);

    let leaf = session.walk("/sub/leaf").await.unwrap();
    let stat = leaf.stat().await.unwrap();
    assert_eq!(stat.name, "leaf");
    assert_eq!(stat.qid, leaf.qid());
    assert_eq!(leaf.qid().kind, QidType::Endpoint);

    let sub = session.walk("sub").await.unwrap();
    let leaf_again = sub.walk_names(&["leaf"]).await.unwrap();
    assert_eq!(leaf_again.qid(), leaf.qid());
    let clone = sub.walk("").await.unwrap();
    assert_eq!(clone.qid(), sub.qid());
    assert_ne!(clone.id(), sub.id());
}

#[tokio::test]
async fn list_returns_the_stats_of_a_directory_sorted_by_name() {
    let server = TestServer::start(Knobs::default()).await;
    let client = server.dial().await;
    let session = login(&client, "alice").await;

    let entries = session.root().list().await.unwrap();
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "close",
            "collect",
            "echo",
            "fail",
            "garbage",
            "gate",
            "hold",
            "huge",
            "locked",
            "sub",
            "wrongtype"
        ]
    );
    // Each entry is what a stat of the walked node says.
    for entry in &entries {
        let node = session.root().walk(&entry.name).await.unwrap();
        assert_eq!(node.stat().await.unwrap(), *entry);
    }
    // The request was an append with no data on the directory's fid.
    server
        .wait_for("the listing request", |f| {
            matches!(&f.msg, Message::Tappend { fid, data }
                if *fid == session.root().id() && data.is_empty())
        })
        .await;

    let sub = session.walk("sub").await.unwrap().list().await.unwrap();
    assert_eq!(sub.len(), 1);
    assert_eq!(sub[0].name, "leaf");
    assert_eq!(sub[0].qid.kind, QidType::Endpoint);
    assert_eq!(sub[0].label.as_deref(), Some(LEAF_LABEL));
}

#[tokio::test]
async fn list_refuses_non_directories_without_sending_and_keeps_server_errors() {
    let server = TestServer::start(Knobs::default()).await;
    let client = server.dial().await;
    let session = login(&client, "alice").await;

    let echo = session.walk("echo").await.unwrap();
    let sent = server.mark();
    let err = echo.list().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotDirectory {
                kind: QidType::Endpoint
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "only a directory can be listed, not an endpoint"
    );
    // Nothing went out: an empty append to an endpoint would have been a call.
    echo.stat().await.unwrap();
    assert!(matches!(server.received()[sent].msg, Message::Tstat { .. }));

    let locked = session.walk("locked").await.unwrap();
    let err = locked.list().await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Server {
                code: ErrorCode::PermissionDenied,
                errno: Some(13),
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_malformed_listing_is_a_protocol_error() {
    let server = TestServer::start(Knobs {
        malformed_listings: true,
        ..Knobs::default()
    })
    .await;
    let client = server.dial().await;
    let session = login(&client, "alice").await;
    let err = session.root().list().await.unwrap_err();
    assert!(
        matches!(&err, Error::Protocol(m) if m.contains("malformed directory listing")),
        "{err:?}"
    );
}

#[tokio::test]
async fn server_errors_keep_their_code_and_errno() {
    let server = TestServer::start(Knobs::default()).await;
    let client = server.dial().await;
    let session = login(&client, "alice").await;

    let fail = session.walk("fail").await.unwrap();
    let err = fail.append(&b"x"[..]).await.unwrap_err();
    let Error::Server {
        code,
        message,
        errno,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*code, ErrorCode::PermissionDenied);
    assert_eq!(*errno, Some(13));
    assert_eq!(message, "permission denied for alice");
    assert_eq!(
        err.to_string(),
        "server error permission_denied (errno 13): permission denied for alice"
    );

    let err = session.walk("nothing").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NoSuchNode), "{err:?}");

    let err = session.walk("sub/nothing").await.unwrap_err();
    assert!(
        matches!(&err, Error::WalkIncomplete { walked: 1, requested: 2, stopped_at } if stopped_at == "nothing"),
        "{err:?}"
    );

    let err = session.root().append(&b"x"[..]).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotEndpoint), "{err:?}");
}

#[tokio::test]
async fn invalid_names_are_refused_before_sending() {
    let server = TestServer::start(Knobs::default()).await;
    let client = server.dial().await;
    let session = login(&client, "alice").await;
    let sent = server.received().len();
    for (path, expected) in [
        ("sub/../echo", NameError::DotDot),
        ("sub//leaf", NameError::Empty),
        ("./echo", NameError::Dot),
        ("a\0b", NameError::Nul),
    ] {
        let err = session.walk(path).await.unwrap_err();
        assert!(
            matches!(&err, Error::InvalidName { error, .. } if *error == expected),
            "{path:?}: {err:?}"
        );
    }
    let err = client
        .auth(
            "alice",
            "relative",
            &mut PasswordConversation::new("wonderland"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::InvalidName {
                error: NameError::NotAbsolute,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(server.received().len(), sent);
}

#[tokio::test]
async fn an_unsupported_version_is_reported_as_such() {
    let server = TestServer::start(Knobs {
        reject_version: true,
        ..Knobs::default()
    })
    .await;
    let err = srpc::client::Client::dial(
        server.addr,
        "localhost",
        srpc::client::Trust::Pin(server.fingerprint),
    )
    .await
    .unwrap_err();
    let Error::UnsupportedVersion { detail } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(detail, "this server speaks srpc/0 only");
    assert!(err.to_string().contains("srpc/1"), "{err}");
}
