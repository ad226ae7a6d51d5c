//! `/admin/sessions`: the instance's active sessions with user, address, device, method and
//! last activity, newest first; revoke one (the apps get back-channel logout).

use std::collections::HashMap;

use actix_web::{HttpRequest, http::StatusCode, web};
use latchkey_core::admin::SessionQuery;
use serde::Deserialize;

use super::{Console, Page, enc, nav, render, users::session_row, views};
use crate::{AppState, pages::support::see_other};

#[derive(Deserialize)]
pub struct ListQuery {
    user: Option<String>,
    cursor: Option<String>,
}

pub async fn list(req: HttpRequest, state: web::Data<AppState>, q: web::Query<ListQuery>) -> Page {
    let console = Console::load(&req, &state).await?;
    console.require_instance_admin()?;
    let q = q.into_inner();
    let user = q.user.map(|u| u.trim().to_owned()).filter(|u| !u.is_empty());
    let query = SessionQuery {
        user_id: user.clone(),
        cursor: q.cursor,
        limit: Some(50),
        ..Default::default()
    };
    let admin = &state.core.admin;
    let page = admin.sessions.list(&console.actor, &query).await?;
    // The page's users in one query, for the emails shown.
    let ids: Vec<String> = page.data.iter().map(|s| s.user_id.clone()).collect();
    let emails: HashMap<String, String> = admin
        .directory
        .users_by_ids(&console.actor, &ids)
        .await?
        .into_iter()
        .map(|u| (u.id, u.primary_email))
        .collect();
    let user_filter = user.unwrap_or_default();
    let next = page
        .next_cursor
        .map(|c| format!("/admin/sessions?user={}&cursor={}", enc(&user_filter), enc(&c)));
    let rows = page
        .data
        .into_iter()
        .map(|s| {
            let label = emails.get(&s.user_id).cloned().unwrap_or_default();
            session_row(s, &label)
        })
        .collect();
    let view = views::Sessions {
        nav: nav(&console, "sessions", None),
        csrf: console.csrf.token.clone(),
        user: user_filter,
        rows,
        next,
    };
    render(&state, &console, StatusCode::OK, &view)
}

#[derive(Deserialize)]
pub struct RevokeForm {
    csrf_token: String,
    /// `user`: back to the session's user page; otherwise the sessions list.
    back: Option<String>,
}

pub async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<RevokeForm>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    let session = state.core.admin.sessions.revoke(&console.actor, &path).await?;
    Ok(see_other(&match form.back.as_deref() {
        Some("user") => format!("/admin/users/{}?notice=revoked", session.user_id),
        _ => "/admin/sessions".to_owned(),
    }))
}
