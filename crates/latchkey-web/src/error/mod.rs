//! The one place where failures become HTTP responses. A core error is classified once
//! ([`latchkey_core::ErrorClass`], with its public message) and logged here; the renderers only
//! format that classification: JSON for the API ([`api`]), HTML for pages ([`page`]), the
//! OAuth shapes for the OpenID Connect endpoints ([`oauth`]), and RFC 9457 problem details for
//! the admin API ([`problem`]).

pub mod api;
pub mod oauth;
pub mod page;
pub mod problem;

use actix_web::{
    HttpMessage, HttpRequest, HttpResponse, ResponseError,
    http::{StatusCode, header},
};
use latchkey_core::{Error as CoreError, ErrorClass};

pub use api::ApiError;

/// A classified failure: what kind of answer it gets, and what may be shown to the caller.
#[derive(Debug, Clone)]
pub struct Failure {
    pub class: ErrorClass,
    /// Safe to show (input, conflict and permission errors); None for everything else.
    pub message: Option<String>,
}

impl Failure {
    pub fn new(class: ErrorClass, message: Option<String>) -> Self {
        Self { class, message }
    }

    pub fn status(&self) -> StatusCode {
        status_of(self.class)
    }
}

/// Classifies a core error and logs what the caller is not told: server faults at error level,
/// refused sessions at info. No renderer logs again.
impl From<CoreError> for Failure {
    fn from(e: CoreError) -> Self {
        let class = e.class();
        match &e {
            _ if class.is_server_fault() => tracing::error!(error = %e, "request failed"),
            CoreError::Unauthenticated(reason) => tracing::info!(reason, "rejected session"),
            _ => tracing::debug!(error = %e, "request refused"),
        }
        Self { message: e.public_message(), class }
    }
}

pub fn status_of(class: ErrorClass) -> StatusCode {
    StatusCode::from_u16(class.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Unknown paths: an HTML page for a browser, the JSON error for programs.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    if prefers_html(&req) { page::not_found_page() } else { ApiError::not_found().error_response() }
}

/// True for a browser asking for a page: an `Accept` header that ranks HTML first, on a path
/// outside the program-facing prefixes (the JSON API, the OAuth endpoints, `.well-known`).
pub(crate) fn prefers_html(req: &HttpRequest) -> bool {
    const PROGRAMS: [&str; 4] = ["/v1/", "/api/", "/oauth2/", "/.well-known/"];
    if PROGRAMS.iter().any(|p| req.path().starts_with(p)) {
        return false;
    }
    req.get_header::<header::Accept>().is_some_and(|accept| {
        matches!(accept.preference().essence_str(), "text/html" | "application/xhtml+xml")
    })
}

#[cfg(test)]
mod tests {
    use actix_web::{ResponseError, body::MessageBody, http::header};
    use latchkey_core::Error as CoreError;

    use super::{
        api::ApiError,
        oauth::{BrowserError, OidcError},
        page::PageError,
    };

    fn body(res: actix_web::HttpResponse) -> (u16, String, String) {
        let status = res.status().as_u16();
        let kind = res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = res.into_body().try_into_bytes().unwrap_or_default();
        (status, kind, String::from_utf8_lossy(&bytes).into_owned())
    }

    fn invalid() -> CoreError {
        CoreError::invalid("name", "must be at most 256 characters")
    }

    #[test]
    fn one_core_error_gets_one_answer_on_every_kind_of_route() {
        let (status, kind, text) = body(ApiError::from(invalid()).error_response());
        assert_eq!((status, kind.as_str()), (400, "application/json"));
        assert!(text.contains("\"invalid_request\"") && text.contains("256 characters"), "{text}");

        let (status, kind, text) = body(PageError::from(invalid()).error_response());
        assert_eq!(status, 400);
        assert!(kind.starts_with("text/html"), "{kind}");
        assert!(text.contains("256 characters"), "{text}");

        let (status, kind, text) = body(OidcError::from(invalid()).error_response());
        assert_eq!((status, kind.as_str()), (400, "application/json"));
        assert!(text.contains("\"invalid_request\""), "{text}");

        let (status, kind, _) = body(BrowserError::from(invalid()).error_response());
        assert_eq!(status, 400);
        assert!(kind.starts_with("text/html"), "{kind}");
    }

    #[test]
    fn server_faults_stay_private_and_keep_their_class() {
        let db = || CoreError::Database(sea_orm_err("connection refused by 10.0.0.5"));
        for res in [
            ApiError::from(db()).error_response(),
            PageError::from(db()).error_response(),
            OidcError::from(db()).error_response(),
            BrowserError::from(db()).error_response(),
        ] {
            let (status, _, text) = body(res);
            assert_eq!(status, 503);
            assert!(!text.contains("10.0.0.5"), "{text}");
        }
        let (_, _, text) = body(OidcError::from(db()).error_response());
        assert!(text.contains("temporarily_unavailable"), "{text}");
        let (status, _, text) =
            body(OidcError::from(CoreError::Internal("boom".into())).error_response());
        assert_eq!(status, 500);
        assert!(text.contains("server_error") && !text.contains("boom"), "{text}");
    }

    fn sea_orm_err(m: &str) -> latchkey_core::infra::store::DbErr {
        latchkey_core::infra::store::DbErr::Custom(m.to_owned())
    }
}
