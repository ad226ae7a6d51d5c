//! Session activity kept in memory and written in batches, so a token request never writes.

use std::{collections::HashMap, sync::Mutex};

#[derive(Default)]
pub struct ActivityTracker {
    pending: Mutex<HashMap<String, i64>>,
}

impl ActivityTracker {
    pub fn touch(&self, session_id: &str, at: i64) {
        if let Ok(mut p) = self.pending.lock() {
            let slot = p.entry(session_id.to_owned()).or_insert(at);
            *slot = (*slot).max(at);
        }
    }

    /// Activity seen here but not yet written.
    pub fn pending(&self, session_id: &str) -> Option<i64> {
        self.pending.lock().ok()?.get(session_id).copied()
    }

    pub fn drain(&self) -> Vec<(String, i64)> {
        self.pending.lock().map(|mut p| p.drain().collect()).unwrap_or_default()
    }
}
