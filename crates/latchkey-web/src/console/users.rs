//! `/admin/users`: search by email or name prefix or ID, paginated by cursor; one user's page
//! with memberships, linked identities, sessions and recent events; the account actions.

use actix_web::{HttpRequest, http::StatusCode, web};
use latchkey_core::{
    admin::{AuditQuery, SessionQuery, UserQuery},
    identity::model::User,
};
use serde::Deserialize;

use super::{Console, CsrfOnly, Page, enc, nav, render, views, when};
use crate::{
    AppState,
    pages::support::{client_info, device_label, see_other},
};

#[derive(Deserialize)]
pub struct ListQuery {
    q: Option<String>,
    cursor: Option<String>,
}

pub async fn list(req: HttpRequest, state: web::Data<AppState>, q: web::Query<ListQuery>) -> Page {
    let console = Console::load(&req, &state).await?;
    console.require_instance_admin()?;
    let q = q.into_inner();
    let query = UserQuery { q: q.q.clone(), cursor: q.cursor, limit: Some(50) };
    let page = state.core.admin.directory.users(&console.actor, &query).await?;
    let search = q.q.unwrap_or_default();
    let next =
        page.next_cursor.map(|c| format!("/admin/users?q={}&cursor={}", enc(&search), enc(&c)));
    let view = views::Users {
        nav: nav(&console, "users", None),
        q: search,
        rows: page.data.into_iter().map(row).collect(),
        next,
    };
    render(&state, &console, StatusCode::OK, &view)
}

pub(super) fn row(u: User) -> views::UserRow {
    views::UserRow {
        email: u.primary_email,
        name: u.name.unwrap_or_default(),
        status: u.status.as_str().to_owned(),
        verified: u.email_verified,
        admin: u.is_admin,
        created: when(u.created_at),
        id: u.id,
    }
}

#[derive(Deserialize)]
pub struct ShowQuery {
    notice: Option<String>,
}

fn notice_text(key: Option<&str>) -> Option<&'static str> {
    match key? {
        "deactivated" => Some("The user is deactivated and their sessions have ended."),
        "reactivated" => Some("The user is active again."),
        "unlocked" => Some("Password sign-in is unlocked."),
        "reset_sent" => Some("A password reset link has been mailed."),
        "revoked" => Some("The session is revoked."),
        "revoked_all" => Some("All the user's sessions are revoked."),
        _ => None,
    }
}

pub async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<ShowQuery>,
) -> Page {
    let console = Console::load(&req, &state).await?;
    let admin = &state.core.admin;
    let overview = admin.user_details.overview(&console.actor, &path).await?;
    let sessions = admin
        .sessions
        .list(&console.actor, &SessionQuery { user_id: Some(path.clone()), ..Default::default() })
        .await?;
    let events = admin
        .audit_log
        .events(
            &console.actor,
            &AuditQuery { target: Some(path.clone()), limit: Some(10), ..Default::default() },
        )
        .await?;
    let view = views::UserPage {
        nav: nav(&console, "users", notice_text(q.notice.as_deref())),
        csrf: console.csrf.token.clone(),
        status_reason: overview.user.status_reason.clone().unwrap_or_default(),
        last_sign_in: overview.user.last_sign_in_at.map_or_else(|| "never".into(), when),
        locked: overview.locked_until.is_some(),
        memberships: overview
            .organisations
            .into_iter()
            .map(|o| views::MembershipRow {
                org_id: o.organisation.id,
                org_name: o.organisation.name,
                role: o.role,
            })
            .collect(),
        identities: overview
            .identities
            .into_iter()
            .map(|i| views::IdentityRow {
                kind: if i.connection_id.is_some() { "enterprise".into() } else { i.issuer },
                subject: i.subject,
                email: i.email.unwrap_or_default(),
            })
            .collect(),
        consents: overview
            .consents
            .into_iter()
            .map(|c| (c.client_name, c.scopes.join(" "), when(c.granted_at)))
            .collect(),
        sessions: sessions.data.into_iter().map(|s| session_row(s, "")).collect(),
        events: events.data.into_iter().map(super::audit::event_row).collect(),
        user: row(overview.user),
    };
    render(&state, &console, StatusCode::OK, &view)
}

pub(super) fn session_row(
    s: latchkey_core::identity::model::Session,
    user_label: &str,
) -> views::SessionRow {
    views::SessionRow {
        device: device_label(s.user_agent.as_deref()),
        ip: s.client_ip.unwrap_or_else(|| "unknown".into()),
        method: s.auth_method.to_stored(),
        last_active: when(s.last_active_at),
        user_label: if user_label.is_empty() { s.user_id.clone() } else { user_label.to_owned() },
        user_id: s.user_id,
        id: s.id,
    }
}

fn back(id: &str, notice: &str) -> actix_web::HttpResponse {
    see_other(&format!("/admin/users/{id}?notice={notice}"))
}

pub async fn deactivate(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    let reason = Some("deactivated in the console".to_owned());
    state.core.admin.users.set_active(&console.actor, &path, false, reason).await?;
    Ok(back(&path, "deactivated"))
}

pub async fn reactivate(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    state.core.admin.users.set_active(&console.actor, &path, true, None).await?;
    Ok(back(&path, "reactivated"))
}

pub async fn unlock(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    state.core.admin.user_details.unlock(&console.actor, &path).await?;
    Ok(back(&path, "unlocked"))
}

/// Mails the user a reset link, exactly as "Forgot password" would (the administrator never
/// sees the link).
pub async fn reset_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    let user = state.core.admin.directory.user(&console.actor, &path).await?;
    let client = client_info(&req);
    state.core.sign_in.request_password_reset(&user.primary_email, &client).await?;
    Ok(back(&path, "reset_sent"))
}

pub async fn revoke_all_sessions(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    // Existence and visibility first, so an unknown ID is 404 rather than "nothing revoked".
    state.core.admin.directory.user(&console.actor, &path).await?;
    state.core.admin.sessions.revoke_all(&console.actor, &path).await?;
    Ok(back(&path, "revoked_all"))
}

/// Deleting an account: a sensitive action (a recent sign-in), on the same service as
/// `latchkey users delete` and `DELETE /api/v1/users/{id}`.
pub async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    console.require_recent_sign_in(state.core.store.now(), &format!("/admin/users/{path}"))?;
    state.core.admin.users.delete(&console.actor, &path).await?;
    Ok(see_other("/admin/users"))
}
