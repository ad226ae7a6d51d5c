//! Organisation pages: accepting invitations, switching the active organisation, asking to
//! join, and the admins' list of join requests.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use latchkey_core::{Error as CoreError, infra::audit::Actor, tenancy::invitations::AcceptBlocker};
use serde::Deserialize;

use super::{
    support::{client_info, csrf, current_session, render, see_other, to_sign_in, verify_csrf},
    views,
};
use crate::{AppState, error::page::PageError};

type Page = Result<HttpResponse, PageError>;

fn actor(req: &HttpRequest, user_id: &str) -> Actor {
    let client = client_info(req);
    Actor::user(user_id, client.ip, client.user_agent)
}

#[derive(Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

fn invalid_invitation(state: &AppState) -> Page {
    render(
        state,
        None,
        StatusCode::NOT_FOUND,
        &views::Message {
            title: "This invitation is no longer valid",
            message: "It may have been used, revoked, or it has expired. Ask the organisation's admin for a new one.",
            link: Some(("/account", "Go to your account")),
        },
    )
}

/// The accept link from an invitation mail. Signing in comes first; the invitation only works
/// for the address it was sent to, once that address is verified.
pub async fn invitation_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<TokenQuery>,
) -> Page {
    let Some((session, _)) = current_session(&req, &state).await else {
        return Ok(to_sign_in(&req));
    };
    invitation_page(&req, &state, &q.token, &session.user_id).await
}

/// The invitation with a Join button, or with what stands in the way: another address, or an
/// address that is not verified yet (with a button that mails a verification link).
async fn invitation_page(req: &HttpRequest, state: &AppState, token: &str, user_id: &str) -> Page {
    let preview = match state.core.invitations.preview(token, user_id).await {
        Ok(found) => found,
        Err(CoreError::NotFound(_)) => return invalid_invitation(state),
        Err(e) => return Err(e.into()),
    };
    let (mismatch, unverified) = match &preview.blocker {
        None => (None, None),
        Some(AcceptBlocker::OtherAddress { invited }) => (
            Some(format!(
                "This invitation was sent to {invited}. Sign in with that address to accept it."
            )),
            None,
        ),
        Some(AcceptBlocker::UnverifiedAddress { email }) => (None, Some(email.as_str())),
    };
    let c = csrf(req, state);
    render(
        state,
        Some(&c),
        if preview.blocker.is_some() { StatusCode::FORBIDDEN } else { StatusCode::OK },
        &views::InvitationPage {
            csrf: &c.token,
            token,
            org_name: &preview.organisation.name,
            role: &preview.invitation.role,
            error: mismatch.as_deref(),
            unverified,
        },
    )
}

#[derive(Deserialize)]
pub struct AcceptForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    token: String,
}

pub async fn invitation_accept(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<AcceptForm>,
) -> Page {
    verify_csrf(&req, &state, &form.csrf_token)?;
    let Some((session, _)) = current_session(&req, &state).await else {
        return Ok(to_sign_in(&req));
    };
    match state
        .core
        .invitations
        .accept(&form.token, &session.user_id, &actor(&req, &session.user_id))
        .await
    {
        Ok(_) => Ok(see_other("/account?notice=joined")),
        // Still valid, but not for this account yet: the page says why.
        Err(CoreError::Forbidden(_)) => {
            invitation_page(&req, &state, &form.token, &session.user_id).await
        }
        Err(CoreError::NotFound(_) | CoreError::Conflict(_) | CoreError::Invalid { .. }) => {
            invalid_invitation(&state)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf_token: String,
}

/// Accepts an invitation shown on the account page (domain enrollment creates them).
pub async fn accept_listed_invitation(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Page {
    verify_csrf(&req, &state, &form.csrf_token)?;
    let Some((session, _)) = current_session(&req, &state).await else {
        return Ok(to_sign_in(&req));
    };
    match state
        .core
        .invitations
        .accept_by_id(&path, &session.user_id, &actor(&req, &session.user_id))
        .await
    {
        Ok(_) => Ok(see_other("/account?notice=joined")),
        // The invitation is the user's own (others read as not found): the address is not
        // verified yet, and the account page offers to verify it.
        Err(CoreError::Forbidden(_)) => {
            super::account::render_account(
                &req,
                &state,
                &session.user_id,
                &session.session_id,
                None,
                Some("Verify your email address before accepting the invitation: send yourself a verification link."),
                StatusCode::FORBIDDEN,
            )
            .await
        }
        Err(CoreError::NotFound(_) | CoreError::Conflict(_) | CoreError::Invalid { .. }) => {
            invalid_invitation(&state)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct SwitchForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    org_id: String,
}

/// Makes an organisation (or none) the session's active one; it shows in the session JWT.
pub async fn switch_organisation(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<SwitchForm>,
) -> Page {
    verify_csrf(&req, &state, &form.csrf_token)?;
    let Some((session, _)) = current_session(&req, &state).await else {
        return Ok(to_sign_in(&req));
    };
    let org_id = Some(form.org_id.trim()).filter(|o| !o.is_empty());
    match state
        .core
        .sessions
        .set_active_org(&session.session_id, org_id, &actor(&req, &session.user_id))
        .await
    {
        Ok(()) => Ok(see_other("/account?notice=switched")),
        Err(CoreError::Invalid { .. }) => Err(PageError::not_found()),
        Err(e) => Err(e.into()),
    }
}

pub async fn request_to_join(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Page {
    verify_csrf(&req, &state, &form.csrf_token)?;
    let Some((session, _)) = current_session(&req, &state).await else {
        return Ok(to_sign_in(&req));
    };
    match state
        .core
        .enrollment
        .request_to_join(&path, &session.user_id, &actor(&req, &session.user_id))
        .await
    {
        Ok(_) => Ok(see_other("/account?notice=requested")),
        Err(
            CoreError::NotFound(_)
            | CoreError::Forbidden(_)
            | CoreError::Conflict(_)
            | CoreError::Invalid { .. },
        ) => Err(PageError::not_found()),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct NoticeQuery {
    notice: Option<String>,
}

/// Admins only; anyone else gets "not found", as for the API.
pub async fn join_requests(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<NoticeQuery>,
) -> Page {
    let Some((session, _)) = current_session(&req, &state).await else {
        return Ok(to_sign_in(&req));
    };
    let org_id = path.into_inner();
    // Outsiders and members who are not admins see no such page.
    let reader = actor(&req, &session.user_id);
    let requests = match state.core.enrollment.list_join_requests(&org_id, &reader).await {
        Ok(r) => r,
        Err(CoreError::NotFound(_) | CoreError::Forbidden(_)) => {
            return Err(PageError::not_found());
        }
        Err(e) => return Err(e.into()),
    };
    let org = state.core.orgs.get(&org_id).await?;
    let requests = requests
        .into_iter()
        .filter(|r| r.request.status == latchkey_core::model::JoinRequestStatus::Pending)
        .map(|r| views::JoinRequestRow {
            id: r.request.id,
            name: r.name.unwrap_or_else(|| "—".into()),
            email: r.email,
        })
        .collect();
    let notice = match q.notice.as_deref() {
        Some("approved") => Some("The request was approved."),
        Some("rejected") => Some("The request was declined."),
        _ => None,
    };
    let c = csrf(&req, &state);
    render(
        &state,
        Some(&c),
        StatusCode::OK,
        &views::JoinRequests {
            csrf: &c.token,
            org_id: &org_id,
            org_name: &org.name,
            requests,
            notice,
        },
    )
}

pub async fn decide_join_request(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
    form: web::Form<CsrfOnly>,
) -> Page {
    verify_csrf(&req, &state, &form.csrf_token)?;
    let Some((session, _)) = current_session(&req, &state).await else {
        return Ok(to_sign_in(&req));
    };
    let (org_id, request_id, decision) = path.into_inner();
    let actor = actor(&req, &session.user_id);
    let outcome = match decision.as_str() {
        "approve" => state
            .core
            .enrollment
            .approve_join_request(&org_id, &request_id, &actor)
            .await
            .map(|_| "approved"),
        "reject" => state
            .core
            .enrollment
            .reject_join_request(&org_id, &request_id, &actor)
            .await
            .map(|_| "rejected"),
        _ => return Err(PageError::not_found()),
    };
    match outcome {
        Ok(done) => Ok(see_other(&format!("/organizations/{org_id}/join-requests?notice={done}"))),
        Err(CoreError::NotFound(_) | CoreError::Conflict(_) | CoreError::Forbidden(_)) => {
            Err(PageError::not_found())
        }
        Err(e) => Err(e.into()),
    }
}
