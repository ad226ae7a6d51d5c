//! Organisations and memberships.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};
use serde_json::json;

use crate::{
    Error, Result,
    audit::{self, Actor},
    entity::{membership, organisation},
    ids,
    model::{Membership, Organisation},
    now_unix,
    store::Store,
};

#[derive(Clone)]
pub struct OrgService {
    store: Store,
}

/// Slugs are lower-case ASCII letters, digits and single hyphens: they appear in URLs and tokens.
pub fn validate_slug(slug: &str) -> Result<()> {
    let ok = (2..=64).contains(&slug.len())
        && slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-')
        && !slug.contains("--");
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("slug", "use 2-64 lower-case letters, digits and single hyphens"))
    }
}

pub fn validate_role(role: &str) -> Result<()> {
    let ok = (1..=64).contains(&role.len())
        && role
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b':');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("role", "use lower-case letters, digits, `_` and `:`"))
    }
}

impl OrgService {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    pub async fn create(&self, name: &str, slug: &str, actor: &Actor) -> Result<Organisation> {
        validate_slug(slug)?;
        let name = name.trim();
        if name.is_empty() || name.len() > 256 {
            return Err(Error::invalid("name", "must be 1-256 characters"));
        }
        let now = now_unix();
        let txn = self.store.db().begin().await?;
        if organisation::Entity::find()
            .filter(organisation::Column::Slug.eq(slug))
            .one(&txn)
            .await?
            .is_some()
        {
            return Err(Error::Conflict(format!(
                "an organisation with slug {slug} already exists"
            )));
        }
        let m = organisation::ActiveModel {
            id: Set(ids::new_id(ids::ORGANISATION)),
            name: Set(name.to_owned()),
            slug: Set(slug.to_owned()),
            public_metadata: Set("{}".into()),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await?;
        audit::record(&txn, actor, "org.created", Some(&m.id), json!({ "slug": slug })).await?;
        txn.commit().await?;
        Ok(m.into())
    }

    pub async fn get(&self, id: &str) -> Result<Organisation> {
        organisation::Entity::find_by_id(id.to_owned())
            .one(self.store.db())
            .await?
            .map(Into::into)
            .ok_or_else(|| Error::NotFound(format!("organisation {id}")))
    }

    /// Adds a member, or changes the role of an existing one.
    pub async fn set_membership(
        &self,
        org_id: &str,
        user_id: &str,
        role: &str,
        actor: &Actor,
    ) -> Result<Membership> {
        validate_role(role)?;
        let txn = self.store.db().begin().await?;
        let existing = membership::Entity::find()
            .filter(membership::Column::OrgId.eq(org_id))
            .filter(membership::Column::UserId.eq(user_id))
            .one(&txn)
            .await?;
        let m = match existing {
            Some(m) => {
                let mut am: membership::ActiveModel = m.into();
                am.role = Set(role.to_owned());
                am.update(&txn).await?
            }
            None => {
                membership::ActiveModel {
                    id: Set(ids::new_id(ids::MEMBERSHIP)),
                    org_id: Set(org_id.to_owned()),
                    user_id: Set(user_id.to_owned()),
                    role: Set(role.to_owned()),
                    created_at: Set(now_unix()),
                }
                .insert(&txn)
                .await?
            }
        };
        audit::record(
            &txn,
            actor,
            "org.membership_set",
            Some(org_id),
            json!({ "user_id": user_id, "role": role }),
        )
        .await?;
        // Roles are in session tokens, so cached sessions must be reloaded.
        crate::store::Store::bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(m.into())
    }

    pub async fn memberships_of_user(&self, user_id: &str) -> Result<Vec<Membership>> {
        Ok(membership::Entity::find()
            .filter(membership::Column::UserId.eq(user_id))
            .order_by_asc(membership::Column::CreatedAt)
            .all(self.store.db())
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }
}
