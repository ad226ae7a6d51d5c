//! API keys for the admin API: bearer secrets for scripts and automation, scoped to the whole
//! instance or to one organisation, with an expiry. The secret (`lk_` + 256 random bits) is
//! shown once, at creation; only its SHA-256 is kept. Creation, revocation and every use of a
//! revoked or expired key are audited (unknown keys are only logged: they name nothing); a
//! key's use is stamped at most once a minute (no write per request).
//!
//! Who may create, list and revoke them: instance keys, the operator (CLI) and instance
//! administrators; an organisation's keys, also that organisation's admins. A key never
//! manages keys, so a leaked key cannot mint itself a successor.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
};
use serde::Serialize;
use serde_json::json;
use zeroize::Zeroizing;

use crate::{
    Error, Result,
    infra::{
        audit::{self, Actor, Principal},
        crypto,
        entity::api_key,
        ids,
        store::Store,
    },
    sign_in::throttle,
    tenancy::access::{self, Need},
};

/// Every key's secret starts with this, so secret scanners and people recognise one.
pub const SECRET_PREFIX: &str = "lk_";
/// How long a key lives unless told otherwise.
pub const DEFAULT_TTL_SECS: i64 = 90 * 86_400;
/// The longest a key may live: keys must be rotated.
pub const MAX_TTL_SECS: i64 = 730 * 86_400;
pub const MIN_TTL_SECS: i64 = 3600;
/// Characters of the secret kept in the clear for listings (`lk_` + 6).
const SHOWN_PREFIX_LEN: usize = 9;
/// A key's `last_used_at` is written when older than this.
const LAST_USED_GRANULARITY_SECS: i64 = 60;
const MAX_NAME_CHARS: usize = 200;

/// A key as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// The secret's first characters (`lk_abc123`), to tell keys apart.
    pub prefix: String,
    /// `instance`, or `organisation` with `org_id`.
    pub scope: &'static str,
    pub org_id: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl From<api_key::Model> for ApiKey {
    fn from(m: api_key::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            prefix: m.prefix,
            scope: if m.org_id.is_some() { "organisation" } else { "instance" },
            org_id: m.org_id,
            created_by: m.created_by,
            created_at: m.created_at,
            expires_at: m.expires_at,
            last_used_at: m.last_used_at,
            revoked_at: m.revoked_at,
        }
    }
}

/// What `create` needs.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub name: String,
    /// The organisation it is limited to; None for the whole instance.
    pub org_id: Option<String>,
    /// Lifetime in seconds ([`MIN_TTL_SECS`]..=[`MAX_TTL_SECS`]).
    pub ttl_secs: i64,
}

/// A new key with its secret, which is shown this once.
pub struct CreatedApiKey {
    pub key: ApiKey,
    pub secret: Zeroizing<String>,
}

/// Who a presented key acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyPrincipal {
    pub key_id: String,
    pub org_id: Option<String>,
}

impl ApiKeyPrincipal {
    /// The actor of a request made with this key.
    pub fn actor(&self, client_ip: Option<String>, user_agent: Option<String>) -> Actor {
        Actor {
            principal: Principal::ApiKey { id: self.key_id.clone(), org_id: self.org_id.clone() },
            client_ip,
            user_agent,
            request_id: None,
        }
    }
}

#[derive(Clone)]
pub struct ApiKeyService {
    store: Store,
    /// Requests per key per minute (`LATCHKEY_API_KEY_RATE_LIMIT`).
    rate_limit: u32,
}

/// The window of the per-key rate limit.
const RATE_WINDOW_SECS: i64 = 60;

impl ApiKeyService {
    pub fn new(store: Store, rate_limit: u32) -> Self {
        Self { store, rate_limit }
    }

    pub async fn create(&self, new: NewApiKey, actor: &Actor) -> Result<CreatedApiKey> {
        let name = new.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return Err(Error::invalid("name", "must be 1-200 characters"));
        }
        if !(MIN_TTL_SECS..=MAX_TTL_SECS).contains(&new.ttl_secs) {
            return Err(Error::invalid("expires_in", "must be between 1 hour and 730 days"));
        }
        let txn = self.store.begin_write().await?;
        may_manage(&txn, actor, new.org_id.as_deref()).await?;
        let now = self.store.now();
        let secret = Zeroizing::new(format!("{SECRET_PREFIX}{}", crypto::random_secret()));
        let model = api_key::ActiveModel {
            id: Set(ids::new_id(ids::API_KEY)),
            name: Set(name.to_owned()),
            secret_hash: Set(crypto::hash_secret_hex(&secret)),
            prefix: Set(secret.chars().take(SHOWN_PREFIX_LEN).collect()),
            org_id: Set(new.org_id.clone()),
            created_by: Set(actor.name()),
            created_at: Set(now),
            expires_at: Set(now.saturating_add(new.ttl_secs)),
            last_used_at: Set(None),
            revoked_at: Set(None),
        }
        .insert(&txn)
        .await?;
        let data =
            json!({ "name": model.name, "org_id": model.org_id, "expires_at": model.expires_at });
        audit::record(&txn, now, actor, "api_key.created", Some(&model.id), data).await?;
        txn.commit().await?;
        Ok(CreatedApiKey { key: model.into(), secret })
    }

    /// The keys of `org_id`, or every key (None; instance actors only: an organisation's
    /// admins name their organisation).
    pub async fn list(&self, org_id: Option<&str>, actor: &Actor) -> Result<Vec<ApiKey>> {
        let db = self.store.db();
        may_manage(db, actor, org_id).await?;
        let mut q = api_key::Entity::find().order_by_asc(api_key::Column::CreatedAt);
        if let Some(org) = org_id {
            q = q.filter(api_key::Column::OrgId.eq(org));
        }
        Ok(q.all(db).await?.into_iter().map(ApiKey::from).collect())
    }

    /// Revokes a key at once (the next request with it gets 401). Revoking a revoked key
    /// changes nothing and says so with its original time.
    pub async fn revoke(&self, id: &str, actor: &Actor) -> Result<ApiKey> {
        let txn = self.store.begin_write().await?;
        let not_found = || Error::NotFound(format!("API key {id}"));
        let model =
            api_key::Entity::find_by_id(id.to_owned()).one(&txn).await?.ok_or_else(not_found)?;
        // Someone who may not manage this key does not learn that it exists.
        may_manage(&txn, actor, model.org_id.as_deref()).await.map_err(|e| match e {
            Error::Forbidden(_) => not_found(),
            e => e,
        })?;
        if model.revoked_at.is_some() {
            return Ok(model.into());
        }
        let now = self.store.now();
        let mut active: api_key::ActiveModel = model.into();
        active.revoked_at = Set(Some(now));
        let model = active.update(&txn).await?;
        let data = json!({ "name": model.name, "org_id": model.org_id });
        audit::record(&txn, now, actor, "api_key.revoked", Some(&model.id), data).await?;
        txn.commit().await?;
        Ok(model.into())
    }

    /// The principal of a presented secret, `client` being the anonymous caller (its address
    /// and user agent) for the audit event of a refused key. Unknown, malformed, revoked and
    /// expired keys are all [`Error::Unauthenticated`] (the reason is logged, not shown). A key over its rate
    /// limit is [`Error::RateLimited`]: the request is counted in the store before it is served
    /// (a compare-and-set on the key's counter), so the limit holds across nodes and bursts.
    pub async fn authenticate(&self, secret: &str, client: &Actor) -> Result<ApiKeyPrincipal> {
        if !secret.starts_with(SECRET_PREFIX) || secret.len() > 128 {
            return Err(Error::Unauthenticated("not an API key"));
        }
        let db = self.store.db();
        let hash = crypto::hash_secret_hex(secret);
        let Some(model) =
            api_key::Entity::find().filter(api_key::Column::SecretHash.eq(hash)).one(db).await?
        else {
            return Err(Error::Unauthenticated("unknown API key"));
        };
        let now = self.store.now();
        let refused = if model.revoked_at.is_some() {
            Some("revoked")
        } else if model.expires_at <= now {
            Some("expired")
        } else {
            None
        };
        if let Some(reason) = refused {
            // A known key used after its end may have leaked: worth an event an operator sees.
            let data = json!({ "reason": reason, "name": model.name, "org_id": model.org_id });
            audit::record(db, now, client, "api_key.refused", Some(&model.id), data).await?;
            return Err(Error::Unauthenticated("revoked or expired API key"));
        }
        let counter = format!("api_key:{}", model.id);
        throttle::hit(db, &counter, self.rate_limit, RATE_WINDOW_SECS, now).await?;
        if model.last_used_at.is_none_or(|t| now - t >= LAST_USED_GRANULARITY_SECS) {
            api_key::Entity::update_many()
                .col_expr(api_key::Column::LastUsedAt, sea_orm::sea_query::Expr::value(now))
                .filter(api_key::Column::Id.eq(&model.id))
                .exec(db)
                .await?;
        }
        Ok(ApiKeyPrincipal { key_id: model.id, org_id: model.org_id })
    }
}

impl ApiKeyService {
    /// Counts one admin API request of a client with an `admin:*` token against the same
    /// per-minute limit as a key's, before it is served.
    pub async fn charge_client(&self, client_id: &str) -> Result<()> {
        let counter = format!("admin_client:{client_id}");
        let now = self.store.now();
        throttle::hit(self.store.db(), &counter, self.rate_limit, RATE_WINDOW_SECS, now).await
    }
}

/// Whether `actor` may manage the keys of `org_id` (None: instance keys).
async fn may_manage<C: sea_orm::ConnectionTrait>(
    conn: &C,
    actor: &Actor,
    org_id: Option<&str>,
) -> Result<()> {
    if matches!(actor.principal, Principal::ApiKey { .. } | Principal::AdminClient(_)) {
        return Err(Error::Forbidden("API keys and admin clients cannot manage API keys".into()));
    }
    match org_id {
        None if access::is_instance_actor(conn, actor).await? => Ok(()),
        None => Err(Error::Forbidden("only instance administrators manage instance keys".into())),
        Some(org) => access::authorize(conn, org, actor, Need::Admin).await.map(|_| ()),
    }
}
