use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure of the core. The web crate maps each variant to an HTTP response in one place.
#[derive(Debug, Error)]
pub enum Error {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The caller's precondition (`If-Match`) no longer holds: the object changed since they
    /// read it.
    #[error("{0}")]
    PreconditionFailed(String),
    /// The caller is known but may not do this (e.g. a member calling an admin-only action).
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("invalid {field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// The caller is not (or no longer) authenticated; the reason is logged, not shown.
    #[error("unauthenticated: {0}")]
    Unauthenticated(&'static str),
    /// Too many attempts; the caller may retry after this many seconds.
    #[error("too many attempts; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("cryptographic error: {0}")]
    Crypto(String),
    #[error("I/O error on {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("internal error: {0}")]
    Internal(String),
    /// A service we depend on (an upstream identity provider) did not answer; a retry may work.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// A setting that could not be accepted. `setting` is the environment variable's name, which is
/// also how the docs list it; the note says where the bad value came from. Defined here rather
/// than in `config.rs` (which re-exports it), so that this module depends on nothing else.
#[derive(Debug, Clone, Error)]
#[error("invalid setting {setting}{source_note}: expected {expected}, got {got}")]
pub struct ConfigError {
    pub setting: String,
    pub expected: String,
    pub got: String,
    /// " (from the environment)", " (key `x` in file)" or empty; set by `config.rs`.
    pub(crate) source_note: String,
}

impl ConfigError {
    pub fn new(setting: &str, expected: impl Into<String>, got: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            expected: expected.into(),
            got: got.into(),
            source_note: String::new(),
        }
    }
}

/// The few statements run on Latchkey's own SQLite connections (see `store.rs`) fail like any
/// other database statement.
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Self::Database(sea_orm::DbErr::Custom(format!("sqlite: {e}")))
    }
}

impl Error {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }

    /// How this failure is answered. The one classification: the web crate's JSON, HTML and
    /// OAuth renderers only format it, so one error gets the same answer on every route.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Invalid { .. } => ErrorClass::InvalidInput,
            Self::Unauthenticated(_) => ErrorClass::Unauthenticated,
            Self::Forbidden(_) => ErrorClass::Forbidden,
            Self::NotFound(_) => ErrorClass::NotFound,
            Self::Conflict(_) => ErrorClass::Conflict,
            Self::PreconditionFailed(_) => ErrorClass::PreconditionFailed,
            Self::RateLimited { retry_after_secs } => {
                ErrorClass::RateLimited { retry_after_secs: *retry_after_secs }
            }
            Self::Database(_) | Self::Unavailable(_) => ErrorClass::Unavailable,
            Self::Config(_) | Self::Crypto(_) | Self::Io { .. } | Self::Internal(_) => {
                ErrorClass::Internal
            }
        }
    }

    /// What the caller may be told: the message of an input, conflict or permission error.
    /// Everything else (what was not found, why a session was refused, internal details) is
    /// logged, never sent.
    pub fn public_message(&self) -> Option<String> {
        match self {
            Self::Invalid { .. }
            | Self::Conflict(_)
            | Self::PreconditionFailed(_)
            | Self::Forbidden(_) => Some(self.to_string()),
            Self::NotFound(_)
            | Self::Unauthenticated(_)
            | Self::RateLimited { .. }
            | Self::Database(_)
            | Self::Config(_)
            | Self::Crypto(_)
            | Self::Io { .. }
            | Self::Internal(_)
            | Self::Unavailable(_) => None,
        }
    }
}

/// The kinds of answer a failure can get, independent of the protocol that carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request is malformed or a value is not acceptable (400).
    InvalidInput,
    /// No valid credentials or session (401).
    Unauthenticated,
    /// Known caller, not allowed (403).
    Forbidden,
    /// No such thing, or not visible to this caller (404).
    NotFound,
    /// The request clashes with the current state (409).
    Conflict,
    /// A conditional request's precondition failed (412).
    PreconditionFailed,
    /// Too many attempts; retry later (429).
    RateLimited { retry_after_secs: u64 },
    /// The database did not answer; a retry may work (503).
    Unavailable,
    /// A fault of ours (500).
    Internal,
}

impl ErrorClass {
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidInput => 400,
            Self::Unauthenticated => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::PreconditionFailed => 412,
            Self::RateLimited { .. } => 429,
            Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }

    /// True for failures that are ours rather than the caller's: logged at error level.
    pub fn is_server_fault(self) -> bool {
        matches!(self, Self::Unavailable | Self::Internal)
    }
}

impl From<josekit::JoseError> for Error {
    fn from(e: josekit::JoseError) -> Self {
        Self::Crypto(e.to_string())
    }
}

impl From<openssl::error::ErrorStack> for Error {
    fn from(e: openssl::error::ErrorStack) -> Self {
        Self::Crypto(e.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::Internal(format!("JSON: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_one_class_and_only_safe_messages_are_public() {
        let invalid = Error::invalid("email", "is not a valid email address");
        assert_eq!(invalid.class(), ErrorClass::InvalidInput);
        assert_eq!(invalid.class().http_status(), 400);
        assert_eq!(
            invalid.public_message().as_deref(),
            Some("invalid email: is not a valid email address")
        );
        let db = Error::Database(sea_orm::DbErr::Custom("connection refused".into()));
        assert_eq!(db.class(), ErrorClass::Unavailable);
        assert!(db.public_message().is_none());
        assert!(Error::NotFound("user usr_x".into()).public_message().is_none());
        assert!(Error::Unauthenticated("expired").public_message().is_none());
        assert_eq!(
            Error::RateLimited { retry_after_secs: 7 }.class(),
            ErrorClass::RateLimited { retry_after_secs: 7 }
        );
        assert!(Error::Internal("x".into()).class().is_server_fault());
    }
}
