//! Reading ID token claims strictly. The claim structs of [`crate::google`] and
//! [`crate::microsoft`] type every string claim as `Option<String>`, so a claim of the wrong JSON
//! type (`"sub": 42`) makes the whole set of claims malformed and the sign-in is refused.
//! Boolean flags are the exception: they are kept raw ([`RawClaim`]) because the only question
//! ever asked of them is "is this exactly JSON `true`?", and a flag that is not (a string
//! `"true"`, `1`, `null`) must fail the one check that depends on it with that check's reason.

use serde::{Deserialize, Deserializer, de::DeserializeOwned};
use serde_json::Value;

use crate::refusal::Refusal;

/// A claim as it arrived, telling an absent claim from one present with any value (even `null`).
/// Use with `#[serde(default)]` so an absent claim becomes [`RawClaim::Absent`].
#[derive(Debug, Clone, Default, PartialEq)]
pub enum RawClaim {
    #[default]
    Absent,
    Present(Value),
}

impl RawClaim {
    /// True only for the JSON boolean `true`: strings, numbers and `null` are not.
    pub fn is_exactly_true(&self) -> bool {
        matches!(self, Self::Present(Value::Bool(true)))
    }

    pub fn is_absent(&self) -> bool {
        matches!(self, Self::Absent)
    }
}

impl<'de> Deserialize<'de> for RawClaim {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(Self::Present)
    }
}

impl From<Value> for RawClaim {
    fn from(value: Value) -> Self {
        Self::Present(value)
    }
}

/// Deserialises claims from the ID token's JSON payload; unknown claims are ignored, a known
/// claim of the wrong type (or a duplicated one) refuses them all.
pub(crate) fn from_json<T: DeserializeOwned>(json: &str) -> Result<T, Refusal> {
    serde_json::from_str(json).map_err(|e| Refusal::ClaimsMalformed(e.to_string()))
}

pub(crate) fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, Refusal> {
    serde_json::from_value(value).map_err(|e| Refusal::ClaimsMalformed(e.to_string()))
}

/// The authorized party (`azp`), which `openidconnect` leaves unchecked: when present it must be
/// exactly our client ID (OIDC Core 3.1.3.7, step 5). Google sets it to the client that asked
/// for the token, so a token obtained by another client of the same provider, even one listing
/// us in `aud`, is refused. Absent is accepted (Microsoft's v2.0 ID tokens carry none); any other
/// value, an empty string or a non-string included, is refused.
pub fn check_authorized_party(payload: &Value, client_id: &str) -> Result<(), Refusal> {
    match payload.get("azp") {
        None => Ok(()),
        Some(Value::String(azp)) if !azp.is_empty() && azp == client_id => Ok(()),
        Some(_) => Err(Refusal::AzpMismatch),
    }
}

/// How far ahead of Latchkey's clock an ID token's issue time may be: clocks of the provider and
/// of the node drift, but no further than this.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// The issue time (`iat`), which `openidconnect` leaves unchecked: a token issued later than
/// now (beyond the skew) was minted by a clock or a key that cannot be trusted, so it is refused
/// even though its `exp` is still ahead.
pub fn check_issued_at(iat: i64, now: i64) -> Result<(), Refusal> {
    if iat > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
        return Err(Refusal::IssuedInFuture);
    }
    Ok(())
}

/// An empty string claim is as good as none: no check may pass on `""`.
pub(crate) fn non_empty(claim: Option<&String>) -> Option<&str> {
    claim.map(String::as_str).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Deserialize)]
    struct Flags {
        #[serde(default)]
        flag: RawClaim,
    }

    #[test]
    fn an_issue_time_beyond_the_skew_is_refused() {
        let now = 1_800_000_000;
        assert_eq!(check_issued_at(now - 3600, now), Ok(()));
        assert_eq!(check_issued_at(now, now), Ok(()));
        assert_eq!(check_issued_at(now + MAX_CLOCK_SKEW_SECS, now), Ok(()));
        assert_eq!(
            check_issued_at(now + MAX_CLOCK_SKEW_SECS + 1, now),
            Err(Refusal::IssuedInFuture)
        );
        assert_eq!(check_issued_at(i64::MAX, now), Err(Refusal::IssuedInFuture));
        assert_eq!(check_issued_at(now, i64::MAX), Ok(()));
    }

    #[test]
    fn only_the_json_boolean_true_is_true() {
        let flag = |v: Value| from_value::<Flags>(json!({ "flag": v })).unwrap().flag;
        assert!(flag(json!(true)).is_exactly_true());
        for not_true in [
            json!(false),
            json!("true"),
            json!("True"),
            json!(1),
            json!("1"),
            json!(null),
            json!([true]),
        ] {
            assert!(!flag(not_true.clone()).is_exactly_true(), "{not_true}");
            assert!(!flag(not_true).is_absent());
        }
        let absent = from_value::<Flags>(json!({})).unwrap().flag;
        assert!(absent.is_absent() && !absent.is_exactly_true());
    }

    #[test]
    fn the_authorized_party_is_ours_or_absent() {
        let azp = |v: Value| check_authorized_party(&v, "our-client");
        assert_eq!(azp(json!({ "aud": "our-client" })), Ok(()));
        assert_eq!(azp(json!({ "azp": "our-client" })), Ok(()));
        for other in [
            json!("their-client"),
            json!("Our-Client"),
            json!("our-client "),
            json!(""),
            json!(null),
            json!(["our-client"]),
            json!(1),
        ] {
            assert_eq!(azp(json!({ "azp": other })), Err(Refusal::AzpMismatch), "{other}");
        }
        assert_eq!(check_authorized_party(&json!({ "azp": "" }), ""), Err(Refusal::AzpMismatch));
    }

    #[test]
    fn empty_strings_count_as_missing() {
        assert_eq!(non_empty(Some(&String::new())), None);
        assert_eq!(non_empty(Some(&"a".to_owned())), Some("a"));
        assert_eq!(non_empty(None), None);
    }
}
