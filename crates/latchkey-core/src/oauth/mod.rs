//! The OpenID Connect provider's side of the core. The protocol rules are `latchkey-oidc`'s
//! (pure functions); here they meet the store:
//!
//! - [`provider`]: the [`OidcService`] that the endpoints call, one method per request (the
//!   token endpoint's grants, token issuance, access-token verification for userinfo and
//!   introspection, revocation, client authentication, the browser-facing authorization,
//!   consent, account-chooser and logout decisions);
//! - [`grants`]: the grant store ([`OAuthService`]: codes, refresh-token families, consents,
//!   assertion replay ids, signing with the instance keys), with refresh rotation group-committed
//!   in `refresh_rotation`;
//! - [`model`]: the grant types both of them use;
//! - [`clients`], [`jwt_templates`], [`backchannel`]: the client registry, JWT templates and
//!   back-channel logout.

#![deny(clippy::too_many_lines)]

pub mod access_tokens;
pub mod backchannel;
pub mod clients;
pub mod grants;
pub mod jwt_templates;
pub mod model;
pub mod provider;
mod refresh_rotation;

pub use grants::OAuthService;
pub use model::{
    CODE_TTL_SECS, CodeRedemption, ConsentInfo, GrantSubject, NewCode, RefreshGrant,
    RefreshOutcome, StoredCode,
};
pub use provider::OidcService;
