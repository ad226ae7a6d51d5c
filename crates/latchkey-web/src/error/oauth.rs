//! How OAuth / OpenID Connect failures are answered. Endpoints called by programs (token,
//! introspection, revocation, userinfo) return [`OidcError`]: RFC 6749 JSON errors with
//! `Cache-Control: no-store`, or RFC 6750 bearer challenges. Endpoints a browser visits
//! (authorization, consent, account chooser, logout) return [`BrowserError`]: a redirect back to
//! a verified redirect URI (with `state` and `iss`), or an HTML page when no redirect is safe.
//! A core error becomes JSON on the first kind and a page on the second, never the other way.

use actix_web::{
    HttpResponse, ResponseError,
    http::{StatusCode, header},
};
use latchkey_core::{
    Error as CoreError, ErrorClass,
    oauth::provider::{BrowserFailure, OAuthFailure},
};
use latchkey_oidc::{ErrorCode, OAuthError};

use super::{Failure, page::PageError};

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// A protocol error: JSON body, status from its code.
    #[error("{0}")]
    Json(OAuthError),
    /// Userinfo: `WWW-Authenticate: Bearer error=…` (RFC 6750 §3).
    #[error("{0}")]
    Bearer(OAuthError),
    /// A core failure: JSON body, status and code from its class.
    #[error("{0:?}")]
    Failed(Failure),
}

impl From<CoreError> for OidcError {
    fn from(e: CoreError) -> Self {
        Self::Failed(e.into())
    }
}

impl From<OAuthError> for OidcError {
    fn from(e: OAuthError) -> Self {
        Self::Json(e)
    }
}

/// A refusal as RFC 6749 JSON, a failure by its class.
impl From<OAuthFailure> for OidcError {
    fn from(f: OAuthFailure) -> Self {
        match f {
            OAuthFailure::Refused(e) => Self::Json(e),
            OAuthFailure::Failed(e) => e.into(),
        }
    }
}

impl OidcError {
    /// For resource endpoints (userinfo): a refusal as an RFC 6750 Bearer challenge.
    pub fn bearer(f: OAuthFailure) -> Self {
        match f {
            OAuthFailure::Refused(e) => Self::Bearer(e),
            OAuthFailure::Failed(e) => e.into(),
        }
    }
}

/// The OAuth error code a class of failure carries (RFC 6749 §5.2).
fn code_of(class: ErrorClass) -> ErrorCode {
    match class {
        ErrorClass::InvalidInput
        | ErrorClass::NotFound
        | ErrorClass::Conflict
        | ErrorClass::PreconditionFailed => ErrorCode::InvalidRequest,
        ErrorClass::Unauthenticated | ErrorClass::Forbidden => ErrorCode::AccessDenied,
        ErrorClass::RateLimited { .. } | ErrorClass::Unavailable => {
            ErrorCode::TemporarilyUnavailable
        }
        ErrorClass::Internal => ErrorCode::ServerError,
    }
}

impl ResponseError for OidcError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Json(e) | Self::Bearer(e) => {
                StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST)
            }
            Self::Failed(f) => f.status(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        match self {
            Self::Json(e) => json_response(status, e),
            Self::Failed(f) => {
                let description = f
                    .message
                    .clone()
                    .unwrap_or_else(|| "the request could not be completed".into());
                let mut res =
                    json_response(status, &OAuthError::new(code_of(f.class), description));
                if let ErrorClass::RateLimited { retry_after_secs } = f.class
                    && let Ok(v) = header::HeaderValue::from_str(&retry_after_secs.to_string())
                {
                    res.headers_mut().insert(header::RETRY_AFTER, v);
                }
                res
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
        }
    }
}

fn json_response(status: StatusCode, e: &OAuthError) -> HttpResponse {
    let mut res = HttpResponse::build(status);
    res.insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"));
    if e.code == ErrorCode::InvalidClient {
        // RFC 6749 §5.2: 401 invalid_client carries a challenge.
        res.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"latchkey\""));
    }
    res.json(e.to_json())
}

#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// After the redirect URI is verified: back to the client with the error.
    #[error("{error}")]
    Redirect { redirect_uri: String, state: Option<String>, error: OAuthError, issuer: String },
    /// Before the client and redirect URI are verified: never redirect, explain on a page.
    #[error("{0}")]
    Invalid(String),
    /// A core failure or a refused form, as an HTML page.
    #[error("{0}")]
    Page(PageError),
}

impl From<CoreError> for BrowserError {
    fn from(e: CoreError) -> Self {
        Self::Page(e.into())
    }
}

impl From<BrowserFailure> for BrowserError {
    fn from(f: BrowserFailure) -> Self {
        match f {
            BrowserFailure::Page(message) => Self::Invalid(message),
            BrowserFailure::Redirect { redirect_uri, state, error, issuer } => {
                Self::Redirect { redirect_uri, state, error, issuer }
            }
            BrowserFailure::Failed(e) => e.into(),
        }
    }
}

impl From<PageError> for BrowserError {
    fn from(e: PageError) -> Self {
        Self::Page(e)
    }
}

impl ResponseError for BrowserError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Redirect { .. } => StatusCode::SEE_OTHER,
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::Page(p) => p.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Redirect { redirect_uri, state, error, issuer } => {
                match error.redirect_url(redirect_uri, state.as_deref(), issuer) {
                    Ok(location) => HttpResponse::SeeOther()
                        .insert_header((header::LOCATION, location))
                        .insert_header((header::CACHE_CONTROL, "no-store"))
                        .finish(),
                    Err(_) => invalid_request_page("The redirect URI is not valid."),
                }
            }
            Self::Invalid(message) => invalid_request_page(message),
            Self::Page(p) => p.error_response(),
        }
    }
}

fn invalid_request_page(message: &str) -> HttpResponse {
    super::page::message_page(
        StatusCode::BAD_REQUEST,
        "This sign-in request cannot be completed",
        message,
        None,
    )
}
