//! What the endpoints resource servers call at high rates (introspection, userinfo) need to know
//! about an access token, kept so that a request costs at most one signature verification and
//! usually none:
//!
//! - the tokens already verified, by the whole token string: a resource server introspects the
//!   same token on every API call during its lifetime, and its signature and claims cannot
//!   change. An entry is used only while its key is still published;
//! - whether a grant is revoked, tagged with the store revision it was read at;
//! - the RFC 7009 revocation list of single access tokens, held in memory and brought up to date
//!   with the rows written since the revision it was loaded at.
//!
//! Every write that ends a token (revoking a grant, a session or a single token) bumps the store
//! revision in the same transaction, and every request reads the revision after it arrived
//! (`Store::current_revision`), so a revocation committed on any node is seen at the next
//! request.

use std::{
    collections::HashMap,
    hash::Hasher,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{OnConflict, Query},
};
use serde_json::{Map, Value};

use crate::{
    Result,
    infra::{
        entity::{oauth_code, oauth_revoked_access_token as revoked, store_revision},
        jose::KeySet,
        store::Store,
    },
};

/// How many verified tokens are remembered (each is the token and its claims, about 2 KiB).
const VERIFIED_CAPACITY: usize = 10_000;
/// How many grants' revocation states are remembered.
const GRANT_CAPACITY: usize = 100_000;
/// Slots of the doorkeeper in front of the verified-token cache (a power of two).
const SEEN_SLOTS: usize = 1 << 14;

/// A token whose signature was verified against a published key. Its claims are still to be
/// checked (expiry, audience) and its grant and session still to be found live.
#[derive(Debug)]
pub struct VerifiedToken {
    pub typ: Option<String>,
    pub kid: Option<String>,
    pub claims: Map<String, Value>,
}

impl VerifiedToken {
    pub fn claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
}

/// The revoked access tokens (`jti` → `exp`) as of `revision`.
struct RevokedList {
    revision: i64,
    jtis: HashMap<String, i64>,
}

pub struct AccessTokenState {
    verified: quick_cache::sync::Cache<String, Arc<VerifiedToken>>,
    /// Fingerprints of tokens verified once: a token is remembered from its second
    /// verification on. A token seen once (every request of a busy resource server carrying a
    /// new token) then costs no copy into the cache and evicts nothing. A collision of two
    /// fingerprints only admits a token one verification early.
    seen: Box<[AtomicU64]>,
    grants: quick_cache::sync::Cache<String, (i64, bool)>,
    revoked: std::sync::RwLock<RevokedList>,
    /// Held while the revocation list is brought up to date, so concurrent requests share one
    /// read instead of each issuing their own.
    loading: tokio::sync::Mutex<()>,
    /// The same for reading a grant's state.
    grant_loading: tokio::sync::Mutex<()>,
}

impl Default for AccessTokenState {
    fn default() -> Self {
        Self {
            verified: quick_cache::sync::Cache::new(VERIFIED_CAPACITY),
            seen: (0..SEEN_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            grants: quick_cache::sync::Cache::new(GRANT_CAPACITY),
            revoked: std::sync::RwLock::new(RevokedList {
                revision: i64::MIN,
                jtis: HashMap::new(),
            }),
            loading: tokio::sync::Mutex::new(()),
            grant_loading: tokio::sync::Mutex::new(()),
        }
    }
}

impl AccessTokenState {
    /// The token verified against `keys` (from memory when it was verified before with a key
    /// that is still in `keys`); None when its signature does not verify.
    pub fn verified(&self, token: &str, keys: &KeySet) -> Option<Arc<VerifiedToken>> {
        if let Some(v) = self.verified.get(token)
            && v.kid.as_deref().is_some_and(|k| keys.contains_kid(k))
        {
            return Some(v);
        }
        let (typ, kid, claims) = keys.verify_with_kid(token).ok()?;
        let v = Arc::new(VerifiedToken { typ, kid, claims });
        // Only tokens that name their key are remembered: that is how an entry is tied to a
        // key that may stop being published.
        if v.kid.is_some() && self.seen_before(token) {
            self.verified.insert(token.to_owned(), v.clone());
        }
        Some(v)
    }

    /// Whether this token was verified before (as far as its slot remembers); records it.
    fn seen_before(&self, token: &str) -> bool {
        // The signature is the token's most random part, and short to hash.
        let signature = token.rsplit('.').next().unwrap_or(token);
        let mut hasher = std::hash::DefaultHasher::new();
        hasher.write(signature.as_bytes());
        // Zero marks an empty slot.
        let fingerprint = hasher.finish() | 1;
        let slot = usize::try_from(fingerprint >> 50).unwrap_or(0) & (SEEN_SLOTS - 1);
        self.seen.get(slot).is_some_and(|s| s.swap(fingerprint, Ordering::Relaxed) == fingerprint)
    }

    /// Whether the grant (code and refresh family) is revoked, as of `revision`.
    pub async fn grant_revoked(
        &self,
        store: &Store,
        grant_id: &str,
        revision: i64,
    ) -> Result<bool> {
        let cached = || self.grants.get(grant_id).filter(|(at, _)| *at >= revision);
        if let Some((_, revoked)) = cached() {
            return Ok(revoked);
        }
        // Requests for a grant nobody asked about yet often come together (an app's calls with
        // its new token): one reads the store, the others wait and find its answer.
        let _loading = self.grant_loading.lock().await;
        if let Some((_, revoked)) = cached() {
            return Ok(revoked);
        }
        let revoked = grant_is_revoked(store.db(), grant_id).await?;
        self.grants.insert(grant_id.to_owned(), (revision, revoked));
        Ok(revoked)
    }

    /// Whether the access token with this `jti` was revoked (RFC 7009), as of `revision`.
    pub async fn jti_revoked(&self, store: &Store, jti: &str, revision: i64) -> Result<bool> {
        if let Some(answer) = self.answer(jti, revision) {
            return Ok(answer);
        }
        let _loading = self.loading.lock().await;
        if let Some(answer) = self.answer(jti, revision) {
            return Ok(answer);
        }
        self.catch_up(store, revision).await?;
        Ok(self.answer(jti, revision).unwrap_or(true))
    }

    fn answer(&self, jti: &str, revision: i64) -> Option<bool> {
        let list = self.revoked.read().ok()?;
        (list.revision >= revision).then(|| list.jtis.contains_key(jti))
    }

    /// Loads the rows written after the list's revision. A revoking transaction bumps the store
    /// revision first and holds that row's lock until it commits, so revisions are committed in
    /// order: once `revision` is visible, every row stamped with a revision up to it is too.
    async fn catch_up(&self, store: &Store, revision: i64) -> Result<()> {
        let since = self.revoked.read().map(|l| l.revision).unwrap_or(i64::MIN);
        let now = store.now();
        let rows: Vec<(String, i64)> = revoked::Entity::find()
            .select_only()
            .column(revoked::Column::Jti)
            .column(revoked::Column::ExpiresAt)
            .filter(revoked::Column::Revision.gt(since))
            .filter(revoked::Column::ExpiresAt.gt(now))
            .into_tuple()
            .all(store.db())
            .await?;
        let mut list = self
            .revoked
            .write()
            .map_err(|_| crate::Error::Internal("revocation list poisoned".into()))?;
        // Tokens past their expiry are refused anyway: their entries go.
        list.jtis.retain(|_, exp| *exp > now);
        list.jtis.extend(rows);
        list.revision = list.revision.max(revision);
        Ok(())
    }

    /// Records the revocation of one access token until its `exp`, with a new store revision.
    /// Revoking it again changes nothing.
    pub async fn revoke(&self, store: &Store, jti: &str, client_id: &str, exp: i64) -> Result<()> {
        let now = store.now();
        let txn = store.begin_write().await?;
        Store::bump_revision(&txn).await?;
        let revision =
            store_revision::Entity::find_by_id(1)
                .one(&txn)
                .await?
                .map(|r| r.revision)
                .ok_or_else(|| crate::Error::Internal("store_revision row missing".into()))?;
        let insert = Query::insert()
            .into_table(revoked::Entity)
            .columns([
                revoked::Column::Jti,
                revoked::Column::ClientId,
                revoked::Column::ExpiresAt,
                revoked::Column::Revision,
                revoked::Column::RevokedAt,
            ])
            .values([jti.into(), client_id.into(), exp.into(), revision.into(), now.into()])
            .map_err(|e| crate::Error::Internal(format!("revocation insert: {e}")))?
            .on_conflict(OnConflict::column(revoked::Column::Jti).do_nothing().to_owned())
            .to_owned();
        txn.execute(&insert).await?;
        // The list only grows while tokens live; expired rows are deleted as revocations come.
        revoked::Entity::delete_many()
            .filter(revoked::Column::ExpiresAt.lte(now))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }
}

/// The grant's code was replayed or the grant revoked (an unknown grant counts as revoked).
pub(crate) async fn grant_is_revoked<C: sea_orm::ConnectionTrait>(
    conn: &C,
    grant_id: &str,
) -> Result<bool> {
    Ok(oauth_code::Entity::find_by_id(grant_id.to_owned())
        .one(conn)
        .await?
        .is_none_or(|c| c.replayed_at.is_some() || c.revoked_at.is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_remembered_from_its_second_verification() {
        let state = AccessTokenState::default();
        let (a, b) = ("h.p.signature-of-a", "h.p.signature-of-b");
        assert!(!state.seen_before(a), "first sight");
        assert!(!state.seen_before(b), "another token");
        assert!(state.seen_before(a), "second sight of a");
        assert!(state.seen_before(b), "second sight of b");
        assert!(state.seen_before(a), "and later ones");
        // Only the signature is fingerprinted: a token differing in it is another token.
        assert!(!state.seen_before("h.p.signature-of-c"));
    }
}
