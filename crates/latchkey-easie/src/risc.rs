//! Google Cross-Account Protection (RISC): reading a security event token (SET, RFC 8417)
//! whose signature and issuer the caller has verified against the configured issuer's JWKS.
//! Here: the `jti` (for the caller's replay store), the audience (Latchkey's Google client
//! ID), the age, and each event's type, action and subject.
//!
//! Google sends the events of the RISC event types (openid-risc-event-types-1_0), each keyed
//! by its type URI with a `subject` of `subject_type` `iss-sub` (or `id_token_claims`, which
//! may add `email`); `account-disabled` may carry a `reason` (`hijacking`, `bulk-account`)
//! and `verification` only a `state`. Subjects in the RFC 9493 form (`"format": "iss_sub"`)
//! are read too. Events about single tokens (`oauth/event-type/token-revoked`, whose subject
//! is a token hash rather than an account) are left unknown: a revoked refresh token already
//! surfaces as `invalid_grant` at the next recheck.
//!
//! A SET is taken whole or not at all: one malformed event refuses every event in it.

use serde_json::{Map, Value};

use crate::refusal::Refusal;

/// The event type URIs this module knows.
pub mod event_type {
    pub const SESSIONS_REVOKED: &str =
        "https://schemas.openid.net/secevent/risc/event-type/sessions-revoked";
    pub const TOKENS_REVOKED: &str =
        "https://schemas.openid.net/secevent/risc/event-type/tokens-revoked";
    pub const OAUTH_TOKENS_REVOKED: &str =
        "https://schemas.openid.net/secevent/oauth/event-type/tokens-revoked";
    pub const ACCOUNT_DISABLED: &str =
        "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
    pub const ACCOUNT_PURGED: &str =
        "https://schemas.openid.net/secevent/risc/event-type/account-purged";
    pub const ACCOUNT_ENABLED: &str =
        "https://schemas.openid.net/secevent/risc/event-type/account-enabled";
    pub const ACCOUNT_CREDENTIAL_CHANGE_REQUIRED: &str =
        "https://schemas.openid.net/secevent/risc/event-type/account-credential-change-required";
    pub const VERIFICATION: &str =
        "https://schemas.openid.net/secevent/risc/event-type/verification";
}

/// SETs describe past events and carry no `exp`; bounding their age bounds how long the
/// caller's `jti` replay store must remember them (at least this long plus the leeway).
pub const DEFAULT_SET_MAX_AGE_SECS: i64 = 7 * 86_400;
/// Clock skew tolerated for an `iat` in the future.
pub const IAT_LEEWAY_SECS: i64 = 300;

/// What the receiver does about an event. Ordered from weakest to strongest, so the action of
/// a whole SET is the strongest of its events'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// An event type this receiver does not know: acknowledged, nothing done.
    Ignore,
    /// A known event that asks for nothing (re-enabling never resurrects a revoked session).
    Nothing,
    /// Revoke the subject's sessions and suspend its EASIE memberships at once.
    RevokeNow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    SessionsRevoked,
    TokensRevoked,
    OAuthTokensRevoked,
    AccountDisabled,
    AccountPurged,
    AccountEnabled,
    AccountCredentialChangeRequired,
    Verification,
    Unknown,
}

impl EventKind {
    pub fn from_uri(uri: &str) -> Self {
        use event_type as t;
        match uri {
            t::SESSIONS_REVOKED => Self::SessionsRevoked,
            t::TOKENS_REVOKED => Self::TokensRevoked,
            t::OAUTH_TOKENS_REVOKED => Self::OAuthTokensRevoked,
            t::ACCOUNT_DISABLED => Self::AccountDisabled,
            t::ACCOUNT_PURGED => Self::AccountPurged,
            t::ACCOUNT_ENABLED => Self::AccountEnabled,
            t::ACCOUNT_CREDENTIAL_CHANGE_REQUIRED => Self::AccountCredentialChangeRequired,
            t::VERIFICATION => Self::Verification,
            _ => Self::Unknown,
        }
    }

    /// Every revocation-like event revokes, whatever its `reason`: Google may disable an
    /// account for hijacking, and a session the account's owner may no longer control is
    /// ended first and re-established by signing in again.
    pub fn action(self) -> Action {
        match self {
            Self::SessionsRevoked
            | Self::TokensRevoked
            | Self::OAuthTokensRevoked
            | Self::AccountDisabled
            | Self::AccountPurged => Action::RevokeNow,
            Self::AccountEnabled | Self::AccountCredentialChangeRequired | Self::Verification => {
                Action::Nothing
            }
            Self::Unknown => Action::Ignore,
        }
    }
}

/// The account an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub iss: String,
    pub sub: String,
    pub email: Option<String>,
}

impl Subject {
    /// Whether this is the upstream identity keyed (`iss`, `sub`). Google's SETs name the
    /// issuer `https://accounts.google.com/` while its ID tokens say
    /// `https://accounts.google.com`, so one trailing slash is ignored on either side;
    /// everything else, and `sub`, must be equal.
    pub fn matches(&self, iss: &str, sub: &str) -> bool {
        let trim = |s: &str| s.strip_suffix('/').unwrap_or(s).to_owned();
        self.sub == sub && trim(&self.iss) == trim(iss)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityEvent {
    pub event_type: String,
    pub kind: EventKind,
    /// Present for every known event but `verification`; `None` for unknown events.
    pub subject: Option<Subject>,
    /// `account-disabled`'s reason, for the audit log.
    pub reason: Option<String>,
    /// `verification`'s state, echoing what the stream test asked for.
    pub state: Option<String>,
}

impl SecurityEvent {
    pub fn action(&self) -> Action {
        self.kind.action()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityEventToken {
    pub iss: String,
    pub jti: String,
    pub iat: i64,
    pub events: Vec<SecurityEvent>,
}

impl SecurityEventToken {
    /// The strongest action among the events.
    pub fn action(&self) -> Action {
        self.events.iter().map(SecurityEvent::action).max().unwrap_or(Action::Ignore)
    }

    /// The accounts to revoke now.
    pub fn subjects_to_revoke(&self) -> impl Iterator<Item = &Subject> {
        self.events
            .iter()
            .filter(|e| e.action() == Action::RevokeNow)
            .filter_map(|e| e.subject.as_ref())
    }
}

/// Reads a verified SET's claims. `max_age` bounds `now - iat` (see
/// [`DEFAULT_SET_MAX_AGE_SECS`]).
pub fn parse_set(
    claims: &Value,
    client_id: &str,
    now: i64,
    max_age: i64,
) -> Result<SecurityEventToken, Refusal> {
    let claims = claims.as_object().ok_or_else(|| malformed("the claims are not an object"))?;
    let jti = match claims.get("jti") {
        Some(Value::String(j)) if !j.is_empty() => j.clone(),
        _ => return Err(Refusal::JtiMissing),
    };
    if !audience_ok(claims.get("aud"), client_id) {
        return Err(Refusal::AudMismatch);
    }
    let iat = claims.get("iat").and_then(Value::as_i64).ok_or(Refusal::IatInvalid)?;
    if iat > now.saturating_add(IAT_LEEWAY_SECS) {
        return Err(Refusal::IatInvalid);
    }
    if now.saturating_sub(iat) > max_age.max(0) {
        return Err(Refusal::SetTooOld);
    }
    let iss = match claims.get("iss") {
        Some(Value::String(i)) if !i.is_empty() => i.clone(),
        _ => return Err(malformed("no iss")),
    };
    let events = match claims.get("events") {
        Some(Value::Object(events)) if !events.is_empty() => events,
        _ => return Err(malformed("events is missing, empty or not an object")),
    };
    let events =
        events.iter().map(|(uri, body)| parse_event(uri, body)).collect::<Result<_, _>>()?;
    Ok(SecurityEventToken { iss, jti, iat, events })
}

/// [`parse_set`] from the JSON payload.
pub fn parse_set_json(
    json: &str,
    client_id: &str,
    now: i64,
    max_age: i64,
) -> Result<SecurityEventToken, Refusal> {
    let claims: Value = serde_json::from_str(json).map_err(|_| malformed("not JSON"))?;
    parse_set(&claims, client_id, now, max_age)
}

fn malformed(what: &str) -> Refusal {
    Refusal::SetMalformed(what.to_owned())
}

fn event_malformed(uri: &str, what: &str) -> Refusal {
    let name = uri.rsplit('/').next().unwrap_or(uri);
    Refusal::EventMalformed(format!("{}: {what}", name.chars().take(80).collect::<String>()))
}

/// One audience, ours. A SET for several receivers is refused: Google addresses each SET to
/// one client ID, and an event meant for another client proves nothing about ours.
fn audience_ok(aud: Option<&Value>, client_id: &str) -> bool {
    if client_id.is_empty() {
        return false;
    }
    match aud {
        Some(Value::String(a)) => a == client_id,
        Some(Value::Array(list)) => list.len() == 1 && list[0].as_str() == Some(client_id),
        _ => false,
    }
}

fn parse_event(uri: &str, body: &Value) -> Result<SecurityEvent, Refusal> {
    let body = body.as_object().ok_or_else(|| event_malformed(uri, "not a JSON object"))?;
    let kind = EventKind::from_uri(uri);
    let mut event = SecurityEvent {
        event_type: uri.to_owned(),
        kind,
        subject: None,
        reason: None,
        state: None,
    };
    match kind {
        EventKind::Unknown => {}
        EventKind::Verification => event.state = optional_string(uri, body, "state")?,
        _ => {
            event.reason = optional_string(uri, body, "reason")?;
            let subject = body.get("subject").ok_or_else(|| event_malformed(uri, "no subject"))?;
            event.subject = Some(parse_subject(uri, subject)?);
        }
    }
    Ok(event)
}

fn optional_string(
    uri: &str,
    body: &Map<String, Value>,
    key: &str,
) -> Result<Option<String>, Refusal> {
    match body.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(event_malformed(uri, &format!("{key} is not a string"))),
    }
}

fn parse_subject(uri: &str, subject: &Value) -> Result<Subject, Refusal> {
    let s = subject.as_object().ok_or_else(|| event_malformed(uri, "subject is not an object"))?;
    let kind = match (s.get("subject_type"), s.get("format")) {
        (Some(Value::String(t)), None) => t.as_str(),
        (None, Some(Value::String(f))) if f == "iss_sub" => "iss-sub",
        _ => return Err(event_malformed(uri, "subject has no known subject_type")),
    };
    if kind != "iss-sub" && kind != "id_token_claims" {
        return Err(event_malformed(uri, "subject is not an iss-sub subject"));
    }
    let field = |key: &str| match s.get(key) {
        Some(Value::String(v)) if !v.is_empty() => Ok(v.clone()),
        _ => Err(event_malformed(uri, &format!("subject has no {key}"))),
    };
    let (iss, sub) = (field("iss")?, field("sub")?);
    let email = match (kind, s.get("email")) {
        ("id_token_claims", Some(Value::String(e))) => Some(e.clone()),
        (_, None) => None,
        _ => return Err(event_malformed(uri, "subject has a stray or malformed email")),
    };
    Ok(Subject { iss, sub, email })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CLIENT: &str = "123456789-abcedfgh.apps.googleusercontent.com";
    const NOW: i64 = 1_700_000_000;

    fn subject() -> Value {
        json!({"subject_type": "iss-sub", "iss": "https://accounts.google.com/", "sub": "7375626A656374"})
    }

    fn set(events: Value) -> Value {
        json!({
            "iss": "https://accounts.google.com/",
            "aud": CLIENT,
            "iat": NOW - 60,
            "jti": "756E69717565206964656E746966696572",
            "events": events,
        })
    }

    fn parse(v: &Value) -> Result<SecurityEventToken, Refusal> {
        parse_set(v, CLIENT, NOW, DEFAULT_SET_MAX_AGE_SECS)
    }

    fn one(uri: &str, body: Value) -> Result<SecurityEventToken, Refusal> {
        parse(&set(json!({ uri: body })))
    }

    #[test]
    fn revocation_events_revoke_their_subject() {
        use event_type as t;
        for uri in [
            t::SESSIONS_REVOKED,
            t::TOKENS_REVOKED,
            t::OAUTH_TOKENS_REVOKED,
            t::ACCOUNT_DISABLED,
            t::ACCOUNT_PURGED,
        ] {
            let token = one(uri, json!({"subject": subject()})).unwrap();
            assert_eq!(token.action(), Action::RevokeNow, "{uri}");
            let subjects: Vec<_> = token.subjects_to_revoke().collect();
            assert_eq!(subjects.len(), 1);
            assert!(subjects[0].matches("https://accounts.google.com", "7375626A656374"));
            assert!(subjects[0].matches("https://accounts.google.com/", "7375626A656374"));
            assert!(!subjects[0].matches("https://accounts.google.com", "7375626a656374"));
            assert!(!subjects[0].matches("https://accounts.google.com.evil", "7375626A656374"));
            assert!(!subjects[0].matches("accounts.google.com", "7375626A656374"));
        }
        let disabled =
            one(t::ACCOUNT_DISABLED, json!({"subject": subject(), "reason": "hijacking"})).unwrap();
        assert_eq!(disabled.events[0].reason.as_deref(), Some("hijacking"));
        assert_eq!(disabled.jti, "756E69717565206964656E746966696572");
        assert_eq!(disabled.iat, NOW - 60);
    }

    #[test]
    fn other_known_events_do_nothing_and_unknown_ones_are_ignored() {
        use event_type as t;
        let enabled = one(t::ACCOUNT_ENABLED, json!({"subject": subject()})).unwrap();
        assert_eq!(enabled.action(), Action::Nothing);
        assert_eq!(enabled.subjects_to_revoke().count(), 0);
        let change =
            one(t::ACCOUNT_CREDENTIAL_CHANGE_REQUIRED, json!({"subject": subject()})).unwrap();
        assert_eq!(change.action(), Action::Nothing);
        let verify = one(t::VERIFICATION, json!({"state": "test 42"})).unwrap();
        assert_eq!(verify.action(), Action::Nothing);
        assert_eq!(verify.events[0].state.as_deref(), Some("test 42"));
        assert!(one(t::VERIFICATION, json!({})).is_ok());
        let unknown = one(
            "https://schemas.openid.net/secevent/oauth/event-type/token-revoked",
            json!({"subject": {"subject_type": "oauth_token", "token_type": "refresh_token",
                   "token_identifier_alg": "prefix", "token": "1/abcdefghijklmn"}}),
        )
        .unwrap();
        assert_eq!(unknown.action(), Action::Ignore);
        assert_eq!(unknown.events[0].kind, EventKind::Unknown);
    }

    #[test]
    fn subject_forms() {
        let uri = event_type::SESSIONS_REVOKED;
        let claims = json!({"subject_type": "id_token_claims", "iss": "https://accounts.google.com/", "sub": "1", "email": "ada@acme.com"});
        let t = one(uri, json!({"subject": claims})).unwrap();
        assert_eq!(t.events[0].subject.as_ref().unwrap().email.as_deref(), Some("ada@acme.com"));
        let rfc9493 =
            json!({"format": "iss_sub", "iss": "https://accounts.google.com", "sub": "1"});
        assert!(one(uri, json!({"subject": rfc9493})).is_ok());
    }

    #[test]
    fn a_malformed_event_refuses_the_whole_set() {
        let uri = event_type::ACCOUNT_DISABLED;
        let bad_bodies = [
            json!("account-disabled"),
            json!({}),
            json!({"subject": "7375626A656374"}),
            json!({"subject": {"iss": "https://accounts.google.com/", "sub": "1"}}),
            json!({"subject": {"subject_type": "email", "email": "ada@acme.com"}}),
            json!({"subject": {"subject_type": "iss-sub", "sub": "1"}}),
            json!({"subject": {"subject_type": "iss-sub", "iss": "https://accounts.google.com/", "sub": ""}}),
            json!({"subject": {"subject_type": "iss-sub", "iss": "https://accounts.google.com/", "sub": 7}}),
            json!({"subject": {"subject_type": "iss-sub", "iss": "i", "sub": "1", "email": "a@b.c"}}),
            json!({"subject": {"subject_type": "iss-sub", "format": "iss_sub", "iss": "i", "sub": "1"}}),
            json!({"subject": subject(), "reason": 3}),
        ];
        for body in bad_bodies {
            assert_eq!(one(uri, body.clone()).unwrap_err().reason(), "event_malformed", "{body}");
        }
        assert_eq!(
            one(event_type::VERIFICATION, json!({"state": 1})).unwrap_err().reason(),
            "event_malformed"
        );
        assert_eq!(
            one("https://example.com/unknown", json!([])).unwrap_err().reason(),
            "event_malformed"
        );
        let mixed = set(json!({
            event_type::SESSIONS_REVOKED: {"subject": subject()},
            event_type::ACCOUNT_DISABLED: {"subject": {"subject_type": "iss-sub"}},
        }));
        assert_eq!(parse(&mixed).unwrap_err().reason(), "event_malformed");
        let both = set(json!({
            event_type::SESSIONS_REVOKED: {"subject": subject()},
            event_type::ACCOUNT_ENABLED: {"subject": subject()},
        }));
        assert_eq!(parse(&both).unwrap().action(), Action::RevokeNow);
    }

    #[test]
    fn the_envelope_is_checked() {
        let with = |key: &str, v: Value| {
            let mut s = set(json!({event_type::SESSIONS_REVOKED: {"subject": subject()}}));
            if v.is_null() {
                s.as_object_mut().unwrap().remove(key);
            } else {
                s[key] = v;
            }
            parse(&s).map(|_| ()).map_err(|e| e.reason())
        };
        assert_eq!(with("jti", json!(null)), Err("jti_missing"));
        assert_eq!(with("jti", json!("")), Err("jti_missing"));
        assert_eq!(with("jti", json!(5)), Err("jti_missing"));
        assert_eq!(with("aud", json!(null)), Err("aud_mismatch"));
        assert_eq!(with("aud", json!("other-client")), Err("aud_mismatch"));
        assert_eq!(with("aud", json!([CLIENT, "other-client"])), Err("aud_mismatch"));
        assert_eq!(with("aud", json!([CLIENT])), Ok(()));
        assert_eq!(with("iat", json!(null)), Err("iat_invalid"));
        assert_eq!(with("iat", json!("1700000000")), Err("iat_invalid"));
        assert_eq!(with("iat", json!(NOW + IAT_LEEWAY_SECS + 1)), Err("iat_invalid"));
        assert_eq!(with("iat", json!(NOW + IAT_LEEWAY_SECS)), Ok(()));
        assert_eq!(with("iat", json!(NOW - DEFAULT_SET_MAX_AGE_SECS - 1)), Err("set_too_old"));
        assert_eq!(with("iss", json!(null)), Err("set_malformed"));
        assert_eq!(with("events", json!(null)), Err("set_malformed"));
        assert_eq!(with("events", json!({})), Err("set_malformed"));
        assert_eq!(with("events", json!([])), Err("set_malformed"));
        let s = set(json!({event_type::SESSIONS_REVOKED: {"subject": subject()}}));
        assert_eq!(parse_set(&s, "", NOW, 60).unwrap_err().reason(), "aud_mismatch");
        assert_eq!(parse_set(&json!([]), CLIENT, NOW, 60).unwrap_err().reason(), "set_malformed");
        assert_eq!(parse_set_json("{", CLIENT, NOW, 60).unwrap_err().reason(), "set_malformed");
        assert!(parse_set_json(&s.to_string(), CLIENT, NOW, 3600).is_ok());
    }
}
