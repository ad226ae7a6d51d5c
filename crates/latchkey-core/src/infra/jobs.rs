//! The job outbox: durable background work, safe on several nodes.
//!
//! A service calls [`enqueue`] **inside its own transaction**, so a rolled-back change queues
//! nothing and a committed one is never forgotten; after committing it wakes the runner
//! ([`crate::infra::store::Store::notify_jobs`]). Every node runs due jobs ([`JobQueue::run_due`],
//! driven by `crate::runtime`, which maps each [`JobKind`] to its [`Handler`]):
//!
//! - a job is **claimed** with one conditional `UPDATE` (still due, or its lease expired) that
//!   sets a random claim token and a short lease ([`LEASE`]); only the node whose update changed
//!   the row runs it, on SQLite and PostgreSQL alike;
//! - while the handler runs, the lease is **renewed**, so a long job is not taken over, while a
//!   job whose node died is taken over by another node about one lease later;
//! - the outcome is recorded only where the claim token still matches: done (with any follow-up
//!   jobs enqueued in the same transaction), retry after a backoff ([`retry_delay`]), or failed
//!   (a permanent error, or still failing at the job's deadline). A finished job's secrets are
//!   erased ([`Job::finished`]) and its row purged after its kind's retention.
//!
//! Delivery is at least once: a node that dies after the effect but before recording it leaves a
//! claim that expires, and the job runs again with the same id (a mail's Message-ID, a logout
//! token's `jti`), so receivers can drop the repeat.

use std::{collections::HashMap, future::Future, pin::Pin, sync::Arc, time::Duration};

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, OnConflict},
};
use serde::{Deserialize, Serialize};

use crate::infra::{
    entity::job_outbox,
    error::{Error, Result},
    ids,
    store::Store,
};

/// Values of `job_outbox.status`.
pub mod status {
    pub const PENDING: &str = "pending";
    /// Claimed by a node until its lease runs out (renewed while the job runs).
    pub const RUNNING: &str = "running";
    pub const DONE: &str = "done";
    /// Given up: a permanent problem, or still failing at the job's deadline.
    pub const FAILED: &str = "failed";
}

/// How long a claim holds without renewal: a job claimed by a node that then dies is run by
/// another node about this long after the last renewal.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often a running job's lease is looked at. It is renewed once less than two thirds of
/// [`LEASE`] remain, so about every 10 s, by the store's clock.
const RENEW_CHECK: Duration = Duration::from_secs(1);
/// Due jobs read per query; a pass reads again until nothing is left to claim.
const BATCH: u64 = 50;
/// Jobs one node runs at the same time, so one slow receiver does not hold up the rest.
const CONCURRENCY: usize = 8;
const MAX_ERROR_CHARS: usize = 1000;

/// A unit of background work, stored as JSON tagged with its kind. Payloads hold plain data
/// (ids, sealed bodies): the handler looks up the rest when it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// One outgoing mail, rendered and sealed when it was queued.
    Mail(MailJob),
    /// Sessions that just ended: the clients that got tokens for them are to be told
    /// (back-channel logout). Queued by whatever ends sessions, handled on the OAuth side.
    SessionsEnded { session_ids: Vec<String> },
    /// One logout token for one client and session.
    BackchannelLogout(LogoutJob),
}

/// A rendered mail. The bodies carry codes and links: they are sealed with the master key
/// (purpose `mail-body`) and erased once the mail is sent or given up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailJob {
    /// Which mail this is (`sign_up_code`, …), for logs and operators.
    pub template: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Where to send one back-channel logout token, and what it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutJob {
    pub client_id: String,
    pub session_id: String,
    pub user_id: String,
    pub uri: String,
}

/// The kinds of [`Job`]; each has one handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    Mail,
    SessionsEnded,
    BackchannelLogout,
}

impl JobKind {
    pub const ALL: [JobKind; 3] = [Self::Mail, Self::SessionsEnded, Self::BackchannelLogout];

    /// The kind named `name` in the `kind` column.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The `kind` column and the payload's tag.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mail => "mail",
            Self::SessionsEnded => "sessions_ended",
            Self::BackchannelLogout => "backchannel_logout",
        }
    }

    /// The id prefix: a mail's Message-ID and a logout token's `jti` are the job id.
    fn id_prefix(self) -> &'static str {
        match self {
            Self::Mail => ids::MAIL,
            Self::SessionsEnded => ids::JOB,
            Self::BackchannelLogout => ids::BACKCHANNEL_LOGOUT,
        }
    }

    /// How long a failing job is retried: a day-old code, link or logout is not worth sending.
    fn give_up_after(self) -> Duration {
        Duration::from_secs(24 * 3600)
    }

    /// How long a finished row is kept for operators before it is purged.
    fn retention(self) -> Duration {
        match self {
            Self::Mail => Duration::from_secs(30 * 86400),
            Self::BackchannelLogout => Duration::from_secs(7 * 86400),
            Self::SessionsEnded => Duration::from_secs(86400),
        }
    }
}

impl Job {
    pub fn kind(&self) -> JobKind {
        match self {
            Self::Mail(_) => JobKind::Mail,
            Self::SessionsEnded { .. } => JobKind::SessionsEnded,
            Self::BackchannelLogout(_) => JobKind::BackchannelLogout,
        }
    }

    /// What stays stored once the job is finished: a mail's bodies are erased.
    pub fn finished(&self) -> Job {
        match self {
            Self::Mail(m) => {
                Self::Mail(MailJob { text: String::new(), html: String::new(), ..m.clone() })
            }
            other => other.clone(),
        }
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

/// Queues `job` to run from `run_at`, in the caller's transaction or connection: a rolled-back
/// transaction queues nothing. With a `dedupe_key`, nothing is queued while a job with the same
/// key is stored (until its row is purged), and None is returned; otherwise the new job's id.
/// Call [`Store::notify_jobs`] after committing, so the job runs at once rather than at the
/// next poll.
pub async fn enqueue<C: ConnectionTrait>(
    conn: &C,
    job: &Job,
    run_at: i64,
    dedupe_key: Option<&str>,
) -> Result<Option<String>> {
    let kind = job.kind();
    let id = ids::new_id(kind.id_prefix());
    let row = job_outbox::ActiveModel {
        id: Set(id.clone()),
        kind: Set(kind.as_str().to_owned()),
        payload: Set(serde_json::to_string(job)?),
        dedupe_key: Set(dedupe_key.map(str::to_owned)),
        status: Set(status::PENDING.to_owned()),
        attempts: Set(0),
        run_at: Set(run_at),
        give_up_at: Set(run_at.saturating_add(secs(kind.give_up_after()))),
        claim: Set(None),
        lease_until: Set(None),
        last_error: Set(None),
        created_at: Set(run_at),
        finished_at: Set(None),
    };
    let mut insert = job_outbox::Entity::insert(row);
    if dedupe_key.is_some() {
        insert = insert
            .on_conflict(OnConflict::column(job_outbox::Column::DedupeKey).do_nothing().to_owned());
    }
    let inserted = insert.exec_without_returning(conn).await? > 0;
    if inserted {
        tracing::debug!(job_id = %id, kind = kind.as_str(), "job queued");
    }
    Ok(inserted.then_some(id))
}

/// Delay before the next attempt after `attempts` failed ones: 10 s, 30 s, 90 s, … ×3 each
/// time, capped at one hour.
pub fn retry_delay(attempts: i32) -> Duration {
    let exponent = attempts.clamp(1, 10).unsigned_abs() - 1;
    Duration::from_secs(std::cmp::min(10u64 * 3u64.pow(exponent), 3600))
}

/// A job this node has claimed, as its handler sees it.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    /// Stable across attempts (a mail's Message-ID, a logout token's `jti`).
    pub id: String,
    pub job: Job,
    /// Including this one.
    pub attempts: i32,
}

/// A job to queue when the one that produced it is recorded done, in the same transaction: a
/// fan-out happens exactly once even when the producing job runs twice.
#[derive(Debug, Clone)]
pub struct FollowUp {
    pub job: Job,
    pub dedupe_key: Option<String>,
}

/// What a handler reports.
#[derive(Debug)]
pub enum Outcome {
    /// Done; the follow-up jobs are queued with the outcome.
    Done(Vec<FollowUp>),
    /// Worth another try after a backoff, until the job's deadline.
    Retry(String),
    /// Retrying cannot help.
    Fail(String),
}

pub type JobFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// Runs the jobs of one or more kinds. Handlers never fail as such: every failure is an
/// [`Outcome`], which decides between retrying and giving up.
pub trait Handler: Send + Sync {
    fn run<'a>(&'a self, job: &'a ClaimedJob) -> JobFuture<'a>;
}

/// The handler of each kind.
pub type Handlers = HashMap<JobKind, Arc<dyn Handler>>;

/// What one call of [`JobQueue::run_due`] recorded.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunReport {
    pub done: usize,
    pub retried: usize,
    pub failed: usize,
    /// Jobs whose claim another node took over before the outcome could be recorded.
    pub lost: usize,
}

/// The claim this node holds on a running job.
struct Claim {
    token: String,
    lease_until: i64,
}

/// Rows a node may claim at `now`: due pending ones, and running ones whose lease ran out.
fn claimable(now: i64) -> Condition {
    Condition::any()
        .add(
            Condition::all()
                .add(job_outbox::Column::Status.eq(status::PENDING))
                .add(job_outbox::Column::RunAt.lte(now)),
        )
        .add(
            Condition::all()
                .add(job_outbox::Column::Status.eq(status::RUNNING))
                .add(job_outbox::Column::LeaseUntil.lt(now)),
        )
}

fn truncate(e: &str) -> String {
    e.chars().take(MAX_ERROR_CHARS).collect()
}

/// The outbox of one store: claims, renews, records and purges.
#[derive(Clone)]
pub struct JobQueue {
    store: Store,
}

impl JobQueue {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Runs every due job whose kind has a handler, a few at a time, until none is left to
    /// claim (follow-ups queued meanwhile included); returns what was recorded.
    pub async fn run_due(&self, handlers: &Handlers) -> Result<RunReport> {
        let mut report = RunReport::default();
        loop {
            let now = self.store.now();
            let kinds: Vec<&str> = handlers.keys().map(|k| k.as_str()).collect();
            let due: Vec<(String, String)> = job_outbox::Entity::find()
                .select_only()
                .column(job_outbox::Column::Id)
                .column(job_outbox::Column::Kind)
                .filter(claimable(now))
                .filter(job_outbox::Column::Kind.is_in(kinds))
                .order_by_asc(job_outbox::Column::RunAt)
                .order_by_asc(job_outbox::Column::Id)
                .limit(BATCH)
                .into_tuple()
                .all(self.store.db())
                .await?;
            if self.run_batch(due, handlers, &mut report).await? == 0 {
                return Ok(report);
            }
        }
    }

    /// Claims and runs `due`, at most [`CONCURRENCY`] at once; returns how many it claimed.
    async fn run_batch(
        &self,
        due: Vec<(String, String)>,
        handlers: &Handlers,
        report: &mut RunReport,
    ) -> Result<usize> {
        use tracing::instrument::WithSubscriber;
        let mut running = tokio::task::JoinSet::new();
        let mut claimed = 0;
        let mut failure = None;
        for (id, kind) in due {
            let Some(handler) = JobKind::parse(&kind).and_then(|k| handlers.get(&k)) else {
                continue;
            };
            while running.len() >= CONCURRENCY {
                collect(running.join_next().await, report);
            }
            let (job, claim) = match self.claim(&id).await {
                Ok(Some(claimed)) => claimed,
                Ok(None) => continue,
                // Stop claiming, but let the jobs already running finish and record.
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            claimed += 1;
            let (queue, handler) = (self.clone(), handler.clone());
            // The task logs to whatever subscriber the caller runs under (tests capture logs).
            running.spawn(
                async move { queue.run_claimed(handler.as_ref(), job, claim).await }
                    .with_current_subscriber(),
            );
        }
        while let Some(joined) = running.join_next().await {
            collect(Some(joined), report);
        }
        failure.map_or(Ok(claimed), Err)
    }

    /// Takes the job if it is still claimable, with a fresh token and lease.
    async fn claim(&self, id: &str) -> Result<Option<(ClaimedJob, Claim)>> {
        let now = self.store.now();
        let claim = Claim { token: ids::new_id(ids::JOB_CLAIM), lease_until: now + secs(LEASE) };
        let res = job_outbox::Entity::update_many()
            .col_expr(job_outbox::Column::Status, Expr::value(status::RUNNING))
            .col_expr(job_outbox::Column::Claim, Expr::value(claim.token.clone()))
            .col_expr(job_outbox::Column::LeaseUntil, Expr::value(claim.lease_until))
            .col_expr(job_outbox::Column::Attempts, Expr::col(job_outbox::Column::Attempts).add(1))
            .filter(job_outbox::Column::Id.eq(id))
            .filter(claimable(now))
            .exec(self.store.db())
            .await?;
        if res.rows_affected == 0 {
            return Ok(None);
        }
        let row = job_outbox::Entity::find_by_id(id.to_owned())
            .one(self.store.db())
            .await?
            .ok_or_else(|| Error::Internal(format!("claimed job {id} vanished")))?;
        match serde_json::from_str::<Job>(&row.payload) {
            Ok(job) => Ok(Some((ClaimedJob { id: row.id, job, attempts: row.attempts }, claim))),
            Err(e) => {
                // Nothing can run it: record that instead of claiming it forever.
                tracing::error!(job_id = %id, kind = %row.kind, error = %e, "unreadable job");
                let failed = Outcome::Fail(format!("unreadable payload: {e}"));
                self.record(&row.id, &row.kind, None, &claim, failed).await?;
                Ok(None)
            }
        }
    }

    /// Runs the handler while keeping the lease alive, then records its outcome.
    async fn run_claimed(
        &self,
        handler: &dyn Handler,
        job: ClaimedJob,
        mut claim: Claim,
    ) -> Result<Recorded> {
        let outcome = {
            let mut work = handler.run(&job);
            let mut tick = tokio::time::interval(RENEW_CHECK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut holding = true;
            loop {
                tokio::select! {
                    outcome = &mut work => break outcome,
                    _ = tick.tick(), if holding => {
                        holding = self.renew(&job.id, &mut claim).await;
                    }
                }
            }
        };
        let kind = job.job.kind().as_str();
        self.record(&job.id, kind, Some(&job), &claim, outcome).await
    }

    /// Extends the lease once less than two thirds of it remain. False once the claim is lost
    /// (another node took the job over after the lease ran out): the job may finish, but its
    /// outcome will not be recorded. A failed write keeps trying at the next check.
    async fn renew(&self, id: &str, claim: &mut Claim) -> bool {
        let now = self.store.now();
        if claim.lease_until - now > secs(LEASE) * 2 / 3 {
            return true;
        }
        let lease_until = now + secs(LEASE);
        let res = job_outbox::Entity::update_many()
            .col_expr(job_outbox::Column::LeaseUntil, Expr::value(lease_until))
            .filter(job_outbox::Column::Id.eq(id))
            .filter(job_outbox::Column::Status.eq(status::RUNNING))
            .filter(job_outbox::Column::Claim.eq(claim.token.as_str()))
            .exec(self.store.db())
            .await;
        match res {
            Ok(r) if r.rows_affected == 1 => {
                claim.lease_until = lease_until;
                true
            }
            Ok(_) => {
                tracing::warn!(job_id = %id, "job claim taken over by another node while running");
                false
            }
            Err(e) => {
                tracing::warn!(job_id = %id, error = %e, "could not renew a job's lease");
                true
            }
        }
    }

    /// Records `outcome` where the claim still holds, with the done job's follow-ups, in one
    /// transaction. `job` is None for a payload that could not be read.
    async fn record(
        &self,
        id: &str,
        kind: &str,
        job: Option<&ClaimedJob>,
        claim: &Claim,
        outcome: Outcome,
    ) -> Result<Recorded> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        let row = job_outbox::Entity::find_by_id(id.to_owned())
            .filter(job_outbox::Column::Claim.eq(claim.token.as_str()))
            .one(&txn)
            .await?;
        let Some(row) = row else {
            tracing::warn!(job_id = %id, kind, "job claim expired before its outcome was recorded");
            return Ok(Recorded::Lost);
        };
        let (update, recorded, follow_ups) = outcome_update(&row, job, now, outcome)?;
        // The claim condition again, in the statement itself: the row was read above only to
        // know the deadline and the attempt count.
        let res = update
            .filter(job_outbox::Column::Id.eq(id))
            .filter(job_outbox::Column::Claim.eq(claim.token.as_str()))
            .exec(&txn)
            .await?;
        if res.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(Recorded::Lost);
        }
        for f in &follow_ups {
            enqueue(&txn, &f.job, now, f.dedupe_key.as_deref()).await?;
        }
        txn.commit().await?;
        if !follow_ups.is_empty() {
            self.store.notify_jobs();
        }
        Ok(recorded)
    }

    /// Deletes finished jobs older than their kind's retention; returns how many.
    pub async fn purge_finished(&self) -> Result<u64> {
        let now = self.store.now();
        let mut purged = 0;
        for kind in JobKind::ALL {
            let res = job_outbox::Entity::delete_many()
                .filter(job_outbox::Column::Kind.eq(kind.as_str()))
                .filter(job_outbox::Column::Status.is_in([status::DONE, status::FAILED]))
                .filter(job_outbox::Column::FinishedAt.lt(now - secs(kind.retention())))
                .exec(self.store.db())
                .await?;
            purged += res.rows_affected;
        }
        Ok(purged)
    }
}

/// The update that records `outcome` on `row` (still to be filtered by id and claim), what it
/// records, and the follow-ups to queue with it.
fn outcome_update(
    row: &job_outbox::Model,
    job: Option<&ClaimedJob>,
    now: i64,
    outcome: Outcome,
) -> Result<(sea_orm::UpdateMany<job_outbox::Entity>, Recorded, Vec<FollowUp>)> {
    let (id, kind, attempts) = (&row.id, &row.kind, row.attempts);
    let update = job_outbox::Entity::update_many()
        .col_expr(job_outbox::Column::Claim, Expr::value(None::<String>))
        .col_expr(job_outbox::Column::LeaseUntil, Expr::value(None::<i64>));
    // A finished job keeps no secrets (see `Job::finished`).
    let finished = |u: sea_orm::UpdateMany<job_outbox::Entity>| -> Result<_> {
        let u = u.col_expr(job_outbox::Column::FinishedAt, Expr::value(now));
        Ok(match job {
            Some(j) => u.col_expr(
                job_outbox::Column::Payload,
                Expr::value(serde_json::to_string(&j.job.finished())?),
            ),
            None => u,
        })
    };
    Ok(match outcome {
        Outcome::Done(follow_ups) => {
            tracing::debug!(job_id = %id, kind, attempts, "job done");
            let u = finished(update)?
                .col_expr(job_outbox::Column::Status, Expr::value(status::DONE))
                .col_expr(job_outbox::Column::LastError, Expr::value(None::<String>));
            (u, Recorded::Done, follow_ups)
        }
        Outcome::Retry(e) if now < row.give_up_at => {
            let delay = retry_delay(attempts);
            tracing::warn!(
                job_id = %id, kind, attempts, error = %e,
                "job failed; retrying in {}", humantime::format_duration(delay)
            );
            let u = update
                .col_expr(job_outbox::Column::Status, Expr::value(status::PENDING))
                .col_expr(job_outbox::Column::RunAt, Expr::value(now + secs(delay)))
                .col_expr(job_outbox::Column::LastError, Expr::value(truncate(&e)));
            (u, Recorded::Retried, Vec::new())
        }
        Outcome::Retry(e) | Outcome::Fail(e) => {
            tracing::error!(job_id = %id, kind, attempts, error = %e, "giving up on job");
            let u = finished(update)?
                .col_expr(job_outbox::Column::Status, Expr::value(status::FAILED))
                .col_expr(job_outbox::Column::LastError, Expr::value(truncate(&e)));
            (u, Recorded::Failed, Vec::new())
        }
    })
}

/// How one claimed job ended for this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recorded {
    Done,
    Retried,
    Failed,
    Lost,
}

fn collect(
    joined: Option<std::result::Result<Result<Recorded>, tokio::task::JoinError>>,
    report: &mut RunReport,
) {
    match joined {
        Some(Ok(Ok(Recorded::Done))) => report.done += 1,
        Some(Ok(Ok(Recorded::Retried))) => report.retried += 1,
        Some(Ok(Ok(Recorded::Failed))) => report.failed += 1,
        Some(Ok(Ok(Recorded::Lost))) => report.lost += 1,
        // The claim stays; another pass takes the job over once its lease runs out.
        Some(Ok(Err(e))) => tracing::warn!(error = %e, "could not record a job's outcome"),
        Some(Err(e)) => tracing::error!(error = %e, "job task failed"),
        None => {}
    }
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

    #[test]
    fn jobs_are_tagged_json_and_finished_mail_keeps_no_body() {
        let mail = Job::Mail(MailJob {
            template: "sign_up_code".into(),
            to: "ada@example.com".into(),
            subject: "Your code".into(),
            text: "v1.sealed".into(),
            html: "v1.sealed".into(),
        });
        let json: serde_json::Value = serde_json::to_value(&mail).unwrap();
        assert_eq!(json["kind"], "mail");
        assert_eq!(json["template"], "sign_up_code");
        assert_eq!(serde_json::from_value::<Job>(json).unwrap(), mail);
        let Job::Mail(done) = mail.finished() else { unreachable!() };
        assert!(done.text.is_empty() && done.html.is_empty());
        assert_eq!(done.to, "ada@example.com");
        for kind in JobKind::ALL {
            let job = match kind {
                JobKind::Mail => mail.clone(),
                JobKind::SessionsEnded => Job::SessionsEnded { session_ids: vec!["ses_1".into()] },
                JobKind::BackchannelLogout => Job::BackchannelLogout(LogoutJob {
                    client_id: "client_1".into(),
                    session_id: "ses_1".into(),
                    user_id: "usr_1".into(),
                    uri: "https://rp.example/bcl".into(),
                }),
            };
            assert_eq!(job.kind(), kind);
            assert_eq!(JobKind::parse(kind.as_str()), Some(kind));
            let json = serde_json::to_value(&job).unwrap();
            assert_eq!(json["kind"], kind.as_str(), "the tag is the kind column");
        }
    }
}
