//! Authorization request validation (OIDC Core §3.1.2.1, RFC 6749 §4.1.1, RFC 7636, OAuth 2.1).
//!
//! Validation runs in two stages, because where an error may go depends on what is known:
//! until the client and its redirect URI are verified, errors are shown as a page (redirecting
//! to an unverified URI would make Latchkey an open redirector); after that, errors go back to
//! the client's redirect URI.

use crate::{ErrorCode, OAuthError, SCOPE_OPENID, SUPPORTED_SCOPES, params::Params, pkce};

/// What the validator needs to know about the registered client.
#[derive(Debug, Clone, Copy)]
pub struct ClientPolicy<'a> {
    pub client_id: &'a str,
    pub redirect_uris: &'a [String],
    pub public: bool,
    pub require_pkce: bool,
    pub allowed_scopes: &'a [String],
    /// What `resource` (RFC 8707) may name: the client's registered audiences and the issuer.
    pub resources: &'a [String],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    /// Shown to the user as a page; never redirected (unknown client, bad redirect_uri).
    Page(String),
    /// Sent to the (verified) redirect URI with `state` and `iss`.
    Redirect { redirect_uri: String, state: Option<String>, error: OAuthError },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
    pub select_account: bool,
}

impl Prompt {
    fn parse(value: Option<&str>) -> Result<Self, OAuthError> {
        let mut p = Self::default();
        for v in value.unwrap_or_default().split(' ').filter(|v| !v.is_empty()) {
            match v {
                "none" => p.none = true,
                "login" => p.login = true,
                "consent" => p.consent = true,
                "select_account" => p.select_account = true,
                _ => return Err(OAuthError::invalid_request("unsupported prompt value")),
            }
        }
        // OIDC Core §3.1.2.1: `none` with any other value is an error.
        if p.none && (p.login || p.consent || p.select_account) {
            return Err(OAuthError::invalid_request("prompt=none cannot be combined"));
        }
        Ok(p)
    }
}

/// A validated authorization request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// S256 challenge; None only for confidential clients that opted out of PKCE.
    pub code_challenge: Option<String>,
    pub prompt: Prompt,
    pub max_age: Option<u64>,
    pub login_hint: Option<String>,
    /// RFC 8707 resources the access tokens of the grant are for; empty for the issuer.
    pub resources: Vec<String>,
}

impl AuthorizationRequest {
    pub fn scope_string(&self) -> String {
        self.scopes.join(" ")
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// Stage one: the client_id to look up. Errors here are pages.
pub fn client_id(params: &Params) -> Result<&str, AuthorizeError> {
    params
        .get("client_id")
        .ok_or_else(|| AuthorizeError::Page("The request has no client_id.".into()))
}

/// Validates the request against the registered client (`None` = unknown client).
pub fn validate(
    params: &Params,
    client: Option<ClientPolicy<'_>>,
) -> Result<AuthorizationRequest, AuthorizeError> {
    let (client, redirect_uri) = verified_redirect(params, client)?;
    let state = params.get("state").map(str::to_owned);
    let fail = |error: OAuthError| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.to_owned(),
        state: state.clone(),
        error,
    };
    check_response(params).map_err(&fail)?;
    let scopes = requested_scopes(params, &client).map_err(&fail)?;
    let code_challenge = code_challenge(params, &client).map_err(&fail)?;
    let prompt = Prompt::parse(params.get("prompt")).map_err(&fail)?;
    let max_age = max_age(params).map_err(&fail)?;
    let nonce = params.get("nonce").map(str::to_owned);
    let login_hint = params.get("login_hint").map(|h| h.chars().take(320).collect());
    let resources = requested_resources(params, &client).map_err(&fail)?;

    Ok(AuthorizationRequest {
        client_id: client.client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        scopes,
        state,
        nonce,
        code_challenge,
        prompt,
        max_age,
        login_hint,
        resources,
    })
}

/// RFC 8707 §2 at the authorization request: every `resource` an absolute URI without a
/// fragment, and one the client may name; otherwise `invalid_target`.
fn requested_resources(
    params: &Params,
    client: &ClientPolicy<'_>,
) -> Result<Vec<String>, OAuthError> {
    let mut out: Vec<String> = Vec::new();
    for resource in params.get_all("resource") {
        let absolute = url::Url::parse(resource).is_ok_and(|u| u.fragment().is_none());
        if !absolute || resource.contains(['#']) || resource.contains(char::is_whitespace) {
            let m = "resource must be an absolute URI without a fragment";
            return Err(OAuthError::new(ErrorCode::InvalidTarget, m));
        }
        if !client.resources.iter().any(|r| r == resource) {
            let m = "the requested resource is not registered for this client";
            return Err(OAuthError::new(ErrorCode::InvalidTarget, m));
        }
        if !out.iter().any(|o| o == resource) {
            out.push(resource.to_owned());
        }
    }
    Ok(out)
}

/// Stage one and a half: the client is registered and the redirect URI is one of its own, or
/// the error is a page (redirecting to an unverified URI would make us an open redirector).
fn verified_redirect<'p, 'c>(
    params: &'p Params,
    client: Option<ClientPolicy<'c>>,
) -> Result<(ClientPolicy<'c>, &'p str), AuthorizeError> {
    let Some(client) = client else {
        return Err(AuthorizeError::Page("This application is not registered.".into()));
    };
    if client_id(params)? != client.client_id {
        return Err(AuthorizeError::Page("This application is not registered.".into()));
    }
    // OAuth 2.1 requires redirect_uri matching by exact string; we also require it present so
    // the token request can bind to it unambiguously.
    let Some(redirect_uri) = params.get("redirect_uri") else {
        return Err(AuthorizeError::Page("The request has no redirect_uri.".into()));
    };
    if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
        return Err(AuthorizeError::Page(
            "The redirect_uri is not registered for this application.".into(),
        ));
    }
    Ok((client, redirect_uri))
}

/// `response_type=code`, `response_mode=query`, and no request objects.
fn check_response(params: &Params) -> Result<(), OAuthError> {
    // Request objects (JAR) are not supported: say so rather than ignore their contents.
    if params.contains("request") {
        return Err(OAuthError::invalid_request("request objects are not supported"));
    }
    if params.contains("request_uri") {
        return Err(OAuthError::invalid_request("request_uri is not supported"));
    }
    match params.get("response_type") {
        Some("code") => {}
        None => return Err(OAuthError::invalid_request("missing parameter response_type")),
        Some(_) => {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            ));
        }
    }
    match params.get("response_mode") {
        None | Some("query") => Ok(()),
        Some(_) => Err(OAuthError::invalid_request("only response_mode=query is supported")),
    }
}

/// The requested scopes, deduplicated in request order: each supported and allowed for the
/// client, `openid` among them.
fn requested_scopes(params: &Params, client: &ClientPolicy<'_>) -> Result<Vec<String>, OAuthError> {
    let scope = params.get("scope").unwrap_or_default();
    let mut scopes: Vec<String> = Vec::new();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        if !SUPPORTED_SCOPES.contains(&s) || !client.allowed_scopes.iter().any(|a| a == s) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                format!("scope {s:?} is not allowed for this client"),
            ));
        }
        if !scopes.iter().any(|x| x == s) {
            scopes.push(s.to_owned());
        }
    }
    if !scopes.iter().any(|s| s == SCOPE_OPENID) {
        return Err(OAuthError::new(ErrorCode::InvalidScope, "the openid scope is required"));
    }
    Ok(scopes)
}

/// The S256 PKCE challenge; required for public clients and for clients that require PKCE.
fn code_challenge(
    params: &Params,
    client: &ClientPolicy<'_>,
) -> Result<Option<String>, OAuthError> {
    match (params.get("code_challenge"), params.get("code_challenge_method")) {
        (None, Some(_)) => {
            Err(OAuthError::invalid_request("code_challenge_method without code_challenge"))
        }
        (None, None) if client.public || client.require_pkce => {
            Err(OAuthError::invalid_request("PKCE is required: send code_challenge"))
        }
        (None, None) => Ok(None),
        (Some(_), None | Some("plain")) => Err(OAuthError::invalid_request(
            "code_challenge_method must be S256 (plain is not accepted)",
        )),
        (Some(c), Some("S256")) if pkce::valid_s256_challenge(c) => Ok(Some(c.to_owned())),
        (Some(_), Some("S256")) => Err(OAuthError::invalid_request("malformed code_challenge")),
        (Some(_), Some(_)) => Err(OAuthError::invalid_request("unsupported code_challenge_method")),
    }
}

/// `max_age` in seconds: digits only (`u64::from_str` would also accept a leading `+`).
fn max_age(params: &Params) -> Result<Option<u64>, OAuthError> {
    match params.get("max_age") {
        None => Ok(None),
        Some(v) => Some(v)
            .filter(|v| v.len() <= 10 && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| OAuthError::invalid_request("max_age must be a number of seconds")),
    }
}

/// Whether a session authenticated at `auth_time` must sign in again for this request.
pub fn needs_reauthentication(req: &AuthorizationRequest, auth_time: i64, now: i64) -> bool {
    if req.prompt.login {
        return true;
    }
    match req.max_age {
        // max_age=0 means "authenticate now" (OIDC Core §3.1.2.1).
        Some(max_age) => {
            now.saturating_sub(auth_time) >= i64::try_from(max_age).unwrap_or(i64::MAX)
                || max_age == 0
        }
        None => false,
    }
}

/// The success redirect (RFC 6749 §4.1.2 + RFC 9207 `iss`).
pub fn success_redirect(
    req: &AuthorizationRequest,
    code: &str,
    issuer: &str,
) -> Result<String, url::ParseError> {
    let mut url = url::Url::parse(&req.redirect_uri)?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("code", code);
        if let Some(state) = &req.state {
            q.append_pair("state", state);
        }
        q.append_pair("iss", issuer);
    }
    Ok(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn uris() -> Vec<String> {
        vec!["https://rp.example/cb".into()]
    }

    static RESOURCES: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        vec!["https://api.example".into(), "https://id.example".into()]
    });

    fn scopes() -> Vec<String> {
        SUPPORTED_SCOPES.iter().map(|s| (*s).to_owned()).collect()
    }

    fn run(query: &str, public: bool) -> Result<AuthorizationRequest, AuthorizeError> {
        let (u, s) = (uris(), scopes());
        let policy = ClientPolicy {
            client_id: "client_a",
            redirect_uris: &u,
            public,
            require_pkce: true,
            allowed_scopes: &s,
            resources: &RESOURCES,
        };
        let params = Params::parse(query).map_err(|e| AuthorizeError::Page(e.description))?;
        validate(&params, Some(policy))
    }

    fn base() -> String {
        format!(
            "client_id=client_a&redirect_uri=https%3A%2F%2Frp.example%2Fcb&response_type=code&scope=openid+email&state=s1&nonce=n1&code_challenge={CHALLENGE}&code_challenge_method=S256"
        )
    }

    fn redirect_code(r: Result<AuthorizationRequest, AuthorizeError>) -> ErrorCode {
        match r {
            Err(AuthorizeError::Redirect { error, state, redirect_uri }) => {
                assert_eq!(redirect_uri, "https://rp.example/cb");
                assert_eq!(state.as_deref(), Some("s1"));
                error.code
            }
            other => panic!("expected a redirect error, got {other:?}"),
        }
    }

    #[test]
    fn valid_request_is_accepted() {
        let r = run(&base(), true);
        let r = r.unwrap();
        assert_eq!(r.scopes, ["openid", "email"]);
        assert_eq!(r.nonce.as_deref(), Some("n1"));
        assert_eq!(r.code_challenge.as_deref(), Some(CHALLENGE));
        assert_eq!(r.prompt, Prompt::default());
        let with =
            run(&format!("{}&prompt=login+consent&max_age=0&login_hint=a%40b.c", base()), false);
        assert!(
            matches!(with, Ok(ref r) if r.prompt.login && r.prompt.consent && r.max_age == Some(0) && r.login_hint.as_deref() == Some("a@b.c"))
        );
    }

    #[test]
    fn unknown_client_and_unregistered_redirect_uri_never_redirect() {
        let (u, s) = (uris(), scopes());
        let params = Params::parse(&base()).unwrap_or_default();
        assert!(matches!(validate(&params, None), Err(AuthorizeError::Page(_))));
        for q in [
            base().replace("rp.example%2Fcb", "rp.example%2Fcb%2F"),
            base().replace("rp.example%2Fcb", "evil.example%2Fcb"),
            base().replace("redirect_uri=https%3A%2F%2Frp.example%2Fcb&", ""),
            base().replace("client_id=client_a", "client_id=client_b"),
        ] {
            let params = Params::parse(&q).unwrap_or_default();
            let policy = ClientPolicy {
                client_id: "client_a",
                redirect_uris: &u,
                public: true,
                require_pkce: true,
                allowed_scopes: &s,
                resources: &[],
            };
            assert!(matches!(validate(&params, Some(policy)), Err(AuthorizeError::Page(_))), "{q}");
        }
    }

    #[test]
    fn errors_after_the_redirect_uri_is_known_are_redirected() {
        let b = base();
        assert_eq!(
            redirect_code(run(&b.replace("response_type=code", "response_type=token"), true)),
            ErrorCode::UnsupportedResponseType
        );
        assert_eq!(
            redirect_code(run(&b.replace("response_type=code&", ""), true)),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            redirect_code(run(&b.replace("openid+email", "email"), true)),
            ErrorCode::InvalidScope
        );
        assert_eq!(
            redirect_code(run(&b.replace("openid+email", "openid+admin"), true)),
            ErrorCode::InvalidScope
        );
        // PKCE: missing (public and default confidential), plain, malformed.
        let no_pkce =
            b.replace(&format!("&code_challenge={CHALLENGE}&code_challenge_method=S256"), "");
        assert_eq!(redirect_code(run(&no_pkce, true)), ErrorCode::InvalidRequest);
        assert_eq!(redirect_code(run(&no_pkce, false)), ErrorCode::InvalidRequest);
        assert_eq!(
            redirect_code(run(&b.replace("S256", "plain"), true)),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            redirect_code(run(&b.replace("&code_challenge_method=S256", ""), true)),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            redirect_code(run(&b.replace(CHALLENGE, "short"), true)),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            redirect_code(run(&format!("{b}&prompt=none+login"), true)),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            redirect_code(run(&format!("{b}&prompt=bogus"), true)),
            ErrorCode::InvalidRequest
        );
        assert_eq!(redirect_code(run(&format!("{b}&max_age=-1"), true)), ErrorCode::InvalidRequest);
        assert_eq!(
            redirect_code(run(&format!("{b}&request=eyJ"), true)),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            redirect_code(run(&format!("{b}&response_mode=fragment"), true)),
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn prompt_none_cannot_be_combined_with_other_values() {
        // OIDC Core §3.1.2.1: `none` with any other value is invalid_request, in any order.
        for prompt in [
            "none+login",
            "none+consent",
            "none+select_account",
            "select_account+none",
            "login+consent+none",
        ] {
            assert_eq!(
                redirect_code(run(&format!("{}&prompt={prompt}", base()), true)),
                ErrorCode::InvalidRequest,
                "{prompt}"
            );
        }
        let r = run(&format!("{}&prompt=select_account", base()), true);
        assert!(matches!(r, Ok(ref r) if r.prompt.select_account && !r.prompt.none), "{r:?}");
        let r = run(&format!("{}&prompt=select_account+consent", base()), true);
        assert!(matches!(r, Ok(ref r) if r.prompt.select_account && r.prompt.consent), "{r:?}");
        let r = run(&format!("{}&prompt=none", base()), true);
        assert!(matches!(r, Ok(ref r) if r.prompt.none && !r.prompt.select_account), "{r:?}");
    }

    #[test]
    fn max_age_and_prompt_login_force_reauthentication() {
        let Ok(mut r) = run(&base(), true) else { return };
        assert!(!needs_reauthentication(&r, 100, 1000));
        r.max_age = Some(600);
        assert!(needs_reauthentication(&r, 100, 1000));
        assert!(!needs_reauthentication(&r, 500, 1000));
        r.max_age = Some(0);
        assert!(needs_reauthentication(&r, 1000, 1000));
        r.max_age = None;
        r.prompt.login = true;
        assert!(needs_reauthentication(&r, 1000, 1000));
    }

    #[test]
    fn success_redirect_carries_code_state_and_iss() {
        let Ok(r) = run(&base(), true) else { return };
        assert_eq!(
            success_redirect(&r, "c0de", "http://127.0.0.1:1").unwrap_or_default(),
            "https://rp.example/cb?code=c0de&state=s1&iss=http%3A%2F%2F127.0.0.1%3A1"
        );
    }

    #[test]
    fn resources_must_be_registered_absolute_uris() {
        let b = base();
        assert!(run(&b, true).is_ok_and(|r| r.resources.is_empty()));
        let two = format!(
            "{b}&resource=https%3A%2F%2Fapi.example&resource=https%3A%2F%2Fid.example&resource=https%3A%2F%2Fapi.example"
        );
        assert!(
            run(&two, true)
                .is_ok_and(|r| r.resources == ["https://api.example", "https://id.example"])
        );
        for bad in [
            "api",
            "https%3A%2F%2Fapi.example%2F",
            "https%3A%2F%2Fapi.example%23f",
            "https%3A%2F%2Fother.example",
            "https%3A%2F%2Fapi.example+",
        ] {
            assert_eq!(
                redirect_code(run(&format!("{b}&resource={bad}"), true)),
                ErrorCode::InvalidTarget,
                "{bad}"
            );
        }
    }
}
