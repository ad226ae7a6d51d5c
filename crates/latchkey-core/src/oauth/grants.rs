//! The grant store of the OpenID Connect provider: authorization codes, refresh-token families,
//! consents, client-assertion replay ids, and JWT signing/verification with the instance keys.
//! It keeps state, hashed at rest; the protocol rules live in `latchkey-oidc` and the
//! orchestration of the endpoints in `provider/`.

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, ExprTrait, OnConflict, Query},
};
use serde_json::{Map, Value, json};

use crate::{
    Result,
    identity::subject,
    infra::audit::{self, Actor},
    infra::crypto,
    infra::entity::{
        oauth_assertion_jti, oauth_client, oauth_code, oauth_consent, oauth_refresh_token, session,
    },
    infra::ids,
    infra::jose::SigningAlg,
    infra::keys::KeyService,
    infra::store::Store,
    oauth::access_tokens::{AccessTokenState, VerifiedToken, grant_is_revoked},
    oauth::model::{
        CODE_TTL_SECS, CodeRedemption, ConsentInfo, GrantSubject, NewCode, RefreshGrant,
        RefreshOutcome, StoredCode, join_resources, refresh_model, split_scopes,
    },
    oauth::refresh_rotation::{Claim, RotationJob, RotationQueue},
};

#[derive(Clone)]
pub struct OAuthService {
    store: Store,
    keys: KeyService,
    rotations: Arc<RotationQueue>,
    /// When expired assertion ids were last deleted (see [`Self::remember_jti`]).
    jti_swept_at: Arc<AtomicI64>,
    /// Who is behind a grant (user, session, organisation role), keyed by session id and tagged
    /// with the store revision it was read at. Revocations, role and profile changes bump the
    /// revision, so a stale entry is never used.
    subjects: Arc<quick_cache::sync::Cache<String, Arc<GrantSubject>>>,
    /// Verified access tokens, grant states and the revocation list (introspection, userinfo).
    access: Arc<AccessTokenState>,
}

const SUBJECT_CACHE_CAPACITY: usize = 100_000;

/// A live session is stored `active` and inside both of its expiries.
async fn session_is_active<C: sea_orm::ConnectionTrait>(
    conn: &C,
    session_id: &str,
    now: i64,
) -> Result<bool> {
    Ok(session::Entity::find_by_id(session_id.to_owned())
        .one(conn)
        .await?
        .is_some_and(|s| crate::identity::model::Session::model_is_active(&s, now)))
}

impl OAuthService {
    pub fn new(store: Store, keys: KeyService) -> Self {
        Self {
            store,
            keys,
            rotations: Arc::default(),
            jti_swept_at: Arc::default(),
            subjects: Arc::new(quick_cache::sync::Cache::new(SUBJECT_CACHE_CAPACITY)),
            access: Arc::default(),
        }
    }

    /// The store revision as of a moment after this call (see [`Store::current_revision`]).
    /// Read it once per request and pass it to the `*_at` lookups.
    pub async fn revision(&self) -> Result<i64> {
        self.store.current_revision().await
    }

    /// [`Self::revision`] read through the pool ([`Store::current_revision_pooled`]): for
    /// endpoints whose requests are otherwise very short (userinfo), where the slower read lets
    /// more requests share it.
    pub async fn revision_pooled(&self) -> Result<i64> {
        self.store.current_revision_pooled().await
    }

    /// Signs `claims` with the instance's active key for `alg`, with the given `typ`.
    pub async fn sign(&self, alg: SigningAlg, typ: &str, claims: &Value) -> Result<String> {
        let revision = self.store.current_revision().await?;
        self.sign_at(alg, typ, claims, revision).await
    }

    /// [`Self::sign`] for a caller that already read the store revision.
    pub async fn sign_at(
        &self,
        alg: SigningAlg,
        typ: &str,
        claims: &Value,
        revision: i64,
    ) -> Result<String> {
        self.sign_serialized_at(alg, typ, claims, revision).await
    }

    /// Signs any serialisable claim set (a typed struct saves building a JSON value first).
    pub async fn sign_serialized_at<T: serde::Serialize + ?Sized>(
        &self,
        alg: SigningAlg,
        typ: &str,
        claims: &T,
        revision: i64,
    ) -> Result<String> {
        let signer = self.keys.signer_at(alg, revision).await?;
        signer.sign_typed(typ, &serde_json::to_vec(claims)?)
    }

    /// Verifies a token Latchkey signed against the keys published as of `revision` (signature
    /// only; the caller checks the claims), telling a token that is not ours (malformed, unknown
    /// key, bad signature: `Ok(None)`) from keys that could not be read (`Err`, a server error,
    /// never reported as a bad token).
    pub async fn verify_own_at(
        &self,
        jwt: &str,
        revision: i64,
    ) -> Result<Option<(Option<String>, Map<String, Value>)>> {
        Ok(self.keys.key_set_at(revision).await?.verify(jwt).ok())
    }

    /// An access token's signature verified against the keys published as of `revision` (see
    /// [`AccessTokenState::verified`]); `Ok(None)` when it does not verify.
    pub async fn verified_access_token(
        &self,
        jwt: &str,
        revision: i64,
    ) -> Result<Option<Arc<VerifiedToken>>> {
        let keys = self.keys.key_set_at(revision).await?;
        Ok(self.access.verified(jwt, &keys))
    }

    /// Whether the grant an access token names is revoked, as of `revision`.
    pub async fn grant_revoked_at(&self, grant_id: &str, revision: i64) -> Result<bool> {
        self.access.grant_revoked(&self.store, grant_id, revision).await
    }

    /// Whether the access token with this `jti` was revoked on its own (RFC 7009), as of
    /// `revision`.
    pub async fn access_token_revoked(&self, jti: &str, revision: i64) -> Result<bool> {
        self.access.jti_revoked(&self.store, jti, revision).await
    }

    /// RFC 7009 for one access token: refused at introspection and userinfo from the next
    /// request on, on every node, until its `exp`.
    pub async fn revoke_access_token(&self, jti: &str, client_id: &str, exp: i64) -> Result<()> {
        self.access.revoke(&self.store, jti, client_id, exp).await
    }

    /// The user and session behind a grant, current as of `revision`. Whether the session is
    /// still live is for the caller to ask ([`GrantSubject::is_live`]); an entry that looks
    /// expired is re-read first, since another node may have recorded activity meanwhile.
    pub async fn grant_subject(
        &self,
        session_id: &str,
        revision: i64,
    ) -> Result<Option<Arc<GrantSubject>>> {
        let now = self.store.now();
        if let Some(s) = self.subjects.get(session_id).filter(|s| s.revision >= revision)
            && s.is_live(now)
        {
            return Ok(Some(s));
        }
        let Some(loaded) = subject::load_by_id(self.store.db(), session_id).await? else {
            return Ok(None);
        };
        let subject = Arc::new(GrantSubject {
            revision,
            user: loaded.user.into(),
            session: loaded.session,
            org_role: loaded.org.map(|o| o.role),
        });
        self.subjects.insert(session_id.to_owned(), subject.clone());
        Ok(Some(subject))
    }

    pub async fn issue_code(&self, new: NewCode) -> Result<String> {
        let code = crypto::random_secret();
        let now = self.store.now();
        oauth_code::ActiveModel {
            id: Set(ids::new_id(ids::OAUTH_CODE)),
            code_hash: Set(crypto::hash_secret_hex(&code)),
            client_id: Set(new.client_id),
            user_id: Set(new.user_id),
            session_id: Set(new.session_id),
            redirect_uri: Set(new.redirect_uri),
            scopes: Set(new.scopes.join(" ")),
            nonce: Set(new.nonce),
            code_challenge: Set(new.code_challenge),
            auth_time: Set(new.auth_time),
            created_at: Set(now),
            expires_at: Set(now + CODE_TTL_SECS),
            used_at: Set(None),
            replayed_at: Set(None),
            revoked_at: Set(None),
            resources: Set(join_resources(&new.resources)),
        }
        .insert(self.store.db())
        .await?;
        Ok(code)
    }

    /// The code behind a secret, without touching it: the caller checks client, redirect URI,
    /// PKCE and expiry before anything is written (see [`Self::claim_code`]).
    pub async fn find_code(&self, code: &str) -> Result<Option<StoredCode>> {
        if code.is_empty() || code.len() > 128 {
            return Ok(None);
        }
        let row = oauth_code::Entity::find()
            .filter(oauth_code::Column::CodeHash.eq(crypto::hash_secret_hex(code)))
            .one(self.store.db())
            .await?;
        Ok(row.map(|row| StoredCode {
            scopes: split_scopes(&row.scopes),
            resources: split_scopes(row.resources.as_deref().unwrap_or_default()),
            used: row.used_at.is_some(),
            revoked: row.revoked_at.is_some() || row.replayed_at.is_some(),
            id: row.id,
            client_id: row.client_id,
            user_id: row.user_id,
            session_id: row.session_id,
            redirect_uri: row.redirect_uri,
            nonce: row.nonce,
            code_challenge: row.code_challenge,
            auth_time: row.auth_time,
            expires_at: row.expires_at,
        }))
    }

    /// Marks a code used, atomically: of concurrent callers exactly one gets true. A caller that
    /// gets false presented a code used meanwhile, which is a replay ([`Self::code_replayed`]).
    pub async fn claim_code(&self, code_id: &str) -> Result<bool> {
        let claimed = oauth_code::Entity::update_many()
            .col_expr(oauth_code::Column::UsedAt, Expr::value(self.store.now()))
            .filter(oauth_code::Column::Id.eq(code_id))
            .filter(oauth_code::Column::UsedAt.is_null())
            .exec(self.store.db())
            .await?;
        Ok(claimed.rows_affected == 1)
    }

    /// A used code came back: it is marked replayed and every token its first use issued is
    /// revoked (RFC 6749 §4.1.2).
    pub async fn code_replayed(&self, code: &StoredCode) -> Result<()> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        oauth_code::Entity::update_many()
            .col_expr(oauth_code::Column::ReplayedAt, Expr::value(now))
            .filter(oauth_code::Column::Id.eq(&code.id))
            .exec(&txn)
            .await?;
        revoke_family(&txn, &code.id, now).await?;
        txn.commit().await?;
        tracing::warn!(code_id = %code.id, client_id = %code.client_id, "authorization code replayed; its tokens are revoked");
        Ok(())
    }

    /// Finds and claims a code in one go, without the binding checks (a replay revokes what the
    /// first use issued). The token endpoint checks the binding between [`Self::find_code`] and
    /// [`Self::claim_code`] instead.
    pub async fn redeem_code(&self, code: &str) -> Result<CodeRedemption> {
        let Some(found) = self.find_code(code).await? else {
            return Ok(CodeRedemption::Invalid);
        };
        if found.used || !self.claim_code(&found.id).await? {
            self.code_replayed(&found).await?;
            return Ok(CodeRedemption::Invalid);
        }
        Ok(CodeRedemption::Redeemed(Box::new(found)))
    }

    /// Starts (or continues) a refresh-token family; returns the new token.
    pub async fn issue_refresh(&self, grant: &RefreshGrant, ttl_secs: i64) -> Result<String> {
        insert_refresh(self.store.db(), grant, ttl_secs, self.store.now()).await
    }

    /// True when the grant (a code and the refresh family it started) was revoked: its code was
    /// replayed, or the family was revoked (reuse, RFC 7009, consent withdrawn, session over).
    /// Access tokens carry the grant id, so they stop working at once too.
    pub async fn grant_revoked(&self, grant_id: &str) -> Result<bool> {
        grant_is_revoked(self.store.db(), grant_id).await
    }

    /// After an exchange stored its refresh token: if the code was replayed meanwhile, revoke
    /// the family now (the replay may have run before the token existed).
    pub async fn settle_grant(&self, grant_id: &str) -> Result<bool> {
        if self.grant_revoked(grant_id).await? {
            let txn = self.store.begin_write().await?;
            revoke_family(&txn, grant_id, self.store.now()).await?;
            txn.commit().await?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Exchanges a refresh token for its successor (rotation on every use). Reuse of a rotated
    /// token revokes the whole family; a token whose session (or user) is over is refused and
    /// its family revoked. Concurrent rotations share one write transaction (see
    /// [`crate::oauth::refresh_rotation::RotationQueue`]); `revision` (read after the request arrived) decides how fresh the
    /// session check must be.
    pub async fn rotate_refresh(
        &self,
        token: &str,
        client_id: &str,
        ttl_secs: i64,
        revision: i64,
    ) -> Result<RefreshOutcome> {
        if token.is_empty() || token.len() > 128 {
            return Ok(RefreshOutcome::Invalid("unknown refresh token"));
        }
        let job = RotationJob {
            hash: crypto::hash_secret_hex(token),
            client_id: client_id.to_owned(),
            ttl_secs,
        };
        let (row, token) = match self.rotations.submit(&self.store, job).await? {
            Claim::Rotated { row, token } => (row, token),
            Claim::Invalid(reason) => return Ok(RefreshOutcome::Invalid(reason)),
            Claim::Reused => return Ok(RefreshOutcome::Reused),
        };
        let subject = self
            .grant_subject(&row.session_id, revision)
            .await?
            .filter(|s| s.user.id == row.user_id && s.is_live(self.store.now()));
        let Some(subject) = subject else {
            let txn = self.store.begin_write().await?;
            revoke_family(&txn, &row.family_id, self.store.now()).await?;
            txn.commit().await?;
            return Ok(RefreshOutcome::Invalid("the session behind this grant has ended"));
        };
        Ok(RefreshOutcome::Rotated { grant: (*row).into(), token, subject })
    }

    /// The scopes and resources of a live refresh token of this client, read without rotating
    /// it: what a refresh request that names `scope` or `resource` is checked against first, so
    /// that a refused request leaves the token usable. None for tokens that are unknown, of
    /// another client, rotated, revoked or expired: rotation then says why (and treats reuse as
    /// reuse).
    pub async fn refresh_scopes(
        &self,
        token: &str,
        client_id: &str,
    ) -> Result<Option<(Vec<String>, Vec<String>)>> {
        if token.is_empty() || token.len() > 128 {
            return Ok(None);
        }
        let now = self.store.now();
        let found: Option<(String, Option<String>)> = oauth_refresh_token::Entity::find()
            .select_only()
            .column(oauth_refresh_token::Column::Scopes)
            .column(oauth_refresh_token::Column::Resources)
            .filter(oauth_refresh_token::Column::TokenHash.eq(crypto::hash_secret_hex(token)))
            .filter(oauth_refresh_token::Column::ClientId.eq(client_id))
            .filter(oauth_refresh_token::Column::RotatedAt.is_null())
            .filter(oauth_refresh_token::Column::RevokedAt.is_null())
            .filter(oauth_refresh_token::Column::ExpiresAt.gt(now))
            .into_tuple()
            .one(self.store.db())
            .await?;
        Ok(found.map(|(s, r)| (split_scopes(&s), split_scopes(r.as_deref().unwrap_or_default()))))
    }

    /// RFC 7009: revokes the family of a refresh token of this client. Unknown tokens and tokens
    /// of other clients are ignored (the endpoint answers 200 either way).
    pub async fn revoke_refresh(&self, token: &str, client_id: &str) -> Result<bool> {
        if token.is_empty() || token.len() > 128 {
            return Ok(false);
        }
        let hash = crypto::hash_secret_hex(token);
        let txn = self.store.begin_write().await?;
        let row = oauth_refresh_token::Entity::find()
            .filter(oauth_refresh_token::Column::TokenHash.eq(&hash))
            .one(&txn)
            .await?;
        let Some(row) = row.filter(|r| r.client_id == client_id) else {
            return Ok(false);
        };
        revoke_family(&txn, &row.family_id, self.store.now()).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Introspection of a refresh token: the grant when it is live, else None.
    pub async fn live_refresh(&self, token: &str) -> Result<Option<(RefreshGrant, i64)>> {
        if token.is_empty() || token.len() > 128 {
            return Ok(None);
        }
        let now = self.store.now();
        let row = oauth_refresh_token::Entity::find()
            .filter(oauth_refresh_token::Column::TokenHash.eq(crypto::hash_secret_hex(token)))
            .one(self.store.db())
            .await?;
        let Some(row) = row else { return Ok(None) };
        if row.revoked_at.is_some() || row.rotated_at.is_some() || now >= row.expires_at {
            return Ok(None);
        }
        if grant_is_revoked(self.store.db(), &row.family_id).await? {
            return Ok(None);
        }
        if !session_is_active(self.store.db(), &row.session_id, now).await? {
            return Ok(None);
        }
        let expires_at = row.expires_at;
        Ok(Some((row.into(), expires_at)))
    }

    /// Records a `private_key_jwt` assertion id until `expires_at`; false when it is recorded and
    /// unexpired already (a replay). One atomic statement: an insert that, on a conflict, takes
    /// over the row only if the earlier assertion has expired, so of concurrent uses exactly one
    /// affects a row. A database failure is an error, never a replay.
    pub async fn remember_jti(&self, client_id: &str, jti: &str, expires_at: i64) -> Result<bool> {
        use oauth_assertion_jti::Column;
        let now = self.store.now();
        let key = format!("{client_id}:{}", crypto::hash_secret_hex(jti));
        let insert = Query::insert()
            .into_table(oauth_assertion_jti::Entity)
            .columns([Column::JtiKey, Column::ExpiresAt])
            .values([key.into(), expires_at.into()])
            .map_err(|e| crate::Error::Internal(format!("jti insert: {e}")))?
            .on_conflict(
                OnConflict::column(Column::JtiKey)
                    .update_column(Column::ExpiresAt)
                    .action_and_where(
                        Expr::col((oauth_assertion_jti::Entity, Column::ExpiresAt)).lte(now),
                    )
                    .to_owned(),
            )
            .to_owned();
        let recorded = self.store.db().execute(&insert).await?.rows_affected() == 1;
        self.sweep_expired_jtis(now).await;
        Ok(recorded)
    }

    /// Deletes expired assertion ids, at most once a minute per node: a replayed assertion past
    /// its `exp` is refused before its id is looked up, so they are only clutter. A failure is
    /// logged and left for the next sweep.
    async fn sweep_expired_jtis(&self, now: i64) {
        let last = self.jti_swept_at.load(Ordering::Relaxed);
        if now - last < 60
            || self
                .jti_swept_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let swept = oauth_assertion_jti::Entity::delete_many()
            .filter(oauth_assertion_jti::Column::ExpiresAt.lt(now))
            .exec(self.store.db())
            .await;
        if let Err(e) = swept {
            tracing::warn!(error = %e, "could not delete expired client-assertion ids");
        }
    }

    /// The scopes the user already granted this client, if any.
    pub async fn consent(&self, user_id: &str, client_id: &str) -> Result<Option<Vec<String>>> {
        Ok(oauth_consent::Entity::find()
            .filter(oauth_consent::Column::UserId.eq(user_id))
            .filter(oauth_consent::Column::ClientId.eq(client_id))
            .filter(oauth_consent::Column::RevokedAt.is_null())
            .one(self.store.db())
            .await?
            .map(|c| split_scopes(&c.scopes)))
    }

    /// Clients the user has granted access to (the third-party apps shown on `/account`).
    pub async fn consents_of(&self, user_id: &str) -> Result<Vec<ConsentInfo>> {
        let rows = oauth_consent::Entity::find()
            .filter(oauth_consent::Column::UserId.eq(user_id))
            .filter(oauth_consent::Column::RevokedAt.is_null())
            .all(self.store.db())
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let name = oauth_client::Entity::find_by_id(r.client_id.clone())
                .one(self.store.db())
                .await?
                .map(|c| c.name)
                .unwrap_or_else(|| r.client_id.clone());
            out.push(ConsentInfo {
                client_id: r.client_id,
                client_name: name,
                scopes: split_scopes(&r.scopes),
                granted_at: r.granted_at,
            });
        }
        Ok(out)
    }

    /// Withdraws a consent and revokes every refresh token the user gave that client.
    pub async fn revoke_consent(
        &self,
        user_id: &str,
        client_id: &str,
        actor: &Actor,
    ) -> Result<bool> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        let res = oauth_consent::Entity::delete_many()
            .filter(oauth_consent::Column::UserId.eq(user_id))
            .filter(oauth_consent::Column::ClientId.eq(client_id))
            .exec(&txn)
            .await?;
        // Every grant the user gave the client: their refresh tokens and access tokens end.
        oauth_code::Entity::update_many()
            .col_expr(oauth_code::Column::RevokedAt, Expr::value(now))
            .filter(oauth_code::Column::UserId.eq(user_id))
            .filter(oauth_code::Column::ClientId.eq(client_id))
            .filter(oauth_code::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        Store::bump_revision(&txn).await?;
        if res.rows_affected > 0 {
            audit::record(
                &txn,
                now,
                actor,
                "consent.revoked",
                Some(client_id),
                json!({ "user_id": user_id }),
            )
            .await?;
        }
        txn.commit().await?;
        Ok(res.rows_affected > 0)
    }

    pub async fn grant_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scopes: &[String],
    ) -> Result<()> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        oauth_consent::Entity::delete_many()
            .filter(oauth_consent::Column::UserId.eq(user_id))
            .filter(oauth_consent::Column::ClientId.eq(client_id))
            .exec(&txn)
            .await?;
        oauth_consent::ActiveModel {
            id: Set(ids::new_id(ids::CONSENT)),
            user_id: Set(user_id.to_owned()),
            client_id: Set(client_id.to_owned()),
            scopes: Set(scopes.join(" ")),
            granted_at: Set(now),
            revoked_at: Set(None),
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        Ok(())
    }
}

async fn insert_refresh<C: sea_orm::ConnectionTrait>(
    conn: &C,
    grant: &RefreshGrant,
    ttl_secs: i64,
    now: i64,
) -> Result<String> {
    let (model, token) = refresh_model(grant, grant.scopes.join(" "), ttl_secs, now);
    model.insert(conn).await?;
    Ok(token)
}

/// Revokes a grant: the code that started it, and with it every refresh token of its family
/// (recorded once, on the code, whose id is the family id; see `refresh_rotation.rs`).
pub(crate) async fn revoke_family<C: sea_orm::ConnectionTrait>(
    conn: &C,
    family_id: &str,
    now: i64,
) -> Result<()> {
    oauth_code::Entity::update_many()
        .col_expr(oauth_code::Column::RevokedAt, Expr::value(now))
        .filter(oauth_code::Column::Id.eq(family_id))
        .filter(oauth_code::Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    // The grant's access tokens are checked against revision-tagged state.
    Store::bump_revision(conn).await
}
