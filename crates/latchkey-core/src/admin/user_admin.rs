//! Changing accounts as an administrator: profile fields and the verified mark, deactivation
//! and reactivation. Instance actors only (organisation admins manage memberships, not the
//! accounts themselves, which may belong to other organisations too). Each change is one
//! transaction with its audit event, which records the before and after of every field that
//! changed; a conditional change (`If-Match`) is checked inside that transaction, on the row as
//! it is locked, so two writers cannot both pass the same precondition.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QuerySelect,
};
use serde_json::{Map, Value, json};

use crate::{
    Error, Result,
    identity::{model::User, users::UserService},
    infra::{
        audit::{self, Actor},
        entity::{user, user_email},
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

/// Trims names (empty means none) and bounds their length.
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
    })
}
