//! Google and Microsoft as upstream OpenID Connect providers, with `openidconnect` as the
//! relying party: consumer social sign-in ("Continue with Google / Microsoft") and EASIE
//! enterprise sign-in share one flow ([`flow`]). Whether a sign-in is enterprise is decided
//! from its validated claims by `latchkey_easie::route`, never from the button pressed. The
//! provider's tokens are kept sealed in the vault ([`vault`]).
//!
//! - [`provider`]: discovery documents and keys (cached), ID token verification.
//! - [`flow`]: authorization code + PKCE, `state`, `nonce`; the callback.
//! - [`vault`]: the upstream grants.
//! - [`recheck`]: deprovisioning when the upstream account goes (re-check, sweep).
//! - [`risc`]: Google's security event tokens (Cross-Account Protection), acted on at once.
//! - [`tokens`]: a user's current upstream access token for apps, refreshed when it expires.
//! - [`connect`]: incremental authorisation, the connected accounts, disconnecting.

pub mod connect;
pub mod flow;
pub mod provider;
pub mod recheck;
pub mod risc;
pub mod tokens;
pub mod vault;

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use latchkey_easie::recheck::RecheckPolicy;

pub use connect::{ConnectedAccount, UpstreamRevocation};
pub use flow::{CallbackInput, CallbackRejection, CallbackSuccess, StartRequest};
pub use provider::{Directory, Target, UpstreamError};
pub use recheck::{Pace, SweepReport};
pub use risc::{RiscAccepted, RiscOutcome, RiscRefusal};
pub use tokens::UpstreamAccessToken;

use crate::{
    Result, Settings,
    infra::store::Store,
    sign_in::{SignInService, pending::PendingStore},
};

/// How long a request may wait for the provider's answer.
pub const REQUEST_TTL_SECS: u64 = 10 * 60;

/// Counters the metrics endpoint reads.
#[derive(Debug, Default)]
pub struct UpstreamCounters {
    /// Requests to a provider that failed for want of an answer (network, timeout, 5xx).
    pub unavailable: AtomicU64,
}

#[derive(Clone)]
pub struct UpstreamService {
    store: Store,
    sign_in: SignInService,
    pending: PendingStore,
    directory: Directory,
    public_url: String,
    policy: RecheckPolicy,
    pub counters: Arc<UpstreamCounters>,
    in_flight: Arc<recheck::InFlight>,
    /// Until when a user's EASIE grant (per provider) needs no check before minting: saves
    /// the grant lookup on every token request between checks. A revocation on another node
    /// ends the sessions themselves, which every mint checks first.
    allowance: Arc<quick_cache::sync::Cache<String, i64>>,
}

impl UpstreamService {
    pub fn new(
        store: Store,
        sign_in: SignInService,
        pending: PendingStore,
        settings: &Settings,
    ) -> Result<Self> {
        let secs = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let up = &settings.upstream;
        let policy =
            RecheckPolicy::new(secs(up.easie_recheck_interval), secs(up.easie_upstream_grace))
                .map_err(|e| crate::Error::Internal(e.to_string()))?;
        Ok(Self {
            directory: Directory::new(up, store.clock().clone())?,
            store,
            sign_in,
            pending,
            public_url: settings.public_url.clone(),
            policy,
            counters: Arc::default(),
            in_flight: Arc::default(),
            allowance: Arc::new(quick_cache::sync::Cache::new(100_000)),
        })
    }

    /// Whether "Continue with …" is offered for this provider.
    pub fn configured(&self, provider: crate::identity::method::Upstream) -> bool {
        self.directory.credentials(provider).is_ok()
    }

    /// Our callback for a provider: `{public_url}/oauth/callback/{provider}`.
    pub fn redirect_uri(&self, provider: crate::identity::method::Upstream) -> String {
        format!("{}/oauth/callback/{}", self.public_url, provider.as_str())
    }

    fn allowed_until(&self, user_id: &str, provider: &str) -> Option<i64> {
        self.allowance.get(&format!("{user_id}:{provider}"))
    }

    fn allow_until(&self, user_id: &str, provider: &str, until: i64) {
        self.allowance.insert(format!("{user_id}:{provider}"), until);
    }

    fn forget_allowance(&self, user_id: &str, provider: &str) {
        self.allowance.remove(&format!("{user_id}:{provider}"));
    }

    pub fn unavailable_count(&self) -> u64 {
        self.counters.unavailable.load(Ordering::Relaxed)
    }
}
