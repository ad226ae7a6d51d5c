//! Group commit for [`crate::infra::store::Store::write`] on SQLite.
//!
//! Each commit writes every page the transaction touched to the WAL: for a sign-in that is a
//! dozen pages (the sessions, audit events, replay records and their indexes), most of them the
//! same right-most leaf pages as the previous sign-in's. Writes queue here; whoever takes the
//! lock runs everything queued so far, one after the other, in one transaction on Latchkey's own
//! writer, each inside a savepoint of its own, and commits once. A write that fails is rolled
//! back to its savepoint and leaves the others alone; each caller hears its own outcome only
//! after the commit. Writes arriving meanwhile form the next batch. This is what the refresh
//! rotation already does for its own statements (`oauth::refresh_rotation`).

use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;

use crate::{
    Error,
    infra::inline_sqlite::{InlineSqlite, WriteTxn},
};

/// Most writes one transaction takes on.
const MAX_BATCH: usize = 64;

/// A queued write: runs the caller's work in the batch's transaction.
type QueuedWrite = Box<dyn for<'t, 'c> FnOnce(&'t WriteTxn<'c>) -> BoxFuture<'t, Settle> + Send>;

/// A write's outcome inside the batch: whether its changes stay, and how to answer its caller
/// once the commit's outcome is known.
struct Settle {
    keep: bool,
    answer: Answer,
}

/// Tells a caller its outcome, given the batch commit's failure if it failed.
type Answer = Box<dyn FnOnce(Option<&Error>) + Send>;

/// The writes waiting for the next batch (see the module documentation).
#[derive(Default)]
pub(crate) struct WriteQueue {
    pending: Mutex<Vec<QueuedWrite>>,
    running: Arc<tokio::sync::Mutex<()>>,
}

impl WriteQueue {
    /// Runs `f` in the next batch on `writer`; its outcome once the batch has committed.
    pub(crate) async fn submit<T, E, F>(
        &self,
        writer: Arc<Mutex<rusqlite::Connection>>,
        f: F,
    ) -> std::result::Result<T, E>
    where
        T: Send + 'static,
        E: From<Error> + Send + 'static,
        F: for<'t, 'c> FnOnce(&'t WriteTxn<'c>) -> BoxFuture<'t, std::result::Result<T, E>>
            + Send
            + 'static,
    {
        let lost = || E::from(Error::Internal("the write was not completed".into()));
        let (tx, mut rx) = tokio::sync::oneshot::channel::<std::result::Result<T, E>>();
        let job: QueuedWrite = Box::new(move |txn| {
            Box::pin(async move {
                let outcome = f(txn).await;
                let keep = outcome.is_ok();
                let answer: Answer = Box::new(move |failed_commit: Option<&Error>| {
                    let outcome = match (outcome, failed_commit) {
                        (Ok(_), Some(e)) => Err(E::from(commit_failed(e))),
                        (outcome, _) => outcome,
                    };
                    let _ = tx.send(outcome);
                });
                Settle { keep, answer }
            })
        });
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(job);
        let guard = self.running.clone().lock_owned().await;
        match rx.try_recv() {
            Ok(outcome) => return outcome,
            Err(tokio::sync::oneshot::error::TryRecvError::Closed) => return Err(lost()),
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
        }
        let jobs = std::mem::take(
            &mut *self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let runtime = tokio::runtime::Handle::current();
        // The lock travels with the batch: a caller that goes away cannot release it while the
        // batch still runs.
        let batch = tokio::task::spawn_blocking(move || {
            let mut conn = writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut jobs = jobs.into_iter();
            while jobs.len() > 0 {
                run_batch(&mut conn, jobs.by_ref().take(MAX_BATCH).collect(), &runtime);
            }
            drop(guard);
        });
        let _ = batch.await;
        rx.await.unwrap_or_else(|_| Err(lost()))
    }
}

/// One transaction: every job in its own savepoint, one commit, then every answer.
/// A job not run (the transaction could not begin or broke off before it) is dropped, and its
/// caller hears that the write was not completed.
fn run_batch(
    conn: &mut rusqlite::Connection,
    jobs: Vec<QueuedWrite>,
    runtime: &tokio::runtime::Handle,
) {
    // A panic in an earlier batch may have left its transaction open.
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        tracing::error!(error = %e, "SQLite writer: could not begin a transaction");
        return;
    }
    let mut settled = Vec::new();
    let mut failed: Option<Error> = None;
    for job in jobs {
        if let Err(e) = conn.execute_batch("SAVEPOINT latchkey_write") {
            failed = Some(e.into());
            break;
        }
        let txn = WriteTxn::Inline(InlineSqlite::new(conn));
        let settle = runtime.block_on(job(&txn));
        drop(txn);
        let end = if settle.keep {
            "RELEASE latchkey_write"
        } else {
            "ROLLBACK TO latchkey_write; RELEASE latchkey_write"
        };
        settled.push(settle);
        if let Err(e) = conn.execute_batch(end) {
            failed = Some(e.into());
            break;
        }
    }
    if failed.is_none()
        && let Err(e) = conn.execute_batch("COMMIT")
    {
        failed = Some(e.into());
    }
    if failed.is_some() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    if let Some(e) = &failed {
        tracing::error!(error = %e, writes = settled.len(), "SQLite write batch failed");
    }
    for settle in settled {
        (settle.answer)(failed.as_ref());
    }
}

/// What a caller whose own work succeeded hears when its batch could not commit.
fn commit_failed(e: &Error) -> Error {
    Error::Database(sea_orm::DbErr::Custom(format!("the transaction did not commit: {e}")))
}
