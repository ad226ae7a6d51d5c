//! The grant model shared by the grant store (`grants.rs`), refresh rotation
//! (`refresh_rotation.rs`) and the provider (`provider/`): codes, refresh grants and who is
//! behind them. Nothing here reads or writes the store.

use std::sync::Arc;

use sea_orm::ActiveValue::Set;

use crate::{
    identity::model::{Session, User, UserStatus},
    infra::{crypto, entity::oauth_refresh_token, entity::session, ids},
};

/// Authorization codes live at most this long (OAuth 2.1 recommends ≤ 10 min; we use 1 min).
pub const CODE_TTL_SECS: i64 = 60;

/// The user and session a grant belongs to, as of a store revision.
#[derive(Debug)]
pub struct GrantSubject {
    pub(crate) revision: i64,
    pub user: User,
    pub(crate) session: session::Model,
    /// The user's role in the session's active organisation; None when no organisation is
    /// active or the membership is gone.
    pub org_role: Option<String>,
}

impl GrantSubject {
    pub fn session_id(&self) -> &str {
        &self.session.id
    }

    /// How the session behind the grant was authenticated (its `amr` and `acr`).
    pub fn auth_method(&self) -> crate::identity::method::AuthMethod {
        crate::identity::method::AuthMethod::from_stored(&self.session.auth_method)
    }

    /// The session's start: the time of the authentication behind the grant.
    pub fn auth_time(&self) -> i64 {
        self.session.created_at
    }

    /// The active organisation, when the user is (still) a member of it.
    pub fn org_id(&self) -> Option<&str> {
        self.org_role.as_ref().and(self.session.active_org_id.as_deref())
    }

    /// The session is stored active and inside both of its expiries, and the user is active.
    pub fn is_live(&self, now: i64) -> bool {
        self.user.status == UserStatus::Active && Session::model_is_active(&self.session, now)
    }
}

/// What a code is issued for.
#[derive(Debug, Clone)]
pub struct NewCode {
    pub client_id: String,
    pub user_id: String,
    pub session_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub auth_time: i64,
    /// RFC 8707 resources named at the authorization request.
    pub resources: Vec<String>,
}

/// A stored authorization code, as found by its secret (before it is claimed).
#[derive(Debug, Clone)]
pub struct StoredCode {
    /// The code's id: also the id of the grant (and refresh-token family) it starts.
    pub id: String,
    pub client_id: String,
    pub user_id: String,
    pub session_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub auth_time: i64,
    pub expires_at: i64,
    /// RFC 8707 resources named at the authorization request.
    pub resources: Vec<String>,
    /// Redeemed already: presenting it again is a replay.
    pub used: bool,
    /// Its grant was revoked (replay, refresh-token reuse, consent withdrawn).
    pub revoked: bool,
}

#[derive(Debug, Clone)]
pub enum CodeRedemption {
    Redeemed(Box<StoredCode>),
    /// Unknown code, or one already used (whose tokens are now revoked).
    Invalid,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ConsentInfo {
    pub client_id: String,
    pub client_name: String,
    pub scopes: Vec<String>,
    pub granted_at: i64,
}

#[derive(Debug, Clone)]
pub struct RefreshGrant {
    pub family_id: String,
    pub client_id: String,
    pub user_id: String,
    pub session_id: String,
    pub scopes: Vec<String>,
    pub auth_time: i64,
    /// RFC 8707 resources the grant was given; empty for a grant aimed at the issuer.
    pub resources: Vec<String>,
}

impl From<oauth_refresh_token::Model> for RefreshGrant {
    fn from(row: oauth_refresh_token::Model) -> Self {
        Self {
            scopes: split_scopes(&row.scopes),
            resources: split_scopes(row.resources.as_deref().unwrap_or_default()),
            family_id: row.family_id,
            client_id: row.client_id,
            user_id: row.user_id,
            session_id: row.session_id,
            auth_time: row.auth_time,
        }
    }
}

#[derive(Debug, Clone)]
pub enum RefreshOutcome {
    /// The presented token is now rotated; `token` replaces it. `subject` is the grant's user
    /// and session, found live at the request's revision.
    Rotated { grant: RefreshGrant, token: String, subject: Arc<GrantSubject> },
    /// Unknown, expired, revoked, of another client, or its session is over.
    Invalid(&'static str),
    /// A rotated token came back: the family is revoked.
    Reused,
}

/// Resources as stored: space-separated (they are URIs without whitespace), None for none.
pub(crate) fn join_resources(resources: &[String]) -> Option<String> {
    (!resources.is_empty()).then(|| resources.join(" "))
}

pub(crate) fn split_scopes(s: &str) -> Vec<String> {
    s.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// A new refresh token of `grant`'s family (scopes given space-separated), and its secret.
pub(crate) fn refresh_model(
    grant: &RefreshGrant,
    scopes: String,
    ttl_secs: i64,
    now: i64,
) -> (oauth_refresh_token::ActiveModel, String) {
    let token = crypto::random_secret();
    let model = oauth_refresh_token::ActiveModel {
        id: Set(ids::new_id(ids::REFRESH_TOKEN)),
        family_id: Set(grant.family_id.clone()),
        token_hash: Set(crypto::hash_secret_hex(&token)),
        client_id: Set(grant.client_id.clone()),
        user_id: Set(grant.user_id.clone()),
        session_id: Set(grant.session_id.clone()),
        scopes: Set(scopes),
        auth_time: Set(grant.auth_time),
        created_at: Set(now),
        expires_at: Set(now + ttl_secs),
        rotated_at: Set(None),
        revoked_at: Set(None),
        resources: Set(join_resources(&grant.resources)),
    };
    (model, token)
}
