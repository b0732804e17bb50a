//! Server authentication: pinned fingerprints, CA files, and fingerprint parsing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/test_server.rs"]
mod test_server;

use std::path::PathBuf;

use srpc::client::{fingerprint_of, Client, Error, Fingerprint, FingerprintError, Trust};
use test_server::{login, self_signed, Knobs, TestCa, TestServer};

fn temp_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("client_tls-{}-{name}", std::process::id()))
}

#[test]
fn handles_and_errors_cross_threads() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Error>();
    send_sync::<Client>();
    send_sync::<srpc::client::Session>();
    send_sync::<srpc::client::Fid>();
}

#[test]
fn the_fingerprint_is_the_hash_of_the_public_key() {
    let id = self_signed();
    let fp = fingerprint_of(&id.cert).unwrap();
    assert_eq!(fp, Fingerprint::of_spki(&id.spki));
    let text = fp.to_string();
    assert!(text.starts_with("sha256:"));
    assert_eq!(text.len(), "sha256:".len() + 64);
    assert_eq!(text, text.to_lowercase());
    assert_eq!(text.parse::<Fingerprint>().unwrap(), fp);
    assert_eq!(
        text.to_uppercase()
            .replace("SHA256:", "sha256:")
            .parse::<Fingerprint>()
            .unwrap(),
        fp
    );
    assert!(matches!(
        fingerprint_of(b"not a certificate"),
        Err(Error::Certificate(_))
    ));
}

#[test]
fn malformed_fingerprints_are_precise_errors() {
    let digits = "ab".repeat(32);
    assert_eq!(
        format!("sha1:{digits}").parse::<Fingerprint>(),
        Err(FingerprintError::MissingPrefix)
    );
    assert_eq!(
        digits.parse::<Fingerprint>(),
        Err(FingerprintError::MissingPrefix)
    );
    assert_eq!(
        format!("sha256:{}", &digits[1..]).parse::<Fingerprint>(),
        Err(FingerprintError::WrongLength { found: 63 })
    );
    assert_eq!(
        format!("sha256:{digits}00").parse::<Fingerprint>(),
        Err(FingerprintError::WrongLength { found: 66 })
    );
    assert_eq!(
        format!("sha256:{}g{}", &digits[..10], &digits[11..]).parse::<Fingerprint>(),
        Err(FingerprintError::NotHex {
            character: 'g',
            position: 17
        })
    );
    assert_eq!(
        format!("sha256:{}é", &digits[..63]).parse::<Fingerprint>(),
        Err(FingerprintError::NotHex {
            character: 'é',
            position: 70
        })
    );
    let colons = "ab:".repeat(31) + "ab";
    let err = format!("sha256:{colons}")
        .parse::<Fingerprint>()
        .unwrap_err();
    assert!(err.to_string().contains("hex digit"), "{err}");
}

#[tokio::test]
async fn the_right_pin_connects() {
    let server = TestServer::start(Knobs::default()).await;
    let client = server.dial().await;
    let session = login(&client, "alice").await;
    let echo = session.walk("echo").await.unwrap();
    assert_eq!(&echo.append(&b"pinned"[..]).await.unwrap()[..], b"pinned");
}

#[tokio::test]
async fn a_wrong_pin_fails_naming_both_fingerprints() {
    let server = TestServer::start(Knobs::default()).await;
    let wrong: Fingerprint = format!("sha256:{}", "0f".repeat(32)).parse().unwrap();
    let err = Client::dial(server.addr, "localhost", Trust::Pin(wrong))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::PinMismatch { expected, presented } if expected == wrong && presented == server.fingerprint),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(&wrong.to_string()), "{text}");
    assert!(text.contains(&server.fingerprint.to_string()), "{text}");
}

#[tokio::test]
async fn a_ca_file_trusts_its_certificates_and_only_those() {
    let ca = TestCa::new("sRPC test CA");
    let server = TestServer::start_with(ca.issue(), Knobs::default()).await;
    let ca_file = temp_path("ca.pem");
    ca.write_pem(&ca_file);
    let other_file = temp_path("other-ca.pem");
    TestCa::new("another CA").write_pem(&other_file);

    let client = Client::dial(server.addr, "localhost", Trust::CaFile(ca_file.clone()))
        .await
        .unwrap();
    login(&client, "bob").await;

    let err = Client::dial(server.addr, "localhost", Trust::CaFile(other_file.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Tls(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        ),
        "{err:?}"
    );

    // The name is checked with a CA (it is not with a pin).
    let err = Client::dial(
        server.addr,
        "srpc.example.org",
        Trust::CaFile(ca_file.clone()),
    )
    .await
    .unwrap_err();
    assert!(matches!(&err, Error::Tls(_)), "{err:?}");
    assert!(err.to_string().contains("srpc.example.org"), "{err}");

    let missing = temp_path("missing.pem");
    let err = Client::dial(server.addr, "localhost", Trust::CaFile(missing))
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::CaFile { .. }), "{err:?}");

    std::fs::remove_file(ca_file).unwrap();
    std::fs::remove_file(other_file).unwrap();
}

#[tokio::test]
async fn bad_dial_arguments_are_refused_up_front() {
    let server = TestServer::start(Knobs::default()).await;
    let err = Client::dial(server.addr, "not a name!", Trust::Pin(server.fingerprint))
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::InvalidServerName(_)), "{err:?}");
    let err = srpc::client::DialOptions::new()
        .limits(srpc::proto::Limits {
            max_message: 10,
            ..srpc::proto::Limits::default()
        })
        .dial(server.addr, "localhost", Trust::Pin(server.fingerprint))
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::InvalidOptions(_)), "{err:?}");
}
