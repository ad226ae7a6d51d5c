//! The verifier: configuration, then per token: split, header checks, key by `kid`, signature,
//! claims.

use std::{sync::Arc, time::Duration};

use crate::{
    claims::{Claims, TokenType},
    clock::{Clock, SystemClock},
    error::VerifyError,
    jwk::KeySet,
    jwks::{JwksCache, KeySource},
    jws,
    rules::{self, Policy},
};

/// A configuration the verifier refuses to start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("the issuer must be an http(s) URL without a trailing slash: {0}")]
    Issuer(String),
    #[error("no audience and no authorised party configured: every token would be refused")]
    NothingAccepted,
    #[error("no token type accepted")]
    NoTokenType,
    #[error("the static JWKS is not valid: {0}")]
    Jwks(&'static str),
    #[error("the HTTP client could not be built: {0}")]
    Http(String),
}

/// Builds a [`Verifier`]; see [`Verifier::builder`].
pub struct VerifierBuilder {
    policy: Policy,
    jwks_uri: Option<String>,
    discovery: bool,
    static_jwks: Option<Vec<u8>>,
    clock: Arc<dyn Clock>,
    cache: CacheSettings,
    http: Option<reqwest::Client>,
}

/// How the key set is cached.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// A key set older than this is refreshed before use, so a key withdrawn from the JWKS
    /// stops verifying within this time.
    pub max_age: i64,
    /// At most one fetch per this interval, whatever triggers it (an unknown `kid`, an aged or
    /// failing key set).
    pub min_refetch_interval: i64,
    /// How long past `max_age` the last good key set keeps being used while fetches fail.
    pub stale_if_error: i64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self { max_age: 600, min_refetch_interval: 30, stale_if_error: 86_400 }
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

impl VerifierBuilder {
    /// An audience (`aud`) this API accepts: usually the API's own URL or identifier.
    pub fn audience(mut self, aud: impl Into<String>) -> Self {
        self.policy.audiences.push(aud.into());
        self
    }

    /// An authorised party this API accepts session tokens for: the origin of a web app
    /// (`https://app.example.com`), which Latchkey puts in the token's `azp`.
    pub fn authorized_party(mut self, azp: impl Into<String>) -> Self {
        self.policy.authorized_parties.push(azp.into());
        self
    }

    /// An OAuth client whose access tokens (`client_id`) this API accepts. Without any, access
    /// tokens of every client are accepted when their `aud` is one of [`Self::audience`].
    pub fn client(mut self, client_id: impl Into<String>) -> Self {
        self.policy.clients.push(client_id.into());
        self
    }

    /// The token types accepted; both by default.
    pub fn token_types(mut self, types: &[TokenType]) -> Self {
        self.policy.types = types.to_vec();
        self
    }

    /// Tolerated clock difference on `exp`, `nbf` and `iat`; 5 s by default.
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.policy.skew = secs(skew);
        self
    }

    /// Scopes every token must have been granted (`insufficient_scope` otherwise). Session
    /// tokens carry no scopes: requiring one accepts access tokens only.
    pub fn required_scope(mut self, scope: impl Into<String>) -> Self {
        self.policy.required_scopes.push(scope.into());
        self
    }

    /// Where to fetch the key set; `{issuer}/.well-known/jwks.json` by default.
    pub fn jwks_uri(mut self, uri: impl Into<String>) -> Self {
        self.jwks_uri = Some(uri.into());
        self
    }

    /// Take the key set's address from `{issuer}/.well-known/openid-configuration` (whose
    /// `issuer` must match exactly) instead of the default path.
    pub fn use_discovery(mut self) -> Self {
        self.discovery = true;
        self
    }

    /// A fixed key set (a JWKS document), never fetched nor refreshed: for offline use,
    /// tests and benchmarks.
    pub fn static_jwks(mut self, jwks: impl Into<Vec<u8>>) -> Self {
        self.static_jwks = Some(jwks.into());
        self
    }

    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    pub fn cache(mut self, cache: CacheSettings) -> Self {
        self.cache = cache;
        self
    }

    /// The HTTP client for key fetches (its timeouts, proxy and TLS roots). By default: 10 s
    /// timeout, no redirects.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    pub fn build(self) -> Result<Verifier, ConfigError> {
        let issuer = &self.policy.issuer;
        if !(issuer.starts_with("https://") || issuer.starts_with("http://"))
            || issuer.ends_with('/')
        {
            return Err(ConfigError::Issuer(issuer.clone()));
        }
        if self.policy.audiences.is_empty() && self.policy.authorized_parties.is_empty() {
            return Err(ConfigError::NothingAccepted);
        }
        if self.policy.types.is_empty() {
            return Err(ConfigError::NoTokenType);
        }
        let source = match self.static_jwks {
            Some(doc) => {
                KeySource::Static(Arc::new(KeySet::from_json(&doc).map_err(ConfigError::Jwks)?))
            }
            None => {
                let http = match self.http {
                    Some(c) => c,
                    None => reqwest::Client::builder()
                        .redirect(reqwest::redirect::Policy::none())
                        .timeout(Duration::from_secs(10))
                        .build()
                        .map_err(|e| ConfigError::Http(e.to_string()))?,
                };
                KeySource::Http {
                    http,
                    issuer: issuer.clone(),
                    jwks_uri: self.jwks_uri,
                    discovery: self.discovery,
                }
            }
        };
        let cache = JwksCache::new(source, self.cache);
        Ok(Verifier { inner: Arc::new(Inner { policy: self.policy, clock: self.clock, cache }) })
    }
}

struct Inner {
    policy: Policy,
    clock: Arc<dyn Clock>,
    cache: JwksCache,
}

/// Verifies Latchkey tokens. Cheap to clone: clones share the key cache.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("policy", &self.inner.policy).finish_non_exhaustive()
    }
}

impl Verifier {
    /// Starts a configuration for tokens issued by `issuer` (Latchkey's public URL, exactly as
    /// in the tokens' `iss`, e.g. `https://id.example.com`).
    pub fn builder(issuer: impl Into<String>) -> VerifierBuilder {
        VerifierBuilder {
            policy: Policy {
                issuer: issuer.into(),
                audiences: Vec::new(),
                authorized_parties: Vec::new(),
                clients: Vec::new(),
                types: vec![TokenType::Session, TokenType::Access],
                skew: 5,
                required_scopes: Vec::new(),
            },
            jwks_uri: None,
            discovery: false,
            static_jwks: None,
            clock: Arc::new(SystemClock),
            cache: CacheSettings::default(),
            http: None,
        }
    }

    /// The scopes every token must have been granted ([`VerifierBuilder::required_scope`]).
    pub fn required_scopes(&self) -> &[String] {
        &self.inner.policy.required_scopes
    }

    pub fn issuer(&self) -> &str {
        &self.inner.policy.issuer
    }

    /// Verifies a compact JWS and returns its claims. Awaits only when the key set must be
    /// fetched (first use, an unknown `kid`, an aged key set).
    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        let inner = &*self.inner;
        let now = inner.clock.now();
        let parts = jws::split(token)?;
        let header = jws::header(&parts.header)?;
        let typ = header.typ.as_deref().and_then(TokenType::from_typ).ok_or(VerifyError::Type)?;
        if !inner.policy.types.contains(&typ) {
            return Err(VerifyError::Type);
        }
        let kid = header.kid.as_deref().ok_or(VerifyError::Malformed("no kid"))?;
        let key = inner.cache.key(kid, now).await?;
        key.verify(&header.alg, parts.signing_input.as_bytes(), &parts.signature)?;
        let claims = jws::claims(parts.payload_b64)?;
        rules::check(&inner.policy, typ, &claims, now)?;
        Ok(Claims::new(typ, claims))
    }

    /// Fetches the key set now (e.g. at start-up, to fail early), within the refetch limit.
    pub async fn prefetch(&self) -> Result<usize, VerifyError> {
        self.inner.cache.prefetch(self.inner.clock.now()).await
    }
}
