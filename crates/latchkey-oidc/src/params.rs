//! Request parameters as the protocol sees them: RFC 6749 §3.1 forbids repeating a parameter,
//! and empty values count as absent.

use std::collections::HashMap;

use crate::{MAX_PARAM_LEN, OAuthError};

/// At most this many distinct parameters per request.
const MAX_PARAMS: usize = 40;

#[derive(Debug, Clone, Default)]
pub struct Params {
    map: HashMap<String, String>,
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
        for (k, v) in pairs {
            let (k, v) = (k.into(), v.into());
            if map.len() >= MAX_PARAMS {
                return Err(OAuthError::invalid_request("too many parameters"));
            }
            if k.len() > 64 || v.len() > MAX_PARAM_LEN {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {} is too long",
                    printable(&k)
                )));
            }
            if v.chars().any(char::is_control) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {} contains control characters",
                    printable(&k)
                )));
            }
            if map.insert(k.clone(), v).is_some() {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {} is repeated",
                    printable(&k)
                )));
            }
        }
        Ok(Self { map })
    }

    /// Parses an `application/x-www-form-urlencoded` string (query or body).
    pub fn parse(encoded: &str) -> Result<Self, OAuthError> {
        if encoded.len() > 16 * 1024 {
            return Err(OAuthError::invalid_request("request too large"));
        }
        Self::from_pairs(url::form_urlencoded::parse(encoded.as_bytes()).into_owned())
    }

    /// The value, or None when absent or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str).filter(|v| !v.is_empty())
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
        assert!(Params::parse(&"a=1&".repeat(10_000)).is_err());
    }
}
