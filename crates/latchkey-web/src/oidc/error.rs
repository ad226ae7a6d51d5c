//! The one place where OAuth / OpenID Connect failures become HTTP responses: RFC 6749 JSON
//! errors (with `Cache-Control: no-store`), redirects back to a verified redirect URI (with
//! `state` and `iss`), RFC 6750 bearer challenges, and HTML pages when no redirect is safe.

use actix_web::{HttpResponse, ResponseError, http::StatusCode, http::header};
use askama::Template;
use latchkey_oidc::{ErrorCode, OAuthError};

use crate::pages::views::Message;

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// Token, introspection and revocation endpoints: JSON body.
    #[error("{0}")]
    Json(OAuthError),
    /// Userinfo: `WWW-Authenticate: Bearer error=…` (RFC 6750 §3).
    #[error("{0}")]
    Bearer(OAuthError),
    /// Authorization endpoint after the redirect URI is verified.
    #[error("{error}")]
    Redirect { redirect_uri: String, state: Option<String>, error: OAuthError, issuer: String },
    /// Authorization endpoint before the client and redirect URI are verified: never redirect.
    #[error("{0}")]
    Page(String),
}

impl From<latchkey_core::Error> for OidcError {
    fn from(e: latchkey_core::Error) -> Self {
        let code = match &e {
            latchkey_core::Error::Database(_) => ErrorCode::TemporarilyUnavailable,
            _ => ErrorCode::ServerError,
        };
        tracing::error!(error = %e, "OIDC request failed");
        Self::Json(OAuthError::new(code, "the request could not be completed"))
    }
}

impl ResponseError for OidcError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Json(e) | Self::Bearer(e) => {
                StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST)
            }
            Self::Redirect { .. } => StatusCode::SEE_OTHER,
            Self::Page(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        match self {
            Self::Json(e) => {
                let mut res = HttpResponse::build(status);
                res.insert_header((header::CACHE_CONTROL, "no-store"))
                    .insert_header((header::PRAGMA, "no-cache"));
                if e.code == ErrorCode::InvalidClient {
                    // RFC 6749 §5.2: 401 invalid_client carries a challenge.
                    res.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"latchkey\""));
                }
                res.json(e.to_json())
            }
            Self::Bearer(e) => {
                let challenge = format!(
                    "Bearer realm=\"latchkey\", error=\"{}\", error_description=\"{}\"",
                    e.code.as_str(),
                    e.to_json()["error_description"].as_str().unwrap_or_default()
                );
                HttpResponse::build(status)
                    .insert_header((header::CACHE_CONTROL, "no-store"))
                    .insert_header((header::WWW_AUTHENTICATE, challenge))
                    .json(e.to_json())
            }
            Self::Redirect { redirect_uri, state, error, issuer } => {
                match error.redirect_url(redirect_uri, state.as_deref(), issuer) {
                    Ok(location) => HttpResponse::SeeOther()
                        .insert_header((header::LOCATION, location))
                        .insert_header((header::CACHE_CONTROL, "no-store"))
                        .finish(),
                    Err(_) => page(StatusCode::BAD_REQUEST, "The redirect URI is not valid."),
                }
            }
            Self::Page(message) => page(status, message),
        }
    }
}

fn page(status: StatusCode, message: &str) -> HttpResponse {
    let title = "This sign-in request cannot be completed";
    let body = Message { title, message, link: None }.render().unwrap_or_else(|_| title.to_owned());
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ))
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .body(body)
}

pub fn json(e: OAuthError) -> OidcError {
    OidcError::Json(e)
}
