//! Cross-site request forgery defences for cookie-authenticated endpoints.
//!
//! JSON APIs: the request must carry an `Origin` we allow, or (for non-browser callers, which
//! send no `Origin`) the custom `X-Latchkey-CSRF` header, which a cross-site form cannot set.

use actix_web::{HttpRequest, http::header};

use crate::{ApiError, AppState};

pub const CSRF_HEADER: &str = "x-latchkey-csrf";

/// The caller's origin if we accept it (it becomes a token's `azp`).
pub fn api_origin(req: &HttpRequest, state: &AppState) -> Result<String, ApiError> {
    match req.headers().get(header::ORIGIN) {
        Some(value) => {
            let origin = value
                .to_str()
                .ok()
                .and_then(latchkey_core::infra::config::normalize_origin)
                .ok_or_else(|| ApiError::forbidden("origin not allowed"))?;
            if state.allowed_origins.contains(&origin) {
                Ok(origin)
            } else {
                tracing::warn!(%origin, path = req.path(), "request from a disallowed origin");
                Err(ApiError::forbidden("origin not allowed"))
            }
        }
        None if req.headers().contains_key(CSRF_HEADER) => Ok(state.public_origin.clone()),
        None => Err(ApiError::forbidden(format!("an Origin or {CSRF_HEADER} header is required"))),
    }
}
