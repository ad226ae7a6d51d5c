//! Who is behind a session: the session, its user, and the organisation the session has active
//! with the user's membership in it. Session tokens, OAuth grants and JWT templates all read it
//! through [`load`], so they agree on what an active organisation is.

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::infra::{
    entity::{membership, organisation, session, user},
    error::Result,
};

/// The session's active organisation, as seen by its user.
#[derive(Debug, Clone)]
pub struct ActiveOrg {
    pub org: organisation::Model,
    /// The user's role in it.
    pub role: String,
}

#[derive(Debug, Clone)]
pub struct SessionSubject {
    pub session: session::Model,
    pub user: user::Model,
    /// None when no organisation is active, or the user is no longer an active member of it.
    pub org: Option<ActiveOrg>,
}

/// Loads the user and active organisation behind a stored session; None when the user is gone.
pub async fn load<C: ConnectionTrait>(
    conn: &C,
    session: session::Model,
) -> Result<Option<SessionSubject>> {
    let Some(user) = user::Entity::find_by_id(session.user_id.clone()).one(conn).await? else {
        return Ok(None);
    };
    let org = match &session.active_org_id {
        None => None,
        Some(org_id) => active_org(conn, org_id, &user.id).await?,
    };
    Ok(Some(SessionSubject { session, user, org }))
}

/// [`load`] by session id; None when the session or its user is gone.
pub async fn load_by_id<C: ConnectionTrait>(
    conn: &C,
    session_id: &str,
) -> Result<Option<SessionSubject>> {
    match session::Entity::find_by_id(session_id.to_owned()).one(conn).await? {
        Some(s) => load(conn, s).await,
        None => Ok(None),
    }
}

async fn active_org<C: ConnectionTrait>(
    conn: &C,
    org_id: &str,
    user_id: &str,
) -> Result<Option<ActiveOrg>> {
    // A suspended membership grants nothing: no organisation in tokens or claims.
    let Some(m) = find_active_membership(conn, org_id, user_id).await? else {
        return Ok(None);
    };
    let org = organisation::Entity::find_by_id(org_id.to_owned()).one(conn).await?;
    Ok(org.map(|org| ActiveOrg { org, role: m.role }))
}

/// The membership of `user_id` in `org_id` if it grants anything: a membership that
/// deprovisioning suspended reads as none, for authorisation and claims alike.
pub(crate) async fn find_active_membership<C: ConnectionTrait>(
    conn: &C,
    org_id: &str,
    user_id: &str,
) -> Result<Option<membership::Model>> {
    Ok(membership::Entity::find()
        .filter(membership::Column::OrgId.eq(org_id))
        .filter(membership::Column::UserId.eq(user_id))
        .filter(membership::Column::Status.eq(membership::STATUS_ACTIVE))
        .one(conn)
        .await?)
}
