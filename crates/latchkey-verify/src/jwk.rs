//! Public keys from a JWK Set, and the one algorithm each of them verifies.
//!
//! The algorithm is a property of the key (its `kty`, `crv` and, when published, `alg`), never
//! of the token: a token's header `alg` must merely agree with it. Only ES256, RS256 and EdDSA
//! (Ed25519) keys are understood; symmetric (`oct`) keys and everything else are ignored, so
//! `none` and HMAC tokens (including HS256 "signed" with a public key's bytes) have nothing to
//! verify against.

use std::{collections::HashMap, sync::Arc};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;

use crate::error::VerifyError;

/// A signature algorithm this crate verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    ES256,
    RS256,
    EdDSA,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
            Self::EdDSA => "EdDSA",
        }
    }
}

#[derive(Debug)]
enum Material {
    /// The uncompressed SEC1 point `04 || x || y`.
    P256(Vec<u8>),
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    Ed25519(Vec<u8>),
}

/// One verification key.
#[derive(Debug)]
pub struct PublicKey {
    alg: Algorithm,
    material: Material,
}

impl PublicKey {
    #[cfg(test)]
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Parses a public JWK; `None` for keys this crate does not use (other key types or curves,
    /// encryption keys, keys whose published `alg` contradicts their type, malformed members).
    pub fn from_jwk(jwk: &Value) -> Option<Self> {
        let str_of = |name: &str| jwk.get(name).and_then(Value::as_str);
        if str_of("use").is_some_and(|u| u != "sig") {
            return None;
        }
        if let Some(ops) = jwk.get("key_ops") {
            let ops = ops.as_array()?;
            if !ops.iter().any(|o| o.as_str() == Some("verify")) {
                return None;
            }
        }
        let bytes = |name: &str| str_of(name).and_then(|s| URL_SAFE_NO_PAD.decode(s).ok());
        let (alg, material) = match (str_of("kty")?, str_of("crv")) {
            ("EC", Some("P-256")) => {
                let (x, y) = (bytes("x")?, bytes("y")?);
                if x.len() != 32 || y.len() != 32 {
                    return None;
                }
                let mut point = Vec::with_capacity(65);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (Algorithm::ES256, Material::P256(point))
            }
            ("OKP", Some("Ed25519")) => {
                let x = bytes("x")?;
                if x.len() != 32 {
                    return None;
                }
                (Algorithm::EdDSA, Material::Ed25519(x))
            }
            ("RSA", _) => (Algorithm::RS256, Material::Rsa { n: bytes("n")?, e: bytes("e")? }),
            _ => return None,
        };
        // RFC 9864 names Ed25519 as its own algorithm; the older "EdDSA" is what Latchkey uses.
        let published_ok = match str_of("alg") {
            None => true,
            Some(a) => a == alg.as_str() || (alg == Algorithm::EdDSA && a == "Ed25519"),
        };
        published_ok.then_some(Self { alg, material })
    }

    /// Verifies `signature` over `message`, after checking that the token's header `alg`
    /// names this key's algorithm.
    pub fn verify(&self, header_alg: &str, message: &[u8], sig: &[u8]) -> Result<(), VerifyError> {
        let agrees = header_alg == self.alg.as_str()
            || (self.alg == Algorithm::EdDSA && header_alg == "Ed25519");
        if !agrees {
            return Err(VerifyError::Algorithm("the header's alg does not match the key"));
        }
        let ok = match &self.material {
            Material::P256(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
            }
            Material::Ed25519(x) => {
                UnparsedPublicKey::new(&signature::ED25519, x).verify(message, sig)
            }
            Material::Rsa { n, e } => RsaPublicKeyComponents { n, e }.verify(
                &signature::RSA_PKCS1_2048_8192_SHA256,
                message,
                sig,
            ),
        };
        ok.map_err(|_| VerifyError::Signature)
    }
}

/// The usable keys of a JWK Set, by `kid`. Keys without a `kid` are left out: Latchkey names
/// every key, and a token must say which key signed it.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: HashMap<String, Arc<PublicKey>>,
}

impl KeySet {
    /// Parses `{"keys": [...]}`. A document of another shape is an error (a bad response must
    /// not replace a good key set); individual keys this crate cannot use are skipped.
    pub fn from_json(doc: &[u8]) -> Result<Self, &'static str> {
        let doc: Value = serde_json::from_slice(doc).map_err(|_| "JWKS is not JSON")?;
        let keys = doc.get("keys").and_then(Value::as_array).ok_or("JWKS has no keys array")?;
        let mut out = HashMap::new();
        for jwk in keys {
            let Some(kid) = jwk.get("kid").and_then(Value::as_str) else { continue };
            if let Some(key) = PublicKey::from_jwk(jwk) {
                // A kid published twice is ambiguous: keep neither.
                if out.insert(kid.to_owned(), Arc::new(key)).is_some() {
                    out.insert(kid.to_owned(), Arc::new(PublicKey::unusable()));
                }
            }
        }
        Ok(Self { keys: out })
    }

    pub fn get(&self, kid: &str) -> Option<&Arc<PublicKey>> {
        self.keys.get(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

impl PublicKey {
    /// A key that verifies nothing (an empty RSA modulus fails every check in ring).
    fn unusable() -> Self {
        Self { alg: Algorithm::RS256, material: Material::Rsa { n: Vec::new(), e: Vec::new() } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_typed_by_their_parameters() {
        let x = URL_SAFE_NO_PAD.encode([1u8; 32]);
        let ec = json!({"kty": "EC", "crv": "P-256", "x": x, "y": x});
        assert_eq!(PublicKey::from_jwk(&ec).unwrap().algorithm(), Algorithm::ES256);
        let ed = json!({"kty": "OKP", "crv": "Ed25519", "x": x, "alg": "EdDSA"});
        assert_eq!(PublicKey::from_jwk(&ed).unwrap().algorithm(), Algorithm::EdDSA);
        let rsa = json!({"kty": "RSA", "n": x, "e": "AQAB"});
        assert_eq!(PublicKey::from_jwk(&rsa).unwrap().algorithm(), Algorithm::RS256);
        for unusable in [
            json!({"kty": "oct", "k": x}),
            json!({"kty": "EC", "crv": "P-384", "x": x, "y": x}),
            json!({"kty": "EC", "crv": "P-256", "x": x, "y": x, "alg": "HS256"}),
            json!({"kty": "EC", "crv": "P-256", "x": x, "y": x, "use": "enc"}),
            json!({"kty": "EC", "crv": "P-256", "x": x, "y": x, "key_ops": ["encrypt"]}),
            json!({"kty": "EC", "crv": "P-256", "x": "short", "y": x}),
            json!({"kty": "RSA", "n": x, "e": "AQAB", "alg": "PS256"}),
        ] {
            assert!(PublicKey::from_jwk(&unusable).is_none(), "{unusable}");
        }
    }

    #[test]
    fn a_header_alg_that_disagrees_with_the_key_is_refused() {
        let x = URL_SAFE_NO_PAD.encode([1u8; 32]);
        let ec =
            PublicKey::from_jwk(&json!({"kty": "EC", "crv": "P-256", "x": x, "y": x})).unwrap();
        for alg in ["RS256", "HS256", "none", "es256", ""] {
            assert_eq!(
                ec.verify(alg, b"m", &[0; 64]),
                Err(VerifyError::Algorithm("the header's alg does not match the key"))
            );
        }
    }

    #[test]
    fn a_duplicated_kid_verifies_nothing_and_bad_documents_are_errors() {
        let x = URL_SAFE_NO_PAD.encode([1u8; 32]);
        let k = json!({"kid": "a", "kty": "OKP", "crv": "Ed25519", "x": x});
        let set = KeySet::from_json(json!({"keys": [k, k]}).to_string().as_bytes()).unwrap();
        assert_eq!(set.get("a").unwrap().algorithm(), Algorithm::RS256);
        assert!(KeySet::from_json(b"{}").is_err());
        assert!(KeySet::from_json(b"nope").is_err());
        assert_eq!(KeySet::from_json(br#"{"keys": []}"#).unwrap().len(), 0);
    }
}
