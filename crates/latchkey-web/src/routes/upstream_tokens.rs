//! A user's current Google or Microsoft access token for apps, from the vault
//! (`latchkey_core::enterprise::upstream::tokens`):
//!
//! - `GET /v1/me/oauth/{provider}/access-token`: the session in the cookie. The answer is a
//!   credential, so the request must pass the JSON API's CSRF rule ([`crate::csrf::api_origin`]:
//!   an allowed `Origin`, or `X-Latchkey-CSRF` from programs), and CORS is granted to allowed
//!   origins only.
//! - `GET /v1/users/{user_id}/oauth/{provider}/access-token`: a back end, with a Latchkey
//!   client_credentials access token carrying `users:oauth_tokens` (`Authorization: Bearer`);
//!   refusals are RFC 6750 challenges.
//!
//! Both answer `{"access_token", "expires_at", "scopes", "provider"}` with `no-store`, and 404
//! when the user has no connected account at the provider.

use actix_web::{
    HttpRequest, HttpResponse, ResponseError,
    http::header::{self, HeaderValue},
    web,
};
use latchkey_core::{
    Error as CoreError, ErrorClass, enterprise::upstream::UpstreamAccessToken,
    identity::method::Upstream, infra::audit::Actor,
};
use latchkey_oidc::{ErrorCode, OAuthError, SCOPE_USERS_OAUTH_TOKENS};
use serde_json::json;

use crate::{
    ApiError, AppState, csrf,
    error::{Failure, oauth::OidcError},
    pages::support::client_info,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/me/oauth/{provider}/access-token")
            .route(web::get().to(for_session))
            .route(web::method(actix_web::http::Method::OPTIONS).to(preflight)),
    )
    .service(
        web::resource("/v1/users/{user_id}/oauth/{provider}/access-token")
            .route(web::get().to(for_client)),
    );
}

fn no_connected_account() -> ApiError {
    ApiError(Failure::new(
        ErrorClass::NotFound,
        Some("the user has no connected account at this provider".into()),
    ))
}

fn provider_of(name: &str) -> Result<Upstream, ApiError> {
    Upstream::parse(name).map_err(|_| ApiError(Failure::new(ErrorClass::NotFound, None)))
}

fn answer(token: &UpstreamAccessToken) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(json!({
            "access_token": token.access_token.as_str(),
            "expires_at": token.expires_at,
            "scopes": token.scopes,
            "provider": token.provider.as_str(),
        }))
}

/// Counts the outcome in `latchkey_upstream_access_tokens_total`.
fn count(state: &AppState, got: &Result<UpstreamAccessToken, CoreError>) {
    let outcome = match got {
        Ok(_) => "issued",
        Err(CoreError::NotFound(_) | CoreError::Unauthenticated(_)) => "not_connected",
        Err(CoreError::Unavailable(_)) => "unavailable",
        Err(_) => "error",
    };
    state.metrics.upstream_access_token(outcome);
}

fn cors_headers(res: &mut HttpResponse, origin: &str) {
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
}

/// `GET /v1/me/oauth/{provider}/access-token`.
async fn for_session(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let origin = csrf::api_origin(&req, &state)?;
    let Some(cookie) = req.cookie(state.cookie_name) else {
        return Err(ApiError::unauthenticated());
    };
    let ctx = state.core.session_tokens.authenticate(cookie.value()).await?;
    let provider = provider_of(&path)?;
    let client = client_info(&req);
    let actor = Actor::user(&ctx.user_id, client.ip, client.user_agent);
    let got = state.core.upstream.access_token(&ctx.user_id, provider, &actor).await;
    count(&state, &got);
    let token = match got {
        Ok(t) => t,
        Err(CoreError::NotFound(_)) => return Err(no_connected_account()),
        Err(e) => return Err(e.into()),
    };
    let mut res = answer(&token);
    if req.headers().contains_key(header::ORIGIN) {
        cors_headers(&mut res, &origin);
    }
    Ok(res)
}

/// CORS preflight for allowed origins only.
async fn preflight(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let origin = csrf::api_origin(&req, &state)?;
    let mut res = HttpResponse::NoContent()
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, csrf::CSRF_HEADER))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
        .finish();
    cors_headers(&mut res, &origin);
    Ok(res)
}

/// The `Authorization: Bearer` token, or the challenge for its absence (RFC 6750 §3.1).
fn bearer(req: &HttpRequest) -> Result<&str, OidcError> {
    crate::extract::bearer_token(req).ok_or_else(|| {
        OidcError::Bearer(OAuthError::new(ErrorCode::InvalidToken, "a bearer token is required"))
    })
}

/// `GET /v1/users/{user_id}/oauth/{provider}/access-token`.
async fn for_client(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let token = match bearer(&req) {
        Ok(t) => t,
        Err(e) => return e.error_response(),
    };
    let client_id = match state.core.oidc.authorize_client(token, SCOPE_USERS_OAUTH_TOKENS).await {
        Ok(c) => c,
        Err(f) => return OidcError::bearer(f).error_response(),
    };
    let (user_id, provider) = path.into_inner();
    let provider = match provider_of(&provider) {
        Ok(p) => p,
        Err(e) => return e.error_response(),
    };
    let client = client_info(&req);
    let actor = Actor::client(&client_id, client.ip, client.user_agent);
    let got = state.core.upstream.access_token(&user_id, provider, &actor).await;
    count(&state, &got);
    match got {
        Ok(t) => answer(&t),
        // Whether the user exists or not: the client learns only that there is no account.
        Err(CoreError::NotFound(_) | CoreError::Unauthenticated(_)) => {
            no_connected_account().error_response()
        }
        Err(e) => ApiError::from(e).error_response(),
    }
}
