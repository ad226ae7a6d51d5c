//! Organisations and memberships.
//!
//! Every write that depends on the set of memberships (last-admin rules, "already a member"
//! checks, invitations, join requests) first locks the organisation row with [`lock_org`], so
//! concurrent changes to one organisation are serialised on PostgreSQL (SQLite serialises all
//! writers anyway).

use std::collections::HashMap;

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use serde_json::json;

use crate::infra::inline_sqlite::constraint_violation;
use crate::{
    Error, Result,
    infra::audit::{self, Actor},
    infra::entity::{membership, organisation, session, user},
    infra::ids,
    infra::store::Store,
    tenancy::access::{self, Need},
    tenancy::model::{Member, Membership, Organisation, UserOrganisation},
};

pub(crate) use crate::tenancy::access::find_membership;
pub use crate::tenancy::access::{
    MEMBERSHIP_ACTIVE, MEMBERSHIP_SUSPENDED, ROLE_ADMIN, ROLE_MEMBER,
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

/// Loads the organisation row for update (`SELECT … FOR UPDATE` on PostgreSQL; SQLite ignores
/// the clause and serialises writers itself).
pub(crate) async fn lock_org<C: ConnectionTrait>(
    conn: &C,
    org_id: &str,
) -> Result<organisation::Model> {
    organisation::Entity::find_by_id(org_id.to_owned())
        .lock_exclusive()
        .one(conn)
        .await?
        .ok_or_else(|| Error::NotFound(format!("organisation {org_id}")))
}

/// Inserts a membership in the caller's transaction (the caller checked it does not exist).
pub(crate) async fn insert_membership<C: ConnectionTrait>(
    conn: &C,
    org_id: &str,
    user_id: &str,
    role: &str,
    now: i64,
) -> Result<membership::Model> {
    Ok(membership::ActiveModel {
        id: Set(ids::new_id(ids::MEMBERSHIP)),
        org_id: Set(org_id.to_owned()),
        user_id: Set(user_id.to_owned()),
        role: Set(role.to_owned()),
        status: Set(MEMBERSHIP_ACTIVE.to_owned()),
        created_at: Set(now),
    }
    .insert(conn)
    .await?)
}

/// Admins who can act: a suspended admin manages nothing, so it does not count.
async fn count_admins<C: ConnectionTrait>(conn: &C, org_id: &str) -> Result<u64> {
    Ok(membership::Entity::find()
        .filter(membership::Column::OrgId.eq(org_id))
        .filter(membership::Column::Role.eq(ROLE_ADMIN))
        .filter(membership::Column::Status.eq(MEMBERSHIP_ACTIVE))
        .count(conn)
        .await?)
}

/// Whether taking `m`'s admin role away would leave the organisation without an active admin.
async fn is_last_admin<C: ConnectionTrait>(conn: &C, m: &membership::Model) -> Result<bool> {
    Ok(m.role == ROLE_ADMIN
        && m.status == MEMBERSHIP_ACTIVE
        && count_admins(conn, &m.org_id).await? <= 1)
}

/// Emails of the organisation's admins, for notifications.
pub(crate) async fn admin_emails<C: ConnectionTrait>(
    conn: &C,
    org_id: &str,
) -> Result<Vec<String>> {
    let admin_ids: Vec<String> = membership::Entity::find()
        .filter(membership::Column::OrgId.eq(org_id))
        .filter(membership::Column::Role.eq(ROLE_ADMIN))
        .filter(membership::Column::Status.eq(MEMBERSHIP_ACTIVE))
        .all(conn)
        .await?
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    if admin_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(user::Entity::find()
        .filter(user::Column::Id.is_in(admin_ids))
        .all(conn)
        .await?
        .into_iter()
        .map(|u| u.primary_email)
        .collect())
}

fn slug_taken(e: sea_orm::DbErr, slug: &str) -> Error {
    match constraint_violation(&e) {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => {
            Error::Conflict(format!("an organisation with slug {slug} already exists"))
        }
        _ => e.into(),
    }
}

impl OrgService {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Creates an organisation without members (operators, the CLI).
    pub async fn create(&self, name: &str, slug: &str, actor: &Actor) -> Result<Organisation> {
        Ok(self.create_inner(name, slug, None, actor).await?.0)
    }

    /// Creates an organisation on behalf of a user, who becomes its first admin.
    pub async fn create_for_user(
        &self,
        name: &str,
        slug: &str,
        user_id: &str,
        actor: &Actor,
    ) -> Result<(Organisation, Membership)> {
        let (org, membership) = self.create_inner(name, slug, Some(user_id), actor).await?;
        let membership =
            membership.ok_or_else(|| Error::Internal("creator membership missing".into()))?;
        Ok((org, membership))
    }

    async fn create_inner(
        &self,
        name: &str,
        slug: &str,
        creator: Option<&str>,
        actor: &Actor,
    ) -> Result<(Organisation, Option<Membership>)> {
        validate_slug(slug)?;
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 256 {
            return Err(Error::invalid("name", "must be 1-256 characters"));
        }
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
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
        if let Some(user_id) = creator
            && user::Entity::find_by_id(user_id.to_owned()).one(&txn).await?.is_none()
        {
            return Err(Error::NotFound(format!("user {user_id}")));
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
        .await
        .map_err(|e| slug_taken(e, slug))?;
        audit::record(
            &txn,
            now,
            actor,
            "org.created",
            Some(&m.id),
            json!({ "slug": slug, "creator": creator }),
        )
        .await?;
        let membership = match creator {
            Some(user_id) => {
                let mem = insert_membership(&txn, &m.id, user_id, ROLE_ADMIN, now).await?;
                audit::record(
                    &txn,
                    now,
                    actor,
                    "org.membership_set",
                    Some(&m.id),
                    json!({ "user_id": user_id, "role": ROLE_ADMIN }),
                )
                .await?;
                Store::bump_revision(&txn).await?;
                Some(mem.into())
            }
            None => None,
        };
        txn.commit().await?;
        Ok((m.into(), membership))
    }

    pub async fn get(&self, id: &str) -> Result<Organisation> {
        organisation::Entity::find_by_id(id.to_owned())
            .one(self.store.db())
            .await?
            .map(Into::into)
            .ok_or_else(|| Error::NotFound(format!("organisation {id}")))
    }

    pub async fn get_by_slug(&self, slug: &str) -> Result<Organisation> {
        organisation::Entity::find()
            .filter(organisation::Column::Slug.eq(slug))
            .one(self.store.db())
            .await?
            .map(Into::into)
            .ok_or_else(|| Error::NotFound(format!("organisation {slug}")))
    }

    /// The organisations a user belongs to, with their role, oldest membership first.
    pub async fn list_for_user(&self, user_id: &str) -> Result<Vec<UserOrganisation>> {
        user_organisations(self.store.db(), user_id).await
    }

    /// The organisation's members with their email and name, oldest first.
    pub async fn members(&self, org_id: &str, actor: &Actor) -> Result<Vec<Member>> {
        access::authorize(self.store.db(), org_id, actor, Need::Member).await?;
        let db = self.store.db();
        let memberships = membership::Entity::find()
            .filter(membership::Column::OrgId.eq(org_id))
            .order_by_asc(membership::Column::CreatedAt)
            .order_by_asc(membership::Column::Id)
            .all(db)
            .await?;
        if memberships.is_empty() {
            return Ok(Vec::new());
        }
        let users: HashMap<String, user::Model> = user::Entity::find()
            .filter(user::Column::Id.is_in(memberships.iter().map(|m| m.user_id.clone())))
            .all(db)
            .await?
            .into_iter()
            .map(|u| (u.id.clone(), u))
            .collect();
        Ok(memberships
            .into_iter()
            .filter_map(|m| {
                let u = users.get(&m.user_id)?;
                Some(Member {
                    email: u.primary_email.clone(),
                    name: u.name.clone(),
                    membership: m.into(),
                })
            })
            .collect())
    }

    pub async fn membership(&self, org_id: &str, user_id: &str) -> Result<Option<Membership>> {
        Ok(find_membership(self.store.db(), org_id, user_id).await?.map(Into::into))
    }

    /// The organisation as the acting member sees it, with their role. An organisation they
    /// do not belong to reads as not found, so outsiders cannot even learn that it exists.
    pub async fn view(&self, org_id: &str, actor: &Actor) -> Result<UserOrganisation> {
        let m = access::authorize(self.store.db(), org_id, actor, Need::Member).await?;
        let organisation = self.get(org_id).await?;
        // The operator sees every organisation without being a member of it.
        let role = m.map_or_else(|| "operator".to_owned(), |m| m.role);
        Ok(UserOrganisation { organisation, role })
    }

    /// Adds a member, or changes the role of an existing one. Demoting the last admin is refused:
    /// an organisation with members always keeps someone who can manage it.
    pub async fn set_membership(
        &self,
        org_id: &str,
        user_id: &str,
        role: &str,
        actor: &Actor,
    ) -> Result<Membership> {
        let now = self.store.now();
        validate_role(role)?;
        let txn = self.store.begin_write().await?;
        access::authorize(&txn, org_id, actor, Need::Admin).await?;
        lock_org(&txn, org_id).await?;
        if user::Entity::find_by_id(user_id.to_owned()).one(&txn).await?.is_none() {
            return Err(Error::NotFound(format!("user {user_id}")));
        }
        let existing = find_membership(&txn, org_id, user_id).await?;
        let role_before = existing.as_ref().map(|m| m.role.clone());
        let m = match existing {
            Some(m) => {
                if role != ROLE_ADMIN && is_last_admin(&txn, &m).await? {
                    return Err(Error::Conflict(
                        "cannot demote the last admin of the organisation; make another member admin first"
                            .into(),
                    ));
                }
                let mut am: membership::ActiveModel = m.into();
                am.role = Set(role.to_owned());
                am.update(&txn).await?
            }
            None => insert_membership(&txn, org_id, user_id, role, now).await?,
        };
        audit::record(
            &txn,
            now,
            actor,
            "org.membership_set",
            Some(org_id),
            json!({ "user_id": user_id, "role": role, "role_before": role_before }),
        )
        .await?;
        // Roles are in session tokens, so cached sessions must be reloaded.
        Store::bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(m.into())
    }

    /// An admin removes a member. The last admin cannot be removed.
    pub async fn remove_member(&self, org_id: &str, user_id: &str, actor: &Actor) -> Result<()> {
        self.end_membership(org_id, user_id, "org.member_removed", actor).await
    }

    /// A member leaves. The last admin cannot leave (they may delete the organisation later, or
    /// hand over first).
    pub async fn leave(&self, org_id: &str, user_id: &str, actor: &Actor) -> Result<()> {
        self.end_membership(org_id, user_id, "org.member_left", actor).await
    }

    async fn end_membership(
        &self,
        org_id: &str,
        user_id: &str,
        action: &str,
        actor: &Actor,
    ) -> Result<()> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        lock_org(&txn, org_id).await?;
        // Leaving needs only the membership itself; removing someone else needs an admin.
        let need = if actor.user_id() == Some(user_id) { Need::Member } else { Need::Admin };
        access::authorize(&txn, org_id, actor, need).await?;
        let m = find_membership(&txn, org_id, user_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("membership of {user_id} in {org_id}")))?;
        if is_last_admin(&txn, &m).await? {
            return Err(Error::Conflict(
                "the last admin cannot leave or be removed; make another member admin first".into(),
            ));
        }
        membership::Entity::delete_by_id(m.id.clone()).exec(&txn).await?;
        // Sessions that had this organisation active fall back to none.
        session::Entity::update_many()
            .col_expr(session::Column::ActiveOrgId, Expr::value(Option::<String>::None))
            .filter(session::Column::UserId.eq(user_id))
            .filter(session::Column::ActiveOrgId.eq(org_id))
            .exec(&txn)
            .await?;
        audit::record(
            &txn,
            now,
            actor,
            action,
            Some(org_id),
            json!({ "user_id": user_id, "role": m.role }),
        )
        .await?;
        Store::bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(())
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

/// The organisations `user_id` belongs to, with their role in each, oldest membership first.
/// Suspended memberships grant nothing, so they are left out.
pub(crate) async fn user_organisations<C: ConnectionTrait>(
    conn: &C,
    user_id: &str,
) -> Result<Vec<UserOrganisation>> {
    let memberships = membership::Entity::find()
        .filter(membership::Column::UserId.eq(user_id))
        .filter(membership::Column::Status.eq(MEMBERSHIP_ACTIVE))
        .order_by_asc(membership::Column::CreatedAt)
        .all(conn)
        .await?;
    if memberships.is_empty() {
        return Ok(Vec::new());
    }
    let mut orgs: HashMap<String, organisation::Model> = organisation::Entity::find()
        .filter(organisation::Column::Id.is_in(memberships.iter().map(|m| m.org_id.clone())))
        .all(conn)
        .await?
        .into_iter()
        .map(|o| (o.id.clone(), o))
        .collect();
    Ok(memberships
        .into_iter()
        .filter_map(|m| {
            orgs.remove(&m.org_id)
                .map(|o| UserOrganisation { organisation: o.into(), role: m.role })
        })
        .collect())
}

/// Makes `user_id` a member of `org_id` with exactly `role`, as an enterprise connection that
/// maps the IdP's groups decides: joins, changes the role (either way) or reactivates a
/// suspended membership (a new valid sign-in through the connection), audited when it changes
/// anything.
pub(crate) async fn set_member_role<C: ConnectionTrait>(
    txn: &C,
    org_id: &str,
    user_id: &str,
    role: &str,
    now: i64,
) -> Result<()> {
    validate_role(role)?;
    let unchanged = |m: &membership::Model| m.role == role && m.status == MEMBERSHIP_ACTIVE;
    // Unchanged (most sign-ins): nothing to lock or write.
    if find_membership(txn, org_id, user_id).await?.is_some_and(|m| unchanged(&m)) {
        return Ok(());
    }
    lock_org(txn, org_id).await?;
    let before = match find_membership(txn, org_id, user_id).await? {
        Some(m) if unchanged(&m) => return Ok(()),
        Some(m) => {
            let previous = (m.role.clone(), m.status.clone());
            let mut am: membership::ActiveModel = m.into();
            am.role = Set(role.to_owned());
            am.status = Set(MEMBERSHIP_ACTIVE.to_owned());
            am.update(txn).await?;
            Some(previous)
        }
        None => {
            insert_membership(txn, org_id, user_id, role, now).await?;
            None
        }
    };
    let reactivated = before.as_ref().is_some_and(|(_, status)| status != MEMBERSHIP_ACTIVE);
    let data = json!({
        "user_id": user_id, "role": role, "before": before.as_ref().map(|(r, _)| r),
        "source": "connection", "reactivated": reactivated,
    });
    audit::record(txn, now, &Actor::system(), "org.membership_set", Some(org_id), data).await?;
    if reactivated {
        membership_reactivated(txn, org_id, user_id, now).await?;
    }
    Store::bump_revision(txn).await
}

/// Makes `user_id` a member with `role` unless they already are one (an existing member keeps
/// their role), in the caller's transaction: the membership an enterprise connection grants.
/// A suspended membership is made active again: the user has just signed in validly through
/// the organisation's connection.
pub(crate) async fn ensure_member<C: ConnectionTrait>(
    txn: &C,
    org_id: &str,
    user_id: &str,
    role: &str,
    now: i64,
) -> Result<()> {
    validate_role(role)?;
    // Already an active member (every later sign-in through a connection): nothing to lock or
    // write.
    if find_membership(txn, org_id, user_id).await?.is_some_and(|m| m.status == MEMBERSHIP_ACTIVE) {
        return Ok(());
    }
    lock_org(txn, org_id).await?;
    match find_membership(txn, org_id, user_id).await? {
        Some(m) if m.status == MEMBERSHIP_ACTIVE => return Ok(()),
        Some(m) => {
            let mut am: membership::ActiveModel = m.into();
            am.status = Set(MEMBERSHIP_ACTIVE.to_owned());
            am.update(txn).await?;
            membership_reactivated(txn, org_id, user_id, now).await?;
        }
        None => {
            insert_membership(txn, org_id, user_id, role, now).await?;
            let data = json!({ "user_id": user_id, "role": role, "source": "connection" });
            let actor = Actor::system();
            audit::record(txn, now, &actor, "org.membership_set", Some(org_id), data).await?;
        }
    }
    Store::bump_revision(txn).await
}

async fn membership_reactivated<C: ConnectionTrait>(
    txn: &C,
    org_id: &str,
    user_id: &str,
    now: i64,
) -> Result<()> {
    let data = json!({
        "user_id": user_id, "before": MEMBERSHIP_SUSPENDED, "after": MEMBERSHIP_ACTIVE,
        "source": "connection",
    });
    audit::record(txn, now, &Actor::system(), "org.membership_reactivated", Some(org_id), data)
        .await
}

/// Suspends the membership of `user_id` in `org_id` (deprovisioning: the upstream account was
/// suspended or deleted), in the caller's transaction. A suspended membership grants nothing
/// (no access, no organisation claims) until a new valid sign-in through the organisation's
/// connection reactivates it. Returns whether anything changed: false when there is no
/// membership or it is suspended already. The caller ends the user's sessions.
pub async fn suspend_member<C: ConnectionTrait>(
    conn: &C,
    org_id: &str,
    user_id: &str,
    now: i64,
) -> Result<bool> {
    // One conditional statement: of concurrent suspensions exactly one reports the change.
    let res = membership::Entity::update_many()
        .col_expr(membership::Column::Status, Expr::value(MEMBERSHIP_SUSPENDED))
        .filter(membership::Column::OrgId.eq(org_id))
        .filter(membership::Column::UserId.eq(user_id))
        .filter(membership::Column::Status.eq(MEMBERSHIP_ACTIVE))
        .exec(conn)
        .await?;
    if res.rows_affected == 0 {
        return Ok(false);
    }
    let data =
        json!({ "user_id": user_id, "before": MEMBERSHIP_ACTIVE, "after": MEMBERSHIP_SUSPENDED });
    audit::record(conn, now, &Actor::system(), "org.membership_suspended", Some(org_id), data)
        .await?;
    // Roles and the active organisation are in session tokens: cached sessions must reload.
    Store::bump_revision(conn).await?;
    Ok(true)
}
