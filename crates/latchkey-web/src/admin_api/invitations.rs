//! `/api/v1/organizations/{org_id}/invitations`: pending invitations, sending one (the invitee
//! gets the link by mail; the answer does not carry it, since it is the invitee's credential),
//! and revoking one. The organisation's own checks apply (`tenancy::access`).

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use latchkey_core::tenancy::model::Invitation;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{JsonObject, auth::AdminActor};
use crate::{AppState, error::problem::Problem};

pub fn configure(cfg: &mut web::ServiceConfig) {
    use super::method_not_allowed as other;
    cfg.service(
        web::resource("/organizations/{org_id}/invitations")
            .get(list)
            .post(invite)
            .default_service(other("GET, POST")),
    )
    .service(
        web::resource("/organizations/{org_id}/invitations/{invitation_id}")
            .delete(revoke)
            .default_service(other("DELETE")),
    );
}

/// An invitation as the admin API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationResource {
    /// `inv_…`
    pub id: String,
    pub org_id: String,
    pub email: String,
    pub role: String,
    /// `pending`, `accepted`, `revoked` or `expired`.
    pub status: String,
    /// `admin` (sent by an administrator) or `domain` (made at sign-up from a verified domain).
    pub source: String,
    pub inviter_user_id: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub expires_at: i64,
    pub accepted_at: Option<i64>,
}

impl From<Invitation> for InvitationResource {
    fn from(i: Invitation) -> Self {
        Self {
            status: i.status.as_str().to_owned(),
            id: i.id,
            org_id: i.org_id,
            email: i.email,
            role: i.role,
            source: i.source,
            inviter_user_id: i.inviter_user_id,
            created_at: i.created_at,
            expires_at: i.expires_at,
            accepted_at: i.accepted_at,
        }
    }
}

/// The organisation's pending invitations.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationList {
    pub data: Vec<InvitationResource>,
}

/// Whom to invite, with which role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvitationBody {
    #[schema(min_length = 3, max_length = 254)]
    pub email: String,
    /// `member` unless said (`admin`, or a role of your own).
    #[schema(min_length = 1, max_length = 64, pattern = "^[a-z0-9_:]+$")]
    pub role: Option<String>,
}

/// List pending invitations.
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{org_id}/invitations",
    tag = "organizations",
    params(("org_id" = String, Path, description = "`org_…`")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The pending invitations", body = InvitationList),
        (status = 404, description = "No such organisation visible to this credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let pending =
        state.core.invitations.list_pending(&path, &actor.0).await.map_err(super::problem(&req))?;
    let body = InvitationList { data: pending.into_iter().map(InvitationResource::from).collect() };
    Ok(super::no_store(StatusCode::OK, &body))
}

/// Invite someone by email (the link is mailed to them).
#[utoipa::path(
    post,
    path = "/api/v1/organizations/{org_id}/invitations",
    tag = "organizations",
    params(("org_id" = String, Path, description = "`org_…`")),
    request_body = NewInvitationBody,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "The invitation", body = InvitationResource),
        (status = 404, description = "No such organisation visible to this credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Already a member, or already invited", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn invite(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
    body: JsonObject<NewInvitationBody>,
) -> Result<HttpResponse, Problem> {
    let NewInvitationBody { email, role } = body.0;
    let role = role.unwrap_or_else(|| "member".to_owned());
    let issued = state
        .core
        .invitations
        .invite(&path, &email, &role, None, &actor.0)
        .await
        .map_err(super::problem(&req))?;
    Ok(super::no_store(StatusCode::CREATED, &InvitationResource::from(issued.invitation)))
}

/// Revoke a pending invitation.
#[utoipa::path(
    delete,
    path = "/api/v1/organizations/{org_id}/invitations/{invitation_id}",
    tag = "organizations",
    params(
        ("org_id" = String, Path, description = "`org_…`"),
        ("invitation_id" = String, Path, description = "`inv_…`"),
    ),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The invitation, revoked", body = InvitationResource),
        (status = 404, description = "No such organisation or invitation", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "No longer pending", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let (org_id, invitation_id) = path.into_inner();
    let revoked = state
        .core
        .invitations
        .revoke(&org_id, &invitation_id, &actor.0)
        .await
        .map_err(super::problem(&req))?;
    Ok(super::no_store(StatusCode::OK, &InvitationResource::from(revoked)))
}
