//! xmlenc encryption of an assertion, the way IdPs do it: a random AES key encrypts the
//! serialised `<saml:Assertion>`, RSA-OAEP wraps that key for the SP's certificate.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use openssl::encrypt::Encrypter;
use openssl::hash::MessageDigest;
use openssl::rsa::Padding;
use openssl::symm::Cipher;
use openssl::x509::X509;

use crate::decrypt::{
    AES128_CBC, AES128_GCM, AES256_CBC, AES256_GCM, MGF1_SHA256, RSA_OAEP, RSA_OAEP_MGF1P,
};
use crate::response::dom::{NS_ASSERTION, NS_DSIG, NS_XENC, NS_XENC11};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    Aes128Cbc,
    Aes256Cbc,
    Aes128Gcm,
    Aes256Gcm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTransport {
    /// xmlenc 1.0 rsa-oaep-mgf1p with SHA-1 (what most IdPs send).
    RsaOaepMgf1p,
    /// xmlenc 1.1 rsa-oaep with SHA-256 digest and MGF1-SHA-256.
    RsaOaepSha256,
}

impl Encryption {
    fn cipher(self) -> (Cipher, &'static str, bool) {
        match self {
            Self::Aes128Cbc => (Cipher::aes_128_cbc(), AES128_CBC, false),
            Self::Aes256Cbc => (Cipher::aes_256_cbc(), AES256_CBC, false),
            Self::Aes128Gcm => (Cipher::aes_128_gcm(), AES128_GCM, true),
            Self::Aes256Gcm => (Cipher::aes_256_gcm(), AES256_GCM, true),
        }
    }
}

fn random(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    openssl::rand::rand_bytes(&mut bytes).unwrap();
    bytes
}

fn encrypt_data(plaintext: &[u8], encryption: Encryption, key: &[u8]) -> Vec<u8> {
    let (cipher, _, gcm) = encryption.cipher();
    if gcm {
        let iv = random(12);
        let mut tag = [0u8; 16];
        let ciphertext =
            openssl::symm::encrypt_aead(cipher, key, Some(&iv), &[], plaintext, &mut tag).unwrap();
        [iv, ciphertext, tag.to_vec()].concat()
    } else {
        let iv = random(16);
        let ciphertext = openssl::symm::encrypt(cipher, key, Some(&iv), plaintext).unwrap();
        [iv, ciphertext].concat()
    }
}

fn wrap_key(key: &[u8], cert_pem: &str, transport: KeyTransport) -> (Vec<u8>, String) {
    let public = X509::from_pem(cert_pem.as_bytes()).unwrap().public_key().unwrap();
    let mut encrypter = Encrypter::new(&public).unwrap();
    encrypter.set_rsa_padding(Padding::PKCS1_OAEP).unwrap();
    let method = match transport {
        KeyTransport::RsaOaepMgf1p => format!(
            r#"<xenc:EncryptionMethod Algorithm="{RSA_OAEP_MGF1P}"><ds:DigestMethod Algorithm="http://www.w3.org/2000/09/xmldsig#sha1"/></xenc:EncryptionMethod>"#
        ),
        KeyTransport::RsaOaepSha256 => {
            encrypter.set_rsa_oaep_md(MessageDigest::sha256()).unwrap();
            encrypter.set_rsa_mgf1_md(MessageDigest::sha256()).unwrap();
            format!(
                r#"<xenc:EncryptionMethod Algorithm="{RSA_OAEP}"><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><xenc11:MGF xmlns:xenc11="{NS_XENC11}" Algorithm="{MGF1_SHA256}"/></xenc:EncryptionMethod>"#
            )
        }
    };
    let mut out = vec![0u8; encrypter.encrypt_len(key).unwrap()];
    let len = encrypter.encrypt(key, &mut out).unwrap();
    out.truncate(len);
    (out, method)
}

/// `<saml:EncryptedAssertion>` holding `assertion_xml` for the holder of `cert_pem`.
pub fn encrypt_assertion(
    assertion_xml: &str,
    cert_pem: &str,
    encryption: Encryption,
    transport: KeyTransport,
) -> String {
    let (cipher, data_uri, _) = encryption.cipher();
    let key = random(cipher.key_len());
    let data = encrypt_data(assertion_xml.as_bytes(), encryption, &key);
    let (wrapped, key_method) = wrap_key(&key, cert_pem, transport);
    format!(
        r#"<saml:EncryptedAssertion xmlns:saml="{NS_ASSERTION}"><xenc:EncryptedData xmlns:xenc="{NS_XENC}" Type="http://www.w3.org/2001/04/xmlenc#Element"><xenc:EncryptionMethod Algorithm="{data_uri}"/><ds:KeyInfo xmlns:ds="{NS_DSIG}"><xenc:EncryptedKey>{key_method}<xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedKey></ds:KeyInfo><xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData></saml:EncryptedAssertion>"#,
        STANDARD.encode(wrapped),
        STANDARD.encode(data),
    )
}
