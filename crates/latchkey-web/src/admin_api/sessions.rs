//! `/api/v1/sessions`: sessions across the instance (an organisation's key: its members'),
//! newest first, and their revocation.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use latchkey_core::{admin::SessionQuery, identity::model::Session};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::AdminActor;
use crate::{AppState, error::problem::Problem};

pub fn configure(cfg: &mut web::ServiceConfig) {
    use super::method_not_allowed as other;
    cfg.service(web::resource("/sessions").get(list).default_service(other("GET"))).service(
        web::resource("/sessions/{session_id}").delete(revoke).default_service(other("DELETE")),
    );
}

/// A session as the admin API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionResource {
    /// `ses_…`
    pub id: String,
    pub user_id: String,
    /// `active`, `ended`, `revoked` or `expired`.
    pub status: String,
    pub end_reason: Option<String>,
    /// How the session signed in: `password`, `saml:{connection_id}`,
    /// `oidc:{google|microsoft}[:{connection_id}]` or `operator`.
    pub method: String,
    /// RFC 8176 authentication method references (`pwd`, `fed`).
    pub amr: Vec<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub active_org_id: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub last_active_at: i64,
    pub expires_at: i64,
    pub ended_at: Option<i64>,
}

impl From<Session> for SessionResource {
    fn from(s: Session) -> Self {
        Self {
            status: s.status.as_str().to_owned(),
            method: s.auth_method.to_string(),
            amr: s.auth_method.amr(),
            id: s.id,
            user_id: s.user_id,
            end_reason: s.end_reason,
            client_ip: s.client_ip,
            user_agent: s.user_agent,
            active_org_id: s.active_org_id,
            created_at: s.created_at,
            last_active_at: s.last_active_at,
            expires_at: s.expires_at,
            ended_at: s.ended_at,
        }
    }
}

/// One page of sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionPage {
    pub data: Vec<SessionResource>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionsQuery {
    /// Only this user's sessions (`usr_…`).
    pub user: Option<String>,
    /// Only sessions of this organisation's members (`org_…`).
    pub org: Option<String>,
    /// Include ended, revoked and expired sessions.
    pub all: Option<bool>,
    /// The `next_cursor` of the previous page (empty: the first page).
    pub cursor: Option<String>,
    /// Sessions per page, 1-200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
}

/// List sessions, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/sessions",
    tag = "sessions",
    params(SessionsQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of sessions", body = SessionPage),
        (status = 400, description = "A bad filter, limit or cursor", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "Another organisation than the key's", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    query: web::Query<SessionsQuery>,
) -> Result<HttpResponse, Problem> {
    let q = query.into_inner();
    let query = SessionQuery {
        user_id: q.user,
        org_id: q.org,
        include_ended: q.all.unwrap_or(false),
        cursor: q.cursor,
        limit: q.limit,
    };
    let page =
        state.core.admin.sessions.list(&actor.0, &query).await.map_err(super::problem(&req))?;
    let body = SessionPage {
        data: page.data.into_iter().map(SessionResource::from).collect(),
        next_cursor: page.next_cursor,
    };
    Ok(super::no_store(StatusCode::OK, &body))
}

/// Revoke a session: its next token request fails on every node, and the apps it signed in to
/// get a back-channel logout.
#[utoipa::path(
    delete,
    path = "/api/v1/sessions/{session_id}",
    tag = "sessions",
    params(("session_id" = String, Path, description = "`ses_…`")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The session, as it is now", body = SessionResource),
        (status = 401, description = "No valid API key", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such session visible to this key", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let session =
        state.core.admin.sessions.revoke(&actor.0, &path).await.map_err(super::problem(&req))?;
    Ok(super::no_store(StatusCode::OK, &SessionResource::from(session)))
}
