//! `POST /v1/session/token`: a short-lived JWT for the session in the cookie.
//!
//! CSRF: see [`crate::csrf::api_origin`].

use actix_web::{
    HttpRequest, HttpResponse,
    http::header::{self, HeaderValue},
    web,
};
use serde_json::json;

use crate::{ApiError, AppState, csrf};

fn cors_headers(res: &mut HttpResponse, origin: &str) {
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
}

pub async fn mint(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let azp = csrf::api_origin(&req, &state)?;
    let Some(cookie) = req.cookie(state.cookie_name) else {
        state.metrics.token_rejected();
        return Err(ApiError::unauthenticated());
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

/// `POST /v1/session/token/{template}`: a JWT rendered from a named template, under the same
/// cookie and CSRF rules as [`mint`]. The session is checked before the template is looked up,
/// so template names are not revealed to callers without a session.
pub async fn mint_template(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let azp = csrf::api_origin(&req, &state)?;
    let Some(cookie) = req.cookie(state.cookie_name) else {
        state.metrics.token_rejected();
        return Err(ApiError::unauthenticated());
    };
    let ctx = match state.core.session_tokens.authenticate(cookie.value()).await {
        Ok(c) => c,
        Err(e) => {
            if matches!(e, latchkey_core::Error::Unauthenticated(_)) {
                state.metrics.token_rejected();
            }
            return Err(e.into());
        }
    };
    let minted = state.core.jwt_templates.mint(&path.into_inner(), &ctx, &azp).await?;
    state.metrics.token_minted(&minted.alg);
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
    let origin = csrf::api_origin(&req, &state)?;
    let mut res = HttpResponse::NoContent()
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "POST"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, "content-type, x-latchkey-csrf"))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
        .finish();
    cors_headers(&mut res, &origin);
    Ok(res)
}

/// `GET /v1/me`: the signed-in user, memberships and how the session signed in; 401 without a
/// live session.
pub async fn me(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let me = me_of(&req, &state).await?;
    Ok(HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).json(me))
}

/// The user, memberships and active organisation of the session in the cookie (also served
/// cross-origin to the SDK, `routes::sdk`).
pub(super) async fn me_of(
    req: &HttpRequest,
    state: &AppState,
) -> Result<latchkey_core::sign_in::me::Me, ApiError> {
    let Some(cookie) = req.cookie(state.cookie_name) else {
        return Err(ApiError::unauthenticated());
    };
    let ctx = match state.core.session_tokens.authenticate(cookie.value()).await {
        Ok(ctx) => ctx,
        Err(latchkey_core::Error::Unauthenticated(_)) => return Err(ApiError::unauthenticated()),
        Err(e) => return Err(e.into()),
    };
    Ok(state.core.sign_in.me(&ctx).await?)
}
