//! The verifier end to end with locally generated keys, and the key cache against a tiny HTTP
//! server on loopback serving a JWKS the test controls.

#[cfg(feature = "actix")]
mod actix;
#[cfg(feature = "axum")]
mod axum;
mod cache;
pub mod kit;
mod refusals;
