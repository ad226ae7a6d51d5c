//! Admin API errors as RFC 9457 problem details (`application/problem+json`): `type` (a stable
//! URI naming the kind of problem), `title`, `status`, `detail`, and `instance` (the request
//! ID, so an operator can find the log line). Internal details are logged (see
//! [`super::Failure`]), never sent. A 401 also carries `WWW-Authenticate: Bearer`.

use actix_web::{
    HttpResponse, ResponseError,
    error::{JsonPayloadError, PathError, QueryPayloadError},
    http::{StatusCode, header},
};
use latchkey_core::{Error as CoreError, ErrorClass};
use serde_json::json;

use super::Failure;

pub const CONTENT_TYPE: &str = "application/problem+json";
/// The base of every problem `type` (documentation anchors; never fetched by clients).
const TYPE_BASE: &str = "https://latchkey.dev/problems/";

#[derive(Debug, thiserror::Error)]
#[error("{}", self.detail())]
pub struct Problem {
    pub failure: Failure,
    /// The request ID, echoed as `instance`.
    pub request_id: Option<String>,
}

impl Problem {
    pub fn new(class: ErrorClass, detail: Option<String>) -> Self {
        Self { failure: Failure::new(class, detail), request_id: None }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(ErrorClass::InvalidInput, Some(detail.into()))
    }

    pub fn unauthenticated() -> Self {
        Self::new(ErrorClass::Unauthenticated, None)
    }

    pub fn not_found() -> Self {
        Self::new(ErrorClass::NotFound, None)
    }

    /// The problem with the request's ID as its `instance`.
    pub fn for_request(mut self, req: &actix_web::HttpRequest) -> Self {
        use actix_web::HttpMessage as _;
        self.request_id =
            req.extensions().get::<crate::http_middleware::RequestId>().map(|r| r.0.clone());
        self
    }

    /// The problem `type` suffix and `title` of a class.
    fn kind(&self) -> (&'static str, &'static str) {
        match self.failure.class {
            ErrorClass::InvalidInput => ("invalid-request", "The request is not valid"),
            ErrorClass::Unauthenticated => {
                ("unauthenticated", "A valid API key or admin token is required")
            }
            ErrorClass::Forbidden => ("forbidden", "This credential may not do this"),
            ErrorClass::NotFound => ("not-found", "No such resource"),
            ErrorClass::Conflict => ("conflict", "The request conflicts with the current state"),
            ErrorClass::PreconditionFailed => {
                ("precondition-failed", "The resource changed since it was read")
            }
            ErrorClass::RateLimited { .. } => ("rate-limited", "Too many requests"),
            ErrorClass::Unavailable => ("unavailable", "The service is temporarily unavailable"),
            ErrorClass::Internal => ("internal", "An internal error occurred"),
        }
    }

    fn detail(&self) -> String {
        self.failure.message.clone().unwrap_or_else(|| self.kind().1.to_owned())
    }
}

impl From<CoreError> for Problem {
    fn from(e: CoreError) -> Self {
        Self { failure: e.into(), request_id: None }
    }
}

impl From<QueryPayloadError> for Problem {
    fn from(e: QueryPayloadError) -> Self {
        Self::bad_request(format!("query: {e}"))
    }
}

impl From<PathError> for Problem {
    fn from(e: PathError) -> Self {
        Self::bad_request(format!("path: {e}"))
    }
}

impl From<JsonPayloadError> for Problem {
    fn from(e: JsonPayloadError) -> Self {
        Self::bad_request(format!("body: {e}"))
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        self.failure.status()
    }

    fn error_response(&self) -> HttpResponse {
        let (kind, title) = self.kind();
        let mut body = json!({
            "type": format!("{TYPE_BASE}{kind}"),
            "title": title,
            "status": self.status_code().as_u16(),
            "detail": self.detail(),
        });
        if let Some(id) = &self.request_id {
            body["instance"] = json!(format!("urn:latchkey:request:{id}"));
        }
        let mut res = HttpResponse::build(self.status_code());
        match self.failure.class {
            ErrorClass::RateLimited { retry_after_secs } => {
                res.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            ErrorClass::Unauthenticated => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"latchkey-admin\""));
            }
            _ => {}
        }
        res.insert_header((header::CACHE_CONTROL, "no-store"))
            .content_type(CONTENT_TYPE)
            .body(body.to_string())
    }
}
