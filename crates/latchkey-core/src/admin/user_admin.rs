//! Changing accounts as an administrator: profile fields and the verified mark, deactivation
//! and reactivation, deletion. Instance actors only (organisation admins manage memberships,
//! not the accounts themselves, which may belong to other organisations too). Each change is
//! one transaction with its audit event, which records the before and after of every field
//! that changed; a conditional change (`If-Match`) is checked inside that transaction, on the
//! row as it is locked, so two writers cannot both pass the same precondition.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde_json::{Map, Value, json};

use crate::{
    Error, Result,
    identity::{
        model::{User, UserStatus},
        sessions,
        users::UserService,
    },
    infra::{
        audit::{self, Actor},
        entity::{
            email_verification, external_identity, membership, oauth_code, oauth_consent,
            oauth_refresh_token, org_invitation, org_join_request, password_credential,
            password_reset, session, upstream_grant, user, user_email,
        },
        store::Store,
    },
    tenancy::access,
};

const MAX_NAME_CHARS: usize = 256;

/// Fields to change; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub name: Option<Option<String>>,
    pub given_name: Option<Option<String>>,
    pub family_name: Option<Option<String>>,
    /// Marks the primary address verified (or not).
    pub email_verified: Option<bool>,
    /// A new primary address. The old one is released (it no longer signs in); the new one is
    /// unverified unless `email_verified` says otherwise or it was already the user's, verified.
    pub email: Option<String>,
}

#[derive(Clone)]
pub struct UserAdmin {
    store: Store,
    users: UserService,
}

impl UserAdmin {
    pub fn new(store: Store, users: UserService) -> Self {
        Self { store, users }
    }

    async fn require_instance(&self, actor: &Actor) -> Result<()> {
        if access::is_instance_actor(self.store.db(), actor).await? {
            return Ok(());
        }
        Err(Error::Forbidden("only instance administrators change accounts".into()))
    }

    /// Applies `patch` if `precondition` holds for the user as stored when the change begins
    /// (else [`Error::PreconditionFailed`]). Nothing to change writes nothing.
    pub async fn update(
        &self,
        actor: &Actor,
        id: &str,
        patch: &UserPatch,
        precondition: impl Fn(&User) -> bool + Send,
    ) -> Result<User> {
        self.require_instance(actor).await?;
        let patch = normalised(patch)?;
        let txn = self.store.begin_write().await?;
        let existing = user::Entity::find_by_id(id.to_owned())
            .lock_exclusive()
            .one(&txn)
            .await?
            .ok_or_else(|| Error::NotFound(format!("user {id}")))?;
        if !precondition(&User::from(existing.clone())) {
            return Err(Error::PreconditionFailed(
                "the user changed since it was read; read it again".into(),
            ));
        }
        let mut changes = Map::new();
        let mut am: user::ActiveModel = existing.clone().into();
        let mut change = |field: &str, before: Value, after: Value| {
            if before != after {
                changes.insert(field.to_owned(), json!({ "before": before, "after": after }));
            }
        };
        if let Some(v) = &patch.name {
            change("name", json!(existing.name), json!(v));
            am.name = Set(v.clone());
        }
        if let Some(v) = &patch.given_name {
            change("given_name", json!(existing.given_name), json!(v));
            am.given_name = Set(v.clone());
        }
        if let Some(v) = &patch.family_name {
            change("family_name", json!(existing.family_name), json!(v));
            am.family_name = Set(v.clone());
        }
        if let Some(e) = patch.email.as_ref().filter(|e| **e != existing.primary_email) {
            let now = self.store.now();
            let verified = replace_address(&txn, id, &existing.primary_email, e, now).await?;
            change("primary_email", json!(existing.primary_email), json!(e));
            am.primary_email = Set(e.clone());
            if patch.email_verified.is_none() {
                change("email_verified", json!(existing.email_verified), json!(verified));
                am.email_verified = Set(verified);
            }
        }
        if let Some(v) = patch.email_verified {
            change("email_verified", json!(existing.email_verified), json!(v));
            am.email_verified = Set(v);
        }
        if changes.is_empty() {
            return Ok(existing.into());
        }
        let now = self.store.now();
        am.updated_at = Set(now);
        let updated = am.update(&txn).await?;
        if let Some(v) = patch.email_verified {
            user_email::Entity::update_many()
                .col_expr(user_email::Column::Verified, sea_orm::sea_query::Expr::value(v))
                .col_expr(
                    user_email::Column::VerifiedAt,
                    sea_orm::sea_query::Expr::value(v.then_some(now)),
                )
                .filter(user_email::Column::UserId.eq(id))
                .filter(user_email::Column::Email.eq(updated.primary_email.as_str()))
                .exec(&txn)
                .await?;
        }
        let data = json!({ "changes": changes });
        audit::record(&txn, now, actor, "user.updated", Some(id), data).await?;
        // Profile claims are cached with the grants they appear in.
        Store::bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(updated.into())
    }

    /// Deletes an account and everything that is only its own, in one transaction: its
    /// sessions end as deactivation ends them (with back-channel logout to the applications
    /// that got tokens for them), then its grants and refresh tokens, consents, memberships,
    /// join requests, external identities, upstream grants, addresses, password and the user
    /// row go. Audit events stay (they are the record). The last active instance administrator
    /// cannot be deleted ([`Error::Conflict`]). Audited `user.deleted` with what it was.
    pub async fn delete(&self, actor: &Actor, id: &str) -> Result<()> {
        self.require_instance(actor).await?;
        let txn = self.store.begin_write().await?;
        // Every administrator row is locked first (always in the same order), so two deletions
        // of the last two administrators cannot both see the other one still there.
        let admins = user::Entity::find()
            .filter(user::Column::IsAdmin.eq(true))
            .order_by_asc(user::Column::Id)
            .lock_exclusive()
            .all(&txn)
            .await?;
        let existing = user::Entity::find_by_id(id.to_owned())
            .lock_exclusive()
            .one(&txn)
            .await?
            .ok_or_else(|| Error::NotFound(format!("user {id}")))?;
        let other_admin =
            admins.iter().any(|a| a.id != id && a.status == UserStatus::Active.as_str());
        if existing.is_admin && !other_admin {
            return Err(Error::Conflict(format!(
                "{} is the last instance administrator: make another one first \
                 (latchkey admin create), then delete this one",
                existing.primary_email
            )));
        }
        let now = self.store.now();
        let ending = sessions::active_session_ids(
            &txn,
            sea_orm::Condition::all().add(session::Column::UserId.eq(id)),
        )
        .await?;
        // The back-channel fan-out reads the codes deleted below, so the notifications are
        // queued now, in this transaction; then the sessions end on the shared path.
        let notified = crate::oauth::backchannel::queue_logouts_now(&txn, &ending, now).await?;
        let ended = sessions::revoke_user_sessions(&txn, id, "user_deleted", now).await?;
        let orgs = delete_owned_rows(&txn, id).await?;
        user::Entity::delete_by_id(id.to_owned()).exec(&txn).await?;
        let data = json!({
            "before": {
                "email": existing.primary_email,
                "name": existing.name,
                "status": existing.status,
                "is_admin": existing.is_admin,
            },
            "sessions_ended": ended,
            "logout_notifications": notified,
            "memberships": orgs,
        });
        audit::record(&txn, now, actor, "user.deleted", Some(id), data).await?;
        Store::bump_revision(&txn).await?;
        txn.commit().await?;
        self.store.notify_jobs();
        Ok(())
    }

    /// Deactivates the account (every session revoked at once) or reactivates it.
    pub async fn set_active(
        &self,
        actor: &Actor,
        id: &str,
        active: bool,
        reason: Option<String>,
    ) -> Result<User> {
        self.require_instance(actor).await?;
        if active {
            self.users.reactivate(id, actor).await
        } else {
            self.users.deactivate(id, reason, actor).await
        }
    }
}

/// Deletes the rows that belong to user `id` alone (most would also go by cascade; deleting
/// them here does not depend on the store enforcing foreign keys); invitations they sent stay,
/// without the inviter. Returns the organisations they were a member of.
async fn delete_owned_rows(txn: &DatabaseTransaction, id: &str) -> Result<Vec<String>> {
    let orgs: Vec<String> = membership::Entity::find()
        .select_only()
        .column(membership::Column::OrgId)
        .filter(membership::Column::UserId.eq(id))
        .into_tuple()
        .all(txn)
        .await?;
    org_invitation::Entity::update_many()
        .col_expr(
            org_invitation::Column::InviterUserId,
            sea_orm::sea_query::Expr::value(None::<String>),
        )
        .filter(org_invitation::Column::InviterUserId.eq(id))
        .exec(txn)
        .await?;
    macro_rules! delete_of_user {
        ($($entity:ident),+ $(,)?) => {$(
            $entity::Entity::delete_many()
                .filter($entity::Column::UserId.eq(id))
                .exec(txn)
                .await?;
        )+};
    }
    delete_of_user!(
        oauth_refresh_token,
        oauth_code,
        oauth_consent,
        upstream_grant,
        external_identity,
        membership,
        org_join_request,
        email_verification,
        password_reset,
        password_credential,
        user_email,
        session,
    );
    Ok(orgs)
}

/// Trims names (empty means none) and bounds their length.
/// Makes `new` the user's address instead of `old`: refused (409) when another account holds
/// it; the user's own row for it is kept (with its verification), else one is added unverified.
/// Returns whether the new address is verified.
async fn replace_address<C: sea_orm::ConnectionTrait>(
    conn: &C,
    user_id: &str,
    old: &str,
    new: &str,
    now: i64,
) -> Result<bool> {
    let holder =
        user_email::Entity::find().filter(user_email::Column::Email.eq(new)).one(conn).await?;
    let other_primary =
        user::Entity::find().filter(user::Column::PrimaryEmail.eq(new)).one(conn).await?;
    if holder.as_ref().is_some_and(|h| h.user_id != user_id) || other_primary.is_some() {
        return Err(Error::Conflict(format!("{new} belongs to another account")));
    }
    user_email::Entity::delete_many()
        .filter(user_email::Column::UserId.eq(user_id))
        .filter(user_email::Column::Email.eq(old))
        .exec(conn)
        .await?;
    if let Some(own) = holder {
        return Ok(own.verified);
    }
    user_email::ActiveModel {
        id: Set(crate::infra::ids::new_id(crate::infra::ids::USER_EMAIL)),
        user_id: Set(user_id.to_owned()),
        email: Set(new.to_owned()),
        verified: Set(false),
        created_at: Set(now),
        verified_at: Set(None),
    }
    .insert(conn)
    .await?;
    Ok(false)
}

fn normalised(patch: &UserPatch) -> Result<UserPatch> {
    let name =
        |field: &'static str, v: &Option<Option<String>>| -> Result<Option<Option<String>>> {
            let Some(v) = v else { return Ok(None) };
            let v = v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
            if v.as_ref().is_some_and(|s| s.chars().count() > MAX_NAME_CHARS) {
                return Err(Error::invalid(field, "must be at most 256 characters"));
            }
            Ok(Some(v))
        };
    Ok(UserPatch {
        name: name("name", &patch.name)?,
        given_name: name("given_name", &patch.given_name)?,
        family_name: name("family_name", &patch.family_name)?,
        email_verified: patch.email_verified,
        email: patch.email.as_deref().map(crate::infra::email::normalize_email).transpose()?,
    })
}
