//! SAML 2.0 enterprise connections, Latchkey as the service provider. The protocol rules
//! (verification, messages, metadata) are pure functions in `latchkey-saml`; this module keeps
//! the state around them: connections and their options ([`connections`]), the SP's sealed key
//! pairs ([`sp_keys`]), IdP metadata fetched from URLs ([`fetch`]), the sign-in flow with its
//! pending requests and replay cache ([`flow`]), Single Logout ([`logout`]) and the routing of
//! covered domains ([`registry`]).

pub mod connections;
pub mod fetch;
pub mod flow;
pub mod logout;
pub mod options;
mod refresh;
pub mod registry;
pub mod sp_keys;

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

pub use connections::{ConnectionView, IdpSource, NewConnection};
pub use flow::{AcsInput, AcsOutcome, AcsRejection, LoginStart, TestedAssertion};
pub use options::ConnectionOptions;

use crate::{
    Settings,
    infra::store::Store,
    sign_in::{SignInService, pending::PendingStore},
};

/// How long an SP-initiated request may wait for the IdP's answer.
pub const REQUEST_TTL_SECS: u64 = 10 * 60;

/// Counters the metrics endpoint reads.
#[derive(Debug, Default)]
pub struct SamlCounters {
    pub metadata_refresh_failures: AtomicU64,
}

#[derive(Clone)]
pub struct SamlService {
    store: Store,
    sign_in: SignInService,
    pending: PendingStore,
    public_url: String,
    fetcher: fetch::MetadataFetcher,
    refresh_every_secs: i64,
    pub counters: Arc<SamlCounters>,
    /// What the ACS reads of a connection, per store revision (see `flow::AcsContext`).
    acs_contexts: Arc<quick_cache::sync::Cache<String, (i64, Arc<flow::AcsContext>)>>,
}

/// Connections whose ACS context is remembered at once; more only cost a read each.
const ACS_CONTEXT_CAPACITY: usize = 1024;

impl SamlService {
    pub fn new(
        store: Store,
        sign_in: SignInService,
        pending: PendingStore,
        settings: &Settings,
    ) -> Self {
        Self {
            store,
            sign_in,
            pending,
            public_url: settings.public_url.clone(),
            fetcher: fetch::MetadataFetcher::new(settings.saml_metadata_allow_private),
            refresh_every_secs: i64::try_from(settings.saml_metadata_refresh.as_secs())
                .unwrap_or(6 * 3600),
            counters: Arc::default(),
            acs_contexts: Arc::new(quick_cache::sync::Cache::new(ACS_CONTEXT_CAPACITY)),
        }
    }

    /// The SP's URLs of a connection, stable for its lifetime.
    pub fn urls(&self, connection_id: &str) -> SpUrls {
        SpUrls::new(&self.public_url, connection_id)
    }

    pub fn metadata_refresh_failures(&self) -> u64 {
        self.counters.metadata_refresh_failures.load(Ordering::Relaxed)
    }
}

/// The service provider's URLs for one connection.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SpUrls {
    pub sp_entity_id: String,
    pub acs_url: String,
    pub metadata_url: String,
    pub login_url: String,
    pub slo_url: String,
}

impl SpUrls {
    pub fn new(public_url: &str, connection_id: &str) -> Self {
        let base = format!("{public_url}/saml/{connection_id}");
        Self {
            acs_url: format!("{base}/acs"),
            metadata_url: format!("{base}/metadata"),
            login_url: format!("{base}/login"),
            slo_url: format!("{base}/slo"),
            sp_entity_id: base,
        }
    }
}
