//! ID token (OIDC Core §2, §5.1) and RFC 9068 access token claim sets. Signing is the caller's
//! job (the key service); these functions decide what goes in.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256, Sha512};

use crate::{SCOPE_EMAIL, SCOPE_ORGANIZATION, SCOPE_PROFILE};

/// `at_hash`: base64url of the left half of the hash of the access token, the hash being the
/// one of the ID token's signing algorithm (SHA-256 for RS256/ES256, SHA-512 for Ed25519).
pub fn at_hash(access_token: &str, alg: &str) -> String {
    let digest: Vec<u8> = if alg == "EdDSA" {
        Sha512::digest(access_token.as_bytes()).to_vec()
    } else {
        Sha256::digest(access_token.as_bytes()).to_vec()
    };
    URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

/// The user as claims see it.
#[derive(Debug, Clone, Default)]
pub struct Subject<'a> {
    pub user_id: &'a str,
    pub email: &'a str,
    pub email_verified: bool,
    pub name: Option<&'a str>,
    pub given_name: Option<&'a str>,
    pub family_name: Option<&'a str>,
    pub picture: Option<&'a str>,
    pub updated_at: i64,
}

/// The authentication event behind the tokens.
#[derive(Debug, Clone, Default)]
pub struct AuthContext<'a> {
    pub session_id: &'a str,
    pub auth_time: i64,
    /// `pwd`, `otp`, … (RFC 8176).
    pub amr: Vec<String>,
    pub acr: Option<&'a str>,
    pub org_id: Option<&'a str>,
    pub org_role: Option<&'a str>,
}

/// Profile and email claims by scope (OIDC Core §5.4); shared by the ID token and userinfo.
pub fn user_claims(subject: &Subject<'_>, scopes: &[String]) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("sub".into(), json!(subject.user_id));
    let has = |s: &str| scopes.iter().any(|x| x == s);
    if has(SCOPE_EMAIL) {
        m.insert("email".into(), json!(subject.email));
        m.insert("email_verified".into(), json!(subject.email_verified));
    }
    if has(SCOPE_PROFILE) {
        for (k, v) in [
            ("name", subject.name),
            ("given_name", subject.given_name),
            ("family_name", subject.family_name),
            ("picture", subject.picture),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), json!(v));
            }
        }
        m.insert("updated_at".into(), json!(subject.updated_at));
    }
    m
}

pub struct IdTokenInput<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub subject: &'a Subject<'a>,
    pub auth: &'a AuthContext<'a>,
    pub scopes: &'a [String],
    pub nonce: Option<&'a str>,
    pub access_token: Option<&'a str>,
    pub alg: &'a str,
    pub now: i64,
    pub ttl_secs: i64,
}

pub fn id_token_claims(input: &IdTokenInput<'_>) -> Value {
    let mut m = user_claims(input.subject, input.scopes);
    m.insert("iss".into(), json!(input.issuer));
    m.insert("aud".into(), json!(input.client_id));
    // azp: the party the token was issued to (OIDC Core §2); equal to the single audience.
    m.insert("azp".into(), json!(input.client_id));
    m.insert("iat".into(), json!(input.now));
    m.insert("exp".into(), json!(input.now + input.ttl_secs));
    m.insert("auth_time".into(), json!(input.auth.auth_time));
    m.insert("sid".into(), json!(input.auth.session_id));
    if !input.auth.amr.is_empty() {
        m.insert("amr".into(), json!(input.auth.amr));
    }
    if let Some(acr) = input.auth.acr {
        m.insert("acr".into(), json!(acr));
    }
    if let Some(nonce) = input.nonce {
        m.insert("nonce".into(), json!(nonce));
    }
    if let Some(at) = input.access_token {
        m.insert("at_hash".into(), json!(at_hash(at, input.alg)));
    }
    insert_org(&mut m, input.auth, input.scopes);
    Value::Object(m)
}

/// `org_id`/`org_role` when the `organization` scope was granted and an organisation is active.
fn insert_org(m: &mut Map<String, Value>, auth: &AuthContext<'_>, scopes: &[String]) {
    if !scopes.iter().any(|s| s == SCOPE_ORGANIZATION) {
        return;
    }
    if let Some(org_id) = auth.org_id {
        m.insert("org_id".into(), json!(org_id));
        if let Some(role) = auth.org_role {
            m.insert("org_role".into(), json!(role));
        }
    }
}

pub struct AccessTokenInput<'a> {
    pub issuer: &'a str,
    /// The resource the token is for; Latchkey's own userinfo by default.
    pub audience: &'a str,
    pub client_id: &'a str,
    /// The user, or None for client_credentials (then `sub` is the client, RFC 9068 §2.2).
    pub subject: Option<&'a str>,
    pub auth: Option<&'a AuthContext<'a>>,
    pub scopes: &'a [String],
    pub jti: &'a str,
    pub now: i64,
    pub ttl_secs: i64,
}

/// RFC 9068 §2.2 claims; the header must carry `typ: at+jwt`.
pub fn access_token_claims(input: &AccessTokenInput<'_>) -> Value {
    let mut m = Map::new();
    m.insert("iss".into(), json!(input.issuer));
    m.insert("aud".into(), json!(input.audience));
    m.insert("sub".into(), json!(input.subject.unwrap_or(input.client_id)));
    m.insert("client_id".into(), json!(input.client_id));
    m.insert("iat".into(), json!(input.now));
    m.insert("exp".into(), json!(input.now + input.ttl_secs));
    m.insert("jti".into(), json!(input.jti));
    m.insert("scope".into(), json!(input.scopes.join(" ")));
    if let Some(auth) = input.auth {
        m.insert("auth_time".into(), json!(auth.auth_time));
        m.insert("sid".into(), json!(auth.session_id));
        if !auth.amr.is_empty() {
            m.insert("amr".into(), json!(auth.amr));
        }
        if let Some(acr) = auth.acr {
            m.insert("acr".into(), json!(acr));
        }
        insert_org(&mut m, auth, input.scopes);
    }
    Value::Object(m)
}

/// The `aud` of an access token issued for the audiences a client asked for (RFC 8707): None when
/// it asked for none (the token keeps its default audience), a string for one, an array for
/// several (RFC 7519 §4.1.3).
pub fn audience_claim(audiences: &[String]) -> Option<Value> {
    match audiences {
        [] => None,
        [one] => Some(json!(one)),
        several => Some(json!(several)),
    }
}

/// Registered and protocol claims of Latchkey's ID and access tokens. A client's JWT template
/// never sets them, not even when the token at hand lacks one (a refreshed ID token has no
/// `nonce`; only client tokens carry `client_id`).
pub const PROTOCOL_CLAIMS: [&str; 18] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "sid",
    "azp",
    "at_hash",
    "client_id",
    "scope",
    "grant_id",
    "typ",
];

/// Adds the claims rendered from a client's JWT template to a token's claim set. The template
/// only adds: a protocol claim ([`PROTOCOL_CLAIMS`]) is never taken from it, and a claim the
/// token already carries (`email`, `org_id`, …) keeps the value Latchkey gave it.
pub fn merge_template_claims(claims: &mut Value, template: Map<String, Value>) {
    let Value::Object(token) = claims else { return };
    for (k, v) in template {
        if PROTOCOL_CLAIMS.contains(&k.as_str()) || token.contains_key(&k) {
            continue;
        }
        token.insert(k, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject<'static> {
        Subject {
            user_id: "usr_1",
            email: "a@b.c",
            email_verified: true,
            name: Some("Ada"),
            given_name: Some("Ada"),
            family_name: None,
            picture: None,
            updated_at: 5,
        }
    }

    #[test]
    fn at_hash_matches_oidc_core_example() {
        // Expected value computed independently (Python hashlib).
        assert_eq!(
            at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNDsbZb_7bCe5G5tQu4c", "RS256"),
            "gM96ZNMHMzyCwf_9IZR9Dg"
        );
        assert_eq!(at_hash("x", "EdDSA").len(), 43);
    }

    #[test]
    fn id_token_has_the_required_claims_and_only_scoped_profile_data() {
        let auth = AuthContext {
            session_id: "ses_1",
            auth_time: 90,
            amr: vec!["pwd".into()],
            acr: Some("urn:latchkey:acr:pwd"),
            org_id: Some("org_1"),
            org_role: Some("admin"),
        };
        let s = subject();
        let scopes = vec!["openid".to_owned(), "email".to_owned(), "organization".to_owned()];
        let c = id_token_claims(&IdTokenInput {
            issuer: "https://id.example",
            client_id: "client_a",
            subject: &s,
            auth: &auth,
            scopes: &scopes,
            nonce: Some("n"),
            access_token: Some("at"),
            alg: "RS256",
            now: 100,
            ttl_secs: 300,
        });
        for k in [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "acr",
            "amr",
            "sid",
            "azp",
            "at_hash",
            "email",
            "email_verified",
            "org_id",
            "org_role",
        ] {
            assert!(c.get(k).is_some(), "{k}");
        }
        assert_eq!(c["exp"], 400);
        assert!(c.get("name").is_none());
        let at = access_token_claims(&AccessTokenInput {
            issuer: "https://id.example",
            audience: "https://id.example/oauth2/userinfo",
            client_id: "client_m2m",
            subject: None,
            auth: None,
            scopes: &scopes,
            jti: "j",
            now: 1,
            ttl_secs: 60,
        });
        assert_eq!(at["sub"], "client_m2m");
        assert_eq!(at["scope"], "openid email organization");
        assert!(at.get("sid").is_none());
    }

    #[test]
    fn organisation_claims_need_the_organization_scope() {
        let auth = AuthContext {
            session_id: "ses_1",
            auth_time: 90,
            amr: vec![],
            acr: None,
            org_id: Some("org_1"),
            org_role: Some("member"),
        };
        let s = subject();
        let claims_for = |scopes: &[String]| {
            let id = id_token_claims(&IdTokenInput {
                issuer: "https://id.example",
                client_id: "client_a",
                subject: &s,
                auth: &auth,
                scopes,
                nonce: None,
                access_token: None,
                alg: "RS256",
                now: 100,
                ttl_secs: 300,
            });
            let at = access_token_claims(&AccessTokenInput {
                issuer: "https://id.example",
                audience: "https://id.example",
                client_id: "client_a",
                subject: Some("usr_1"),
                auth: Some(&auth),
                scopes,
                jti: "j",
                now: 100,
                ttl_secs: 60,
            });
            (id, at)
        };
        let (id, at) = claims_for(&["openid".to_owned()]);
        assert!(id.get("org_id").is_none() && at.get("org_id").is_none());
        assert!(id.get("org_role").is_none() && at.get("org_role").is_none());
        let (id, at) = claims_for(&["openid".to_owned(), "organization".to_owned()]);
        assert_eq!(
            (id["org_id"].as_str(), id["org_role"].as_str()),
            (Some("org_1"), Some("member"))
        );
        assert_eq!(
            (at["org_id"].as_str(), at["org_role"].as_str()),
            (Some("org_1"), Some("member"))
        );
    }

    #[test]
    fn audiences_become_a_string_or_an_array() {
        assert_eq!(audience_claim(&[]), None);
        assert_eq!(audience_claim(&["https://a".into()]), Some(json!("https://a")));
        assert_eq!(
            audience_claim(&["https://a".into(), "https://b".into()]),
            Some(json!(["https://a", "https://b"]))
        );
    }

    #[test]
    fn templates_add_claims_but_never_replace_protocol_or_existing_ones() {
        let mut claims = json!({
            "iss": "https://id.example", "sub": "usr_1", "aud": "https://id.example",
            "scope": "openid", "email": "ada@example.com",
        });
        let mut template = Map::new();
        for k in PROTOCOL_CLAIMS {
            template.insert(k.to_owned(), json!("forged"));
        }
        template.insert("email".into(), json!("eve@example.com"));
        template.insert("role".into(), json!("authenticated"));
        template.insert("meta".into(), json!({"plan": "pro"}));
        template.insert("org".into(), Value::Null);
        merge_template_claims(&mut claims, template);
        assert_eq!(
            claims,
            json!({
                "iss": "https://id.example", "sub": "usr_1", "aud": "https://id.example",
                "scope": "openid", "email": "ada@example.com",
                "role": "authenticated", "meta": {"plan": "pro"}, "org": null,
            })
        );
        // Not an object: nothing to merge into.
        let mut not_object = json!("x");
        merge_template_claims(&mut not_object, Map::from_iter([("a".into(), json!(1))]));
        assert_eq!(not_object, json!("x"));
    }
}
