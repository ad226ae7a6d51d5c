//! Checks on Latchkey's own RFC 9068 access tokens once their signature is verified: the
//! header's `typ`, `iss`, `exp`, the presence of `sub` and `client_id`, and the audience policy
//! of the endpoint that reads them. What needs the store (is the session live, is the grant
//! revoked, which audiences are registered for the client) is the caller's.

use serde_json::{Map, Value};

/// The `typ` of an access token (RFC 9068 §2.1).
pub const TYP: &str = "at+jwt";

/// True for the `typ` of an access token: `at+jwt`, or its media-type form
/// `application/at+jwt` (RFC 9068 §4), case-insensitively. An ID token must never pass for one
/// (nor one for an ID token: see `id_token_hint`).
pub fn is_access_token_typ(typ: Option<&str>) -> bool {
    typ.is_some_and(|t| {
        t.eq_ignore_ascii_case(TYP)
            || (t.get(..12).is_some_and(|p| p.eq_ignore_ascii_case("application/"))
                && t.get(12..).is_some_and(|rest| rest.eq_ignore_ascii_case(TYP)))
    })
}

/// Which `aud` an access token may carry for the party checking it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudiencePolicy {
    /// Latchkey's own endpoints (userinfo): exactly the issuer, as a string.
    Issuer,
    /// Introspection for resource servers: the issuer, or audiences that are all registered for
    /// the token's client (client_credentials with `resource` / `audience`).
    IssuerOrRegistered,
}

/// What the audience check needs from the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience<'a> {
    /// The token is for the issuer: accepted.
    Issuer,
    /// Accepted only if every one of `audiences` is registered for `client_id` (see
    /// [`all_registered`]).
    IfRegistered { client_id: &'a str, audiences: Vec<&'a str> },
}

/// Why a token was refused; logged, never sent (the caller answers `invalid_token` or
/// `active: false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotAnAccessToken,
    WrongIssuer,
    Expired,
    MissingClaim(&'static str),
    WrongAudience,
}

/// RFC 9068 §4 for a token whose signature is already verified. On success, says what remains
/// to check of the audience.
pub fn check<'a>(
    typ: Option<&str>,
    claims: &'a Map<String, Value>,
    issuer: &str,
    now: i64,
    policy: AudiencePolicy,
) -> Result<Audience<'a>, Refusal> {
    ours_and_unexpired(typ, claims, issuer, now)?;
    for required in ["sub", "client_id"] {
        if claims.get(required).and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(Refusal::MissingClaim(required));
        }
    }
    audience(claims, issuer, policy)
}

/// An access token (`typ`) of this issuer that has not expired; returns its `exp`. A
/// non-integer `exp` (a string, a float, a huge number) fails closed.
fn ours_and_unexpired(
    typ: Option<&str>,
    claims: &Map<String, Value>,
    issuer: &str,
    now: i64,
) -> Result<i64, Refusal> {
    if !is_access_token_typ(typ) {
        return Err(Refusal::NotAnAccessToken);
    }
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err(Refusal::WrongIssuer);
    }
    claims.get("exp").and_then(Value::as_i64).filter(|exp| *exp > now).ok_or(Refusal::Expired)
}

/// The audience policy alone (see [`AudiencePolicy`]).
pub fn audience<'a>(
    claims: &'a Map<String, Value>,
    issuer: &str,
    policy: AudiencePolicy,
) -> Result<Audience<'a>, Refusal> {
    let aud = claims.get("aud");
    if aud.and_then(Value::as_str) == Some(issuer) {
        return Ok(Audience::Issuer);
    }
    if policy == AudiencePolicy::Issuer {
        return Err(Refusal::WrongAudience);
    }
    // Every value must be a string; an empty list names no one. The issuer among others (a
    // user grant for an API and for this server) needs no registration.
    let audiences: Option<Vec<&str>> = match aud {
        Some(Value::String(a)) => Some(vec![a.as_str()]),
        Some(Value::Array(items)) if !items.is_empty() => items.iter().map(Value::as_str).collect(),
        _ => None,
    };
    let audiences = audiences.map(|a| a.into_iter().filter(|a| *a != issuer).collect::<Vec<_>>());
    if audiences.as_ref().is_some_and(Vec::is_empty) {
        // `[issuer]` (once or repeated) names this server alone.
        return Ok(Audience::Issuer);
    }
    let client_id = claims.get("client_id").and_then(Value::as_str);
    match (audiences, client_id) {
        (Some(audiences), Some(client_id)) => Ok(Audience::IfRegistered { client_id, audiences }),
        _ => Err(Refusal::WrongAudience),
    }
}

/// True when every audience is registered, compared byte for byte.
pub fn all_registered(audiences: &[&str], registered: &[String]) -> bool {
    audiences.iter().all(|a| registered.iter().any(|r| r == a))
}

/// Why an (already verified) access token may not call an API for back ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientTokenRefusal {
    /// A user's token (a session behind it, or a `sub` that is not the client itself).
    NotAClientToken,
    /// A client's token without the scope the API needs.
    ScopeMissing,
}

/// A client_credentials token (RFC 9068 §2.2: `sub` is the client itself, no session) that
/// carries `scope`; returns its `client_id`. Anything else about the token is
/// [`ClientTokenRefusal::NotAClientToken`]: a user's token never acts for a back end.
pub fn check_client_token<'a>(
    claims: &'a Map<String, Value>,
    scope: &str,
) -> Result<&'a str, ClientTokenRefusal> {
    let client_id = claims
        .get("client_id")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .ok_or(ClientTokenRefusal::NotAClientToken)?;
    let user_bound = ["sid", "auth_time", "grant_id"].iter().any(|k| claims.contains_key(*k));
    if claims.get("sub").and_then(Value::as_str) != Some(client_id) || user_bound {
        return Err(ClientTokenRefusal::NotAClientToken);
    }
    if !scopes(claims).iter().any(|s| s == scope) {
        return Err(ClientTokenRefusal::ScopeMissing);
    }
    Ok(client_id)
}

/// The token's scopes (`scope`, space-separated); none when absent or not a string.
pub fn scopes(claims: &Map<String, Value>) -> Vec<String> {
    claims
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What RFC 7009 revocation of an access token records: the token's `jti` until its `exp`, for
/// the client it was issued to (only that client may revoke it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revocable<'a> {
    pub jti: &'a str,
    pub client_id: &'a str,
    pub exp: i64,
}

/// An access token (signature already verified) that revocation can act on: one of ours
/// (`typ`, issuer), not expired, naming its client and carrying a `jti`. Whatever its audience:
/// a token aimed at an API is revoked like any other.
pub fn revocable<'a>(
    typ: Option<&str>,
    claims: &'a Map<String, Value>,
    issuer: &str,
    now: i64,
) -> Result<Revocable<'a>, Refusal> {
    let exp = ours_and_unexpired(typ, claims, issuer, now)?;
    let text = |name: &'static str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .ok_or(Refusal::MissingClaim(name))
    };
    Ok(Revocable { jti: text("jti")?, client_id: text("client_id")?, exp })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ISS: &str = "https://id.example";

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn token() -> Value {
        json!({ "iss": ISS, "aud": ISS, "sub": "usr_1", "client_id": "client_a", "exp": 200,
                "scope": "openid email" })
    }

    #[test]
    fn typ_must_be_at_jwt() {
        for ok in ["at+jwt", "AT+JWT", "application/at+jwt", "Application/At+Jwt"] {
            assert!(is_access_token_typ(Some(ok)), "{ok}");
        }
        for bad in [
            None,
            Some("JWT"),
            Some(""),
            Some("at+jwt "),
            Some("application/jwt"),
            Some("logout+jwt"),
            Some("application/"),
            Some("xapplication/at+jwt"),
        ] {
            assert!(!is_access_token_typ(bad), "{bad:?}");
        }
        let c = claims(token());
        for typ in [None, Some("JWT")] {
            assert_eq!(
                check(typ, &c, ISS, 100, AudiencePolicy::Issuer),
                Err(Refusal::NotAnAccessToken)
            );
        }
    }

    #[test]
    fn issuer_expiry_and_required_claims() {
        let run = |v: Value, now: i64| {
            check(Some(TYP), &claims(v), ISS, now, AudiencePolicy::Issuer)
                .map(|a| a == Audience::Issuer)
        };
        assert_eq!(run(token(), 100), Ok(true));
        let with = |k: &str, val: Value| {
            let mut t = token();
            t[k] = val;
            t
        };
        let without = |k: &str| {
            let mut t = token();
            t.as_object_mut().map(|o| o.remove(k));
            t
        };
        assert_eq!(run(token(), 200), Err(Refusal::Expired), "exp is exclusive");
        assert_eq!(run(with("exp", json!("300")), 100), Err(Refusal::Expired));
        assert_eq!(run(with("exp", json!(300.5)), 100), Err(Refusal::Expired));
        assert_eq!(run(with("exp", json!(u64::MAX)), 100), Err(Refusal::Expired));
        assert_eq!(run(without("exp"), 100), Err(Refusal::Expired));
        for iss in
            [json!("https://id.example/"), json!("https://evil.example"), json!([ISS]), json!(null)]
        {
            assert_eq!(run(with("iss", iss.clone()), 100), Err(Refusal::WrongIssuer), "{iss}");
        }
        assert_eq!(run(without("iss"), 100), Err(Refusal::WrongIssuer));
        assert_eq!(run(without("sub"), 100), Err(Refusal::MissingClaim("sub")));
        assert_eq!(run(with("sub", json!("")), 100), Err(Refusal::MissingClaim("sub")));
        assert_eq!(run(with("client_id", json!(7)), 100), Err(Refusal::MissingClaim("client_id")));
    }

    #[test]
    fn userinfo_takes_only_tokens_for_the_issuer() {
        let aud = |a: Value| {
            let mut t = token();
            t["aud"] = a;
            audience(&claims(t), ISS, AudiencePolicy::Issuer).map(|_| ())
        };
        assert_eq!(aud(json!(ISS)), Ok(()));
        for bad in [
            json!([ISS]),
            json!("https://api.example"),
            json!(["https://api.example"]),
            json!(null),
            json!(""),
            json!("https://id.example/"),
        ] {
            assert_eq!(aud(bad.clone()), Err(Refusal::WrongAudience), "{bad}");
        }
    }

    #[test]
    fn introspection_also_takes_audiences_registered_for_the_client() {
        let verdict = |a: Value| {
            let mut t = token();
            t["aud"] = a;
            let c = claims(t);
            audience(&c, ISS, AudiencePolicy::IssuerOrRegistered).map(|v| match v {
                Audience::Issuer => (String::new(), vec![]),
                Audience::IfRegistered { client_id, audiences } => (
                    client_id.to_owned(),
                    audiences.into_iter().map(str::to_owned).collect::<Vec<_>>(),
                ),
            })
        };
        assert_eq!(verdict(json!(ISS)), Ok((String::new(), vec![])));
        assert_eq!(
            verdict(json!("https://api")),
            Ok(("client_a".into(), vec!["https://api".to_owned()]))
        );
        // The issuer among others needs no registration; alone in a list it is the issuer.
        assert_eq!(
            verdict(json!(["https://a", ISS])),
            Ok(("client_a".into(), vec!["https://a".to_owned()]))
        );
        assert_eq!(verdict(json!([ISS])), Ok((String::new(), vec![])));
        assert_eq!(verdict(json!([ISS, ISS])), Ok((String::new(), vec![])));
        for bad in [json!([]), json!(["https://a", 7]), json!(null), json!({"a": 1}), json!(1)] {
            assert_eq!(verdict(bad.clone()), Err(Refusal::WrongAudience), "{bad}");
        }
        let registered = vec!["https://a".to_owned(), "https://b".to_owned()];
        assert!(all_registered(&["https://a"], &registered));
        assert!(all_registered(&["https://b", "https://a"], &registered));
        for bad in [&["https://a", ISS][..], &["https://a/"], &["HTTPS://a"], &["https://c"]] {
            assert!(!all_registered(bad, &registered), "{bad:?}");
        }
        assert!(!all_registered(&["https://a"], &[]));
    }

    #[test]
    fn only_client_tokens_with_the_scope_act_for_back_ends() {
        const SCOPE: &str = "users:oauth_tokens";
        let client = || {
            json!({ "iss": ISS, "aud": ISS, "sub": "client_b", "client_id": "client_b",
                    "exp": 200, "scope": "users:oauth_tokens reports:read" })
        };
        assert_eq!(check_client_token(&claims(client()), SCOPE), Ok("client_b"));
        let with = |k: &str, val: Value| {
            let mut t = client();
            t[k] = val;
            claims(t)
        };
        for (k, v) in [
            ("sub", json!("usr_1")),
            ("sub", json!(null)),
            ("sid", json!("ses_1")),
            ("auth_time", json!(100)),
            ("grant_id", json!("cod_1")),
            ("client_id", json!("")),
            ("client_id", json!(["client_b"])),
        ] {
            assert_eq!(
                check_client_token(&with(k, v.clone()), SCOPE),
                Err(ClientTokenRefusal::NotAClientToken),
                "{k}: {v}"
            );
        }
        // A user's token, whatever its scope says.
        let mut user = claims(token());
        user.insert("scope".into(), json!(SCOPE));
        assert_eq!(check_client_token(&user, SCOPE), Err(ClientTokenRefusal::NotAClientToken));
        for scope in
            [json!("reports:read"), json!("users:oauth_tokens:x"), json!([SCOPE]), json!("")]
        {
            assert_eq!(
                check_client_token(&with("scope", scope.clone()), SCOPE),
                Err(ClientTokenRefusal::ScopeMissing),
                "{scope}"
            );
        }
    }

    #[test]
    fn scopes_are_read_from_the_scope_claim() {
        assert_eq!(scopes(&claims(token())), ["openid", "email"]);
        assert!(scopes(&claims(json!({ "scope": ["openid"] }))).is_empty());
        assert_eq!(scopes(&claims(json!({ "scope": " openid  x " }))), ["openid", "x"]);
    }

    #[test]
    fn revocation_needs_a_live_access_token_of_ours_with_jti_and_client() {
        let mut t = token();
        t["jti"] = json!("at_1");
        let c = claims(t.clone());
        let ok = Revocable { jti: "at_1", client_id: "client_a", exp: 200 };
        assert_eq!(revocable(Some("at+jwt"), &c, ISS, 100), Ok(ok));
        // Any audience: a token for an API is revoked too.
        let mut api = t.clone();
        api["aud"] = json!("https://api.example");
        assert!(revocable(Some("at+jwt"), &claims(api), ISS, 100).is_ok());
        assert_eq!(revocable(Some("JWT"), &c, ISS, 100), Err(Refusal::NotAnAccessToken));
        assert_eq!(revocable(Some("at+jwt"), &c, "https://other", 100), Err(Refusal::WrongIssuer));
        assert_eq!(revocable(Some("at+jwt"), &c, ISS, 200), Err(Refusal::Expired));
        for (name, bad) in [("jti", json!(null)), ("jti", json!("")), ("client_id", json!(3))] {
            let mut b = t.clone();
            b[name] = bad;
            assert_eq!(
                revocable(Some("at+jwt"), &claims(b), ISS, 100),
                Err(Refusal::MissingClaim(name))
            );
        }
    }
}
