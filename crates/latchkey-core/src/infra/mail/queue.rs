//! The outbox worker: claims due rows with a lease, delivers them and records the outcome.

use std::time::Duration;

use lettre::{
    Message,
    message::{Mailbox, MultiPart},
};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait},
};

use super::{BODY_PURPOSE, MailService};
use crate::{Error, Result, infra::entity::mail_outbox};

/// Values of `mail_outbox.status`.
pub mod status {
    pub const PENDING: &str = "pending";
    /// Claimed by a sender until `claimed_until`.
    pub const SENDING: &str = "sending";
    pub const SENT: &str = "sent";
    /// Given up: a permanent problem, or still undelivered after [`super::GIVE_UP_AFTER`].
    pub const FAILED: &str = "failed";
}

/// How often the worker looks for due mail when nobody calls notify().
const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// A claim outlives any single attempt (SMTP commands time out after 30 s), so only a crashed
/// sender's claim ever expires.
const CLAIM_LEASE: Duration = Duration::from_secs(5 * 60);
/// After this long undelivered, a mail is marked failed: its code or link has long expired.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Rows handled per pass; the next pass follows at once when a batch was full.
const BATCH: u64 = 50;
/// Sent and failed rows (whose bodies are already erased) are deleted after this long.
const RETENTION: Duration = Duration::from_secs(30 * 86400);
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);
const MAX_ERROR_CHARS: usize = 1000;

/// Delay before the next attempt after `attempts` failed ones: 10 s, 30 s, 90 s, … ×3 each
/// time, capped at one hour.
pub fn retry_delay(attempts: i32) -> Duration {
    let exponent = attempts.clamp(1, 10).unsigned_abs() - 1;
    Duration::from_secs(std::cmp::min(10u64 * 3u64.pow(exponent), 3600))
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Rows a sender may claim at `now`: due pending ones, and ones whose claim has expired.
fn claimable(now: i64) -> Condition {
    Condition::any()
        .add(
            Condition::all()
                .add(mail_outbox::Column::Status.eq(status::PENDING))
                .add(mail_outbox::Column::NextAttemptAt.lte(now)),
        )
        .add(
            Condition::all()
                .add(mail_outbox::Column::Status.eq(status::SENDING))
                .add(mail_outbox::Column::ClaimedUntil.lt(now)),
        )
}

enum Outcome {
    Sent,
    Retry(String),
    /// Retrying cannot help (undecryptable body, unparsable address).
    Fail(String),
}

impl MailService {
    /// One delivery pass over due mails; returns how many were sent. Each row is claimed with a
    /// conditional UPDATE first, so two nodes (or the worker and a caller) never send the same
    /// mail at the same time.
    pub async fn deliver_due(&self) -> Result<usize> {
        let mut sent = 0;
        loop {
            let now = self.inner.store.now();
            let due: Vec<String> = mail_outbox::Entity::find()
                .select_only()
                .column(mail_outbox::Column::Id)
                .filter(claimable(now))
                .order_by_asc(mail_outbox::Column::NextAttemptAt)
                .order_by_asc(mail_outbox::Column::Id)
                .limit(BATCH)
                .into_tuple()
                .all(self.inner.store.db())
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
            // Another pass only when there may be more due rows we have not looked at.
            if !(full && claimed_any) {
                return Ok(sent);
            }
        }
    }

    /// Takes the row if it is still claimable; the lease ends the claim if we crash.
    async fn claim(&self, id: &str) -> Result<Option<(mail_outbox::Model, i64)>> {
        let now = self.inner.store.now();
        let lease = now + secs(CLAIM_LEASE);
        let res = mail_outbox::Entity::update_many()
            .col_expr(mail_outbox::Column::Status, Expr::value(status::SENDING))
            .col_expr(mail_outbox::Column::ClaimedUntil, Expr::value(lease))
            .col_expr(
                mail_outbox::Column::Attempts,
                Expr::col(mail_outbox::Column::Attempts).add(1),
            )
            .filter(mail_outbox::Column::Id.eq(id))
            .filter(claimable(now))
            .exec(self.inner.store.db())
            .await?;
        if res.rows_affected == 0 {
            return Ok(None);
        }
        let row = mail_outbox::Entity::find_by_id(id.to_owned())
            .one(self.inner.store.db())
            .await?
            .ok_or_else(|| Error::Internal(format!("claimed mail {id} vanished")))?;
        Ok(Some((row, lease)))
    }

    /// Sends a claimed row and records the outcome; true when it was delivered.
    async fn attempt(&self, row: mail_outbox::Model, lease: i64) -> Result<bool> {
        let outcome = match self.build(&row) {
            Ok(message) => match self.inner.transport.send(&row.id, &message).await {
                Ok(()) => Outcome::Sent,
                Err(e) => Outcome::Retry(e),
            },
            Err(e) => Outcome::Fail(e.to_string()),
        };
        let now = self.inner.store.now();
        let update = mail_outbox::Entity::update_many()
            .col_expr(mail_outbox::Column::ClaimedUntil, Expr::value(None::<i64>));
        let (update, sent) = match &outcome {
            Outcome::Sent => {
                tracing::info!(mail_id = %row.id, kind = %row.kind, attempts = row.attempts, "mail sent");
                (
                    erase_bodies(update)
                        .col_expr(mail_outbox::Column::Status, Expr::value(status::SENT))
                        .col_expr(mail_outbox::Column::SentAt, Expr::value(now))
                        .col_expr(mail_outbox::Column::LastError, Expr::value(None::<String>)),
                    true,
                )
            }
            Outcome::Retry(e) if now - row.created_at < secs(GIVE_UP_AFTER) => {
                let delay = retry_delay(row.attempts);
                tracing::warn!(
                    mail_id = %row.id, kind = %row.kind, attempts = row.attempts, error = %e,
                    "could not send mail; retrying in {}", humantime::format_duration(delay)
                );
                (
                    update
                        .col_expr(mail_outbox::Column::Status, Expr::value(status::PENDING))
                        .col_expr(
                            mail_outbox::Column::NextAttemptAt,
                            Expr::value(now + secs(delay)),
                        )
                        .col_expr(mail_outbox::Column::LastError, Expr::value(truncate(e))),
                    false,
                )
            }
            Outcome::Retry(e) | Outcome::Fail(e) => {
                tracing::error!(
                    mail_id = %row.id, kind = %row.kind, to = %row.recipient,
                    attempts = row.attempts, error = %e, "giving up on mail"
                );
                (
                    erase_bodies(update)
                        .col_expr(mail_outbox::Column::Status, Expr::value(status::FAILED))
                        .col_expr(mail_outbox::Column::LastError, Expr::value(truncate(e))),
                    false,
                )
            }
        };
        // Only while our claim stands: if it expired and another sender took over, that
        // sender records the outcome.
        let res = update
            .filter(mail_outbox::Column::Id.eq(&row.id))
            .filter(mail_outbox::Column::Status.eq(status::SENDING))
            .filter(mail_outbox::Column::ClaimedUntil.eq(lease))
            .exec(self.inner.store.db())
            .await?;
        if res.rows_affected == 0 {
            tracing::warn!(mail_id = %row.id, "mail claim expired before its outcome was recorded");
        }
        Ok(sent)
    }

    fn build(&self, row: &mail_outbox::Model) -> Result<Message> {
        let key = self.inner.store.master_key();
        let text = String::from_utf8(key.open(BODY_PURPOSE, &row.text_body)?.to_vec())
            .map_err(|_| Error::Internal("mail text body is not UTF-8".into()))?;
        let html = String::from_utf8(key.open(BODY_PURPOSE, &row.html_body)?.to_vec())
            .map_err(|_| Error::Internal("mail HTML body is not UTF-8".into()))?;
        let to = row
            .recipient
            .parse::<Mailbox>()
            .map_err(|e| Error::invalid("to", format!("{}: {e}", row.recipient)))?;
        // Stable across retries, so a receiver can drop the duplicate of an ambiguous attempt.
        let message_id = format!("<{}@{}>", row.id, self.inner.from.email.domain());
        Message::builder()
            .from(self.inner.from.clone())
            .to(to)
            .subject(row.subject.clone())
            .message_id(Some(message_id))
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| Error::Internal(format!("building mail {}: {e}", row.id)))
    }

    /// Background loop: delivers due mail whenever notify() is called or every few seconds.
    /// Failed attempts wait per [`retry_delay`]; after [`GIVE_UP_AFTER`] a mail is marked failed.
    pub fn spawn_worker(&self) -> tokio::task::JoinHandle<()> {
        let service = self.clone();
        tracing::info!("{}", self.inner.transport.describe());
        tokio::spawn(async move {
            let mut last_purge: Option<tokio::time::Instant> = None;
            loop {
                if let Err(e) = service.deliver_due().await {
                    tracing::warn!(error = %e, "mail delivery pass failed");
                }
                if last_purge.is_none_or(|at| at.elapsed() >= PURGE_INTERVAL) {
                    last_purge = Some(tokio::time::Instant::now());
                    if let Err(e) = service.purge_finished().await {
                        tracing::warn!(error = %e, "could not purge old mail");
                    }
                }
                tokio::select! {
                    () = service.inner.wake.notified() => {}
                    () = tokio::time::sleep(POLL_INTERVAL) => {}
                }
            }
        })
    }

    async fn purge_finished(&self) -> Result<u64> {
        let cutoff = self.inner.store.now() - secs(RETENTION);
        let res = mail_outbox::Entity::delete_many()
            .filter(mail_outbox::Column::Status.is_in([status::SENT, status::FAILED]))
            .filter(mail_outbox::Column::CreatedAt.lt(cutoff))
            .exec(self.inner.store.db())
            .await?;
        Ok(res.rows_affected)
    }
}

/// Codes and links are useless to keep once a mail is done with.
fn erase_bodies(
    update: sea_orm::UpdateMany<mail_outbox::Entity>,
) -> sea_orm::UpdateMany<mail_outbox::Entity> {
    update
        .col_expr(mail_outbox::Column::TextBody, Expr::value(""))
        .col_expr(mail_outbox::Column::HtmlBody, Expr::value(""))
}

fn truncate(e: &str) -> String {
    e.chars().take(MAX_ERROR_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_an_hour() {
        let delays: Vec<u64> = (1..=9).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [10, 30, 90, 270, 810, 2430, 3600, 3600, 3600]);
        assert_eq!(retry_delay(0).as_secs(), 10);
        assert_eq!(retry_delay(i32::MAX).as_secs(), 3600);
    }
}
