//! Prometheus metrics, one registry per app so in-process tests do not share counters.

use std::{sync::atomic::AtomicU64, time::Duration};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

// Request labels are interned `&'static str`s: looking a series up then allocates nothing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: &'static str,
}

/// The label for an HTTP method: the standard ones by name, anything else as `OTHER` (a client
/// must not be able to create series at will).
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] =
        ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT", "TRACE"];
    KNOWN.iter().find(|m| **m == method).copied().unwrap_or("OTHER")
}

/// A route pattern as a `&'static str`. Patterns are the registered routes (plus `unmatched`),
/// a fixed set, so each is leaked once.
fn route_label(route: &str) -> &'static str {
    static ROUTES: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<&'static str>>> =
        std::sync::OnceLock::new();
    let Ok(mut routes) = ROUTES.get_or_init(Default::default).lock() else { return "unknown" };
    if let Some(r) = routes.get(route) {
        return r;
    }
    let leaked: &'static str = Box::leak(route.to_owned().into_boxed_str());
    routes.insert(leaked);
    leaked
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlgLabels {
    alg: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    tokens_minted: Family<AlgLabels, Counter>,
    token_rejections: Counter,
    sessions_revoked: Counter<u64, AtomicU64>,
    sessions: Family<StatusLabels, Gauge>,
    saml_responses: Family<ReasonLabels, Counter>,
    saml_metadata_refresh_failures: Gauge,
    saml_certificates_expiring: Gauge,
    upstream_sign_ins: Family<ReasonLabels, Counter>,
    upstream_security_events: Family<ReasonLabels, Counter>,
    upstream_access_tokens: Family<ReasonLabels, Counter>,
    upstream_unavailable: Counter<u64, AtomicU64>,
    /// Serialises [`Self::set_upstream_unavailable`]: two scrapes must not both add the gap.
    upstream_sync: std::sync::Mutex<()>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    /// `accepted`, or the reason code of the refusal.
    outcome: String,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("latchkey");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ])
        });
        let tokens_minted = Family::<AlgLabels, Counter>::default();
        let token_rejections = Counter::default();
        let sessions_revoked = Counter::default();
        let sessions = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        registry.register("http_request_duration_seconds", "HTTP request latency", latency.clone());
        registry.register("session_tokens_minted", "Session JWTs minted", tokens_minted.clone());
        registry.register(
            "session_token_rejections",
            "Session token requests refused (no valid session)",
            token_rejections.clone(),
        );
        registry.register(
            "sessions_revoked",
            "Sessions revoked (all nodes and the CLI, as stored)",
            sessions_revoked.clone(),
        );
        registry.register("sessions", "Sessions in the store by stored status", sessions.clone());
        let saml_responses = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "saml_responses",
            "SAML responses at the ACS by outcome (accepted or the refusal reason)",
            saml_responses.clone(),
        );
        let saml_metadata_refresh_failures = Gauge::default();
        registry.register(
            "saml_metadata_refresh_failures",
            "Failed SAML metadata URL refreshes since this node started",
            saml_metadata_refresh_failures.clone(),
        );
        let saml_certificates_expiring = Gauge::default();
        registry.register(
            "saml_certificates_expiring",
            "IdP signing certificates of enabled SAML connections expiring within 90 days",
            saml_certificates_expiring.clone(),
        );
        let (upstream_sign_ins, upstream_unavailable, upstream_security_events) =
            register_upstream(&mut registry);
        let upstream_access_tokens = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "upstream_access_tokens",
            "Requests for a user's Google / Microsoft access token by outcome (issued, \
             not_connected, unavailable, error)",
            upstream_access_tokens.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            tokens_minted,
            token_rejections,
            sessions_revoked,
            sessions,
            saml_responses,
            saml_metadata_refresh_failures,
            saml_certificates_expiring,
            upstream_sign_ins,
            upstream_security_events,
            upstream_access_tokens,
            upstream_unavailable,
            upstream_sync: std::sync::Mutex::new(()),
        }
    }
}

/// The Google / Microsoft figures: callbacks and security events by outcome, and failed
/// requests to them.
fn register_upstream(
    registry: &mut Registry,
) -> (Family<ReasonLabels, Counter>, Counter<u64, AtomicU64>, Family<ReasonLabels, Counter>) {
    let upstream_sign_ins = Family::<ReasonLabels, Counter>::default();
    registry.register(
        "upstream_sign_ins",
        "Google / Microsoft callbacks by outcome (accepted or the refusal reason)",
        upstream_sign_ins.clone(),
    );
    let upstream_unavailable = Counter::<u64, AtomicU64>::default();
    registry.register(
        "upstream_unavailable",
        "Requests to Google or Microsoft that got no usable answer (network, timeout, 5xx) on this node",
        upstream_unavailable.clone(),
    );
    let upstream_security_events = Family::<ReasonLabels, Counter>::default();
    registry.register(
        "upstream_security_events",
        "Google RISC security event tokens received by outcome (revoked, unmatched, \
         no_action, ignored, or the refusal reason)",
        upstream_security_events.clone(),
    );
    (upstream_sign_ins, upstream_unavailable, upstream_security_events)
}

impl Metrics {
    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let (method, route) = (method_label(method), route_label(route));
        self.requests.get_or_create(&RequestLabels { method, route, status }).inc();
        self.latency.get_or_create(&RouteLabels { method, route }).observe(elapsed.as_secs_f64());
    }

    pub fn token_minted(&self, alg: &str) {
        self.tokens_minted.get_or_create(&AlgLabels { alg: alg.to_owned() }).inc();
    }

    /// A SAML response at the ACS: `accepted` or the refusal's reason code.
    pub fn saml_response(&self, outcome: &str) {
        self.saml_responses.get_or_create(&ReasonLabels { outcome: outcome.to_owned() }).inc();
    }

    pub fn upstream_sign_in(&self, outcome: &str) {
        self.upstream_sign_ins.get_or_create(&ReasonLabels { outcome: outcome.to_owned() }).inc();
    }

    /// A security event token at the RISC receiver: what became of it (a fixed set of labels).
    pub fn upstream_security_event(&self, outcome: &str) {
        self.upstream_security_events
            .get_or_create(&ReasonLabels { outcome: outcome.to_owned() })
            .inc();
    }

    /// A request for an upstream access token: what became of it (a fixed set of labels).
    pub fn upstream_access_token(&self, outcome: &str) {
        self.upstream_access_tokens
            .get_or_create(&ReasonLabels { outcome: outcome.to_owned() })
            .inc();
    }

    /// Sets the upstream figures just before a scrape (the core counts; the counter follows).
    pub fn set_upstream_unavailable(&self, total: u64) {
        let Ok(_guard) = self.upstream_sync.lock() else { return };
        let seen = self.upstream_unavailable.get();
        if total > seen {
            self.upstream_unavailable.inc_by(total - seen);
        }
    }

    /// Sets the SAML figures just before a scrape.
    pub fn set_saml_figures(&self, refresh_failures: u64, expiring: u64) {
        self.saml_metadata_refresh_failures
            .set(i64::try_from(refresh_failures).unwrap_or(i64::MAX));
        self.saml_certificates_expiring.set(i64::try_from(expiring).unwrap_or(i64::MAX));
    }

    pub fn token_rejected(&self) {
        self.token_rejections.inc();
    }

    /// Sets the store-derived figures just before a scrape.
    pub fn set_session_counts(&self, counts: &[(String, u64)]) {
        for (status, n) in counts {
            self.sessions
                .get_or_create(&StatusLabels { status: status.clone() })
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
            if status == "revoked" {
                let seen = self.sessions_revoked.get();
                if *n > seen {
                    self.sessions_revoked.inc_by(n - seen);
                }
            }
        }
    }

    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
