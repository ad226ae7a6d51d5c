//! ES256 verification on a public key parsed once (RFC 7518 §3.4): SHA-256 of the signing
//! input, the signature's R and S, OpenSSL's `ECDSA_do_verify`. josekit's verifier builds an
//! EVP context for every call; on the endpoints that verify a new token on every request
//! (introspection, userinfo) that set-up was about a tenth of the verification. The JWK is
//! still accepted or refused by josekit first (`super::verifier_for`), so both paths take the
//! same keys; the tests below check that they give the same verdicts.

use openssl::{
    bn::BigNum,
    ec::{EcGroup, EcKey},
    ecdsa::EcdsaSig,
    nid::Nid,
    pkey::Public,
};

use crate::infra::error::{Error, Result};

/// Bytes of each of R and S, and of each coordinate of the public point, on P-256.
const FIELD_BYTES: usize = 32;

/// A P-256 public key ready to verify ES256 signatures with.
pub(super) struct Es256Key(EcKey<Public>);

impl Es256Key {
    /// The key of a JWK that josekit already accepted as an ES256 key (kty EC, crv P-256):
    /// its `x` and `y`, each exactly 32 bytes of unpadded base64url, must be a point of the
    /// curve.
    pub(super) fn from_jwk(jwk: &josekit::jwk::Jwk) -> Result<Self> {
        let coordinate = |name: &str| -> Result<BigNum> {
            use base64::Engine as _;
            let text = jwk
                .parameter(name)
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| Error::Crypto(format!("EC JWK without {name}")))?;
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(text)
                .ok()
                .filter(|b| b.len() == FIELD_BYTES)
                .ok_or_else(|| Error::Crypto(format!("EC JWK {name} is not 32 bytes")))?;
            Ok(BigNum::from_slice(&bytes)?)
        };
        let (x, y) = (coordinate("x")?, coordinate("y")?);
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
        let key = EcKey::from_public_key_affine_coordinates(&group, &x, &y)?;
        key.check_key()?;
        Ok(Self(key))
    }

    /// Whether `signature` (R ‖ S, 64 bytes) signs `input` under this key. Anything else (a DER
    /// signature, R or S zero or not below the group order) is a signature that does not
    /// verify.
    pub(super) fn verifies(&self, input: &[u8], signature: &[u8]) -> bool {
        if signature.len() != 2 * FIELD_BYTES {
            return false;
        }
        let (r, s) = signature.split_at(FIELD_BYTES);
        let sig =
            || EcdsaSig::from_private_components(BigNum::from_slice(r)?, BigNum::from_slice(s)?);
        let digest = openssl::sha::sha256(input);
        let valid = sig().and_then(|sig| sig.verify(&digest, &self.0)).unwrap_or(false);
        if !valid {
            // A refused signature may leave OpenSSL's reason on this thread's error queue;
            // drop it so that no later call reports it as its own.
            drop(openssl::error::ErrorStack::get());
        }
        valid
    }
}

#[cfg(test)]
mod tests {
    use josekit::jws::{ES256, JwsVerifier};

    use super::Es256Key;
    use crate::infra::jose::SigningAlg;

    /// P-256's group order n.
    const ORDER: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];

    fn key_pair() -> (Es256Key, Box<dyn JwsVerifier>, Box<dyn josekit::jws::JwsSigner>) {
        let (pem, jwk) = SigningAlg::ES256.generate().unwrap();
        let fast = Es256Key::from_jwk(&jwk).unwrap();
        let jose = Box::new(ES256.verifier_from_jwk(&jwk).unwrap());
        (fast, jose, SigningAlg::ES256.signer_from_pem(&pem, "k").unwrap())
    }

    /// Every byte of a valid signature flipped in turn, truncations, extensions, R or S out
    /// of range, another key's signature and another message: the fast path says what josekit
    /// says, every time.
    #[test]
    fn the_verdicts_are_josekits() {
        let (fast, jose, signer) = key_pair();
        let (_, _, other) = key_pair();
        let input = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0";
        let good = signer.sign(input).unwrap();
        let mut cases = vec![(input.to_vec(), good.clone())];
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 1 << (i % 8);
            cases.push((input.to_vec(), bad));
        }
        cases.push((input.to_vec(), good[..63].to_vec()));
        cases.push((input.to_vec(), [good.as_slice(), &[0]].concat()));
        cases.push((input.to_vec(), Vec::new()));
        cases.push((input.to_vec(), vec![0; 64]));
        cases.push((input.to_vec(), [&[0u8; 32][..], &good[32..]].concat()));
        cases.push((input.to_vec(), [&good[..32], &[0u8; 32][..]].concat()));
        cases.push((input.to_vec(), [&ORDER[..], &good[32..]].concat()));
        cases.push((input.to_vec(), [&good[..32], &ORDER[..]].concat()));
        cases.push((input.to_vec(), vec![0xff; 64]));
        cases.push((input.to_vec(), other.sign(input).unwrap()));
        cases.push((b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ2In0".to_vec(), good.clone()));
        for (message, signature) in &cases {
            let expected = jose.verify(message, signature).is_ok();
            assert_eq!(fast.verifies(message, signature), expected, "{signature:02x?}");
        }
        assert!(fast.verifies(input, &good));
        // Refusals leave nothing on OpenSSL's error queue for the next caller.
        assert!(openssl::error::ErrorStack::get().errors().is_empty());
    }

    /// Fresh signatures over many messages (R and S with leading zero bytes among them).
    #[test]
    fn signatures_of_many_messages_verify() {
        let (fast, jose, signer) = key_pair();
        for n in 0..300 {
            let message = format!("header.payload-{n}");
            let signature = signer.sign(message.as_bytes()).unwrap();
            assert!(fast.verifies(message.as_bytes(), &signature), "{n}");
            assert!(jose.verify(message.as_bytes(), &signature).is_ok(), "{n}");
        }
    }

    #[test]
    fn keys_off_the_curve_or_of_the_wrong_size_are_refused() {
        let (_, jwk) = SigningAlg::ES256.generate().unwrap();
        let mut map: serde_json::Map<String, serde_json::Value> = jwk.into();
        let x = map["x"].as_str().unwrap().to_owned();
        let y = map["y"].as_str().unwrap().to_owned();
        let with = |name: &str, value: &str| {
            let mut m = map.clone();
            m.insert(name.to_owned(), value.into());
            m
        };
        // josekit may refuse the map already; either way no key comes out of it.
        let refused = |m: serde_json::Map<String, serde_json::Value>| {
            josekit::jwk::Jwk::from_map(m).map_or(true, |jwk| Es256Key::from_jwk(&jwk).is_err())
        };
        // (x, x) is not a point of the curve (but for a negligible chance): a well-formed JWK
        // that only the curve check refuses.
        let off_curve = josekit::jwk::Jwk::from_map(with("y", &x)).unwrap();
        assert!(Es256Key::from_jwk(&off_curve).is_err());
        assert!(refused(with("y", &y[..y.len() - 2])));
        assert!(refused(with("x", &format!("{x}AA"))));
        assert!(refused(with("x", "not base64!")));
        map.remove("y");
        assert!(refused(map));
    }
}
