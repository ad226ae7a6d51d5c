//! The checks on a token whose signature is valid: pure functions of the policy, the claims and
//! the time, failing closed.
//!
//! Audience and authorised party (the rule this crate applies):
//! - an access token (`at+jwt`) must carry an `aud` naming one of the configured audiences; when
//!   clients are configured, its `client_id` must be one of them (authorised parties, which
//!   are web origins, do not apply to access tokens);
//! - a session token (`JWT`) must carry an `azp` naming one of the configured authorised
//!   parties, and that `azp` must be a web origin (`https://app.example.com`, no path):
//!   Latchkey sets it to the origin of the app that asked for the token. An OpenID Connect ID
//!   token (also `typ: JWT`) has its client id as `azp`, so it never passes for a session
//!   token. If a session token also carries an `aud`, one of its values must be a configured
//!   audience;
//! - nothing configured for a check means that check refuses every token.

use serde_json::{Map, Value};

use crate::{claims::TokenType, error::VerifyError};

/// What a verifier accepts.
#[derive(Debug, Clone)]
pub struct Policy {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub authorized_parties: Vec<String>,
    /// OAuth clients whose access tokens are accepted; empty accepts any client.
    pub clients: Vec<String>,
    pub types: Vec<TokenType>,
    /// Seconds of clock difference tolerated on `exp`, `nbf` and `iat`.
    pub skew: i64,
    pub required_scopes: Vec<String>,
}

/// Checks the claims of a token of type `typ` at `now`.
pub fn check(
    policy: &Policy,
    typ: TokenType,
    c: &Map<String, Value>,
    now: i64,
) -> Result<(), VerifyError> {
    if !policy.types.contains(&typ) {
        return Err(VerifyError::Type);
    }
    if c.get("iss").and_then(Value::as_str) != Some(policy.issuer.as_str()) {
        return Err(VerifyError::Issuer);
    }
    check_times(policy.skew, c, now)?;
    if c.get("sub").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(VerifyError::Claim("sub"));
    }
    check_audience(policy, typ, c)?;
    check_scopes(&policy.required_scopes, c)
}

fn numeric_date(c: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, VerifyError> {
    match c.get(name) {
        None => Ok(None),
        // NumericDate may carry a fraction (RFC 7519 §2); whole seconds are enough here.
        Some(v) => v
            .as_f64()
            .filter(|f| f.is_finite())
            .map(|f| Some(f.floor() as i64))
            .ok_or(VerifyError::Claim(name)),
    }
}

fn check_times(skew: i64, c: &Map<String, Value>, now: i64) -> Result<(), VerifyError> {
    let exp = numeric_date(c, "exp")?.ok_or(VerifyError::Claim("exp"))?;
    if now >= exp.saturating_add(skew) {
        return Err(VerifyError::Expired);
    }
    if numeric_date(c, "nbf")?.is_some_and(|nbf| now.saturating_add(skew) < nbf) {
        return Err(VerifyError::NotYetValid);
    }
    // Latchkey sets iat on every token; one issued in the future is as suspect as one not yet
    // valid.
    let iat = numeric_date(c, "iat")?.ok_or(VerifyError::Claim("iat"))?;
    if now.saturating_add(skew) < iat {
        return Err(VerifyError::NotYetValid);
    }
    Ok(())
}

/// `aud` as strings; `Err` when it has another shape, `Ok(None)` when absent.
fn audiences(c: &Map<String, Value>) -> Result<Option<Vec<&str>>, VerifyError> {
    match c.get("aud") {
        None => Ok(None),
        Some(Value::String(a)) => Ok(Some(vec![a.as_str()])),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().ok_or(VerifyError::Claim("aud")))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(VerifyError::Claim("aud")),
    }
}

fn check_audience(
    policy: &Policy,
    typ: TokenType,
    c: &Map<String, Value>,
) -> Result<(), VerifyError> {
    let aud_ok = |auds: &[&str]| auds.iter().any(|a| policy.audiences.iter().any(|p| p == a));
    let party_ok =
        |p: Option<&str>| p.is_some_and(|p| policy.authorized_parties.iter().any(|a| a == p));
    let str_of = |name: &str| c.get(name).and_then(Value::as_str);
    match typ {
        TokenType::Access => {
            let auds = audiences(c)?.ok_or(VerifyError::Audience)?;
            if !aud_ok(&auds) {
                return Err(VerifyError::Audience);
            }
            let client = str_of("client_id");
            if !policy.clients.is_empty()
                && !client.is_some_and(|c| policy.clients.iter().any(|p| p == c))
            {
                return Err(VerifyError::Audience);
            }
        }
        TokenType::Session => {
            let azp = str_of("azp").filter(|a| is_origin(a));
            if !party_ok(azp) {
                return Err(VerifyError::Audience);
            }
            if audiences(c)?.is_some_and(|auds| !aud_ok(&auds)) {
                return Err(VerifyError::Audience);
            }
        }
    }
    Ok(())
}

/// `http(s)://host[:port]`, nothing after: what a browser sends as `Origin`.
fn is_origin(s: &str) -> bool {
    let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.contains(['/', '?', '#', '@', ' ']))
}

fn check_scopes(required: &[String], c: &Map<String, Value>) -> Result<(), VerifyError> {
    if required.is_empty() {
        return Ok(());
    }
    let granted = c.get("scope").and_then(Value::as_str).unwrap_or_default();
    if required.iter().all(|r| granted.split(' ').any(|g| g == r)) {
        Ok(())
    } else {
        Err(VerifyError::InsufficientScope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn policy() -> Policy {
        Policy {
            issuer: "https://id.example.com".into(),
            audiences: vec!["https://api.example.com".into()],
            authorized_parties: vec!["https://app.example.com".into()],
            clients: vec![],
            types: vec![TokenType::Session, TokenType::Access],
            skew: 5,
            required_scopes: vec![],
        }
    }

    fn session(extra: Value) -> Map<String, Value> {
        let mut c = json!({
            "iss": "https://id.example.com", "sub": "usr_1", "sid": "ses_1",
            "iat": NOW, "nbf": NOW, "exp": NOW + 60, "azp": "https://app.example.com"
        });
        merge(&mut c, extra)
    }

    fn access(extra: Value) -> Map<String, Value> {
        let mut c = json!({
            "iss": "https://id.example.com", "sub": "usr_1", "client_id": "https://app.example.com",
            "iat": NOW, "exp": NOW + 300, "aud": "https://api.example.com", "scope": "openid read"
        });
        merge(&mut c, extra)
    }

    fn merge(c: &mut Value, extra: Value) -> Map<String, Value> {
        let (Value::Object(c), Value::Object(extra)) = (c, extra) else { unreachable!() };
        for (k, v) in extra {
            if v.is_null() {
                c.remove(&k);
            } else {
                c.insert(k, v);
            }
        }
        c.clone()
    }

    #[test]
    fn valid_tokens_pass() {
        check(&policy(), TokenType::Session, &session(json!({})), NOW).unwrap();
        check(&policy(), TokenType::Access, &access(json!({})), NOW).unwrap();
        let several = access(json!({"aud": ["other", "https://api.example.com"]}));
        check(&policy(), TokenType::Access, &several, NOW).unwrap();
    }

    #[test]
    fn times_are_checked_with_the_skew() {
        let p = policy();
        let s = session(json!({}));
        check(&p, TokenType::Session, &s, NOW + 64).unwrap();
        assert_eq!(check(&p, TokenType::Session, &s, NOW + 65), Err(VerifyError::Expired));
        check(&p, TokenType::Session, &s, NOW - 5).unwrap();
        assert_eq!(check(&p, TokenType::Session, &s, NOW - 6), Err(VerifyError::NotYetValid));
        let no_iat = session(json!({"iat": null}));
        assert_eq!(check(&p, TokenType::Session, &no_iat, NOW), Err(VerifyError::Claim("iat")));
        let future_iat = session(json!({"nbf": null, "iat": NOW + 100}));
        assert_eq!(check(&p, TokenType::Session, &future_iat, NOW), Err(VerifyError::NotYetValid));
        let no_exp = session(json!({"exp": null}));
        assert_eq!(check(&p, TokenType::Session, &no_exp, NOW), Err(VerifyError::Claim("exp")));
        let text_exp = session(json!({"exp": "soon"}));
        assert_eq!(check(&p, TokenType::Session, &text_exp, NOW), Err(VerifyError::Claim("exp")));
        let zero = Policy { skew: 0, ..policy() };
        assert_eq!(check(&zero, TokenType::Session, &s, NOW + 60), Err(VerifyError::Expired));
    }

    #[test]
    fn issuer_subject_and_type_are_exact() {
        let p = policy();
        for iss in [
            json!("https://id.example.com/"),
            json!("https://evil.example.com"),
            json!(null),
            json!(["https://id.example.com"]),
        ] {
            let c = session(json!({"iss": iss}));
            assert_eq!(check(&p, TokenType::Session, &c, NOW), Err(VerifyError::Issuer), "{iss}");
        }
        for sub in [json!(null), json!(""), json!(7)] {
            let c = session(json!({"sub": sub}));
            assert_eq!(check(&p, TokenType::Session, &c, NOW), Err(VerifyError::Claim("sub")));
        }
        let only_access = Policy { types: vec![TokenType::Access], ..policy() };
        let s = session(json!({}));
        assert_eq!(check(&only_access, TokenType::Session, &s, NOW), Err(VerifyError::Type));
    }

    #[test]
    fn session_tokens_need_an_authorised_party() {
        let p = policy();
        for extra in [
            json!({"azp": "https://evil.example.com"}),
            json!({"azp": null}),
            json!({"azp": ["https://app.example.com"]}),
            json!({"aud": "https://other-api.example.com"}),
        ] {
            let c = session(extra.clone());
            assert_eq!(
                check(&p, TokenType::Session, &c, NOW),
                Err(VerifyError::Audience),
                "{extra}"
            );
        }
        // An ID token has its client id as azp (and aud): configured or not, it is no session
        // token.
        let cli = Policy {
            authorized_parties: vec!["cli_1".into(), "https://app.example.com/".into()],
            audiences: vec!["cli_1".into()],
            ..policy()
        };
        for azp in ["cli_1", "https://app.example.com/"] {
            let id_token = session(json!({"azp": azp, "aud": "cli_1"}));
            assert_eq!(check(&cli, TokenType::Session, &id_token, NOW), Err(VerifyError::Audience));
        }
        for (s, want) in [
            ("https://a.example", true),
            ("http://127.0.0.1:9", true),
            ("https://", false),
            ("https://a/b", false),
            ("a.example", false),
            ("https://u@a", false),
        ] {
            assert_eq!(is_origin(s), want, "{s}");
        }
        let odd_aud = session(json!({"aud": 5}));
        assert_eq!(check(&p, TokenType::Session, &odd_aud, NOW), Err(VerifyError::Claim("aud")));
        let with_aud = session(json!({"aud": ["https://api.example.com"]}));
        check(&p, TokenType::Session, &with_aud, NOW).unwrap();
        let nobody = Policy { authorized_parties: vec![], ..policy() };
        let s = session(json!({}));
        assert_eq!(check(&nobody, TokenType::Session, &s, NOW), Err(VerifyError::Audience));
    }

    #[test]
    fn access_tokens_need_an_audience_and_a_known_client() {
        let p = Policy { clients: vec!["https://app.example.com".into()], ..policy() };
        for extra in [
            json!({"aud": null}),
            json!({"aud": "https://id.example.com"}),
            json!({"aud": []}),
            json!({"aud": ["x", 1]}),
            json!({"client_id": "someone-else"}),
            json!({"client_id": null}),
        ] {
            let c = access(extra.clone());
            assert!(check(&p, TokenType::Access, &c, NOW).is_err(), "{extra}");
        }
        // Without configured clients any client of the audience is accepted; authorised parties
        // (origins, for session tokens) do not restrict access tokens.
        let any_client = policy();
        check(&any_client, TokenType::Access, &access(json!({"client_id": "x"})), NOW).unwrap();
        let no_aud = Policy { audiences: vec![], ..policy() };
        let a = access(json!({}));
        assert_eq!(check(&no_aud, TokenType::Access, &a, NOW), Err(VerifyError::Audience));
    }

    #[test]
    fn required_scopes_must_all_be_granted() {
        let p = Policy { required_scopes: vec!["read".into()], ..policy() };
        check(&p, TokenType::Access, &access(json!({})), NOW).unwrap();
        let p = Policy { required_scopes: vec!["read".into(), "write".into()], ..policy() };
        let a = access(json!({}));
        assert_eq!(check(&p, TokenType::Access, &a, NOW), Err(VerifyError::InsufficientScope));
        let s = session(json!({}));
        assert_eq!(check(&p, TokenType::Session, &s, NOW), Err(VerifyError::InsufficientScope));
    }
}
