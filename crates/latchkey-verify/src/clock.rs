//! Where the verifier reads the time. Expiry, skew, the kid-miss rate limit and the
//! stale-if-error window are all decided against this clock, so tests move it forward instead
//! of waiting.

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

/// The current time as unix seconds.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        // The one place that reads the wall clock; everything else takes the time from here.
        #[allow(clippy::disallowed_methods)]
        let now = std::time::SystemTime::now();
        now.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }
}

/// A clock that only moves when told to; clones share the time. For tests and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now: Arc<AtomicI64>,
}

impl ManualClock {
    pub fn new(now: i64) -> Self {
        Self { now: Arc::new(AtomicI64::new(now)) }
    }

    pub fn set(&self, now: i64) {
        self.now.store(now, Ordering::Relaxed);
    }

    pub fn advance(&self, secs: i64) {
        self.now.fetch_add(secs, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.now.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_clones_share_the_time() {
        let a = ManualClock::new(100);
        let b = a.clone();
        a.advance(30);
        assert_eq!(b.now(), 130);
        b.set(5);
        assert_eq!(a.now(), 5);
    }
}
