//! Organisations JSON API, for signed-in users (session cookie + CSRF check via [`ApiSession`]).
//!
//! Access: routes about one organisation answer 404 to non-members (so outsiders cannot tell
//! that it exists) and 403 to members who are not admins, for admin-only actions.

use actix_web::{
    HttpRequest, HttpResponse,
    http::{StatusCode, header},
    web,
};
use latchkey_core::{infra::audit::Actor, infra::ids, model::EnrollmentMode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{ApiError, AppState, extract::ApiSession};

type State = web::Data<AppState>;
type Response = Result<HttpResponse, ApiError>;

pub fn configure(cfg: &mut web::ServiceConfig) {
    let org = "/v1/organizations/{org_id}";
    cfg.service(
        web::resource("/v1/organizations")
            .route(web::post().to(create))
            .route(web::get().to(list_mine)),
    )
    .service(web::resource(org).route(web::get().to(get)))
    .service(
        web::resource(format!("{org}/memberships"))
            .route(web::get().to(members))
            .route(web::post().to(set_member)),
    )
    .service(
        web::resource(format!("{org}/memberships/{{user_id}}"))
            .route(web::delete().to(remove_member)),
    )
    .service(web::resource(format!("{org}/leave")).route(web::post().to(leave)))
    .service(
        web::resource(format!("{org}/invitations"))
            .route(web::post().to(invite))
            .route(web::get().to(list_invitations)),
    )
    .service(
        web::resource(format!("{org}/invitations/{{id}}"))
            .route(web::delete().to(revoke_invitation)),
    )
    .service(web::resource("/v1/invitations/accept").route(web::post().to(accept_invitation)))
    .service(web::resource("/v1/me/invitations").route(web::get().to(my_invitations)))
    .service(
        web::resource("/v1/me/invitations/{id}/accept").route(web::post().to(accept_my_invitation)),
    )
    .service(
        web::resource(format!("{org}/domains"))
            .route(web::post().to(add_domain))
            .route(web::get().to(list_domains)),
    )
    .service(
        web::resource(format!("{org}/domains/{{id}}"))
            .route(web::get().to(get_domain))
            .route(web::patch().to(update_domain))
            .route(web::delete().to(remove_domain)),
    )
    .service(
        web::resource(format!("{org}/domains/{{id}}/verify-dns")).route(web::post().to(verify_dns)),
    )
    .service(
        web::resource(format!("{org}/domains/{{id}}/email-verification"))
            .route(web::post().to(start_email_verification)),
    )
    .service(
        web::resource(format!("{org}/domains/{{id}}/email-verification/confirm"))
            .route(web::post().to(confirm_email_code)),
    )
    .service(web::resource("/v1/me/suggestions").route(web::get().to(my_suggestions)))
    .service(
        web::resource(format!("{org}/join-requests"))
            .route(web::post().to(request_to_join))
            .route(web::get().to(list_join_requests)),
    )
    .service(
        web::resource(format!("{org}/join-requests/{{id}}/approve"))
            .route(web::post().to(approve_join_request)),
    )
    .service(
        web::resource(format!("{org}/join-requests/{{id}}/reject"))
            .route(web::post().to(reject_join_request)),
    )
    .service(
        web::resource("/v1/session/active-organization")
            .route(web::post().to(set_active_organization)),
    );
}

fn render(status: StatusCode, body: &impl Serialize) -> Response {
    Ok(HttpResponse::build(status).insert_header((header::CACHE_CONTROL, "no-store")).json(body))
}

fn list(items: &impl Serialize) -> Response {
    render(StatusCode::OK, &json!({ "data": items }))
}

fn no_content() -> Response {
    Ok(HttpResponse::NoContent().insert_header((header::CACHE_CONTROL, "no-store")).finish())
}

/// The caller as the actor of a read (no request details needed).
fn reader(api: &ApiSession) -> Actor {
    Actor::user(&api.session.user_id, None, None)
}

fn actor(req: &HttpRequest, api: &ApiSession) -> Actor {
    Actor::user(
        &api.session.user_id,
        crate::client_ip::client_ip(req).map(|a| a.to_string()),
        req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
    )
}

/// A path id of ours with the expected prefix; anything else cannot exist.
fn id<'a>(prefix: &str, value: &'a str) -> Result<&'a str, ApiError> {
    if ids::is_valid(prefix, value) { Ok(value) } else { Err(ApiError::not_found()) }
}

fn org_id(path: &str) -> Result<&str, ApiError> {
    id(ids::ORGANISATION, path)
}

#[derive(Deserialize)]
pub struct CreateOrg {
    name: String,
    slug: String,
}

async fn create(
    req: HttpRequest,
    state: State,
    api: ApiSession,
    body: web::Json<CreateOrg>,
) -> Response {
    let (org, membership) = state
        .core
        .orgs
        .create_for_user(&body.name, &body.slug, &api.session.user_id, &actor(&req, &api))
        .await?;
    render(
        StatusCode::CREATED,
        &latchkey_core::model::UserOrganisation { organisation: org, role: membership.role },
    )
}

async fn list_mine(state: State, api: ApiSession) -> Response {
    list(&state.core.orgs.list_for_user(&api.session.user_id).await?)
}

async fn get(state: State, api: ApiSession, path: web::Path<String>) -> Response {
    let org_id = org_id(&path)?;
    render(StatusCode::OK, &state.core.orgs.view(org_id, &reader(&api)).await?)
}

async fn members(state: State, api: ApiSession, path: web::Path<String>) -> Response {
    let org_id = org_id(&path)?;
    list(&state.core.orgs.members(org_id, &reader(&api)).await?)
}

#[derive(Deserialize)]
pub struct SetMember {
    user_id: String,
    role: Option<String>,
}

async fn set_member(
    req: HttpRequest,
    state: State,
    api: ApiSession,
    path: web::Path<String>,
    body: web::Json<SetMember>,
) -> Response {
    let org_id = org_id(&path)?;
    let user_id = id(ids::USER, &body.user_id)?;
    let role = body.role.as_deref().unwrap_or(latchkey_core::tenancy::orgs::ROLE_MEMBER);
    let m = state.core.orgs.set_membership(org_id, user_id, role, &actor(&req, &api)).await?;
    render(StatusCode::OK, &m)
}

async fn remove_member(
    req: HttpRequest,
    state: State,
    api: ApiSession,
    path: web::Path<(String, String)>,
) -> Response {
    let org_id = org_id(&path.0)?;
    let user_id = id(ids::USER, &path.1)?;
    state.core.orgs.remove_member(org_id, user_id, &actor(&req, &api)).await?;
    no_content()
}

async fn leave(
    req: HttpRequest,
    state: State,
    api: ApiSession,
    path: web::Path<String>,
) -> Response {
    let org_id = org_id(&path)?;
    state.core.orgs.leave(org_id, &api.session.user_id, &actor(&req, &api)).await?;
    no_content()
}

#[derive(Deserialize)]
pub struct Invite {
    email: String,
    role: Option<String>,
}

async fn invite(
    req: HttpRequest,
    state: State,
    api: ApiSession,
    path: web::Path<String>,
    body: web::Json<Invite>,
) -> Response {
    let org_id = org_id(&path)?;
    let role = body.role.as_deref().unwrap_or(latchkey_core::tenancy::orgs::ROLE_MEMBER);
    let issued = state
        .core
        .invitations
        .invite(org_id, &body.email, role, Some(&api.session.user_id), &actor(&req, &api))
        .await?;
    render(StatusCode::CREATED, &issued)
}

async fn list_invitations(state: State, api: ApiSession, path: web::Path<String>) -> Response {
    let org_id = org_id(&path)?;
    list(&state.core.invitations.list_pending(org_id, &reader(&api)).await?)
}

async fn revoke_invitation(
    req: HttpRequest,
    state: State,
    api: ApiSession,
    path: web::Path<(String, String)>,
) -> Response {
    let org_id = org_id(&path.0)?;
    let invitation_id = id(ids::INVITATION, &path.1)?;
    let inv = state.core.invitations.revoke(org_id, invitation_id, &actor(&req, &api)).await?;
    render(StatusCode::OK, &inv)
}

#[derive(Deserialize)]
pub struct AcceptInvitation {
    token: String,
}

async fn accept_invitation(
    req: HttpRequest,
    state: State,
    api: ApiSession,
    body: web::Json<AcceptInvitation>,
) -> Response {
    let m = state
        .core
        .invitations
        .accept(&body.token, &api.session.user_id, &actor(&req, &api))
        .await?;
    render(StatusCode::OK, &m)
}

async fn my_invitations(state: State, api: ApiSession) -> Response {
    let user = state.core.users.get(&api.session.user_id).await?;
    list(&state.core.enrollment.pending_invitations_for_user(&user).await?)
}

async fn accept_my_invitation(
    req: HttpRequest,
    state: State,
    api: ApiSession,
    path: web::Path<String>,
) -> Response {
    let invitation_id = id(ids::INVITATION, &path)?;
    let m = state
        .core
        .invitations
        .accept_by_id(invitation_id, &api.session.user_id, &actor(&req, &api))
        .await?;
    render(StatusCode::OK, &m)
}

#[derive(Deserialize)]
pub struct AddDomain {
    domain: String,
}

async fn add_domain(
    req: HttpRequest,
    state: State,
    api: ApiSession,
    path: web::Path<String>,
    body: web::Json<AddDomain>,
) -> Response {
    let org_id = org_id(&path)?;
    let d = state.core.domains.add_domain(org_id, &body.domain, &actor(&req, &api)).await?;
    render(StatusCode::CREATED, &d)
}

async fn list_domains(state: State, api: ApiSession, path: web::Path<String>) -> Response {
    let org_id = org_id(&path)?;
    list(&state.core.domains.list(org_id, &reader(&api)).await?)
}

/// Both ids of `/organizations/{org_id}/domains/{id}…` (the services check the caller).
fn domain_path(path: &(String, String)) -> Result<(&str, &str), ApiError> {
    Ok((org_id(&path.0)?, id(ids::ORG_DOMAIN, &path.1)?))
}

async fn get_domain(state: State, api: ApiSession, path: web::Path<(String, String)>) -> Response {
    let (org_id, domain_id) = domain_path(&path)?;
    render(StatusCode::OK, &state.core.domains.get(org_id, domain_id, &reader(&api)).await?)
}

#[derive(Deserialize)]
pub struct UpdateDomain {
    enrollment_mode: EnrollmentMode,
}

async fn update_domain(
    req: HttpRequest,
    state: State,
    api: ApiSession,
    path: web::Path<(String, String)>,
    body: web::Json<UpdateDomain>,
) -> Response {
    let (org_id, domain_id) = domain_path(&path)?;
    let d = state
        .core
        .domains
        .set_enrollment_mode(org_id, domain_id, body.enrollment_mode, &actor(&req, &api))
        .await?;
    render(StatusCode::OK, &d)
}

async fn remove_domain(
    req: HttpRequest,
    state: State,
    api: ApiSession,
    path: web::Path<(String, String)>,
) -> Response {
    let (org_id, domain_id) = domain_path(&path)?;
    state.core.domains.remove_domain(org_id, domain_id, &actor(&req, &api)).await?;
    no_content()
}

async fn verify_dns(
    req: HttpRequest,
    state: State,
    api: ApiSession,
    path: web::Path<(String, String)>,
) -> Response {
    let (org_id, domain_id) = domain_path(&path)?;
    let d = state.core.domains.verify_dns(org_id, domain_id, &actor(&req, &api)).await?;
    render(StatusCode::OK, &d)
}

#[derive(Deserialize)]
pub struct StartEmailVerification {
    address: String,
}

async fn start_email_verification(
    req: HttpRequest,
    state: State,
    api: ApiSession,
    path: web::Path<(String, String)>,
    body: web::Json<StartEmailVerification>,
) -> Response {
    let (org_id, domain_id) = domain_path(&path)?;
    state
        .core
        .domains
        .start_email_verification(org_id, domain_id, &body.address, &actor(&req, &api))
        .await?;
    render(StatusCode::ACCEPTED, &state.core.domains.get(org_id, domain_id, &reader(&api)).await?)
}

#[derive(Deserialize)]
pub struct ConfirmEmailCode {
    code: String,
}

async fn confirm_email_code(
    req: HttpRequest,
    state: State,
    api: ApiSession,
    path: web::Path<(String, String)>,
    body: web::Json<ConfirmEmailCode>,
) -> Response {
    let (org_id, domain_id) = domain_path(&path)?;
    let d = state
        .core
        .domains
        .confirm_email_code(org_id, domain_id, &body.code, &actor(&req, &api))
        .await?;
    render(StatusCode::OK, &d)
}

async fn my_suggestions(state: State, api: ApiSession) -> Response {
    let user = state.core.users.get(&api.session.user_id).await?;
    list(&state.core.enrollment.suggestions_for_user(&user).await?)
}

async fn request_to_join(
    req: HttpRequest,
    state: State,
    api: ApiSession,
    path: web::Path<String>,
) -> Response {
    let org_id = org_id(&path)?;
    let r = state
        .core
        .enrollment
        .request_to_join(org_id, &api.session.user_id, &actor(&req, &api))
        .await?;
    render(StatusCode::OK, &r)
}

async fn list_join_requests(state: State, api: ApiSession, path: web::Path<String>) -> Response {
    let org_id = org_id(&path)?;
    list(&state.core.enrollment.list_join_requests(org_id, &reader(&api)).await?)
}

async fn approve_join_request(
    req: HttpRequest,
    state: State,
    api: ApiSession,
    path: web::Path<(String, String)>,
) -> Response {
    let org_id = org_id(&path.0)?;
    let request_id = id(ids::JOIN_REQUEST, &path.1)?;
    let m =
        state.core.enrollment.approve_join_request(org_id, request_id, &actor(&req, &api)).await?;
    render(StatusCode::OK, &m)
}

async fn reject_join_request(
    req: HttpRequest,
    state: State,
    api: ApiSession,
    path: web::Path<(String, String)>,
) -> Response {
    let org_id = org_id(&path.0)?;
    let request_id = id(ids::JOIN_REQUEST, &path.1)?;
    let r =
        state.core.enrollment.reject_join_request(org_id, request_id, &actor(&req, &api)).await?;
    render(StatusCode::OK, &r)
}

#[derive(Deserialize)]
pub struct ActiveOrganization {
    org_id: Option<String>,
}

/// Switches the session's active organisation (null clears it). The next session token carries
/// `org_id`, `org_role` and `org_slug`.
async fn set_active_organization(
    req: HttpRequest,
    state: State,
    api: ApiSession,
    body: web::Json<ActiveOrganization>,
) -> Response {
    let org_id = body.org_id.as_deref();
    state.core.sessions.set_active_org(&api.session.session_id, org_id, &actor(&req, &api)).await?;
    let body = match org_id {
        Some(org_id) => {
            let o = state.core.orgs.view(org_id, &reader(&api)).await?;
            json!({ "org_id": o.organisation.id, "org_role": o.role, "org_slug": o.organisation.slug })
        }
        None => json!({ "org_id": null, "org_role": null, "org_slug": null }),
    };
    render(StatusCode::OK, &body)
}
