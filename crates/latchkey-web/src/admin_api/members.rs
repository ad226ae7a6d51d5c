//! `/api/v1/organizations/{org_id}/members`: an organisation's members, with their roles, set
//! and removed. The organisation's own checks apply (`tenancy::access`): its key or an
//! instance credential; the last admin can be neither demoted nor removed (409).

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use latchkey_core::tenancy::model::{Member, Membership};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::AdminActor;
use crate::{AppState, error::problem::Problem};

pub fn configure(cfg: &mut web::ServiceConfig) {
    use super::method_not_allowed as other;
    cfg.service(
        web::resource("/organizations/{org_id}/members").get(list).default_service(other("GET")),
    )
    .service(
        web::resource("/organizations/{org_id}/members/{user_id}")
            .put(set)
            .delete(remove)
            .default_service(other("PUT, DELETE")),
    );
}

/// A membership as the admin API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberResource {
    /// `mem_…`
    pub id: String,
    pub org_id: String,
    pub user_id: String,
    /// `admin`, `member` or a custom role.
    pub role: String,
    /// `active`, or `suspended` by upstream deprovisioning.
    pub status: String,
    /// The member's primary email address (absent when only the membership is returned).
    pub email: Option<String>,
    pub name: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
}

impl MemberResource {
    fn of(m: Membership, email: Option<String>, name: Option<String>) -> Self {
        Self {
            id: m.id,
            org_id: m.org_id,
            user_id: m.user_id,
            role: m.role,
            status: m.status,
            email,
            name,
            created_at: m.created_at,
        }
    }
}

impl From<Member> for MemberResource {
    fn from(m: Member) -> Self {
        Self::of(m.membership, Some(m.email), m.name)
    }
}

/// The organisation's members.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberList {
    pub data: Vec<MemberResource>,
}

/// The role to give.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    /// `admin` (manages the organisation), `member`, or a role of your own (lower-case letters,
    /// digits, `_` and `:`) that your apps read from the tokens.
    #[schema(min_length = 1, max_length = 64, pattern = "^[a-z0-9_:]+$")]
    pub role: String,
}

/// List an organisation's members, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{org_id}/members",
    tag = "organizations",
    params(("org_id" = String, Path, description = "`org_…`")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The members", body = MemberList),
        (status = 404, description = "No such organisation visible to this credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let members = state.core.orgs.members(&path, &actor.0).await.map_err(super::problem(&req))?;
    let body = MemberList { data: members.into_iter().map(MemberResource::from).collect() };
    Ok(super::no_store(StatusCode::OK, &body))
}

/// Add a user to the organisation with a role, or change their role (audited with the role
/// before).
#[utoipa::path(
    put,
    path = "/api/v1/organizations/{org_id}/members/{user_id}",
    tag = "organizations",
    params(
        ("org_id" = String, Path, description = "`org_…`"),
        ("user_id" = String, Path, description = "`usr_…`"),
    ),
    request_body = RoleBody,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The membership", body = MemberResource),
        (status = 404, description = "No such organisation or user", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "It would leave the organisation without an admin", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn set(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<(String, String)>,
    body: super::JsonObject<RoleBody>,
) -> Result<HttpResponse, Problem> {
    let (org_id, user_id) = path.into_inner();
    let m = state
        .core
        .orgs
        .set_membership(&org_id, &user_id, &body.0.role, &actor.0)
        .await
        .map_err(super::problem(&req))?;
    Ok(super::no_store(StatusCode::OK, &MemberResource::of(m, None, None)))
}

/// Remove a member.
#[utoipa::path(
    delete,
    path = "/api/v1/organizations/{org_id}/members/{user_id}",
    tag = "organizations",
    params(
        ("org_id" = String, Path, description = "`org_…`"),
        ("user_id" = String, Path, description = "`usr_…`"),
    ),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such organisation or member", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The last admin", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn remove(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let (org_id, user_id) = path.into_inner();
    state
        .core
        .orgs
        .remove_member(&org_id, &user_id, &actor.0)
        .await
        .map_err(super::problem(&req))?;
    Ok(HttpResponse::NoContent().finish())
}
