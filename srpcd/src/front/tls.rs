//! TLS credentials from the monitor, swapped in place on reload.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroize;

use super::Front;
use crate::ipc::{Envelope, ToFront};

/// Applies a `Configure` message: new settings and a new acceptor. A bad
/// certificate or key keeps the previous ones (and says why).
pub fn apply(front: &Front, mut env: Envelope<ToFront>) {
    let ToFront::Configure { settings, cert_len } = &env.msg else {
        return;
    };
    let split = (*cert_len as usize).min(env.payload.len());
    let (cert, key) = env.payload.split_at(split);
    match acceptor(cert, key, settings.allow_tls12) {
        Ok(acceptor) => {
            *front
                .acceptor
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(acceptor);
            *front
                .settings
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(settings.clone());
            tracing::info!("TLS credentials and settings loaded");
        }
        Err(e) => tracing::error!("keeping the previous TLS credentials: {e}"),
    }
    env.payload.zeroize();
}

/// A TLS acceptor for the certificate chain and key (both PEM).
pub fn acceptor(
    cert_pem: &[u8],
    key_pem: &[u8],
    allow_tls12: bool,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate: {e}"))?;
    if certs.is_empty() {
        return Err("certificate: no certificate in the PEM file".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if allow_tls12 {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key: {e}"))?;
    // The server's order of cipher suites decides (strongest first), not the
    // client's: with TLS 1.2 enabled, a client cannot steer the connection to
    // the weakest suite both support.
    config.ignore_client_order = true;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::acceptor;
    use std::sync::Arc;

    #[derive(Debug)]
    struct AnyServer;

    impl rustls::client::danger::ServerCertVerifier for AnyServer {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    /// A TLS 1.2 client that prefers AES-128 gets the server's first choice,
    /// AES-256 (issue 12 item 12).
    #[tokio::test]
    async fn with_tls12_the_server_order_of_suites_decides() {
        use rustls::crypto::ring::cipher_suite as cs;
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let server = acceptor(
            cert.cert.pem().as_bytes(),
            cert.key_pair.serialize_pem().as_bytes(),
            true,
        )
        .unwrap();
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites = vec![
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ];
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer))
            .with_no_client_auth();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let (client_side, server_side) = tokio::join!(connector.connect(name, a), server.accept(b));
        let (_, conn) = client_side.unwrap().into_inner();
        drop(server_side.unwrap());
        assert_eq!(
            conn.negotiated_cipher_suite().map(|s| s.suite()),
            Some(rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)
        );
    }
}
