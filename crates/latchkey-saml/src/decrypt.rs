//! `<saml:EncryptedAssertion>`: AES-128/192/256 in CBC or GCM for the data, RSA-OAEP for the
//! key (xmlenc 1.0 `rsa-oaep-mgf1p` and xmlenc 1.1 `rsa-oaep` with its digest and MGF), with
//! openssl. samael 0.0.22 decrypts AES-128 only, so decryption is done here, and it never checks
//! a signature inside the decrypted assertion: [`crate::response`] puts the plaintext back into
//! the document and verifies it like any other assertion (see `response::encrypted`).
//!
//! RSA PKCS#1 v1.5 key transport is refused (Bleichenbacher-style oracles). Every failure is the
//! same `Decryption` error whatever went wrong, so that an unauthenticated ciphertext cannot be
//! used as a padding or format oracle.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use openssl::encrypt::Decrypter;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Padding;
use openssl::symm::{Cipher, Crypter, Mode};

use crate::response::dom::{self, Element, NS_ASSERTION, NS_DSIG, NS_XENC, NS_XENC11};
use crate::{Result, SamlError};

pub const AES128_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes128-cbc";
pub const AES192_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes192-cbc";
pub const AES256_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes256-cbc";
pub const AES128_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes128-gcm";
pub const AES192_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes192-gcm";
pub const AES256_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes256-gcm";
pub const RSA_OAEP_MGF1P: &str = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p";
pub const RSA_OAEP: &str = "http://www.w3.org/2009/xmlenc11#rsa-oaep";
pub const MGF1_SHA1: &str = "http://www.w3.org/2009/xmlenc11#mgf1sha1";
pub const MGF1_SHA256: &str = "http://www.w3.org/2009/xmlenc11#mgf1sha256";
pub const MGF1_SHA384: &str = "http://www.w3.org/2009/xmlenc11#mgf1sha384";
pub const MGF1_SHA512: &str = "http://www.w3.org/2009/xmlenc11#mgf1sha512";
const TYPE_ELEMENT: &str = "http://www.w3.org/2001/04/xmlenc#Element";

fn failed(why: &str) -> SamlError {
    SamlError::Decryption(why.to_owned())
}

/// Decrypts a standalone `<saml:EncryptedAssertion>` (its namespaces declared on itself) with
/// the first of `decryption_keys` (PEM) that works; returns the `<saml:Assertion>` XML.
pub fn decrypt_assertion_xml(
    encrypted_assertion: &str,
    decryption_keys: &[String],
) -> Result<String> {
    crate::xml_guard::reject_doctype(encrypted_assertion)?;
    let element = dom::parse(encrypted_assertion).map_err(|_| failed("not well-formed"))?;
    decrypt_assertion(&element, decryption_keys)
}

pub(crate) fn decrypt_assertion(encrypted: &Element, decryption_keys: &[String]) -> Result<String> {
    if !encrypted.is(NS_ASSERTION, "EncryptedAssertion") {
        return Err(failed("not an EncryptedAssertion"));
    }
    let keys = parse_keys(decryption_keys)?;
    let mut data = encrypted.children_named(NS_XENC, "EncryptedData");
    let (Some(data), None) = (data.next(), data.next()) else {
        return Err(failed("expected exactly one EncryptedData"));
    };
    if data.attr("Type").is_some_and(|t| t != TYPE_ELEMENT) {
        return Err(failed("only element encryption is supported"));
    }
    let cipher = data_cipher(data)?;
    let ciphertext = cipher_value(data)?;
    // The key may sit in the data's KeyInfo or next to the data (with a RetrievalMethod).
    let wrapped_keys: Vec<&Element> = data
        .child(NS_DSIG, "KeyInfo")
        .into_iter()
        .flat_map(|info| info.children_named(NS_XENC, "EncryptedKey"))
        .chain(encrypted.children_named(NS_XENC, "EncryptedKey"))
        .collect();
    if wrapped_keys.is_empty() {
        return Err(failed("no EncryptedKey"));
    }
    for key in &keys {
        for wrapped in &wrapped_keys {
            let Ok(content_key) = unwrap_key(wrapped, key) else { continue };
            if content_key.len() != cipher.key_len() {
                continue;
            }
            if let Ok(plaintext) = decrypt_data(cipher, &content_key, &ciphertext) {
                return plaintext_assertion(plaintext);
            }
        }
    }
    Err(failed("no decryption key opens the assertion"))
}

fn parse_keys(decryption_keys: &[String]) -> Result<Vec<PKey<Private>>> {
    if decryption_keys.is_empty() {
        return Err(failed("no decryption key configured"));
    }
    decryption_keys
        .iter()
        .map(|pem| {
            PKey::private_key_from_pem(pem.as_bytes())
                .map_err(|e| SamlError::Key(format!("SP decryption key: {e}")))
        })
        .collect()
}

fn data_cipher(data: &Element) -> Result<Cipher> {
    let method = data
        .child(NS_XENC, "EncryptionMethod")
        .and_then(|m| m.attr("Algorithm"))
        .ok_or_else(|| failed("no EncryptionMethod"))?;
    Ok(match method {
        AES128_CBC => Cipher::aes_128_cbc(),
        AES192_CBC => Cipher::aes_192_cbc(),
        AES256_CBC => Cipher::aes_256_cbc(),
        AES128_GCM => Cipher::aes_128_gcm(),
        AES192_GCM => Cipher::aes_192_gcm(),
        AES256_GCM => Cipher::aes_256_gcm(),
        _ => return Err(failed("data encryption algorithm not supported")),
    })
}

fn cipher_value(parent: &Element) -> Result<Vec<u8>> {
    let text = parent
        .child(NS_XENC, "CipherData")
        .and_then(|d| d.child(NS_XENC, "CipherValue"))
        .map(Element::text)
        .ok_or_else(|| failed("no CipherValue"))?;
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD.decode(compact).map_err(|_| failed("CipherValue is not base64"))
}

fn digest_by_uri(uri: &str) -> Option<MessageDigest> {
    Some(match uri {
        "http://www.w3.org/2000/09/xmldsig#sha1" => MessageDigest::sha1(),
        "http://www.w3.org/2001/04/xmlenc#sha256" => MessageDigest::sha256(),
        "http://www.w3.org/2001/04/xmldsig-more#sha384" => MessageDigest::sha384(),
        "http://www.w3.org/2001/04/xmlenc#sha512" => MessageDigest::sha512(),
        _ => return None,
    })
}

fn mgf_by_uri(uri: &str) -> Option<MessageDigest> {
    Some(match uri {
        MGF1_SHA1 => MessageDigest::sha1(),
        MGF1_SHA256 => MessageDigest::sha256(),
        MGF1_SHA384 => MessageDigest::sha384(),
        MGF1_SHA512 => MessageDigest::sha512(),
        _ => return None,
    })
}

/// The OAEP digest and MGF1 digest an EncryptedKey's EncryptionMethod names (SHA-1 by default).
fn oaep_parameters(method: &Element) -> Result<(MessageDigest, MessageDigest)> {
    let algorithm = method.attr("Algorithm").unwrap_or_default();
    let digest = match method.child(NS_DSIG, "DigestMethod").and_then(|d| d.attr("Algorithm")) {
        Some(uri) => digest_by_uri(uri).ok_or_else(|| failed("OAEP digest not supported"))?,
        None => MessageDigest::sha1(),
    };
    let mgf = match algorithm {
        RSA_OAEP_MGF1P => MessageDigest::sha1(),
        RSA_OAEP => match method.child(NS_XENC11, "MGF").and_then(|m| m.attr("Algorithm")) {
            Some(uri) => mgf_by_uri(uri).ok_or_else(|| failed("MGF not supported"))?,
            None => MessageDigest::sha1(),
        },
        _ => return Err(failed("key transport algorithm not supported")),
    };
    Ok((digest, mgf))
}

fn unwrap_key(wrapped: &Element, key: &PKey<Private>) -> Result<Vec<u8>> {
    let method =
        wrapped.child(NS_XENC, "EncryptionMethod").ok_or_else(|| failed("no key method"))?;
    let (digest, mgf) = oaep_parameters(method)?;
    let label = match method.child(NS_XENC, "OAEPparams") {
        Some(params) => Some(
            STANDARD
                .decode(params.text().trim())
                .map_err(|_| failed("OAEPparams is not base64"))?,
        ),
        None => None,
    };
    let ciphertext = cipher_value(wrapped)?;
    let oaep = || -> std::result::Result<Vec<u8>, openssl::error::ErrorStack> {
        let mut decrypter = Decrypter::new(key)?;
        decrypter.set_rsa_padding(Padding::PKCS1_OAEP)?;
        decrypter.set_rsa_oaep_md(digest)?;
        decrypter.set_rsa_mgf1_md(mgf)?;
        if let Some(label) = &label {
            decrypter.set_rsa_oaep_label(label)?;
        }
        let mut out = vec![0u8; decrypter.decrypt_len(&ciphertext)?];
        let len = decrypter.decrypt(&ciphertext, &mut out)?;
        out.truncate(len);
        Ok(out)
    };
    oaep().map_err(|_| failed("key unwrap failed"))
}

fn decrypt_data(cipher: Cipher, key: &[u8], data: &[u8]) -> Result<Vec<u8>> {
    let gcm = cipher.nid() == Cipher::aes_128_gcm().nid()
        || cipher.nid() == Cipher::aes_192_gcm().nid()
        || cipher.nid() == Cipher::aes_256_gcm().nid();
    if gcm {
        const IV: usize = 12;
        const TAG: usize = 16;
        if data.len() < IV + TAG {
            return Err(failed("ciphertext too short"));
        }
        let (iv, rest) = data.split_at(IV);
        let (body, tag) = rest.split_at(rest.len() - TAG);
        return openssl::symm::decrypt_aead(cipher, key, Some(iv), &[], body, tag)
            .map_err(|_| failed("authentication failed"));
    }
    let block = cipher.block_size();
    if data.len() < 2 * block || !data.len().is_multiple_of(block) {
        return Err(failed("ciphertext length"));
    }
    let (iv, body) = data.split_at(block);
    let run = || -> std::result::Result<Vec<u8>, openssl::error::ErrorStack> {
        let mut crypter = Crypter::new(cipher, Mode::Decrypt, key, Some(iv))?;
        crypter.pad(false);
        let mut out = vec![0u8; body.len() + block];
        let mut len = crypter.update(body, &mut out)?;
        len += crypter.finalize(&mut out[len..])?;
        out.truncate(len);
        Ok(out)
    };
    let mut plain = run().map_err(|_| failed("decryption"))?;
    // xmlenc padding (ISO 10126): only the last byte, the pad length, is meaningful.
    let pad = usize::from(*plain.last().ok_or_else(|| failed("empty plaintext"))?);
    if pad == 0 || pad > block || pad > plain.len() {
        return Err(failed("bad padding"));
    }
    plain.truncate(plain.len() - pad);
    Ok(plain)
}

fn plaintext_assertion(plaintext: Vec<u8>) -> Result<String> {
    let text = String::from_utf8(plaintext).map_err(|_| failed("plaintext is not UTF-8"))?;
    let text = text.trim_start_matches('\u{feff}').trim();
    // An element serialisation may start with an XML declaration; the splice must not.
    let text = match text.strip_prefix("<?xml") {
        Some(rest) => rest.split_once("?>").map(|(_, body)| body.trim_start()).unwrap_or(text),
        None => text,
    };
    crate::xml_guard::reject_doctype(text)?;
    if !text.starts_with('<') {
        return Err(failed("plaintext is not an element"));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{Encryption, KeyTransport, TestIdp, encrypt_assertion};

    const ASSERTION: &str =
        r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_a"/>"#;

    #[test]
    fn every_cipher_and_key_transport_round_trips() {
        let sp = TestIdp::generate("sp");
        for encryption in [
            Encryption::Aes128Cbc,
            Encryption::Aes256Cbc,
            Encryption::Aes128Gcm,
            Encryption::Aes256Gcm,
        ] {
            for transport in [KeyTransport::RsaOaepMgf1p, KeyTransport::RsaOaepSha256] {
                let ea = encrypt_assertion(ASSERTION, &sp.cert_pem, encryption, transport);
                let plain = decrypt_assertion_xml(&ea, std::slice::from_ref(&sp.key_pem)).unwrap();
                assert_eq!(plain, ASSERTION, "{encryption:?} {transport:?}");
            }
        }
    }

    #[test]
    fn previous_key_during_rotation_and_wrong_key() {
        let old = TestIdp::generate("old");
        let new = TestIdp::generate("new");
        let ea = encrypt_assertion(
            ASSERTION,
            &old.cert_pem,
            Encryption::Aes256Gcm,
            KeyTransport::RsaOaepMgf1p,
        );
        let both = [new.key_pem.clone(), old.key_pem.clone()];
        assert_eq!(decrypt_assertion_xml(&ea, &both).unwrap(), ASSERTION);
        let err = decrypt_assertion_xml(&ea, std::slice::from_ref(&new.key_pem)).unwrap_err();
        assert_eq!(err.reason(), "decryption_failed");
        assert_eq!(decrypt_assertion_xml(&ea, &[]).unwrap_err().reason(), "decryption_failed");
        let bad = decrypt_assertion_xml(&ea, &["not a key".into()]).unwrap_err();
        assert_eq!(bad.reason(), "bad_key");
    }

    #[test]
    fn tampered_and_unsupported_ciphertexts_fail() {
        let sp = TestIdp::generate("sp");
        let keys = [sp.key_pem.clone()];
        let ea = encrypt_assertion(
            ASSERTION,
            &sp.cert_pem,
            Encryption::Aes128Gcm,
            KeyTransport::RsaOaepMgf1p,
        );
        let pkcs1 = ea.replace(RSA_OAEP_MGF1P, "http://www.w3.org/2001/04/xmlenc#rsa-1_5");
        assert_eq!(decrypt_assertion_xml(&pkcs1, &keys).unwrap_err().reason(), "decryption_failed");
        let des = ea.replace(AES128_GCM, "http://www.w3.org/2001/04/xmlenc#tripledes-cbc");
        assert_eq!(decrypt_assertion_xml(&des, &keys).unwrap_err().reason(), "decryption_failed");
        // Flip one character of the data ciphertext (the last CipherValue).
        let at = ea.rfind("</xenc:CipherValue>").unwrap() - 3;
        let mut tampered = ea.clone().into_bytes();
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(
            decrypt_assertion_xml(&tampered, &keys).unwrap_err().reason(),
            "decryption_failed"
        );
        assert!(decrypt_assertion_xml("<x/>", &keys).is_err());
    }
}
