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
    fn empty_strings_count_as_missing() {
        assert_eq!(non_empty(Some(&String::new())), None);
        assert_eq!(non_empty(Some(&"a".to_owned())), Some("a"));
        assert_eq!(non_empty(None), None);
    }
}
