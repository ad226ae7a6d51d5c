//! Password sign-in, lockout administration and password changes.

use sea_orm::EntityTrait;
use serde_json::json;

use super::{
    ClientInfo, SignInService, SignedIn, Verified, VerifiedSubject,
    throttle::{self, LockoutStatus},
};
use crate::{
    Error, Result,
    identity::{
        method::AuthMethod,
        model::{User, UserStatus},
        passwords,
    },
    infra::{
        audit::{self, Actor},
        email::normalize_email,
        entity::password_credential,
    },
};

/// Why a password attempt failed, for the audit log only: the caller sees one answer.
#[derive(Debug, Clone, Copy)]
enum Failure {
    UnknownAccount,
    NoPassword,
    WrongPassword,
    AccountInactive,
}

impl Failure {
    fn as_str(self) -> &'static str {
        match self {
            Self::UnknownAccount => "unknown_account",
            Self::NoPassword => "no_password",
            Self::WrongPassword => "wrong_password",
            Self::AccountInactive => "account_inactive",
        }
    }
}

impl SignInService {
    /// Password sign-in. The attempt is first reserved against the account's delay and lockout
    /// and the client IP's cap (so parallel guesses cannot outrun them); only then is the
    /// password checked. Every failure looks the same to the caller (wrong password, unknown or
    /// inactive account) and costs one Argon2 verification; past the limits the caller gets
    /// [`Error::RateLimited`]. Success goes through the one completion step.
    pub async fn sign_in_with_password(
        &self,
        email: &str,
        password: &str,
        client: &ClientInfo,
    ) -> Result<SignedIn> {
        let email = normalize_email(email).map_err(|_| Error::Unauthenticated("invalid email"))?;
        self.require_password_route(&email).await?;
        let now = self.store.now();
        let keys = throttle::Keys::new(&email, client.ip.as_deref());
        let reservation =
            match throttle::reserve_attempt(self.store.db(), &keys, &self.policy, now).await {
                Ok(r) => r,
                Err(e @ Error::RateLimited { .. }) => {
                    let data = json!({ "email": email });
                    let actor = client.actor_for(None);
                    let db = self.store.db();
                    audit::record(db, now, &actor, "sign_in.throttled", None, data).await?;
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
        match self.check_password(&email, password).await? {
            Ok(user) => {
                let verified = Verified {
                    method: AuthMethod::Password,
                    subject: VerifiedSubject::User(user.id),
                    join: None,
                    upstream_session: None,
                };
                let txn = self.store.begin_write().await?;
                let signed_in = self.complete_in(&txn, &verified, client, Some(&keys), now).await?;
                txn.commit().await?;
                Ok(signed_in)
            }
            Err((failure, user_id)) => {
                self.record_failure(&email, failure, user_id.as_deref(), reservation, client, now)
                    .await?;
                Err(Error::Unauthenticated("wrong email or password"))
            }
        }
    }

    /// The active account whose password this is, or why not (with the account, if any).
    async fn check_password(
        &self,
        email: &str,
        password: &str,
    ) -> Result<std::result::Result<User, (Failure, Option<String>)>> {
        let user = self.users.find_by_email(email).await?;
        let credential = match &user {
            Some(u) => {
                password_credential::Entity::find_by_id(u.id.clone()).one(self.store.db()).await?
            }
            None => None,
        };
        let matches = match &credential {
            Some(c) => self.passwords.verify(password.to_owned(), c.password_hash.clone()).await?,
            None => {
                // The same cost whether or not there is an account.
                self.passwords.verify_dummy(password.to_owned()).await?;
                false
            }
        };
        Ok(match user {
            None => Err((Failure::UnknownAccount, None)),
            Some(u) if credential.is_none() => Err((Failure::NoPassword, Some(u.id))),
            Some(u) if !matches => Err((Failure::WrongPassword, Some(u.id))),
            Some(u) if u.status != UserStatus::Active => {
                Err((Failure::AccountInactive, Some(u.id)))
            }
            Some(u) => Ok(u),
        })
    }

    async fn record_failure(
        &self,
        email: &str,
        failure: Failure,
        user_id: Option<&str>,
        reservation: throttle::Reservation,
        client: &ClientInfo,
        now: i64,
    ) -> Result<()> {
        let db = self.store.db();
        let data = json!({ "email": email, "reason": failure.as_str() });
        audit::record(db, now, &client.actor_for(None), "sign_in.failed", user_id, data).await?;
        if let Some(until) = reservation.locks_until {
            let data = json!({ "email": email, "until": until });
            audit::record(db, now, &Actor::system(), "user.locked_out", user_id, data).await?;
        }
        Ok(())
    }

    /// Lockout state of an account, for administrators.
    pub async fn lockout_status(&self, email: &str) -> Result<LockoutStatus> {
        let email = normalize_email(email)?;
        throttle::status(self.store.db(), &throttle::Keys::new(&email, None), self.store.now())
            .await
    }

    /// Clears an account's failed sign-in counter and lockout.
    pub async fn unlock(&self, email: &str, actor: &Actor) -> Result<()> {
        let now = self.store.now();
        let email = normalize_email(email)?;
        let txn = self.store.begin_write().await?;
        throttle::clear_account(&txn, &throttle::Keys::new(&email, None)).await?;
        audit::record(&txn, now, actor, "user.unlocked", None, json!({ "email": email })).await?;
        txn.commit().await?;
        Ok(())
    }

    /// A signed-in user enters their password again (before sensitive console actions). The
    /// attempt counts against the same delay and lockout as sign-in, so the form cannot be used
    /// to guess; success marks the session as freshly authenticated, audited either way.
    pub async fn reauthenticate(
        &self,
        session_id: &str,
        password: &str,
        client: &ClientInfo,
    ) -> Result<()> {
        let session = self.sessions.get(session_id).await?;
        if session.status != crate::identity::model::SessionStatus::Active {
            return Err(Error::Unauthenticated("the session has ended"));
        }
        let user = self.users.get(&session.user_id).await?;
        let now = self.store.now();
        let keys = throttle::Keys::new(&user.primary_email, client.ip.as_deref());
        let reservation =
            throttle::reserve_attempt(self.store.db(), &keys, &self.policy, now).await?;
        let actor = client.actor_for(Some(&user.id));
        match self.check_password(&user.primary_email, password).await? {
            Ok(u) if u.id == user.id => {
                let txn = self.store.begin_write().await?;
                throttle::succeeded(&txn, &keys).await?;
                self.sessions.mark_reauthenticated(&txn, session_id, now).await?;
                let data = json!({ "session_id": session_id });
                audit::record(&txn, now, &actor, "session.reauthenticated", Some(&user.id), data)
                    .await?;
                txn.commit().await?;
                Ok(())
            }
            Ok(_) | Err(_) => {
                let failure = Failure::WrongPassword;
                self.record_failure(
                    &user.primary_email,
                    failure,
                    Some(&user.id),
                    reservation,
                    client,
                    now,
                )
                .await?;
                Err(Error::invalid("password", "is not correct"))
            }
        }
    }

    /// Changes a signed-in user's password after checking the current one.
    pub async fn change_password(
        &self,
        user_id: &str,
        current: &str,
        new: &str,
        client: &ClientInfo,
    ) -> Result<()> {
        let now = self.store.now();
        let user = self.users.get(user_id).await?;
        let credential =
            password_credential::Entity::find_by_id(user.id.clone()).one(self.store.db()).await?;
        let ok = match credential {
            Some(c) => self.passwords.verify(current.to_owned(), c.password_hash).await?,
            None => false,
        };
        let actor = client.actor_for(Some(user_id));
        if !ok {
            let db = self.store.db();
            audit::record(db, now, &actor, "password.change_failed", Some(user_id), json!({}))
                .await?;
            return Err(Error::invalid("current_password", "is not correct"));
        }
        passwords::check_strength(new, &user.primary_email, self.policy.password_min_score)?;
        let hash = self.passwords.hash(new.to_owned()).await?;
        let txn = self.store.begin_write().await?;
        self.users.set_password_hash(&txn, user_id, hash).await?;
        audit::record(&txn, now, &actor, "password.changed", Some(user_id), json!({})).await?;
        txn.commit().await?;
        Ok(())
    }
}
