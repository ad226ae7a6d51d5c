//! Users: creation, lookup, deactivation.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::json;

use crate::infra::inline_sqlite::constraint_violation;
use crate::{
    Error, Result,
    identity::model::{User, UserStatus},
    identity::passwords::{self, Passwords},
    infra::audit::{self, Actor},
    infra::entity::{password_credential, user, user_email},
    infra::ids,
    infra::store::Store,
};

#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub email: String,
    pub password: Option<String>,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub email_verified: bool,
    pub is_admin: bool,
}

#[derive(Clone)]
pub struct UserService {
    store: Store,
    passwords: Passwords,
}

pub use crate::infra::email::normalize_email;

impl UserService {
    pub fn new(store: Store, passwords: Passwords) -> Self {
        Self { store, passwords }
    }

    /// Creates a user; an operator-set password only has to meet the length policy.
    pub async fn create(&self, mut new: NewUser, actor: &Actor) -> Result<User> {
        let password_hash = match new.password.take() {
            Some(p) => {
                passwords::check_policy(&p)?;
                Some(self.passwords.hash(p).await?)
            }
            None => None,
        };
        self.create_with_hash(new, password_hash, actor).await
    }

    /// Creates a user whose password (if any) is already hashed.
    pub async fn create_with_hash(
        &self,
        new: NewUser,
        password_hash: Option<String>,
        actor: &Actor,
    ) -> Result<User> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        let user = insert_user(&txn, new, password_hash, actor, now).await?;
        txn.commit().await?;
        Ok(user)
    }

    /// Sets or replaces a user's password hash in the caller's transaction.
    pub async fn set_password_hash<C: sea_orm::ConnectionTrait>(
        &self,
        conn: &C,
        user_id: &str,
        hash: String,
    ) -> Result<()> {
        let now = self.store.now();
        match password_credential::Entity::find_by_id(user_id.to_owned()).one(conn).await? {
            Some(existing) => {
                let mut am: password_credential::ActiveModel = existing.into();
                am.password_hash = Set(hash);
                am.updated_at = Set(now);
                am.update(conn).await?;
            }
            None => {
                password_credential::ActiveModel {
                    user_id: Set(user_id.to_owned()),
                    password_hash: Set(hash),
                    created_at: Set(now),
                    updated_at: Set(now),
                }
                .insert(conn)
                .await?;
            }
        }
        Ok(())
    }

    /// Updates profile fields the user may change themselves.
    pub async fn update_name(
        &self,
        user_id: &str,
        name: Option<String>,
        actor: &Actor,
    ) -> Result<User> {
        let now = self.store.now();
        let name = name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
        if name.as_ref().is_some_and(|n| n.chars().count() > 256) {
            return Err(Error::invalid("name", "must be at most 256 characters"));
        }
        let txn = self.store.begin_write().await?;
        let existing = user::Entity::find_by_id(user_id.to_owned())
            .one(&txn)
            .await?
            .ok_or_else(|| Error::NotFound(format!("user {user_id}")))?;
        let mut am: user::ActiveModel = existing.into();
        am.name = Set(name.clone());
        am.updated_at = Set(self.store.now());
        let updated = am.update(&txn).await?;
        audit::record(
            &txn,
            now,
            actor,
            "user.profile_updated",
            Some(user_id),
            json!({ "name": name }),
        )
        .await?;
        // Profile claims are cached with the grants they appear in.
        Store::bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(updated.into())
    }

    pub async fn get(&self, id: &str) -> Result<User> {
        user::Entity::find_by_id(id.to_owned())
            .one(self.store.db())
            .await?
            .map(Into::into)
            .ok_or_else(|| Error::NotFound(format!("user {id}")))
    }

    /// Whether the account has a password (accounts made by SAML or EASIE may not).
    pub async fn has_password(&self, id: &str) -> Result<bool> {
        Ok(password_credential::Entity::find_by_id(id.to_owned())
            .one(self.store.db())
            .await?
            .is_some())
    }

    pub async fn find_by_email(&self, email: &str) -> Result<Option<User>> {
        let email = normalize_email(email)?;
        let Some(e) = user_email::Entity::find()
            .filter(user_email::Column::Email.eq(email))
            .one(self.store.db())
            .await?
        else {
            return Ok(None);
        };
        Ok(user::Entity::find_by_id(e.user_id).one(self.store.db()).await?.map(Into::into))
    }

    /// Resolves a user by id (`usr_…`) or email address.
    pub async fn resolve(&self, id_or_email: &str) -> Result<User> {
        if id_or_email.starts_with("usr_") {
            return self.get(id_or_email).await;
        }
        self.find_by_email(id_or_email)
            .await?
            .ok_or_else(|| Error::NotFound(format!("user {id_or_email}")))
    }

    pub async fn list(&self, limit: u64, offset: u64) -> Result<Vec<User>> {
        Ok(user::Entity::find()
            .order_by_asc(user::Column::CreatedAt)
            .order_by_asc(user::Column::Id)
            .limit(limit)
            .offset(offset)
            .all(self.store.db())
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    pub async fn count_admins(&self) -> Result<u64> {
        Ok(user::Entity::find()
            .filter(user::Column::IsAdmin.eq(true))
            .count(self.store.db())
            .await?)
    }

    /// Marks the user deactivated and revokes all of their sessions at once.
    pub async fn deactivate(
        &self,
        id: &str,
        reason: Option<String>,
        actor: &Actor,
    ) -> Result<User> {
        self.set_status(id, UserStatus::Deactivated, reason, actor).await
    }

    pub async fn ban(&self, id: &str, reason: Option<String>, actor: &Actor) -> Result<User> {
        self.set_status(id, UserStatus::Banned, reason, actor).await
    }

    pub async fn reactivate(&self, id: &str, actor: &Actor) -> Result<User> {
        self.set_status(id, UserStatus::Active, None, actor).await
    }

    async fn set_status(
        &self,
        id: &str,
        status: UserStatus,
        reason: Option<String>,
        actor: &Actor,
    ) -> Result<User> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        let existing = user::Entity::find_by_id(id.to_owned())
            .one(&txn)
            .await?
            .ok_or_else(|| Error::NotFound(format!("user {id}")))?;
        let mut am: user::ActiveModel = existing.into();
        am.status = Set(status.as_str().into());
        am.status_reason = Set(reason.clone());
        am.updated_at = Set(now);
        let updated = am.update(&txn).await?;
        let mut revoked = 0;
        if status != UserStatus::Active {
            revoked = crate::identity::sessions::revoke_user_sessions(
                &txn,
                id,
                &format!("user_{}", status.as_str()),
                now,
            )
            .await?;
        }
        let action = match status {
            UserStatus::Active => "user.reactivated",
            UserStatus::Deactivated => "user.deactivated",
            UserStatus::Banned => "user.banned",
        };
        audit::record(
            &txn,
            now,
            actor,
            action,
            Some(id),
            json!({ "reason": reason, "sessions_revoked": revoked }),
        )
        .await?;
        Store::bump_revision(&txn).await?;
        txn.commit().await?;
        if revoked > 0 {
            self.store.notify_jobs();
        }
        Ok(updated.into())
    }
}

/// Creates a user in the caller's transaction: the account, its primary address and, if given,
/// its password hash. A taken address is a conflict.
pub(crate) async fn insert_user<C: ConnectionTrait>(
    txn: &C,
    new: NewUser,
    password_hash: Option<String>,
    actor: &Actor,
    now: i64,
) -> Result<User> {
    let email = normalize_email(&new.email)?;
    let id = ids::new_id(ids::USER);
    let taken =
        user_email::Entity::find().filter(user_email::Column::Email.eq(&email)).count(txn).await?
            > 0;
    if taken {
        return Err(Error::Conflict(format!("a user with email {email} already exists")));
    }
    let model = user::ActiveModel {
        id: Set(id.clone()),
        primary_email: Set(email.clone()),
        email_verified: Set(new.email_verified),
        name: Set(new.name.filter(|s| !s.trim().is_empty())),
        given_name: Set(new.given_name),
        family_name: Set(new.family_name),
        image_url: Set(None),
        public_metadata: Set("{}".into()),
        private_metadata: Set("{}".into()),
        is_admin: Set(new.is_admin),
        status: Set(UserStatus::Active.as_str().into()),
        status_reason: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        last_sign_in_at: Set(None),
    }
    .insert(txn)
    .await
    .map_err(|e| unique_violation(e, &email))?;
    user_email::ActiveModel {
        id: Set(ids::new_id(ids::USER_EMAIL)),
        user_id: Set(id.clone()),
        email: Set(email.clone()),
        verified: Set(new.email_verified),
        created_at: Set(now),
        verified_at: Set(new.email_verified.then_some(now)),
    }
    .insert(txn)
    .await
    .map_err(|e| unique_violation(e, &email))?;
    if let Some(hash) = password_hash {
        password_credential::ActiveModel {
            user_id: Set(id.clone()),
            password_hash: Set(hash),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(txn)
        .await?;
    }
    audit::record(
        txn,
        now,
        actor,
        "user.created",
        Some(&id),
        json!({ "email": email, "admin": new.is_admin }),
    )
    .await?;
    Ok(model.into())
}

/// Marks `email` verified for the user, on the user (when it is still the primary address) and
/// on its `user_emails` row, in the caller's transaction. Called once something has proved
/// control of the address: an emailed verification link or password-reset link. True when
/// anything changed; the caller then bumps the store revision (`email_verified` is a claim).
pub(crate) async fn mark_email_verified<C: sea_orm::ConnectionTrait>(
    conn: &C,
    user_id: &str,
    email: &str,
    now: i64,
) -> Result<bool> {
    use sea_orm::sea_query::Expr;
    let on_user = user::Entity::update_many()
        .col_expr(user::Column::EmailVerified, Expr::value(true))
        .col_expr(user::Column::UpdatedAt, Expr::value(now))
        .filter(user::Column::Id.eq(user_id))
        .filter(user::Column::PrimaryEmail.eq(email))
        .filter(user::Column::EmailVerified.eq(false))
        .exec(conn)
        .await?;
    let on_address = user_email::Entity::update_many()
        .col_expr(user_email::Column::Verified, Expr::value(true))
        .col_expr(user_email::Column::VerifiedAt, Expr::value(now))
        .filter(user_email::Column::UserId.eq(user_id))
        .filter(user_email::Column::Email.eq(email))
        .filter(user_email::Column::Verified.eq(false))
        .exec(conn)
        .await?;
    Ok(on_user.rows_affected + on_address.rows_affected > 0)
}

fn unique_violation(e: sea_orm::DbErr, email: &str) -> Error {
    match constraint_violation(&e) {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => {
            Error::Conflict(format!("a user with email {email} already exists"))
        }
        _ => e.into(),
    }
}

/// The account holding `email` and whether that address is verified, in the caller's
/// transaction. An address the rule refuses belongs to nobody.
pub(crate) async fn find_by_email_in<C: ConnectionTrait>(
    conn: &C,
    email: &str,
) -> Result<Option<(user::Model, bool)>> {
    let Ok(email) = normalize_email(email) else { return Ok(None) };
    let Some(e) =
        user_email::Entity::find().filter(user_email::Column::Email.eq(email)).one(conn).await?
    else {
        return Ok(None);
    };
    Ok(user::Entity::find_by_id(e.user_id).one(conn).await?.map(|u| (u, e.verified)))
}

/// Copies the names a provider asserts onto the linked account (the provider is the source of
/// truth for them); audited when anything changed. The address is left alone: it is the
/// account's own, and a changed address upstream must not move the account. Returns the
/// account as it now stands.
pub(crate) async fn refresh_profile<C: ConnectionTrait>(
    txn: &C,
    existing: user::Model,
    up: &crate::identity::external::UpstreamIdentity,
    now: i64,
) -> Result<user::Model> {
    let clean = |v: &Option<String>| {
        v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(|s| s.chars().take(256).collect())
    };
    let (name, given, family) = (clean(&up.name), clean(&up.given_name), clean(&up.family_name));
    if existing.name == name && existing.given_name == given && existing.family_name == family {
        return Ok(existing);
    }
    let before = json!({
        "name": existing.name, "given_name": existing.given_name,
        "family_name": existing.family_name,
    });
    let after = json!({ "name": name, "given_name": given, "family_name": family });
    let user_id = existing.id.clone();
    let mut am: user::ActiveModel = existing.into();
    am.name = Set(name);
    am.given_name = Set(given);
    am.family_name = Set(family);
    am.updated_at = Set(now);
    let updated = am.update(txn).await?;
    let data = json!({ "before": before, "after": after, "source": "upstream" });
    audit::record(txn, now, &Actor::system(), "user.profile_updated", Some(&user_id), data).await?;
    Store::bump_revision(txn).await?;
    Ok(updated)
}

/// An identity provider that speaks for the address's domain claimed an account whose address
/// was never verified. Whoever created it never proved the address, so nothing they set up may
/// survive: the address becomes verified, the password is removed and every session ends.
pub(crate) async fn claim_unverified<C: ConnectionTrait>(
    txn: &C,
    user_id: &str,
    email: Option<&str>,
    now: i64,
) -> Result<()> {
    if let Some(email) = email {
        mark_email_verified(txn, user_id, email, now).await?;
    }
    let removed = password_credential::Entity::delete_many()
        .filter(password_credential::Column::UserId.eq(user_id))
        .exec(txn)
        .await?
        .rows_affected;
    let ended = crate::identity::sessions::revoke_user_sessions(
        txn,
        user_id,
        "claimed_by_identity_provider",
        now,
    )
    .await?;
    let data = json!({ "password_removed": removed > 0, "sessions_ended": ended });
    audit::record(
        txn,
        now,
        &Actor::system(),
        "user.claimed_by_identity_provider",
        Some(user_id),
        data,
    )
    .await?;
    Store::bump_revision(txn).await
}
