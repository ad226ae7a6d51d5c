//! JSON API errors, in the OAuth 2.0 shape (`error`, `error_description`) with
//! `Cache-Control: no-store`. Internal details are logged (see [`super::Failure`]), never sent.

use actix_web::{
    HttpRequest, HttpResponse, ResponseError,
    error::{JsonPayloadError, PathError, QueryPayloadError, UrlencodedError},
    http::{StatusCode, header},
};
use latchkey_core::{Error as CoreError, ErrorClass};
use serde_json::json;

use super::Failure;

#[derive(Debug, thiserror::Error)]
#[error("{}", self.description())]
pub struct ApiError(pub Failure);

impl ApiError {
    pub fn bad_request(description: impl Into<String>) -> Self {
        Self(Failure::new(ErrorClass::InvalidInput, Some(description.into())))
    }

    pub fn forbidden(description: impl Into<String>) -> Self {
        Self(Failure::new(ErrorClass::Forbidden, Some(description.into())))
    }

    pub fn unauthenticated() -> Self {
        Self(Failure::new(ErrorClass::Unauthenticated, None))
    }

    pub fn not_found() -> Self {
        Self(Failure::new(ErrorClass::NotFound, None))
    }

    pub fn internal() -> Self {
        Self(Failure::new(ErrorClass::Internal, None))
    }

    fn code(&self) -> &'static str {
        match self.0.class {
            ErrorClass::InvalidInput => "invalid_request",
            ErrorClass::Unauthenticated => "invalid_session",
            ErrorClass::Forbidden => "forbidden",
            ErrorClass::NotFound => "not_found",
            ErrorClass::Conflict => "conflict",
            ErrorClass::PreconditionFailed => "precondition_failed",
            ErrorClass::RateLimited { .. } => "too_many_requests",
            ErrorClass::Unavailable => "temporarily_unavailable",
            ErrorClass::Internal => "server_error",
        }
    }

    fn description(&self) -> String {
        if let Some(message) = &self.0.message {
            return message.clone();
        }
        match self.0.class {
            ErrorClass::InvalidInput => "The request is not valid.",
            ErrorClass::Unauthenticated => "The session is missing, expired or revoked.",
            ErrorClass::Forbidden => "This is not allowed.",
            ErrorClass::NotFound => "No such resource.",
            ErrorClass::Conflict => "The request conflicts with the current state.",
            ErrorClass::PreconditionFailed => "The resource changed since it was read.",
            ErrorClass::RateLimited { .. } => "Too many requests.",
            ErrorClass::Unavailable => "The service is temporarily unavailable.",
            ErrorClass::Internal => "An internal error occurred.",
        }
        .to_owned()
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        Self(e.into())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.0.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if let ErrorClass::RateLimited { retry_after_secs } = self.0.class {
            res.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        res.insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({ "error": self.code(), "error_description": self.description() }))
    }
}

/// 413 for a declared body over the limit (the `body_limit` middleware answers it before any
/// extractor runs).
pub fn payload_too_large() -> HttpResponse {
    HttpResponse::build(StatusCode::PAYLOAD_TOO_LARGE)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "error": "invalid_request", "error_description": "request body too large" }))
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

/// A form or query that does not parse: an HTML page for a browser (the hosted pages and the
/// console), the JSON error for programs.
fn malformed(req: &HttpRequest, what: &str, e: &dyn std::fmt::Display) -> actix_web::Error {
    if super::prefers_html(req) {
        let invalid = latchkey_core::Error::invalid("form", format!("could not be read ({what})"));
        super::page::PageError::from(invalid).into()
    } else {
        ApiError::bad_request(format!("malformed {what}: {e}")).into()
    }
}

pub fn form_error(e: UrlencodedError, req: &HttpRequest) -> actix_web::Error {
    malformed(req, "form body", &e)
}

pub fn query_error(e: QueryPayloadError, req: &HttpRequest) -> actix_web::Error {
    malformed(req, "query string", &e)
}

pub fn path_error(e: PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(format!("malformed path: {e}")).into()
}
