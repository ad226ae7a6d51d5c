//! Page errors render as HTML pages, never as JSON.

use actix_web::{
    HttpResponse, ResponseError,
    http::{StatusCode, header},
};

use askama::Template;
use latchkey_core::{Error as CoreError, ErrorClass};

use super::Failure;
use crate::pages::views::Message;

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// The form's CSRF token or origin was refused.
    #[error("form expired")]
    Csrf,
    #[error("{0:?}")]
    Failed(Failure),
    /// Nobody is signed in: go to sign-in, coming back to this address.
    #[error("sign-in required")]
    SignIn { return_to: String },
    /// The action needs a recent sign-in: confirm the password, then come back here.
    #[error("recent sign-in required")]
    Reauthenticate { return_to: String },
}

impl PageError {
    pub fn not_found() -> Self {
        Self::Failed(Failure::new(ErrorClass::NotFound, None))
    }

    pub fn internal() -> Self {
        Self::Failed(Failure::new(ErrorClass::Internal, None))
    }
}

impl From<CoreError> for PageError {
    fn from(e: CoreError) -> Self {
        Self::Failed(e.into())
    }
}

impl From<Failure> for PageError {
    fn from(f: Failure) -> Self {
        Self::Failed(f)
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Csrf => StatusCode::FORBIDDEN,
            Self::Failed(f) => f.status(),
            Self::SignIn { .. } | Self::Reauthenticate { .. } => StatusCode::SEE_OTHER,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (title, message) = match self {
            Self::SignIn { return_to } => {
                return redirect("/sign-in", return_to);
            }
            Self::Reauthenticate { return_to } => {
                return redirect("/admin/reauthenticate", return_to);
            }
            Self::Csrf => (
                "This form has expired",
                "For your security the form could not be accepted. Go back, reload the page and try again.".to_owned(),
            ),
            Self::Failed(f) => describe(f),
        };
        let mut res =
            message_page(self.status_code(), title, &message, Some(("/sign-in", "Go to sign in")));
        if let Self::Failed(Failure { class: ErrorClass::RateLimited { retry_after_secs }, .. }) =
            self
            && let Ok(v) = header::HeaderValue::from_str(&retry_after_secs.to_string())
        {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res
    }
}

/// 303 to `page?return_to=…` (the return address is one of ours: a path we built).
fn redirect(page: &str, return_to: &str) -> HttpResponse {
    let query: String = url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, format!("{page}?return_to={query}")))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// Title and text of the page for a failure; only a public message is ever shown.
fn describe(f: &Failure) -> (&'static str, String) {
    let (title, fallback) = match f.class {
        ErrorClass::InvalidInput => {
            ("This request is not valid", "Go back and check what you entered.")
        }
        ErrorClass::Unauthenticated => {
            ("Please sign in", "Your session has ended. Sign in to continue.")
        }
        ErrorClass::Forbidden => ("Not allowed", "You do not have access to this."),
        ErrorClass::NotFound => ("Page not found", "There is nothing here."),
        ErrorClass::Conflict | ErrorClass::PreconditionFailed => {
            ("This cannot be done now", "Reload the page and try again.")
        }
        ErrorClass::RateLimited { .. } => {
            ("Too many requests", "Please wait a few minutes before trying again.")
        }
        ErrorClass::Unavailable => ("Temporarily unavailable", "Please try again in a moment."),
        ErrorClass::Internal => (
            "Something went wrong",
            "Please try again. If it keeps happening, contact your administrator.",
        ),
    };
    (title, f.message.clone().unwrap_or_else(|| fallback.to_owned()))
}

/// A text-only page (title, message, an optional link) with the page headers.
pub fn message_page(
    status: StatusCode,
    title: &str,
    message: &str,
    link: Option<(&str, &str)>,
) -> HttpResponse {
    let body = Message { title, message, link }.render().unwrap_or_else(|_| title.to_owned());
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::CONTENT_SECURITY_POLICY, crate::csp::message_page()))
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .body(body)
}

/// A method the address does not take (a GET of a form's target, say): a page that explains,
/// with `Allow`, rather than an empty 405.
pub fn method_not_allowed(allow: &str, link: (&str, &str)) -> HttpResponse {
    let mut res = message_page(
        StatusCode::METHOD_NOT_ALLOWED,
        "This address cannot be opened directly",
        "It only receives forms sent from another page. Go back to where you came from and try again.",
        Some(link),
    );
    if let Ok(v) = header::HeaderValue::from_str(allow) {
        res.headers_mut().insert(header::ALLOW, v);
    }
    res
}

/// An unknown address, for a browser.
pub fn not_found_page() -> HttpResponse {
    message_page(
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is nothing at this address. Check the link, or start again from your account.",
        Some(("/account", "Go to your account")),
    )
}
