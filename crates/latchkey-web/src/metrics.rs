//! Prometheus metrics, one registry per app so in-process tests do not share counters.

use std::{sync::atomic::AtomicU64, time::Duration};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
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
        Self {
            registry,
            requests,
            latency,
            tokens_minted,
            token_rejections,
            sessions_revoked,
            sessions,
        }
    }
}

impl Metrics {
    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels { method: method.to_owned(), route: route.to_owned() })
            .observe(elapsed.as_secs_f64());
    }

    pub fn token_minted(&self, alg: &str) {
        self.tokens_minted.get_or_create(&AlgLabels { alg: alg.to_owned() }).inc();
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
