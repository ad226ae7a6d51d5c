//! Who is signed in, as `GET /v1/me` shows it: the account, its memberships and how this
//! session signed in.

use serde::Serialize;

use super::SignInService;
use crate::{
    Error, Result,
    identity::{method::AuthMethod, session_tokens::SessionContext, subject},
    tenancy::orgs,
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
        let s = subject::load_by_id(db, &ctx.session_id)
            .await?
            .ok_or(Error::Unauthenticated("the session or its account is gone"))?;
        let memberships = orgs::user_organisations(db, &s.user.id)
            .await?
            .into_iter()
            .map(|o| MeMembership {
                org_id: o.organisation.id,
                org_name: o.organisation.name,
                role: o.role,
            })
            .collect();
        Ok(Me {
            authentication: SessionMethod::from(&AuthMethod::from_stored(&s.session.auth_method)),
            session_id: s.session.id,
            active_org_id: ctx.org_id.clone(),
            id: s.user.id,
            email: s.user.primary_email,
            email_verified: s.user.email_verified,
            name: s.user.name,
            given_name: s.user.given_name,
            family_name: s.user.family_name,
            memberships,
        })
    }
}
