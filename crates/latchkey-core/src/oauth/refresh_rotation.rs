//! Refresh-token rotation as group commit. Every rotation is a write; one transaction per
//! request would make the database's commit rate the ceiling of the refresh grant. Requests
//! queue their job; whoever takes the lock runs everything queued so far in one transaction and
//! hands each caller its result. Jobs arriving meanwhile form the next batch.
//!
//! On SQLite the batch runs on the store's own write connection on a blocking thread: one hop
//! per batch, where the pool costs a worker-thread round trip per statement. PostgreSQL runs the
//! same logic through sea-orm (one UPDATE … RETURNING claims the batch, one INSERT stores the
//! successors).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, sea_query::Expr,
};

use crate::{
    Error, Result,
    infra::entity::{oauth_code, oauth_refresh_token},
    infra::store::Store,
    oauth::model::{RefreshGrant, refresh_model},
};

/// Most refresh-token rotations one write transaction takes on.
const ROTATION_BATCH: usize = 64;

/// One refresh token to rotate.
pub(crate) struct RotationJob {
    pub hash: String,
    pub client_id: String,
    pub ttl_secs: i64,
}

/// What a rotation job came to, inside the batch transaction.
pub(crate) enum Claim {
    /// `row` is the presented token (now marked rotated); `token` its stored successor.
    Rotated {
        row: Box<oauth_refresh_token::Model>,
        token: String,
    },
    Invalid(&'static str),
    Reused,
}

/// What is known of a presented token that could not be claimed.
struct Unclaimable<'a> {
    family_id: &'a str,
    client_id: &'a str,
    revoked: bool,
    rotated: bool,
    expires_at: i64,
}

/// Why a token could not be claimed, the one rule both batch paths apply. `Reused` means the
/// caller must revoke the family (`found.family_id`).
fn classify(job: &RotationJob, found: Option<&Unclaimable<'_>>, now: i64) -> Claim {
    match found {
        None => Claim::Invalid("unknown refresh token"),
        Some(r) if r.client_id != job.client_id => {
            Claim::Invalid("refresh token was issued to another client")
        }
        Some(r) if r.revoked => Claim::Invalid("refresh token revoked"),
        Some(r) if r.rotated => {
            tracing::warn!(family = %r.family_id, client_id = %job.client_id, "rotated refresh token reused; family revoked");
            Claim::Reused
        }
        Some(r) if now >= r.expires_at => Claim::Invalid("refresh token expired"),
        Some(_) => Claim::Invalid("refresh token could not be rotated"),
    }
}

type Reply = tokio::sync::oneshot::Sender<std::result::Result<Claim, String>>;

/// The queue of rotations waiting for the next batch (see the module documentation).
#[derive(Default)]
pub(crate) struct RotationQueue {
    pending: std::sync::Mutex<Vec<(RotationJob, Reply)>>,
    running: Arc<tokio::sync::Mutex<()>>,
}

impl RotationQueue {
    pub(crate) async fn submit(&self, store: &Store, job: RotationJob) -> Result<Claim> {
        let lost = || Error::Internal("refresh rotation was not completed".into());
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        self.pending.lock().map_err(|_| lost())?.push((job, tx));
        let guard = self.running.clone().lock_owned().await;
        match rx.try_recv() {
            Ok(result) => return result.map_err(Error::Internal),
            Err(tokio::sync::oneshot::error::TryRecvError::Closed) => return Err(lost()),
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
        }
        let jobs = std::mem::take(&mut *self.pending.lock().map_err(|_| lost())?);
        // Detached, holding the lock: a caller that goes away cannot abandon the batch half-way.
        let store = store.clone();
        let batch = tokio::spawn(async move {
            for chunk in chunks(jobs, ROTATION_BATCH) {
                let (jobs, replies): (Vec<_>, Vec<_>) = chunk.into_iter().unzip();
                let count = jobs.len();
                match rotate_batch(&store, jobs).await {
                    Ok(claims) => {
                        for (reply, claim) in replies.into_iter().zip(claims) {
                            let _ = reply.send(Ok(claim));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, jobs = count, "refresh rotation batch failed");
                        for reply in replies {
                            let _ = reply.send(Err(e.to_string()));
                        }
                    }
                }
            }
            drop(guard);
        });
        let _ = batch.await;
        rx.await.map_err(|_| lost())?.map_err(Error::Internal)
    }
}

fn chunks<T>(mut items: Vec<T>, size: usize) -> Vec<Vec<T>> {
    let mut out = Vec::with_capacity(items.len().div_ceil(size));
    while items.len() > size {
        let rest = items.split_off(size);
        out.push(std::mem::replace(&mut items, rest));
    }
    if !items.is_empty() {
        out.push(items);
    }
    out
}

/// Rotates every job's token in one transaction; returns one claim per job, in order.
async fn rotate_batch(store: &Store, jobs: Vec<RotationJob>) -> Result<Vec<Claim>> {
    let jobs = match sqlite::rotate(store, jobs).await {
        Ok(claims) => return claims,
        Err(jobs) => jobs,
    };
    let now = store.now();
    let txn = store.begin_write().await?;
    let claimed = claim_all(&txn, &jobs, now).await?;
    let found = find_unclaimed(&txn, &jobs, &claimed).await?;
    let revoked = revoked_families(&txn, claimed.values().chain(found.values())).await?;
    let settled = settle(&jobs, claimed, &found, &revoked, now);
    if !settled.successors.is_empty() {
        oauth_refresh_token::Entity::insert_many(settled.successors)
            .exec_without_returning(&txn)
            .await?;
    }
    if !settled.reused.is_empty() {
        oauth_code::Entity::update_many()
            .col_expr(oauth_code::Column::RevokedAt, Expr::value(now))
            .filter(oauth_code::Column::Id.is_in(settled.reused))
            .filter(oauth_code::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        // Their access tokens are checked against revision-tagged grant states.
        crate::infra::store::Store::bump_revision(&txn).await?;
    }
    txn.commit().await?;
    Ok(settled.claims)
}

type ByHash = HashMap<String, oauth_refresh_token::Model>;

/// One `UPDATE … RETURNING` marks every claimable token of the batch rotated.
async fn claim_all<C: ConnectionTrait>(conn: &C, jobs: &[RotationJob], now: i64) -> Result<ByHash> {
    let mut wanted = Condition::any();
    for job in jobs {
        wanted = wanted.add(
            Condition::all()
                .add(oauth_refresh_token::Column::TokenHash.eq(&job.hash))
                // A token presented by another client says nothing about its owner: keep it.
                .add(oauth_refresh_token::Column::ClientId.eq(&job.client_id)),
        );
    }
    let claimed = oauth_refresh_token::Entity::update_many()
        .col_expr(oauth_refresh_token::Column::RotatedAt, Expr::value(now))
        .filter(wanted)
        .filter(oauth_refresh_token::Column::RotatedAt.is_null())
        .filter(oauth_refresh_token::Column::RevokedAt.is_null())
        .filter(oauth_refresh_token::Column::ExpiresAt.gt(now))
        .exec_with_returning(conn)
        .await?;
    Ok(claimed.into_iter().map(|m| (m.token_hash.clone(), m)).collect())
}

/// The stored rows of the tokens that could not be claimed, to say why.
async fn find_unclaimed<C: ConnectionTrait>(
    conn: &C,
    jobs: &[RotationJob],
    claimed: &ByHash,
) -> Result<ByHash> {
    let unclaimed: Vec<String> =
        jobs.iter().map(|j| j.hash.clone()).filter(|h| !claimed.contains_key(h)).collect();
    if unclaimed.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(oauth_refresh_token::Entity::find()
        .filter(oauth_refresh_token::Column::TokenHash.is_in(unclaimed))
        .all(conn)
        .await?
        .into_iter()
        .map(|m| (m.token_hash.clone(), m))
        .collect())
}

/// Which of the rows' families are revoked (recorded on the code that started each).
async fn revoked_families<'a, C: ConnectionTrait>(
    conn: &C,
    rows: impl Iterator<Item = &'a oauth_refresh_token::Model>,
) -> Result<HashSet<String>> {
    let families: Vec<String> = rows.map(|m| m.family_id.clone()).collect();
    Ok(oauth_code::Entity::find()
        .select_only()
        .column(oauth_code::Column::Id)
        .filter(oauth_code::Column::Id.is_in(families))
        .filter(
            Condition::any()
                .add(oauth_code::Column::RevokedAt.is_not_null())
                .add(oauth_code::Column::ReplayedAt.is_not_null()),
        )
        .into_tuple::<String>()
        .all(conn)
        .await?
        .into_iter()
        .collect())
}

/// What a batch comes to: a claim per job, the successors to store and the families to revoke.
struct Settled {
    claims: Vec<Claim>,
    successors: Vec<oauth_refresh_token::ActiveModel>,
    reused: Vec<String>,
}

fn settle(
    jobs: &[RotationJob],
    mut claimed: ByHash,
    found: &ByHash,
    revoked: &HashSet<String>,
    now: i64,
) -> Settled {
    let mut out = Settled {
        claims: Vec::with_capacity(jobs.len()),
        successors: Vec::new(),
        reused: Vec::new(),
    };
    let mut rotated_here: HashMap<&str, String> = HashMap::new();
    for job in jobs {
        let claim = if let Some(row) = claimed.remove(&job.hash) {
            rotated_here.insert(&job.hash, row.family_id.clone());
            if revoked.contains(&row.family_id) {
                Claim::Invalid("refresh token revoked")
            } else {
                let grant = RefreshGrant {
                    family_id: row.family_id.clone(),
                    client_id: row.client_id.clone(),
                    user_id: row.user_id.clone(),
                    session_id: row.session_id.clone(),
                    scopes: Vec::new(),
                    auth_time: row.auth_time,
                    resources: Vec::new(),
                };
                let (mut model, token) =
                    refresh_model(&grant, row.scopes.clone(), job.ttl_secs, now);
                model.resources = sea_orm::ActiveValue::Set(row.resources.clone());
                out.successors.push(model);
                Claim::Rotated { row: Box::new(row), token }
            }
        } else if let Some(family) = rotated_here.get(job.hash.as_str()) {
            // The same token twice in one batch: the first use won, this one is reuse.
            out.reused.push(family.clone());
            Claim::Reused
        } else {
            let found = found.get(&job.hash).map(|r| Unclaimable {
                family_id: &r.family_id,
                client_id: &r.client_id,
                revoked: r.revoked_at.is_some() || revoked.contains(&r.family_id),
                rotated: r.rotated_at.is_some(),
                expires_at: r.expires_at,
            });
            let claim = classify(job, found.as_ref(), now);
            if let (Claim::Reused, Some(r)) = (&claim, &found) {
                out.reused.push(r.family_id.to_owned());
            }
            claim
        };
        out.claims.push(claim);
    }
    out
}

/// The batch on the store's own SQLite connection: per job, one cached statement claims the
/// token (UPDATE … RETURNING) and one stores its successor, all in one immediate transaction.
mod sqlite {
    use rusqlite::{OptionalExtension, TransactionBehavior, params};

    use super::{Claim, RotationJob, Unclaimable, classify};
    use crate::{
        Error, Result, infra::crypto, infra::entity::oauth_refresh_token, infra::ids,
        infra::store::Store,
    };

    /// The claims, or the jobs back when the store has no SQLite writer.
    pub(super) async fn rotate(
        store: &Store,
        jobs: Vec<RotationJob>,
    ) -> std::result::Result<Result<Vec<Claim>>, Vec<RotationJob>> {
        if !store.has_sqlite_writer() {
            return Err(jobs);
        }
        let now = store.now();
        let outcome = store.with_sqlite_writer(move |conn| rotate_in(conn, &jobs, now)).await;
        Ok(outcome.unwrap_or_else(|| Err(Error::Internal("no SQLite writer".into()))))
    }

    fn rotate_in(
        conn: &mut rusqlite::Connection,
        jobs: &[RotationJob],
        now: i64,
    ) -> Result<Vec<Claim>> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut claims = Vec::with_capacity(jobs.len());
        {
            let mut statements = Statements::prepare(&tx)?;
            for job in jobs {
                claims.push(statements.rotate(job, now)?);
            }
        }
        tx.commit()?;
        Ok(claims)
    }

    /// The batch's statements, prepared (and cached by the connection) once per batch.
    struct Statements<'c> {
        claim: rusqlite::CachedStatement<'c>,
        insert: rusqlite::CachedStatement<'c>,
        lookup: rusqlite::CachedStatement<'c>,
        family_revoked: rusqlite::CachedStatement<'c>,
        revoke: rusqlite::CachedStatement<'c>,
        bump: rusqlite::CachedStatement<'c>,
    }

    impl<'c> Statements<'c> {
        fn prepare(conn: &'c rusqlite::Connection) -> rusqlite::Result<Self> {
            Ok(Self {
                claim: conn.prepare_cached(
                    "UPDATE oauth_refresh_tokens SET rotated_at = ?1 \
                     WHERE token_hash = ?2 AND client_id = ?3 AND rotated_at IS NULL \
                     AND revoked_at IS NULL AND expires_at > ?1 \
                     RETURNING id, family_id, token_hash, client_id, user_id, session_id, scopes, \
                     auth_time, created_at, expires_at, rotated_at, revoked_at, resources",
                )?,
                insert: conn.prepare_cached(
                    "INSERT INTO oauth_refresh_tokens (id, family_id, token_hash, client_id, \
                     user_id, session_id, scopes, auth_time, created_at, expires_at, resources) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )?,
                lookup: conn.prepare_cached(
                    "SELECT family_id, client_id, rotated_at, revoked_at, expires_at \
                     FROM oauth_refresh_tokens WHERE token_hash = ?1",
                )?,
                // A family's revocation is recorded on the code that started it.
                family_revoked: conn.prepare_cached(
                    "SELECT 1 FROM oauth_codes WHERE id = ?1 \
                     AND (revoked_at IS NOT NULL OR replayed_at IS NOT NULL)",
                )?,
                revoke: conn.prepare_cached(
                    "UPDATE oauth_codes SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL",
                )?,
                // The grant's access tokens are checked against revision-tagged state.
                bump: conn.prepare_cached(
                    "UPDATE store_revision SET revision = revision + 1 WHERE id = 1",
                )?,
            })
        }

        /// Claims one job's token and stores its successor, or says why it cannot.
        fn rotate(&mut self, job: &RotationJob, now: i64) -> Result<Claim> {
            let claimed = self
                .claim
                .query_row(params![now, job.hash, job.client_id], |r| {
                    Ok(oauth_refresh_token::Model {
                        id: r.get(0)?,
                        family_id: r.get(1)?,
                        token_hash: r.get(2)?,
                        client_id: r.get(3)?,
                        user_id: r.get(4)?,
                        session_id: r.get(5)?,
                        scopes: r.get(6)?,
                        auth_time: r.get(7)?,
                        created_at: r.get(8)?,
                        expires_at: r.get(9)?,
                        rotated_at: r.get(10)?,
                        revoked_at: r.get(11)?,
                        resources: r.get(12)?,
                    })
                })
                .optional()?;
            let Some(row) = claimed else { return self.explain(job, now) };
            if self.family_revoked.exists(params![row.family_id])? {
                return Ok(Claim::Invalid("refresh token revoked"));
            }
            let token = crypto::random_secret();
            self.insert.execute(params![
                ids::new_id(ids::REFRESH_TOKEN),
                row.family_id,
                crypto::hash_secret_hex(&token),
                row.client_id,
                row.user_id,
                row.session_id,
                row.scopes,
                row.auth_time,
                now,
                now + job.ttl_secs,
                row.resources,
            ])?;
            Ok(Claim::Rotated { row: Box::new(row), token })
        }

        /// Not claimable: say why. A second use of the same token in this batch finds it
        /// rotated a moment ago, which is reuse like any other (and revokes the family).
        fn explain(&mut self, job: &RotationJob, now: i64) -> Result<Claim> {
            type Found = (String, String, Option<i64>, Option<i64>, i64);
            let found: Option<Found> = self
                .lookup
                .query_row(params![job.hash], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .optional()?;
            let revoked_family = match &found {
                Some((family, ..)) => self.family_revoked.exists(params![family])?,
                None => false,
            };
            let found =
                found.as_ref().map(|(family, client, rotated, revoked, expires)| Unclaimable {
                    family_id: family,
                    client_id: client,
                    revoked: revoked.is_some() || revoked_family,
                    rotated: rotated.is_some(),
                    expires_at: *expires,
                });
            let claim = classify(job, found.as_ref(), now);
            if let (Claim::Reused, Some(r)) = (&claim, &found) {
                self.revoke.execute(params![now, r.family_id])?;
                self.bump.execute([])?;
            }
            Ok(claim)
        }
    }
}
