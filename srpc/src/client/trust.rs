//! How the client decides to trust a server: a pinned key fingerprint or a CA file.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use rustls::pki_types::CertificateDer;
use rustls::server::ParsedCertificate;
use sha2::{Digest, Sha256};

use super::error::Error;

const PREFIX: &str = "sha256:";
const DIGITS: usize = 64;

/// The SHA-256 of a certificate's DER `SubjectPublicKeyInfo`: it names the server's
/// key, so it stays the same when the certificate is renewed with the same key.
///
/// Written `sha256:` followed by 64 lowercase hex digits; parsing also accepts
/// uppercase digits.
///
/// ```
/// use srpc::client::Fingerprint;
///
/// let text = format!("sha256:{}", "AB".repeat(32));
/// let fp: Fingerprint = text.parse().unwrap();
/// assert_eq!(fp.to_string(), format!("sha256:{}", "ab".repeat(32)));
/// assert!("md5:1234".parse::<Fingerprint>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER `SubjectPublicKeyInfo`.
    ///
    /// ```
    /// use srpc::client::Fingerprint;
    ///
    /// let fp = Fingerprint::of_spki(b"not really a key");
    /// assert!(fp.to_string().starts_with("sha256:"));
    /// ```
    pub fn of_spki(spki_der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(spki_der).into())
    }

    /// The 32 bytes of the hash.
    ///
    /// ```
    /// use srpc::client::Fingerprint;
    ///
    /// assert_eq!(Fingerprint::of_spki(b"").as_bytes().len(), 32);
    /// ```
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not a fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FingerprintError {
    /// It does not start with `sha256:`.
    #[error("fingerprint must start with `sha256:`")]
    MissingPrefix,
    /// Not 64 characters after the prefix.
    #[error("fingerprint must have 64 hex digits after `sha256:`, found {found} characters")]
    WrongLength {
        /// Characters found after the prefix.
        found: usize,
    },
    /// A character that is not a hex digit.
    #[error("fingerprint has {character:?} at position {position}, where a hex digit must be")]
    NotHex {
        /// The character.
        character: char,
        /// Its character position in the whole string.
        position: usize,
    },
}

impl FromStr for Fingerprint {
    type Err = FingerprintError;

    fn from_str(s: &str) -> Result<Fingerprint, FingerprintError> {
        let digits = s
            .strip_prefix(PREFIX)
            .ok_or(FingerprintError::MissingPrefix)?;
        // Characters, not bytes: a multi-byte character must be reported as the
        // character it is, not as a length fault.
        if let Some((i, c)) = digits
            .chars()
            .enumerate()
            .find(|(_, c)| !c.is_ascii_hexdigit())
        {
            return Err(FingerprintError::NotHex {
                character: c,
                position: PREFIX.len() + i,
            });
        }
        if digits.len() != DIGITS {
            return Err(FingerprintError::WrongLength {
                found: digits.len(),
            });
        }
        let mut bytes = [0u8; 32];
        // Only ASCII hex digits of the right count remain, so this cannot fail; the
        // error is still mapped rather than unwrapped.
        hex::decode_to_slice(digits, &mut bytes).map_err(|_| FingerprintError::WrongLength {
            found: digits.len(),
        })?;
        Ok(Fingerprint(bytes))
    }
}

/// The fingerprint of a DER certificate's public key, as [`Trust::Pin`] expects
/// it. A server prints this at start so clients can pin it.
///
/// ```
/// # fn cert_der() -> Vec<u8> { Vec::new() }
/// use srpc::client::fingerprint_of;
///
/// // With a real certificate (e.g. rcgen's `cert.der()`) this is `Ok`.
/// match fingerprint_of(&cert_der()) {
///     Ok(fp) => println!("pin: {fp}"),
///     Err(e) => eprintln!("{e}"),
/// }
/// ```
pub fn fingerprint_of(cert_der: &[u8]) -> Result<Fingerprint, Error> {
    let der = CertificateDer::from(cert_der);
    // rustls's own parser: the key hashed here is exactly the key rustls uses to
    // check the server's handshake signature, so parser differences cannot split them.
    let cert = ParsedCertificate::try_from(&der).map_err(|e| Error::Certificate(e.to_string()))?;
    Ok(Fingerprint::of_spki(&cert.subject_public_key_info()))
}

/// How the client authenticates the server.
///
/// ```
/// use srpc::client::Trust;
///
/// let pin = Trust::Pin(format!("sha256:{}", "0".repeat(64)).parse().unwrap());
/// let ca = Trust::CaFile("/etc/srpc/ca.pem".into());
/// # let _ = (pin, ca);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Trust exactly the server key with this fingerprint; names, issuers and
    /// validity dates are not checked, the handshake signature is.
    Pin(Fingerprint),
    /// Trust certificates issued by the CAs in this PEM file, for the server name
    /// given to dial (the usual Web PKI checks).
    CaFile(PathBuf),
}
