//! OpenID Connect provider endpoints. Handlers only move data between HTTP and the protocol
//! rules (`latchkey-oidc`) and the store (`latchkey_core::{clients, oauth}`); every failure is
//! rendered by `crate::error::oauth`.

mod client_auth;

use std::sync::Arc;

use actix_web::{
    HttpRequest, HttpResponse,
    http::{StatusCode, header},
    web,
};
use askama::Template;
use latchkey_core::{
    infra::audit::Actor,
    infra::jose::SigningAlg,
    oauth::clients::{self, Client},
    oauth::{CodeRedemption, GrantSubject, NewCode, RefreshGrant, RefreshOutcome},
};
use latchkey_oidc::{
    ErrorCode, OAuthError, SCOPE_OFFLINE_ACCESS, SCOPE_OPENID,
    authorize::{self, AuthorizationRequest, AuthorizeError, ClientPolicy},
    claims::{self, AuthContext, Subject},
    params::Params,
    token::{self, CodeBinding, TokenRequest},
};
use serde_json::{Value, json};

use crate::error::oauth::{BrowserError, OidcError};
use crate::{
    AppState,
    pages::support::{csrf, current_session, render, verify_csrf},
};

/// Endpoints called by programs answer failures as OAuth JSON.
type Res = Result<HttpResponse, OidcError>;
/// Endpoints a browser visits answer failures with a redirect to the client or a page.
type Page = Result<HttpResponse, BrowserError>;

/// Parameter that records when a forced re-authentication started, so the request that comes
/// back from the sign-in pages is not sent there again (prompt=login, max_age). Its value is
/// `<unix time>.<mac>`, the MAC binding it to this client, redirect URI, state and nonce so it
/// cannot be lifted into another request.
const AUTH_AFTER: &str = "lk_auth_after";

fn auth_after_mac(state: &AppState, areq: &AuthorizationRequest, t: i64) -> String {
    let data = format!(
        "{t}\n{}\n{}\n{}\n{}",
        areq.client_id,
        areq.redirect_uri,
        areq.state.as_deref().unwrap_or_default(),
        areq.nonce.as_deref().unwrap_or_default()
    );
    state.core.store.master_key().mac_hex("oidc_auth_after", &data)
}

/// A marker saying sign-in was requested at `now`, for [`to_sign_in`].
fn auth_after_marker(state: &AppState, areq: &AuthorizationRequest, now: i64) -> String {
    format!("{now}.{}", auth_after_mac(state, areq, now))
}

/// The time a verified re-authentication marker says sign-in was requested at.
fn auth_after(state: &AppState, areq: &AuthorizationRequest, params: &Params) -> Option<i64> {
    let (t, mac) = params.get(AUTH_AFTER)?.split_once('.')?;
    let t: i64 = t.parse().ok()?;
    let expected = auth_after_mac(state, areq, t);
    (!expected.is_empty() && latchkey_core::infra::crypto::constant_time_eq(&expected, mac))
        .then_some(t)
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/.well-known/openid-configuration").route(web::get().to(discovery)))
        .service(
            web::resource("/oauth2/authorize")
                .route(web::get().to(authorize_get))
                .route(web::post().to(authorize_post)),
        )
        .service(web::resource("/oauth2/authorize/resume").route(web::get().to(authorize_resume)))
        .service(
            web::resource("/oauth2/consent")
                .route(web::post().to(consent))
                .default_service(web::to(crate::pages::post_only_page)),
        )
        .service(
            web::resource("/oauth2/select-account")
                .route(web::post().to(select_account))
                .default_service(web::to(crate::pages::post_only_page)),
        )
        .service(web::resource("/oauth2/token").route(web::post().to(token_endpoint)))
        .service(
            web::resource("/oauth2/userinfo")
                .route(web::get().to(userinfo))
                .route(web::post().to(userinfo)),
        )
        .service(web::resource("/oauth2/introspect").route(web::post().to(introspect)))
        .service(web::resource("/oauth2/revoke").route(web::post().to(revoke)))
        .service(
            web::resource("/oauth2/logout")
                .route(web::get().to(logout_get))
                .route(web::post().to(logout_post)),
        );
}

fn issuer(state: &AppState) -> &str {
    &state.core.settings.public_url
}

async fn discovery(state: web::Data<AppState>) -> Res {
    // ID tokens default to RS256 and relying parties read the JWKS once after discovery, so the
    // RS256 key must be published before anyone can see this document.
    state.core.keys.ensure_active(SigningAlg::RS256).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(latchkey_oidc::discovery::document(issuer(&state), &["RS256", "ES256", "EdDSA"])))
}

/// Form bodies only (RFC 6749 §3.2); anything else is `invalid_request`.
fn form_params(req: &HttpRequest, body: &web::Bytes) -> Result<Params, OAuthError> {
    let form =
        req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
            v.trim().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded")
        });
    if !form && !body.is_empty() {
        return Err(OAuthError::invalid_request("use application/x-www-form-urlencoded"));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| OAuthError::invalid_request("the body is not UTF-8"))?;
    Params::parse(text)
}

fn json_ok(body: Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(body)
}

// ---------------------------------------------------------------- authorization endpoint

async fn authorize_get(req: HttpRequest, state: web::Data<AppState>) -> Page {
    let params =
        Params::parse(req.query_string()).map_err(|e| BrowserError::Invalid(e.description))?;
    authorize_with(&req, &state, params, req.query_string().to_owned(), Entry::Request).await
}

async fn authorize_post(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> Page {
    let params = form_params(&req, &body).map_err(|e| BrowserError::Invalid(e.description))?;
    let query = std::str::from_utf8(&body).unwrap_or_default().to_owned();
    authorize_with(&req, &state, params, query, Entry::Request).await
}

/// Where the sign-in pages send the browser back to. Browsers apply the sign-in page's CSP
/// `form-action` to every redirect that follows the form post, so a 303 to the client's
/// redirect URI would be blocked there; this endpoint ends the chain with a page that
/// navigates on its own instead.
async fn authorize_resume(req: HttpRequest, state: web::Data<AppState>) -> Page {
    let params =
        Params::parse(req.query_string()).map_err(|e| BrowserError::Invalid(e.description))?;
    authorize_with(&req, &state, params, req.query_string().to_owned(), Entry::Resume).await
}

/// A page that sends the browser to `location` by itself (meta refresh, plus a link).
fn navigate_page(location: &str) -> HttpResponse {
    let mut escaped = String::with_capacity(location.len());
    for c in location.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0;url={escaped}\"><title>Signing you in</title><link rel=\"stylesheet\" href=\"/assets/latchkey.css\"></head><body><main><section class=\"card\"><h1>Signing you in…</h1><p><a class=\"button\" href=\"{escaped}\">Continue</a></p></section></main></body></html>"
    );
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(body)
}

fn redirect_error(
    state: &AppState,
    areq: &AuthorizationRequest,
    error: OAuthError,
) -> BrowserError {
    BrowserError::Redirect {
        redirect_uri: areq.redirect_uri.clone(),
        state: areq.state.clone(),
        error,
        issuer: issuer(state).to_owned(),
    }
}

/// Validates the request against the registered client; errors go where the protocol says.
async fn validate_request(
    state: &AppState,
    params: &Params,
) -> Result<(Client, AuthorizationRequest), BrowserError> {
    let client_id = authorize::client_id(params).map_err(|e| match e {
        AuthorizeError::Page(m) => BrowserError::Invalid(m),
        AuthorizeError::Redirect { .. } => BrowserError::Invalid("Invalid request.".into()),
    })?;
    let client = state.core.clients.find(client_id).await.map_err(|e| {
        tracing::error!(error = %e, "client lookup failed");
        BrowserError::Invalid("The sign-in service is temporarily unavailable.".into())
    })?;
    let policy = client.as_ref().map(|c| ClientPolicy {
        client_id: &c.client_id,
        redirect_uris: &c.redirect_uris,
        public: c.is_public(),
        require_pkce: c.require_pkce,
        allowed_scopes: &c.allowed_scopes,
    });
    let areq = authorize::validate(params, policy).map_err(|e| match e {
        AuthorizeError::Page(m) => BrowserError::Invalid(m),
        AuthorizeError::Redirect { redirect_uri, state: st, error } => BrowserError::Redirect {
            redirect_uri,
            state: st,
            error,
            issuer: issuer(state).to_owned(),
        },
    })?;
    match client {
        Some(c) if c.allows_grant(clients::GRANT_AUTHORIZATION_CODE) => Ok((c, areq)),
        _ => Err(redirect_error(
            state,
            &areq,
            OAuthError::new(ErrorCode::UnauthorizedClient, "client may not use the code flow"),
        )),
    }
}

/// `/sign-in?return_to=<this request as a same-origin path>`, optionally marking a forced
/// re-authentication so the request that comes back is not sent to sign-in again.
fn to_sign_in(
    areq: &AuthorizationRequest,
    query: &str,
    auth_after: Option<String>,
) -> HttpResponse {
    let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .filter(|(k, _)| k != AUTH_AFTER)
        .collect();
    if let Some(marker) = auth_after {
        pairs.push((AUTH_AFTER.into(), marker));
    }
    let query: String =
        url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    let return_to = format!("/oauth2/authorize/resume?{query}");
    let mut location = format!(
        "/sign-in?return_to={}",
        url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect::<String>()
    );
    if let Some(hint) = &areq.login_hint {
        location.push_str("&login_hint=");
        location.extend(url::form_urlencoded::byte_serialize(hint.as_bytes()));
    }
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// How a request reached [`authorize_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// The relying party's request, straight from the browser.
    Request,
    /// Back from the sign-in pages: a success ends with a page that navigates by itself.
    Resume,
    /// "Continue as …" on the account chooser: the account is chosen (prompt=select_account),
    /// and the chooser's CSP lets its form end at the client's redirect URI.
    AccountChosen,
}

/// Page CSP that also lets forms end at the client's (verified) redirect URI: browsers apply
/// `form-action` to the redirects that follow a submission.
fn allow_form_redirect(mut res: HttpResponse, areq: &AuthorizationRequest) -> HttpResponse {
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self' {}; frame-ancestors 'none'; base-uri 'none'",
        csp_source(&areq.redirect_uri)
    );
    if let Ok(v) = header::HeaderValue::from_str(&csp) {
        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    res
}

async fn authorize_with(
    req: &HttpRequest,
    state: &AppState,
    params: Params,
    query: String,
    entry: Entry,
) -> Page {
    let (client, areq) = validate_request(state, &params).await?;
    let now = state.core.clock.now();
    let Some((session, _)) = current_session(req, state).await else {
        if areq.prompt.none {
            return Err(redirect_error(
                state,
                &areq,
                OAuthError::new(ErrorCode::LoginRequired, "the user is not signed in"),
            ));
        }
        // Signing in answers every reason to sign in (prompt=login, max_age) and chooses the
        // account (prompt=select_account): the marker keeps the request that comes back with
        // the new session from being sent to sign-in, or the chooser, again.
        return Ok(to_sign_in(&areq, &query, Some(auth_after_marker(state, &areq, now))));
    };
    let auth_time = state.core.sessions.get(&session.session_id).await?.created_at;
    // A re-authentication we asked for is satisfied by a session started after we asked.
    let reauthenticated = auth_after(state, &areq, &params)
        .is_some_and(|t| t <= now && now - t < 900 && auth_time >= t);
    if !reauthenticated && authorize::needs_reauthentication(&areq, auth_time, now) {
        if areq.prompt.none {
            return Err(redirect_error(
                state,
                &areq,
                OAuthError::new(ErrorCode::LoginRequired, "re-authentication is required"),
            ));
        }
        return Ok(to_sign_in(&areq, &query, Some(auth_after_marker(state, &areq, now))));
    }

    // prompt=select_account: the signed-in account is shown, with the choice to use another
    // one. A sign-in made for this request (the marker) or "Continue" on the chooser (a
    // CSRF-checked post) has already chosen.
    if areq.prompt.select_account && !reauthenticated && entry != Entry::AccountChosen {
        let user = state.core.users.get(&session.user_id).await?;
        let name = user.name.clone().or_else(|| {
            let parts: Vec<&str> = [user.given_name.as_deref(), user.family_name.as_deref()]
                .into_iter()
                .flatten()
                .collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        });
        let shown = name.as_deref().unwrap_or(&user.primary_email);
        let c = csrf(req, state);
        let view = SelectAccountView {
            csrf: &c.token,
            request: &query,
            session: &session.session_id,
            client_name: &client.name,
            email: &user.primary_email,
            name: name.as_deref(),
            shown,
            initial: shown.chars().next().map(|c| c.to_uppercase().collect()).unwrap_or_default(),
        };
        let res = render(state, Some(&c), StatusCode::OK, &view)
            .map_err(|_| BrowserError::Invalid("The account chooser could not be shown.".into()))?;
        return Ok(allow_form_redirect(res, &areq));
    }

    if !client.first_party {
        let granted = state.core.oauth.consent(&session.user_id, &client.client_id).await?;
        let covered = granted.is_some_and(|g| areq.scopes.iter().all(|s| g.iter().any(|x| x == s)));
        if !covered || areq.prompt.consent {
            if areq.prompt.none {
                return Err(redirect_error(
                    state,
                    &areq,
                    OAuthError::new(ErrorCode::ConsentRequired, "the user has not consented"),
                ));
            }
            let user = state.core.users.get(&session.user_id).await?;
            let c = csrf(req, state);
            let view = ConsentView {
                csrf: &c.token,
                request: &query,
                client_name: &client.name,
                email: &user.primary_email,
                scopes: areq.scopes.iter().map(|s| scope_label(s)).collect(),
            };
            let res = render(state, Some(&c), StatusCode::OK, &view).map_err(|_| {
                BrowserError::Invalid("The consent page could not be shown.".into())
            })?;
            // The consent form must be allowed to end at the client's redirect URI.
            return Ok(allow_form_redirect(res, &areq));
        }
    }
    let res = issue_code(state, &client, &areq, &session.session_id, &session.user_id, auth_time);
    match (res.await, entry) {
        (Ok(r), Entry::Resume) => {
            match r.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()) {
                Some(location) => Ok(navigate_page(location)),
                None => Ok(r),
            }
        }
        (other, _) => other,
    }
}

async fn issue_code(
    state: &AppState,
    client: &Client,
    areq: &AuthorizationRequest,
    session_id: &str,
    user_id: &str,
    auth_time: i64,
) -> Page {
    let code = state
        .core
        .oauth
        .issue_code(NewCode {
            client_id: client.client_id.clone(),
            user_id: user_id.to_owned(),
            session_id: session_id.to_owned(),
            redirect_uri: areq.redirect_uri.clone(),
            scopes: areq.scopes.clone(),
            nonce: areq.nonce.clone(),
            code_challenge: areq.code_challenge.clone(),
            auth_time,
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "could not store the authorization code");
            redirect_error(state, areq, OAuthError::new(ErrorCode::ServerError, "try again"))
        })?;
    let location = authorize::success_redirect(areq, &code, issuer(state))
        .map_err(|_| BrowserError::Invalid("The redirect URI is not valid.".into()))?;
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

/// A CSP source expression for a redirect URI: its origin, or `scheme:` for private-use schemes.
fn csp_source(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u.origin().ascii_serialization(),
        Ok(u) => format!("{}:", u.scheme()),
        Err(_) => String::new(),
    }
}

fn scope_label(scope: &str) -> String {
    match scope {
        SCOPE_OPENID => "Your account identifier".into(),
        "profile" => "Your name and picture".into(),
        "email" => "Your email address".into(),
        latchkey_oidc::SCOPE_ORGANIZATION => "Your current organisation and role".into(),
        SCOPE_OFFLINE_ACCESS => "Access while you are away (until you sign out)".into(),
        other => other.to_owned(),
    }
}

#[derive(Template)]
#[template(path = "pages/consent.html")]
struct ConsentView<'a> {
    csrf: &'a str,
    request: &'a str,
    client_name: &'a str,
    email: &'a str,
    scopes: Vec<String>,
}

#[derive(Template)]
#[template(path = "pages/select_account.html")]
struct SelectAccountView<'a> {
    csrf: &'a str,
    request: &'a str,
    session: &'a str,
    client_name: &'a str,
    email: &'a str,
    name: Option<&'a str>,
    /// The name, or the address without one.
    shown: &'a str,
    initial: String,
}

#[derive(serde::Deserialize)]
struct SelectAccountForm {
    csrf_token: String,
    request: String,
    /// The session the chooser showed; the choice holds for that session only.
    session: String,
    decision: String,
}

/// The account chooser's answer (prompt=select_account). "continue" resumes the request with
/// the account chosen; "switch" ends this session (back-channel logout included) and sends the
/// browser to sign-in, coming back to the same request with a marker so the chooser is not
/// shown again.
async fn select_account(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<SelectAccountForm>,
) -> Page {
    verify_csrf(&req, &state, &form.csrf_token).map_err(|_| {
        BrowserError::Invalid("This form has expired. Start the sign-in again.".into())
    })?;
    let params = Params::parse(&form.request).map_err(|e| BrowserError::Invalid(e.description))?;
    let (_, mut areq) = validate_request(&state, &params).await?;
    let now = state.core.clock.now();
    let Some((session, _)) = current_session(&req, &state).await else {
        // Signed out meanwhile: signing in chooses the account.
        return Ok(to_sign_in(&areq, &form.request, Some(auth_after_marker(&state, &areq, now))));
    };
    if !latchkey_core::infra::crypto::constant_time_eq(&form.session, &session.session_id) {
        // Another account signed in since the chooser was shown: ask again, for that one.
        return authorize_with(&req, &state, params, form.request.clone(), Entry::Request).await;
    }
    match form.decision.as_str() {
        "continue" => {
            authorize_with(&req, &state, params, form.request.clone(), Entry::AccountChosen).await
        }
        "switch" => {
            let client = crate::pages::support::client_info(&req);
            let actor = Actor::user(&session.user_id, client.ip, client.user_agent);
            state.core.sessions.end(&session.session_id, &actor).await?;
            // The hint named the account the user just turned down.
            areq.login_hint = None;
            let marker = auth_after_marker(&state, &areq, now);
            let mut res = to_sign_in(&areq, &form.request, Some(marker));
            if let Err(e) = res.add_cookie(&crate::pages::support::clear_session_cookie(&state)) {
                tracing::warn!(error = %e, "could not clear the session cookie");
            }
            Ok(res)
        }
        _ => Err(BrowserError::Invalid("Choose an account to continue.".into())),
    }
}

#[derive(serde::Deserialize)]
struct ConsentForm {
    csrf_token: String,
    request: String,
    decision: String,
}

async fn consent(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<ConsentForm>,
) -> Page {
    verify_csrf(&req, &state, &form.csrf_token).map_err(|_| {
        BrowserError::Invalid("This form has expired. Start the sign-in again.".into())
    })?;
    let params = Params::parse(&form.request).map_err(|e| BrowserError::Invalid(e.description))?;
    let (client, areq) = validate_request(&state, &params).await?;
    let Some((session, _)) = current_session(&req, &state).await else {
        return Ok(to_sign_in(&areq, &form.request, None));
    };
    if form.decision != "allow" {
        return Err(redirect_error(
            &state,
            &areq,
            OAuthError::new(ErrorCode::AccessDenied, "the user denied the request"),
        ));
    }
    state.core.oauth.grant_consent(&session.user_id, &client.client_id, &areq.scopes).await?;
    let auth_time = state.core.sessions.get(&session.session_id).await?.created_at;
    issue_code(&state, &client, &areq, &session.session_id, &session.user_id, auth_time).await
}

// ---------------------------------------------------------------- token endpoint

struct Issued {
    access_token: String,
    expires_in: i64,
    id_token: Option<String>,
    refresh_token: Option<String>,
    scopes: Vec<String>,
}

fn alg_of(client: &Client) -> SigningAlg {
    SigningAlg::parse(&client.id_token_alg).unwrap_or(SigningAlg::RS256)
}

/// The user-side context of a grant: subject claims and the authentication event, current as
/// of the request's store revision.
struct GrantContext {
    subject: Arc<GrantSubject>,
    amr: Vec<String>,
    revision: i64,
}

impl GrantContext {
    fn org_id(&self) -> Option<&str> {
        self.subject.org_id()
    }
}

/// The grant's user and session; `invalid_grant` when either is no longer live.
async fn grant_context(
    state: &AppState,
    user_id: &str,
    session_id: &str,
    revision: i64,
) -> Result<GrantContext, OidcError> {
    let subject = state
        .core
        .oauth
        .grant_subject(session_id, revision)
        .await?
        .filter(|s| s.user.id == user_id)
        .ok_or_else(|| OidcError::Json(OAuthError::invalid_grant("the session has ended")))?;
    context_of(subject, revision, state.core.clock.now())
}

/// [`grant_context`] for a subject already looked up (a refresh finds it while rotating).
fn context_of(
    subject: Arc<GrantSubject>,
    revision: i64,
    now: i64,
) -> Result<GrantContext, OidcError> {
    if subject.user.status != latchkey_core::model::UserStatus::Active {
        return Err(OidcError::Json(OAuthError::invalid_grant("the user is not active")));
    }
    if !subject.is_live(now) {
        return Err(OidcError::Json(OAuthError::invalid_grant("the session has ended")));
    }
    let amr = match subject.auth_method() {
        "password" => vec!["pwd".to_owned()],
        _ => Vec::new(),
    };
    Ok(GrantContext { subject, amr, revision })
}

#[allow(clippy::too_many_arguments)]
async fn issue_tokens(
    state: &AppState,
    client: &Client,
    ctx: &GrantContext,
    session_id: &str,
    auth_time: i64,
    scopes: Vec<String>,
    nonce: Option<&str>,
    refresh_token: Option<String>,
    grant_id: &str,
) -> Result<Issued, OidcError> {
    let core = &state.core;
    let now = state.core.clock.now();
    let alg = alg_of(client);
    let auth = AuthContext {
        session_id,
        auth_time,
        amr: ctx.amr.clone(),
        acr: None,
        org_id: ctx.org_id(),
        org_role: ctx.subject.org_role.as_deref(),
    };
    let jti = latchkey_core::infra::ids::new_id("at");
    let at_input = claims::AccessTokenInput {
        issuer: issuer(state),
        audience: issuer(state),
        client_id: &client.client_id,
        subject: Some(&ctx.subject.user.id),
        auth: Some(&auth),
        scopes: &scopes,
        jti: &jti,
        now,
        ttl_secs: client.access_token_ttl_secs,
    };
    let mut at_claims = claims::access_token(&at_input);
    // The grant the token came from, so revoking the grant ends its access tokens at once.
    at_claims.grant_id = Some(grant_id);
    let access_token = match client.access_token_template.as_deref() {
        // Without a template the typed claims are signed as they are: no JSON value is built.
        None => core.oauth.sign_serialized_at(alg, "at+jwt", &at_claims, ctx.revision).await?,
        template => {
            let mut value = serde_json::to_value(&at_claims)
                .map_err(|e| latchkey_core::Error::Internal(e.to_string()))?;
            merge_template(state, &mut value, template, session_id, ctx.org_id()).await?;
            core.oauth.sign_at(alg, "at+jwt", &value, ctx.revision).await?
        }
    };
    let id_token = if scopes.iter().any(|s| s == SCOPE_OPENID) {
        let u = &ctx.subject.user;
        let subject = Subject {
            user_id: &u.id,
            email: &u.primary_email,
            email_verified: u.email_verified,
            name: u.name.as_deref(),
            given_name: u.given_name.as_deref(),
            family_name: u.family_name.as_deref(),
            picture: u.image_url.as_deref(),
            updated_at: u.updated_at,
        };
        let id_claims = claims::id_token(&claims::IdTokenInput {
            issuer: issuer(state),
            client_id: &client.client_id,
            subject: &subject,
            auth: &auth,
            scopes: &scopes,
            nonce,
            access_token: Some(&access_token),
            alg: alg.as_str(),
            now,
            ttl_secs: client.id_token_ttl_secs,
        });
        Some(match client.id_token_template.as_deref() {
            None => core.oauth.sign_serialized_at(alg, "JWT", &id_claims, ctx.revision).await?,
            template => {
                let mut value = serde_json::to_value(&id_claims)
                    .map_err(|e| latchkey_core::Error::Internal(e.to_string()))?;
                merge_template(state, &mut value, template, session_id, ctx.org_id()).await?;
                core.oauth.sign_at(alg, "JWT", &value, ctx.revision).await?
            }
        })
    } else {
        None
    };
    Ok(Issued {
        access_token,
        expires_in: client.access_token_ttl_secs,
        id_token,
        refresh_token,
        scopes,
    })
}

/// Adds the claims of a client's JWT template (if it names one), rendered for the grant's
/// session and organisation, to a user token's claims; the token's own claims always win
/// (`latchkey_oidc::claims::merge_template_claims`). A template that cannot be rendered fails
/// the request rather than issue a token without the claims the client relies on.
async fn merge_template(
    state: &AppState,
    claims: &mut Value,
    template: Option<&str>,
    session_id: &str,
    org_id: Option<&str>,
) -> Result<(), OidcError> {
    if let Some(name) = template {
        let extra = state.core.jwt_templates.render_for_session(name, session_id, org_id).await?;
        claims::merge_template_claims(claims, extra);
    }
    Ok(())
}

/// RFC 6749 §5.1 (with OIDC Core §3.1.3.3's `id_token`). A struct rather than a JSON value:
/// this is the hottest response Latchkey writes.
#[derive(serde::Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: i64,
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
}

fn token_response(i: Issued) -> HttpResponse {
    let body = TokenResponse {
        access_token: &i.access_token,
        token_type: "Bearer",
        expires_in: i.expires_in,
        scope: i.scopes.join(" "),
        id_token: i.id_token.as_deref(),
        refresh_token: i.refresh_token.as_deref(),
    };
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(body)
}

async fn token_endpoint(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> Res {
    let params = form_params(&req, &body).map_err(OidcError::Json)?;
    let core = &state.core;
    let revision = core.oauth.revision().await?;
    let client = client_auth::authenticate(&req, &params, &state, true, revision).await?;
    let request = token::parse_token_request(&params).map_err(OidcError::Json)?;
    let unauthorized = || {
        OidcError::Json(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "grant type not allowed for this client",
        ))
    };
    match request {
        TokenRequest::AuthorizationCode { code, redirect_uri, code_verifier } => {
            if !client.allows_grant(clients::GRANT_AUTHORIZATION_CODE) {
                return Err(unauthorized());
            }
            let CodeRedemption::Redeemed(c) = core.oauth.redeem_code(&code).await? else {
                return Err(OidcError::Json(OAuthError::invalid_grant(
                    "the code is invalid or was already used",
                )));
            };
            token::check_code(
                &CodeBinding {
                    client_id: &c.client_id,
                    redirect_uri: &c.redirect_uri,
                    code_challenge: c.code_challenge.as_deref(),
                    expires_at: c.expires_at,
                },
                &client.client_id,
                &redirect_uri,
                code_verifier.as_deref(),
                state.core.clock.now(),
            )
            .map_err(OidcError::Json)?;
            let ctx = grant_context(&state, &c.user_id, &c.session_id, revision).await?;
            let refresh = if c.scopes.iter().any(|s| s == SCOPE_OFFLINE_ACCESS)
                && client.allows_grant(clients::GRANT_REFRESH_TOKEN)
            {
                let grant = RefreshGrant {
                    family_id: c.id.clone(),
                    client_id: client.client_id.clone(),
                    user_id: c.user_id.clone(),
                    session_id: c.session_id.clone(),
                    scopes: c.scopes.clone(),
                    auth_time: c.auth_time,
                };
                Some(core.oauth.issue_refresh(&grant, client.refresh_token_ttl_secs).await?)
            } else {
                None
            };
            let issued = issue_tokens(
                &state,
                &client,
                &ctx,
                &c.session_id,
                c.auth_time,
                c.scopes.clone(),
                c.nonce.as_deref(),
                refresh,
                &c.id,
            )
            .await?;
            // A replay of the code racing this exchange revokes what we just issued.
            if !core.oauth.settle_grant(&c.id).await? {
                return Err(OidcError::Json(OAuthError::invalid_grant("the code was used twice")));
            }
            Ok(token_response(issued))
        }
        TokenRequest::RefreshToken { refresh_token, scopes } => {
            if !client.allows_grant(clients::GRANT_REFRESH_TOKEN) {
                return Err(unauthorized());
            }
            let (grant, new_token, subject) = match core
                .oauth
                .rotate_refresh(
                    &refresh_token,
                    &client.client_id,
                    client.refresh_token_ttl_secs,
                    revision,
                )
                .await?
            {
                RefreshOutcome::Rotated { grant, token, subject } => (grant, token, subject),
                RefreshOutcome::Invalid(reason) => {
                    return Err(OidcError::Json(OAuthError::invalid_grant(reason)));
                }
                RefreshOutcome::Reused => {
                    return Err(OidcError::Json(OAuthError::invalid_grant(
                        "refresh token reuse detected; the grant is revoked",
                    )));
                }
            };
            // A refresh may narrow the scopes, never widen them (RFC 6749 §6).
            let scopes = match scopes {
                Some(s) if s.iter().all(|x| grant.scopes.contains(x)) => s,
                Some(_) => {
                    return Err(OidcError::Json(OAuthError::new(
                        ErrorCode::InvalidScope,
                        "scope exceeds the original grant",
                    )));
                }
                None => grant.scopes.clone(),
            };
            let ctx = context_of(subject, revision, state.core.clock.now())?;
            let issued = issue_tokens(
                &state,
                &client,
                &ctx,
                &grant.session_id,
                grant.auth_time,
                scopes,
                None,
                Some(new_token),
                &grant.family_id,
            )
            .await?;
            Ok(token_response(issued))
        }
        TokenRequest::ClientCredentials { scopes, audiences } => {
            if client.is_public() || !client.allows_grant(clients::GRANT_CLIENT_CREDENTIALS) {
                return Err(unauthorized());
            }
            if let Some(s) = scopes.iter().find(|s| {
                *s == SCOPE_OPENID
                    || *s == SCOPE_OFFLINE_ACCESS
                    || !client.allowed_scopes.iter().any(|a| a == *s)
            }) {
                return Err(OidcError::Json(OAuthError::new(
                    ErrorCode::InvalidScope,
                    format!("scope {s:?} is not allowed for this client"),
                )));
            }
            // RFC 8707: only audiences registered for the client; none keeps the issuer.
            token::check_audiences(&audiences, &client.audiences).map_err(OidcError::Json)?;
            let now = state.core.clock.now();
            let jti = latchkey_core::infra::ids::new_id("at");
            let mut claims = claims::access_token(&claims::AccessTokenInput {
                issuer: issuer(&state),
                audience: issuer(&state),
                client_id: &client.client_id,
                subject: None,
                auth: None,
                scopes: &scopes,
                jti: &jti,
                now,
                ttl_secs: client.access_token_ttl_secs,
            });
            claims.set_audiences(&audiences);
            let access_token =
                core.oauth.sign_serialized_at(alg_of(&client), "at+jwt", &claims, revision).await?;
            Ok(token_response(Issued {
                access_token,
                expires_in: client.access_token_ttl_secs,
                id_token: None,
                refresh_token: None,
                scopes,
            }))
        }
    }
}

// ---------------------------------------------------------------- access tokens

/// Which `aud` an access token may carry for the party checking it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Audience {
    /// Latchkey's own endpoints (userinfo): exactly the issuer.
    Issuer,
    /// Introspection for resource servers: the issuer, or audiences that are registered for
    /// the token's client (client_credentials with `resource` / `audience`).
    IssuerOrRegistered,
}

/// True when the token's `aud` is acceptable under `policy`.
async fn audience_ok(
    state: &AppState,
    claims: &serde_json::Map<String, Value>,
    policy: Audience,
) -> bool {
    let aud = claims.get("aud");
    if aud.and_then(Value::as_str) == Some(issuer(state)) {
        return true;
    }
    if policy == Audience::Issuer {
        return false;
    }
    // Every value must be a string registered for the token's client.
    let values: Option<Vec<&str>> = match aud {
        Some(Value::String(a)) => Some(vec![a.as_str()]),
        Some(Value::Array(items)) if !items.is_empty() => items.iter().map(Value::as_str).collect(),
        _ => None,
    };
    let Some(values) = values else { return false };
    let Some(client_id) = claims.get("client_id").and_then(Value::as_str) else { return false };
    let Ok(Some(client)) = state.core.clients.find(client_id).await else { return false };
    values.iter().all(|v| client.audiences.iter().any(|a| a == v))
}

/// Verifies one of our RFC 9068 access tokens: signature, `typ`, issuer, audience (see
/// [`Audience`]), expiry, and (at once, not at expiry) that the session behind it is still live.
async fn verify_access_token(
    state: &AppState,
    token: &str,
    audience: Audience,
) -> Option<serde_json::Map<String, Value>> {
    let (typ, claims) = state.core.oauth.verify_own(token).await.ok()?;
    if !typ.is_some_and(|t| t.eq_ignore_ascii_case("at+jwt")) {
        return None;
    }
    let now = state.core.clock.now();
    let s = |k: &str| claims.get(k).and_then(Value::as_str);
    if s("iss") != Some(issuer(state)) || !audience_ok(state, &claims, audience).await {
        return None;
    }
    if claims.get("exp").and_then(Value::as_i64).is_none_or(|exp| exp <= now) {
        return None;
    }
    if let Some(sid) = s("sid")
        && !state.core.oauth.session_is_active(sid).await.ok()?
    {
        return None;
    }
    if let Some(grant) = s("grant_id")
        && state.core.oauth.grant_revoked(grant).await.ok()?
    {
        return None;
    }
    Some(claims)
}

async fn userinfo(req: HttpRequest, state: web::Data<AppState>) -> Res {
    let invalid = || {
        OidcError::Bearer(OAuthError::new(ErrorCode::InvalidToken, "the access token is invalid"))
    };
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned())
        .ok_or_else(invalid)?;
    let claims = verify_access_token(&state, &token, Audience::Issuer).await.ok_or_else(invalid)?;
    let scopes: Vec<String> = claims
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .split(' ')
        .map(str::to_owned)
        .collect();
    // Client-credentials tokens have no sid and no user: nothing to tell.
    if !scopes.iter().any(|s| s == SCOPE_OPENID) || !claims.contains_key("sid") {
        return Err(OidcError::Bearer(OAuthError::new(
            ErrorCode::InvalidToken,
            "the token does not carry the openid scope",
        )));
    }
    let user_id = claims.get("sub").and_then(Value::as_str).ok_or_else(invalid)?;
    let u = state.core.users.get(user_id).await.map_err(|_| invalid())?;
    if u.status != latchkey_core::model::UserStatus::Active {
        return Err(invalid());
    }
    let subject = Subject {
        user_id: &u.id,
        email: &u.primary_email,
        email_verified: u.email_verified,
        name: u.name.as_deref(),
        given_name: u.given_name.as_deref(),
        family_name: u.family_name.as_deref(),
        picture: u.image_url.as_deref(),
        updated_at: u.updated_at,
    };
    Ok(json_ok(Value::Object(claims::user_claims(&subject, &scopes))))
}

async fn introspect(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> Res {
    let params = form_params(&req, &body).map_err(OidcError::Json)?;
    // RFC 7662 §2.1: the caller must be authenticated; public clients may not probe tokens.
    let revision = state.core.oauth.revision().await?;
    client_auth::authenticate(&req, &params, &state, false, revision).await?;
    let token = params.require("token").map_err(OidcError::Json)?;
    if token.split('.').count() == 3 {
        if let Some(c) = verify_access_token(&state, token, Audience::IssuerOrRegistered).await {
            let mut out = json!({ "active": true, "token_type": "Bearer" });
            for k in
                ["scope", "client_id", "sub", "exp", "iat", "iss", "aud", "jti", "sid", "auth_time"]
            {
                if let Some(v) = c.get(k) {
                    out[k] = v.clone();
                }
            }
            return Ok(json_ok(out));
        }
    } else if let Some((grant, exp)) = state.core.oauth.live_refresh(token).await? {
        return Ok(json_ok(json!({
            "active": true,
            "token_type": "refresh_token",
            "scope": grant.scopes.join(" "),
            "client_id": grant.client_id,
            "sub": grant.user_id,
            "exp": exp,
            "iss": issuer(&state),
            "sid": grant.session_id,
        })));
    }
    Ok(json_ok(json!({ "active": false })))
}

/// RFC 7009: refresh tokens revoke their whole family; access tokens are short-lived JWTs and
/// end with their session, so revoking one alone is not supported (answered 200 as the RFC
/// allows). Unknown tokens also get 200.
async fn revoke(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> Res {
    let params = form_params(&req, &body).map_err(OidcError::Json)?;
    let revision = state.core.oauth.revision().await?;
    let client = client_auth::authenticate(&req, &params, &state, true, revision).await?;
    let token = params.require("token").map_err(OidcError::Json)?;
    if token.split('.').count() != 3 {
        state.core.oauth.revoke_refresh(token, &client.client_id).await?;
    }
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).finish())
}

// ---------------------------------------------------------------- RP-initiated logout

async fn logout_get(req: HttpRequest, state: web::Data<AppState>) -> Page {
    let params =
        Params::parse(req.query_string()).map_err(|e| BrowserError::Invalid(e.description))?;
    logout_with(&req, &state, params).await
}

async fn logout_post(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> Page {
    let params = form_params(&req, &body).map_err(|e| BrowserError::Invalid(e.description))?;
    logout_with(&req, &state, params).await
}

/// RP-Initiated Logout 1.0. Without a valid `id_token_hint` for the current session the user
/// confirms on the sign-out page (a bare link must not sign people out); with one, the session
/// ends and the browser goes to the registered `post_logout_redirect_uri` (with `state`).
async fn logout_with(req: &HttpRequest, state: &AppState, params: Params) -> Page {
    let hint = match params.get("id_token_hint") {
        Some(t) => Some(
            state
                .core
                .oauth
                .verify_own(t)
                .await
                .ok()
                // An access token (typ at+jwt) is not an ID token.
                .filter(|(typ, _)| {
                    !typ.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("at+jwt"))
                })
                .map(|(_, c)| c)
                .filter(|c| c.get("iss").and_then(Value::as_str) == Some(issuer(state)))
                .ok_or_else(|| BrowserError::Invalid("The id_token_hint is not valid.".into()))?,
        ),
        None => None,
    };
    let hint_client = hint.as_ref().and_then(|c| c.get("aud")).and_then(Value::as_str);
    let client_id = match (params.get("client_id"), hint_client) {
        (Some(a), Some(b)) if a != b => {
            return Err(BrowserError::Invalid(
                "client_id does not match the id_token_hint.".into(),
            ));
        }
        (Some(a), _) => Some(a),
        (None, b) => b,
    };
    let redirect = match params.get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let client = match client_id {
                Some(id) => state.core.clients.find(id).await?,
                None => None,
            };
            match client {
                Some(c) if c.has_post_logout_redirect_uri(uri) => {
                    let mut url = url::Url::parse(uri).map_err(|_| {
                        BrowserError::Invalid("Invalid post_logout_redirect_uri.".into())
                    })?;
                    if let Some(st) = params.get("state") {
                        url.query_pairs_mut().append_pair("state", st);
                    }
                    Some(String::from(url))
                }
                _ => {
                    return Err(BrowserError::Invalid(
                        "The post_logout_redirect_uri is not registered for this application."
                            .into(),
                    ));
                }
            }
        }
    };
    let current = current_session(req, state).await;
    let hint_sid = hint.as_ref().and_then(|c| c.get("sid")).and_then(Value::as_str);
    match (&current, hint_sid) {
        (Some((s, _)), Some(sid)) if s.session_id == sid => {
            let actor = Actor::user(&s.user_id, None, None);
            state.core.sessions.end(&s.session_id, &actor).await?;
        }
        (Some(_), _) => {
            // Unconfirmed: let the user decide on the sign-out page.
            return Ok(HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/sign-out"))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish());
        }
        (None, _) => {}
    }
    let mut res = HttpResponse::SeeOther();
    res.insert_header((header::CACHE_CONTROL, "no-store")).insert_header((
        header::LOCATION,
        redirect.unwrap_or_else(|| "/sign-in?signed_out=1".into()),
    ));
    if current.is_some() {
        res.cookie(crate::pages::support::clear_session_cookie(state));
    }
    Ok(res.finish())
}
