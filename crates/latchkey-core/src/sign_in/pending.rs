//! Requests waiting for an identity provider's answer: a SAML AuthnRequest's id (checked
//! against the response's InResponseTo), an upstream OpenID Connect request's state, nonce and
//! PKCE verifier. Each is single use, expires, and is bound to the browser that started it:
//!
//! - the *token* travels through the provider (RelayState, `state`) and comes back with the
//!   answer; the store keeps only its hash;
//! - the *binding* is a secret in a cookie of the browser that started the request; the store
//!   keeps only its hash, and [`PendingStore::take`] needs both. A token replayed from another
//!   browser, a second use, or a late answer finds nothing.
//!
//! The payload (which holds nonces and verifiers) is sealed with the master key. Providers often
//! answer with a cross-site POST, which a `SameSite=Lax` cookie does not accompany; the web layer
//! therefore sets the binding cookie `SameSite=None; Secure` and does not apply the form CSRF
//! check to these answers: the token and binding are their CSRF protection.

use std::time::Duration;

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, EntityTrait, QueryFilter,
    sea_query::{Condition, Expr},
};
use serde::{Deserialize, Serialize};

use crate::{
    Error, Result,
    identity::method::Upstream,
    infra::{crypto, entity::pending_request, ids, store::Store},
};

/// What a pending request waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PendingKind {
    /// A SAML AuthnRequest; the response's InResponseTo must be `request_id`.
    SamlAuthn {
        connection_id: String,
        request_id: String,
        /// Set when an administrator (this user ID) tests the connection from the console:
        /// the answer is shown as mapped, and nobody is signed in or provisioned.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tested_by: Option<String>,
    },
    /// A SAML LogoutRequest we sent; the LogoutResponse's InResponseTo must be `request_id`.
    SamlLogout { connection_id: String, request_id: String },
    /// An upstream OpenID Connect authorization request.
    UpstreamOidc {
        upstream: Upstream,
        connection_id: Option<String>,
        nonce: String,
        pkce_verifier: String,
        /// Which discovery document the request went to (`enterprise::upstream::Target`'s
        /// stored form): the answer is verified against the same one.
        target: String,
        /// Scopes asked for besides the sign-in's own (incremental authorisation).
        #[serde(default)]
        extra_scopes: Vec<String>,
        /// Set when a signed-in user connects the provider to their account (rather than
        /// signing in): the answer must be that user's linked identity.
        #[serde(default)]
        connect_user_id: Option<String>,
    },
    /// An upstream identity waiting for its owner to prove the existing account first.
    LinkConfirmation { user_id: String, issuer: String, subject: String, email: Option<String> },
}

impl PendingKind {
    fn name(&self) -> &'static str {
        match self {
            Self::SamlAuthn { .. } => "saml_authn",
            Self::SamlLogout { .. } => "saml_logout",
            Self::UpstreamOidc { .. } => "upstream_oidc",
            Self::LinkConfirmation { .. } => "link_confirmation",
        }
    }
}

/// The single-use value that travels through the provider and back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingToken(pub String);

/// The secret that ties a pending request to one browser (kept in a cookie).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserBinding(pub String);

impl BrowserBinding {
    /// A new binding for a browser that has none yet.
    pub fn new() -> Self {
        Self(crypto::random_secret())
    }
}

impl Default for BrowserBinding {
    fn default() -> Self {
        Self::new()
    }
}

/// A request taken back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRequest {
    pub id: String,
    pub kind: PendingKind,
    /// Where the browser goes once the sign-in completes.
    pub return_to: String,
    pub created_at: i64,
}

/// Longest a request may wait: identity providers answer in minutes.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 60);
/// Longest accepted token or binding; both are 43 characters when we make them.
const MAX_SECRET_LEN: usize = 128;

#[derive(Clone)]
pub struct PendingStore {
    store: Store,
}

fn seal_purpose(id: &str) -> String {
    format!("pending_request:{id}")
}

impl PendingStore {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Stores a request for `ttl` (at most [`MAX_TTL`]), bound to `binding` (the browser's
    /// existing binding, or a new one the caller then sets as a cookie). Returns the token.
    pub async fn begin(
        &self,
        kind: &PendingKind,
        return_to: &str,
        binding: &BrowserBinding,
        ttl: Duration,
    ) -> Result<PendingToken> {
        if return_to.len() > 2048 {
            return Err(Error::invalid("return_to", "is too long"));
        }
        let now = self.store.now();
        let ttl = i64::try_from(ttl.min(MAX_TTL).as_secs()).unwrap_or(0).max(1);
        let id = ids::new_id(ids::PENDING_REQUEST);
        let token = crypto::random_secret();
        let payload = serde_json::to_vec(kind)?;
        pending_request::Entity::insert(pending_request::ActiveModel {
            id: Set(id.clone()),
            token_hash: Set(crypto::hash_secret_hex(&token)),
            binding_hash: Set(crypto::hash_secret_hex(&binding.0)),
            kind: Set(kind.name().to_owned()),
            payload: Set(self.store.master_key().seal(&seal_purpose(&id), &payload)?),
            return_to: Set(return_to.to_owned()),
            created_at: Set(now),
            expires_at: Set(now + ttl),
            used_at: Set(None),
        })
        .exec_without_returning(self.store.db())
        .await?;
        Ok(PendingToken(token))
    }

    /// Takes a request back, once: the one conditional UPDATE that marks it used also checks
    /// that it has not expired and that this browser started it. Anything else (unknown,
    /// expired, used, another browser's) is [`Error::NotFound`].
    pub async fn take(
        &self,
        token: &PendingToken,
        binding: &BrowserBinding,
    ) -> Result<PendingRequest> {
        let gone = || Error::NotFound("pending sign-in request".into());
        let plausible = |s: &str| !s.is_empty() && s.len() <= MAX_SECRET_LEN;
        if !plausible(&token.0) || !plausible(&binding.0) {
            return Err(gone());
        }
        let now = self.store.now();
        let taken = pending_request::Entity::update_many()
            .col_expr(pending_request::Column::UsedAt, Expr::value(now))
            .filter(pending_request::Column::TokenHash.eq(crypto::hash_secret_hex(&token.0)))
            .filter(pending_request::Column::BindingHash.eq(crypto::hash_secret_hex(&binding.0)))
            .filter(pending_request::Column::UsedAt.is_null())
            .filter(pending_request::Column::ExpiresAt.gt(now))
            .exec_with_returning(self.store.db())
            .await?;
        let row = taken.into_iter().next().ok_or_else(gone)?;
        let payload = self.store.master_key().open(&seal_purpose(&row.id), &row.payload)?;
        Ok(PendingRequest {
            kind: serde_json::from_slice(&payload)?,
            id: row.id,
            return_to: row.return_to,
            created_at: row.created_at,
        })
    }

    /// Deletes requests that expired or were used more than an hour ago; returns how many.
    pub async fn purge(&self) -> Result<u64> {
        let now = self.store.now();
        let res = pending_request::Entity::delete_many()
            .filter(
                Condition::any()
                    .add(pending_request::Column::ExpiresAt.lt(now))
                    .add(pending_request::Column::UsedAt.lt(now - 3600)),
            )
            .exec(self.store.db())
            .await?;
        Ok(res.rows_affected)
    }
}
