//! Verifies Latchkey's tokens locally, without calling Latchkey for each request: session JWTs
//! from `POST /v1/session/token` (`typ: JWT`) and RFC 9068 access tokens (`typ: at+jwt`),
//! against the issuer's JWK Set, which is cached (see the README for the rules and the caching
//! behaviour).
//!
//! Local verification sees a revoked session or token only when the token expires; Latchkey's
//! session tokens live 60 s for that reason.
//!
//! ```no_run
//! # async fn demo(token: &str) -> Result<(), Box<dyn std::error::Error>> {
//! use latchkey_verify::Verifier;
//! let verifier = Verifier::builder("https://id.example.com")
//!     .authorized_party("https://app.example.com")
//!     .audience("https://api.example.com")
//!     .build()?;
//! let claims = verifier.verify(token).await?;
//! println!("{} in session {:?}", claims.sub(), claims.sid());
//! # Ok(()) }
//! ```

mod claims;
mod clock;
mod error;
mod jwk;
mod jwks;
mod jws;
mod rules;
mod verifier;

#[cfg(test)]
mod tests;

#[cfg(any(feature = "actix", feature = "axum"))]
mod auth;
#[cfg(any(feature = "actix", feature = "axum"))]
pub use auth::{Auth, AuthRefusal, RequireAuth};

#[cfg(feature = "actix")]
pub mod actix;
#[cfg(feature = "axum")]
pub mod axum;

pub use claims::{Claims, TokenType};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::VerifyError;
pub use verifier::{CacheSettings, ConfigError, Verifier, VerifierBuilder};

/// The cookie the middlewares read a session token from when no `Authorization` header is
/// sent, unless configured otherwise: the JavaScript SDK's default too. (Latchkey's own
/// `latchkey_session` cookie holds the session secret and is never read.)
pub const DEFAULT_COOKIE: &str = "latchkey_token";
