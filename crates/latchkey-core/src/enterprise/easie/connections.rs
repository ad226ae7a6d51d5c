//! EASIE enrollments: which domain goes to which provider (and, for Microsoft, which pinned
//! tenant). A domain is enrolled at most once on the instance (a unique index decides races).

use latchkey_easie::{Domain, Enrollment, Provider, TenantId};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};

use crate::{Error, Result, infra::entity::easie_connection};

/// Options of an EASIE connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EasieOptions {
    /// Addresses on the domain that may still sign in with a password (break-glass admins);
    /// every use is audited.
    pub bypass: Vec<String>,
}

/// An EASIE connection as the CLI and the console show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EasieConnection {
    pub id: String,
    pub kind: &'static str,
    pub org_id: String,
    pub provider: Provider,
    pub domain: String,
    pub tenant_id: Option<String>,
    pub enabled: bool,
    pub options: EasieOptions,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<easie_connection::Model> for EasieConnection {
    type Error = Error;

    fn try_from(m: easie_connection::Model) -> Result<Self> {
        let provider = Provider::parse(&m.provider)
            .map_err(|_| Error::Internal(format!("connection {}: unknown provider", m.id)))?;
        let options = serde_json::from_str(&m.options)?;
        Ok(Self {
            id: m.id,
            kind: "easie",
            org_id: m.org_id,
            provider,
            domain: m.domain,
            tenant_id: m.tenant_id,
            enabled: m.enabled,
            options,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

impl EasieConnection {
    /// The enrollment the sign-in rules check claims against. A stored domain or tenant that no
    /// longer parses is a fault, never a reason to skip the checks.
    pub fn enrollment(&self) -> Result<Enrollment> {
        let bad = |what: &str| Error::Internal(format!("connection {}: stored {what}", self.id));
        let tenant = match &self.tenant_id {
            Some(t) => Some(TenantId::parse(t).map_err(|_| bad("tenant id"))?),
            None => None,
        };
        Ok(Enrollment {
            connection_id: self.id.clone(),
            domain: Domain::parse(&self.domain).map_err(|_| bad("domain"))?,
            provider: self.provider,
            tenant,
        })
    }
}

/// The connection with this ID, enabled or not.
pub async fn find<C: ConnectionTrait>(conn: &C, id: &str) -> Result<Option<EasieConnection>> {
    easie_connection::Entity::find_by_id(id.to_owned())
        .one(conn)
        .await?
        .map(EasieConnection::try_from)
        .transpose()
}

/// The enabled connection that enrolled `domain` (normalised), if any.
pub async fn enabled_for_domain<C: ConnectionTrait>(
    conn: &C,
    domain: &str,
) -> Result<Option<EasieConnection>> {
    easie_connection::Entity::find()
        .filter(easie_connection::Column::Domain.eq(domain))
        .filter(easie_connection::Column::Enabled.eq(true))
        .one(conn)
        .await?
        .map(EasieConnection::try_from)
        .transpose()
}
