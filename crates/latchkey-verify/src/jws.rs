//! Splitting a compact JWS and reading its protected header, without trusting either.

use std::borrow::Cow;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::VerifyError;

/// Longer tokens are refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

#[derive(Deserialize)]
pub struct Header<'a> {
    #[serde(borrow)]
    pub alg: Cow<'a, str>,
    #[serde(borrow, default)]
    pub kid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub typ: Option<Cow<'a, str>>,
    /// Any critical extension is one this crate does not understand (RFC 7515 §4.1.11).
    #[serde(default)]
    pub crit: Option<Value>,
}

/// The parts of a compact JWS.
pub struct Parts<'t> {
    /// `base64url(header) . base64url(payload)`: what the signature covers.
    pub signing_input: &'t str,
    pub header: Vec<u8>,
    pub payload_b64: &'t str,
    pub signature: Vec<u8>,
}

pub fn split(token: &str) -> Result<Parts<'_>, VerifyError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(VerifyError::Malformed("token too long"));
    }
    let (signing_input, sig_b64) =
        token.rsplit_once('.').ok_or(VerifyError::Malformed("not a JWS"))?;
    let (header_b64, payload_b64) =
        signing_input.split_once('.').ok_or(VerifyError::Malformed("not a JWS"))?;
    if payload_b64.contains('.') {
        return Err(VerifyError::Malformed("not a compact JWS"));
    }
    Ok(Parts {
        signing_input,
        header: decode(header_b64)?,
        payload_b64,
        signature: decode(sig_b64)?,
    })
}

pub fn decode(b64: &str) -> Result<Vec<u8>, VerifyError> {
    URL_SAFE_NO_PAD.decode(b64).map_err(|_| VerifyError::Malformed("bad base64url"))
}

pub fn header(bytes: &[u8]) -> Result<Header<'_>, VerifyError> {
    let h: Header<'_> =
        serde_json::from_slice(bytes).map_err(|_| VerifyError::Malformed("bad header"))?;
    if h.crit.is_some() {
        return Err(VerifyError::Malformed("critical header extension"));
    }
    match &*h.alg {
        "none" | "None" | "NONE" => Err(VerifyError::Algorithm("none")),
        a if a.len() >= 2 && a[..2].eq_ignore_ascii_case("HS") => {
            Err(VerifyError::Algorithm("HMAC"))
        }
        _ => Ok(h),
    }
}

pub fn claims(payload_b64: &str) -> Result<Map<String, Value>, VerifyError> {
    let bytes = decode(payload_b64)?;
    serde_json::from_slice(&bytes)
        .map_err(|_| VerifyError::Malformed("payload is not a JSON object"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn compact_serialisation_only() {
        for bad in ["", "a", "a.b", "a.b.c.d", "...", "a..c"] {
            assert!(split(bad).is_err() || header(&split(bad).unwrap().header).is_err(), "{bad:?}");
        }
        assert!(split(&"a".repeat(MAX_TOKEN_LEN + 1)).is_err());
        let padded = format!("{}.{}.{}=", b64("{}"), b64("{}"), b64("sig"));
        assert!(split(&padded).is_err());
    }

    #[test]
    fn none_hmac_and_critical_extensions_are_refused() {
        for (h, want) in [
            (r#"{"alg":"none"}"#, VerifyError::Algorithm("none")),
            (r#"{"alg":"NONE"}"#, VerifyError::Algorithm("none")),
            (r#"{"alg":"HS256","kid":"k"}"#, VerifyError::Algorithm("HMAC")),
            (r#"{"alg":"hs512"}"#, VerifyError::Algorithm("HMAC")),
            (
                r#"{"alg":"ES256","crit":["b64"]}"#,
                VerifyError::Malformed("critical header extension"),
            ),
            (r#"{"kid":"k"}"#, VerifyError::Malformed("bad header")),
            (r#"[]"#, VerifyError::Malformed("bad header")),
        ] {
            assert_eq!(header(h.as_bytes()).err(), Some(want), "{h}");
        }
        let ok = header(br#"{"alg":"ES256","kid":"k\u0031","typ":"JWT"}"#).unwrap();
        assert_eq!(
            (&*ok.alg, ok.kid.as_deref(), ok.typ.as_deref()),
            ("ES256", Some("k1"), Some("JWT"))
        );
    }
}
