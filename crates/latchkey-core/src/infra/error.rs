use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure of the core. The web crate maps each variant to an HTTP response in one place.
#[derive(Debug, Error)]
pub enum Error {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
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
    Config(#[from] crate::infra::config::ConfigError),
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("cryptographic error: {0}")]
    Crypto(String),
    #[error("I/O error on {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("internal error: {0}")]
    Internal(String),
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
}

impl From<josekit::JoseError> for Error {
    fn from(e: josekit::JoseError) -> Self {
        Self::Crypto(e.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::Internal(format!("JSON: {e}"))
    }
}
