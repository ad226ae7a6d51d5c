//! `/api/v1/audit-events`: the audit log, newest first, filtered and paginated by cursor.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use latchkey_core::{admin::AuditQuery, infra::audit::AuditEvent};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::AdminActor;
use crate::{AppState, error::problem::Problem};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/audit-events").get(list).default_service(super::method_not_allowed("GET")),
    );
}

/// One audit event.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventResource {
    /// `evt_…`
    pub id: String,
    /// Unix seconds.
    pub occurred_at: i64,
    /// `user:usr_…`, `api_key:apk_…`, `client:…`, `cli`, `system` or `anonymous`.
    pub actor: String,
    /// What happened, e.g. `user.created`, `session.revoked`.
    pub action: String,
    /// The ID of the object acted on.
    pub target_id: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// The request it came from, as in the server's log.
    pub request_id: Option<String>,
    /// The organisation the event concerns (`org_…`), if any.
    pub organization_id: Option<String>,
    /// The event's details (before/after of changed fields, reasons, …).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl From<AuditEvent> for AuditEventResource {
    fn from(e: AuditEvent) -> Self {
        Self {
            id: e.id,
            occurred_at: e.occurred_at,
            actor: e.actor,
            action: e.action,
            target_id: e.target_id,
            client_ip: e.client_ip,
            user_agent: e.user_agent,
            request_id: e.request_id,
            organization_id: e.org_id,
            data: e.data,
        }
    }
}

/// One page of audit events.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventPage {
    pub data: Vec<AuditEventResource>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditEventsQuery {
    /// Only this actor (exact).
    pub actor: Option<String>,
    /// Only this action (exact).
    pub action: Option<String>,
    /// Only events about this object ID.
    pub target: Option<String>,
    /// Only events concerning this organisation (`org_…`). An organisation's key reads only its
    /// own organisation's events, with or without this filter.
    pub organization_id: Option<String>,
    /// From this Unix time (inclusive).
    pub since: Option<i64>,
    /// Before this Unix time (exclusive).
    pub until: Option<i64>,
    /// The `next_cursor` of the previous page (empty: the first page).
    pub cursor: Option<String>,
    /// Events per page, 1-200 (default 100).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
}

/// Read the audit log.
#[utoipa::path(
    get,
    path = "/api/v1/audit-events",
    tag = "audit",
    params(AuditEventsQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of events, newest first", body = AuditEventPage),
        (status = 400, description = "A bad filter, limit or cursor", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Neither an instance credential nor one of this organisation's", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "An organisation the caller may not see", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    query: web::Query<AuditEventsQuery>,
) -> Result<HttpResponse, Problem> {
    let q = query.into_inner();
    let query = AuditQuery {
        actor: q.actor,
        action: q.action,
        target: q.target,
        org: q.organization_id,
        since: q.since,
        until: q.until,
        cursor: q.cursor,
        limit: q.limit,
    };
    let page =
        state.core.admin.audit_log.events(&actor.0, &query).await.map_err(super::problem(&req))?;
    let body = AuditEventPage {
        data: page.data.into_iter().map(AuditEventResource::from).collect(),
        next_cursor: page.next_cursor,
    };
    Ok(super::no_store(StatusCode::OK, &body))
}
