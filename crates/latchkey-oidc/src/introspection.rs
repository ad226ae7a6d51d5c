//! Token introspection responses (RFC 7662 §2.2). Only the listed fields are ever copied from a
//! token: claims a template or a forger added (`active`, `email`, …) never reach the answer.

use serde::Serialize;
use serde_json::{Map, Value};

/// The fields of an active access token's answer, copied from its claims when present.
pub const ACCESS_TOKEN_FIELDS: [&str; 10] =
    ["scope", "client_id", "sub", "exp", "iat", "iss", "aud", "jti", "sid", "auth_time"];

/// `{"active": false}`: the answer for unknown, expired, revoked or foreign tokens alike, so the
/// caller learns nothing about why.
pub fn inactive() -> Value {
    let mut m = Map::new();
    m.insert("active".into(), Value::Bool(false));
    Value::Object(m)
}

/// The answer for an active access token (already verified by the caller).
pub fn access_token(claims: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    out.insert("active".into(), Value::Bool(true));
    out.insert("token_type".into(), Value::String("Bearer".into()));
    for k in ACCESS_TOKEN_FIELDS {
        if let Some(v) = claims.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    Value::Object(out)
}

/// What is known of an active refresh token.
#[derive(Debug, Clone, Serialize)]
pub struct RefreshToken<'a> {
    pub scope: &'a str,
    pub client_id: &'a str,
    pub sub: &'a str,
    pub exp: i64,
    pub iss: &'a str,
    pub sid: &'a str,
}

/// The answer for an active refresh token.
pub fn refresh_token(t: &RefreshToken<'_>) -> Value {
    let mut out = Map::new();
    out.insert("active".into(), Value::Bool(true));
    out.insert("token_type".into(), Value::String("refresh_token".into()));
    if let Ok(Value::Object(fields)) = serde_json::to_value(t) {
        out.extend(fields);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn inactive_says_nothing_else() {
        assert_eq!(inactive(), json!({ "active": false }));
    }

    #[test]
    fn access_tokens_copy_only_the_listed_fields() {
        let Value::Object(claims) = json!({
            "iss": "https://id.example", "sub": "usr_1", "aud": ["https://api"], "exp": 9,
            "iat": 1, "jti": "at_1", "client_id": "client_a", "scope": "openid",
            "sid": "ses_1", "auth_time": 1,
            // Hostile or private extras: never echoed, never able to flip `active`.
            "active": false, "token_type": "refresh_token", "email": "a@b.c",
            "grant_id": "cod_1", "role": "admin",
        }) else {
            return;
        };
        let out = access_token(&claims);
        assert_eq!(
            out,
            json!({
                "active": true, "token_type": "Bearer", "iss": "https://id.example",
                "sub": "usr_1", "aud": ["https://api"], "exp": 9, "iat": 1, "jti": "at_1",
                "client_id": "client_a", "scope": "openid", "sid": "ses_1", "auth_time": 1,
            })
        );
        // Fields a token lacks are left out, not null.
        let out = access_token(&Map::new());
        assert_eq!(out, json!({ "active": true, "token_type": "Bearer" }));
    }

    #[test]
    fn refresh_tokens_answer_their_grant() {
        let out = refresh_token(&RefreshToken {
            scope: "openid offline_access",
            client_id: "client_a",
            sub: "usr_1",
            exp: 99,
            iss: "https://id.example",
            sid: "ses_1",
        });
        assert_eq!(
            out,
            json!({
                "active": true, "token_type": "refresh_token", "scope": "openid offline_access",
                "client_id": "client_a", "sub": "usr_1", "exp": 99,
                "iss": "https://id.example", "sid": "ses_1",
            })
        );
    }
}
