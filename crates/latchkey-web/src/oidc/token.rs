//! The endpoints programs call: token, userinfo, introspection and revocation.

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use latchkey_core::oauth::provider::Issued;
use latchkey_oidc::{ErrorCode, OAuthError, token::TokenResponse};

use super::{Res, client_request, json_ok};
use crate::{AppState, error::oauth::OidcError};

pub(super) async fn token_endpoint(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Res {
    let (params, creds) = client_request(&req, &body)?;
    let issued = state.core.oidc.token(&creds, &params).await?;
    Ok(token_response(&issued))
}

/// RFC 6749 §5.1, from a struct: this is the hottest response Latchkey writes.
fn token_response(i: &Issued) -> HttpResponse {
    json_ok(&TokenResponse {
        access_token: &i.access_token,
        token_type: "Bearer",
        expires_in: i.expires_in,
        scope: i.scopes.join(" "),
        id_token: i.id_token.as_deref(),
        refresh_token: i.refresh_token.as_deref(),
    })
}

/// OIDC Core §5.3 with the access token in the `Authorization: Bearer` header (RFC 6750 §2.1);
/// refusals are Bearer challenges.
pub(super) async fn userinfo(req: HttpRequest, state: web::Data<AppState>) -> Res {
    let token = crate::extract::bearer_token(&req).ok_or_else(|| {
        OidcError::Bearer(OAuthError::new(ErrorCode::InvalidToken, "the access token is invalid"))
    })?;
    let claims = state.core.oidc.userinfo(token).await.map_err(OidcError::bearer)?;
    Ok(json_ok(&claims))
}

pub(super) async fn introspect(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Res {
    let (params, creds) = client_request(&req, &body)?;
    Ok(json_ok(&state.core.oidc.introspect(&creds, &params).await?))
}

/// RFC 7009: 200 for every token the client may name, known or not.
pub(super) async fn revoke(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> Res {
    let (params, creds) = client_request(&req, &body)?;
    state.core.oidc.revoke(&creds, &params).await?;
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).finish())
}
