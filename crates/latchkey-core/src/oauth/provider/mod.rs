//! The OpenID Connect provider's orchestration: one method per endpoint request, applying the
//! protocol rules of `latchkey-oidc` to the grant store. The web handlers parse HTTP into
//! [`Params`](latchkey_oidc::params::Params) and
//! [`ClientCredentials`](latchkey_oidc::token::ClientCredentials), call one method here, and
//! render what it returns.
//!
//! Every request is checked completely before anything is written: a request that is refused
//! (`invalid_scope`, `invalid_grant`, `invalid_target`, …) leaves the code, the refresh token
//! and the client assertion it presented as they were. The writes (recording an assertion's
//! `jti`, claiming a code, rotating a refresh token) come last, each atomic.
//!
//! - `client_auth`: client authentication (secrets, `private_key_jwt`, `none`);
//! - `token`: the token endpoint's grants;
//! - `issue`: ID and access tokens (typed claims, client templates);
//! - `resource`: userinfo, introspection and revocation (verifying our own access tokens);
//! - `authorize`: the browser-facing authorization, consent, account-chooser and logout steps.

mod authorize;
mod client_auth;
mod issue;
mod resource;
mod token;

use std::sync::Arc;

use latchkey_oidc::{OAuthError, authorize::AuthorizeError};

pub use authorize::{
    AUTH_AFTER_PARAM, AccountChoice, AuthorizeStep, BrowserSession, LogoutStep, SelectOutcome,
};
pub use issue::Issued;

use crate::{
    Error, Settings,
    identity::{mint_gate::MintGates, sessions::SessionService, users::UserService},
    infra::{keys::KeyService, store::Store},
    oauth::{OAuthService, clients::ClientService, jwt_templates::JwtTemplateService},
};

/// A program-facing request (token, introspection, revocation, userinfo) that did not succeed.
#[derive(Debug)]
pub enum OAuthFailure {
    /// Refused under the protocol (`invalid_grant`, `invalid_client`, …): the client's mistake,
    /// answered with that error.
    Refused(OAuthError),
    /// Our own failure (the store, signing): answered by its error class, never as a refusal.
    Failed(Error),
}

impl From<Error> for OAuthFailure {
    fn from(e: Error) -> Self {
        Self::Failed(e)
    }
}

impl From<OAuthError> for OAuthFailure {
    fn from(e: OAuthError) -> Self {
        Self::Refused(e)
    }
}

pub type OAuthResult<T> = std::result::Result<T, OAuthFailure>;

/// A browser-facing request (authorization, consent, account chooser, logout) that did not
/// succeed.
#[derive(Debug)]
pub enum BrowserFailure {
    /// Refused before the client and its redirect URI are verified: explained on a page, never
    /// redirected.
    Page(String),
    /// Refused after: sent back to the verified redirect URI with `state` and `iss`.
    Redirect { redirect_uri: String, state: Option<String>, error: OAuthError, issuer: String },
    /// Our own failure, answered with a page of its error class.
    Failed(Error),
}

impl From<Error> for BrowserFailure {
    fn from(e: Error) -> Self {
        Self::Failed(e)
    }
}

pub type BrowserResult<T> = std::result::Result<T, BrowserFailure>;

/// The provider. Cheap to clone: every part is shared.
#[derive(Clone)]
pub struct OidcService {
    /// `LATCHKEY_PUBLIC_URL`, byte for byte: the `iss` of every token.
    issuer: Arc<str>,
    /// The token endpoint's URL (an audience client assertions may name).
    token_endpoint: Arc<str>,
    store: Store,
    clients: ClientService,
    grants: OAuthService,
    keys: KeyService,
    templates: JwtTemplateService,
    users: UserService,
    sessions: SessionService,
    gates: MintGates,
    discovery: Arc<std::sync::RwLock<Option<Arc<Discovery>>>>,
}

/// The discovery document, serialised.
#[derive(Debug)]
pub struct Discovery {
    revision: i64,
    pub body: Vec<u8>,
    /// A strong entity tag of `body`.
    pub etag: String,
}

/// The services the provider works with.
pub struct Parts {
    pub store: Store,
    pub clients: ClientService,
    pub grants: OAuthService,
    pub keys: KeyService,
    pub templates: JwtTemplateService,
    pub users: UserService,
    pub sessions: SessionService,
    /// Checks before tokens are minted for a session (EASIE's upstream re-validation).
    pub gates: MintGates,
}

impl OidcService {
    pub fn new(settings: &Settings, parts: Parts) -> Self {
        let issuer = settings.public_url.as_str();
        Self {
            issuer: issuer.into(),
            token_endpoint: latchkey_oidc::discovery::token_endpoint(issuer).into(),
            store: parts.store,
            clients: parts.clients,
            grants: parts.grants,
            keys: parts.keys,
            templates: parts.templates,
            users: parts.users,
            sessions: parts.sessions,
            gates: parts.gates,
            discovery: Arc::default(),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The discovery document. The default ID-token key is made to exist first: relying parties
    /// read the JWKS once after discovery, so it must already be published.
    pub async fn discovery(&self) -> crate::Result<serde_json::Value> {
        use crate::infra::jose::SigningAlg;
        self.keys.ensure_active(SigningAlg::ID_TOKEN_DEFAULT).await?;
        let algs = SigningAlg::advertised().map(SigningAlg::as_str);
        Ok(latchkey_oidc::discovery::document(&self.issuer, &algs))
    }

    /// The discovery document as the bytes served, with their entity tag: built once per store
    /// revision (the default ID-token key may have to be made first) and then served from
    /// memory.
    pub async fn discovery_bytes(&self) -> crate::Result<Arc<Discovery>> {
        let revision = self.store.current_revision().await?;
        if let Some(d) = self.discovery.read().ok().and_then(|d| d.clone())
            && d.revision >= revision
        {
            return Ok(d);
        }
        let body = serde_json::to_string(&self.discovery().await?)?;
        // A digest of the document itself: equal on every node that serves the same bytes.
        let digest = crate::infra::crypto::hash_secret_hex(&body);
        let etag = format!("\"{}\"", digest.get(..32).unwrap_or(&digest));
        let built = Arc::new(Discovery { revision, body: body.into_bytes(), etag });
        if let Ok(mut d) = self.discovery.write() {
            *d = Some(built.clone());
        }
        Ok(built)
    }

    /// A refusal sent back to the verified redirect URI of `areq`.
    fn redirect(
        &self,
        areq: &latchkey_oidc::authorize::AuthorizationRequest,
        error: OAuthError,
    ) -> BrowserFailure {
        BrowserFailure::Redirect {
            redirect_uri: areq.redirect_uri.clone(),
            state: areq.state.clone(),
            error,
            issuer: self.issuer.to_string(),
        }
    }

    fn browser_refusal(&self, e: AuthorizeError) -> BrowserFailure {
        match e {
            AuthorizeError::Page(m) => BrowserFailure::Page(m),
            AuthorizeError::Redirect { redirect_uri, state, error } => BrowserFailure::Redirect {
                redirect_uri,
                state,
                error,
                issuer: self.issuer.to_string(),
            },
        }
    }
}

/// Access tokens are JWTs (three dot-separated parts); refresh tokens are opaque secrets.
fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}
