//! The one place where failures become HTTP responses. API errors use the OAuth 2.0 JSON shape
//! (`error`, `error_description`); internal details are logged, never sent.

use actix_web::{
    HttpRequest, HttpResponse, ResponseError,
    error::{JsonPayloadError, PathError, QueryPayloadError, UrlencodedError},
    http::{StatusCode, header},
};
use latchkey_core::Error as CoreError;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{description}")]
    BadRequest { code: &'static str, description: String },
    #[error("unauthenticated")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64 },
    #[error("{0}")]
    Conflict(String),
    #[error("service unavailable")]
    Unavailable,
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn bad_request(description: impl Into<String>) -> Self {
        Self::BadRequest { code: "invalid_request", description: description.into() }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. } => code,
            Self::Unauthenticated => "invalid_session",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound => "not_found",
            Self::PayloadTooLarge => "invalid_request",
            Self::RateLimited { .. } => "too_many_requests",
            Self::Conflict(_) => "conflict",
            Self::Unavailable => "temporarily_unavailable",
            Self::Internal => "server_error",
        }
    }

    fn description(&self) -> String {
        match self {
            Self::Unauthenticated => "The session is missing, expired or revoked.".into(),
            Self::NotFound => "No such resource.".into(),
            Self::Unavailable => "The service is temporarily unavailable.".into(),
            Self::Internal => "An internal error occurred.".into(),
            other => other.to_string(),
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::NotFound(_) => Self::NotFound,
            CoreError::Conflict(m) => Self::Conflict(m),
            CoreError::Forbidden(m) => Self::Forbidden(m),
            CoreError::Invalid { .. } => Self::bad_request(e.to_string()),
            CoreError::RateLimited { retry_after_secs } => Self::RateLimited { retry_after_secs },
            CoreError::Unauthenticated(reason) => {
                tracing::info!(reason, "rejected session");
                Self::Unauthenticated
            }
            CoreError::Database(db) => {
                tracing::error!(error = %db, "database error");
                Self::Unavailable
            }
            other => {
                tracing::error!(error = %other, "internal error");
                Self::Internal
            }
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if let Self::RateLimited { retry_after_secs } = self {
            res.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        res.insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({ "error": self.code(), "error_description": self.description() }))
    }
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

pub fn json_error(e: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    let described = match &e {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            "request body too large".to_owned()
        }
        JsonPayloadError::ContentType => "expected Content-Type: application/json".to_owned(),
        other => format!("malformed JSON body: {other}"),
    };
    ApiError::bad_request(described).into()
}

pub fn form_error(e: UrlencodedError, _: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(format!("malformed form body: {e}")).into()
}

pub fn query_error(e: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(format!("malformed query string: {e}")).into()
}

pub fn path_error(e: PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(format!("malformed path: {e}")).into()
}
