//! JWT templates (as Clerk's): named claim sets rendered from the user, the session and its
//! active organisation, served as `POST /v1/session/token/{name}`.
//!
//! A template is a JSON object whose string values may hold `{{placeholder}}`s. A string that is
//! exactly one placeholder becomes that value as JSON (`"{{user.public_metadata}}"` gives an
//! object); placeholders inside longer strings are interpolated as text (null as empty). Unknown
//! placeholders are refused when the template is created, so rendering never guesses. The
//! standard claims `iss sub sid iat nbf exp azp` are always set by Latchkey and cannot be
//! templated. A template signs with the instance's session-token key (verifiable through the
//! JWKS) or, Supabase-style, with its own HS256 secret, stored sealed with the master key.
//!
//! An OpenID Connect client may also name templates for its access and ID tokens
//! ([`JwtTemplateService::render_for_session`]): the rendered claims are added to those tokens,
//! which keep their own protocol claims and are signed as usual (the template's signing
//! settings only concern `/v1/session/token/{name}`). A template a client names cannot be
//! deleted.

use josekit::jws::{HS256, JwsHeader};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::{
    Error, Result, Settings,
    identity::session_tokens::SessionContext,
    identity::subject::{self, ActiveOrg, SessionSubject},
    infra::audit::{self, Actor},
    infra::entity::{jwt_template, oauth_client},
    infra::ids,
    infra::jose::SigningAlg,
    infra::keys::KeyService,
    infra::store::Store,
};

/// Every placeholder a template may use.
pub const PLACEHOLDERS: &[&str] = &[
    "user.id",
    "user.primary_email",
    "user.email_verified",
    "user.name",
    "user.given_name",
    "user.family_name",
    "user.image_url",
    "user.public_metadata",
    "user.created_at",
    "session.id",
    "session.auth_method",
    "session.created_at",
    "session.last_active_at",
    "org.id",
    "org.name",
    "org.slug",
    "org.role",
    "org.public_metadata",
];

/// Set by Latchkey on every templated token; a template may not name them.
pub const RESERVED_CLAIMS: &[&str] = &["iss", "sub", "sid", "iat", "nbf", "exp", "azp"];

pub const DEFAULT_LIFETIME_SECS: i64 = 60;
pub const MIN_LIFETIME_SECS: i64 = 30;
pub const MAX_LIFETIME_SECS: i64 = 24 * 3600;
/// RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
pub const MIN_HS256_SECRET_BYTES: usize = 32;
const MAX_TEMPLATE_BYTES: usize = 16 * 1024;
const INSTANCE: &str = "instance";
const HS256_NAME: &str = "HS256";

fn secret_purpose(id: &str) -> String {
    format!("jwt-template-secret:{id}")
}

#[derive(Debug, Clone, Default)]
pub struct NewTemplate {
    pub name: String,
    pub claims: Value,
    /// When set, tokens are HS256 with this secret instead of the instance key.
    pub hs256_secret: Option<Vec<u8>>,
    pub lifetime_secs: Option<i64>,
}

/// A stored template; the HS256 secret is never part of it.
#[derive(Debug, Clone, Serialize)]
pub struct JwtTemplate {
    pub id: String,
    pub name: String,
    pub claims: Value,
    /// `instance` or `HS256`.
    pub signing: String,
    pub lifetime_secs: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl JwtTemplate {
    fn from_model(m: jwt_template::Model) -> Result<Self> {
        Ok(Self {
            claims: serde_json::from_str(&m.claims)?,
            id: m.id,
            name: m.name,
            signing: m.signing_alg,
            lifetime_secs: m.lifetime_secs,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TemplateToken {
    pub jwt: String,
    pub expires_at: i64,
    /// `HS256` or the instance key's algorithm.
    pub alg: String,
}

/// Splits a string into literal text and placeholder paths; fails on an unterminated `{{`.
fn segments(s: &str) -> Result<Vec<(bool, &str)>> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            out.push((false, &rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| {
            Error::invalid("claims", format!("unterminated placeholder in {s:?}"))
        })?;
        out.push((true, after[..end].trim()));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        out.push((false, rest));
    }
    Ok(out)
}

fn check_strings(v: &Value) -> Result<()> {
    match v {
        Value::String(s) => {
            for (is_placeholder, text) in segments(s)? {
                if is_placeholder && !PLACEHOLDERS.contains(&text) {
                    return Err(Error::invalid(
                        "claims",
                        format!(
                            "unknown placeholder {{{{{text}}}}}; known: {}",
                            PLACEHOLDERS.join(", ")
                        ),
                    ));
                }
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(check_strings),
        Value::Object(map) => map.values().try_for_each(check_strings),
        _ => Ok(()),
    }
}

/// Checks a template: a JSON object, no reserved claims, only known placeholders.
pub fn validate(claims: &Value) -> Result<()> {
    validate_shape(claims)?;
    if let Value::Object(map) = claims
        && let Some(k) = map.keys().find(|k| RESERVED_CLAIMS.contains(&k.as_str()))
    {
        return Err(Error::invalid(
            "claims",
            format!("{k:?} is set by Latchkey and cannot be templated"),
        ));
    }
    Ok(())
}

/// What rendering needs: a JSON object of bounded size with only known placeholders. Reserved
/// claims are left to the token being built, which sets its own after (or instead of) them.
fn validate_shape(claims: &Value) -> Result<()> {
    if !claims.is_object() {
        return Err(Error::invalid("claims", "must be a JSON object"));
    }
    if serde_json::to_vec(claims)?.len() > MAX_TEMPLATE_BYTES {
        return Err(Error::invalid("claims", "is larger than 16 KiB"));
    }
    check_strings(claims)
}

fn lookup<'a>(ctx: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(ctx, |v, key| v.get(key).unwrap_or(&Value::Null))
}

fn render_value(v: &Value, ctx: &Value) -> Result<Value> {
    Ok(match v {
        Value::String(s) => {
            let parts = segments(s)?;
            match parts.as_slice() {
                [(true, path)] => lookup(ctx, path).clone(),
                _ => {
                    let mut out = String::new();
                    for (is_placeholder, text) in parts {
                        if !is_placeholder {
                            out.push_str(text);
                            continue;
                        }
                        match lookup(ctx, text) {
                            Value::Null => {}
                            Value::String(s) => out.push_str(s),
                            other => out.push_str(&other.to_string()),
                        }
                    }
                    Value::String(out)
                }
            }
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|i| render_value(i, ctx)).collect::<Result<_>>()?)
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_value(v, ctx)?)))
                .collect::<Result<Map<_, _>>>()?,
        ),
        other => other.clone(),
    })
}

/// Renders a template against a context of the shape
/// `{"user": {…}, "session": {…}, "org": {…} | null}`. The caller sets the token's own claims
/// after rendering, so they replace whatever a template holds under those names.
pub fn render(claims: &Value, ctx: &Value) -> Result<Map<String, Value>> {
    validate_shape(claims)?;
    match render_value(claims, ctx)? {
        Value::Object(map) => Ok(map),
        _ => Err(Error::Internal("template did not render to an object".into())),
    }
}

/// The `user` of a rendering context.
fn user_claims(u: &crate::infra::entity::user::Model) -> Value {
    json!({
        "id": u.id,
        "primary_email": u.primary_email,
        "email_verified": u.email_verified,
        "name": u.name,
        "given_name": u.given_name,
        "family_name": u.family_name,
        "image_url": u.image_url,
        "public_metadata": metadata(&u.public_metadata),
        "created_at": u.created_at,
    })
}

fn metadata(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| json!({}))
}

#[derive(Clone)]
pub struct JwtTemplateService {
    store: Store,
    keys: KeyService,
    alg: SigningAlg,
    issuer: String,
}

impl JwtTemplateService {
    pub fn new(store: Store, keys: KeyService, settings: &Settings) -> Self {
        Self { store, keys, alg: settings.session_token_alg, issuer: settings.public_url.clone() }
    }

    pub async fn create(&self, new: NewTemplate, actor: &Actor) -> Result<JwtTemplate> {
        let name = new.name.trim().to_owned();
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(Error::invalid("name", "must be 1-64 of a-z, 0-9, - and _"));
        }
        validate(&new.claims)?;
        let lifetime = new.lifetime_secs.unwrap_or(DEFAULT_LIFETIME_SECS);
        if !(MIN_LIFETIME_SECS..=MAX_LIFETIME_SECS).contains(&lifetime) {
            return Err(Error::invalid(
                "lifetime",
                format!("must be {MIN_LIFETIME_SECS}-{MAX_LIFETIME_SECS} seconds"),
            ));
        }
        let id = ids::new_id(ids::JWT_TEMPLATE);
        let (signing, secret_enc) = match &new.hs256_secret {
            None => (INSTANCE, None),
            Some(secret) if secret.len() < MIN_HS256_SECRET_BYTES => {
                return Err(Error::invalid(
                    "hs256_secret",
                    format!("must be at least {MIN_HS256_SECRET_BYTES} bytes"),
                ));
            }
            Some(secret) => {
                (HS256_NAME, Some(self.store.master_key().seal(&secret_purpose(&id), secret)?))
            }
        };
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        if jwt_template::Entity::find()
            .filter(jwt_template::Column::Name.eq(&name))
            .one(&txn)
            .await?
            .is_some()
        {
            return Err(Error::Conflict(format!("a JWT template named {name} already exists")));
        }
        let model = jwt_template::Model {
            id: id.clone(),
            name: name.clone(),
            claims: serde_json::to_string(&new.claims)?,
            signing_alg: signing.to_owned(),
            secret_enc,
            lifetime_secs: lifetime,
            created_at: now,
            updated_at: now,
        };
        jwt_template::Entity::insert(jwt_template::ActiveModel {
            id: Set(model.id.clone()),
            name: Set(model.name.clone()),
            claims: Set(model.claims.clone()),
            signing_alg: Set(model.signing_alg.clone()),
            secret_enc: Set(model.secret_enc.clone()),
            lifetime_secs: Set(model.lifetime_secs),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .exec_without_returning(&txn)
        .await?;
        audit::record(
            &txn,
            now,
            actor,
            "jwt_template.created",
            Some(&id),
            json!({ "name": name, "signing": signing }),
        )
        .await?;
        txn.commit().await?;
        JwtTemplate::from_model(model)
    }

    pub async fn list(&self) -> Result<Vec<JwtTemplate>> {
        jwt_template::Entity::find()
            .order_by_asc(jwt_template::Column::Name)
            .all(self.store.db())
            .await?
            .into_iter()
            .map(JwtTemplate::from_model)
            .collect()
    }

    async fn model(&self, name: &str) -> Result<jwt_template::Model> {
        jwt_template::Entity::find()
            .filter(jwt_template::Column::Name.eq(name))
            .one(self.store.db())
            .await?
            .ok_or_else(|| Error::NotFound(format!("JWT template {name}")))
    }

    pub async fn get(&self, name: &str) -> Result<JwtTemplate> {
        JwtTemplate::from_model(self.model(name).await?)
    }

    /// Changes a template's claims and/or lifetime, checked as at creation; audited with the
    /// before and after of what changed. Tokens already issued keep what they carry.
    pub async fn update(
        &self,
        name: &str,
        claims: Option<Value>,
        lifetime_secs: Option<i64>,
        actor: &Actor,
    ) -> Result<JwtTemplate> {
        if let Some(c) = &claims {
            validate(c)?;
        }
        if let Some(l) = lifetime_secs
            && !(MIN_LIFETIME_SECS..=MAX_LIFETIME_SECS).contains(&l)
        {
            return Err(Error::invalid(
                "lifetime",
                format!("must be {MIN_LIFETIME_SECS}-{MAX_LIFETIME_SECS} seconds"),
            ));
        }
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        let current = jwt_template::Entity::find()
            .filter(jwt_template::Column::Name.eq(name))
            .lock_exclusive()
            .one(&txn)
            .await?
            .ok_or_else(|| Error::NotFound(format!("JWT template {name}")))?;
        let old_claims: Value = serde_json::from_str(&current.claims)?;
        let (mut before, mut after) = (Map::new(), Map::new());
        let mut am: jwt_template::ActiveModel = current.clone().into();
        if let Some(c) = claims.filter(|c| *c != old_claims) {
            before.insert("claims".into(), old_claims);
            after.insert("claims".into(), c.clone());
            am.claims = Set(serde_json::to_string(&c)?);
        }
        if let Some(l) = lifetime_secs.filter(|l| *l != current.lifetime_secs) {
            before.insert("lifetime_secs".into(), current.lifetime_secs.into());
            after.insert("lifetime_secs".into(), l.into());
            am.lifetime_secs = Set(l);
        }
        if after.is_empty() {
            return JwtTemplate::from_model(current);
        }
        am.updated_at = Set(now);
        let updated = am.update(&txn).await?;
        let data = json!({ "name": name, "before": before, "after": after });
        audit::record(&txn, now, actor, "jwt_template.updated", Some(&updated.id), data).await?;
        Store::bump_revision(&txn).await?;
        txn.commit().await?;
        JwtTemplate::from_model(updated)
    }

    /// What `claims` render to for `user_id` (with their most recent live session and its
    /// active organisation, if they have one; else `session` and `org` are null): the console's
    /// preview. Nothing is signed or stored.
    pub async fn preview(&self, claims: &Value, user_id: &str) -> Result<Map<String, Value>> {
        validate(claims)?;
        use crate::{identity::model::SessionStatus, infra::entity::session};
        let now = self.store.now();
        let latest = session::Entity::find()
            .filter(session::Column::UserId.eq(user_id))
            .filter(session::Column::Status.eq(SessionStatus::Active.as_str()))
            .filter(session::Column::ExpiresAt.gt(now))
            .filter(session::Column::IdleExpiresAt.gt(now))
            .order_by_desc(session::Column::LastActiveAt)
            .one(self.store.db())
            .await?;
        let ctx = match latest {
            Some(s) => self.context(&s.id, s.active_org_id.as_deref()).await?,
            None => self.user_context(user_id).await?,
        };
        render(claims, &ctx)
    }

    async fn user_context(&self, user_id: &str) -> Result<Value> {
        let u = crate::infra::entity::user::Entity::find_by_id(user_id.to_owned())
            .one(self.store.db())
            .await?
            .ok_or_else(|| Error::NotFound(format!("user {user_id}")))?;
        Ok(json!({
            "user": user_claims(&u),
            "session": null,
            "org": null,
        }))
    }

    pub async fn delete(&self, name: &str, actor: &Actor) -> Result<()> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        // A client's tokens would fail without it: refuse while a client names the template.
        let in_use = oauth_client::Entity::find()
            .filter(
                sea_orm::Condition::any()
                    .add(oauth_client::Column::AccessTokenTemplate.eq(name))
                    .add(oauth_client::Column::IdTokenTemplate.eq(name)),
            )
            .order_by_asc(oauth_client::Column::ClientId)
            .one(&txn)
            .await?;
        if let Some(client) = in_use {
            return Err(Error::Conflict(format!(
                "JWT template {name} is used by client {}; delete that client first",
                client.client_id
            )));
        }
        let res = jwt_template::Entity::delete_many()
            .filter(jwt_template::Column::Name.eq(name))
            .exec(&txn)
            .await?;
        if res.rows_affected == 0 {
            return Err(Error::NotFound(format!("JWT template {name}")));
        }
        audit::record(&txn, now, actor, "jwt_template.deleted", None, json!({ "name": name }))
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// The rendering context for a live session and its active organisation (if any), read
    /// fresh from the store.
    async fn context(&self, session_id: &str, org_id: Option<&str>) -> Result<Value> {
        let SessionSubject { session: s, user: u, org } =
            subject::load_by_id(self.store.db(), session_id)
                .await?
                .ok_or(Error::Unauthenticated("session or its user is gone"))?;
        // The organisation the caller saw as active, if the session still has it.
        let org = match org.filter(|o| org_id == Some(o.org.id.as_str())) {
            Some(ActiveOrg { org: o, role }) => json!({
                "id": o.id,
                "name": o.name,
                "slug": o.slug,
                "role": role,
                "public_metadata": metadata(&o.public_metadata),
            }),
            None => Value::Null,
        };
        Ok(json!({
            "user": user_claims(&u),
            "session": {
                "id": s.id,
                "auth_method": s.auth_method,
                "created_at": s.created_at,
                "last_active_at": s.last_active_at,
            },
            "org": org,
        }))
    }

    /// Renders template `name` for a session's user, the session and its active organisation
    /// `org_id`, for claims that go into another token (an OpenID Connect client's access or ID
    /// token). The caller adds them to its own claims without letting them replace any.
    pub async fn render_for_session(
        &self,
        name: &str,
        session_id: &str,
        org_id: Option<&str>,
    ) -> Result<Map<String, Value>> {
        let template = self.model(name).await?;
        let claims: Value = serde_json::from_str(&template.claims)?;
        let ctx = self.context(session_id, org_id).await?;
        render(&claims, &ctx)
    }

    /// Mints a token from template `name` for an authenticated session (see
    /// [`crate::identity::session_tokens::SessionTokenService::authenticate`]) on behalf of `azp`.
    pub async fn mint(
        &self,
        name: &str,
        session_ctx: &SessionContext,
        azp: &str,
    ) -> Result<TemplateToken> {
        let template = self.model(name).await?;
        let claims: Value = serde_json::from_str(&template.claims)?;
        let ctx = self.context(&session_ctx.session_id, session_ctx.org_id.as_deref()).await?;
        let mut rendered = render(&claims, &ctx)?;
        let now = self.store.now();
        let exp = now + template.lifetime_secs;
        // Set last, so nothing in a template can replace them.
        for (k, v) in [
            ("iss", json!(self.issuer)),
            ("sub", json!(session_ctx.user_id)),
            ("sid", json!(session_ctx.session_id)),
            ("iat", json!(now)),
            ("nbf", json!(now)),
            ("exp", json!(exp)),
            ("azp", json!(azp)),
        ] {
            rendered.insert(k.to_owned(), v);
        }
        let payload = serde_json::to_vec(&rendered)?;
        let mut header = JwsHeader::new();
        header.set_token_type("JWT");
        let (jwt, alg) = match template.signing_alg.as_str() {
            HS256_NAME => {
                let sealed = template.secret_enc.as_deref().ok_or_else(|| {
                    Error::Internal(format!("HS256 template {name} has no secret"))
                })?;
                let secret = self.store.master_key().open(&secret_purpose(&template.id), sealed)?;
                let signer = HS256.signer_from_bytes(secret.as_slice())?;
                (
                    josekit::jws::serialize_compact(&payload, &header, &signer)?,
                    HS256_NAME.to_owned(),
                )
            }
            INSTANCE => {
                let signer = self.keys.load_signer(self.alg).await?;
                header.set_key_id(&signer.kid);
                (
                    josekit::jws::serialize_compact(&payload, &header, signer.signer.as_ref())?,
                    signer.alg.as_str().to_owned(),
                )
            }
            other => {
                return Err(Error::Internal(format!(
                    "template {name} has unknown signing {other}"
                )));
            }
        };
        Ok(TemplateToken { jwt, expires_at: exp, alg })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Value {
        json!({
            "user": {"id": "usr_1", "primary_email": "ada@example.com", "email_verified": true,
                     "name": null, "public_metadata": {"plan": "pro", "seats": 3}},
            "session": {"id": "ses_1"},
            "org": null,
        })
    }

    #[test]
    fn whole_placeholders_keep_their_json_type_and_partial_ones_interpolate() {
        let t = json!({
            "role": "authenticated",
            "email": "{{user.primary_email}}",
            "meta": "{{ user.public_metadata }}",
            "verified": "{{user.email_verified}}",
            "greeting": "hi {{user.primary_email}} ({{user.public_metadata}}){{user.name}}!",
            "org": "{{org.id}}",
            "nested": [{"sid": "s={{session.id}}"}, 7],
        });
        let out = render(&t, &ctx()).unwrap();
        assert_eq!(out["role"], "authenticated");
        assert_eq!(out["email"], "ada@example.com");
        assert_eq!(out["meta"], json!({"plan": "pro", "seats": 3}));
        assert_eq!(out["verified"], true);
        assert_eq!(out["greeting"], "hi ada@example.com ({\"plan\":\"pro\",\"seats\":3})!");
        assert_eq!(out["org"], Value::Null);
        assert_eq!(out["nested"], json!([{"sid": "s=ses_1"}, 7]));
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in [
            json!({"x": "{{user.password}}"}),
            json!({"x": ["{{nope}}"]}),
            json!({"x": "{{user.id"}),
            json!({"sub": "me"}),
            json!({"exp": 1}),
            json!(["not an object"]),
        ] {
            assert!(matches!(validate(&bad), Err(Error::Invalid { field: "claims", .. })), "{bad}");
        }
        // Rendering leaves reserved claims to the token being built (which sets its own after),
        // but still refuses what it cannot render.
        let out = render(&json!({"sub": "{{user.id}}", "role": "x"}), &ctx()).unwrap();
        assert_eq!((out["sub"].as_str(), out["role"].as_str()), (Some("usr_1"), Some("x")));
        assert!(render(&json!({"x": "{{nope}}"}), &ctx()).is_err());
        assert!(render(&json!(["x"]), &ctx()).is_err());
    }
}
