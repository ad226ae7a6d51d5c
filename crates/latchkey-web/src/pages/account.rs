//! `/account`: profile, password, the user's own sessions, organisations, applications and
//! connected accounts.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use latchkey_core::{
    Error as CoreError, infra::audit::Actor, infra::mail::EMAIL_VERIFICATION_VALIDITY,
    sign_in::VerificationRequest,
};
use serde::Deserialize;

use super::{
    support::{
        client_info, csrf, current_session, device_label, render, safe_return_to, see_other,
        to_sign_in, verify_csrf,
    },
    views,
};
use crate::{AppState, error::page::PageError};

type Page = Result<HttpResponse, PageError>;

#[derive(Deserialize)]
pub struct AccountQuery {
    notice: Option<String>,
}

/// Fixed messages keyed by the redirect's `notice`, so nothing from the URL is echoed.
fn notice_text(key: Option<&str>) -> Option<&'static str> {
    match key? {
        "profile" => Some("Your profile has been saved."),
        "password" => Some("Your password has been changed."),
        "session_revoked" => Some("That session has been signed out."),
        "others_revoked" => Some("All your other sessions have been signed out."),
        "joined" => Some("You have joined the organisation."),
        "switched" => Some("Your active organisation has changed."),
        "requested" => Some("Your request to join has been sent to the organisation's admins."),
        "app_revoked" => Some("That application no longer has access to your account."),
        "email_verified" => Some("Your email address is verified."),
        "connected" => Some("The provider granted the access you asked for."),
        "disconnected" => Some("That account has been disconnected."),
        _ => None,
    }
}

pub async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<AccountQuery>,
) -> Page {
    let Some((session, _)) = current_session(&req, &state).await else {
        return Ok(to_sign_in(&req));
    };
    render_account(
        &req,
        &state,
        &session.user_id,
        &session.session_id,
        notice_text(q.notice.as_deref()),
        None,
        StatusCode::OK,
    )
    .await
}

pub(super) async fn render_account(
    req: &HttpRequest,
    state: &AppState,
    user_id: &str,
    current_session_id: &str,
    notice: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> Page {
    let user = state.core.users.get(user_id).await?;
    let sessions = state
        .core
        .sessions
        .list(Some(user_id), false, 100)
        .await?
        .into_iter()
        .map(|s| {
            let when = chrono::DateTime::from_timestamp(s.last_active_at, 0).unwrap_or_default();
            views::SessionRow {
                current: s.id == current_session_id,
                device: device_label(s.user_agent.as_deref()),
                ip: s.client_ip.clone().unwrap_or_else(|| "unknown".into()),
                last_active: when.format("%Y-%m-%d %H:%M UTC").to_string(),
                last_active_iso: when.to_rfc3339(),
                id: s.id,
            }
        })
        .collect();
    let active_org = state.core.sessions.get(current_session_id).await?.active_org_id;
    let organisations: Vec<views::OrgRow> = state
        .core
        .orgs
        .list_for_user(user_id)
        .await?
        .into_iter()
        .map(|o| views::OrgRow {
            active: active_org.as_deref() == Some(o.organisation.id.as_str()),
            id: o.organisation.id,
            name: o.organisation.name,
            role: o.role,
        })
        .collect();
    let invitations = state
        .core
        .enrollment
        .pending_invitations_for_user(&user)
        .await?
        .into_iter()
        .map(|i| views::InvitationRow { id: i.id, org_name: i.org_name, role: i.role })
        .collect();
    let suggestions = state
        .core
        .enrollment
        .suggestions_for_user(&user)
        .await?
        .into_iter()
        .map(|s| views::SuggestionRow {
            requested: s.status == latchkey_core::model::JoinRequestStatus::Pending,
            org_id: s.org_id,
            org_name: s.org_name,
        })
        .collect();
    let apps = state.core.oauth.consents_of(user_id).await?;
    let connected = super::connected::rows(state, user_id).await?;
    let c = csrf(req, state);
    let name = user.name.clone().unwrap_or_default();
    render(
        state,
        Some(&c),
        status,
        &views::Account {
            csrf: &c.token,
            user: &user,
            user_name: &name,
            sessions,
            has_active_org: active_org.is_some(),
            organisations,
            invitations,
            suggestions,
            apps,
            connected,
            notice,
            error,
        },
    )
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf_token: String,
}

/// Withdraws the consent given to a third-party application and ends its refresh tokens.
pub async fn revoke_app(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Page {
    verify_csrf(&req, &state, &form.csrf_token)?;
    let Some((session, _)) = current_session(&req, &state).await else {
        return Ok(to_sign_in(&req));
    };
    let client = client_info(&req);
    let actor = Actor::user(&session.user_id, client.ip, client.user_agent);
    state.core.oauth.revoke_consent(&session.user_id, &path.into_inner(), &actor).await?;
    Ok(see_other("/account?notice=app_revoked"))
}

#[derive(Deserialize)]
pub struct ProfileForm {
    #[serde(default)]
    csrf_token: String,
    name: Option<String>,
}

pub async fn update_profile(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<ProfileForm>,
) -> Page {
    verify_csrf(&req, &state, &form.csrf_token)?;
    let Some((session, _)) = current_session(&req, &state).await else {
        return Ok(to_sign_in(&req));
    };
    let client = client_info(&req);
    let actor = Actor::user(&session.user_id, client.ip, client.user_agent);
    match state.core.users.update_name(&session.user_id, form.name.clone(), &actor).await {
        Ok(_) => Ok(see_other("/account?notice=profile")),
        Err(CoreError::Invalid { message, .. }) => {
            let text = format!("The name {message}.");
            render_account(
                &req,
                &state,
                &session.user_id,
                &session.session_id,
                None,
                Some(&text),
                StatusCode::BAD_REQUEST,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

pub async fn change_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<PasswordForm>,
) -> Page {
    verify_csrf(&req, &state, &form.csrf_token)?;
    let Some((session, _)) = current_session(&req, &state).await else {
        return Ok(to_sign_in(&req));
    };
    match state
        .core
        .sign_in
        .change_password(
            &session.user_id,
            &form.current_password,
            &form.new_password,
            &client_info(&req),
        )
        .await
    {
        Ok(()) => Ok(see_other("/account?notice=password")),
        Err(CoreError::Invalid { field, message }) => {
            let what = if field == "current_password" {
                "The current password"
            } else {
                "The new password"
            };
            let text = format!("{what} {message}.");
            render_account(
                &req,
                &state,
                &session.user_id,
                &session.session_id,
                None,
                Some(&text),
                StatusCode::BAD_REQUEST,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf_token: String,
}

/// Signs out one of the user's own sessions; someone else's reads as not found.
pub async fn revoke_session(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Page {
    verify_csrf(&req, &state, &form.csrf_token)?;
    let Some((session, _)) = current_session(&req, &state).await else {
        return Ok(to_sign_in(&req));
    };
    let target = path.into_inner();
    let owned =
        state.core.sessions.get(&target).await.ok().filter(|s| s.user_id == session.user_id);
    if owned.is_none() {
        return Err(PageError::not_found());
    }
    let client = client_info(&req);
    let actor = Actor::user(&session.user_id, client.ip, client.user_agent);
    state.core.sessions.revoke(&target, "signed_out_by_user", &actor).await?;
    Ok(see_other(if target == session.session_id {
        "/sign-in?signed_out=1"
    } else {
        "/account?notice=session_revoked"
    }))
}

pub async fn revoke_others(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<CsrfOnly>,
) -> Page {
    verify_csrf(&req, &state, &form.csrf_token)?;
    let Some((session, _)) = current_session(&req, &state).await else {
        return Ok(to_sign_in(&req));
    };
    let client = client_info(&req);
    let actor = Actor::user(&session.user_id, client.ip, client.user_agent);
    state.core.sessions.revoke_others(&session.user_id, &session.session_id, &actor).await?;
    Ok(see_other("/account?notice=others_revoked"))
}

#[derive(Deserialize)]
pub struct VerificationRequestForm {
    #[serde(default)]
    csrf_token: String,
    return_to: Option<String>,
}

/// Mails the signed-in user a link that verifies their address; the link leads back to
/// `return_to` (the invitation that asked for it, say).
pub async fn request_email_verification(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<VerificationRequestForm>,
) -> Page {
    verify_csrf(&req, &state, &form.csrf_token)?;
    let Some((session, _)) = current_session(&req, &state).await else {
        return Ok(to_sign_in(&req));
    };
    let return_to = safe_return_to(form.return_to.as_deref(), &state);
    match state
        .core
        .sign_in
        .request_email_verification(&session.user_id, Some(&return_to), &client_info(&req))
        .await?
    {
        VerificationRequest::AlreadyVerified => Ok(see_other(&return_to)),
        VerificationRequest::Sent { email } => {
            let minutes = EMAIL_VERIFICATION_VALIDITY.as_secs() / 60;
            let message = format!(
                "We sent a link to {email}. Open it to verify your address: it works once, within {minutes} minutes."
            );
            render(
                &state,
                None,
                StatusCode::OK,
                &views::Message {
                    title: "Check your inbox",
                    message: &message,
                    link: Some((&return_to, "Back")),
                },
            )
        }
    }
}
