//! `/admin/applications`: OpenID Connect clients. Register (a confidential client's secret is
//! shown once, on the page the registration answers with, and never again), edit what
//! `latchkey clients update` edits, rotate the secret, delete; the discovery URL and client ID
//! to paste into the application.

use actix_web::{HttpRequest, http::StatusCode, web};
use latchkey_core::{
    admin::AppQuery,
    oauth::clients::{Client, ClientPatch, NewClient},
};
use serde::Deserialize;

use super::{Console, CsrfOnly, Page, enc, inline_or_page, nav, render, views, when};
use crate::{AppState, pages::support::see_other};

#[derive(Deserialize)]
pub struct ListQuery {
    cursor: Option<String>,
}

fn row(c: Client) -> views::AppRow {
    views::AppRow {
        kind: c.client_type.as_str(),
        grants: c.grant_types.join(" "),
        scopes: c.allowed_scopes.join(" "),
        redirect_uris: c.redirect_uris.join("\n"),
        audiences: c.audiences.join("\n"),
        access_token_ttl: c.access_token_ttl_secs,
        access_token_template: c.access_token_template.unwrap_or_default(),
        id_token_template: c.id_token_template.unwrap_or_default(),
        created: when(c.created_at),
        name: c.name,
        id: c.client_id,
    }
}

pub async fn list(req: HttpRequest, state: web::Data<AppState>, q: web::Query<ListQuery>) -> Page {
    let console = Console::load(&req, &state).await?;
    console.require_instance_admin()?;
    list_page(&state, &console, q.into_inner().cursor, None, StatusCode::OK).await
}

async fn list_page(
    state: &AppState,
    console: &Console,
    cursor: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Page {
    let query = AppQuery { cursor, limit: Some(50) };
    let page = state.core.admin.apps.list(&console.actor, &query).await?;
    let view = views::Apps {
        nav: nav(console, "applications", None),
        csrf: console.csrf.token.clone(),
        next: page.next_cursor.map(|c| format!("/admin/applications?cursor={}", enc(&c))),
        rows: page.data.into_iter().map(row).collect(),
        error,
    };
    render(state, console, status, &view)
}

/// Lines (or spaces) of a text field as a list, blanks dropped.
fn items(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

#[derive(Deserialize)]
pub struct NewAppForm {
    csrf_token: String,
    name: String,
    kind: String,
    #[serde(default)]
    redirect_uris: String,
}

pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<NewAppForm>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    let new = NewClient {
        name: form.name.trim().to_owned(),
        public: form.kind == "public",
        redirect_uris: items(&form.redirect_uris),
        ..NewClient::default()
    };
    match state.core.admin.apps.create(&console.actor, new).await {
        Ok(created) => {
            let secret = created.client_secret.clone();
            app_page(&state, &console, created.client, secret, None, StatusCode::CREATED)
        }
        Err(e) => {
            let message = inline_or_page(e)?;
            list_page(&state, &console, None, Some(message), StatusCode::UNPROCESSABLE_ENTITY).await
        }
    }
}

fn app_page(
    state: &AppState,
    console: &Console,
    client: Client,
    secret: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Page {
    let view = views::AppPage {
        nav: nav(console, "applications", None),
        csrf: console.csrf.token.clone(),
        discovery_url: format!("{}/.well-known/openid-configuration", state.core.oidc.issuer()),
        app: row(client),
        secret,
        error,
    };
    render(state, console, status, &view)
}

pub async fn show(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> Page {
    let console = Console::load(&req, &state).await?;
    let client = state.core.admin.apps.get(&console.actor, &path).await?;
    app_page(&state, &console, client, None, None, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct EditForm {
    csrf_token: String,
    name: String,
    #[serde(default)]
    redirect_uris: String,
    #[serde(default)]
    grant_types: String,
    #[serde(default)]
    scopes: String,
    access_token_ttl: Option<i64>,
    #[serde(default)]
    audiences: String,
    #[serde(default)]
    access_token_template: String,
    #[serde(default)]
    id_token_template: String,
}

fn optional(s: &str) -> Option<String> {
    Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_owned)
}

pub async fn update(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<EditForm>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    let patch = ClientPatch {
        name: Some(form.name.trim().to_owned()),
        redirect_uris: Some(items(&form.redirect_uris)),
        grant_types: Some(items(&form.grant_types)),
        allowed_scopes: Some(items(&form.scopes)),
        access_token_ttl_secs: form.access_token_ttl,
        audiences: Some(items(&form.audiences)),
        access_token_template: Some(optional(&form.access_token_template)),
        id_token_template: Some(optional(&form.id_token_template)),
        ..ClientPatch::default()
    };
    let apps = &state.core.admin.apps;
    match apps.update(&console.actor, &path, &patch, |_| true).await {
        Ok(client) => app_page(&state, &console, client, None, None, StatusCode::OK),
        Err(e) => {
            let message = inline_or_page(e)?;
            let client = apps.get(&console.actor, &path).await?;
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            app_page(&state, &console, client, None, Some(message), status)
        }
    }
}

/// A new secret, shown once; the previous one keeps working for a day so the application
/// can be redeployed with the new one.
pub async fn rotate_secret(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    console
        .require_recent_sign_in(state.core.store.now(), &format!("/admin/applications/{path}"))?;
    let (client, secret) =
        state.core.admin.apps.rotate_secret(&console.actor, &path, 86_400).await?;
    app_page(&state, &console, client, Some(secret), None, StatusCode::OK)
}

pub async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    console
        .require_recent_sign_in(state.core.store.now(), &format!("/admin/applications/{path}"))?;
    state.core.admin.apps.delete(&console.actor, &path).await?;
    Ok(see_other("/admin/applications"))
}
