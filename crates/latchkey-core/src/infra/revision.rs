//! Coalesced reads of the store revision.
//!
//! A token request must see every revocation committed before it arrived, on any node. Reading
//! the revision row per request would cost one query each; instead, requests that arrive while
//! a read is queued share the next read, which starts after all of them arrived. So under load
//! one query serves many requests, and no request ever uses a value read before it came in.
//! On SQLite the read itself is in-line (see `store.rs`); the reader first yields once so the
//! requests ready at that moment can join it. The gate reads through [`RevisionSource`], so it
//! knows nothing of the store that implements it.

use std::{
    future::Future,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use crate::infra::error::Result;

/// Where the gate reads the revision from (the store).
pub trait RevisionSource {
    /// True when [`Self::read_inline`] can answer (SQLite's own reader connection).
    fn reads_inline(&self) -> bool;
    /// Reads the revision on the calling thread; None when it cannot (then [`Self::read`]).
    fn read_inline(&self) -> Option<i64>;
    /// Reads the revision through the connection pool.
    fn read(&self) -> impl Future<Output = Result<i64>> + Send;
}

pub struct RevisionGate {
    /// Arrival tickets, strictly increasing.
    arrivals: AtomicU64,
    /// (highest ticket covered, revision) of the last completed read.
    latest: Mutex<(u64, i64)>,
    /// Held while a read is in flight, so waiters queue behind it instead of issuing their own.
    reading: tokio::sync::Mutex<()>,
}

impl Default for RevisionGate {
    fn default() -> Self {
        Self {
            arrivals: AtomicU64::new(0),
            latest: Mutex::new((0, i64::MIN)),
            reading: tokio::sync::Mutex::new(()),
        }
    }
}

impl RevisionGate {
    /// The revision as of some moment after this call began. With `inline`, a source that can
    /// reads it on this thread (SQLite, see `store.rs`); otherwise through the pool.
    pub async fn current<S: RevisionSource + Sync>(&self, source: &S, inline: bool) -> Result<i64> {
        let ticket = self.arrivals.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(rev) = self.covered(ticket) {
            return Ok(rev);
        }
        let _reading = self.reading.lock().await;
        if let Some(rev) = self.covered(ticket) {
            return Ok(rev);
        }
        let inline = inline && source.reads_inline();
        if inline {
            // An in-line read never leaves the thread, so nobody would queue behind it: let the
            // requests that are ready run up to here first, so that this one read covers them.
            tokio::task::yield_now().await;
        }
        // Every ticket handed out so far arrived before this read starts, so it covers them all.
        let covers = self.arrivals.load(Ordering::SeqCst);
        let rev = match inline.then(|| source.read_inline()).flatten() {
            Some(rev) => rev,
            None => source.read().await?,
        };
        if let Ok(mut latest) = self.latest.lock()
            && covers > latest.0
        {
            *latest = (covers, rev);
        }
        Ok(rev)
    }

    fn covered(&self, ticket: u64) -> Option<i64> {
        let latest = self.latest.lock().ok()?;
        (latest.0 >= ticket).then_some(latest.1)
    }
}
