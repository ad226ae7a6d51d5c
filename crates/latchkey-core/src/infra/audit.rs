//! Audit events: who did what to which object, recorded in the same transaction as the change.

use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, QueryOrder, QuerySelect};
use serde::Serialize;
use serde_json::Value;

use crate::{Result, infra::entity::audit_event, infra::ids};

/// Who acts. Services decide what an actor may do from this, so the CLI, the pages and the APIs
/// get the same answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A signed-in user, by id.
    User(String),
    /// The operator at the server's command line: may do anything.
    Cli,
    /// Latchkey itself (workers, start-up, automatic enrollment).
    System,
    /// Someone not signed in (sign-in, sign-up and reset requests).
    Anonymous,
    /// A registered OAuth client acting for itself (a back end with a client_credentials
    /// token), by client id: it acts on no organisation.
    Client(String),
    /// An admin API key, by id, with the organisation it is limited to (None: the instance).
    ApiKey { id: String, org_id: Option<String> },
    /// A registered OAuth client whose client_credentials token carries the `admin:*` scope:
    /// on the admin API it acts on the whole instance, as an instance API key does.
    AdminClient(String),
}

/// Who performed an action and from where.
#[derive(Debug, Clone)]
pub struct Actor {
    pub principal: Principal,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// The request the action came from (its ID in the server's log), when known.
    pub request_id: Option<String>,
}

impl Actor {
    pub fn cli() -> Self {
        Self { principal: Principal::Cli, client_ip: None, user_agent: None, request_id: None }
    }

    pub fn system() -> Self {
        Self { principal: Principal::System, client_ip: None, user_agent: None, request_id: None }
    }

    pub fn user(id: &str, client_ip: Option<String>, user_agent: Option<String>) -> Self {
        Self { principal: Principal::User(id.to_owned()), client_ip, user_agent, request_id: None }
    }

    /// A request's actor: the signed-in user if there is one, else anonymous.
    pub fn from_client(client: &ClientInfo, user_id: Option<&str>) -> Self {
        let principal = match user_id {
            Some(id) => Principal::User(id.to_owned()),
            None => Principal::Anonymous,
        };
        Self {
            principal,
            client_ip: client.ip.clone(),
            user_agent: client.user_agent.clone(),
            request_id: None,
        }
    }

    /// A back end acting with its client_credentials token.
    pub fn client(client_id: &str, client_ip: Option<String>, user_agent: Option<String>) -> Self {
        Self {
            principal: Principal::Client(client_id.to_owned()),
            client_ip,
            user_agent,
            request_id: None,
        }
    }

    /// The same actor, acting in the request `id`.
    pub fn in_request(mut self, id: Option<String>) -> Self {
        self.request_id = id;
        self
    }

    /// As recorded in audit events: `user:<id>`, `client:<id>`, `api_key:<id>`, `cli`,
    /// `system` or `anonymous`.
    pub fn name(&self) -> String {
        match &self.principal {
            Principal::User(id) => format!("user:{id}"),
            Principal::Client(id) | Principal::AdminClient(id) => format!("client:{id}"),
            Principal::ApiKey { id, .. } => format!("api_key:{id}"),
            Principal::Cli => "cli".into(),
            Principal::System => "system".into(),
            Principal::Anonymous => "anonymous".into(),
        }
    }

    /// The acting user, when a user acts.
    pub fn user_id(&self) -> Option<&str> {
        match &self.principal {
            Principal::User(id) => Some(id),
            Principal::Cli
            | Principal::System
            | Principal::Anonymous
            | Principal::Client(_)
            | Principal::AdminClient(_)
            | Principal::ApiKey { .. } => None,
        }
    }
}

/// Where a request comes from, for sessions, throttling and the audit log.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl ClientInfo {
    /// The actor of a request from here: the signed-in user if there is one, else anonymous.
    pub fn actor_for(&self, user_id: Option<&str>) -> Actor {
        Actor::from_client(self, user_id)
    }
}

pub async fn record<C: ConnectionTrait>(
    conn: &C,
    now: i64,
    actor: &Actor,
    action: &str,
    target_id: Option<&str>,
    data: Value,
) -> Result<()> {
    let mut batch = Batch::default();
    batch.add(now, actor, action, target_id, data);
    batch.write(conn).await
}

/// Events of one transaction written together, in the order added: one statement instead of
/// one per event (a sign-in writes two, and each statement is a round trip to the store).
#[derive(Default)]
pub struct Batch {
    rows: Vec<audit_event::ActiveModel>,
    /// (actor, action, target) of each row, for the log line once written.
    logged: Vec<(String, String, Option<String>)>,
}

impl Batch {
    pub fn add(
        &mut self,
        now: i64,
        actor: &Actor,
        action: &str,
        target_id: Option<&str>,
        data: Value,
    ) {
        self.logged.push((actor.name(), action.to_owned(), target_id.map(str::to_owned)));
        let org_id = concerned_org(target_id, &data);
        self.rows.push(audit_event::ActiveModel {
            id: Set(ids::new_id(ids::AUDIT_EVENT)),
            occurred_at: Set(now),
            actor: Set(actor.name()),
            action: Set(action.to_owned()),
            target_id: Set(target_id.map(str::to_owned)),
            client_ip: Set(actor.client_ip.clone()),
            user_agent: Set(actor.user_agent.clone()),
            data: Set(data.to_string()),
            request_id: Set(actor.request_id.clone()),
            org_id: Set(org_id),
        });
    }

    pub async fn write<C: ConnectionTrait>(mut self, conn: &C) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        for row in &mut self.rows {
            attribute_connection(conn, row).await?;
        }
        audit_event::Entity::insert_many(self.rows).exec_without_returning(conn).await?;
        for (actor, action, target) in self.logged {
            tracing::info!(actor, action, target = target.as_deref().unwrap_or("-"), "audit");
        }
        Ok(())
    }
}

/// The organisation an event concerns: its target when that is an organisation, else the
/// `org_id` its data names (connections, API keys, memberships). Derived here, in the one
/// place every event is written, so no caller can forget it.
pub fn concerned_org(target_id: Option<&str>, data: &Value) -> Option<String> {
    let is_org = |id: &str| ids::is_valid(ids::ORGANISATION, id);
    if let Some(target) = target_id.filter(|t| is_org(t)) {
        return Some(target.to_owned());
    }
    data.get("org_id").and_then(Value::as_str).filter(|o| is_org(o)).map(str::to_owned)
}

/// An event about an enterprise connection concerns the connection's organisation, whatever
/// the event's details say; looked up here so that no connection event escapes its
/// organisation's audit log.
async fn attribute_connection<C: ConnectionTrait>(
    conn: &C,
    row: &mut audit_event::ActiveModel,
) -> Result<()> {
    use crate::infra::entity::{easie_connection, saml_connection};
    let sea_orm::ActiveValue::Set(Some(target)) = &row.target_id else { return Ok(()) };
    let already = matches!(&row.org_id, sea_orm::ActiveValue::Set(Some(_)));
    if already || !ids::is_valid(ids::SAML_CONNECTION, target) {
        return Ok(());
    }
    let org = match saml_connection::Entity::find_by_id(target.clone()).one(conn).await? {
        Some(c) => Some(c.org_id),
        None => {
            easie_connection::Entity::find_by_id(target.clone()).one(conn).await?.map(|c| c.org_id)
        }
    };
    if let Some(org) = org {
        row.org_id = sea_orm::ActiveValue::Set(Some(org));
    }
    Ok(())
}

/// Most recent events first.
pub async fn recent<C: ConnectionTrait>(conn: &C, limit: u64) -> Result<Vec<AuditEvent>> {
    Ok(audit_event::Entity::find()
        .order_by_desc(audit_event::Column::OccurredAt)
        .order_by_desc(audit_event::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    pub id: String,
    pub occurred_at: i64,
    pub actor: String,
    pub action: String,
    pub target_id: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// The organisation the event concerns, if any.
    pub org_id: Option<String>,
    pub data: serde_json::Value,
}

impl From<crate::infra::entity::audit_event::Model> for AuditEvent {
    fn from(m: crate::infra::entity::audit_event::Model) -> Self {
        Self {
            data: serde_json::from_str(&m.data).unwrap_or_default(),
            id: m.id,
            occurred_at: m.occurred_at,
            actor: m.actor,
            action: m.action,
            target_id: m.target_id,
            client_ip: m.client_ip,
            user_agent: m.user_agent,
            request_id: m.request_id,
            org_id: m.org_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::concerned_org;

    const ORG: &str = "org_01JEXAMPLE0000000000000000";

    #[test]
    fn an_event_concerns_its_target_organisation_or_the_one_its_data_names() {
        let org = crate::infra::ids::new_id(crate::infra::ids::ORGANISATION);
        assert_eq!(concerned_org(Some(&org), &json!({})), Some(org.clone()));
        assert_eq!(concerned_org(Some("usr_x"), &json!({ "org_id": org })), Some(org.clone()));
        assert_eq!(concerned_org(None, &json!({ "org_id": org })), Some(org));
    }

    #[test]
    fn anything_that_is_not_an_organisation_id_attributes_nothing() {
        assert_eq!(concerned_org(None, &json!({})), None);
        assert_eq!(concerned_org(Some("usr_01"), &json!({ "org_id": null })), None);
        assert_eq!(concerned_org(None, &json!({ "org_id": "org_" })), None);
        assert_eq!(concerned_org(None, &json!({ "org_id": 7 })), None);
        assert_eq!(concerned_org(None, &json!({ "org_id": format!("{ORG}'--") })), None);
    }
}
