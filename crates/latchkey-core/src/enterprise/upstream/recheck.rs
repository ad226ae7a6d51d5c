//! Deprovisioning, the point of EASIE: an EASIE session lives only as long as the upstream
//! account. Before tokens are minted for a session whose grant was last checked longer ago
//! than `LATCHKEY_EASIE_RECHECK_INTERVAL` (the [`MintGate`]), and in a background sweep, the
//! grant's refresh token is used upstream and `latchkey_easie::recheck::decide` says what the
//! answer means: keep (new tokens stored; Microsoft's rotated refresh token replaces the old),
//! retry later (upstream unreachable, inside `LATCHKEY_EASIE_UPSTREAM_GRACE`), fail closed
//! (beyond it), or revoke: every session of the user for the organisation ends (with
//! back-channel logout), the membership is suspended and the grant forgets its tokens.
//! Nothing brings a revoked session back; only a new valid sign-in makes a new one.
//!
//! One refresh per grant at a time: on a node, checks of the same grant queue behind one lock
//! and the later ones find it fresh; across nodes, the check is claimed with a conditional
//! update of `next_check_at` (a lease), and the loser treats the grant as being checked.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use latchkey_easie::{
    google::GoogleClaims,
    microsoft::MicrosoftClaims,
    recheck::{self, Decision, Gate, IdentitySnapshot, RefreshOutcome},
};
use openidconnect::RefreshToken;
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use serde_json::json;

use super::{
    UpstreamService,
    flow::{issued_tokens, token_error},
    provider::{Target, UpstreamError},
    vault::{self, IssuedTokens},
};
use crate::{
    Error, Result,
    identity::{
        method::{AuthMethod, Upstream},
        mint_gate::{BoxFuture, MintGate},
    },
    infra::{
        audit::{self, Actor},
        entity::{session, upstream_grant},
        store::Store,
    },
    tenancy::orgs,
};

/// How long a claimed check may take before another node may claim it again: longer than the
/// sweep's lead, so a node sweeping ahead never takes over a check under way elsewhere.
const LEASE_SECS: i64 = 600;
/// The most the sweep checks ahead of the interval (half of it, at most this).
const MAX_LEAD_SECS: i64 = 300;

/// How fast a sweep starts checks: the grants due spread over `over_secs`, at least
/// `min_per_sec`; [`Pace::UNPACED`] as fast as the concurrency allows (the benchmark's maximum).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    pub over_secs: f64,
    pub min_per_sec: f64,
}

impl Pace {
    pub const UNPACED: Pace = Pace { over_secs: 0.0, min_per_sec: 0.0 };

    /// Checks per second for `due` grants, or None for no pacing.
    #[allow(clippy::cast_precision_loss)] // grant counts: far below 2^52
    fn rate(self, due: usize) -> Option<f64> {
        (self.over_secs > 0.0).then(|| (due as f64 / self.over_secs).max(self.min_per_sec))
    }
}

/// Per-node locks, one per grant being checked.
#[derive(Default)]
pub(crate) struct InFlight(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl InFlight {
    pub(super) fn lock_for(&self, grant_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let Ok(mut map) = self.0.lock() else { return Arc::default() };
        // Forget locks nobody holds, so the map stays as small as the checks under way.
        map.retain(|_, l| Arc::strong_count(l) > 1);
        map.entry(grant_id.to_owned()).or_default().clone()
    }
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    pub checked: u64,
    pub kept: u64,
    pub revoked: u64,
    pub retrying: u64,
    pub failed_closed: u64,
}

impl UpstreamService {
    /// The upstream discovery target a grant is refreshed at: an EASIE grant at its pinned
    /// tenant, a consumer Microsoft grant through `/common`.
    pub(super) fn target_of(
        grant: &upstream_grant::Model,
        snapshot: &IdentitySnapshot,
    ) -> Result<Target> {
        let bad = || Error::Internal(format!("grant {}: no tenant to refresh at", grant.id));
        match Upstream::parse(&grant.provider) {
            Ok(Upstream::Google) => Ok(Target::Google),
            Ok(Upstream::Microsoft) if grant.connection_id.is_none() => Ok(Target::MicrosoftCommon),
            Ok(Upstream::Microsoft) => {
                let tid = snapshot.tid.as_deref().ok_or_else(bad)?;
                latchkey_easie::TenantId::parse(tid).map(Target::MicrosoftTenant).map_err(|_| bad())
            }
            Err(_) => Err(bad()),
        }
    }

    /// Uses the grant's refresh token upstream and classifies the answer.
    pub(crate) async fn refresh_upstream(
        &self,
        grant: &upstream_grant::Model,
        recorded: &IdentitySnapshot,
    ) -> Result<(RefreshOutcome, Option<IssuedTokens>)> {
        let key = self.store.master_key();
        let Some(refresh) = vault::refresh_token(key, grant)? else {
            // Nothing to refresh with: the account cannot be vouched for.
            return Ok((RefreshOutcome::InvalidGrant, None));
        };
        let target = Self::target_of(grant, recorded)?;
        let outcome = self.exchange_refresh(&target, refresh.as_str()).await;
        Ok(match outcome {
            Ok((Ok(fresh), tokens)) => {
                (RefreshOutcome::Refreshed(fresh.unwrap_or_else(|| recorded.clone())), Some(tokens))
            }
            // Tokens came back but their ID token did not verify: keep the tokens (a rotated
            // refresh token is the only one that still works) but vouch for nothing.
            Ok((Err(e), tokens)) => {
                tracing::info!(grant = grant.id, detail = e.detail, "refreshed ID token refused");
                (RefreshOutcome::Transient, Some(tokens))
            }
            Err(e) if e.reason == "invalid_grant" => (RefreshOutcome::InvalidGrant, None),
            Err(e) => {
                tracing::info!(
                    grant = grant.id,
                    reason = e.reason,
                    detail = e.detail,
                    "upstream refresh failed"
                );
                (RefreshOutcome::Transient, None)
            }
        })
    }

    /// One refresh grant upstream: the tokens, and the snapshot of the refreshed ID token if
    /// one came back (or why it was refused).
    async fn exchange_refresh(
        &self,
        target: &Target,
        refresh: &str,
    ) -> std::result::Result<
        (std::result::Result<Option<IdentitySnapshot>, UpstreamError>, IssuedTokens),
        UpstreamError,
    > {
        let client = self.directory.client(target, &self.redirect_uri(target.provider())).await?;
        let token = RefreshToken::new(refresh.to_owned());
        let request = client
            .exchange_refresh_token(&token)
            .map_err(|e| UpstreamError::refused("token_endpoint_missing", e.to_string()))?;
        let response = request.request_async(self.directory.http()).await.map_err(token_error)?;
        let tokens = issued_tokens(&response, self.store.now());
        let Some(id_token) = openidconnect::TokenResponse::id_token(&response) else {
            return Ok((Ok(None), tokens));
        };
        Ok((self.refreshed_snapshot(target, id_token).await.map(Some), tokens))
    }

    async fn refreshed_snapshot(
        &self,
        target: &Target,
        id_token: &openidconnect::core::CoreIdToken,
    ) -> std::result::Result<IdentitySnapshot, UpstreamError> {
        // An ID token that does not verify says nothing about the account: transient.
        let claims = self
            .directory
            .verify_id_token(target, id_token, None)
            .await
            .map_err(|e| UpstreamError::unavailable(format!("refreshed ID token: {e}")))?;
        let snapshot = match target.provider() {
            Upstream::Google => {
                GoogleClaims::from_value(claims).map(|c| IdentitySnapshot::google(&c))
            }
            Upstream::Microsoft => {
                MicrosoftClaims::from_value(claims).map(|c| IdentitySnapshot::microsoft(&c))
            }
        };
        snapshot.map_err(|e| UpstreamError::unavailable(format!("refreshed ID token: {e}")))
    }

    /// Checks a grant upstream now (unless another check of it is under way, or it became
    /// fresh meanwhile) and applies the decision.
    pub async fn recheck(&self, grant_id: &str) -> Result<Decision> {
        self.recheck_ahead(grant_id, 0).await
    }

    /// [`Self::recheck`] for a grant that will be due within `lead` seconds: the sweep checks
    /// ahead, so that a token request rarely finds its grant stale and waits for upstream.
    async fn recheck_ahead(&self, grant_id: &str, lead: i64) -> Result<Decision> {
        let lock = self.in_flight.lock_for(grant_id);
        let _held = lock.lock().await;
        let db = self.store.db();
        let now = self.store.now();
        let Some(grant) = upstream_grant::Entity::find_by_id(grant_id.to_owned()).one(db).await?
        else {
            return Err(Error::NotFound(format!("grant {grant_id}")));
        };
        if grant.status != vault::STATUS_ACTIVE {
            let reason = recheck::RevokeReason::InvalidGrant;
            return Ok(Decision::Revoke(reason));
        }
        let keep = Decision::Keep { next_check: grant.next_check_at.unwrap_or(now) };
        match (self.gate_of(&grant, now.saturating_add(lead)), self.gate_of(&grant, now)) {
            (Gate::Allow, _) => return Ok(keep),
            (Gate::Deny, Gate::Deny) => return Ok(Decision::FailClosed),
            // Backing off after a failure: not due yet, whatever the lead.
            (Gate::Deny, _) => return Ok(keep),
            (Gate::Refresh, _) => {}
        }
        if !claim(&self.store, &grant, now).await? {
            // Another node is checking it: as good as a retry under way.
            return Ok(self.after_lost_claim(&grant, now));
        }
        let recorded = vault::snapshot_from_json(&grant.snapshot)?;
        let (outcome, tokens) = self.refresh_upstream(&grant, &recorded).await?;
        let now = self.store.now();
        let decision =
            recheck::decide(&outcome, &recorded, grant.last_success_at, now, &self.policy);
        self.apply(&grant, &decision, tokens.as_ref(), now).await?;
        Ok(decision)
    }

    /// How far ahead of the interval the sweep re-checks: a fifth of it, at most two minutes.
    fn sweep_lead(&self) -> i64 {
        (self.policy.interval() / 2).min(MAX_LEAD_SECS)
    }

    /// The background loop's pace: the grants due in a pass are spread over three quarters
    /// of the lead, so that a crowd that signed in together (or a restart) costs the token
    /// endpoint a steady trickle rather than a burst, and is still done before it falls due.
    pub fn sweep_pace(&self) -> Pace {
        #[allow(clippy::cast_precision_loss)] // seconds: far below 2^52
        let over = self.sweep_lead() as f64 * 0.75;
        Pace { over_secs: over, min_per_sec: 5.0 }
    }

    fn after_lost_claim(&self, grant: &upstream_grant::Model, now: i64) -> Decision {
        if now.saturating_sub(grant.last_success_at) <= self.policy.grace() {
            Decision::RetryLater { after: now.saturating_add(LEASE_SECS) }
        } else {
            Decision::FailClosed
        }
    }

    /// The gate for a grant: its `next_check_at` beyond the regular interval is a retry (or a
    /// claimed check) under way.
    pub(super) fn gate_of(&self, grant: &upstream_grant::Model, now: i64) -> Gate {
        let regular = grant.last_success_at.saturating_add(self.policy.interval());
        let retry_after = grant.next_check_at.filter(|t| *t > regular);
        recheck::gate(grant.last_success_at, retry_after, now, &self.policy)
    }

    pub(super) async fn apply(
        &self,
        grant: &upstream_grant::Model,
        decision: &Decision,
        tokens: Option<&IssuedTokens>,
        now: i64,
    ) -> Result<()> {
        let db = self.store.db();
        let key = self.store.master_key();
        if let (false, Some(t)) = (matches!(decision, Decision::Keep { .. }), tokens) {
            vault::store_tokens(db, key, grant, t, now).await?;
        }
        match (decision, tokens) {
            (Decision::Keep { next_check }, Some(t)) => {
                vault::record_refresh(db, key, grant, t, Some(*next_check), now).await?;
            }
            (Decision::Keep { next_check }, None) => {
                vault::postpone(db, &grant.id, *next_check, now).await?;
            }
            (Decision::RetryLater { after }, _) => {
                self.count_unavailable();
                vault::postpone(db, &grant.id, *after, now).await?;
            }
            (Decision::FailClosed, _) => {
                self.count_unavailable();
                // Keep trying, so that the sessions work again when upstream comes back.
                let after = now.saturating_add(recheck::MAX_RETRY_SECS);
                vault::postpone(db, &grant.id, after, now).await?;
            }
            (Decision::Revoke(reason), _) => {
                let detail = match reason {
                    recheck::RevokeReason::IdentityChanged(c) => c.as_str(),
                    _ => "",
                };
                self.deprovision(grant, reason.reason(), detail, &Actor::system()).await?;
            }
        }
        Ok(())
    }

    fn count_unavailable(&self) {
        self.counters.unavailable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Revokes a grant: ends the user's sessions of the organisation, or for a consumer grant
    /// the user's consumer sessions through the provider (back-channel logout follows through
    /// the job outbox), suspends the membership, audits. Returns false when the grant was
    /// revoked already (by another node, or an earlier event).
    pub async fn deprovision(
        &self,
        grant: &upstream_grant::Model,
        reason: &str,
        detail: &str,
        actor: &Actor,
    ) -> Result<bool> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        if !deprovision_in(&txn, grant, reason, detail, actor, now).await? {
            txn.rollback().await?;
            return Ok(false);
        }
        txn.commit().await?;
        self.after_deprovision(grant);
        Ok(true)
    }

    /// What follows a committed [`deprovision_in`]: the outbox runs (back-channel logout), and
    /// this node stops trusting its cached allowance for the user.
    pub(crate) fn after_deprovision(&self, grant: &upstream_grant::Model) {
        self.store.notify_jobs();
        self.forget_allowance(&grant.user_id, &grant.provider);
    }

    /// Checks every EASIE grant that is due (or will be within the sweep's lead), `parallel`
    /// at a time, started at `pace`; returns what it did. One pass over the grants due when it
    /// starts: those that fall due meanwhile wait for the next pass. The background loop runs
    /// it; the benchmark measures it.
    pub async fn recheck_due(&self, parallel: usize, pace: Pace) -> Result<SweepReport> {
        use futures_util::StreamExt as _;
        let lead = self.sweep_lead();
        let horizon = self.store.now().saturating_add(lead);
        let due: Vec<String> = upstream_grant::Entity::find()
            .select_only()
            .column(upstream_grant::Column::Id)
            .filter(upstream_grant::Column::Status.eq(vault::STATUS_ACTIVE))
            .filter(upstream_grant::Column::NextCheckAt.lte(horizon))
            .order_by_asc(upstream_grant::Column::NextCheckAt)
            .into_tuple()
            .all(self.store.db())
            .await?;
        let rate = pace.rate(due.len());
        let start = tokio::time::Instant::now();
        let results = futures_util::stream::iter(due.into_iter().enumerate())
            .then(move |(i, id)| async move {
                if let Some(rate) = rate {
                    #[allow(clippy::cast_precision_loss)] // an index: far below 2^52
                    let at = std::time::Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(start + at).await;
                }
                id
            })
            .map(|id| async move { self.recheck_ahead(&id, lead).await })
            .buffer_unordered(parallel.max(1));
        let mut results = std::pin::pin!(results);
        let mut report = SweepReport::default();
        while let Some(r) = results.next().await {
            report.checked += 1;
            match r? {
                Decision::Keep { .. } => report.kept += 1,
                Decision::Revoke(_) => report.revoked += 1,
                Decision::RetryLater { .. } => report.retrying += 1,
                Decision::FailClosed => report.failed_closed += 1,
            }
        }
        Ok(report)
    }
}

/// [`UpstreamService::deprovision`] in the caller's transaction (a RISC event revokes in the
/// transaction that records its `jti`). The sessions ended are those the grant's identity
/// opened: through its EASIE connection or in its organisation, or, for a consumer grant (no
/// connection), every consumer sign-in through the provider (`oidc:google`).
pub(crate) async fn deprovision_in<C: sea_orm::ConnectionTrait>(
    txn: &C,
    grant: &upstream_grant::Model,
    reason: &str,
    detail: &str,
    actor: &Actor,
    now: i64,
) -> Result<bool> {
    if !vault::revoke(txn, &grant.id, reason, now).await? {
        return Ok(false);
    }
    let mut sessions = Condition::any();
    if let Ok(p) = Upstream::parse(&grant.provider) {
        let method =
            AuthMethod::UpstreamOidc { upstream: p, connection_id: grant.connection_id.clone() };
        sessions = sessions.add(session::Column::AuthMethod.eq(method.to_stored()));
    }
    let mut suspended = false;
    if let Some(org) = &grant.org_id {
        sessions = sessions.add(session::Column::ActiveOrgId.eq(org.as_str()));
        suspended = orgs::suspend_member(txn, org, &grant.user_id, now).await?;
    }
    let filter =
        Condition::all().add(session::Column::UserId.eq(grant.user_id.as_str())).add(sessions);
    let ended =
        crate::identity::sessions::end_matching(txn, filter, "upstream_deprovisioned", now).await?;
    let data = json!({
        "grant_id": grant.id, "provider": grant.provider, "connection_id": grant.connection_id,
        "org_id": grant.org_id, "reason": reason, "detail": detail,
        "sessions_ended": ended, "membership_suspended": suspended,
    });
    audit::record(txn, now, actor, "upstream.deprovisioned", Some(&grant.user_id), data).await?;
    Store::bump_revision(txn).await?;
    Ok(true)
}

/// Claims a due check across nodes: moves `next_check_at` from the value read to a lease.
async fn claim(store: &Store, grant: &upstream_grant::Model, now: i64) -> Result<bool> {
    let mut update = upstream_grant::Entity::update_many()
        .col_expr(
            upstream_grant::Column::NextCheckAt,
            Expr::value(Some(now.saturating_add(LEASE_SECS))),
        )
        .filter(upstream_grant::Column::Id.eq(grant.id.as_str()))
        .filter(upstream_grant::Column::Status.eq(vault::STATUS_ACTIVE));
    update = match grant.next_check_at {
        Some(t) => update.filter(upstream_grant::Column::NextCheckAt.eq(t)),
        None => update.filter(upstream_grant::Column::NextCheckAt.is_null()),
    };
    Ok(update.exec(store.db()).await?.rows_affected == 1)
}

impl MintGate for UpstreamService {
    fn before_mint<'a>(
        &'a self,
        user_id: &'a str,
        method: &'a AuthMethod,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let AuthMethod::UpstreamOidc { upstream, connection_id: Some(_) } = method else {
                return Ok(());
            };
            let now = self.store.now();
            if self.allowed_until(user_id, upstream.as_str()).is_some_and(|until| now < until) {
                return Ok(());
            }
            let refused = |why| Err(Error::Unauthenticated(why));
            let Some(grant) = vault::find(self.store.db(), user_id, *upstream).await? else {
                return refused("no upstream grant for this session");
            };
            if grant.status != vault::STATUS_ACTIVE {
                return refused("the upstream account was deprovisioned");
            }
            let decision = match self.gate_of(&grant, now) {
                Gate::Allow => {
                    Decision::Keep { next_check: grant.last_success_at + self.policy.interval() }
                }
                Gate::Deny => Decision::FailClosed,
                Gate::Refresh => self.recheck(&grant.id).await?,
            };
            match decision {
                Decision::Keep { next_check } => {
                    self.allow_until(user_id, upstream.as_str(), next_check);
                    Ok(())
                }
                Decision::RetryLater { .. } => Ok(()),
                Decision::Revoke(_) => refused("the upstream account was deprovisioned"),
                Decision::FailClosed => {
                    refused("the upstream provider is unavailable beyond the grace")
                }
            }
        })
    }
}
