//! `private_key_jwt` client assertions (RFC 7523 §3, OIDC Core §9): which client an assertion
//! claims to be (read before anything is verified, only to find the keys), and the claim checks
//! once its signature is verified. Recording the `jti` against replay is the caller's, after
//! these checks.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Map, Value};

/// Longest accepted assertion lifetime (`exp` - now): assertions are meant to be single-shot.
pub const MAX_LIFETIME_SECS: i64 = 600;
/// How far in the future an assertion's `nbf` may be (clock skew between client and us).
pub const NBF_SKEW_SECS: i64 = 30;
/// Longest accepted `jti`.
pub const MAX_JTI_LEN: usize = 256;

/// The `iss` an assertion claims, read without verifying anything: it only says whose keys to
/// verify the assertion with. None when the assertion is not a JWS with a JSON payload naming a
/// string `iss`.
pub fn claimed_issuer(assertion: &str) -> Option<String> {
    let mut parts = assertion.split('.');
    let (_, payload, _, rest) = (parts.next()?, parts.next()?, parts.next()?, parts.next());
    if rest.is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// What a verified assertion must say.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub client_id: &'a str,
    /// Our issuer and token endpoint: either may be the audience (OIDC Core §9 names the token
    /// endpoint; RFC 7523 allows the issuer).
    pub issuer: &'a str,
    pub token_endpoint: &'a str,
    pub now: i64,
}

/// An accepted assertion: its id and expiry, to record against replay until then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted<'a> {
    pub jti: &'a str,
    pub exp: i64,
}

/// The claim checks of RFC 7523 §3 on a verified assertion. The reason for a refusal is for the
/// log only; the client is told `invalid_client`.
pub fn check<'a>(
    claims: &'a Map<String, Value>,
    expected: &Expected<'_>,
) -> Result<Accepted<'a>, &'static str> {
    let s = |k: &str| claims.get(k).and_then(Value::as_str);
    if s("iss") != Some(expected.client_id) || s("sub") != Some(expected.client_id) {
        return Err("assertion iss/sub is not the client");
    }
    let ours = |a: &str| a == expected.token_endpoint || a == expected.issuer;
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => ours(a),
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str().is_some_and(ours)),
        _ => false,
    };
    if !aud_ok {
        return Err("assertion audience is not this server");
    }
    let exp = claims.get("exp").and_then(Value::as_i64).ok_or("assertion without exp")?;
    if exp <= expected.now || exp > expected.now.saturating_add(MAX_LIFETIME_SECS) {
        return Err("assertion expired or too long-lived");
    }
    match claims.get("nbf") {
        None => {}
        Some(nbf) => match nbf.as_i64() {
            Some(nbf) if nbf <= expected.now.saturating_add(NBF_SKEW_SECS) => {}
            // In the future, or not a number: fail closed.
            _ => return Err("assertion not yet valid"),
        },
    }
    let jti = s("jti")
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_LEN)
        .ok_or("assertion without jti")?;
    Ok(Accepted { jti, exp })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ISS: &str = "https://id.example";
    const TOKEN: &str = "https://id.example/oauth2/token";

    fn expected(now: i64) -> Expected<'static> {
        Expected { client_id: "client_a", issuer: ISS, token_endpoint: TOKEN, now }
    }

    fn good() -> Value {
        json!({ "iss": "client_a", "sub": "client_a", "aud": TOKEN, "exp": 160, "iat": 100,
                "jti": "j1" })
    }

    fn run(v: Value) -> Result<(String, i64), &'static str> {
        let Value::Object(m) = v else { return Err("not an object") };
        check(&m, &expected(100)).map(|a| (a.jti.to_owned(), a.exp))
    }

    fn with(k: &str, v: Value) -> Value {
        let mut c = good();
        c[k] = v;
        c
    }

    fn without(k: &str) -> Value {
        let mut c = good();
        c.as_object_mut().map(|o| o.remove(k));
        c
    }

    #[test]
    fn a_good_assertion_passes() {
        assert_eq!(run(good()), Ok(("j1".into(), 160)));
        assert!(run(with("aud", json!(ISS))).is_ok());
        assert!(run(with("aud", json!(["https://other", TOKEN]))).is_ok());
        assert!(run(with("nbf", json!(130))).is_ok(), "within the skew");
        assert!(run(with("exp", json!(700))).is_ok(), "exactly the longest lifetime");
    }

    #[test]
    fn issuer_and_subject_must_both_be_the_client() {
        for (k, v) in [
            ("iss", json!("client_b")),
            ("sub", json!("client_b")),
            ("sub", json!("usr_1")),
            ("iss", json!(["client_a"])),
            ("sub", json!(null)),
            ("iss", json!("CLIENT_A")),
        ] {
            assert!(run(with(k, v.clone())).is_err(), "{k}={v}");
        }
        assert!(run(without("iss")).is_err());
        assert!(run(without("sub")).is_err());
    }

    #[test]
    fn audience_must_be_this_server() {
        for aud in [
            json!("https://elsewhere.example/token"),
            json!("https://id.example/"),
            json!("https://id.example/oauth2/token/"),
            json!(["https://elsewhere.example"]),
            json!([]),
            json!([7]),
            json!(null),
            json!({ "aud": TOKEN }),
        ] {
            assert!(run(with("aud", aud.clone())).is_err(), "{aud}");
        }
        assert!(run(without("aud")).is_err());
    }

    #[test]
    fn expiry_window_and_not_before() {
        for exp in [
            json!(100),
            json!(99),
            json!(701),
            json!("160"),
            json!(160.5),
            json!(null),
            json!(i64::MAX),
        ] {
            assert!(run(with("exp", exp.clone())).is_err(), "{exp}");
        }
        assert!(run(without("exp")).is_err());
        for nbf in [json!(131), json!("100"), json!(100.5), json!(null)] {
            assert!(run(with("nbf", nbf.clone())).is_err(), "{nbf}");
        }
        // Near the end of time nothing overflows.
        let Value::Object(m) = with("exp", json!(i64::MAX)) else { return };
        assert!(check(&m, &expected(i64::MAX - 1)).is_ok());
    }

    #[test]
    fn jti_is_required_and_bounded() {
        for jti in [json!(""), json!(7), json!(null), json!(["j"]), json!("x".repeat(257))] {
            assert!(run(with("jti", jti.clone())).is_err(), "{jti}");
        }
        assert!(run(without("jti")).is_err());
        assert!(run(with("jti", json!("x".repeat(256)))).is_ok());
    }

    #[test]
    fn the_claimed_issuer_is_read_without_trusting_anything() {
        let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let jwt = |payload: &str| format!("{}.{payload}.sig", b64(&json!({ "alg": "ES256" })));
        assert_eq!(claimed_issuer(&jwt(&b64(&good()))).as_deref(), Some("client_a"));
        for bad in [
            jwt(&b64(&json!({ "sub": "client_a" }))),
            jwt(&b64(&json!({ "iss": 7 }))),
            jwt(&b64(&json!({ "iss": "" }))),
            jwt(&b64(&json!(["client_a"]))),
            jwt("not base64!"),
            jwt(&URL_SAFE_NO_PAD.encode("not json")),
            format!("{}.x", b64(&good())),
            format!("a.{}.c.d", b64(&good())),
            String::new(),
        ] {
            assert_eq!(claimed_issuer(&bad), None, "{bad}");
        }
    }
}
