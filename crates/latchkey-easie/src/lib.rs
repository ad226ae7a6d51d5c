//! EASIE single sign-on rules: enterprises enrolled by email domain sign in through Google
//! Workspace or Microsoft Entra ID. Pure functions only (no IO, no clock, no async, no
//! storage); the core calls them after `openidconnect` has verified an ID token's signature,
//! audience, expiry and nonce, and every refusal carries a stable audit reason.
//!
//! - [`provider`]: the two providers, Microsoft tenant IDs and the authority / issuers.
//! - [`domain`]: domain and address normalisation; equality is exact.
//! - [`google`] and [`microsoft`]: claims, the enterprise tenant checks, social identities.
//! - [`route`]: enterprise, social or refused, decided from the claims.
//! - [`discovery`]: pinning a Microsoft tenant from its OpenID configuration.
//! - [`recheck`]: the deprovisioning decision after an upstream refresh, and its settings.
//! - [`risc`]: Google Cross-Account Protection security event tokens.

pub mod claims;
pub mod discovery;
pub mod domain;
pub mod google;
pub mod identity;
pub mod microsoft;
pub mod provider;
pub mod recheck;
pub mod refusal;
pub mod risc;
pub mod route;

pub use domain::{Domain, Email};
pub use identity::{EnterpriseIdentity, IdentityKey, Profile, SocialIdentity};
pub use provider::{Authority, CONSUMER_TENANT_ID, Provider, TenantId};
pub use refusal::Refusal;
pub use route::{Enrollment, Route, SignInClaims};
