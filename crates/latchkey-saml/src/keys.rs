//! SP key pairs and X.509 certificates. The SP signs AuthnRequests and logout messages with a
//! self-signed certificate (SAML trusts the key published in metadata, not a CA chain), and IdP
//! certificates arrive as PEM (uploaded files) or bare base64 (metadata `X509Certificate`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, KeyUsage};
use openssl::x509::{X509, X509NameBuilder};

use crate::{Result, SamlError};

const DAY_SECS: i64 = 86_400;

/// A generated SP key pair: the private key (PKCS#8 PEM) and its self-signed certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpKeyPair {
    pub key_pem: String,
    pub cert_pem: String,
    /// The certificate's notAfter, unix seconds.
    pub not_after: i64,
}

fn key_err(e: impl std::fmt::Display) -> SamlError {
    SamlError::Key(e.to_string())
}

/// RSA-2048 with a self-signed SHA-256 certificate. notBefore is one day back so that an IdP
/// whose clock runs behind does not see a certificate from the future.
pub fn generate_sp_key_pair(common_name: &str, now: i64, valid_days: u32) -> Result<SpKeyPair> {
    if common_name.is_empty() || valid_days == 0 {
        return Err(SamlError::Key("empty common name or zero validity".into()));
    }
    let rsa = Rsa::generate(2048).map_err(key_err)?;
    let key = PKey::from_rsa(rsa).map_err(key_err)?;

    let mut name = X509NameBuilder::new().map_err(key_err)?;
    // X.509 caps a CN at 64 characters; an entity ID may be longer.
    let cn: String = common_name.chars().take(64).collect();
    name.append_entry_by_text("CN", &cn).map_err(key_err)?;
    let name = name.build();

    let mut serial = BigNum::new().map_err(key_err)?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false).map_err(key_err)?;
    let serial = serial.to_asn1_integer().map_err(key_err)?;

    let not_after = now + i64::from(valid_days) * DAY_SECS;
    let mut b = X509::builder().map_err(key_err)?;
    b.set_version(2).map_err(key_err)?;
    b.set_serial_number(&serial).map_err(key_err)?;
    b.set_subject_name(&name).map_err(key_err)?;
    b.set_issuer_name(&name).map_err(key_err)?;
    b.set_pubkey(&key).map_err(key_err)?;
    let start = Asn1Time::from_unix(now - DAY_SECS).map_err(key_err)?;
    let end = Asn1Time::from_unix(not_after).map_err(key_err)?;
    b.set_not_before(&start).map_err(key_err)?;
    b.set_not_after(&end).map_err(key_err)?;
    b.append_extension(BasicConstraints::new().critical().build().map_err(key_err)?)
        .map_err(key_err)?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .digital_signature()
            .key_encipherment()
            .build()
            .map_err(key_err)?,
    )
    .map_err(key_err)?;
    b.sign(&key, MessageDigest::sha256()).map_err(key_err)?;
    let cert = b.build();

    let key_pem =
        String::from_utf8(key.private_key_to_pem_pkcs8().map_err(key_err)?).map_err(key_err)?;
    let cert_pem = String::from_utf8(cert.to_pem().map_err(key_err)?).map_err(key_err)?;
    Ok(SpKeyPair { key_pem, cert_pem, not_after })
}

/// The DER of a certificate given as PEM or as bare base64 (whitespace anywhere is ignored,
/// as metadata often wraps it). The result is checked to parse as X.509.
pub fn cert_der(text: &str) -> Result<Vec<u8>> {
    let text = text.trim();
    if text.contains("-----BEGIN") {
        let cert = X509::from_pem(text.as_bytes()).map_err(key_err)?;
        return cert.to_der().map_err(key_err);
    }
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return Err(SamlError::Key("empty certificate".into()));
    }
    let der = STANDARD.decode(compact.as_bytes()).map_err(key_err)?;
    let cert = X509::from_der(&der).map_err(key_err)?;
    // Re-encode so trailing garbage after the DER structure never travels further.
    cert.to_der().map_err(key_err)
}

/// Bare base64 (one line) for a metadata or signature `X509Certificate` element.
pub fn cert_base64(der: &[u8]) -> String {
    STANDARD.encode(der)
}

/// The certificate's notAfter in unix seconds.
pub fn cert_not_after(der: &[u8]) -> Result<i64> {
    let cert = X509::from_der(der).map_err(key_err)?;
    let epoch = Asn1Time::from_unix(0).map_err(key_err)?;
    let diff = epoch.diff(cert.not_after()).map_err(key_err)?;
    Ok(i64::from(diff.days) * DAY_SECS + i64::from(diff.secs))
}

/// PEM text of a DER certificate, 64 columns.
pub fn cert_pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::OnceLock;

    use super::*;

    pub const NOW: i64 = 1_700_000_000;

    /// One key pair shared by the crate's tests (RSA generation is the slow part).
    pub fn test_pair() -> &'static SpKeyPair {
        static PAIR: OnceLock<SpKeyPair> = OnceLock::new();
        PAIR.get_or_init(|| generate_sp_key_pair("test-sp", NOW, 365).unwrap())
    }

    /// A second, unrelated key pair.
    pub fn other_pair() -> &'static SpKeyPair {
        static PAIR: OnceLock<SpKeyPair> = OnceLock::new();
        PAIR.get_or_init(|| generate_sp_key_pair("other", NOW, 30).unwrap())
    }

    #[test]
    fn generated_pair_is_consistent() {
        let pair = test_pair();
        assert!(pair.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let der = cert_der(&pair.cert_pem).unwrap();
        assert_eq!(cert_not_after(&der).unwrap(), NOW + 365 * DAY_SECS);
        assert_eq!(pair.not_after, NOW + 365 * DAY_SECS);
        let cert = X509::from_der(&der).unwrap();
        let key = PKey::private_key_from_pem(pair.key_pem.as_bytes()).unwrap();
        assert!(cert.public_key().unwrap().public_eq(&key));
        assert_eq!(key.bits(), 2048);
        assert!(cert.verify(&cert.public_key().unwrap()).unwrap());
        let epoch = Asn1Time::from_unix(NOW - DAY_SECS).unwrap();
        assert_eq!(epoch.compare(cert.not_before()).unwrap(), std::cmp::Ordering::Equal);
        assert_eq!(
            cert.signature_algorithm().object().nid(),
            openssl::nid::Nid::SHA256WITHRSAENCRYPTION
        );
        // Serial numbers are random, so two certificates differ.
        let other = cert_der(&other_pair().cert_pem).unwrap();
        let other = X509::from_der(&other).unwrap();
        assert_ne!(cert.serial_number().to_bn().unwrap(), other.serial_number().to_bn().unwrap());
    }

    #[test]
    fn pem_and_base64_forms_round_trip() {
        let der = cert_der(&test_pair().cert_pem).unwrap();
        let b64 = cert_base64(&der);
        assert_eq!(cert_der(&b64).unwrap(), der);
        // Metadata style: wrapped with newlines and indentation.
        let wrapped: String = b64
            .as_bytes()
            .chunks(60)
            .map(|c| format!("\n        {}", String::from_utf8_lossy(c)))
            .collect();
        assert_eq!(cert_der(&wrapped).unwrap(), der);
        let pem = cert_pem(&der);
        assert_eq!(cert_der(&pem).unwrap(), der);
        assert!(pem.lines().all(|l| l.len() <= 64));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(cert_der(""), Err(SamlError::Key(_))));
        assert!(matches!(cert_der("not base64!"), Err(SamlError::Key(_))));
        assert!(matches!(cert_der("aGVsbG8="), Err(SamlError::Key(_))));
        assert!(matches!(cert_not_after(b"xx"), Err(SamlError::Key(_))));
        assert!(generate_sp_key_pair("", NOW, 1).is_err());
    }
}
