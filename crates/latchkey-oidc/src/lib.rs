//! OpenID Connect / OAuth 2.1 protocol logic for Latchkey's provider: request validation, error
//! shapes, PKCE, scope rules, claim building, the checks on access tokens and client assertions,
//! introspection answers and the discovery document. Pure functions and types: no HTTP, no
//! storage, so every rule here is unit-tested on its own; `latchkey_core::oauth` applies them
//! to stored state and the web handlers only parse and render.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::panic))]
#![deny(clippy::too_many_lines)]

pub mod access_token;
pub mod assertion;
pub mod authorize;
pub mod claims;
pub mod discovery;
mod error;
pub mod introspection;
mod names;
pub mod params;
pub mod pkce;
pub mod scope;
pub mod token;

pub use error::{ErrorCode, OAuthError};
pub use names::{ClientAuthMethod, GrantType, auth_method_names, grant_type_names};

/// Scopes Latchkey understands.
pub const SCOPE_OPENID: &str = "openid";
pub const SCOPE_PROFILE: &str = "profile";
pub const SCOPE_EMAIL: &str = "email";
pub const SCOPE_OFFLINE_ACCESS: &str = "offline_access";
/// Asks for `org_id` and `org_role` (the session's active organisation), as Keycloak's
/// `organization` scope does; without it tokens say nothing about organisations.
pub const SCOPE_ORGANIZATION: &str = "organization";
pub const SUPPORTED_SCOPES: [&str; 5] =
    [SCOPE_OPENID, SCOPE_PROFILE, SCOPE_EMAIL, SCOPE_OFFLINE_ACCESS, SCOPE_ORGANIZATION];
/// Lets a back end (a client_credentials token) fetch a user's upstream (Google, Microsoft)
/// access token. Never a user scope: only a client registered with it may be granted it.
pub const SCOPE_USERS_OAUTH_TOKENS: &str = "users:oauth_tokens";
/// The scope of a client_credentials token that may use the admin API (`/api/v1`) with the
/// powers of an instance API key.
pub const SCOPE_ADMIN: &str = "admin:*";
/// What a client may request unless it is registered with its own list.
pub const DEFAULT_CLIENT_SCOPES: [&str; 5] = SUPPORTED_SCOPES;

/// Longest single parameter value accepted anywhere; anything longer is an attack or a bug.
pub const MAX_PARAM_LEN: usize = 2048;
