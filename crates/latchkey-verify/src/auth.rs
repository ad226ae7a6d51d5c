//! What the framework integrations share: reading the token from a request (the
//! `Authorization: Bearer` header first, else the session-token cookie), verifying it, and the
//! extractor types and refusal responses.

use std::sync::Arc;

use crate::{Claims, Verifier, VerifyError};

/// Where the middlewares look for the token, and how they answer.
#[derive(Debug, Clone)]
pub(crate) struct AuthConfig {
    /// The cookie holding a session token (see [`crate::DEFAULT_COOKIE`]); `None` reads the
    /// header only.
    pub cookie: Option<String>,
    /// The `realm` of the `WWW-Authenticate` challenge.
    pub realm: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self { cookie: Some(crate::DEFAULT_COOKIE.to_owned()), realm: "api".to_owned() }
    }
}

/// What the request carried.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Presented<'r> {
    None,
    Token(&'r str),
    /// An `Authorization` header that is not a well-formed bearer credential: refused as
    /// `invalid_token` rather than treated as absent, so a broken client is told so.
    Malformed,
}

/// Picks the token out of the `Authorization` header values and `Cookie` header values.
pub(crate) fn presented<'r>(
    authorization: impl IntoIterator<Item = &'r [u8]>,
    cookies: impl IntoIterator<Item = &'r [u8]>,
    cookie_name: Option<&str>,
) -> Presented<'r> {
    let mut auth = authorization.into_iter();
    if let Some(value) = auth.next() {
        if auth.next().is_some() {
            return Presented::Malformed;
        }
        return bearer(value).map_or(Presented::Malformed, Presented::Token);
    }
    let Some(name) = cookie_name else { return Presented::None };
    for header in cookies {
        let Ok(header) = std::str::from_utf8(header) else { continue };
        for pair in header.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=')
                && k == name
                && !v.is_empty()
            {
                return Presented::Token(v.trim_matches('"'));
            }
        }
    }
    Presented::None
}

/// The verification a middleware did, left in the request for the extractors.
#[derive(Debug, Clone)]
pub(crate) struct AuthState {
    pub outcome: Result<Claims, VerifyError>,
    pub realm: Arc<str>,
    /// The verifier's required scopes, for the `scope` attribute of `insufficient_scope`.
    pub scope: Option<Arc<str>>,
}

impl AuthState {
    pub fn new(outcome: Result<Claims, VerifyError>, realm: Arc<str>, verifier: &Verifier) -> Self {
        let scopes = verifier.required_scopes();
        let scope = (!scopes.is_empty()).then(|| Arc::from(scopes.join(" ")));
        Self { outcome, realm, scope }
    }
}

/// The claims of the request's token, if it carried a valid one: for endpoints that also serve
/// anonymous callers. A missing or refused token both give `None` (a stale session cookie
/// must not break a public page); [`Auth::refusal`] says why a presented token was refused.
#[derive(Debug, Clone)]
pub struct Auth {
    pub claims: Option<Claims>,
    refusal: Option<VerifyError>,
}

impl Auth {
    pub(crate) fn from_state(state: Option<&AuthState>) -> Self {
        match state.map(|s| &s.outcome) {
            Some(Ok(c)) => Self { claims: Some(c.clone()), refusal: None },
            Some(Err(VerifyError::MissingToken)) | None => Self { claims: None, refusal: None },
            Some(Err(e)) => Self { claims: None, refusal: Some(e.clone()) },
        }
    }

    /// Why a presented token was refused (`None` when none was sent or it was valid).
    pub fn refusal(&self) -> Option<&VerifyError> {
        self.refusal.as_ref()
    }
}

/// The claims of the request's valid token; anything else is refused with `401` and an RFC 6750
/// `WWW-Authenticate: Bearer` challenge (no `error` attribute when no token was sent).
#[derive(Debug, Clone)]
pub struct RequireAuth(pub Claims);

/// A refusal as an HTTP answer: status, `WWW-Authenticate` and a small JSON body.
#[derive(Debug, Clone)]
pub struct AuthRefusal {
    pub error: VerifyError,
    pub realm: Arc<str>,
    /// The scopes the resource requires (RFC 6750 §3: the `scope` attribute).
    pub scope: Option<Arc<str>>,
}

impl AuthRefusal {
    pub(crate) fn from_state(state: Option<&AuthState>) -> Result<Claims, Self> {
        match state {
            Some(AuthState { outcome: Ok(c), .. }) => Ok(c.clone()),
            Some(AuthState { outcome: Err(e), realm, scope }) => {
                Err(Self { error: e.clone(), realm: realm.clone(), scope: scope.clone() })
            }
            // No middleware ran: a configuration error, refused rather than let through.
            None => Err(Self {
                error: VerifyError::KeysUnavailable,
                realm: Arc::from("api"),
                scope: None,
            }),
        }
    }

    pub fn status(&self) -> u16 {
        self.error.status()
    }

    pub fn www_authenticate(&self) -> String {
        self.error.challenge(&self.realm, self.scope.as_deref())
    }

    pub fn body(&self) -> String {
        serde_json::json!({
            "error": self.error.error_code().unwrap_or("unauthorized"),
            "error_description": self.error.to_string(),
        })
        .to_string()
    }
}

impl std::fmt::Display for AuthRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// Reads and verifies the request's token.
pub(crate) async fn authenticate<'r>(
    verifier: &Verifier,
    config: &AuthConfig,
    authorization: impl IntoIterator<Item = &'r [u8]>,
    cookies: impl IntoIterator<Item = &'r [u8]>,
) -> Result<Claims, VerifyError> {
    let token = match presented(authorization, cookies, config.cookie.as_deref()) {
        Presented::None => return Err(VerifyError::MissingToken),
        Presented::Malformed => return Err(VerifyError::Malformed("not a bearer credential")),
        Presented::Token(t) => t.to_owned(),
    };
    verifier.verify(&token).await
}

/// The credential of `Bearer <token>` (RFC 6750 §2.1: the scheme is case-insensitive; the
/// token is b64token characters).
fn bearer(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    let b64token = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.chars().all(b64token))
        .then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p<'a>(auth: &[&'a str], cookies: &[&'a str]) -> Presented<'a> {
        presented(
            auth.iter().map(|s| s.as_bytes()),
            cookies.iter().map(|s| s.as_bytes()),
            Some("latchkey_token"),
        )
    }

    #[test]
    fn the_header_wins_then_the_cookie() {
        assert_eq!(p(&["Bearer a.b.c"], &["latchkey_token=x.y.z"]), Presented::Token("a.b.c"));
        assert_eq!(p(&["bearer  a.b.c"], &[]), Presented::Token("a.b.c"));
        assert_eq!(p(&[], &["theme=dark; latchkey_token=x.y.z"]), Presented::Token("x.y.z"));
        assert_eq!(p(&[], &["a=1", "latchkey_token=\"q.r.s\""]), Presented::Token("q.r.s"));
        assert_eq!(p(&[], &["latchkey_token_other=x", "latchkey_token="]), Presented::None);
        assert_eq!(p(&[], &[]), Presented::None);
        for bad in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer a b", "Bearer a,b"] {
            assert_eq!(p(&[bad], &["latchkey_token=x"]), Presented::Malformed, "{bad}");
        }
        assert_eq!(p(&["Bearer a", "Bearer b"], &[]), Presented::Malformed);
        let header_only = presented([], ["latchkey_token=x".as_bytes()], None);
        assert_eq!(header_only, Presented::None);
    }
}
