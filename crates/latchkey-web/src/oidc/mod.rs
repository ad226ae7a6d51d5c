//! OpenID Connect provider endpoints. Each handler parses the HTTP request (form or query into
//! [`Params`], the client's credentials, the session cookie), calls one method of
//! `latchkey_core::oauth::OidcService`, and renders what it returns; every failure is rendered
//! by `crate::error::oauth`. The protocol rules are `latchkey-oidc`'s, the decisions the
//! core's.

#![deny(clippy::too_many_lines)]

mod authorize;
pub(crate) use authorize::navigate_page;
mod token;

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use latchkey_oidc::{
    OAuthError,
    params::Params,
    token::{ClientCredentials, client_credentials},
};

use crate::{AppState, error::oauth::OidcError};

/// Endpoints called by programs answer failures as OAuth JSON.
type Res = Result<HttpResponse, OidcError>;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/.well-known/openid-configuration").route(web::get().to(discovery)))
        .service(
            web::resource("/oauth2/authorize")
                .route(web::get().to(authorize::authorize_get))
                .route(web::post().to(authorize::authorize_post)),
        )
        .service(
            web::resource("/oauth2/authorize/resume")
                .route(web::get().to(authorize::authorize_resume)),
        )
        .service(
            web::resource("/oauth2/consent")
                .route(web::post().to(authorize::consent))
                .default_service(web::to(crate::pages::post_only_page)),
        )
        .service(
            web::resource("/oauth2/select-account")
                .route(web::post().to(authorize::select_account))
                .default_service(web::to(crate::pages::post_only_page)),
        )
        .service(web::resource("/oauth2/token").route(web::post().to(token::token_endpoint)))
        .service(
            web::resource("/oauth2/userinfo")
                .route(web::get().to(token::userinfo))
                .route(web::post().to(token::userinfo)),
        )
        .service(web::resource("/oauth2/introspect").route(web::post().to(token::introspect)))
        .service(web::resource("/oauth2/revoke").route(web::post().to(token::revoke)))
        .service(
            web::resource("/oauth2/logout")
                .route(web::get().to(authorize::logout_get))
                .route(web::post().to(authorize::logout_post)),
        );
}

/// The document is the same bytes until the store changes: answered from memory, with an
/// entity tag so that a client holding it gets `304 Not Modified`.
async fn discovery(req: HttpRequest, state: web::Data<AppState>) -> Res {
    let document = state.core.oidc.discovery_bytes().await?;
    let cache = (header::CACHE_CONTROL, "public, max-age=300");
    let etag = (header::ETAG, document.etag.as_str());
    let matches = crate::extract::if_none_match(&req, &document.etag);
    if matches {
        return Ok(HttpResponse::NotModified().insert_header(cache).insert_header(etag).finish());
    }
    Ok(HttpResponse::Ok()
        .insert_header(cache)
        .insert_header(etag)
        .content_type("application/json")
        .body(web::Bytes::copy_from_slice(&document.body)))
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

/// A client-authenticated request: its form and the credentials it presents (the
/// `Authorization` header, or the form's `client_id`, `client_secret`, `client_assertion`).
fn client_request(
    req: &HttpRequest,
    body: &web::Bytes,
) -> Result<(Params, ClientCredentials), OAuthError> {
    let params = form_params(req, body)?;
    // A header that is not visible ASCII cannot be valid credentials: refused as malformed.
    let authorization =
        req.headers().get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("\u{0}"));
    let creds = client_credentials(authorization, &params)?;
    Ok((params, creds))
}

fn json_ok(body: &impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(body)
}
