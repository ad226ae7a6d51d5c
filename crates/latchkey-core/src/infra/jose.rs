//! The JOSE algorithms Latchkey signs with, and the verification of compact JWS against a JWK
//! set. Verification never trusts the header's algorithm beyond this list: `none` and HMAC
//! have no verifier here.

use josekit::{
    jwk::{Jwk, alg::ed::EdCurve},
    jws::{ES256, EdDSA, JwsSigner, JwsVerifier, RS256},
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::infra::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlg {
    ES256,
    RS256,
    EdDSA,
}

impl SigningAlg {
    pub const ALL: [SigningAlg; 3] = [SigningAlg::ES256, SigningAlg::RS256, SigningAlg::EdDSA];

    /// What ID tokens (and a client's other tokens) are signed with unless the client chose
    /// otherwise: RS256 is the one algorithm every relying party accepts without configuration
    /// (OIDC Core §15.1), so its key is published before discovery is served.
    pub const ID_TOKEN_DEFAULT: SigningAlg = SigningAlg::RS256;

    /// Every algorithm, the ID-token default first: the order discovery advertises them in.
    pub fn advertised() -> [SigningAlg; 3] {
        let mut algs = Self::ALL;
        if let Some(i) = algs.iter().position(|a| *a == Self::ID_TOKEN_DEFAULT) {
            algs[..=i].rotate_right(1);
        }
        algs
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
            Self::EdDSA => "EdDSA",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str().eq_ignore_ascii_case(s))
    }

    /// Generates a key pair: (PKCS#8 private PEM, public JWK without kid).
    pub fn generate(self) -> Result<(Vec<u8>, Jwk)> {
        Ok(match self {
            Self::ES256 => {
                let kp = ES256.generate_key_pair()?;
                (kp.to_pem_private_key(), kp.to_jwk_public_key())
            }
            Self::RS256 => {
                let kp = RS256.generate_key_pair(2048)?;
                (kp.to_pem_private_key(), kp.to_jwk_public_key())
            }
            Self::EdDSA => {
                let kp = EdDSA.generate_key_pair(EdCurve::Ed25519)?;
                (kp.to_pem_private_key(), kp.to_jwk_public_key())
            }
        })
    }

    pub fn signer_from_pem(self, pem: &[u8], kid: &str) -> Result<Box<dyn JwsSigner>> {
        Ok(match self {
            Self::ES256 => {
                let mut s = ES256.signer_from_pem(pem)?;
                s.set_key_id(kid);
                Box::new(s)
            }
            Self::RS256 => {
                let mut s = RS256.signer_from_pem(pem)?;
                s.set_key_id(kid);
                Box::new(s)
            }
            Self::EdDSA => {
                let mut s = EdDSA.signer_from_pem(pem)?;
                s.set_key_id(kid);
                Box::new(s)
            }
        })
    }
}

/// A JWS verifier for a public JWK, limited to the algorithms Latchkey signs with. `alg: none`
/// and HMAC never get a verifier, so tokens using them cannot pass.
pub fn verifier_for(jwk: &Jwk, alg: &str) -> Result<Box<dyn JwsVerifier>> {
    if jwk.algorithm().is_some_and(|a| a != alg) {
        return Err(Error::Crypto("JWK algorithm mismatch".into()));
    }
    Ok(match alg {
        "RS256" => Box::new(RS256.verifier_from_jwk(jwk)?),
        "ES256" => Box::new(ES256.verifier_from_jwk(jwk)?),
        "EdDSA" => Box::new(EdDSA.verifier_from_jwk(jwk)?),
        _ => return Err(Error::Crypto(format!("algorithm {alg:?} is not accepted"))),
    })
}

/// Verifies a compact JWS against a JWK set (`{"keys": [...]}`), picking the key by `kid` (or
/// trying each key when there is none). Returns the header's `typ` and the claims. For many
/// tokens against one set, build a [`KeySet`] once instead.
pub fn verify_with_jwks(jwt: &str, jwks: &Value) -> Result<(Option<String>, Map<String, Value>)> {
    KeySet::from_jwks(jwks).verify(jwt)
}

/// The algorithm a JWK is for: its own `alg`, else the one its key type and curve allow among
/// those Latchkey accepts. The algorithm comes from the key, never from a token's header.
fn algorithm_of(jwk: &Jwk) -> Option<&'static str> {
    let from_type = match (jwk.key_type(), jwk.curve()) {
        ("EC", Some("P-256")) => "ES256",
        ("RSA", _) => "RS256",
        ("OKP", Some("Ed25519")) => "EdDSA",
        _ => return None,
    };
    match jwk.algorithm() {
        None => Some(from_type),
        Some(a) if a == from_type => Some(from_type),
        Some(_) => None,
    }
}

/// A JWK set ready to verify with: each usable key's verifier is built once (building one
/// parses the key, which costs about as much as a verification).
pub struct KeySet {
    keys: Vec<VerifyingKey>,
}

struct VerifyingKey {
    kid: Option<String>,
    alg: &'static str,
    verifier: Box<dyn JwsVerifier>,
}

impl KeySet {
    /// The keys of a JWK set that Latchkey can verify with; others are skipped.
    pub fn from_jwks(jwks: &Value) -> Self {
        let keys = jwks
            .get("keys")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|key| {
                let jwk = Jwk::from_map(key.as_object()?.clone()).ok()?;
                let alg = algorithm_of(&jwk)?;
                let verifier = verifier_for(&jwk, alg).ok()?;
                Some(VerifyingKey { kid: jwk.key_id().map(str::to_owned), alg, verifier })
            })
            .collect();
        Self { keys }
    }

    /// True when a key with this `kid` is in the set.
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Verifies a compact JWS: the header's `alg` must be the key's (by `kid`, or each key when
    /// the header names none). Returns the header's `typ`, its `kid` and the claims.
    pub fn verify(&self, jwt: &str) -> Result<(Option<String>, Map<String, Value>)> {
        self.verify_with_kid(jwt).map(|(typ, _, claims)| (typ, claims))
    }

    /// [`Self::verify`], also returning the `kid` of the header.
    #[allow(clippy::type_complexity)]
    pub fn verify_with_kid(
        &self,
        jwt: &str,
    ) -> Result<(Option<String>, Option<String>, Map<String, Value>)> {
        if jwt.len() > 16 * 1024 || jwt.split('.').count() != 3 {
            return Err(Error::Unauthenticated("malformed JWT"));
        }
        let header = josekit::jwt::decode_header(jwt)
            .map_err(|_| Error::Unauthenticated("malformed JWT header"))?;
        let alg = header
            .claim("alg")
            .and_then(Value::as_str)
            .ok_or(Error::Unauthenticated("JWT without alg"))?;
        let kid = header.claim("kid").and_then(Value::as_str);
        let typ = header.claim("typ").and_then(Value::as_str).map(str::to_owned);
        for key in &self.keys {
            if kid.is_some_and(|k| key.kid.as_deref() != Some(k)) || key.alg != alg {
                continue;
            }
            if let Ok((payload, _)) = josekit::jws::deserialize_compact(jwt, key.verifier.as_ref())
            {
                let claims: Map<String, Value> = serde_json::from_slice(&payload)
                    .map_err(|_| Error::Unauthenticated("JWT payload is not a JSON object"))?;
                return Ok((typ, kid.map(str::to_owned), claims));
            }
        }
        Err(Error::Unauthenticated("JWT signature not valid"))
    }
}

#[cfg(test)]
mod tests {
    use super::SigningAlg;

    #[test]
    fn the_default_is_advertised_first() {
        assert_eq!(SigningAlg::advertised().map(SigningAlg::as_str), ["RS256", "ES256", "EdDSA"]);
    }
}
