//! Who may do what in an organisation. Every tenancy service checks here, inside the service,
//! so the JSON API, the pages, the CLI and the admin console to come cannot forget a check.

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

pub(crate) use crate::identity::subject::find_active_membership;
use crate::{
    Error, Result,
    infra::{
        audit::{Actor, Principal},
        entity::{membership, organisation, user},
    },
};

/// Full control of the organisation: members, invitations, domains.
pub const ROLE_ADMIN: &str = "admin";
/// The default role of people who join.
pub const ROLE_MEMBER: &str = "member";

/// A membership's status: `active`, or suspended by deprovisioning (grants nothing until a new
/// valid sign-in through the organisation's connection makes it active again).
pub const MEMBERSHIP_ACTIVE: &str = membership::STATUS_ACTIVE;
pub const MEMBERSHIP_SUSPENDED: &str = membership::STATUS_SUSPENDED;

/// The membership of `user_id` in `org_id`, whatever its status: the "already a member" checks
/// read this, so a suspended member is never added a second time.
pub(crate) async fn find_membership<C: ConnectionTrait>(
    conn: &C,
    org_id: &str,
    user_id: &str,
) -> Result<Option<membership::Model>> {
    Ok(membership::Entity::find()
        .filter(membership::Column::OrgId.eq(org_id))
        .filter(membership::Column::UserId.eq(user_id))
        .one(conn)
        .await?)
}

/// What an action on an organisation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Any member: reading the organisation and its members.
    Member,
    /// An admin: members, invitations, domains, join requests.
    Admin,
}

/// Checks that `actor` may act on `org_id` with `need`; returns the acting user's membership.
/// The operator (CLI), Latchkey itself, instance administrators and instance API keys may do
/// anything; an organisation's API key acts as an admin of that organisation only. A user who
/// is not a member, or a key of another organisation, gets [`Error::NotFound`], so outsiders
/// cannot even learn that the organisation exists; a member without the role gets
/// [`Error::Forbidden`]. A suspended member is an outsider.
pub(crate) async fn authorize<C: ConnectionTrait>(
    conn: &C,
    org_id: &str,
    actor: &Actor,
    need: Need,
) -> Result<Option<membership::Model>> {
    let not_found = || Error::NotFound(format!("organisation {org_id}"));
    let exists = async || -> Result<organisation::Model> {
        organisation::Entity::find_by_id(org_id.to_owned()).one(conn).await?.ok_or_else(not_found)
    };
    let user_id = match &actor.principal {
        Principal::Cli
        | Principal::System
        | Principal::AdminClient(_)
        | Principal::ApiKey { org_id: None, .. } => {
            exists().await?;
            return Ok(None);
        }
        Principal::ApiKey { org_id: Some(own), .. } if own == org_id => {
            exists().await?;
            return Ok(None);
        }
        Principal::ApiKey { .. } => return Err(not_found()),
        Principal::Anonymous | Principal::Client(_) => {
            return Err(Error::Unauthenticated("no signed-in user"));
        }
        Principal::User(id) => id,
    };
    let Some(m) = find_active_membership(conn, org_id, user_id).await? else {
        if is_instance_admin(conn, user_id).await? {
            exists().await?;
            return Ok(None);
        }
        return Err(not_found());
    };
    match need {
        Need::Admin if m.role != ROLE_ADMIN && !is_instance_admin(conn, user_id).await? => {
            Err(Error::Forbidden("only organisation admins may do this".into()))
        }
        Need::Member | Need::Admin => Ok(Some(m)),
    }
}

/// Whether `user_id` is an active instance administrator (`latchkey admin create`).
pub(crate) async fn is_instance_admin<C: ConnectionTrait>(conn: &C, user_id: &str) -> Result<bool> {
    Ok(user::Entity::find_by_id(user_id.to_owned()).one(conn).await?.is_some_and(|u| {
        u.is_admin && u.status == crate::identity::model::UserStatus::Active.as_str()
    }))
}

/// Whether `actor` acts for the whole instance: the operator, Latchkey itself, an instance API
/// key, a client with an `admin:*` token or an instance administrator.
pub(crate) async fn is_instance_actor<C: ConnectionTrait>(conn: &C, actor: &Actor) -> Result<bool> {
    match &actor.principal {
        Principal::Cli
        | Principal::System
        | Principal::AdminClient(_)
        | Principal::ApiKey { org_id: None, .. } => Ok(true),
        Principal::User(id) => is_instance_admin(conn, id).await,
        Principal::ApiKey { .. } | Principal::Anonymous | Principal::Client(_) => Ok(false),
    }
}
