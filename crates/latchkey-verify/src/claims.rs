//! The claims of a verified token: typed accessors over the raw claim set.

use serde::Serialize;
use serde_json::{Map, Value};

/// The kinds of token Latchkey issues to apps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenType {
    /// A session JWT from `POST /v1/session/token` (header `typ: JWT`): `sub`, `sid`, `azp`
    /// (the app's origin) and, with an active organisation, `org_id`, `org_role`, `org_slug`.
    Session,
    /// An RFC 9068 access token from the OAuth token endpoint (header `typ: at+jwt`): `aud`,
    /// `client_id`, `scope`, and `sid` when a user signed in.
    Access,
}

impl TokenType {
    /// Matches a header `typ` (RFC 7515 §4.1.9: compared case-insensitively, with or without
    /// the `application/` prefix).
    pub fn from_typ(typ: &str) -> Option<Self> {
        let bare = match typ.get(..12) {
            Some(p) if p.eq_ignore_ascii_case("application/") => &typ[12..],
            _ => typ,
        };
        if bare.eq_ignore_ascii_case("jwt") {
            Some(Self::Session)
        } else if bare.eq_ignore_ascii_case("at+jwt") {
            Some(Self::Access)
        } else {
            None
        }
    }
}

/// A verified token's claims. The registered claims were checked by the verifier; the rest are
/// as the issuer wrote them ([`Claims::raw`]).
#[derive(Debug, Clone, Serialize)]
pub struct Claims {
    #[serde(rename = "token_type")]
    typ: TokenType,
    #[serde(flatten)]
    raw: Map<String, Value>,
}

impl Claims {
    pub(crate) fn new(typ: TokenType, raw: Map<String, Value>) -> Self {
        Self { typ, raw }
    }

    fn str_claim(&self, name: &str) -> Option<&str> {
        self.raw.get(name).and_then(Value::as_str)
    }

    pub fn token_type(&self) -> TokenType {
        self.typ
    }

    /// The subject: a user id, or for client_credentials access tokens the client id.
    pub fn sub(&self) -> &str {
        self.str_claim("sub").unwrap_or_default()
    }

    /// The Latchkey session the token belongs to.
    pub fn sid(&self) -> Option<&str> {
        self.str_claim("sid")
    }

    pub fn iss(&self) -> &str {
        self.str_claim("iss").unwrap_or_default()
    }

    /// The authorised party: the app's origin for session tokens.
    pub fn azp(&self) -> Option<&str> {
        self.str_claim("azp")
    }

    /// The OAuth client an access token was issued to.
    pub fn client_id(&self) -> Option<&str> {
        self.str_claim("client_id")
    }

    /// `aud` as a list (empty when absent).
    pub fn audiences(&self) -> Vec<&str> {
        match self.raw.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    pub fn exp(&self) -> i64 {
        self.raw.get("exp").and_then(Value::as_f64).map_or(0, |f| f as i64)
    }

    pub fn iat(&self) -> Option<i64> {
        self.raw.get("iat").and_then(Value::as_f64).map(|f| f as i64)
    }

    pub fn org_id(&self) -> Option<&str> {
        self.str_claim("org_id")
    }

    pub fn org_role(&self) -> Option<&str> {
        self.str_claim("org_role")
    }

    pub fn org_slug(&self) -> Option<&str> {
        self.str_claim("org_slug")
    }

    /// The granted scopes (`scope`, space-separated, RFC 9068 §2.2.3); none for session tokens.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.str_claim("scope").unwrap_or_default().split(' ').filter(|s| !s.is_empty())
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope)
    }

    /// Any claim by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.raw.get(name)
    }

    /// Every claim, as the issuer wrote them.
    pub fn raw(&self) -> &Map<String, Value> {
        &self.raw
    }

    pub fn into_raw(self) -> Map<String, Value> {
        self.raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typ_values_are_matched_as_rfc_7515_says() {
        for (typ, want) in [
            ("JWT", Some(TokenType::Session)),
            ("jwt", Some(TokenType::Session)),
            ("application/jwt", Some(TokenType::Session)),
            ("at+jwt", Some(TokenType::Access)),
            ("Application/AT+JWT", Some(TokenType::Access)),
            ("logout+jwt", None),
            ("at+jwt ", None),
            ("xapplication/at+jwt", None),
            ("", None),
        ] {
            assert_eq!(TokenType::from_typ(typ), want, "{typ}");
        }
    }

    #[test]
    fn accessors_read_the_raw_claims() {
        let Value::Object(raw) = json!({
            "sub": "usr_1", "sid": "ses_1", "aud": ["a", "b"], "scope": "read  write",
            "org_id": "org_1", "org_role": "admin", "exp": 10, "custom": true
        }) else {
            unreachable!()
        };
        let c = Claims::new(TokenType::Access, raw);
        assert_eq!(c.sub(), "usr_1");
        assert_eq!(c.sid(), Some("ses_1"));
        assert_eq!(c.audiences(), ["a", "b"]);
        assert_eq!(c.scopes().collect::<Vec<_>>(), ["read", "write"]);
        assert!(c.has_scope("write") && !c.has_scope("admin"));
        assert_eq!((c.org_id(), c.org_role(), c.exp()), (Some("org_1"), Some("admin"), 10));
        assert_eq!(c.get("custom"), Some(&json!(true)));
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["token_type"], "access");
        assert_eq!(json["sub"], "usr_1");
    }
}
