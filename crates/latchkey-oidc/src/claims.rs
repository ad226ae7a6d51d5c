//! ID token (OIDC Core §2, §5.1) and RFC 9068 access token claim sets. Signing is the caller's
//! job (the key service); these functions decide what goes in.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::Serialize;
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

/// An ID token's claims, serialised as they are: the hot path signs these bytes without
/// building a JSON value first. [`id_token_claims`] gives the same claims as a value (for
/// template merging and tests).
#[derive(Debug, Serialize)]
pub struct IdTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    azp: &'a str,
    iat: i64,
    exp: i64,
    auth_time: i64,
    sid: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    amr: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    acr: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    at_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    given_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    family_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    picture: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    org_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    org_role: Option<&'a str>,
}

/// `org_id`/`org_role`, when the `organization` scope was granted and an organisation is active.
fn org_claims<'a>(auth: &AuthContext<'a>, scopes: &[String]) -> (Option<&'a str>, Option<&'a str>) {
    match auth.org_id {
        Some(org_id) if scopes.iter().any(|s| s == SCOPE_ORGANIZATION) => {
            (Some(org_id), auth.org_role)
        }
        _ => (None, None),
    }
}

pub fn id_token<'a>(input: &IdTokenInput<'a>) -> IdTokenClaims<'a> {
    let has = |s: &str| input.scopes.iter().any(|x| x == s);
    let (org_id, org_role) = org_claims(input.auth, input.scopes);
    let (email, profile) = (has(SCOPE_EMAIL), has(SCOPE_PROFILE));
    let subject = input.subject;
    IdTokenClaims {
        iss: input.issuer,
        sub: subject.user_id,
        aud: input.client_id,
        // azp: the party the token was issued to (OIDC Core §2); equal to the single audience.
        azp: input.client_id,
        iat: input.now,
        exp: input.now + input.ttl_secs,
        auth_time: input.auth.auth_time,
        sid: input.auth.session_id,
        amr: &input.auth.amr,
        acr: input.auth.acr,
        nonce: input.nonce,
        at_hash: input.access_token.map(|at| at_hash(at, input.alg)),
        email: email.then_some(subject.email),
        email_verified: email.then_some(subject.email_verified),
        name: subject.name.filter(|_| profile),
        given_name: subject.given_name.filter(|_| profile),
        family_name: subject.family_name.filter(|_| profile),
        picture: subject.picture.filter(|_| profile),
        updated_at: profile.then_some(subject.updated_at),
        org_id,
        org_role,
    }
}

pub fn id_token_claims(input: &IdTokenInput<'_>) -> Value {
    serde_json::to_value(id_token(input)).unwrap_or(Value::Null)
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

/// An access token's `aud`: one value or several (RFC 7519 §4.1.3).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum AudienceClaim<'a> {
    One(&'a str),
    Several(&'a [String]),
}

/// RFC 9068 §2.2 claims (the header must carry `typ: at+jwt`), serialised as they are; see
/// [`IdTokenClaims`].
#[derive(Debug, Serialize)]
pub struct AccessTokenClaims<'a> {
    iss: &'a str,
    aud: AudienceClaim<'a>,
    sub: &'a str,
    client_id: &'a str,
    iat: i64,
    exp: i64,
    jti: &'a str,
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    amr: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    acr: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    org_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    org_role: Option<&'a str>,
    /// The grant (code and refresh family) the token came from, so revoking the grant ends its
    /// access tokens at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<&'a str>,
}

impl<'a> AccessTokenClaims<'a> {
    /// The audiences a client_credentials request asked for (RFC 8707), instead of the default:
    /// none keeps the default, one is a string, several an array (RFC 7519 §4.1.3).
    pub fn set_audiences(&mut self, audiences: &'a [String]) {
        match audiences {
            [] => {}
            [one] => self.aud = AudienceClaim::One(one),
            several => self.aud = AudienceClaim::Several(several),
        }
    }
}

pub fn access_token<'a>(input: &AccessTokenInput<'a>) -> AccessTokenClaims<'a> {
    let (org_id, org_role) = input.auth.map(|a| org_claims(a, input.scopes)).unwrap_or_default();
    AccessTokenClaims {
        iss: input.issuer,
        aud: AudienceClaim::One(input.audience),
        sub: input.subject.unwrap_or(input.client_id),
        client_id: input.client_id,
        iat: input.now,
        exp: input.now + input.ttl_secs,
        jti: input.jti,
        scope: input.scopes.join(" "),
        auth_time: input.auth.map(|a| a.auth_time),
        sid: input.auth.map(|a| a.session_id),
        amr: input.auth.map_or(&[], |a| &a.amr),
        acr: input.auth.and_then(|a| a.acr),
        org_id,
        org_role,
        grant_id: None,
    }
}

pub fn access_token_claims(input: &AccessTokenInput<'_>) -> Value {
    serde_json::to_value(access_token(input)).unwrap_or(Value::Null)
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
        let scopes = Vec::new();
        let aud = |audiences: &[String]| {
            let mut c = access_token(&AccessTokenInput {
                issuer: "https://id.example",
                audience: "https://id.example",
                client_id: "client_m2m",
                subject: None,
                auth: None,
                scopes: &scopes,
                jti: "j",
                now: 1,
                ttl_secs: 60,
            });
            c.set_audiences(audiences);
            serde_json::to_value(&c).unwrap()["aud"].clone()
        };
        assert_eq!(aud(&[]), json!("https://id.example"));
        assert_eq!(aud(&["https://a".into()]), json!("https://a"));
        assert_eq!(
            aud(&["https://a".into(), "https://b".into()]),
            json!(["https://a", "https://b"])
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
