//! Google and Microsoft as seen by Latchkey, the relying party: their discovery documents and
//! keys (cached), and an `openidconnect` client built from them. Which document applies is a
//! [`Target`]: Google's issuer, one Microsoft tenant's own `{authority}/{tid}/v2.0`, or
//! Microsoft's multi-tenant `/common`. The production path is the same whatever the endpoint;
//! only the configured issuer and authority differ.
//!
//! Microsoft's multi-tenant document names the template issuer `{authority}/{tenantid}/v2.0`,
//! which no token carries, so for that target the crate's issuer comparison is off and the
//! caller must check `iss` against the token's own `tid` (`latchkey_easie::microsoft` does, for
//! every Microsoft sign-in). Every other target's issuer is compared byte for byte, both in the
//! discovery document and in every token.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::Engine;
use latchkey_easie::{Authority, TenantId};
use openidconnect::{
    ClientId, ClientSecret, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenVerifier,
    RedirectUrl,
    core::{
        CoreClient, CoreIdToken, CoreJsonWebKey, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
        CoreProviderMetadata,
    },
};

use crate::{
    identity::method::Upstream,
    infra::{clock::Clock, config::UpstreamSettings},
};

/// The client type `from_provider_metadata` builds: authorization endpoint set, token and
/// userinfo endpoints as discovered.
pub type RpClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A cached document is used for this long; an unknown signing key refetches it sooner.
const METADATA_TTL_SECS: i64 = 3600;
/// At most one refetch per target in this interval, so forged `kid`s cannot make us hammer
/// the provider.
const MIN_REFETCH_SECS: i64 = 30;
/// Discovery, keys and token requests give up after this long (then: upstream unavailable).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Which discovery document (and so which endpoints and issuer) a request uses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Google,
    /// An enrolled tenant, signed in through its own endpoints.
    MicrosoftTenant(TenantId),
    /// Consumer and work accounts of any tenant (`/common`).
    MicrosoftCommon,
}

impl Target {
    pub fn provider(&self) -> Upstream {
        match self {
            Self::Google => Upstream::Google,
            Self::MicrosoftTenant(_) | Self::MicrosoftCommon => Upstream::Microsoft,
        }
    }

    /// The stored form (`google`, `microsoft:{tid}`, `microsoft:common`), kept in pending
    /// requests and grants.
    pub fn to_stored(&self) -> String {
        match self {
            Self::Google => "google".into(),
            Self::MicrosoftTenant(t) => format!("microsoft:{}", t.as_str()),
            Self::MicrosoftCommon => "microsoft:common".into(),
        }
    }

    pub fn from_stored(s: &str) -> Option<Self> {
        match s.split_once(':') {
            None if s == "google" => Some(Self::Google),
            Some(("microsoft", "common")) => Some(Self::MicrosoftCommon),
            Some(("microsoft", tid)) => TenantId::parse(tid).ok().map(Self::MicrosoftTenant),
            _ => None,
        }
    }

    /// The base that `/.well-known/openid-configuration` is appended to.
    fn base(&self, s: &UpstreamSettings) -> String {
        match self {
            Self::Google => s.google_issuer.clone(),
            Self::MicrosoftTenant(t) => format!("{}/{}/v2.0", s.microsoft_authority, t.as_str()),
            Self::MicrosoftCommon => format!("{}/common/v2.0", s.microsoft_authority),
        }
    }

    /// The issuer the discovery document must name exactly.
    fn document_issuer(&self, s: &UpstreamSettings) -> String {
        match self {
            Self::MicrosoftCommon => format!("{}/{{tenantid}}/v2.0", s.microsoft_authority),
            _ => self.base(s),
        }
    }

    /// Whether every token's `iss` must equal the document's issuer (see the module docs).
    fn issuer_is_fixed(&self) -> bool {
        !matches!(self, Self::MicrosoftCommon)
    }
}

/// Why talking to the provider failed: a stable reason for the audit log and metrics, and
/// whether the provider (rather than the answer) is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct UpstreamError {
    pub reason: &'static str,
    pub detail: String,
    /// A network failure, a timeout or a 5xx: nothing is known about the account.
    pub transient: bool,
}

impl UpstreamError {
    pub fn refused(reason: &'static str, detail: impl Into<String>) -> Self {
        Self { reason, detail: detail.into(), transient: false }
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self { reason: "upstream_unavailable", detail: detail.into(), transient: true }
    }
}

struct Cached {
    metadata: Arc<CoreProviderMetadata>,
    fetched_at: i64,
}

/// The providers' documents, fetched on first use and cached per target.
#[derive(Clone)]
pub struct Directory {
    settings: Arc<UpstreamSettings>,
    http: reqwest::Client,
    clock: Clock,
    cache: Arc<Mutex<HashMap<Target, Cached>>>,
}

impl Directory {
    pub fn new(settings: &UpstreamSettings, clock: Clock) -> crate::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| crate::Error::Internal(format!("HTTP client: {e}")))?;
        Ok(Self { settings: Arc::new(settings.clone()), http, clock, cache: Arc::default() })
    }

    pub fn settings(&self) -> &UpstreamSettings {
        &self.settings
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn authority(&self) -> Result<Authority, UpstreamError> {
        Authority::parse(&self.settings.microsoft_authority)
            .map_err(|e| UpstreamError::refused("authority_invalid", e.to_string()))
    }

    /// The configured client of `provider`, or a refusal naming what is missing.
    pub fn credentials(
        &self,
        provider: Upstream,
    ) -> Result<(ClientId, ClientSecret), UpstreamError> {
        let client = match provider {
            Upstream::Google => &self.settings.google,
            Upstream::Microsoft => &self.settings.microsoft,
        };
        client
            .as_ref()
            .map(|c| {
                (ClientId::new(c.client_id.clone()), ClientSecret::new(c.client_secret.clone()))
            })
            .ok_or_else(|| UpstreamError::refused("provider_not_configured", provider.as_str()))
    }

    /// An `openidconnect` client for `target`, answering at `redirect_uri`.
    pub async fn client(
        &self,
        target: &Target,
        redirect_uri: &str,
    ) -> Result<RpClient, UpstreamError> {
        let metadata = self.metadata(target, false).await?;
        self.client_from(target, &metadata, redirect_uri)
    }

    fn client_from(
        &self,
        target: &Target,
        metadata: &CoreProviderMetadata,
        redirect_uri: &str,
    ) -> Result<RpClient, UpstreamError> {
        let (id, secret) = self.credentials(target.provider())?;
        let redirect = RedirectUrl::new(redirect_uri.to_owned())
            .map_err(|e| UpstreamError::refused("redirect_uri_invalid", e.to_string()))?;
        Ok(CoreClient::from_provider_metadata(metadata.clone(), id, Some(secret))
            .set_redirect_uri(redirect))
    }

    /// The document of `target`, from the cache unless it is stale or `refetch` asks for a new
    /// copy (at most once per [`MIN_REFETCH_SECS`]).
    pub async fn metadata(
        &self,
        target: &Target,
        refetch: bool,
    ) -> Result<Arc<CoreProviderMetadata>, UpstreamError> {
        let now = self.clock.now();
        if let Ok(cache) = self.cache.lock()
            && let Some(c) = cache.get(target)
        {
            let age = now.saturating_sub(c.fetched_at);
            if age < METADATA_TTL_SECS && (!refetch || age < MIN_REFETCH_SECS) {
                return Ok(c.metadata.clone());
            }
        }
        let metadata = Arc::new(self.fetch(target).await?);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(target.clone(), Cached { metadata: metadata.clone(), fetched_at: now });
        }
        Ok(metadata)
    }

    async fn fetch(&self, target: &Target) -> Result<CoreProviderMetadata, UpstreamError> {
        let url = format!("{}/.well-known/openid-configuration", target.base(&self.settings));
        let metadata: CoreProviderMetadata = self.get_json(&url).await?;
        let expected = target.document_issuer(&self.settings);
        if metadata.issuer().as_str() != expected {
            return Err(UpstreamError::refused(
                "discovery_issuer_mismatch",
                format!("{url} names issuer {}, expected {expected}", metadata.issuer().as_str()),
            ));
        }
        let jwks: CoreJsonWebKeySet = self.get_json(metadata.jwks_uri().as_str()).await?;
        Ok(metadata.set_jwks(jwks))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<T, UpstreamError> {
        let res = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| UpstreamError::unavailable(format!("{url}: {e}")))?;
        let status = res.status();
        if status.is_server_error() {
            return Err(UpstreamError::unavailable(format!("{url}: HTTP {status}")));
        }
        if !status.is_success() {
            return Err(UpstreamError::refused(
                "discovery_failed",
                format!("{url}: HTTP {status}"),
            ));
        }
        let body =
            res.bytes().await.map_err(|e| UpstreamError::unavailable(format!("{url}: {e}")))?;
        serde_json::from_slice(&body)
            .map_err(|e| UpstreamError::refused("discovery_invalid", format!("{url}: {e}")))
    }

    /// Verifies an ID token's signature (with an asymmetric key of the provider: never the
    /// client secret, never `none`), audience and authorized party, expiry (by our clock) and,
    /// where the target fixes it, issuer; `nonce`, when given, must be there and match. Returns
    /// the verified payload as JSON for the EASIE rules. An unknown key refetches the
    /// provider's keys once.
    pub async fn verify_id_token(
        &self,
        target: &Target,
        token: &CoreIdToken,
        nonce: Option<&str>,
    ) -> Result<serde_json::Value, UpstreamError> {
        let metadata = self.metadata(target, false).await?;
        match self.verify_with(target, &metadata, token, nonce) {
            Err(e) if e.reason == "signature_key_unknown" => {
                let metadata = self.metadata(target, true).await?;
                self.verify_with(target, &metadata, token, nonce)
            }
            other => other,
        }
    }

    fn verify_with(
        &self,
        target: &Target,
        metadata: &CoreProviderMetadata,
        token: &CoreIdToken,
        nonce: Option<&str>,
    ) -> Result<serde_json::Value, UpstreamError> {
        use openidconnect::{
            ClaimsVerificationError as E, Nonce, NonceVerifier, SignatureVerificationError as S,
        };
        let (id, _) = self.credentials(target.provider())?;
        let client_id = id.as_str().to_owned();
        let clock = self.clock.clone();
        let now = clock.now();
        let verifier: IdTokenVerifier<'_, CoreJsonWebKey> = IdTokenVerifier::new_public_client(
            id,
            metadata.issuer().clone(),
            metadata.jwks().clone(),
        )
        .set_allowed_algs(asymmetric_algs(metadata))
        .require_issuer_match(target.issuer_is_fixed())
        .set_time_fn(move || chrono::DateTime::from_timestamp(clock.now(), 0).unwrap_or_default())
        .set_issue_time_verifier_fn(move |iat| {
            latchkey_easie::claims::check_issued_at(iat.timestamp(), now)
                .map_err(|_| IAT_IN_FUTURE.to_owned())
        });
        let checked = match nonce {
            Some(n) => {
                let expected = Nonce::new(n.to_owned());
                let verify = |got: Option<&Nonce>| match got {
                    None => Err(NONCE_MISSING.to_owned()),
                    Some(_) => (&expected).verify(got),
                };
                token.claims(&verifier, verify).map(|_| ())
            }
            // A refreshed ID token carries no nonce (OIDC Core 12.2).
            None => token.claims(&verifier, |_: Option<&Nonce>| Ok(())).map(|_| ()),
        };
        checked.map_err(|e| {
            let reason = match &e {
                // The crate reports a refused issue time as `Expired`, with our message.
                E::Expired(m) if m == IAT_IN_FUTURE => "id_token_issued_in_future",
                E::Expired(_) => "id_token_expired",
                E::InvalidAudience(_) => "audience_mismatch",
                E::InvalidIssuer(_) => "issuer_mismatch",
                E::InvalidNonce(m) if m == NONCE_MISSING => "nonce_missing",
                E::InvalidNonce(_) => "nonce_mismatch",
                E::SignatureVerification(S::NoMatchingKey) => "signature_key_unknown",
                // `alg: none` is refused by the crate before the allow-list is consulted.
                E::SignatureVerification(S::DisallowedAlg(_) | S::NoSignature) => {
                    "signature_algorithm_refused"
                }
                E::SignatureVerification(_) => "signature_invalid",
                _ => "id_token_invalid",
            };
            UpstreamError::refused(reason, e.to_string())
        })?;
        let claims = payload(&token.to_string())?;
        latchkey_easie::claims::check_authorized_party(&claims, &client_id)
            .map_err(|r| UpstreamError::refused(r.reason(), r.message()))?;
        Ok(claims)
    }
}

/// Our nonce verifier's word for an ID token without a `nonce`, told apart from a wrong one.
const NONCE_MISSING: &str = "the ID token has no nonce";
const IAT_IN_FUTURE: &str = "the ID token says it was issued in the future (iat)";

/// The algorithms the provider advertises, minus the HMAC ones: the client secret is shared,
/// so a token "signed" with it proves nothing about the provider.
fn asymmetric_algs(metadata: &CoreProviderMetadata) -> Vec<CoreJwsSigningAlgorithm> {
    use CoreJwsSigningAlgorithm as A;
    metadata
        .id_token_signing_alg_values_supported()
        .iter()
        .filter(|a| !matches!(a, A::HmacSha256 | A::HmacSha384 | A::HmacSha512 | A::None))
        .cloned()
        .collect()
}

/// A token response the crate could not read because of its ID token (a claim of the wrong
/// type, `sub` missing): the provider's malformed answer, refused as such, where the whole
/// response would otherwise count as unreadable, i.e. as an outage.
pub(crate) fn unreadable_id_token(body: &[u8]) -> Option<UpstreamError> {
    let response: serde_json::Value = serde_json::from_slice(body).ok()?;
    let id_token = response.get("id_token")?;
    let refused = |d: String| Some(UpstreamError::refused("claims_malformed", d));
    match id_token.as_str().map(str::parse::<CoreIdToken>) {
        None => refused("the id_token is not a string".into()),
        Some(Err(e)) => refused(e.to_string()),
        Some(Ok(_)) => None,
    }
}

/// The payload of a compact JWS whose signature was verified: the claims the EASIE rules read
/// (`hd`, `tid`, `oid`, `acct`, `xms_edov`), which the crate's typed claims drop.
fn payload(compact: &str) -> Result<serde_json::Value, UpstreamError> {
    let bad = |d: &str| UpstreamError::refused("id_token_invalid", d.to_owned());
    let part = compact.split('.').nth(1).ok_or_else(|| bad("not a compact JWS"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| bad("payload is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| bad("payload is not JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_round_trip_through_their_stored_form() {
        let tid = TenantId::parse("11111111-1111-4111-8111-111111111111").unwrap();
        for t in [Target::Google, Target::MicrosoftCommon, Target::MicrosoftTenant(tid)] {
            assert_eq!(Target::from_stored(&t.to_stored()), Some(t));
        }
        for bad in ["", "microsoft", "microsoft:", "microsoft:not-a-guid", "yahoo", "google:x"] {
            assert_eq!(Target::from_stored(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_an_unreadable_id_token_makes_a_token_response_malformed() {
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let jwt = |claims: serde_json::Value| {
            format!("{}.{}.c2ln", b64(serde_json::json!({ "alg": "RS256" })), b64(claims))
        };
        let claims = serde_json::json!({
            "iss": "https://issuer.test", "aud": "client", "sub": "1", "iat": 1, "exp": 2,
        });
        let body = |id_token: serde_json::Value| {
            serde_json::json!({ "access_token": "a", "token_type": "Bearer", "id_token": id_token })
                .to_string()
        };
        assert_eq!(unreadable_id_token(body(jwt(claims.clone()).into()).as_bytes()), None);
        let mut string_flag = claims.clone();
        string_flag["email_verified"] = "true".into();
        let mut no_sub = claims;
        no_sub.as_object_mut().unwrap().remove("sub");
        for bad in [jwt(string_flag).into(), jwt(no_sub).into(), "x.y".into(), 42.into()] {
            let refused = unreadable_id_token(body(bad).as_bytes()).unwrap();
            assert_eq!(refused.reason, "claims_malformed");
            assert!(!refused.transient);
        }
        // Whatever else is wrong with a response is not the ID token's fault.
        assert_eq!(unreadable_id_token(br#"{"access_token": 1}"#), None);
        assert_eq!(unreadable_id_token(b"<html>502</html>"), None);
    }

    #[test]
    fn the_payload_is_read_only_from_a_compact_jws() {
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"hd":"a.test"}"#);
        assert_eq!(payload(&format!("h.{claims}.s")).unwrap()["hd"], "a.test");
        assert!(payload("no-dots").is_err());
        assert!(payload("h.!!!.s").is_err());
        let not_json = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b"[1");
        assert!(payload(&format!("h.{not_json}.s")).is_err());
    }
}
