//! Server-side sessions: the revocable half of the hybrid model. The browser holds a random
//! secret; the store holds its hash and the session's state.

use std::time::Duration;

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use serde_json::json;

use crate::{
    Error, Result, Settings,
    identity::method::AuthMethod,
    identity::model::{Session, SessionStatus, UserStatus},
    infra::audit::{self, Actor},
    infra::crypto,
    infra::entity::{session, user},
    infra::ids,
    infra::jobs::{self, Job},
    infra::store::Store,
};

/// Queues the news that `session_ids` ended, in the transaction that ends them, so it is sent
/// exactly when the change commits: one [`Job::SessionsEnded`], whose handler (on the OAuth side)
/// tells the clients that got tokens for these sessions. Returns whether a job was queued
/// (nothing for no sessions); call [`Store::notify_jobs`] after committing.
pub(crate) async fn enqueue_ended<C: ConnectionTrait>(
    conn: &C,
    session_ids: &[String],
    now: i64,
) -> Result<bool> {
    if session_ids.is_empty() {
        return Ok(false);
    }
    let job = Job::SessionsEnded { session_ids: session_ids.to_vec() };
    Ok(jobs::enqueue(conn, &job, now, None).await?.is_some())
}

/// Active session ids matching `filter`, taken before they are ended so the caller can queue
/// the news of their end in the same transaction.
pub(crate) async fn active_session_ids<C: ConnectionTrait>(
    conn: &C,
    filter: Condition,
) -> Result<Vec<String>> {
    Ok(session::Entity::find()
        .select_only()
        .column(session::Column::Id)
        .filter(session::Column::Status.eq(SessionStatus::Active.as_str()))
        .filter(filter)
        .into_tuple()
        .all(conn)
        .await?)
}

/// Where a new session comes from.
#[derive(Debug, Clone)]
pub struct SessionOrigin {
    pub auth_method: AuthMethod,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// The organisation active from the start (signed in through its connection).
    pub active_org_id: Option<String>,
}

/// An operator's session (`latchkey sessions create`), from nowhere in particular.
impl Default for SessionOrigin {
    fn default() -> Self {
        Self {
            auth_method: AuthMethod::Operator,
            client_ip: None,
            user_agent: None,
            active_org_id: None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    pub idle_timeout_secs: i64,
    pub absolute_timeout_secs: i64,
}

#[derive(Clone)]
pub struct SessionService {
    store: Store,
    policy: SessionPolicy,
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

/// How often each node looks for sessions that expired while stored as active.
pub const EXPIRY_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// A session is swept this long after its stored idle expiry, not at once: another node may have
/// seen activity that it has not written yet (it writes every 10 s), which moves the expiry.
pub const IDLE_SWEEP_GRACE: Duration = Duration::from_secs(60);
/// Sessions that expired longer ago than this (a backlog after downtime or an upgrade) are
/// marked without notifying clients: the job outbox gives up on such old news anyway.
const EXPIRY_NOTIFY_HORIZON: Duration = Duration::from_secs(24 * 3600);
const SWEEP_BATCH: u64 = 200;

impl SessionService {
    pub fn new(store: Store, settings: &Settings) -> Self {
        Self {
            store,
            policy: SessionPolicy {
                idle_timeout_secs: secs(settings.session_idle_timeout),
                absolute_timeout_secs: secs(settings.session_absolute_timeout),
            },
        }
    }

    pub fn policy(&self) -> SessionPolicy {
        self.policy
    }

    /// Starts a session for an active user; returns it with the secret for the cookie, which
    /// is never stored or shown again.
    /// Signing in goes through `sign_in::complete`, which starts sessions in its own
    /// transaction; this is for operators and tools (`latchkey sessions create`).
    pub async fn create(
        &self,
        user_id: &str,
        origin: SessionOrigin,
        actor: &Actor,
    ) -> Result<(Session, String)> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        let u = stamp_sign_in(&txn, user_id, now).await?;
        let mut events = audit::Batch::default();
        let started = self.start_in(&txn, &u, &origin, actor, now, &mut events).await?;
        events.write(&txn).await?;
        txn.commit().await?;
        Ok(started)
    }

    /// Starts a session for `u` (as returned by [`stamp_sign_in`] in the
    /// caller's transaction), after checking the user is active. Its audit event goes into
    /// `events`, which the caller writes before committing.
    pub(crate) async fn start_in<C: ConnectionTrait>(
        &self,
        txn: &C,
        u: &user::Model,
        origin: &SessionOrigin,
        actor: &Actor,
        now: i64,
        events: &mut audit::Batch,
    ) -> Result<(Session, String)> {
        let user_id = u.id.as_str();
        if UserStatus::parse(&u.status) != UserStatus::Active {
            return Err(Error::Conflict(format!("user {user_id} is {}", u.status)));
        }
        let secret = crypto::random_secret();
        let model = session::ActiveModel {
            id: Set(ids::new_id(ids::SESSION)),
            secret_hash: Set(crypto::hash_secret_hex(&secret)),
            user_id: Set(user_id.to_owned()),
            status: Set(SessionStatus::Active.as_str().into()),
            end_reason: Set(None),
            auth_method: Set(origin.auth_method.to_stored()),
            client_ip: Set(origin.client_ip.clone()),
            user_agent: Set(origin.user_agent.clone()),
            active_org_id: Set(origin.active_org_id.clone()),
            created_at: Set(now),
            last_active_at: Set(now),
            idle_expires_at: Set(now + self.policy.idle_timeout_secs),
            expires_at: Set(now + self.policy.absolute_timeout_secs),
            ended_at: Set(None),
            reauthenticated_at: Set(None),
        }
        .insert(txn)
        .await?;
        events.add(
            now,
            actor,
            "session.created",
            Some(&model.id),
            json!({ "user_id": user_id, "auth_method": origin.auth_method }),
        );
        Ok((Session::from_model(model, now), secret))
    }

    pub async fn get(&self, id: &str) -> Result<Session> {
        session::Entity::find_by_id(id.to_owned())
            .one(self.store.db())
            .await?
            .map(|m| Session::from_model(m, self.store.now()))
            .ok_or_else(|| Error::NotFound(format!("session {id}")))
    }

    /// The raw row for a cookie secret, whatever its state.
    pub(crate) async fn find_model_by_secret_hash(
        &self,
        hash_hex: &str,
    ) -> Result<Option<session::Model>> {
        Ok(session::Entity::find()
            .filter(session::Column::SecretHash.eq(hash_hex))
            .one(self.store.db())
            .await?)
    }

    /// Sessions, newest first; only those still active unless `include_ended`.
    pub async fn list(
        &self,
        user_id: Option<&str>,
        include_ended: bool,
        limit: u64,
    ) -> Result<Vec<Session>> {
        let now = self.store.now();
        let mut q = session::Entity::find();
        if let Some(u) = user_id {
            q = q.filter(session::Column::UserId.eq(u));
        }
        if !include_ended {
            q = q
                .filter(session::Column::Status.eq(SessionStatus::Active.as_str()))
                .filter(session::Column::ExpiresAt.gt(now))
                .filter(session::Column::IdleExpiresAt.gt(now));
        }
        Ok(q.order_by_desc(session::Column::CreatedAt)
            .limit(limit)
            .all(self.store.db())
            .await?
            .into_iter()
            .map(|m| Session::from_model(m, now))
            .collect())
    }

    /// Revokes one session; the next token request for it, on any node, gets 401.
    /// Returns false when it was not active.
    pub async fn revoke(&self, id: &str, reason: &str, actor: &Actor) -> Result<bool> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        if session::Entity::find_by_id(id.to_owned()).one(&txn).await?.is_none() {
            return Err(Error::NotFound(format!("session {id}")));
        }
        let res = session::Entity::update_many()
            .col_expr(session::Column::Status, Expr::value(SessionStatus::Revoked.as_str()))
            .col_expr(session::Column::EndReason, Expr::value(reason))
            .col_expr(session::Column::EndedAt, Expr::value(now))
            .filter(session::Column::Id.eq(id))
            .filter(session::Column::Status.eq(SessionStatus::Active.as_str()))
            .exec(&txn)
            .await?;
        let changed = res.rows_affected > 0;
        if changed {
            enqueue_ended(&txn, &[id.to_owned()], now).await?;
            audit::record(
                &txn,
                now,
                actor,
                "session.revoked",
                Some(id),
                json!({ "reason": reason }),
            )
            .await?;
            Store::bump_revision(&txn).await?;
        }
        txn.commit().await?;
        if changed {
            self.store.notify_jobs();
        }
        Ok(changed)
    }

    /// Revokes every active session of a user, optionally sparing one (the caller's own).
    pub async fn revoke_all_for_user(
        &self,
        user_id: &str,
        reason: &str,
        actor: &Actor,
    ) -> Result<u64> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        let n = revoke_user_sessions(&txn, user_id, reason, now).await?;
        audit::record(
            &txn,
            now,
            actor,
            "session.revoked_all",
            Some(user_id),
            json!({ "reason": reason, "count": n }),
        )
        .await?;
        Store::bump_revision(&txn).await?;
        txn.commit().await?;
        self.store.notify_jobs();
        Ok(n)
    }

    /// Revokes every active session of a user except `keep` ("sign out everywhere else").
    pub async fn revoke_others(&self, user_id: &str, keep: &str, actor: &Actor) -> Result<u64> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        let ids = active_session_ids(
            &txn,
            Condition::all()
                .add(session::Column::UserId.eq(user_id))
                .add(session::Column::Id.ne(keep)),
        )
        .await?;
        let res = session::Entity::update_many()
            .col_expr(session::Column::Status, Expr::value(SessionStatus::Revoked.as_str()))
            .col_expr(session::Column::EndReason, Expr::value("signed_out_elsewhere"))
            .col_expr(session::Column::EndedAt, Expr::value(now))
            .filter(session::Column::Id.is_in(ids.iter().cloned()))
            .filter(session::Column::Status.eq(SessionStatus::Active.as_str()))
            .exec(&txn)
            .await?;
        enqueue_ended(&txn, &ids, now).await?;
        audit::record(
            &txn,
            now,
            actor,
            "session.revoked_others",
            Some(user_id),
            json!({ "kept": keep, "count": res.rows_affected }),
        )
        .await?;
        Store::bump_revision(&txn).await?;
        txn.commit().await?;
        self.store.notify_jobs();
        Ok(res.rows_affected)
    }

    /// Records that the session's user entered their password again at `now`; only a live
    /// session can be refreshed.
    pub async fn mark_reauthenticated<C: ConnectionTrait>(
        &self,
        conn: &C,
        id: &str,
        now: i64,
    ) -> Result<()> {
        let res = session::Entity::update_many()
            .col_expr(session::Column::ReauthenticatedAt, Expr::value(now))
            .filter(session::Column::Id.eq(id))
            .filter(session::Column::Status.eq(SessionStatus::Active.as_str()))
            .exec(conn)
            .await?;
        if res.rows_affected == 0 {
            return Err(Error::Unauthenticated("the session has ended"));
        }
        Ok(())
    }

    /// Ends a session by its owner's choice (sign-out).
    pub async fn end(&self, id: &str, actor: &Actor) -> Result<bool> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        let res = session::Entity::update_many()
            .col_expr(session::Column::Status, Expr::value(SessionStatus::Ended.as_str()))
            .col_expr(session::Column::EndReason, Expr::value("sign_out"))
            .col_expr(session::Column::EndedAt, Expr::value(now))
            .filter(session::Column::Id.eq(id))
            .filter(session::Column::Status.eq(SessionStatus::Active.as_str()))
            .exec(&txn)
            .await?;
        if res.rows_affected > 0 {
            enqueue_ended(&txn, &[id.to_owned()], now).await?;
            audit::record(&txn, now, actor, "session.ended", Some(id), json!({})).await?;
            Store::bump_revision(&txn).await?;
        }
        txn.commit().await?;
        if res.rows_affected > 0 {
            self.store.notify_jobs();
        }
        Ok(res.rows_affected > 0)
    }

    /// Makes `org_id` the session's active organisation (None clears it); the user must be a member.
    pub async fn set_active_org(
        &self,
        session_id: &str,
        org_id: Option<&str>,
        actor: &Actor,
    ) -> Result<()> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        let s = session::Entity::find_by_id(session_id.to_owned())
            .one(&txn)
            .await?
            .ok_or_else(|| Error::NotFound(format!("session {session_id}")))?;
        if let Some(org_id) = org_id {
            // A suspended membership grants nothing, not even choosing the organisation.
            let member = super::subject::find_active_membership(&txn, org_id, &s.user_id).await?;
            if member.is_none() {
                return Err(Error::invalid(
                    "org_id",
                    "the user is not a member of this organisation",
                ));
            }
        }
        let mut am: session::ActiveModel = s.into();
        am.active_org_id = Set(org_id.map(str::to_owned));
        am.update(&txn).await?;
        audit::record(
            &txn,
            now,
            actor,
            "session.org_switched",
            Some(session_id),
            json!({ "org_id": org_id }),
        )
        .await?;
        Store::bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Marks sessions that are past their absolute or idle expiry but still stored as active as
    /// `expired` (`end_reason` `absolute_timeout` or `idle_timeout`, `ended_at` the moment they
    /// expired), and queues back-channel logout for them in the same transaction. Each session
    /// is claimed with a conditional UPDATE (still active, still expired), so when several nodes
    /// sweep at once exactly one of them marks and notifies it. Idle expiry is acted on only
    /// [`IDLE_SWEEP_GRACE`] after the stored time. Returns how many sessions this call marked.
    pub async fn sweep_expired(&self) -> Result<u64> {
        let mut marked = 0;
        loop {
            let (n, full) = self.sweep_batch().await?;
            marked += n;
            // Stop when nothing is left, or when another node took this whole batch.
            if !full || n == 0 {
                return Ok(marked);
            }
        }
    }

    async fn sweep_batch(&self) -> Result<(u64, bool)> {
        let now = self.store.now();
        let idle_cutoff = now - secs(IDLE_SWEEP_GRACE);
        let absolute = || session::Column::ExpiresAt.lte(now);
        let idle = || session::Column::IdleExpiresAt.lte(idle_cutoff);
        let txn = self.store.begin_write().await?;
        let due: Vec<(String, i64, i64)> = session::Entity::find()
            .select_only()
            .column(session::Column::Id)
            .column(session::Column::ExpiresAt)
            .column(session::Column::IdleExpiresAt)
            .filter(session::Column::Status.eq(SessionStatus::Active.as_str()))
            .filter(Condition::any().add(absolute()).add(idle()))
            .order_by_asc(session::Column::Id)
            .limit(SWEEP_BATCH)
            .into_tuple()
            .all(&txn)
            .await?;
        let full = due.len() as u64 == SWEEP_BATCH;
        let mut marked = 0;
        let mut notify = Vec::new();
        for (id, expires_at, idle_expires_at) in due {
            // Re-checked by the claim: the condition that made the session due.
            let still_due = if expires_at <= now { absolute() } else { idle() };
            let (reason, expired_at) = if idle_expires_at < expires_at {
                ("idle_timeout", idle_expires_at)
            } else {
                ("absolute_timeout", expires_at)
            };
            // The claim: only the sweep whose update changes the row marks and notifies.
            let res = session::Entity::update_many()
                .col_expr(session::Column::Status, Expr::value(SessionStatus::Expired.as_str()))
                .col_expr(session::Column::EndReason, Expr::value(reason))
                .col_expr(session::Column::EndedAt, Expr::value(expired_at))
                .filter(session::Column::Id.eq(id.as_str()))
                .filter(session::Column::Status.eq(SessionStatus::Active.as_str()))
                .filter(still_due)
                .exec(&txn)
                .await?;
            if res.rows_affected == 0 {
                continue;
            }
            marked += 1;
            if expired_at >= now - secs(EXPIRY_NOTIFY_HORIZON) {
                notify.push(id);
            }
        }
        let queued = enqueue_ended(&txn, &notify, now).await?;
        if marked > 0 {
            Store::bump_revision(&txn).await?;
        }
        txn.commit().await?;
        if queued {
            self.store.notify_jobs();
        }
        if marked > 0 {
            tracing::info!(sessions = marked, notified = notify.len(), "marked expired sessions");
        }
        Ok((marked, full))
    }

    /// Background loop: [`Self::sweep_expired`] every [`EXPIRY_SWEEP_INTERVAL`].
    pub fn spawn_expiry_sweeper(&self) -> tokio::task::JoinHandle<()> {
        let service = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EXPIRY_SWEEP_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate: start with the next one.
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = service.sweep_expired().await {
                    tracing::warn!(error = %e, "session expiry sweep failed");
                }
            }
        })
    }

    /// Number of sessions per stored status, for metrics.
    pub async fn count_by_status(&self) -> Result<Vec<(String, u64)>> {
        use sea_orm::{FromQueryResult, sea_query::ExprTrait};
        #[derive(FromQueryResult)]
        struct Row {
            status: String,
            n: i64,
        }
        let rows = session::Entity::find()
            .select_only()
            .column(session::Column::Status)
            .column_as(Expr::col(session::Column::Id).count(), "n")
            .group_by(session::Column::Status)
            .into_model::<Row>()
            .all(self.store.db())
            .await?;
        Ok(rows.into_iter().map(|r| (r.status, u64::try_from(r.n).unwrap_or(0))).collect())
    }

    /// Writes batched activity: each session's last-active time and the idle expiry it implies.
    /// Only moves times forward and only for sessions still active.
    pub async fn record_activity(&self, touches: &[(String, i64)]) -> Result<()> {
        if touches.is_empty() {
            return Ok(());
        }
        let txn = self.store.begin_write().await?;
        for (id, at) in touches {
            session::Entity::update_many()
                .col_expr(session::Column::LastActiveAt, Expr::value(*at))
                .col_expr(
                    session::Column::IdleExpiresAt,
                    Expr::value(at + self.policy.idle_timeout_secs),
                )
                .filter(session::Column::Id.eq(id.as_str()))
                .filter(session::Column::Status.eq(SessionStatus::Active.as_str()))
                .filter(session::Column::LastActiveAt.lt(*at))
                .filter(session::Column::ExpiresAt.gt(*at))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(())
    }
}

/// Ends every active session of a user in the caller's transaction; returns how many.
pub(crate) async fn revoke_user_sessions<C: sea_orm::ConnectionTrait>(
    conn: &C,
    user_id: &str,
    reason: &str,
    now: i64,
) -> Result<u64> {
    let filter = sea_orm::Condition::all().add(session::Column::UserId.eq(user_id));
    end_matching(conn, filter, reason, now).await
}

/// Ends (revokes) every active session matching `filter` in the caller's transaction, queueing
/// the news of their end with it; returns how many.
pub(crate) async fn end_matching<C: sea_orm::ConnectionTrait>(
    conn: &C,
    filter: Condition,
    reason: &str,
    now: i64,
) -> Result<u64> {
    let ids = active_session_ids(conn, filter).await?;
    let res = session::Entity::update_many()
        .col_expr(
            session::Column::Status,
            sea_orm::sea_query::Expr::value(SessionStatus::Revoked.as_str()),
        )
        .col_expr(session::Column::EndReason, sea_orm::sea_query::Expr::value(reason))
        .col_expr(session::Column::EndedAt, sea_orm::sea_query::Expr::value(now))
        .filter(session::Column::Id.is_in(ids.iter().cloned()))
        .filter(session::Column::Status.eq(SessionStatus::Active.as_str()))
        .exec(conn)
        .await?;
    // Queued with the revocation, so clients hear of it exactly when it commits.
    enqueue_ended(conn, &ids, now).await?;
    if res.rows_affected > 0 {
        // Cached sessions on every node are checked against the revision.
        Store::bump_revision(conn).await?;
    }
    Ok(res.rows_affected)
}

/// Records that `user_id` signs in now and returns the account as it stands: one statement
/// that both stamps and reads it. Called inside the sign-in's transaction, so a sign-in that is
/// then refused (an inactive account) leaves no stamp.
pub(crate) async fn stamp_sign_in<C: ConnectionTrait>(
    txn: &C,
    user_id: &str,
    now: i64,
) -> Result<user::Model> {
    use sea_orm::sea_query::Expr;
    user::Entity::update_many()
        .col_expr(user::Column::LastSignInAt, Expr::value(now))
        .filter(user::Column::Id.eq(user_id))
        .exec_with_returning(txn)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| Error::NotFound(format!("user {user_id}")))
}
