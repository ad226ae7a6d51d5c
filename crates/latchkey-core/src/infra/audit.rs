//! Audit events: who did what to which object, recorded in the same transaction as the change.

use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, QueryOrder, QuerySelect};
use serde::Serialize;
use serde_json::Value;

use crate::{Result, infra::entity::audit_event, infra::ids};

/// Who performed an action and from where.
#[derive(Debug, Clone)]
pub struct Actor {
    /// `user:<id>`, `cli`, or `system`.
    pub name: String,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Actor {
    pub fn cli() -> Self {
        Self { name: "cli".into(), client_ip: None, user_agent: None }
    }

    pub fn system() -> Self {
        Self { name: "system".into(), client_ip: None, user_agent: None }
    }

    pub fn user(id: &str, client_ip: Option<String>, user_agent: Option<String>) -> Self {
        Self { name: format!("user:{id}"), client_ip, user_agent }
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
    audit_event::Entity::insert(audit_event::ActiveModel {
        id: Set(ids::new_id(ids::AUDIT_EVENT)),
        occurred_at: Set(now),
        actor: Set(actor.name.clone()),
        action: Set(action.to_owned()),
        target_id: Set(target_id.map(str::to_owned)),
        client_ip: Set(actor.client_ip.clone()),
        user_agent: Set(actor.user_agent.clone()),
        data: Set(data.to_string()),
    })
    .exec_without_returning(conn)
    .await?;
    tracing::info!(actor = %actor.name, action, target = target_id.unwrap_or("-"), "audit");
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
        }
    }
}
