//! Google Cross-Account Protection (RISC): the receiver of the security event tokens (SETs,
//! RFC 8417) Google pushes to `{public_url}/oauth/risc/google` (RFC 8935). Faster than the
//! re-check's polling: `sessions-revoked`, `tokens-revoked`, `account-disabled` and
//! `account-purged` deprovision every grant of the subject at once, consumer grants included;
//! `account-enabled` and unknown events change nothing (re-enabling never resurrects a
//! revoked session).
//!
//! A SET is trusted only after its signature verifies against the keys of the configured
//! Google issuer (the same JWKS as its ID tokens, from the [`Directory`](super::Directory)
//! cache; an unknown `kid` refetches it once), its `iss` is that issuer, its `aud` our Google
//! client ID and its `iat` sane by our clock (`latchkey_easie::risc`). Its `jti` is recorded
//! in the transaction that acts on it, so a replay is refused on every node. Every SET
//! received is audited (`upstream.security_event`), a refused one with its reason, and a
//! refused one changes nothing.

use latchkey_easie::risc::{self, Action, EventKind, SecurityEventToken, Subject};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{
    UpstreamService,
    provider::{Target, UpstreamError},
    recheck::deprovision_in,
    vault,
};
use crate::infra::inline_sqlite::constraint_violation;
use crate::{
    Error, Result,
    identity::method::Upstream,
    infra::{
        audit::{self, Actor, ClientInfo},
        entity::{upstream_event_id, upstream_grant},
        jose,
    },
};

/// How old a SET may be. Google delivers within minutes, and retries a failed delivery for
/// days; the replay store keeps each `jti` this long plus the leeway.
pub const SET_MAX_AGE_SECS: i64 = risc::DEFAULT_SET_MAX_AGE_SECS;

/// What became of a SET: acknowledged (202) or refused (400, RFC 8935 §2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RiscOutcome {
    Accepted(RiscAccepted),
    Refused(RiscRefusal),
}

impl RiscOutcome {
    /// The label of the metric: the accepted outcome, or the refusal's reason.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Accepted(a) => a.outcome,
            Self::Refused(r) => r.reason,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiscAccepted {
    /// `revoked` (grants deprovisioned), `unmatched` (a revocation for an account with no
    /// active grant here), `no_action` (a known event that asks for nothing) or `ignored`
    /// (event types this receiver does not know).
    pub outcome: &'static str,
    pub jti: String,
    /// The grants this SET deprovisioned.
    pub grants_revoked: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiscRefusal {
    /// The RFC 8935 §2.4 error code: `invalid_request`, `invalid_key`, `invalid_issuer`,
    /// `invalid_audience`, `authentication_failed` or `access_denied`.
    pub err: &'static str,
    /// The stable reason code (audit, metrics).
    pub reason: &'static str,
    /// For the transmitter's operator: says what was wrong, names none of our data.
    pub description: String,
}

impl RiscRefusal {
    fn new(reason: &'static str, description: impl Into<String>) -> Self {
        Self { err: err_code(reason), reason, description: description.into() }
    }
}

impl From<latchkey_easie::Refusal> for RiscRefusal {
    fn from(r: latchkey_easie::Refusal) -> Self {
        Self::new(r.reason(), r.message())
    }
}

/// The RFC 8935 error code of a refusal reason. Anything not about keys, issuer, audience or
/// the transmitter's authorisation is a request that cannot be accepted as a SET.
pub fn err_code(reason: &str) -> &'static str {
    match reason {
        "signature_key_unknown" | "signature_algorithm_refused" => "invalid_key",
        "signature_invalid" => "authentication_failed",
        "issuer_mismatch" => "invalid_issuer",
        "aud_mismatch" => "invalid_audience",
        "provider_not_configured" => "access_denied",
        _ => "invalid_request",
    }
}

/// Whether the SET's `iss` is the configured Google issuer. Exact, except for one trailing
/// slash: Google's SETs say `https://accounts.google.com/` where its ID tokens (and discovery)
/// say `https://accounts.google.com`, so requiring the discovery form byte for byte would
/// refuse every real event.
pub fn issuer_accepted(claimed: Option<&Value>, configured: &str) -> bool {
    let Some(Value::String(claimed)) = claimed else { return false };
    let base = configured.strip_suffix('/').unwrap_or(configured);
    !base.is_empty() && (claimed == base || claimed.strip_suffix('/') == Some(base))
}

/// The replay store's key: hex SHA-256 of the issuer (without its trailing slash, so both
/// spellings of Google's issuer are one) and the `jti`, as a JSON pair so that no two pairs
/// share a key.
pub fn event_key(issuer: &str, jti: &str) -> String {
    let issuer = issuer.strip_suffix('/').unwrap_or(issuer);
    let digest = Sha256::digest(json!([issuer, jti]).to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The deprovisioning reason an event revokes with (`None`: the event revokes nothing).
pub fn revoke_reason(kind: EventKind) -> Option<&'static str> {
    match kind {
        EventKind::SessionsRevoked => Some("risc_sessions_revoked"),
        EventKind::TokensRevoked | EventKind::OAuthTokensRevoked => Some("risc_tokens_revoked"),
        EventKind::AccountDisabled => Some("risc_account_disabled"),
        EventKind::AccountPurged => Some("risc_account_purged"),
        _ => None,
    }
}

/// The algorithms a SET may be signed with: asymmetric only (the client secret is shared, so
/// an HMAC proves nothing about Google; `none` proves nothing at all), and only those
/// `infra::jose` verifies.
const SET_ALGS: [&str; 3] = ["RS256", "ES256", "EdDSA"];

/// Why verification stopped.
enum Stop {
    Refused(RiscRefusal),
    /// Google's keys could not be had: nothing is known about the SET.
    Upstream(UpstreamError),
}

impl From<RiscRefusal> for Stop {
    fn from(r: RiscRefusal) -> Self {
        Self::Refused(r)
    }
}

impl UpstreamService {
    /// Receives one SET pushed by Google (the request body, a compact JWS) from `client`.
    /// Storage failures, and Google's keys being out of reach, are errors (the transmitter
    /// retries); everything else is an outcome.
    pub async fn receive_security_event(
        &self,
        body: &[u8],
        client: &ClientInfo,
    ) -> Result<RiscOutcome> {
        let set = match self.verify_set(body).await {
            Ok(set) => set,
            Err(Stop::Refused(r)) => return self.refuse(client, r, None).await,
            Err(Stop::Upstream(e)) => {
                let r = RiscRefusal::new(e.reason, e.detail.clone());
                self.refuse(client, r, None).await?;
                return Err(if e.transient {
                    self.counters.unavailable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    Error::Unavailable(format!("Google's signing keys: {e}"))
                } else {
                    Error::Internal(format!("Google's signing keys: {e}"))
                });
            }
        };
        self.act_on(&set, client).await
    }

    /// The SET's claims, once its signature, issuer, audience and age are right.
    async fn verify_set(&self, body: &[u8]) -> std::result::Result<SecurityEventToken, Stop> {
        let (client_id, _) = self.directory.credentials(Upstream::Google).map_err(|_| {
            RiscRefusal::new("provider_not_configured", "Google sign-in is not configured here")
        })?;
        let malformed = |what: &str| RiscRefusal::new("set_malformed", what.to_owned());
        let text = std::str::from_utf8(body).map_err(|_| malformed("the body is not text"))?;
        let text = text.trim_ascii();
        let header = josekit::jwt::decode_header(text)
            .map_err(|_| malformed("the body is not a compact JWS"))?;
        let alg = header.claim("alg").and_then(Value::as_str).unwrap_or_default();
        if !SET_ALGS.contains(&alg) {
            let what = "the SET is not signed with an accepted asymmetric algorithm";
            return Err(RiscRefusal::new("signature_algorithm_refused", what).into());
        }
        let kid = header.claim("kid").and_then(Value::as_str).map(str::to_owned);
        let claims = self.verify_signature(text, kid.as_deref()).await?;
        let issuer = &self.directory.settings().google_issuer;
        if !issuer_accepted(claims.get("iss"), issuer) {
            let what = "the SET's iss is not the Google issuer this receiver trusts";
            return Err(RiscRefusal::new("issuer_mismatch", what).into());
        }
        let claims = Value::Object(claims);
        let now = self.store.now();
        Ok(risc::parse_set(&claims, client_id.as_str(), now, SET_MAX_AGE_SECS)
            .map_err(RiscRefusal::from)?)
    }

    /// Verifies the signature with Google's published keys (refetched once when `kid` is not
    /// among them: Google rotates its keys) and returns the payload.
    ///
    /// `infra::jose` (josekit) rather than `openidconnect`'s verifier: a SET is no ID token
    /// (no `exp`, no `sub`, no nonce), so the crate's ID-token verifier would refuse or
    /// misjudge it, while `jose::verify_with_jwks` is the compact-JWS check Latchkey already
    /// trusts for `private_key_jwt`, with no verifier at all for `none` and HMAC. The keys are
    /// the same cached `openidconnect` JWK set the ID tokens are verified with, as JSON.
    async fn verify_signature(
        &self,
        jws: &str,
        kid: Option<&str>,
    ) -> std::result::Result<Map<String, Value>, Stop> {
        let mut jwks = self.google_jwks(false).await?;
        if let Some(kid) = kid
            && !has_kid(&jwks, kid)
        {
            jwks = self.google_jwks(true).await?;
            if !has_kid(&jwks, kid) {
                let what = "the SET's kid is not among Google's published keys";
                return Err(RiscRefusal::new("signature_key_unknown", what).into());
            }
        }
        match jose::verify_with_jwks(jws, &jwks) {
            Ok((_, claims)) => Ok(claims),
            Err(Error::Unauthenticated("JWT signature not valid")) => {
                let what = "the SET's signature does not verify with Google's published keys";
                Err(RiscRefusal::new("signature_invalid", what).into())
            }
            Err(_) => {
                Err(RiscRefusal::new("set_malformed", "the body is not a compact JWS").into())
            }
        }
    }

    async fn google_jwks(&self, refetch: bool) -> std::result::Result<Value, Stop> {
        let metadata =
            self.directory.metadata(&Target::Google, refetch).await.map_err(Stop::Upstream)?;
        serde_json::to_value(metadata.jwks())
            .map_err(|e| Stop::Upstream(UpstreamError::refused("jwks_invalid", e.to_string())))
    }

    /// Records the `jti` and acts on the events in one transaction: of two deliveries of one
    /// SET, to one node or two, the insert of one key decides which acts.
    async fn act_on(&self, set: &SecurityEventToken, client: &ClientInfo) -> Result<RiscOutcome> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        if !record_event_id(&txn, &self.directory.settings().google_issuer, set).await? {
            txn.rollback().await?;
            let what = "this SET (its jti) was received already";
            return self.refuse(client, RiscRefusal::new("jti_replayed", what), Some(set)).await;
        }
        let mut revoked = Vec::new();
        for event in set.events.iter().filter(|e| e.action() == Action::RevokeNow) {
            let (Some(subject), Some(reason)) = (&event.subject, revoke_reason(event.kind)) else {
                continue;
            };
            let detail = event.reason.as_deref().unwrap_or_default();
            for grant in active_grants_of(&txn, subject).await? {
                if deprovision_in(&txn, &grant, reason, detail, &Actor::system(), now).await? {
                    revoked.push(grant);
                }
            }
        }
        let outcome = match set.action() {
            Action::RevokeNow if revoked.is_empty() => "unmatched",
            Action::RevokeNow => "revoked",
            Action::Nothing => "no_action",
            Action::Ignore => "ignored",
        };
        let grants: Vec<String> = revoked.iter().map(|g| g.id.clone()).collect();
        let mut data = set_summary(set);
        data.insert("outcome".into(), json!(outcome));
        data.insert("grants_revoked".into(), json!(grants));
        let target = revoked.first().map(|g| g.user_id.as_str());
        let actor = client.actor_for(None);
        let action = "upstream.security_event";
        audit::record(&txn, now, &actor, action, target, Value::Object(data)).await?;
        txn.commit().await?;
        for grant in &revoked {
            self.after_deprovision(grant);
        }
        tracing::info!(jti = set.jti, outcome, revoked = grants.len(), "security event received");
        Ok(RiscOutcome::Accepted(RiscAccepted {
            outcome,
            jti: set.jti.clone(),
            grants_revoked: grants,
        }))
    }

    /// Audits a refused SET (with what it says, if it verified) and returns the refusal.
    async fn refuse(
        &self,
        client: &ClientInfo,
        r: RiscRefusal,
        verified: Option<&SecurityEventToken>,
    ) -> Result<RiscOutcome> {
        let mut data = verified.map(set_summary).unwrap_or_default();
        data.insert("outcome".into(), json!("refused"));
        data.insert("reason".into(), json!(r.reason));
        data.insert("err".into(), json!(r.err));
        data.insert("description".into(), json!(r.description));
        let (now, actor) = (self.store.now(), client.actor_for(None));
        let action = "upstream.security_event";
        audit::record(self.store.db(), now, &actor, action, None, Value::Object(data)).await?;
        tracing::info!(reason = r.reason, ip = client.ip, "security event refused");
        Ok(RiscOutcome::Refused(r))
    }

    /// Deletes replay-store entries of SETs too old to be accepted anyway; returns how many.
    pub async fn purge_event_ids(&self) -> Result<u64> {
        let res = upstream_event_id::Entity::delete_many()
            .filter(upstream_event_id::Column::ExpiresAt.lt(self.store.now()))
            .exec(self.store.db())
            .await?;
        Ok(res.rows_affected)
    }
}

fn has_kid(jwks: &Value, kid: &str) -> bool {
    jwks.get("keys")
        .and_then(Value::as_array)
        .is_some_and(|keys| keys.iter().any(|k| k.get("kid").and_then(Value::as_str) == Some(kid)))
}

/// Inserts the SET's replay key; false when it is there already (the SET was received).
async fn record_event_id<C: ConnectionTrait>(
    conn: &C,
    issuer: &str,
    set: &SecurityEventToken,
) -> Result<bool> {
    // Kept until the SET would be refused as too old anyway, even by a node whose clock is
    // the leeway behind.
    let expires_at = set.iat.saturating_add(SET_MAX_AGE_SECS).saturating_add(risc::IAT_LEEWAY_SECS);
    let row = upstream_event_id::ActiveModel {
        id: Set(event_key(issuer, &set.jti)),
        expires_at: Set(expires_at),
    };
    match upstream_event_id::Entity::insert(row).exec_without_returning(conn).await {
        Ok(_) => Ok(true),
        Err(e) => match constraint_violation(&e) {
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => Ok(false),
            _ => Err(e.into()),
        },
    }
}

/// The active Google grants of the event's subject (`iss`, `sub`), through the grants'
/// (issuer, subject) index; [`Subject::matches`] has the last word.
async fn active_grants_of<C: ConnectionTrait>(
    conn: &C,
    subject: &Subject,
) -> Result<Vec<upstream_grant::Model>> {
    let base = subject.iss.strip_suffix('/').unwrap_or(&subject.iss);
    let grants = upstream_grant::Entity::find()
        .filter(upstream_grant::Column::Issuer.is_in([base.to_owned(), format!("{base}/")]))
        .filter(upstream_grant::Column::Subject.eq(subject.sub.as_str()))
        .filter(upstream_grant::Column::Provider.eq(Upstream::Google.as_str()))
        .filter(upstream_grant::Column::Status.eq(vault::STATUS_ACTIVE))
        .all(conn)
        .await?;
    Ok(grants.into_iter().filter(|g| subject.matches(&g.issuer, &g.subject)).collect())
}

/// What a verified SET says, for the audit log.
fn set_summary(set: &SecurityEventToken) -> Map<String, Value> {
    let events: Vec<Value> = set
        .events
        .iter()
        .map(|e| {
            json!({
                "type": e.event_type,
                "subject": e.subject.as_ref().map(|s| json!({ "iss": s.iss, "sub": s.sub })),
                "reason": e.reason,
            })
        })
        .collect();
    let mut data = Map::new();
    data.insert("jti".into(), json!(set.jti));
    data.insert("iat".into(), json!(set.iat));
    data.insert("events".into(), Value::Array(events));
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issuer_is_googles_with_at_most_one_trailing_slash() {
        let google = "https://accounts.google.com";
        for ok in ["https://accounts.google.com", "https://accounts.google.com/"] {
            assert!(issuer_accepted(Some(&json!(ok)), google), "{ok}");
            assert!(issuer_accepted(Some(&json!(ok)), &format!("{google}/")), "{ok}");
        }
        for bad in [
            json!("https://accounts.google.com//"),
            json!("https://accounts.google.com.evil.test"),
            json!("https://accounts.google.com/x"),
            json!("http://accounts.google.com"),
            json!("accounts.google.com"),
            json!("HTTPS://ACCOUNTS.GOOGLE.COM"),
            json!(""),
            json!(["https://accounts.google.com"]),
            json!(null),
        ] {
            assert!(!issuer_accepted(Some(&bad), google), "{bad}");
        }
        assert!(!issuer_accepted(None, google));
        assert!(!issuer_accepted(Some(&json!("/")), ""));
        assert!(!issuer_accepted(Some(&json!("")), "/"));
    }

    #[test]
    fn refusals_map_to_rfc_8935_error_codes() {
        let cases = [
            ("signature_key_unknown", "invalid_key"),
            ("signature_algorithm_refused", "invalid_key"),
            ("signature_invalid", "authentication_failed"),
            ("issuer_mismatch", "invalid_issuer"),
            ("aud_mismatch", "invalid_audience"),
            ("provider_not_configured", "access_denied"),
            ("jti_replayed", "invalid_request"),
            ("set_malformed", "invalid_request"),
            ("event_malformed", "invalid_request"),
            ("set_too_old", "invalid_request"),
            ("iat_invalid", "invalid_request"),
            ("jti_missing", "invalid_request"),
        ];
        for (reason, err) in cases {
            assert_eq!(err_code(reason), err, "{reason}");
        }
        let r = RiscRefusal::from(latchkey_easie::Refusal::AudMismatch);
        assert_eq!((r.err, r.reason), ("invalid_audience", "aud_mismatch"));
    }

    #[test]
    fn the_replay_key_ignores_the_issuers_trailing_slash_only() {
        let a = event_key("https://accounts.google.com", "j1");
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(a, event_key("https://accounts.google.com/", "j1"));
        assert_ne!(a, event_key("https://accounts.google.com", "j2"));
        // (issuer, jti) pairs are kept apart whatever they contain.
        assert_ne!(event_key("a", "b\nc"), event_key("a\nb", "c"));
    }

    #[test]
    fn revocations_and_their_reasons() {
        use EventKind as K;
        for kind in [
            K::SessionsRevoked,
            K::TokensRevoked,
            K::OAuthTokensRevoked,
            K::AccountDisabled,
            K::AccountPurged,
        ] {
            assert_eq!(kind.action(), Action::RevokeNow);
            assert!(revoke_reason(kind).is_some_and(|r| r.starts_with("risc_")), "{kind:?}");
        }
        for kind in
            [K::AccountEnabled, K::AccountCredentialChangeRequired, K::Verification, K::Unknown]
        {
            assert_ne!(kind.action(), Action::RevokeNow);
            assert_eq!(revoke_reason(kind), None, "{kind:?}");
        }
    }
}
