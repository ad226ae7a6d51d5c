//! What every page handler needs: the CSRF token, rendering with page headers, the session
//! cookie, the client's address and safe redirects.

use actix_web::{
    HttpRequest, HttpResponse,
    cookie::{Cookie, SameSite, time::Duration as CookieDuration},
    http::{StatusCode, header},
};
use askama::Template;
use latchkey_core::{
    identity::session_tokens::SessionContext, infra::audit::Actor, infra::crypto,
    sign_in::ClientInfo,
};

use crate::{AppState, error::page::PageError};

const DEFAULT_RETURN: &str = "/account";

/// The form CSRF token for this browser: a random value in a cookie, echoed by every form
/// (double submit). A cross-site page can neither read the cookie nor set it.
pub struct Csrf {
    pub token: String,
    fresh: bool,
}

fn csrf_cookie_name(state: &AppState) -> &'static str {
    if state.core.settings.secure_cookies() { "__Host-latchkey_csrf" } else { "latchkey_csrf" }
}

pub fn csrf(req: &HttpRequest, state: &AppState) -> Csrf {
    match req
        .cookie(csrf_cookie_name(state))
        .map(|c| c.value().to_owned())
        .filter(|v| v.len() == 43)
    {
        Some(token) => Csrf { token, fresh: false },
        None => Csrf { token: crypto::random_secret(), fresh: true },
    }
}

/// Checks a submitted form: same-origin request and a token matching the cookie.
pub fn verify_csrf(req: &HttpRequest, state: &AppState, submitted: &str) -> Result<(), PageError> {
    let headers = req.headers();
    if let Some(origin) = headers.get(header::ORIGIN) {
        let ok = origin
            .to_str()
            .ok()
            .and_then(latchkey_core::infra::config::normalize_origin)
            .is_some_and(|o| o == state.public_origin);
        if !ok {
            return Err(PageError::Csrf);
        }
    }
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site")
    {
        return Err(PageError::Csrf);
    }
    let cookie = req.cookie(csrf_cookie_name(state)).ok_or(PageError::Csrf)?;
    if submitted.is_empty() || !crypto::constant_time_eq(cookie.value(), submitted) {
        return Err(PageError::Csrf);
    }
    Ok(())
}

/// Renders a page with the page CSP, no caching, and the CSRF cookie when it is new.
pub fn render<T: Template>(
    state: &AppState,
    csrf: Option<&Csrf>,
    status: StatusCode,
    view: &T,
) -> Result<HttpResponse, PageError> {
    let body = view.render().map_err(|e| {
        tracing::error!(error = %e, "template rendering failed");
        PageError::internal()
    })?;
    let mut res = HttpResponse::build(status);
    res.content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::CONTENT_SECURITY_POLICY, page_csp(state)))
        // With `no-referrer`, browsers send `Origin: null` on form posts, which the CSRF check
        // must refuse; `same-origin` keeps URLs (reset tokens) from leaking to other sites.
        .insert_header((header::REFERRER_POLICY, "same-origin"));
    if let Some(c) = csrf.filter(|c| c.fresh) {
        res.cookie(
            Cookie::build(csrf_cookie_name(state), c.token.clone())
                .path("/")
                .http_only(true)
                .secure(state.core.settings.secure_cookies())
                .same_site(SameSite::Lax)
                .finish(),
        );
    }
    Ok(res.body(body))
}

/// Forms may only post to us and redirect to where `return_to` may point.
fn page_csp(state: &AppState) -> String {
    let mut targets: Vec<&str> = state.allowed_origins.iter().map(String::as_str).collect();
    targets.sort_unstable();
    crate::csp::page(targets)
}

/// `return_to` as given if it is a same-origin path or a URL on an allowed origin; otherwise
/// the account page. Protocol-relative (`//x`), backslash and scheme tricks fall to the default.
pub fn safe_return_to(raw: Option<&str>, state: &AppState) -> String {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty() && r.len() <= 2048) else {
        return DEFAULT_RETURN.into();
    };
    if raw.chars().any(|c| c.is_control() || c == '\\') {
        return DEFAULT_RETURN.into();
    }
    if raw.starts_with('/') && !raw.starts_with("//") {
        return raw.to_owned();
    }
    match url::Url::parse(raw) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.username().is_empty()
                && u.password().is_none() =>
        {
            if state.allowed_origins.contains(&u.origin().ascii_serialization()) {
                raw.to_owned()
            } else {
                DEFAULT_RETURN.into()
            }
        }
        _ => DEFAULT_RETURN.into(),
    }
}

/// `?return_to=…` for links between the sign-in pages, empty for the default.
pub fn return_query(return_to: &str) -> String {
    if return_to == DEFAULT_RETURN {
        String::new()
    } else {
        format!(
            "?return_to={}",
            url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect::<String>()
        )
    }
}

pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish()
}

pub fn client_info(req: &HttpRequest) -> ClientInfo {
    ClientInfo {
        ip: crate::client_ip::client_ip(req).map(|a| a.to_string()),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(512).collect()),
    }
}

pub fn session_cookie(state: &AppState, secret: &str) -> Cookie<'static> {
    let max_age = state.core.settings.session_absolute_timeout.as_secs() as i64;
    Cookie::build(state.cookie_name, secret.to_owned())
        .path("/")
        .http_only(true)
        .secure(state.core.settings.secure_cookies())
        .same_site(SameSite::Lax)
        .max_age(CookieDuration::seconds(max_age))
        .finish()
}

pub fn clear_session_cookie(state: &AppState) -> Cookie<'static> {
    let mut c = session_cookie(state, "");
    c.make_removal();
    c
}

/// The live session behind the request's cookie, if any.
pub async fn current_session(
    req: &HttpRequest,
    state: &AppState,
) -> Option<(SessionContext, String)> {
    let secret = req.cookie(state.cookie_name)?.value().to_owned();
    match state.core.session_tokens.authenticate(&secret).await {
        Ok(s) => Some((s, secret)),
        Err(_) => None,
    }
}

/// Redirect to sign-in, coming back to this page afterwards.
pub fn to_sign_in(req: &HttpRequest) -> HttpResponse {
    let here = req.uri().path_and_query().map_or("/account", |p| p.as_str());
    see_other(&format!("/sign-in{}", return_query(here)))
}

/// A short human description of a user agent for the sessions list.
pub fn device_label(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent else { return "Unknown device".into() };
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| *name);
    let os = [
        ("Windows", "Windows"),
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| *name);
    match (browser, os) {
        (Some(b), Some(o)) => format!("{b} on {o}"),
        (Some(b), None) => b.to_owned(),
        (None, Some(o)) => o.to_owned(),
        (None, None) => ua.chars().take(40).collect(),
    }
}

/// A browser signing in again replaces its old session rather than leaving it behind.
pub async fn end_previous_session(req: &HttpRequest, state: &AppState, new_session_id: &str) {
    if let Some((old, _)) = current_session(req, state).await
        && old.session_id != new_session_id
    {
        let actor = latchkey_core::infra::audit::Actor::user(&old.user_id, None, None);
        if let Err(e) = state.core.sessions.end(&old.session_id, &actor).await {
            tracing::warn!(error = %e, "could not end the previous session");
        }
    }
}

/// Where a browser goes after signing out, unless the session's IdP has Single Logout.
pub const SIGNED_OUT: &str = "/sign-in?signed_out=1";

/// Signing out in a browser (the hosted page and the SDK's JSON call): ends the session in the
/// cookie, if any, and for a session from a SAML IdP with Single Logout returns the IdP's logout
/// URL and the browser-binding cookie its answer will be checked against. The caller clears the
/// session cookie. A Single Logout that cannot start is logged: the Latchkey session is over.
pub async fn end_current_session(
    req: &HttpRequest,
    state: &AppState,
) -> Result<Option<(String, Cookie<'static>)>, latchkey_core::Error> {
    let Some((session, _)) = current_session(req, state).await else { return Ok(None) };
    let client = client_info(req);
    let actor = Actor::user(&session.user_id, client.ip, client.user_agent);
    state.core.sessions.end(&session.session_id, &actor).await?;
    let browser = crate::pending::browser_binding(req, state);
    match state.core.saml.logout_redirect(&session.session_id, SIGNED_OUT, &browser).await {
        Ok(Some(url)) => Ok(Some((url, crate::pending::binding_cookie(state, &browser)))),
        Ok(None) => Ok(None),
        Err(e) => {
            tracing::warn!(error = %e, "could not start SAML single logout");
            Ok(None)
        }
    }
}
