//! Who is signed in, as `GET /v1/me` shows it: the account, its memberships and how this
//! session signed in.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::Serialize;

use super::SignInService;
use crate::{
    Error, Result,
    identity::{method::AuthMethod, session_tokens::SessionContext},
    infra::entity::{membership, organisation, session, user},
};

#[derive(Debug, Clone, Serialize)]
pub struct MeMembership {
    pub org_id: String,
    pub org_name: String,
    pub role: String,
}

/// How the session signed in: `{"method": "saml", "connection_id": …}` and the like.
#[derive(Debug, Clone, Serialize)]
pub struct SessionMethod {
    pub method: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    pub amr: Vec<String>,
}

impl From<&AuthMethod> for SessionMethod {
    fn from(m: &AuthMethod) -> Self {
        let (method, connection_id, upstream) = match m {
            AuthMethod::Password => ("password", None, None),
            AuthMethod::Saml { connection_id } => ("saml", Some(connection_id.clone()), None),
            AuthMethod::UpstreamOidc { upstream, connection_id } => {
                ("oidc", connection_id.clone(), Some(upstream.as_str().to_owned()))
            }
            AuthMethod::Operator => ("operator", None, None),
        };
        Self { method, connection_id, upstream, amr: m.amr() }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Me {
    pub id: String,
    pub email: String,
    pub email_verified: bool,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub memberships: Vec<MeMembership>,
    pub session_id: String,
    pub active_org_id: Option<String>,
    /// How this session signed in (flattened: `method`, `connection_id`, …).
    #[serde(flatten)]
    pub authentication: SessionMethod,
}

impl SignInService {
    /// The signed-in user of an authenticated session.
    pub async fn me(&self, ctx: &SessionContext) -> Result<Me> {
        let db = self.store.db();
        let account = user::Entity::find_by_id(ctx.user_id.clone())
            .one(db)
            .await?
            .ok_or(Error::Unauthenticated("the account is gone"))?;
        let s = session::Entity::find_by_id(ctx.session_id.clone())
            .one(db)
            .await?
            .ok_or(Error::Unauthenticated("the session is gone"))?;
        let rows = membership::Entity::find()
            .filter(membership::Column::UserId.eq(ctx.user_id.clone()))
            .order_by_asc(membership::Column::CreatedAt)
            .all(db)
            .await?;
        let orgs = organisation::Entity::find()
            .filter(organisation::Column::Id.is_in(rows.iter().map(|m| m.org_id.clone())))
            .all(db)
            .await?;
        let memberships = rows
            .into_iter()
            .map(|m| MeMembership {
                org_name: orgs
                    .iter()
                    .find(|o| o.id == m.org_id)
                    .map(|o| o.name.clone())
                    .unwrap_or_default(),
                org_id: m.org_id,
                role: m.role,
            })
            .collect();
        Ok(Me {
            id: account.id,
            email: account.primary_email,
            email_verified: account.email_verified,
            name: account.name,
            given_name: account.given_name,
            family_name: account.family_name,
            memberships,
            session_id: s.id,
            active_org_id: ctx.org_id.clone(),
            authentication: SessionMethod::from(&AuthMethod::from_stored(&s.auth_method)),
        })
    }
}
