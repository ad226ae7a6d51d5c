//! Signing keys: generation, sealed storage, rotation and the published JWKS.

use std::{sync::Arc, time::Duration};

use josekit::jws::JwsSigner;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, SqlErr,
};
use serde::Serialize;

use crate::infra::inline_sqlite::constraint_violation;
use crate::{
    Error, Result,
    infra::audit::{self, Actor},
    infra::entity::signing_key,
    infra::ids,
    infra::jose::SigningAlg,
    infra::store::Store,
};

/// Token types whose JWS header is encoded once per key (`typ` values Latchkey signs).
const CACHED_TYPS: [&str; 3] = ["JWT", "at+jwt", "logout+jwt"];

/// An active key ready to sign.
pub struct LoadedSigner {
    pub kid: String,
    pub alg: SigningAlg,
    pub signer: Box<dyn JwsSigner>,
    /// base64url of `{"typ":…,"alg":…,"kid":…}` for each of [`CACHED_TYPS`]: the same for every
    /// token of that type.
    headers_b64: [String; CACHED_TYPS.len()],
}

fn header_b64(typ: &str, alg: SigningAlg, kid: &str) -> Result<String> {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let header = serde_json::json!({ "typ": typ, "alg": alg.as_str(), "kid": kid });
    Ok(URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?))
}

impl LoadedSigner {
    fn new(kid: String, alg: SigningAlg, signer: Box<dyn JwsSigner>) -> Result<Self> {
        let headers_b64 = [
            header_b64(CACHED_TYPS[0], alg, &kid)?,
            header_b64(CACHED_TYPS[1], alg, &kid)?,
            header_b64(CACHED_TYPS[2], alg, &kid)?,
        ];
        Ok(Self { kid, alg, signer, headers_b64 })
    }

    /// Signs `payload` as a compact JWS with the `typ: JWT` header.
    pub fn sign_jwt(&self, payload: &[u8]) -> Result<String> {
        self.sign_typed("JWT", payload)
    }

    /// Signs `payload` as a compact JWS whose header carries `typ`, `alg` and `kid`.
    /// Equivalent to `josekit::jws::serialize_compact`, but the header of the usual token
    /// types is encoded once per key instead of being rebuilt for every token on the hot path.
    pub fn sign_typed(&self, typ: &str, payload: &[u8]) -> Result<String> {
        use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
        let built;
        let header = match CACHED_TYPS.iter().position(|t| *t == typ) {
            Some(i) => &self.headers_b64[i],
            None => {
                built = header_b64(typ, self.alg, &self.kid)?;
                &built
            }
        };
        let mut out = String::with_capacity(header.len() + payload.len() * 4 / 3 + 100);
        out.push_str(header);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut out);
        let signature = self.signer.sign(out.as_bytes())?;
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut out);
        Ok(out)
    }
}

const ACTIVE: &str = "active";
const RETIRED: &str = "retired";
/// A retired key taken out of the JWKS before its tokens expired (a suspected compromise):
/// every token it signed stops verifying at once.
const WITHDRAWN: &str = "withdrawn";

/// The longest each kind of token signed with an instance key can stay valid, as the
/// configuration and the validation of that kind allow. A retired key must stay published, and
/// accepted by Latchkey's own checks (userinfo, introspection), until every token it can have
/// signed has expired: [`Self::longest`] plus the clock skew after it stopped signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedLifetimes {
    /// Session tokens: `LATCHKEY_SESSION_TOKEN_TTL`.
    pub session_token: Duration,
    /// OpenID Connect access tokens: the longest `access_token_ttl` a client may have.
    pub access_token: Duration,
    /// OpenID Connect ID tokens.
    pub id_token: Duration,
    /// JWT-template tokens: the longest lifetime a template may have.
    pub template_token: Duration,
    /// Back-channel logout tokens.
    pub logout_token: Duration,
}

impl SignedLifetimes {
    pub fn longest(&self) -> Duration {
        [
            self.session_token,
            self.access_token,
            self.id_token,
            self.template_token,
            self.logout_token,
        ]
        .into_iter()
        .max()
        .unwrap_or_default()
    }
}

#[derive(Clone)]
struct CachedJwks {
    revision: i64,
    /// When the first retired key in the set stops being published.
    stale_at: Option<i64>,
    set: Arc<serde_json::Value>,
    /// The same keys, ready to verify with.
    key_set: Arc<crate::infra::jose::KeySet>,
}

/// Active signers by algorithm, each with the store revision it was loaded at.
type SignerCache = std::collections::HashMap<SigningAlg, (i64, Arc<LoadedSigner>)>;

#[derive(Clone)]
pub struct KeyService {
    store: Store,
    /// How long a retired key stays published, in seconds: the longest lifetime of anything it
    /// can have signed, plus the clock skew.
    retention: i64,
    /// Unsealed active keys, each tagged with the store revision it was loaded at; rotation
    /// bumps the revision, so every node picks up a new key on its next signature.
    signers: Arc<std::sync::RwLock<SignerCache>>,
    /// The published key set, tagged with the revision it was read at (rotation bumps it).
    jwks: Arc<std::sync::RwLock<Option<CachedJwks>>>,
}

impl KeyService {
    /// `lifetimes` bound every token the keys sign; `clock_skew` is `LATCHKEY_CLOCK_SKEW`.
    pub fn new(store: Store, lifetimes: SignedLifetimes, clock_skew: Duration) -> Self {
        let retention = lifetimes.longest() + clock_skew;
        Self {
            store,
            retention: i64::try_from(retention.as_secs()).unwrap_or(i64::MAX / 4),
            signers: Arc::default(),
            jwks: Arc::default(),
        }
    }

    /// The active key for `alg`, from the cache unless a rotation happened since it was loaded.
    /// Loading means a query, unsealing and parsing the key, far more than one signature.
    pub async fn current_signer(&self, alg: SigningAlg) -> Result<Arc<LoadedSigner>> {
        let revision = self.store.current_revision().await?;
        self.signer_at(alg, revision).await
    }

    /// As [`Self::current_signer`], for a caller that already read the store revision.
    pub async fn signer_at(&self, alg: SigningAlg, revision: i64) -> Result<Arc<LoadedSigner>> {
        let cached = self.signers.read().ok().and_then(|c| c.get(&alg).cloned());
        let signer = self.refresh_signer(alg, revision, cached).await?;
        if let Ok(mut cache) = self.signers.write() {
            cache.insert(alg, (revision, signer.clone()));
        }
        Ok(signer)
    }

    /// `cached` if it was loaded at `revision` or later, or if the store's active key for `alg`
    /// is still the same one (most revision bumps are revocations, not rotations); otherwise
    /// the newly active key.
    pub async fn refresh_signer(
        &self,
        alg: SigningAlg,
        revision: i64,
        cached: Option<(i64, Arc<LoadedSigner>)>,
    ) -> Result<Arc<LoadedSigner>> {
        match cached {
            Some((rev, signer)) if rev >= revision => Ok(signer),
            Some((_, signer))
                if self.active_model(alg).await?.is_some_and(|m| m.kid == signer.kid) =>
            {
                Ok(signer)
            }
            _ => self.load_signer(alg).await,
        }
    }

    fn seal_purpose(kid: &str) -> String {
        format!("signing_key:{kid}")
    }

    fn new_key_model(&self, alg: SigningAlg, now: i64) -> Result<signing_key::ActiveModel> {
        let kid = ids::new_id(ids::SIGNING_KEY);
        let (pem, mut jwk) = alg.generate()?;
        let pem = zeroize::Zeroizing::new(pem);
        jwk.set_key_id(&kid);
        jwk.set_algorithm(alg.as_str());
        jwk.set_key_use("sig");
        let sealed = self.store.master_key().seal(&Self::seal_purpose(&kid), &pem)?;
        Ok(signing_key::ActiveModel {
            kid: Set(kid),
            alg: Set(alg.as_str().to_owned()),
            private_key_enc: Set(sealed),
            public_jwk: Set(jwk.to_string()),
            status: Set(ACTIVE.to_owned()),
            created_at: Set(now),
            retired_at: Set(None),
            publish_until: Set(None),
            active_alg: Set(Some(alg.as_str().to_owned())),
        })
    }

    async fn active_model(&self, alg: SigningAlg) -> Result<Option<signing_key::Model>> {
        Ok(signing_key::Entity::find()
            .filter(signing_key::Column::ActiveAlg.eq(alg.as_str()))
            .one(self.store.db())
            .await?)
    }

    /// Makes sure an active key exists for `alg`, generating the first one if needed. Nodes that
    /// start together on an empty store may each generate one: the unique `active_alg` lets one
    /// insert win, and the others use the winner's key.
    pub async fn ensure_active(&self, alg: SigningAlg) -> Result<SigningKeyInfo> {
        let now = self.store.now();
        if let Some(m) = self.active_model(alg).await? {
            return Ok(self.info(m, now));
        }
        let model = self.new_key_model(alg, now)?;
        let txn = self.store.begin_write().await?;
        let m = match model.insert(&txn).await {
            Ok(m) => m,
            Err(e) if is_unique_violation(&e) => {
                txn.rollback().await?;
                let m = self.active_model(alg).await?.ok_or_else(|| {
                    Error::Internal(format!("lost the race to create a {alg:?} key to nobody"))
                })?;
                tracing::debug!(kid = %m.kid, alg = alg.as_str(), "another node created the signing key");
                return Ok(self.info(m, now));
            }
            Err(e) => return Err(e.into()),
        };
        audit::record(
            &txn,
            now,
            &Actor::system(),
            "key.created",
            Some(&m.kid),
            serde_json::json!({ "alg": alg.as_str() }),
        )
        .await?;
        Store::bump_revision(&txn).await?;
        txn.commit().await?;
        tracing::info!(kid = %m.kid, alg = alg.as_str(), "generated signing key");
        Ok(self.info(m, now))
    }

    /// Introduces a new active key for `alg`; the previous one stays published until every
    /// token it signed has expired.
    pub async fn rotate(
        &self,
        alg: SigningAlg,
        actor: &Actor,
    ) -> Result<(SigningKeyInfo, Option<SigningKeyInfo>)> {
        let now = self.store.now();
        let model = self.new_key_model(alg, now)?;
        let txn = self.store.begin_write().await?;
        let previous = signing_key::Entity::find()
            .filter(signing_key::Column::ActiveAlg.eq(alg.as_str()))
            .all(&txn)
            .await?;
        let mut retired = None;
        for old in previous {
            let mut am: signing_key::ActiveModel = old.into();
            am.status = Set(RETIRED.to_owned());
            am.active_alg = Set(None);
            am.retired_at = Set(Some(now));
            am.publish_until = Set(Some(now + self.retention));
            retired = Some(am.update(&txn).await?);
        }
        let new = match model.insert(&txn).await {
            Ok(new) => new,
            // A rotation on another node committed a new key first.
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::Conflict(format!(
                    "another {} key rotation happened at the same time; list the keys and retry if needed",
                    alg.as_str()
                )));
            }
            Err(e) => return Err(e.into()),
        };
        audit::record(&txn, now,
            actor,
            "key.rotated",
            Some(&new.kid),
            serde_json::json!({ "alg": alg.as_str(), "retired": retired.as_ref().map(|m| m.kid.clone()) }),
        )
        .await?;
        Store::bump_revision(&txn).await?;
        txn.commit().await?;
        Ok((self.info(new, now), retired.map(|m| self.info(m, now))))
    }

    /// Takes a retired key out of the JWKS now, before the tokens it signed expire: they stop
    /// verifying everywhere at the next revision. The active key cannot be withdrawn (rotate
    /// first, so something signs).
    pub async fn withdraw(&self, kid: &str, actor: &Actor) -> Result<SigningKeyInfo> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        let m = signing_key::Entity::find_by_id(kid.to_owned())
            .one(&txn)
            .await?
            .ok_or_else(|| Error::NotFound(format!("signing key {kid}")))?;
        if m.status == ACTIVE {
            return Err(Error::Conflict(format!(
                "{kid} is the active {} key: rotate it first, then withdraw it",
                m.alg
            )));
        }
        if m.status == WITHDRAWN {
            return Ok(self.info(m, now));
        }
        let mut am: signing_key::ActiveModel = m.into();
        am.status = Set(WITHDRAWN.to_owned());
        am.publish_until = Set(Some(now));
        let m = am.update(&txn).await?;
        let data = serde_json::json!({ "alg": m.alg });
        audit::record(&txn, now, actor, "key.withdrawn", Some(kid), data).await?;
        Store::bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(self.info(m, now))
    }

    pub async fn list(&self) -> Result<Vec<SigningKeyInfo>> {
        let now = self.store.now();
        Ok(signing_key::Entity::find()
            .order_by_desc(signing_key::Column::CreatedAt)
            .all(self.store.db())
            .await?
            .into_iter()
            .map(|m| self.info(m, now))
            .collect())
    }

    /// The published key set: active keys and retired keys still inside their retention window
    /// (see [`SignedLifetimes`]). The published key set as of `revision`, from memory unless keys changed since. A
    /// retired key's publication also ends by time, so the cache is re-read at that moment.
    pub async fn jwks_at(&self, revision: i64) -> Result<Arc<serde_json::Value>> {
        Ok(self.cached_at(revision).await?.set)
    }

    /// The published keys as of `revision` (see [`Self::jwks_at`]), ready to verify with.
    pub async fn key_set_at(&self, revision: i64) -> Result<Arc<crate::infra::jose::KeySet>> {
        Ok(self.cached_at(revision).await?.key_set)
    }

    async fn cached_at(&self, revision: i64) -> Result<CachedJwks> {
        let now = self.store.now();
        if let Some(c) = self.jwks.read().ok().and_then(|c| c.clone())
            && c.revision >= revision
            && c.stale_at.is_none_or(|t| t > now)
        {
            return Ok(c);
        }
        let (set, stale_at) = self.published(now).await?;
        let key_set = Arc::new(crate::infra::jose::KeySet::from_jwks(&set));
        let cached = CachedJwks { revision, stale_at, set: Arc::new(set), key_set };
        if let Ok(mut c) = self.jwks.write() {
            *c = Some(cached.clone());
        }
        Ok(cached)
    }

    pub async fn jwks(&self) -> Result<serde_json::Value> {
        Ok(self.published(self.store.now()).await?.0)
    }

    /// The JWK set, and when its first retired key stops being published.
    async fn published(&self, now: i64) -> Result<(serde_json::Value, Option<i64>)> {
        let mut keys = Vec::new();
        let mut stale_at: Option<i64> = None;
        for m in signing_key::Entity::find()
            .order_by_desc(signing_key::Column::CreatedAt)
            .all(self.store.db())
            .await?
        {
            if self.is_published(&m, now) {
                if let Some(t) = self.publish_until(&m) {
                    stale_at = Some(stale_at.map_or(t, |s| s.min(t)));
                }
                keys.push(serde_json::from_str::<serde_json::Value>(&m.public_jwk)?);
            }
        }
        Ok((serde_json::json!({ "keys": keys }), stale_at))
    }

    /// Loads the active key for `alg` and unseals its private half.
    pub async fn load_signer(&self, alg: SigningAlg) -> Result<Arc<LoadedSigner>> {
        let m = match self.active_model(alg).await? {
            Some(m) => m,
            None => {
                self.ensure_active(alg).await?;
                self.active_model(alg)
                    .await?
                    .ok_or_else(|| Error::Internal("no active signing key".into()))?
            }
        };
        let pem = self.store.master_key().open(&Self::seal_purpose(&m.kid), &m.private_key_enc)?;
        let signer = alg.signer_from_pem(&pem, &m.kid)?;
        Ok(Arc::new(LoadedSigner::new(m.kid, alg, signer)?))
    }
}

impl KeyService {
    /// Until when a retired key stays published; None for an active key. At least its retirement
    /// plus this process's retention, whatever was stored: a key retired by an older version, or
    /// by a process with shorter lifetimes configured, stays until every token it signed expires.
    fn publish_until(&self, m: &signing_key::Model) -> Option<i64> {
        if m.status == ACTIVE {
            return None;
        }
        if m.status == WITHDRAWN {
            return m.publish_until.or(m.retired_at);
        }
        let by_retention = m.retired_at.map(|t| t.saturating_add(self.retention));
        m.publish_until.max(by_retention)
    }

    fn is_published(&self, m: &signing_key::Model, now: i64) -> bool {
        m.status == ACTIVE || self.publish_until(m).is_some_and(|t| t > now)
    }

    fn info(&self, m: signing_key::Model, now: i64) -> SigningKeyInfo {
        SigningKeyInfo {
            published: self.is_published(&m, now),
            publish_until: self.publish_until(&m),
            kid: m.kid,
            alg: m.alg,
            status: m.status,
            created_at: m.created_at,
            retired_at: m.retired_at,
        }
    }
}

fn is_unique_violation(e: &sea_orm::DbErr) -> bool {
    matches!(constraint_violation(e), Some(SqlErr::UniqueConstraintViolation(_)))
}

#[derive(Debug, Clone, Serialize)]
pub struct SigningKeyInfo {
    pub kid: String,
    pub alg: String,
    pub status: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
    /// A retired key stays in the JWKS until this time.
    pub publish_until: Option<i64>,
    pub published: bool,
}
