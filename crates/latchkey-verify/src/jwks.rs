//! The cached key set: fetched from the issuer, refreshed when it ages or when a token names an
//! unknown `kid` (at most one fetch per `min_refetch_interval`), and kept in use past its age
//! for `stale_if_error` while fetches fail.

use std::sync::{Arc, RwLock};

use serde_json::Value;

use crate::{
    error::VerifyError,
    jwk::{KeySet, PublicKey},
    verifier::CacheSettings,
};

/// Larger key-set or discovery documents are refused.
const MAX_DOCUMENT: usize = 512 * 1024;

pub enum KeySource {
    Static(Arc<KeySet>),
    Http { http: reqwest::Client, issuer: String, jwks_uri: Option<String>, discovery: bool },
}

#[derive(Default)]
struct State {
    keys: Option<Arc<KeySet>>,
    /// When `keys` was fetched.
    fetched_at: i64,
    /// When a fetch last started, whatever its outcome.
    attempted_at: Option<i64>,
    /// The key set's address once discovery found it.
    jwks_uri: Option<String>,
}

pub struct JwksCache {
    source: KeySource,
    settings: CacheSettings,
    state: RwLock<State>,
    /// One fetch at a time; waiters reuse its result.
    fetching: tokio::sync::Mutex<()>,
}

impl JwksCache {
    pub fn new(source: KeySource, settings: CacheSettings) -> Self {
        Self {
            source,
            settings,
            state: RwLock::new(State::default()),
            fetching: Default::default(),
        }
    }

    fn snapshot(&self) -> (Option<Arc<KeySet>>, i64, Option<i64>) {
        match self.state.read() {
            Ok(s) => (s.keys.clone(), s.fetched_at, s.attempted_at),
            Err(_) => (None, 0, None),
        }
    }

    fn may_fetch(&self, attempted_at: Option<i64>, now: i64) -> bool {
        attempted_at.is_none_or(|t| now.saturating_sub(t) >= self.settings.min_refetch_interval)
    }

    /// The key named `kid`.
    pub async fn key(&self, kid: &str, now: i64) -> Result<Arc<PublicKey>, VerifyError> {
        let keys = self.keys(now).await?;
        if let Some(k) = keys.get(kid) {
            return Ok(k.clone());
        }
        if matches!(self.source, KeySource::Static(_)) {
            return Err(VerifyError::UnknownKey);
        }
        // An unknown kid may be a freshly rotated key: refetch, within the rate limit, since
        // anyone can send tokens with made-up kids.
        let (_, _, attempted_at) = self.snapshot();
        if !self.may_fetch(attempted_at, now) {
            return Err(VerifyError::UnknownKey);
        }
        self.refresh(attempted_at, now).await;
        let (keys, _, _) = self.snapshot();
        keys.and_then(|k| k.get(kid).cloned()).ok_or(VerifyError::UnknownKey)
    }

    /// The key set to use at `now`: the cached one while fresh, else a refetched one, else
    /// (stale-if-error) the last good one while it is young enough.
    async fn keys(&self, now: i64) -> Result<Arc<KeySet>, VerifyError> {
        if let KeySource::Static(keys) = &self.source {
            return Ok(keys.clone());
        }
        let (keys, fetched_at, attempted_at) = self.snapshot();
        let age = now.saturating_sub(fetched_at);
        if let Some(k) = &keys
            && age < self.settings.max_age
        {
            return Ok(k.clone());
        }
        if self.may_fetch(attempted_at, now) {
            self.refresh(attempted_at, now).await;
        }
        let (keys, fetched_at, _) = self.snapshot();
        let limit = self.settings.max_age.saturating_add(self.settings.stale_if_error);
        keys.filter(|_| now.saturating_sub(fetched_at) < limit).ok_or(VerifyError::KeysUnavailable)
    }

    pub async fn prefetch(&self, now: i64) -> Result<usize, VerifyError> {
        let (_, _, attempted_at) = self.snapshot();
        if self.may_fetch(attempted_at, now) {
            self.refresh(attempted_at, now).await;
        }
        self.keys(now).await.map(|k| k.len())
    }

    /// Fetches the key set unless another task started a fetch since `seen_attempt`.
    async fn refresh(&self, seen_attempt: Option<i64>, now: i64) {
        let _guard = self.fetching.lock().await;
        let jwks_uri = match self.state.write() {
            Ok(mut s) => {
                if s.attempted_at != seen_attempt {
                    return;
                }
                s.attempted_at = Some(now);
                s.jwks_uri.clone()
            }
            Err(_) => return,
        };
        match self.fetch(jwks_uri).await {
            Ok((keys, uri)) => {
                if let Ok(mut s) = self.state.write() {
                    tracing::debug!(keys = keys.len(), "fetched the issuer's key set");
                    s.keys = Some(Arc::new(keys));
                    s.fetched_at = now;
                    s.jwks_uri = Some(uri);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not fetch the issuer's key set"),
        }
    }

    async fn fetch(&self, known_uri: Option<String>) -> Result<(KeySet, String), String> {
        let KeySource::Http { http, issuer, jwks_uri, discovery } = &self.source else {
            return Err("static key set".into());
        };
        let uri = match (known_uri.or_else(|| jwks_uri.clone()), discovery) {
            (Some(u), _) => u,
            (None, true) => discover(http, issuer).await?,
            (None, false) => format!("{issuer}/.well-known/jwks.json"),
        };
        let body = get(http, &uri).await?;
        let keys = KeySet::from_json(&body).map_err(str::to_owned)?;
        Ok((keys, uri))
    }
}

async fn get(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let res = http
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !res.status().is_success() {
        return Err(format!("{url}: HTTP {}", res.status()));
    }
    if res.content_length().is_some_and(|l| l > MAX_DOCUMENT as u64) {
        return Err(format!("{url}: document too large"));
    }
    let body = res.bytes().await.map_err(|e| format!("{url}: {e}"))?;
    if body.len() > MAX_DOCUMENT {
        return Err(format!("{url}: document too large"));
    }
    Ok(body.to_vec())
}

/// The `jwks_uri` of the issuer's discovery document, whose `issuer` must be ours exactly
/// (OpenID Connect Discovery §4.3).
async fn discover(http: &reqwest::Client, issuer: &str) -> Result<String, String> {
    let url = format!("{issuer}/.well-known/openid-configuration");
    let doc: Value =
        serde_json::from_slice(&get(http, &url).await?).map_err(|_| format!("{url}: not JSON"))?;
    if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
        return Err(format!("{url}: the document names another issuer"));
    }
    doc.get("jwks_uri")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or(format!("{url}: no jwks_uri"))
}
