//! OpenID Connect Back-Channel Logout 1.0: when a Latchkey session ends, every client that got
//! tokens for it and registered a `backchannel_logout_uri` is sent a signed logout token.
//!
//! [`enqueue_for_sessions`] runs in the transaction that ends the sessions, so a rolled-back
//! change notifies nobody and a committed one is never forgotten. A worker claims due rows with
//! a lease (a conditional UPDATE, so two nodes never deliver the same row at once), signs the
//! token with the client's ID-token algorithm key and POSTs it, retrying with backoff. Delivery
//! is at least once; the `jti` is the row id, so a receiver can drop a repeat.

use std::time::Duration;

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use serde_json::json;

use crate::{
    Error, Result,
    infra::entity::{backchannel_outbox, oauth_client, oauth_code},
    infra::ids,
    infra::jose::SigningAlg,
    infra::mail::{retry_delay, status},
    infra::store::Store,
    oauth::OAuthService,
};

/// The event a logout token carries (Back-Channel Logout 1.0 §2.4).
pub const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Logout tokens are only for immediate use; two minutes covers clock skew.
pub const LOGOUT_TOKEN_TTL_SECS: i64 = 120;
const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Longer than one attempt (the HTTP timeout), so only a crashed worker's claim expires.
const CLAIM_LEASE: Duration = Duration::from_secs(60);
/// A session that ended a day ago is not worth telling a client about any more.
const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const BATCH: u64 = 50;
const RETENTION: Duration = Duration::from_secs(7 * 86400);
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);
const MAX_ERROR_CHARS: usize = 1000;

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Queues one notification per (session, client with a back-channel URI) that was issued
/// tokens for the session, that is redeemed a code bound to it (every refresh-token family
/// starts from such a code, so the refresh tokens need no lookup of their own). Call in the
/// transaction that ends the sessions; returns how many were queued.
pub(crate) async fn enqueue_for_sessions<C: ConnectionTrait>(
    conn: &C,
    session_ids: &[String],
    now: i64,
) -> Result<u64> {
    if session_ids.is_empty() {
        return Ok(0);
    }
    let mut pairs: Vec<(String, String, String)> = oauth_code::Entity::find()
        .select_only()
        .column(oauth_code::Column::SessionId)
        .column(oauth_code::Column::ClientId)
        .column(oauth_code::Column::UserId)
        .filter(oauth_code::Column::SessionId.is_in(session_ids.iter().cloned()))
        .filter(oauth_code::Column::UsedAt.is_not_null())
        .distinct()
        .into_tuple()
        .all(conn)
        .await?;
    pairs.sort();
    pairs.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    if pairs.is_empty() {
        return Ok(0);
    }
    let mut client_ids: Vec<String> = pairs.iter().map(|p| p.1.clone()).collect();
    client_ids.sort();
    client_ids.dedup();
    let uris: std::collections::HashMap<String, String> = oauth_client::Entity::find()
        .select_only()
        .column(oauth_client::Column::ClientId)
        .column(oauth_client::Column::BackchannelLogoutUri)
        .filter(oauth_client::Column::ClientId.is_in(client_ids))
        .filter(oauth_client::Column::BackchannelLogoutUri.is_not_null())
        .into_tuple::<(String, Option<String>)>()
        .all(conn)
        .await?
        .into_iter()
        .filter_map(|(id, uri)| uri.filter(|u| !u.is_empty()).map(|u| (id, u)))
        .collect();
    let mut queued = 0;
    for (session_id, client_id, user_id) in pairs {
        let Some(uri) = uris.get(&client_id) else { continue };
        backchannel_outbox::Entity::insert(backchannel_outbox::ActiveModel {
            id: Set(ids::new_id(ids::BACKCHANNEL_LOGOUT)),
            client_id: Set(client_id),
            session_id: Set(session_id),
            user_id: Set(user_id),
            uri: Set(uri.clone()),
            status: Set(status::PENDING.to_owned()),
            attempts: Set(0),
            next_attempt_at: Set(now),
            claimed_until: Set(None),
            last_error: Set(None),
            created_at: Set(now),
            sent_at: Set(None),
        })
        .exec_without_returning(conn)
        .await?;
        queued += 1;
    }
    Ok(queued)
}

/// Active session ids matching `filter`, taken before they are ended so the caller can queue
/// their notifications in the same transaction.
pub(crate) async fn active_session_ids<C: ConnectionTrait>(
    conn: &C,
    filter: Condition,
) -> Result<Vec<String>> {
    use crate::infra::entity::session;
    Ok(session::Entity::find()
        .select_only()
        .column(session::Column::Id)
        .filter(session::Column::Status.eq("active"))
        .filter(filter)
        .into_tuple()
        .all(conn)
        .await?)
}

#[derive(Clone)]
pub struct BackchannelService {
    store: Store,
    oauth: OAuthService,
    issuer: String,
    http: reqwest::Client,
}

enum Outcome {
    Sent,
    Retry(String),
    Fail(String),
}

fn claimable(now: i64) -> Condition {
    Condition::any()
        .add(
            Condition::all()
                .add(backchannel_outbox::Column::Status.eq(status::PENDING))
                .add(backchannel_outbox::Column::NextAttemptAt.lte(now)),
        )
        .add(
            Condition::all()
                .add(backchannel_outbox::Column::Status.eq(status::SENDING))
                .add(backchannel_outbox::Column::ClaimedUntil.lt(now)),
        )
}

impl BackchannelService {
    pub fn new(store: Store, oauth: OAuthService, issuer: &str) -> Result<Self> {
        // No redirects: the token goes to the registered URI only. Short timeouts: one slow
        // client must not hold up everyone else's notifications.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent("Latchkey back-channel logout")
            .build()
            .map_err(|e| Error::Internal(format!("HTTP client: {e}")))?;
        Ok(Self { store, oauth, issuer: issuer.to_owned(), http })
    }

    /// One delivery pass over due notifications; returns how many were delivered.
    pub async fn deliver_due(&self) -> Result<usize> {
        let mut sent = 0;
        loop {
            let now = self.store.now();
            let due: Vec<String> = backchannel_outbox::Entity::find()
                .select_only()
                .column(backchannel_outbox::Column::Id)
                .filter(claimable(now))
                .order_by_asc(backchannel_outbox::Column::NextAttemptAt)
                .order_by_asc(backchannel_outbox::Column::Id)
                .limit(BATCH)
                .into_tuple()
                .all(self.store.db())
                .await?;
            let full = due.len() as u64 == BATCH;
            let mut claimed_any = false;
            for id in due {
                let Some((row, lease)) = self.claim(&id).await? else { continue };
                claimed_any = true;
                if self.attempt(row, lease).await? {
                    sent += 1;
                }
            }
            if !(full && claimed_any) {
                return Ok(sent);
            }
        }
    }

    async fn claim(&self, id: &str) -> Result<Option<(backchannel_outbox::Model, i64)>> {
        let now = self.store.now();
        let lease = now + secs(CLAIM_LEASE);
        let res = backchannel_outbox::Entity::update_many()
            .col_expr(backchannel_outbox::Column::Status, Expr::value(status::SENDING))
            .col_expr(backchannel_outbox::Column::ClaimedUntil, Expr::value(lease))
            .col_expr(
                backchannel_outbox::Column::Attempts,
                Expr::col(backchannel_outbox::Column::Attempts).add(1),
            )
            .filter(backchannel_outbox::Column::Id.eq(id))
            .filter(claimable(now))
            .exec(self.store.db())
            .await?;
        if res.rows_affected == 0 {
            return Ok(None);
        }
        let row = backchannel_outbox::Entity::find_by_id(id.to_owned())
            .one(self.store.db())
            .await?
            .ok_or_else(|| Error::Internal(format!("claimed logout notification {id} vanished")))?;
        Ok(Some((row, lease)))
    }

    /// The logout token for a row (Back-Channel Logout 1.0 §2.4): no nonce, `typ: logout+jwt`,
    /// signed with the key of the client's ID-token algorithm.
    pub async fn logout_token(&self, row: &backchannel_outbox::Model) -> Result<String> {
        // A client deleted since the session ended is not told anything.
        let client = oauth_client::Entity::find_by_id(row.client_id.clone())
            .one(self.store.db())
            .await?
            .ok_or_else(|| Error::NotFound(format!("client {}", row.client_id)))?;
        let alg = SigningAlg::parse(&client.id_token_alg).unwrap_or(SigningAlg::RS256);
        let now = self.store.now();
        let claims = json!({
            "iss": self.issuer,
            "aud": row.client_id,
            "iat": now,
            "exp": now + LOGOUT_TOKEN_TTL_SECS,
            "jti": row.id,
            "sub": row.user_id,
            "sid": row.session_id,
            "events": { LOGOUT_EVENT: {} },
        });
        self.oauth.sign(alg, "logout+jwt", &claims).await
    }

    async fn post(&self, row: &backchannel_outbox::Model) -> Outcome {
        let token = match self.logout_token(row).await {
            Ok(t) => t,
            Err(e @ Error::NotFound(_)) => return Outcome::Fail(e.to_string()),
            Err(e) => return Outcome::Retry(format!("signing: {e}")),
        };
        let res = self
            .http
            .post(&row.uri)
            .header("cache-control", "no-cache, no-store")
            .form(&[("logout_token", token.as_str())])
            .send()
            .await;
        match res {
            Ok(r) if r.status().is_success() => Outcome::Sent,
            // §2.8: 400 means the RP refused the token; sending it again will not help.
            Ok(r) if r.status() == reqwest::StatusCode::BAD_REQUEST => {
                Outcome::Fail(format!("receiver answered {}", r.status()))
            }
            Ok(r) => Outcome::Retry(format!("receiver answered {}", r.status())),
            Err(e) => Outcome::Retry(format!("{e}")),
        }
    }

    async fn attempt(&self, row: backchannel_outbox::Model, lease: i64) -> Result<bool> {
        let outcome = self.post(&row).await;
        let now = self.store.now();
        let update = backchannel_outbox::Entity::update_many()
            .col_expr(backchannel_outbox::Column::ClaimedUntil, Expr::value(None::<i64>));
        let (update, sent) = match &outcome {
            Outcome::Sent => {
                tracing::info!(notification = %row.id, client_id = %row.client_id, attempts = row.attempts, "back-channel logout delivered");
                (
                    update
                        .col_expr(backchannel_outbox::Column::Status, Expr::value(status::SENT))
                        .col_expr(backchannel_outbox::Column::SentAt, Expr::value(now))
                        .col_expr(
                            backchannel_outbox::Column::LastError,
                            Expr::value(None::<String>),
                        ),
                    true,
                )
            }
            Outcome::Retry(e) if now - row.created_at < secs(GIVE_UP_AFTER) => {
                let delay = retry_delay(row.attempts);
                tracing::warn!(
                    notification = %row.id, client_id = %row.client_id, attempts = row.attempts,
                    error = %e, "back-channel logout failed; retrying in {}",
                    humantime::format_duration(delay)
                );
                (
                    update
                        .col_expr(backchannel_outbox::Column::Status, Expr::value(status::PENDING))
                        .col_expr(
                            backchannel_outbox::Column::NextAttemptAt,
                            Expr::value(now + secs(delay)),
                        )
                        .col_expr(backchannel_outbox::Column::LastError, Expr::value(truncate(e))),
                    false,
                )
            }
            Outcome::Retry(e) | Outcome::Fail(e) => {
                tracing::error!(
                    notification = %row.id, client_id = %row.client_id, attempts = row.attempts,
                    error = %e, "giving up on back-channel logout"
                );
                (
                    update
                        .col_expr(backchannel_outbox::Column::Status, Expr::value(status::FAILED))
                        .col_expr(backchannel_outbox::Column::LastError, Expr::value(truncate(e))),
                    false,
                )
            }
        };
        // Only while our claim stands; a worker that took over an expired claim records its own.
        let res = update
            .filter(backchannel_outbox::Column::Id.eq(&row.id))
            .filter(backchannel_outbox::Column::Status.eq(status::SENDING))
            .filter(backchannel_outbox::Column::ClaimedUntil.eq(lease))
            .exec(self.store.db())
            .await?;
        if res.rows_affected == 0 {
            tracing::warn!(notification = %row.id, "logout claim expired before its outcome was recorded");
        }
        Ok(sent)
    }

    /// Background loop: delivers whenever a session change commits, or every few seconds.
    pub fn spawn_worker(&self) -> tokio::task::JoinHandle<()> {
        let service = self.clone();
        tokio::spawn(async move {
            let mut last_purge: Option<tokio::time::Instant> = None;
            loop {
                if let Err(e) = service.deliver_due().await {
                    tracing::warn!(error = %e, "back-channel logout pass failed");
                }
                if last_purge.is_none_or(|at| at.elapsed() >= PURGE_INTERVAL) {
                    last_purge = Some(tokio::time::Instant::now());
                    let cutoff = service.store.now() - secs(RETENTION);
                    let res = backchannel_outbox::Entity::delete_many()
                        .filter(
                            backchannel_outbox::Column::Status
                                .is_in([status::SENT, status::FAILED]),
                        )
                        .filter(backchannel_outbox::Column::CreatedAt.lt(cutoff))
                        .exec(service.store.db())
                        .await;
                    if let Err(e) = res {
                        tracing::warn!(error = %e, "could not purge old logout notifications");
                    }
                }
                tokio::select! {
                    () = service.store.backchannel_wake().notified() => {}
                    () = tokio::time::sleep(POLL_INTERVAL) => {}
                }
            }
        })
    }
}

fn truncate(e: &str) -> String {
    e.chars().take(MAX_ERROR_CHARS).collect()
}
