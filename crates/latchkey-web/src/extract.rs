//! Request extractors shared by handlers.

use std::{future::Future, pin::Pin};

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use latchkey_core::identity::session_tokens::SessionContext;

use crate::{ApiError, AppState, csrf};

/// A cookie-authenticated API caller: a live session plus a passed CSRF check (allowed
/// `Origin` or the custom header). Rejects with 403 (CSRF) or 401 (no live session).
pub struct ApiSession {
    pub session: SessionContext,
    /// The caller's origin as accepted by the CSRF check.
    pub origin: String,
}

impl FromRequest for ApiSession {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req.app_data::<web::Data<AppState>>().ok_or(ApiError::internal())?.clone();
            // Safe methods change nothing, so only unsafe ones need the CSRF check.
            let origin = if req.method().is_safe() {
                state.public_origin.clone()
            } else {
                csrf::api_origin(&req, &state)?
            };
            let secret = req.cookie(state.cookie_name).ok_or(ApiError::unauthenticated())?;
            let session = state.core.session_tokens.authenticate(secret.value()).await?;
            Ok(Self { session, origin })
        })
    }
}

/// The token of an `Authorization: Bearer …` header (RFC 6750 §2.1; the scheme is
/// case-insensitive), if there is a non-empty one.
pub fn bearer_token(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
}

/// True when the request's `If-None-Match` names `etag` (strong, or weak as `W/"…"`, RFC 9110
/// §13.1.2 compares weakly) or is `*`: the client holds the current representation.
pub fn if_none_match(req: &actix_web::HttpRequest, etag: &str) -> bool {
    req.headers()
        .get(actix_web::http::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == etag)
        })
}
