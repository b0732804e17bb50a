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
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
