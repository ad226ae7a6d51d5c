//! Coalesced reads of the store revision.
//!
//! A token request must see every revocation committed before it arrived, on any node. Reading
//! the revision row per request would cost one query each; instead, requests that arrive while
//! a read is queued share the next read, which starts after all of them arrived. So under load
//! one query serves many requests, and no request ever uses a value read before it came in.
//! On SQLite the read itself is in-line (see `store.rs`); the reader first yields once so the
//! requests ready at that moment can join it.

use std::sync::{
    Mutex,
    atomic::{AtomicU64, Ordering},
};

use crate::{Result, infra::store::Store};

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
    /// The revision as of some moment after this call began. With `inline`, an SQLite store
    /// reads it on this thread (see `store.rs`); otherwise through the pool.
    pub async fn current(&self, store: &Store, inline: bool) -> Result<i64> {
        let ticket = self.arrivals.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(rev) = self.covered(ticket) {
            return Ok(rev);
        }
        let _reading = self.reading.lock().await;
        if let Some(rev) = self.covered(ticket) {
            return Ok(rev);
        }
        let inline = inline && store.reads_revision_inline();
        if inline {
            // An in-line read never leaves the thread, so nobody would queue behind it: let the
            // requests that are ready run up to here first, so that this one read covers them.
            tokio::task::yield_now().await;
        }
        // Every ticket handed out so far arrived before this read starts, so it covers them all.
        let covers = self.arrivals.load(Ordering::SeqCst);
        let rev = match inline.then(|| store.revision_inline()).flatten() {
            Some(rev) => rev,
            None => store.revision().await?,
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
