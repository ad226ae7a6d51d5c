//! Token endpoint request validation (RFC 6749 §2.3, §4.1.3, §4.4, §6; RFC 7523 §2.2; RFC 8707
//! resource indicators).

use base64::{Engine, engine::general_purpose::STANDARD};

use serde::Serialize;

use crate::{ClientAuthMethod, ErrorCode, GrantType, OAuthError, params::Params, pkce};

pub const CLIENT_ASSERTION_TYPE_JWT: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How the client presented itself. Exactly one method per request (RFC 6749 §2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCredentials {
    /// `client_secret_basic`.
    Basic { client_id: String, secret: String },
    /// `client_secret_post`.
    Post { client_id: String, secret: String },
    /// `private_key_jwt`: the assertion still has to be verified against the client's keys.
    Assertion { client_id: Option<String>, assertion: String },
    /// `none`: a public client naming itself.
    None { client_id: String },
}

impl ClientCredentials {
    pub fn method(&self) -> ClientAuthMethod {
        match self {
            Self::Basic { .. } => ClientAuthMethod::ClientSecretBasic,
            Self::Post { .. } => ClientAuthMethod::ClientSecretPost,
            Self::Assertion { .. } => ClientAuthMethod::PrivateKeyJwt,
            Self::None { .. } => ClientAuthMethod::None,
        }
    }
}

/// Reads the client's credentials from the `Authorization` header and the form. A request
/// using two methods, or none at all, fails with `invalid_client` / `invalid_request`.
pub fn client_credentials(
    authorization: Option<&str>,
    params: &Params,
) -> Result<ClientCredentials, OAuthError> {
    let form_id = params.get("client_id");
    let form_secret = params.get("client_secret");
    let assertion_type = params.get("client_assertion_type");
    let assertion = params.get("client_assertion");

    if let Some(header) = authorization {
        if form_secret.is_some() || assertion.is_some() {
            return Err(OAuthError::invalid_request("use one client authentication method"));
        }
        let (client_id, secret) = parse_basic(header)?;
        if form_id.is_some_and(|id| id != client_id) {
            return Err(OAuthError::invalid_client("client_id does not match the credentials"));
        }
        return Ok(ClientCredentials::Basic { client_id, secret });
    }
    match (assertion_type, assertion) {
        (Some(CLIENT_ASSERTION_TYPE_JWT), Some(a)) => {
            if form_secret.is_some() {
                return Err(OAuthError::invalid_request("use one client authentication method"));
            }
            return Ok(ClientCredentials::Assertion {
                client_id: form_id.map(str::to_owned),
                assertion: a.to_owned(),
            });
        }
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_client("unsupported client_assertion_type"));
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(OAuthError::invalid_request(
                "client_assertion and client_assertion_type go together",
            ));
        }
        (None, None) => {}
    }
    match (form_id, form_secret) {
        (Some(id), Some(secret)) => {
            Ok(ClientCredentials::Post { client_id: id.to_owned(), secret: secret.to_owned() })
        }
        (Some(id), None) => Ok(ClientCredentials::None { client_id: id.to_owned() }),
        (None, _) => Err(OAuthError::invalid_client("client authentication is required")),
    }
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1).
fn parse_basic(header: &str) -> Result<(String, String), OAuthError> {
    let bad = || OAuthError::invalid_client("malformed Basic credentials");
    let (scheme, value) = header.trim().split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") || value.len() > 2048 {
        return Err(bad());
    }
    let decoded = STANDARD.decode(value.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let unescape = |s: &str| -> Result<String, OAuthError> {
        url::form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .ok_or_else(bad)
    };
    let (id, secret) = (unescape(id)?, unescape(secret)?);
    if id.is_empty() || secret.is_empty() {
        return Err(bad());
    }
    Ok((id, secret))
}

/// A parsed token request, before the grant itself (code, refresh token) is looked up. The
/// user grants keep the `resource` / `audience` values they were sent, so that an unsupported
/// one is refused before anything is written (see [`check_user_grant_audiences`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRequest {
    AuthorizationCode {
        code: String,
        redirect_uri: String,
        code_verifier: Option<String>,
        audiences: Vec<String>,
    },
    RefreshToken {
        refresh_token: String,
        scopes: Option<Vec<String>>,
        audiences: Vec<String>,
    },
    /// `audiences`: the requested `resource` (RFC 8707) and `audience` values, deduplicated in
    /// request order; empty when the client named none.
    ClientCredentials {
        scopes: Vec<String>,
        audiences: Vec<String>,
    },
}

fn scopes(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in s.split(' ').filter(|v| !v.is_empty()) {
        if !out.iter().any(|o| o == v) {
            out.push(v.to_owned());
        }
    }
    out
}

impl TokenRequest {
    pub fn grant_type(&self) -> GrantType {
        match self {
            Self::AuthorizationCode { .. } => GrantType::AuthorizationCode,
            Self::RefreshToken { .. } => GrantType::RefreshToken,
            Self::ClientCredentials { .. } => GrantType::ClientCredentials,
        }
    }
}

pub fn parse_token_request(params: &Params) -> Result<TokenRequest, OAuthError> {
    let grant = GrantType::parse(params.require("grant_type")?).ok_or_else(|| {
        OAuthError::new(ErrorCode::UnsupportedGrantType, "unsupported grant_type")
    })?;
    match grant {
        GrantType::AuthorizationCode => {
            let code_verifier = params.get("code_verifier").map(str::to_owned);
            if let Some(v) = &code_verifier
                && !pkce::valid_verifier(v)
            {
                return Err(OAuthError::invalid_request("malformed code_verifier"));
            }
            Ok(TokenRequest::AuthorizationCode {
                code: params.require("code")?.to_owned(),
                redirect_uri: params.require("redirect_uri")?.to_owned(),
                code_verifier,
                audiences: requested_audiences(params)?,
            })
        }
        GrantType::RefreshToken => Ok(TokenRequest::RefreshToken {
            refresh_token: params.require("refresh_token")?.to_owned(),
            scopes: params.get("scope").map(scopes),
            audiences: requested_audiences(params)?,
        }),
        GrantType::ClientCredentials => Ok(TokenRequest::ClientCredentials {
            scopes: params.get("scope").map(scopes).unwrap_or_default(),
            audiences: requested_audiences(params)?,
        }),
    }
}

/// The audiences a token request names: every `resource` (RFC 8707 §2: an absolute URI without a
/// fragment or whitespace, else `invalid_target`) and every `audience` (RFC 8693 style, any string), both
/// repeatable, deduplicated in request order.
pub fn requested_audiences(params: &Params) -> Result<Vec<String>, OAuthError> {
    let mut out: Vec<String> = Vec::new();
    for resource in params.get_all("resource") {
        let absolute = url::Url::parse(resource).is_ok_and(|u| u.fragment().is_none());
        if !absolute || resource.contains('#') || resource.contains(char::is_whitespace) {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                "resource must be an absolute URI without a fragment",
            ));
        }
        if !out.iter().any(|o| o == resource) {
            out.push(resource.to_owned());
        }
    }
    for audience in params.get_all("audience") {
        if !out.iter().any(|o| o == audience) {
            out.push(audience.to_owned());
        }
    }
    Ok(out)
}

/// Every requested audience must be one registered for the client, compared byte for byte;
/// otherwise `invalid_target` (RFC 8707 §2).
pub fn check_audiences(requested: &[String], registered: &[String]) -> Result<(), OAuthError> {
    match requested.iter().find(|r| !registered.contains(r)) {
        None => Ok(()),
        Some(_) => Err(OAuthError::new(
            ErrorCode::InvalidTarget,
            "the requested resource or audience is not registered for this client",
        )),
    }
}

/// RFC 8707 for user grants (authorization_code, refresh_token): the audiences of the access
/// token. `granted` are the resources the grant was given (at the authorization request, or
/// at the code exchange when that named none): a request may narrow to some of them, and one
/// naming none gets them all. A grant given none may name the issuer or audiences registered for
/// the client. Whatever the grant holds must still be registered. Anything else is
/// `invalid_target`, rather than a token for another audience than the one asked for. Empty
/// means the issuer.
pub fn user_token_audiences(
    requested: &[String],
    granted: &[String],
    registered: &[String],
    issuer: &str,
) -> Result<Vec<String>, OAuthError> {
    let audiences = if requested.is_empty() { granted } else { requested };
    let within_grant = granted.is_empty() || requested.iter().all(|r| granted.contains(r));
    let registered = audiences.iter().all(|a| a == issuer || registered.contains(a));
    if within_grant && registered {
        return Ok(audiences.to_vec());
    }
    Err(OAuthError::new(
        ErrorCode::InvalidTarget,
        "the requested resource is not registered for this client or not granted",
    ))
}

/// [`user_token_audiences`] for a refresh: a grant given no resources by its authorization
/// request or its code exchange was given the issuer, so a refresh may only narrow, never
/// aim the grant's tokens at the client's other audiences.
pub fn refresh_token_audiences(
    requested: &[String],
    granted: &[String],
    registered: &[String],
    issuer: &str,
) -> Result<Vec<String>, OAuthError> {
    if granted.is_empty() {
        let issuer_only = [issuer.to_owned()];
        let narrowed = user_token_audiences(requested, &issuer_only, registered, issuer)?;
        // Naming nothing or the issuer: the issuer, as it was.
        return Ok(if requested.is_empty() { Vec::new() } else { narrowed });
    }
    user_token_audiences(requested, granted, registered, issuer)
}

/// What an issued authorization code was bound to, as stored.
#[derive(Debug, Clone)]
pub struct CodeBinding<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub code_challenge: Option<&'a str>,
    pub expires_at: i64,
}

/// Checks a presented code against what it was issued for (RFC 6749 §4.1.3, RFC 7636 §4.6).
/// Every mismatch is `invalid_grant`, so a probe learns nothing about which part failed.
pub fn check_code(
    binding: &CodeBinding<'_>,
    client_id: &str,
    redirect_uri: &str,
    code_verifier: Option<&str>,
    now: i64,
) -> Result<(), OAuthError> {
    if binding.client_id != client_id {
        return Err(OAuthError::invalid_grant("the code was issued to another client"));
    }
    if now >= binding.expires_at {
        return Err(OAuthError::invalid_grant("the code has expired"));
    }
    if binding.redirect_uri != redirect_uri {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    match (binding.code_challenge, code_verifier) {
        (Some(challenge), Some(verifier)) if pkce::verify_s256(verifier, challenge) => Ok(()),
        (Some(_), Some(_)) => Err(OAuthError::invalid_grant("PKCE verification failed")),
        (Some(_), None) => Err(OAuthError::invalid_grant("code_verifier is required")),
        // A verifier for a code issued without a challenge is a downgrade probe (RFC 9700 §2.1.1).
        (None, Some(_)) => Err(OAuthError::invalid_grant("unexpected code_verifier")),
        (None, None) => Ok(()),
    }
}

/// The successful token response (RFC 6749 §5.1, with OIDC Core §3.1.3.3's `id_token`). A
/// struct rather than a JSON value: this is the hottest response Latchkey writes.
#[derive(Debug, Serialize)]
pub struct TokenResponse<'a> {
    pub access_token: &'a str,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(q: &str) -> Params {
        Params::parse(q).unwrap_or_default()
    }

    #[test]
    fn client_authentication_methods_are_exclusive() {
        let basic = format!("Basic {}", STANDARD.encode("client_a:s%3Acret"));
        assert_eq!(
            client_credentials(Some(&basic), &p("grant_type=x")),
            Ok(ClientCredentials::Basic { client_id: "client_a".into(), secret: "s:cret".into() })
        );
        assert!(client_credentials(Some(&basic), &p("client_secret=x")).is_err());
        assert_eq!(
            client_credentials(Some(&basic), &p("client_id=client_b")).map_err(|e| e.code),
            Err(ErrorCode::InvalidClient)
        );
        assert_eq!(
            client_credentials(Some("Bearer abc"), &p("")).map_err(|e| e.code),
            Err(ErrorCode::InvalidClient)
        );
        assert_eq!(
            client_credentials(Some("Basic !!!"), &p("")).map_err(|e| e.code),
            Err(ErrorCode::InvalidClient)
        );
        assert!(matches!(
            client_credentials(None, &p("client_id=a&client_secret=b")),
            Ok(ClientCredentials::Post { .. })
        ));
        assert!(matches!(
            client_credentials(None, &p("client_id=a")),
            Ok(ref c @ ClientCredentials::None { .. }) if c.method() == ClientAuthMethod::None
        ));
        assert_eq!(
            client_credentials(None, &p("grant_type=x")).map_err(|e| e.code),
            Err(ErrorCode::InvalidClient)
        );
        let jwt = format!(
            "client_assertion_type={}&client_assertion=e30",
            CLIENT_ASSERTION_TYPE_JWT.replace(':', "%3A")
        );
        assert!(matches!(
            client_credentials(None, &p(&jwt)),
            Ok(ClientCredentials::Assertion { .. })
        ));
        assert!(client_credentials(None, &p(&format!("{jwt}&client_secret=x"))).is_err());
        assert!(client_credentials(None, &p("client_assertion=e30")).is_err());
    }

    #[test]
    fn token_requests_are_parsed_strictly() {
        assert_eq!(
            parse_token_request(&p("grant_type=password")).map_err(|e| e.code),
            Err(ErrorCode::UnsupportedGrantType)
        );
        assert_eq!(parse_token_request(&p("")).map_err(|e| e.code), Err(ErrorCode::InvalidRequest));
        assert_eq!(
            parse_token_request(&p("grant_type=authorization_code&code=c")).map_err(|e| e.code),
            Err(ErrorCode::InvalidRequest)
        );
        assert_eq!(
            parse_token_request(&p(
                "grant_type=authorization_code&code=c&redirect_uri=r&code_verifier=short"
            ))
            .map_err(|e| e.code),
            Err(ErrorCode::InvalidRequest)
        );
        assert!(matches!(
            parse_token_request(&p("grant_type=refresh_token&refresh_token=r&scope=openid+openid")),
            Ok(TokenRequest::RefreshToken { scopes: Some(ref s), .. }) if s == &["openid"]
        ));
    }

    #[test]
    fn client_credentials_parse_resources_and_audiences() {
        let cc = |q: &str| parse_token_request(&p(&format!("grant_type=client_credentials{q}")));
        assert_eq!(
            cc("&scope=a"),
            Ok(TokenRequest::ClientCredentials { scopes: vec!["a".into()], audiences: vec![] })
        );
        assert_eq!(
            cc("&audience=https%3A%2F%2Fapi.example.com"),
            Ok(TokenRequest::ClientCredentials {
                scopes: vec![],
                audiences: vec!["https://api.example.com".into()]
            })
        );
        // RFC 8707: repeatable; merged with audience, deduplicated, request order kept.
        assert_eq!(
            cc("&resource=https%3A%2F%2Fb.example&resource=https%3A%2F%2Fa.example\
                &audience=https%3A%2F%2Fb.example&audience=api"),
            Ok(TokenRequest::ClientCredentials {
                scopes: vec![],
                audiences: vec![
                    "https://b.example".into(),
                    "https://a.example".into(),
                    "api".into()
                ]
            })
        );
        // Empty values count as absent.
        assert!(matches!(
            cc("&resource="),
            Ok(TokenRequest::ClientCredentials { ref audiences, .. }) if audiences.is_empty()
        ));
        // A resource must be an absolute URI without a fragment.
        for bad in
            ["api", "%2Fapi", "https%3A%2F%2Fa.example%2F%23frag", "https%3A%2F%2Fa.example%23"]
        {
            assert_eq!(
                cc(&format!("&resource={bad}")).map_err(|e| e.code),
                Err(ErrorCode::InvalidTarget),
                "{bad}"
            );
        }
        // Other parameters still may not repeat.
        assert!(Params::parse("grant_type=client_credentials&scope=a&scope=b").is_err());
    }

    #[test]
    fn user_grants_are_aimed_at_granted_or_registered_resources() {
        let iss = "https://id.example";
        let v = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let registered = v(&["https://api.example", "https://b.example", "x"]);
        let r = parse_token_request(&p(
            "grant_type=refresh_token&refresh_token=r&resource=https%3A%2F%2Fapi.example&audience=x",
        ));
        let Ok(TokenRequest::RefreshToken { audiences, .. }) = r else { panic!("{r:?}") };
        assert_eq!(audiences, ["https://api.example", "x"]);
        let aud = |req: &[&str], granted: &[&str]| {
            user_token_audiences(&v(req), &v(granted), &registered, iss).map_err(|e| e.code)
        };
        // Nothing asked, nothing granted: the issuer.
        assert_eq!(aud(&[], &[]), Ok(vec![]));
        // A grant given none may name the issuer or registered audiences.
        assert_eq!(aud(&[iss], &[]), Ok(v(&[iss])));
        assert_eq!(aud(&["https://api.example", "x"], &[]), Ok(v(&["https://api.example", "x"])));
        // A grant given resources: all of them by default, or some of them.
        let granted = ["https://api.example", "https://b.example"];
        assert_eq!(aud(&[], &granted), Ok(v(&granted)));
        assert_eq!(aud(&["https://b.example"], &granted), Ok(v(&["https://b.example"])));
        for bad in [
            &["https://id.example/"][..],
            &["HTTPS://api.example"],
            &["https://api.example.evil"],
            &[""],
            &["https://unregistered.example"],
            &[iss, "https://id.example/"],
        ] {
            assert_eq!(aud(bad, &[]), Err(ErrorCode::InvalidTarget), "{bad:?}");
        }
        // Not widened beyond the grant, even to registered audiences or the issuer.
        assert_eq!(aud(&["x"], &granted), Err(ErrorCode::InvalidTarget));
        assert_eq!(aud(&[iss], &granted), Err(ErrorCode::InvalidTarget));
        // A refresh of a grant given none stays with the issuer.
        let refresh = |req: &[&str], granted: &[&str]| {
            refresh_token_audiences(&v(req), &v(granted), &registered, iss).map_err(|e| e.code)
        };
        assert_eq!(refresh(&[], &[]), Ok(vec![]));
        assert_eq!(refresh(&[iss], &[]), Ok(v(&[iss])));
        assert_eq!(refresh(&["x"], &[]), Err(ErrorCode::InvalidTarget));
        assert_eq!(refresh(&["https://api.example"], &[]), Err(ErrorCode::InvalidTarget));
        assert_eq!(refresh(&["https://b.example"], &granted), Ok(v(&["https://b.example"])));
        // A granted resource no longer registered is refused.
        assert_eq!(aud(&[], &["https://gone.example"]), Err(ErrorCode::InvalidTarget));
        // A malformed resource is refused on every grant, before the grant is looked at.
        assert_eq!(
            parse_token_request(&p("grant_type=refresh_token&refresh_token=r&resource=api"))
                .map_err(|e| e.code),
            Err(ErrorCode::InvalidTarget)
        );
        assert_eq!(
            parse_token_request(&p("grant_type=authorization_code&code=c&redirect_uri=r"))
                .map(|r| r.grant_type()),
            Ok(GrantType::AuthorizationCode)
        );
    }

    #[test]
    fn only_registered_audiences_are_allowed() {
        let registered = vec!["https://a.example".to_owned(), "https://b.example".to_owned()];
        assert!(check_audiences(&[], &registered).is_ok());
        assert!(check_audiences(&[], &[]).is_ok());
        assert!(check_audiences(&registered, &registered).is_ok());
        for bad in ["https://c.example", "https://a.example/", "HTTPS://a.example", ""] {
            assert_eq!(
                check_audiences(&["https://a.example".into(), bad.into()], &registered)
                    .map_err(|e| e.code),
                Err(ErrorCode::InvalidTarget),
                "{bad}"
            );
        }
        assert!(check_audiences(&["https://a.example".into()], &[]).is_err());
    }

    #[test]
    fn codes_bind_client_redirect_uri_pkce_and_time() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let b = CodeBinding {
            client_id: "c",
            redirect_uri: "https://rp/cb",
            code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
            expires_at: 100,
        };
        assert!(check_code(&b, "c", "https://rp/cb", Some(verifier), 99).is_ok());
        for (client, uri, v, now) in [
            ("d", "https://rp/cb", Some(verifier), 99),
            ("c", "https://rp/cb2", Some(verifier), 99),
            ("c", "https://rp/cb", Some("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK"), 99),
            ("c", "https://rp/cb", None, 99),
            ("c", "https://rp/cb", Some(verifier), 100),
        ] {
            assert_eq!(
                check_code(&b, client, uri, v, now).map_err(|e| e.code),
                Err(ErrorCode::InvalidGrant)
            );
        }
        let no_pkce = CodeBinding { code_challenge: None, ..b };
        assert!(check_code(&no_pkce, "c", "https://rp/cb", None, 1).is_ok());
        assert!(check_code(&no_pkce, "c", "https://rp/cb", Some(verifier), 1).is_err());
    }
}
