//! `POST /v1/session/token`: a short-lived JWT for the session in the cookie.
//!
//! CSRF: the request must carry an `Origin` we allow, or (for non-browser callers, which send no
//! `Origin`) the custom `X-Latchkey-CSRF` header, which a cross-site form cannot set.

use actix_web::{
    HttpRequest, HttpResponse,
    http::header::{self, HeaderValue},
    web,
};
use serde_json::json;

use crate::{ApiError, AppState};

pub const CSRF_HEADER: &str = "x-latchkey-csrf";

/// The caller's origin if we accept it: the `azp` of the token.
fn requesting_origin(req: &HttpRequest, state: &AppState) -> Result<String, ApiError> {
    match req.headers().get(header::ORIGIN) {
        Some(value) => {
            let origin = value
                .to_str()
                .ok()
                .and_then(latchkey_core::config::normalize_origin)
                .ok_or_else(|| ApiError::Forbidden("origin not allowed".into()))?;
            if state.allowed_origins.contains(&origin) {
                Ok(origin)
            } else {
                tracing::warn!(%origin, "session token requested from a disallowed origin");
                Err(ApiError::Forbidden("origin not allowed".into()))
            }
        }
        None if req.headers().contains_key(CSRF_HEADER) => Ok(state.public_origin.clone()),
        None => Err(ApiError::Forbidden(format!("an Origin or {CSRF_HEADER} header is required"))),
    }
}

fn cors_headers(res: &mut HttpResponse, origin: &str) {
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
}

pub async fn mint(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let azp = requesting_origin(&req, &state)?;
    let Some(cookie) = req.cookie(state.cookie_name) else {
        state.metrics.token_rejected();
        return Err(ApiError::Unauthenticated);
    };
    let minted = match state.core.session_tokens.mint(cookie.value(), &azp).await {
        Ok(m) => m,
        Err(e) => {
            if matches!(e, latchkey_core::Error::Unauthenticated(_)) {
                state.metrics.token_rejected();
            }
            return Err(e.into());
        }
    };
    state.metrics.token_minted(minted.alg.as_str());
    let mut res = HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "jwt": minted.jwt, "expires_at": minted.expires_at }));
    if req.headers().contains_key(header::ORIGIN) {
        cors_headers(&mut res, &azp);
    }
    Ok(res)
}

/// CORS preflight for allowed origins only.
pub async fn preflight(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let origin = requesting_origin(&req, &state)?;
    let mut res = HttpResponse::NoContent()
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "POST"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, "content-type, x-latchkey-csrf"))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
        .finish();
    cors_headers(&mut res, &origin);
    Ok(res)
}
