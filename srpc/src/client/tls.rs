//! The rustls client configuration for a [`Trust`], and the verifier that checks
//! a pinned key.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore};
use rustls::{SignatureScheme, SupportedProtocolVersion};

use super::error::Error;
use super::trust::{fingerprint_of, Fingerprint, Trust};

/// Builds the client configuration: ring as the one crypto provider, TLS 1.3
/// (and 1.2 only when asked for), and the verifier `trust` calls for.
pub(crate) fn client_config(trust: &Trust, allow_tls12: bool) -> Result<ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&SupportedProtocolVersion] = if allow_tls12 {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .map_err(Error::Tls)?;
    let config = match trust {
        Trust::Pin(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinVerifier::new(*pin, &provider)))
            .with_no_client_auth(),
        Trust::CaFile(path) => builder
            .with_root_certificates(load_roots(path)?)
            .with_no_client_auth(),
    };
    Ok(config)
}

fn load_roots(path: &Path) -> Result<RootCertStore, Error> {
    let fail = |detail: String| Error::CaFile {
        path: path.to_owned(),
        detail,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| fail(e.to_string()))? {
        let cert = cert.map_err(|e| fail(e.to_string()))?;
        roots.add(cert).map_err(|e| fail(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(fail("it holds no PEM certificates".into()));
    }
    Ok(roots)
}

/// Accepts exactly the server key whose fingerprint is pinned, and still checks
/// that the server proves possession of it in the handshake.
#[derive(Debug)]
struct PinVerifier {
    pin: Fingerprint,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinVerifier {
    fn new(pin: Fingerprint, provider: &CryptoProvider) -> PinVerifier {
        PinVerifier {
            pin,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

/// The pin fault, carried through rustls's error path as the source of a
/// certificate error so dial can report it as [`Error::PinMismatch`].
#[derive(Debug)]
struct PinMismatch {
    expected: Fingerprint,
    presented: Fingerprint,
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "server certificate fingerprint {} does not match the pinned {}",
            self.presented, self.expected
        )
    }
}

impl std::error::Error for PinMismatch {}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = fingerprint_of(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if presented != self.pin {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(PinMismatch {
                    expected: self.pin,
                    presented,
                })),
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Turns an I/O error from the TLS handshake into the client error it stands for:
/// a pin mismatch, another TLS fault, or plain I/O.
pub(crate) fn handshake_error(e: io::Error) -> Error {
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return Error::Io(e);
    };
    if let rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(other))) = tls {
        if let Some(m) = other.downcast_ref::<PinMismatch>() {
            return Error::PinMismatch {
                expected: m.expected,
                presented: m.presented,
            };
        }
    }
    Error::Tls(tls.clone())
}
