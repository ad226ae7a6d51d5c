//! What the browser SDK (`sdk/js/src/browser.js`) needs from a page on another origin:
//! the module itself at `/v1/sdk/latchkey.js`, and CORS-enabled variants of the
//! cookie-authenticated calls behind its web components (who is signed in, switching the
//! active organisation, signing out).
//!
//! Every cookie-authenticated route here follows the rules of `POST /v1/session/token`: the
//! caller's `Origin` must be one of `LATCHKEY_ALLOWED_ORIGINS` (or, without an `Origin`, the
//! custom `X-Latchkey-CSRF` header must be present; see [`crate::csrf`]), and CORS headers with
//! credentials are granted to that origin only.

use actix_web::{
    Error, HttpRequest, HttpResponse,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::{
        StatusCode,
        header::{self, HeaderValue},
    },
    middleware::Next,
    web,
};
use latchkey_core::infra::audit::Actor;
use serde::Deserialize;
use serde_json::json;

use crate::{ApiError, AppState, csrf, extract::ApiSession, pages::support};

/// The browser module, served as bytes compiled into the binary.
const MODULE: &str = include_str!("../../../../sdk/js/src/browser.js");

/// A strong validator of [`MODULE`], computed at compile time (FNV-1a, 64 bits: the ETag only
/// has to change when the file does, it is not a security boundary).
const MODULE_ETAG: &str = {
    const fn fnv1a(bytes: &[u8]) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut i = 0;
        while i < bytes.len() {
            hash ^= bytes[i] as u64;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
            i += 1;
        }
        hash
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    const fn etag(hash: u64) -> [u8; 18] {
        let mut out = [b'"'; 18];
        let mut i = 0;
        while i < 16 {
            out[1 + i] = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
            i += 1;
        }
        out
    }
    const BYTES: [u8; 18] = etag(fnv1a(MODULE.as_bytes()));
    match std::str::from_utf8(&BYTES) {
        Ok(s) => s,
        Err(_) => "\"0\"",
    }
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    let preflight = || web::method(actix_web::http::Method::OPTIONS).to(preflight);
    let cors = || actix_web::middleware::from_fn(cors_on_errors);
    cfg.service(
        web::resource("/v1/sdk/latchkey.js")
            .route(web::get().to(module))
            .route(web::head().to(module)),
    )
    .service(web::resource("/v1/sdk/me").wrap(cors()).route(web::get().to(me)).route(preflight()))
    .service(
        web::resource("/v1/sdk/active-organization")
            .wrap(cors())
            .route(web::post().to(set_active_organization))
            .route(preflight()),
    )
    .service(
        web::resource("/v1/sdk/sign-out")
            .wrap(cors())
            .route(web::post().to(sign_out))
            .route(preflight()),
    );
}

/// `GET /v1/sdk/latchkey.js`. Module scripts load in CORS mode, without credentials, so any
/// origin may read it (`*`); it holds no secret.
async fn module(req: HttpRequest) -> HttpResponse {
    let fresh = crate::extract::if_none_match(&req, MODULE_ETAG);
    let mut res = if fresh { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    res.insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
        .insert_header((header::ETAG, MODULE_ETAG))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .insert_header(("Cross-Origin-Resource-Policy", "cross-origin"));
    if fresh {
        return res.finish();
    }
    res.content_type("text/javascript; charset=utf-8").body(MODULE)
}

/// Grants CORS with credentials to `origin` (an allowed one).
fn allow(res: &mut HttpResponse, origin: &str) {
    allow_headers(res.headers_mut(), origin);
}

fn allow_headers(h: &mut actix_web::http::header::HeaderMap, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
}

/// The allowed origin of a cross-origin request; `None` for requests without `Origin`
/// (same-origin GETs, non-browser callers), which need no CORS headers.
fn cors_origin(req: &HttpRequest, state: &AppState) -> Result<Option<String>, ApiError> {
    if req.headers().contains_key(header::ORIGIN) {
        csrf::api_origin(req, state).map(Some)
    } else {
        Ok(None)
    }
}

fn json_for(origin: Option<&str>, status: StatusCode, body: &serde_json::Value) -> HttpResponse {
    let mut res =
        HttpResponse::build(status).insert_header((header::CACHE_CONTROL, "no-store")).json(body);
    if let Some(origin) = origin {
        allow(&mut res, origin);
    }
    res
}

/// CORS preflight of the routes above, for allowed origins only.
async fn preflight(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let origin = csrf::api_origin(&req, &state)?;
    let mut res = HttpResponse::NoContent()
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, "content-type, x-latchkey-csrf"))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
        .finish();
    allow(&mut res, &origin);
    Ok(res)
}

/// `GET /v1/sdk/me`: `GET /v1/me` (the user, memberships with organisation names, the active
/// organisation) readable by allowed origins. Reading needs no CSRF check, but a browser
/// request from an origin that is not allowed is refused outright.
async fn me(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let origin = cors_origin(&req, &state)?;
    let me = super::session_token::me_of(&req, &state).await?;
    let body = serde_json::to_value(me).map_err(|_| ApiError::internal())?;
    Ok(json_for(origin.as_deref(), StatusCode::OK, &body))
}

#[derive(Deserialize)]
pub struct ActiveOrganization {
    org_id: Option<String>,
}

/// `POST /v1/sdk/active-organization`: as `POST /v1/session/active-organization` (the next
/// session token carries the organisation's claims), for allowed origins.
async fn set_active_organization(
    req: HttpRequest,
    state: web::Data<AppState>,
    api: ApiSession,
    body: web::Json<ActiveOrganization>,
) -> Result<HttpResponse, ApiError> {
    let client = support::client_info(&req);
    let actor = Actor::user(&api.session.user_id, client.ip, client.user_agent);
    let org_id = body.org_id.as_deref();
    state.core.sessions.set_active_org(&api.session.session_id, org_id, &actor).await?;
    let body = match org_id {
        Some(org_id) => {
            let reader = Actor::user(&api.session.user_id, None, None);
            let o = state.core.orgs.view(org_id, &reader).await?;
            json!({ "org_id": o.organisation.id, "org_role": o.role, "org_slug": o.organisation.slug })
        }
        None => json!({ "org_id": null, "org_role": null, "org_slug": null }),
    };
    let origin = cors_origin(&req, &state)?;
    Ok(json_for(origin.as_deref(), StatusCode::OK, &body))
}

/// `POST /v1/sdk/sign-out`: ends the session in the cookie (if any) and clears the cookie.
/// Answers `{"logout_url": …}`: where the browser must go next when the session came from a
/// SAML IdP with Single Logout (as the hosted sign-out page would send it), else null.
async fn sign_out(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let origin = csrf::api_origin(&req, &state)?;
    let (logout_url, binding_cookie) = match support::end_current_session(&req, &state).await? {
        Some((url, binding)) => (Some(url), Some(binding)),
        None => (None, None),
    };
    let cross_origin = req.headers().contains_key(header::ORIGIN).then_some(origin.as_str());
    let mut res = json_for(cross_origin, StatusCode::OK, &json!({ "logout_url": logout_url }));
    res.add_cookie(&support::clear_session_cookie(&state)).map_err(|_| ApiError::internal())?;
    if let Some(c) = binding_cookie {
        res.add_cookie(&c).map_err(|_| ApiError::internal())?;
    }
    Ok(res)
}

/// Wraps the session-token routes and the routes above: their error answers (401 once the
/// session is gone) carry the same CORS headers as their successes for allowed origins, so that
/// a page on another origin can tell "signed out" from a network failure. Disallowed origins
/// still get none.
pub async fn cors_on_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    // The allowed origin, if any (the handler itself logs and refuses the others).
    let origin = req.app_data::<web::Data<AppState>>().and_then(|state| {
        let value = req.headers().get(header::ORIGIN)?.to_str().ok()?;
        let origin = latchkey_core::infra::config::normalize_origin(value)?;
        state.allowed_origins.contains(&origin).then_some(origin)
    });
    let mut res = next.call(req).await?;
    if let Some(origin) = origin {
        let h = res.headers_mut();
        if !h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
            allow_headers(h, &origin);
        }
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_etag_is_a_quoted_hex_digest() {
        assert_eq!(MODULE_ETAG.len(), 18);
        assert!(MODULE_ETAG.starts_with('"') && MODULE_ETAG.ends_with('"'));
        assert!(MODULE_ETAG[1..17].bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
