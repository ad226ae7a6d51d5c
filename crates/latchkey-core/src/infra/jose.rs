//! The JOSE algorithms Latchkey signs with, and the verification of compact JWS against a JWK
//! set. Verification never trusts the header's algorithm beyond this list: `none` and HMAC
//! have no verifier here.

use josekit::{
    jwk::{Jwk, alg::ed::EdCurve},
    jws::{ES256, EdDSA, JwsSigner, JwsVerifier, RS256},
};
use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::infra::error::{Error, Result};

mod es256;

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
    check: SignatureCheck,
}

/// How a key checks signatures: ES256 keys on the low-level path (`es256`: the endpoints
/// that verify a new token per request spend most of their time here), the others through
/// josekit.
enum SignatureCheck {
    Es256(es256::Es256Key),
    Jose(Box<dyn JwsVerifier>),
}

impl SignatureCheck {
    /// The check for a JWK of `alg`, accepted or refused by josekit's rules in either case.
    fn for_jwk(jwk: &Jwk, alg: &str) -> Result<Self> {
        let verifier = verifier_for(jwk, alg)?;
        Ok(match alg {
            "ES256" => Self::Es256(es256::Es256Key::from_jwk(jwk)?),
            _ => Self::Jose(verifier),
        })
    }

    fn verifies(&self, input: &[u8], signature: &[u8]) -> bool {
        match self {
            Self::Es256(key) => key.verifies(input, signature),
            Self::Jose(verifier) => verifier.verify(input, signature).is_ok(),
        }
    }
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
                let check = SignatureCheck::for_jwk(&jwk, alg).ok()?;
                Some(VerifyingKey { kid: jwk.key_id().map(str::to_owned), alg, check })
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

    /// [`Self::verify`], also returning the `kid` of the header. The compact form is taken apart
    /// here, once, and the signature checked with the key's verifier over the signing input:
    /// this is the hot path of introspection and userinfo. Extensions (`crit`, RFC 7797 `b64`)
    /// are refused, as are duplicated header members and non-canonical base64.
    #[allow(clippy::type_complexity)]
    pub fn verify_with_kid(
        &self,
        jwt: &str,
    ) -> Result<(Option<String>, Option<String>, Map<String, Value>)> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        if jwt.len() > 16 * 1024 {
            return Err(Error::Unauthenticated("malformed JWT"));
        }
        let mut parts = jwt.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::Unauthenticated("malformed JWT"));
        };
        let header_json =
            b64.decode(header).map_err(|_| Error::Unauthenticated("malformed JWT header"))?;
        let h: CompactHeader<'_> = serde_json::from_slice(&header_json)
            .map_err(|_| Error::Unauthenticated("malformed JWT header"))?;
        if h.crit.is_some() || h.b64.is_some() {
            return Err(Error::Unauthenticated("JWS extensions are not accepted"));
        }
        let signature =
            b64.decode(signature).map_err(|_| Error::Unauthenticated("malformed JWT signature"))?;
        let signing_input = &jwt.as_bytes()[..header.len() + 1 + payload.len()];
        let kid = h.kid.as_deref();
        let verified = self.keys.iter().any(|key| {
            kid.is_none_or(|k| key.kid.as_deref() == Some(k))
                && key.alg == h.alg
                && key.check.verifies(signing_input, &signature)
        });
        if !verified {
            return Err(Error::Unauthenticated("JWT signature not valid"));
        }
        let payload =
            b64.decode(payload).map_err(|_| Error::Unauthenticated("malformed JWT payload"))?;
        let claims: Map<String, Value> = serde_json::from_slice(&payload)
            .map_err(|_| Error::Unauthenticated("JWT payload is not a JSON object"))?;
        Ok((h.typ.map(Cow::into_owned), h.kid.map(Cow::into_owned), claims))
    }
}

/// The members of a JWS header that verification reads; others are ignored. Strings borrow
/// from the decoded header unless they hold escapes.
#[derive(Deserialize)]
struct CompactHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    typ: Option<Cow<'a, str>>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    b64: Option<serde::de::IgnoredAny>,
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use serde_json::json;

    use super::{KeySet, SigningAlg};

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A key set of one key of `alg` (kid "k1"), and a signer of compact JWS with any header.
    fn keys(alg: SigningAlg) -> (KeySet, impl Fn(&serde_json::Value, &str) -> String) {
        let (pem, mut jwk) = alg.generate().unwrap();
        jwk.set_key_id("k1");
        let set = KeySet::from_jwks(&json!({ "keys": [serde_json::to_value(&jwk).unwrap()] }));
        let signer = alg.signer_from_pem(&pem, "k1").unwrap();
        let sign = move |header: &serde_json::Value, payload: &str| {
            let input =
                format!("{}.{}", b64(header.to_string().as_bytes()), b64(payload.as_bytes()));
            let sig = signer.sign(input.as_bytes()).unwrap();
            format!("{input}.{}", b64(&sig))
        };
        (set, sign)
    }

    #[test]
    fn compact_tokens_verify_with_the_keys_algorithm_only() {
        for alg in SigningAlg::ALL {
            let (set, sign) = keys(alg);
            let a = alg.as_str();
            let ok = sign(&json!({"alg": a, "kid": "k1", "typ": "at+jwt"}), r#"{"sub":"u"}"#);
            let (typ, kid, claims) = set.verify_with_kid(&ok).unwrap();
            assert_eq!(
                (typ.as_deref(), kid.as_deref(), claims["sub"].as_str()),
                (Some("at+jwt"), Some("k1"), Some("u"))
            );
            // Without a kid each key is tried.
            assert!(set.verify(&sign(&json!({"alg": a}), "{}")).is_ok(), "{a}");
            let refused = [
                sign(&json!({"alg": a, "kid": "k2"}), "{}"),
                sign(&json!({"alg": "none", "kid": "k1"}), "{}"),
                sign(&json!({"alg": "HS256", "kid": "k1"}), "{}"),
                sign(
                    &json!({"alg": if a == "ES256" { "RS256" } else { "ES256" }, "kid": "k1"}),
                    "{}",
                ),
                sign(&json!({"alg": a, "kid": "k1", "crit": ["exp"]}), "{}"),
                sign(&json!({"alg": a, "kid": "k1", "b64": false}), "{}"),
                sign(&json!({"alg": a, "kid": "k1"}), "[1]"),
                format!("{ok}."),
                ok.replacen('.', "..", 1),
                format!("{ok}="),
                format!("{}x", &ok[..ok.len() - 1]),
            ];
            for bad in refused {
                assert!(set.verify(&bad).is_err(), "{a}: {bad}");
            }
            // A tampered payload under the original signature.
            let parts: Vec<&str> = ok.split('.').collect();
            let tampered = format!("{}.{}.{}", parts[0], b64(br#"{"sub":"v"}"#), parts[2]);
            assert!(set.verify(&tampered).is_err(), "{a}");
            // A duplicated header member is not "the last one wins".
            let dup = format!(
                "{}.{}",
                b64(format!(r#"{{"alg":"{a}","alg":"none","kid":"k1"}}"#).as_bytes()),
                parts[1]
            );
            assert!(set.verify(&format!("{dup}.{}", parts[2])).is_err(), "{a}");
        }
    }

    #[test]
    fn the_default_is_advertised_first() {
        assert_eq!(SigningAlg::advertised().map(SigningAlg::as_str), ["RS256", "ES256", "EdDSA"]);
    }
}
