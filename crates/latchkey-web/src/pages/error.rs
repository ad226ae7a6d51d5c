//! Page errors render as HTML pages, never as JSON.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use askama::Template;

use super::views::Message;

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("form expired")]
    Csrf,
    #[error("not found")]
    NotFound,
    #[error("too many requests")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("service unavailable")]
    Unavailable,
    #[error("internal error")]
    Internal,
}

impl From<latchkey_core::Error> for PageError {
    fn from(e: latchkey_core::Error) -> Self {
        match e {
            latchkey_core::Error::NotFound(_) => Self::NotFound,
            latchkey_core::Error::RateLimited { retry_after_secs } => {
                Self::TooManyRequests { retry_after_secs }
            }
            latchkey_core::Error::Database(db) => {
                tracing::error!(error = %db, "database error");
                Self::Unavailable
            }
            other => {
                tracing::error!(error = %other, "page failed");
                Self::Internal
            }
        }
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Csrf => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (title, message) = match self {
            Self::Csrf => (
                "This form has expired",
                "For your security the form could not be accepted. Go back, reload the page and try again.",
            ),
            Self::NotFound => ("Page not found", "There is nothing here."),
            Self::TooManyRequests { .. } => {
                ("Too many requests", "Please wait a few minutes before trying again.")
            }
            Self::Unavailable => ("Temporarily unavailable", "Please try again in a moment."),
            Self::Internal => (
                "Something went wrong",
                "Please try again. If it keeps happening, contact your administrator.",
            ),
        };
        let body = Message { title, message, link: Some(("/sign-in", "Go to sign in")) }
            .render()
            .unwrap_or_else(|_| title.to_owned());
        let mut res = HttpResponse::build(self.status_code());
        if let Self::TooManyRequests { retry_after_secs } = self {
            res.insert_header(("Retry-After", retry_after_secs.to_string()));
        }
        res
            .content_type("text/html; charset=utf-8")
            .insert_header(("Cache-Control", "no-store"))
            .insert_header(("Content-Security-Policy", "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"))
            .insert_header(("Referrer-Policy", "same-origin"))
            .body(body)
    }
}
