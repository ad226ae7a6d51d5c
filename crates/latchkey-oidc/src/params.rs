//! Request parameters as the protocol sees them: RFC 6749 §3.1 forbids repeating a parameter
//! (except the few that are lists by definition, see [`MULTI_VALUED`]), and empty values count
//! as absent.

use std::collections::HashMap;

use crate::{MAX_PARAM_LEN, OAuthError};

/// At most this many parameters (counting repeats) per request.
const MAX_PARAMS: usize = 40;

/// Control characters (C0, DEL and C1). Tokens and codes are ASCII, checked a byte at a time.
fn has_control(v: &str) -> bool {
    if v.is_ascii() {
        v.bytes().any(|b| b.is_ascii_control())
    } else {
        v.chars().any(char::is_control)
    }
}

/// Parameters that may be repeated: RFC 8707 `resource` and RFC 8693 `audience`.
pub const MULTI_VALUED: [&str; 2] = ["resource", "audience"];

#[derive(Debug, Clone, Default)]
pub struct Params {
    map: HashMap<String, String>,
    /// Every value of the [`MULTI_VALUED`] parameters, in request order.
    multi: HashMap<String, Vec<String>>,
}

impl Params {
    /// Builds the parameter set from decoded (name, value) pairs, refusing repeats, oversized
    /// values and control characters.
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Self, OAuthError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut map = HashMap::new();
        let mut multi: HashMap<String, Vec<String>> = HashMap::new();
        let mut count = 0;
        for (k, v) in pairs {
            let (k, v) = (k.into(), v.into());
            count += 1;
            if count > MAX_PARAMS {
                return Err(OAuthError::invalid_request("too many parameters"));
            }
            if k.len() > 64 || v.len() > MAX_PARAM_LEN {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {} is too long",
                    printable(&k)
                )));
            }
            if has_control(&v) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {} contains control characters",
                    printable(&k)
                )));
            }
            if MULTI_VALUED.contains(&k.as_str()) {
                multi.entry(k).or_default().push(v);
                continue;
            }
            match map.entry(k) {
                std::collections::hash_map::Entry::Occupied(e) => {
                    return Err(OAuthError::invalid_request(format!(
                        "parameter {} is repeated",
                        printable(e.key())
                    )));
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(v);
                }
            }
        }
        Ok(Self { map, multi })
    }

    /// Parses an `application/x-www-form-urlencoded` string (query or body).
    pub fn parse(encoded: &str) -> Result<Self, OAuthError> {
        if encoded.len() > 16 * 1024 {
            return Err(OAuthError::invalid_request("request too large"));
        }
        Self::from_pairs(url::form_urlencoded::parse(encoded.as_bytes()).into_owned())
    }

    /// The value, or None when absent or empty. For a [`MULTI_VALUED`] parameter, the first
    /// non-empty value (use [`Params::get_all`] to see them all).
    pub fn get(&self, name: &str) -> Option<&str> {
        match self.map.get(name) {
            Some(v) => Some(v.as_str()).filter(|v| !v.is_empty()),
            None => self.get_all(name).into_iter().next(),
        }
    }

    /// Every non-empty value of a parameter, in request order (at most one unless the
    /// parameter is [`MULTI_VALUED`]).
    pub fn get_all(&self, name: &str) -> Vec<&str> {
        match (self.map.get(name), self.multi.get(name)) {
            (Some(v), _) => [v.as_str()].into_iter().filter(|v| !v.is_empty()).collect(),
            (None, Some(vs)) => vs.iter().map(String::as_str).filter(|v| !v.is_empty()).collect(),
            (None, None) => Vec::new(),
        }
    }

    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter {name}")))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

fn printable(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_oversized_and_control_parameters_are_refused() {
        let p = Params::parse("a=1&b=&c=x%20y").unwrap_or_default();
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), None);
        assert_eq!(p.get("c"), Some("x y"));
        assert!(p.require("b").is_err());
        assert!(Params::parse("a=1&a=2").is_err());
        assert!(Params::parse(&format!("a={}", "x".repeat(MAX_PARAM_LEN + 1))).is_err());
        assert!(Params::parse("a=%0d%0a").is_err());
        // DEL, and the C1 controls (two bytes in UTF-8), are controls too; other text is not.
        for bad in ["a=%7f", "a=x%C2%85", "a=%C2%9F"] {
            assert!(Params::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Params::parse("a=%C3%A9t%C3%A9").unwrap_or_default().get("a"), Some("été"));
        assert!(Params::parse(&"a=1&".repeat(10_000)).is_err());
    }

    #[test]
    fn resource_and_audience_may_repeat() {
        let p =
            Params::parse("resource=https%3A%2F%2Fa&resource=&resource=https%3A%2F%2Fb&audience=x")
                .unwrap_or_default();
        assert_eq!(p.get_all("resource"), ["https://a", "https://b"]);
        assert_eq!(p.get("resource"), Some("https://a"));
        assert_eq!(p.get_all("audience"), ["x"]);
        assert!(p.get_all("scope").is_empty());
        assert_eq!(Params::parse("scope=a").unwrap_or_default().get_all("scope"), ["a"]);
        // Repeats still count towards the limit.
        assert!(Params::parse(&"resource=https%3A%2F%2Fa&".repeat(41)).is_err());
        assert!(Params::parse("resource=a&scope=1&scope=2").is_err());
    }
}
