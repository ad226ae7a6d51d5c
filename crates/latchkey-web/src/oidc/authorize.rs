//! The endpoints a browser visits: authorization (and its resumption after sign-in), consent,
//! the account chooser and RP-initiated logout. The core decides the next step; this module
//! renders it: a redirect, a page, or sign-in.

use actix_web::{
    HttpRequest, HttpResponse,
    http::{StatusCode, header},
    web,
};
use askama::Template;
use latchkey_core::{
    identity::{model::User, session_tokens::SessionContext},
    oauth::provider::{
        AUTH_AFTER_PARAM, AccountChoice, AuthorizeStep, BrowserSession, LogoutStep, SelectOutcome,
    },
};
use latchkey_oidc::{
    SCOPE_EMAIL, SCOPE_OFFLINE_ACCESS, SCOPE_OPENID, SCOPE_ORGANIZATION, SCOPE_PROFILE,
    params::Params,
};

use super::form_params;
use crate::{
    AppState, csp,
    error::oauth::BrowserError,
    pages::support::{
        clear_session_cookie, client_info, csrf, current_session, render, verify_csrf,
    },
};

/// Endpoints a browser visits answer failures with a redirect to the client or a page.
type Page = Result<HttpResponse, BrowserError>;

fn browser_session(s: &Option<(SessionContext, String)>) -> Option<BrowserSession<'_>> {
    s.as_ref().map(|(s, _)| BrowserSession { session_id: &s.session_id, user_id: &s.user_id })
}

fn parse_query(req: &HttpRequest) -> Result<Params, BrowserError> {
    Params::parse(req.query_string()).map_err(|e| BrowserError::Invalid(e.description))
}

pub(super) async fn authorize_get(req: HttpRequest, state: web::Data<AppState>) -> Page {
    let params = parse_query(&req)?;
    authorize_with(&req, &state, &params, req.query_string(), Entry::Request).await
}

pub(super) async fn authorize_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Page {
    let params = form_params(&req, &body).map_err(|e| BrowserError::Invalid(e.description))?;
    let query = std::str::from_utf8(&body).unwrap_or_default();
    authorize_with(&req, &state, &params, query, Entry::Request).await
}

/// Where the sign-in pages send the browser back to. Browsers apply the sign-in page's CSP
/// `form-action` to every redirect that follows the form post, so a 303 to the client's
/// redirect URI would be blocked there; this endpoint ends the chain with a page that
/// navigates on its own instead.
pub(super) async fn authorize_resume(req: HttpRequest, state: web::Data<AppState>) -> Page {
    let params = parse_query(&req)?;
    authorize_with(&req, &state, &params, req.query_string(), Entry::Resume).await
}

/// How a request reached [`authorize_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// The relying party's request, straight from the browser.
    Request,
    /// Back from the sign-in pages: a success ends with a page that navigates by itself.
    Resume,
}

async fn authorize_with(
    req: &HttpRequest,
    state: &AppState,
    params: &Params,
    query: &str,
    entry: Entry,
) -> Page {
    let session = current_session(req, state).await;
    let step = state.core.oidc.authorize(params, browser_session(&session), false).await?;
    match (render_step(req, state, step, query)?, entry) {
        (Rendered::Code(location), Entry::Resume) => Ok(navigate_page(&location, "Signing you in")),
        (rendered, _) => Ok(rendered.into_response()),
    }
}

/// A step as the browser gets it.
enum Rendered {
    /// The code redirect, kept apart so /resume can navigate there with a page instead.
    Code(String),
    Other(HttpResponse),
}

impl Rendered {
    fn into_response(self) -> HttpResponse {
        match self {
            Self::Code(location) => see_other(&location),
            Self::Other(res) => res,
        }
    }
}

fn render_step(
    req: &HttpRequest,
    state: &AppState,
    step: AuthorizeStep,
    query: &str,
) -> Result<Rendered, BrowserError> {
    Ok(Rendered::Other(match step {
        AuthorizeStep::Code { location } => return Ok(Rendered::Code(location)),
        AuthorizeStep::SignIn { login_hint, marker } => {
            to_sign_in(login_hint.as_deref(), query, marker)
        }
        AuthorizeStep::SelectAccount { client_name, redirect_uri, user, session_id } => {
            let name = display_name(&user);
            let shown = name.as_deref().unwrap_or(&user.primary_email);
            let c = csrf(req, state);
            let view = SelectAccountView {
                csrf: &c.token,
                request: query,
                session: &session_id,
                client_name: &client_name,
                email: &user.primary_email,
                name: name.as_deref(),
                shown,
                initial: shown
                    .chars()
                    .next()
                    .map(|c| c.to_uppercase().collect())
                    .unwrap_or_default(),
            };
            let res = render(state, Some(&c), StatusCode::OK, &view)
                .map_err(|_| invalid("The account chooser could not be shown."))?;
            allow_form_redirect(res, &redirect_uri)
        }
        AuthorizeStep::Consent { client_name, redirect_uri, email, scopes } => {
            let c = csrf(req, state);
            let view = ConsentView {
                csrf: &c.token,
                request: query,
                client_name: &client_name,
                email: &email,
                scopes: scopes.iter().map(|s| scope_label(s)).collect(),
            };
            let res = render(state, Some(&c), StatusCode::OK, &view)
                .map_err(|_| invalid("The consent page could not be shown."))?;
            // The consent form must be allowed to end at the client's redirect URI.
            allow_form_redirect(res, &redirect_uri)
        }
    }))
}

fn invalid(message: &str) -> BrowserError {
    BrowserError::Invalid(message.into())
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// A page that sends the browser to `location` by itself (meta refresh, plus a link). After
/// a form submission this reaches another origin where a redirect could not: browsers apply
/// the page's `form-action` to redirects that follow the submission.
pub(crate) fn navigate_page(location: &str, title: &str) -> HttpResponse {
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
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0;url={escaped}\"><title>{title}</title><link rel=\"stylesheet\" href=\"/assets/latchkey.css\"></head><body><main><section class=\"card\"><h1>{title}…</h1><p><a class=\"button\" href=\"{escaped}\">Continue</a></p></section></main></body></html>"
    );
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::CONTENT_SECURITY_POLICY, csp::navigate_page()))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(body)
}

/// `/sign-in?return_to=<this request as a same-origin path>`, optionally marking a forced
/// re-authentication so the request that comes back is not sent to sign-in again.
fn to_sign_in(login_hint: Option<&str>, query: &str, marker: Option<String>) -> HttpResponse {
    let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .filter(|(k, _)| k != AUTH_AFTER_PARAM)
        .collect();
    if let Some(marker) = marker {
        pairs.push((AUTH_AFTER_PARAM.into(), marker));
    }
    let query: String =
        url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    let return_to = format!("/oauth2/authorize/resume?{query}");
    let mut location = format!(
        "/sign-in?return_to={}",
        url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect::<String>()
    );
    if let Some(hint) = login_hint {
        location.push_str("&login_hint=");
        location.extend(url::form_urlencoded::byte_serialize(hint.as_bytes()));
    }
    see_other(&location)
}

/// Page CSP that also lets forms end at the client's (verified) redirect URI: browsers apply
/// `form-action` to the redirects that follow a submission.
fn allow_form_redirect(mut res: HttpResponse, redirect_uri: &str) -> HttpResponse {
    let policy = csp::page([csp::source_of(redirect_uri).as_str()]);
    if let Ok(v) = header::HeaderValue::from_str(&policy) {
        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    res
}

fn scope_label(scope: &str) -> String {
    match scope {
        SCOPE_OPENID => "Your account identifier".into(),
        SCOPE_PROFILE => "Your name and picture".into(),
        SCOPE_EMAIL => "Your email address".into(),
        SCOPE_ORGANIZATION => "Your current organisation and role".into(),
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

/// The user's name, else their given and family names; None without any.
fn display_name(user: &User) -> Option<String> {
    user.name.clone().or_else(|| {
        let parts: Vec<&str> = [user.given_name.as_deref(), user.family_name.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    })
}

#[derive(serde::Deserialize)]
pub(super) struct SelectAccountForm {
    csrf_token: String,
    request: String,
    /// The session the chooser showed; the choice holds for that session only.
    session: String,
    decision: String,
}

fn form_expired() -> BrowserError {
    invalid("This form has expired. Start the sign-in again.")
}

/// The account chooser's answer (prompt=select_account): "continue" resumes the request with
/// the account chosen; "switch" ends this session and sends the browser to sign in again.
pub(super) async fn select_account(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<SelectAccountForm>,
) -> Page {
    verify_csrf(&req, &state, &form.csrf_token).map_err(|_| form_expired())?;
    let params = Params::parse(&form.request).map_err(|e| BrowserError::Invalid(e.description))?;
    let choice = match form.decision.as_str() {
        "continue" => Some(AccountChoice::Continue),
        "switch" => Some(AccountChoice::Switch),
        _ => None,
    };
    let session = current_session(&req, &state).await;
    let outcome = state
        .core
        .oidc
        .select_account(
            &params,
            browser_session(&session),
            &form.session,
            choice,
            &client_info(&req),
        )
        .await?;
    match outcome {
        SelectOutcome::Step(step) => {
            Ok(render_step(&req, &state, step, &form.request)?.into_response())
        }
        SelectOutcome::SignedOut(step) => {
            let mut res = render_step(&req, &state, step, &form.request)?.into_response();
            if let Err(e) = res.add_cookie(&clear_session_cookie(&state)) {
                tracing::warn!(error = %e, "could not clear the session cookie");
            }
            Ok(res)
        }
    }
}

#[derive(serde::Deserialize)]
pub(super) struct ConsentForm {
    csrf_token: String,
    request: String,
    decision: String,
}

pub(super) async fn consent(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<ConsentForm>,
) -> Page {
    verify_csrf(&req, &state, &form.csrf_token).map_err(|_| form_expired())?;
    let params = Params::parse(&form.request).map_err(|e| BrowserError::Invalid(e.description))?;
    let session = current_session(&req, &state).await;
    let allow = form.decision == "allow";
    let step = state.core.oidc.consent(&params, browser_session(&session), allow).await?;
    Ok(render_step(&req, &state, step, &form.request)?.into_response())
}

pub(super) async fn logout_get(req: HttpRequest, state: web::Data<AppState>) -> Page {
    let params = parse_query(&req)?;
    logout_with(&req, &state, &params).await
}

pub(super) async fn logout_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Page {
    let params = form_params(&req, &body).map_err(|e| BrowserError::Invalid(e.description))?;
    logout_with(&req, &state, &params).await
}

/// RP-Initiated Logout 1.0: to the sign-out page to confirm, or (the session ended) to the
/// registered post-logout redirect URI or the sign-in page.
async fn logout_with(req: &HttpRequest, state: &AppState, params: &Params) -> Page {
    let session = current_session(req, state).await;
    match state.core.oidc.logout(params, browser_session(&session)).await? {
        LogoutStep::Confirm => Ok(see_other("/sign-out")),
        LogoutStep::Done { redirect, session_ended } => {
            let mut res = HttpResponse::SeeOther();
            res.insert_header((header::CACHE_CONTROL, "no-store")).insert_header((
                header::LOCATION,
                redirect.unwrap_or_else(|| "/sign-in?signed_out=1".into()),
            ));
            if session_ended {
                res.cookie(clear_session_cookie(state));
            }
            Ok(res.finish())
        }
    }
}
