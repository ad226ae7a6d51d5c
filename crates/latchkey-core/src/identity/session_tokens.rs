//! Minting short-lived session JWTs: the hot path of the hybrid session model.
//!
//! Each request reads the store revision through the shared [`crate::infra::revision::RevisionGate`]
//! (one query serves all requests waiting at that moment), then serves the session from an in-memory snapshot tagged
//! with the revision it was loaded at. Any revocation bumps the revision, so the next request on
//! every node reloads from the database and sees it.

use std::sync::{
    Arc, RwLock,
    atomic::{AtomicI64, Ordering},
};

use serde::Serialize;

use crate::{
    Error, Result, Settings,
    identity::activity::ActivityTracker,
    identity::method::AuthMethod,
    identity::mint_gate::MintGates,
    identity::model::{SessionStatus, UserStatus},
    identity::sessions::SessionService,
    identity::subject::{self, SessionSubject},
    infra::crypto,
    infra::jose::SigningAlg,
    infra::keys::{KeyService, LoadedSigner},
    infra::store::Store,
};

/// What a token needs to know about a session, cached between requests.
struct Snapshot {
    revision: i64,
    session_id: String,
    user_id: String,
    usable: bool,
    expires_at: i64,
    idle_expires_at: i64,
    last_active_at: AtomicI64,
    loaded_last_active: i64,
    org: Option<OrgClaims>,
    /// How the session signed in: the mint gates decide by it.
    method: AuthMethod,
}

#[derive(Clone, Serialize)]
struct OrgClaims {
    org_id: String,
    org_role: String,
    org_slug: String,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    sid: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    azp: &'a str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    org: Option<&'a OrgClaims>,
}

/// Who is behind a valid session cookie.
#[derive(Debug, Clone, Serialize)]
pub struct SessionContext {
    pub session_id: String,
    pub user_id: String,
    pub org_id: Option<String>,
    pub org_role: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MintedToken {
    pub jwt: String,
    pub expires_at: i64,
    pub kid: String,
    pub alg: SigningAlg,
    pub session_id: String,
    pub user_id: String,
}

struct Inner {
    store: Store,
    keys: KeyService,
    sessions: SessionService,
    issuer: String,
    ttl_secs: i64,
    alg: SigningAlg,
    idle_timeout_secs: i64,
    cache: quick_cache::sync::Cache<[u8; 32], Arc<Snapshot>>,
    signer: RwLock<Option<(i64, Arc<LoadedSigner>)>>,
    activity: ActivityTracker,
    gates: MintGates,
}

#[derive(Clone)]
pub struct SessionTokenService {
    inner: Arc<Inner>,
}

const CACHE_CAPACITY: usize = 100_000;

impl SessionTokenService {
    pub fn new(
        store: Store,
        keys: KeyService,
        sessions: SessionService,
        settings: &Settings,
        gates: MintGates,
    ) -> Self {
        let policy = sessions.policy();
        Self {
            inner: Arc::new(Inner {
                store,
                keys,
                sessions,
                issuer: settings.public_url.clone(),
                ttl_secs: i64::try_from(settings.session_token_ttl.as_secs()).unwrap_or(60),
                alg: settings.session_token_alg,
                idle_timeout_secs: policy.idle_timeout_secs,
                cache: quick_cache::sync::Cache::new(CACHE_CAPACITY),
                signer: RwLock::new(None),
                activity: ActivityTracker::default(),
                gates,
            }),
        }
    }

    pub fn algorithm(&self) -> SigningAlg {
        self.inner.alg
    }

    /// Mints a JWT for the session whose cookie secret is `secret`, on behalf of `azp`.
    /// Fails with [`Error::Unauthenticated`] for unknown, ended, revoked or expired sessions and
    /// for users who are not active.
    pub async fn mint(&self, secret: &str, azp: &str) -> Result<MintedToken> {
        let inner = &*self.inner;
        let (snapshot, revision, now) = self.resolve(secret).await?;
        inner.gates.check(&snapshot.user_id, &snapshot.method).await?;
        let signer = self.signer(revision).await?;
        let exp = now + inner.ttl_secs;
        let claims = Claims {
            iss: &inner.issuer,
            sub: &snapshot.user_id,
            sid: &snapshot.session_id,
            iat: now,
            nbf: now,
            exp,
            azp,
            org: snapshot.org.as_ref(),
        };
        let payload = serde_json::to_vec(&claims)?;
        let jwt = signer.sign_jwt(&payload)?;
        Ok(MintedToken {
            jwt,
            expires_at: exp,
            kid: signer.kid.clone(),
            alg: signer.alg,
            session_id: snapshot.session_id.clone(),
            user_id: snapshot.user_id.clone(),
        })
    }

    /// The live session behind a cookie secret, with the same checks (and cache) as [`Self::mint`].
    /// Pages and cookie-authenticated APIs use it to know who is calling.
    pub async fn authenticate(&self, secret: &str) -> Result<SessionContext> {
        let (s, _, _) = self.resolve(secret).await?;
        Ok(SessionContext {
            session_id: s.session_id.clone(),
            user_id: s.user_id.clone(),
            org_id: s.org.as_ref().map(|o| o.org_id.clone()),
            org_role: s.org.as_ref().map(|o| o.org_role.clone()),
        })
    }

    /// Finds and checks the session, records activity; returns it with the revision and time used.
    async fn resolve(&self, secret: &str) -> Result<(Arc<Snapshot>, i64, i64)> {
        let inner = &*self.inner;
        if secret.is_empty()
            || secret.len() > 128
            || !secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Error::Unauthenticated("malformed session secret"));
        }
        let revision = inner.store.current_revision_pooled().await?;
        let hash = crypto::hash_secret(secret);
        let now = inner.store.now();

        let snapshot = match inner.cache.get(&hash).filter(|s| s.revision >= revision) {
            Some(cached) if self.check(&cached, now).is_ok() => cached,
            // A cached session that looks idle may have been active on another node: recheck.
            _ => {
                let fresh = self.load(&hash, revision).await?;
                self.check(&fresh, now)?;
                fresh
            }
        };
        if snapshot.last_active_at.fetch_max(now, Ordering::Relaxed) < now {
            inner.activity.touch(&snapshot.session_id, now);
        }
        Ok((snapshot, revision, now))
    }

    fn check(&self, s: &Snapshot, now: i64) -> Result<()> {
        if !s.usable {
            return Err(Error::Unauthenticated("session is not active"));
        }
        if now >= s.expires_at {
            return Err(Error::Unauthenticated("session expired"));
        }
        let last = s
            .last_active_at
            .load(Ordering::Relaxed)
            .max(self.inner.activity.pending(&s.session_id).unwrap_or(i64::MIN));
        // The stored idle expiry holds until this node sees newer activity.
        let idle_deadline = if last > s.loaded_last_active {
            last + self.inner.idle_timeout_secs
        } else {
            s.idle_expires_at
        };
        if now >= idle_deadline {
            return Err(Error::Unauthenticated("session idle timeout"));
        }
        Ok(())
    }

    async fn load(&self, hash: &[u8; 32], revision: i64) -> Result<Arc<Snapshot>> {
        let inner = &*self.inner;
        let Some(s) = inner.sessions.find_model_by_secret_hash(&crypto::hex(hash)).await? else {
            return Err(Error::Unauthenticated("unknown session"));
        };
        let Some(subject) = subject::load(inner.store.db(), s).await? else {
            return Err(Error::Unauthenticated("session user is gone"));
        };
        let SessionSubject { session: s, user, org } = subject;
        let usable = SessionStatus::parse(&s.status) == SessionStatus::Active
            && UserStatus::parse(&user.status) == UserStatus::Active;
        let snapshot = Arc::new(Snapshot {
            revision,
            session_id: s.id,
            user_id: user.id,
            usable,
            expires_at: s.expires_at,
            idle_expires_at: s.idle_expires_at,
            last_active_at: AtomicI64::new(s.last_active_at),
            loaded_last_active: s.last_active_at,
            method: AuthMethod::from_stored(&s.auth_method),
            org: org.map(|o| OrgClaims {
                org_id: o.org.id,
                org_role: o.role,
                org_slug: o.org.slug,
            }),
        });
        inner.cache.insert(*hash, snapshot.clone());
        Ok(snapshot)
    }

    async fn signer(&self, revision: i64) -> Result<Arc<LoadedSigner>> {
        let inner = &*self.inner;
        let cached = inner.signer.read().ok().and_then(|g| g.clone());
        if let Some((_, signer)) = cached.as_ref().filter(|(rev, _)| *rev >= revision) {
            return Ok(signer.clone());
        }
        let signer = inner.keys.refresh_signer(inner.alg, revision, cached).await?;
        if let Ok(mut guard) = inner.signer.write() {
            *guard = Some((revision, signer.clone()));
        }
        Ok(signer)
    }

    /// Writes activity gathered since the last call; run periodically and at shutdown.
    pub async fn flush_activity(&self) -> Result<usize> {
        let touches = self.inner.activity.drain();
        let n = touches.len();
        self.inner.sessions.record_activity(&touches).await?;
        Ok(n)
    }
}
