//! Upstream token access: an app gets a user's current Google or Microsoft access token from
//! the vault, for the user's own session or for a back end holding a client_credentials token
//! with `users:oauth_tokens` (the web layer authenticates both). A stored token is handed out
//! while it has more than [`REFRESH_MARGIN_SECS`] to live; otherwise it is refreshed upstream
//! first. Every token handed out is audited (`upstream.token_issued`); no token is ever logged.
//!
//! One refresh per grant at a time, since Microsoft rotates refresh tokens and treats a second
//! use of the old one as a replay that revokes the whole grant: on a node, requests for the
//! same grant queue behind the lock the re-check uses, and the later ones find the new token;
//! across nodes, the refresh is claimed in the store first, by moving the grant's `updated_at`
//! into the future while it runs (and an EASIE grant's `next_check_at`, which the re-check
//! claims by). An EASIE grant's refresh is a re-check (it proves the account is still alive
//! upstream), so the re-check's decision applies: `invalid_grant` or a changed identity
//! deprovisions. A consumer grant, which is never re-checked, is marked revoked when the
//! provider refuses its refresh token: the user has to connect the account again.

use latchkey_easie::recheck::{self, Decision, Gate};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::json;
use zeroize::Zeroizing;

use super::{
    UpstreamService,
    vault::{self, IssuedTokens},
};
use crate::{
    Error, Result,
    identity::{method::Upstream, model::UserStatus},
    infra::{
        audit::{self, Actor},
        entity::{upstream_grant, user},
        store::Store,
    },
};

/// A stored access token this close to its expiry is refreshed before it is handed out, so the
/// caller has time to use it.
pub const REFRESH_MARGIN_SECS: i64 = 60;
/// How long a claimed refresh may take before another node may claim it.
const LEASE_SECS: i64 = 60;

/// A user's current access token at a provider.
#[derive(Clone)]
pub struct UpstreamAccessToken {
    pub provider: Upstream,
    pub access_token: Zeroizing<String>,
    /// Unix time it expires, when the provider said.
    pub expires_at: Option<i64>,
    /// The scopes the provider granted.
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for UpstreamAccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamAccessToken")
            .field("provider", &self.provider)
            .field("expires_at", &self.expires_at)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// Whether a stored access token may be handed out at `now`. A token whose lifetime the
/// provider did not state is refreshed rather than trusted.
pub fn usable(expires_at: Option<i64>, now: i64) -> bool {
    expires_at.is_some_and(|exp| exp.saturating_sub(now) > REFRESH_MARGIN_SECS)
}

/// A grant's stored scopes (space-separated) as a list.
pub fn scopes_of(stored: &str) -> Vec<String> {
    stored.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn not_connected() -> Error {
    Error::NotFound("connected account for this provider".into())
}

fn busy() -> Error {
    Error::Unavailable("the provider's token is being refreshed; retry shortly".into())
}

impl UpstreamService {
    /// The user's current access token at `provider`, refreshed upstream when it expires
    /// within [`REFRESH_MARGIN_SECS`], audited as handed out to `actor`. No active grant (never
    /// connected, disconnected, deprovisioned, an inactive user) is [`Error::NotFound`]; an
    /// EASIE account deprovisioned by this very refresh is [`Error::Unauthenticated`] (the
    /// user's sessions ended with it); a provider that does not answer is
    /// [`Error::Unavailable`].
    pub async fn access_token(
        &self,
        user_id: &str,
        provider: Upstream,
        actor: &Actor,
    ) -> Result<UpstreamAccessToken> {
        let (token, grant_id, refreshed) = self.current_access_token(user_id, provider).await?;
        let data = json!({
            "provider": provider.as_str(), "grant_id": grant_id, "refreshed": refreshed,
            "expires_at": token.expires_at, "scopes": token.scopes,
        });
        let now = self.store.now();
        audit::record(self.store.db(), now, actor, "upstream.token_issued", Some(user_id), data)
            .await?;
        Ok(token)
    }

    async fn current_access_token(
        &self,
        user_id: &str,
        provider: Upstream,
    ) -> Result<(UpstreamAccessToken, String, bool)> {
        let grant = self.live_grant(user_id, provider).await?;
        if let Some(t) = self.stored_if_current(&grant, self.store.now())? {
            return Ok((t, grant.id, false));
        }
        let lock = self.in_flight.lock_for(&grant.id);
        let _held = lock.lock().await;
        // Another request may have refreshed it while this one waited.
        let grant = self.live_grant(user_id, provider).await?;
        let now = self.store.now();
        if let Some(t) = self.stored_if_current(&grant, now)? {
            return Ok((t, grant.id, false));
        }
        let token = if grant.connection_id.is_some() {
            self.refresh_enterprise(&grant, now).await?
        } else {
            self.refresh_consumer(&grant, now).await?
        };
        Ok((token, grant.id, true))
    }

    /// The user's active grant for the provider, if the user is active too.
    async fn live_grant(&self, user_id: &str, provider: Upstream) -> Result<upstream_grant::Model> {
        let db = self.store.db();
        let active = user::Entity::find_by_id(user_id.to_owned())
            .one(db)
            .await?
            .is_some_and(|u| u.status == UserStatus::Active.as_str());
        if !active {
            return Err(not_connected());
        }
        match vault::find(db, user_id, provider).await? {
            Some(g) if g.status == vault::STATUS_ACTIVE => Ok(g),
            _ => Err(not_connected()),
        }
    }

    /// The stored token when it may be handed out as it is: not about to expire, and for an
    /// EASIE grant, checked upstream within the interval (or retrying inside the grace).
    fn stored_if_current(
        &self,
        grant: &upstream_grant::Model,
        now: i64,
    ) -> Result<Option<UpstreamAccessToken>> {
        if !usable(grant.access_token_expires_at, now) {
            return Ok(None);
        }
        if grant.connection_id.is_some() && self.gate_of(grant, now) != Gate::Allow {
            return Ok(None);
        }
        self.stored(grant)
    }

    fn stored(&self, grant: &upstream_grant::Model) -> Result<Option<UpstreamAccessToken>> {
        let provider = Upstream::parse(&grant.provider)
            .map_err(|_| Error::Internal(format!("grant {}: unknown provider", grant.id)))?;
        let Some(access_token) = vault::access_token(self.store.master_key(), grant)? else {
            return Ok(None);
        };
        Ok(Some(UpstreamAccessToken {
            provider,
            access_token,
            expires_at: grant.access_token_expires_at,
            scopes: scopes_of(&grant.scopes),
        }))
    }

    /// While another node refreshes: the stored token if it has not expired yet, else retry.
    fn stored_until_expiry(
        &self,
        grant: &upstream_grant::Model,
        now: i64,
    ) -> Result<UpstreamAccessToken> {
        if grant.access_token_expires_at.is_some_and(|exp| exp > now) {
            return self.stored(grant)?.ok_or_else(busy);
        }
        Err(busy())
    }

    /// An EASIE grant's refresh, run as a re-check: decided and applied by its rules.
    async fn refresh_enterprise(
        &self,
        grant: &upstream_grant::Model,
        now: i64,
    ) -> Result<UpstreamAccessToken> {
        if self.gate_of(grant, now) == Gate::Deny {
            return Err(Error::Unavailable("the provider is unavailable beyond the grace".into()));
        }
        // A retry (or another node's re-check) is scheduled: only a token that still works
        // may be handed out meanwhile.
        let regular = grant.last_success_at.saturating_add(self.policy.interval());
        if grant.next_check_at.is_some_and(|t| t > regular && now < t) {
            return self.stored_until_expiry(grant, now);
        }
        if claim_refresh(&self.store, grant, now).await?.is_none() {
            return self.stored_until_expiry(grant, now);
        }
        let recorded = vault::snapshot_from_json(&grant.snapshot)?;
        let (outcome, tokens) = self.refresh_upstream(grant, &recorded).await?;
        let now = self.store.now();
        let decision =
            recheck::decide(&outcome, &recorded, grant.last_success_at, now, &self.policy);
        // Every outcome writes the grant, which also ends the lease.
        self.apply(grant, &decision, tokens.as_ref(), now).await?;
        match (decision, tokens) {
            (Decision::Keep { .. }, Some(t)) => self.refreshed(grant, &t).await,
            (Decision::Revoke(_), _) => {
                Err(Error::Unauthenticated("the upstream account was deprovisioned"))
            }
            _ => Err(Error::Unavailable("the provider did not renew the token".into())),
        }
    }

    /// A consumer grant's refresh: a refused refresh token (or another identity answering)
    /// revokes the grant.
    async fn refresh_consumer(
        &self,
        grant: &upstream_grant::Model,
        now: i64,
    ) -> Result<UpstreamAccessToken> {
        let Some(lease) = claim_refresh(&self.store, grant, now).await? else {
            return self.stored_until_expiry(grant, now);
        };
        let recorded = vault::snapshot_from_json(&grant.snapshot)?;
        let (outcome, tokens) = self.refresh_upstream(grant, &recorded).await?;
        let now = self.store.now();
        let (db, key) = (self.store.db(), self.store.master_key());
        match recheck::decide(&outcome, &recorded, grant.last_success_at, now, &self.policy) {
            Decision::Keep { .. } => {
                let Some(t) = tokens else { return Err(busy()) };
                vault::record_refresh(db, key, grant, &t, None, now).await?;
                self.refreshed(grant, &t).await
            }
            Decision::Revoke(reason) => {
                self.revoke_consumer(grant, reason.reason(), now).await?;
                Err(not_connected())
            }
            Decision::RetryLater { .. } | Decision::FailClosed => {
                self.count_unavailable_refresh();
                match tokens {
                    // The rotated refresh token is the only one that works now.
                    Some(t) => vault::store_tokens(db, key, grant, &t, now).await?,
                    None => release(&self.store, grant, lease, now).await?,
                }
                Err(Error::Unavailable("the provider did not renew the token".into()))
            }
        }
    }

    fn count_unavailable_refresh(&self) {
        self.counters.unavailable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The token a refresh just stored, unless the grant was revoked meanwhile.
    async fn refreshed(
        &self,
        grant: &upstream_grant::Model,
        t: &IssuedTokens,
    ) -> Result<UpstreamAccessToken> {
        let current = upstream_grant::Entity::find_by_id(grant.id.clone())
            .one(self.store.db())
            .await?
            .filter(|g| g.status == vault::STATUS_ACTIVE);
        let Some(current) = current else { return Err(not_connected()) };
        let provider = Upstream::parse(&current.provider)
            .map_err(|_| Error::Internal(format!("grant {}: unknown provider", grant.id)))?;
        Ok(UpstreamAccessToken {
            provider,
            access_token: Zeroizing::new(t.access_token.clone()),
            expires_at: t.expires_at,
            scopes: if t.scopes.is_empty() { scopes_of(&current.scopes) } else { t.scopes.clone() },
        })
    }

    async fn revoke_consumer(
        &self,
        grant: &upstream_grant::Model,
        reason: &str,
        now: i64,
    ) -> Result<()> {
        let txn = self.store.begin_write().await?;
        if vault::revoke(&txn, &grant.id, reason, now).await? {
            let data =
                json!({ "grant_id": grant.id, "provider": grant.provider, "reason": reason });
            audit::record(
                &txn,
                now,
                &Actor::system(),
                "upstream.grant_revoked",
                Some(&grant.user_id),
                data,
            )
            .await?;
        }
        txn.commit().await?;
        Ok(())
    }
}

/// Claims a refresh across nodes: moves `updated_at` from the value read (which must not be
/// in the future: that is another node's lease) to the lease's end, and for an EASIE grant
/// `next_check_at` too, which the re-check claims by (so neither runs while the other does).
/// Returns the lease's end when this call won it; writing the grant afterwards ends it.
async fn claim_refresh(
    store: &Store,
    grant: &upstream_grant::Model,
    now: i64,
) -> Result<Option<i64>> {
    if grant.updated_at > now {
        return Ok(None);
    }
    let lease = now.saturating_add(LEASE_SECS);
    let mut update = upstream_grant::Entity::update_many()
        .col_expr(upstream_grant::Column::UpdatedAt, Expr::value(lease))
        .filter(upstream_grant::Column::Id.eq(grant.id.as_str()))
        .filter(upstream_grant::Column::Status.eq(vault::STATUS_ACTIVE))
        .filter(upstream_grant::Column::UpdatedAt.eq(grant.updated_at));
    if grant.connection_id.is_some() {
        update = update.col_expr(upstream_grant::Column::NextCheckAt, Expr::value(Some(lease)));
        update = match grant.next_check_at {
            Some(t) => update.filter(upstream_grant::Column::NextCheckAt.eq(t)),
            None => update.filter(upstream_grant::Column::NextCheckAt.is_null()),
        };
    }
    Ok((update.exec(store.db()).await?.rows_affected == 1).then_some(lease))
}

/// Gives a lease back (the refresh stored nothing), so the next request may try at once.
async fn release(store: &Store, grant: &upstream_grant::Model, lease: i64, now: i64) -> Result<()> {
    upstream_grant::Entity::update_many()
        .col_expr(upstream_grant::Column::UpdatedAt, Expr::value(now))
        .filter(upstream_grant::Column::Id.eq(grant.id.as_str()))
        .filter(upstream_grant::Column::UpdatedAt.eq(lease))
        .exec(store.db())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_handed_out_only_well_before_its_expiry() {
        assert!(usable(Some(1_000), 1_000 - REFRESH_MARGIN_SECS - 1));
        assert!(!usable(Some(1_000), 1_000 - REFRESH_MARGIN_SECS), "the margin is exclusive");
        assert!(!usable(Some(1_000), 1_000));
        assert!(!usable(Some(1_000), 5_000));
        assert!(!usable(None, 0), "an unknown lifetime is refreshed");
        assert!(!usable(Some(i64::MIN), i64::MAX));
        assert!(usable(Some(i64::MAX), i64::MIN + 1));
    }

    #[test]
    fn stored_scopes_split_on_spaces() {
        assert_eq!(
            scopes_of("openid  email Calendars.Read "),
            ["openid", "email", "Calendars.Read"]
        );
        assert!(scopes_of("").is_empty());
    }
}
