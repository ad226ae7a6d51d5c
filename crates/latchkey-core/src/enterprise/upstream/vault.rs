//! The upstream token vault: one grant per user and provider, holding the provider's refresh
//! and access tokens sealed with the master key (never logged, never shown), the scopes granted,
//! and for EASIE grants the identity snapshot and schedule of the deprovisioning re-check.

use latchkey_easie::recheck::IdentitySnapshot;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, sea_query::Expr,
};
use serde_json::json;
use zeroize::Zeroizing;

use crate::infra::inline_sqlite::constraint_violation;
use crate::{
    Error, Result,
    identity::method::Upstream,
    infra::{crypto::MasterKey, entity::upstream_grant, ids},
};

pub const STATUS_ACTIVE: &str = "active";
pub const STATUS_REVOKED: &str = "revoked";

/// Tokens a provider just issued.
#[derive(Clone)]
pub struct IssuedTokens {
    pub access_token: String,
    /// Unix time the access token expires, when the provider said.
    pub expires_at: Option<i64>,
    /// `None`: the provider issued none this time (keep the stored one).
    pub refresh_token: Option<String>,
    /// The scopes granted (the response's `scope`, else the ones asked for).
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedTokens")
            .field("expires_at", &self.expires_at)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "<redacted>"))
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// What a sign-in records in the vault.
#[derive(Debug, Clone)]
pub struct GrantWrite<'a> {
    pub user_id: &'a str,
    pub provider: Upstream,
    pub issuer: &'a str,
    pub subject: &'a str,
    /// The EASIE connection (and its organisation) the sign-in went through.
    pub easie: Option<(&'a str, &'a str)>,
    pub tokens: &'a IssuedTokens,
    pub snapshot: &'a IdentitySnapshot,
    /// When the grant is next re-checked upstream (EASIE only).
    pub next_check_at: Option<i64>,
}

fn purpose(grant_id: &str, which: &str) -> String {
    format!("upstream_grant:{grant_id}:{which}")
}

pub fn snapshot_json(s: &IdentitySnapshot) -> String {
    json!({ "sub": s.sub, "oid": s.oid, "tid": s.tid, "hd": s.hd }).to_string()
}

pub fn snapshot_from_json(text: &str) -> Result<IdentitySnapshot> {
    let v: serde_json::Value = serde_json::from_str(text)?;
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    Ok(IdentitySnapshot {
        sub: field("sub"),
        oid: field("oid"),
        tid: field("tid"),
        hd: field("hd"),
    })
}

pub async fn find<C: ConnectionTrait>(
    conn: &C,
    user_id: &str,
    provider: Upstream,
) -> Result<Option<upstream_grant::Model>> {
    Ok(upstream_grant::Entity::find()
        .filter(upstream_grant::Column::UserId.eq(user_id))
        .filter(upstream_grant::Column::Provider.eq(provider.as_str()))
        .one(conn)
        .await?)
}

/// Records a sign-in's grant in the caller's transaction: a new grant, or the user's existing
/// grant for the provider made current (active again, re-check schedule reset, tokens
/// replaced; a refresh token the provider did not re-issue is kept).
pub async fn record_sign_in<C: ConnectionTrait>(
    conn: &C,
    key: &MasterKey,
    w: &GrantWrite<'_>,
    now: i64,
) -> Result<()> {
    let existing = find(conn, w.user_id, w.provider).await?;
    let id = existing.as_ref().map_or_else(|| ids::new_id(ids::UPSTREAM_GRANT), |g| g.id.clone());
    let access = key.seal(&purpose(&id, "access"), w.tokens.access_token.as_bytes())?;
    let refresh = match &w.tokens.refresh_token {
        Some(r) => Some(key.seal(&purpose(&id, "refresh"), r.as_bytes())?),
        // The same identity keeps its refresh token; another identity's is never inherited.
        None => existing
            .as_ref()
            .filter(|g| g.issuer == w.issuer && g.subject == w.subject)
            .and_then(|g| g.refresh_token_sealed.clone()),
    };
    let model = upstream_grant::ActiveModel {
        id: Set(id),
        user_id: Set(w.user_id.to_owned()),
        provider: Set(w.provider.as_str().to_owned()),
        issuer: Set(w.issuer.to_owned()),
        subject: Set(w.subject.to_owned()),
        connection_id: Set(w.easie.map(|(c, _)| c.to_owned())),
        org_id: Set(w.easie.map(|(_, o)| o.to_owned())),
        refresh_token_sealed: Set(refresh),
        access_token_sealed: Set(Some(access)),
        access_token_expires_at: Set(w.tokens.expires_at),
        scopes: Set(w.tokens.scopes.join(" ")),
        snapshot: Set(snapshot_json(w.snapshot)),
        last_success_at: Set(now),
        next_check_at: Set(w.next_check_at),
        status: Set(STATUS_ACTIVE.to_owned()),
        revoked_reason: Set(None),
        created_at: Set(existing.as_ref().map_or(now, |g| g.created_at)),
        updated_at: Set(now),
    };
    let result = if existing.is_some() {
        upstream_grant::Entity::update(model).exec(conn).await.map(|_| ())
    } else {
        upstream_grant::Entity::insert(model).exec_without_returning(conn).await.map(|_| ())
    };
    result.map_err(|e| match constraint_violation(&e) {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => {
            Error::Conflict("this grant was recorded meanwhile; try again".into())
        }
        _ => e.into(),
    })
}

/// The grant's refresh token, unsealed.
pub fn refresh_token(
    key: &MasterKey,
    g: &upstream_grant::Model,
) -> Result<Option<Zeroizing<String>>> {
    open(key, g, "refresh", g.refresh_token_sealed.as_deref())
}

/// The grant's access token, unsealed.
pub fn access_token(
    key: &MasterKey,
    g: &upstream_grant::Model,
) -> Result<Option<Zeroizing<String>>> {
    open(key, g, "access", g.access_token_sealed.as_deref())
}

fn open(
    key: &MasterKey,
    g: &upstream_grant::Model,
    which: &str,
    sealed: Option<&str>,
) -> Result<Option<Zeroizing<String>>> {
    let Some(sealed) = sealed else { return Ok(None) };
    let bytes = key.open(&purpose(&g.id, which), sealed)?;
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|_| Error::Internal(format!("grant {}: sealed token is not text", g.id)))?;
    Ok(Some(Zeroizing::new(text)))
}

/// Stores tokens from a refresh (Microsoft rotates the refresh token on every use: the new one
/// replaces the old) and schedules the next check. Conditional on the grant still being
/// active, so a concurrent revocation is never undone; returns whether it was.
pub async fn record_refresh<C: ConnectionTrait>(
    conn: &C,
    key: &MasterKey,
    g: &upstream_grant::Model,
    tokens: &IssuedTokens,
    next_check_at: Option<i64>,
    now: i64,
) -> Result<bool> {
    let mut update = upstream_grant::Entity::update_many()
        .col_expr(
            upstream_grant::Column::AccessTokenSealed,
            Expr::value(Some(key.seal(&purpose(&g.id, "access"), tokens.access_token.as_bytes())?)),
        )
        .col_expr(upstream_grant::Column::AccessTokenExpiresAt, Expr::value(tokens.expires_at))
        .col_expr(upstream_grant::Column::LastSuccessAt, Expr::value(now))
        .col_expr(upstream_grant::Column::NextCheckAt, Expr::value(next_check_at))
        .col_expr(upstream_grant::Column::UpdatedAt, Expr::value(now));
    if let Some(r) = &tokens.refresh_token {
        let sealed = key.seal(&purpose(&g.id, "refresh"), r.as_bytes())?;
        update =
            update.col_expr(upstream_grant::Column::RefreshTokenSealed, Expr::value(Some(sealed)));
    }
    if !tokens.scopes.is_empty() {
        update =
            update.col_expr(upstream_grant::Column::Scopes, Expr::value(tokens.scopes.join(" ")));
    }
    let res = update
        .filter(upstream_grant::Column::Id.eq(g.id.as_str()))
        .filter(upstream_grant::Column::Status.eq(STATUS_ACTIVE))
        .exec(conn)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Replaces a grant's tokens without vouching for the account (the refresh worked, but its
/// answer could not be trusted): the rotated refresh token is the only one left that works.
pub async fn store_tokens<C: ConnectionTrait>(
    conn: &C,
    key: &MasterKey,
    g: &upstream_grant::Model,
    tokens: &IssuedTokens,
    now: i64,
) -> Result<()> {
    let mut update = upstream_grant::Entity::update_many()
        .col_expr(upstream_grant::Column::UpdatedAt, Expr::value(now))
        .col_expr(
            upstream_grant::Column::AccessTokenSealed,
            Expr::value(Some(key.seal(&purpose(&g.id, "access"), tokens.access_token.as_bytes())?)),
        )
        .col_expr(upstream_grant::Column::AccessTokenExpiresAt, Expr::value(tokens.expires_at));
    if let Some(r) = &tokens.refresh_token {
        let sealed = key.seal(&purpose(&g.id, "refresh"), r.as_bytes())?;
        update =
            update.col_expr(upstream_grant::Column::RefreshTokenSealed, Expr::value(Some(sealed)));
    }
    update
        .filter(upstream_grant::Column::Id.eq(g.id.as_str()))
        .filter(upstream_grant::Column::Status.eq(STATUS_ACTIVE))
        .exec(conn)
        .await?;
    Ok(())
}

/// Marks a grant revoked and forgets its tokens; returns whether this call revoked it (only
/// one of several concurrent revocations does).
pub async fn revoke<C: ConnectionTrait>(
    conn: &C,
    grant_id: &str,
    reason: &str,
    now: i64,
) -> Result<bool> {
    let res = upstream_grant::Entity::update_many()
        .col_expr(upstream_grant::Column::Status, Expr::value(STATUS_REVOKED))
        .col_expr(upstream_grant::Column::RevokedReason, Expr::value(Some(reason.to_owned())))
        .col_expr(upstream_grant::Column::RefreshTokenSealed, Expr::value(Option::<String>::None))
        .col_expr(upstream_grant::Column::AccessTokenSealed, Expr::value(Option::<String>::None))
        .col_expr(upstream_grant::Column::NextCheckAt, Expr::value(Option::<i64>::None))
        .col_expr(upstream_grant::Column::UpdatedAt, Expr::value(now))
        .filter(upstream_grant::Column::Id.eq(grant_id))
        .filter(upstream_grant::Column::Status.eq(STATUS_ACTIVE))
        .exec(conn)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Postpones a grant's next check (upstream unreachable, inside the grace).
pub async fn postpone<C: ConnectionTrait>(
    conn: &C,
    grant_id: &str,
    at: i64,
    now: i64,
) -> Result<()> {
    upstream_grant::Entity::update_many()
        .col_expr(upstream_grant::Column::NextCheckAt, Expr::value(Some(at)))
        .col_expr(upstream_grant::Column::UpdatedAt, Expr::value(now))
        .filter(upstream_grant::Column::Id.eq(grant_id))
        .filter(upstream_grant::Column::Status.eq(STATUS_ACTIVE))
        .exec(conn)
        .await?;
    Ok(())
}
