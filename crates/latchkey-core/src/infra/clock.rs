//! The one source of wall-clock time. Every timestamp Latchkey stores or compares is unix
//! seconds read here, so tests can move time forward instead of waiting for it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

/// Unix seconds, plus an offset that only tests change. Clones share the offset, so advancing
/// a store's clock moves it for every service built on that store.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// Current time as unix seconds.
    pub fn now(&self) -> i64 {
        #[allow(clippy::disallowed_methods)] // the one place that reads the system clock
        let system = chrono::Utc::now().timestamp();
        system.saturating_add(self.offset.load(Ordering::Relaxed))
    }

    /// Moves this clock (and every clone of it) forward. For tests: expiry, lockouts and
    /// rotations are then exercised without sleeping.
    pub fn advance(&self, by: Duration) {
        let secs = i64::try_from(by.as_secs()).unwrap_or(i64::MAX / 4);
        self.offset.fetch_add(secs, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_every_clone() {
        let clock = Clock::system();
        let other = clock.clone();
        let before = other.now();
        clock.advance(Duration::from_secs(3600));
        assert!(other.now() >= before + 3600);
        assert!(other.now() < before + 3600 + 5);
    }
}
