//! `/admin/keys`: signing keys (rotate, a sensitive action) and JWT templates (create, edit
//! with a preview of the claims for a chosen user, delete). The preview is a form post that
//! renders the claims on the server: no script.

use actix_web::{HttpRequest, http::StatusCode, web};
use latchkey_core::{Error as CoreError, oauth::jwt_templates::NewTemplate};
use serde::Deserialize;
use serde_json::Value;

use super::{Console, CsrfOnly, Page, inline_or_page, nav, render, views, when};
use crate::{AppState, pages::support::see_other};

const NEW_TEMPLATE_CLAIMS: &str =
    "{\n  \"email\": \"{{user.primary_email}}\",\n  \"org\": \"{{org.slug}}\"\n}";
const DEFAULT_LIFETIME_SECS: i64 = 60;

#[derive(Deserialize)]
pub struct NoticeQuery {
    notice: Option<String>,
}

pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<NoticeQuery>,
) -> Page {
    let console = Console::load(&req, &state).await?;
    console.require_instance_admin()?;
    let admin = &state.core.admin.keys;
    let keys = admin.keys(&console.actor).await?;
    let templates = admin.templates(&console.actor).await?;
    let notice = match q.notice.as_deref() {
        Some("rotated") => Some("A new key signs from now on."),
        Some("withdrawn") => {
            Some("The key is out of the JWKS: the tokens it signed no longer verify.")
        }
        Some("deleted") => Some("The template is deleted."),
        _ => None,
    };
    let view = views::Keys {
        nav: nav(&console, "keys", notice),
        csrf: console.csrf.token.clone(),
        keys: keys
            .into_iter()
            .map(|k| views::KeyRow {
                created: when(k.created_at),
                publish_until: k.publish_until.map(when).unwrap_or_default(),
                published: k.published,
                kid: k.kid,
                alg: k.alg,
                status: k.status,
            })
            .collect(),
        templates: templates
            .into_iter()
            .map(|t| views::TemplateRow {
                updated: when(t.updated_at),
                name: t.name,
                signing: t.signing,
                lifetime_secs: t.lifetime_secs,
            })
            .collect(),
    };
    render(&state, &console, StatusCode::OK, &view)
}

#[derive(Deserialize)]
pub struct RotateForm {
    csrf_token: String,
    alg: String,
}

pub async fn rotate(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<RotateForm>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    console.require_recent_sign_in(state.core.store.now(), "/admin/keys")?;
    state.core.admin.keys.rotate(&console.actor, &form.alg).await?;
    Ok(see_other("/admin/keys?notice=rotated"))
}

/// Takes a retired key out of the JWKS now (a sensitive action, like rotation).
pub async fn withdraw(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    console.require_recent_sign_in(state.core.store.now(), "/admin/keys")?;
    state.core.admin.keys.withdraw(&console.actor, &path).await?;
    Ok(see_other("/admin/keys?notice=withdrawn"))
}

/// The template form as the page shows it.
struct Draft {
    name: String,
    is_new: bool,
    claims: String,
    lifetime_secs: i64,
    preview_user: String,
}

async fn template_page(
    state: &AppState,
    console: &Console,
    draft: Draft,
    preview: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Page {
    let view = views::TemplatePage {
        nav: nav(console, "keys", None),
        csrf: console.csrf.token.clone(),
        name: draft.name,
        is_new: draft.is_new,
        claims: draft.claims,
        lifetime_secs: draft.lifetime_secs,
        preview_user: draft.preview_user,
        preview,
        error,
    };
    render(state, console, status, &view)
}

pub async fn new_form(req: HttpRequest, state: web::Data<AppState>) -> Page {
    let console = Console::load(&req, &state).await?;
    console.require_instance_admin()?;
    let draft = Draft {
        name: String::new(),
        is_new: true,
        claims: NEW_TEMPLATE_CLAIMS.into(),
        lifetime_secs: DEFAULT_LIFETIME_SECS,
        preview_user: console.user.primary_email.clone(),
    };
    template_page(&state, &console, draft, None, None, StatusCode::OK).await
}

pub async fn show(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> Page {
    let console = Console::load(&req, &state).await?;
    let t = state.core.admin.keys.template(&console.actor, &path).await?;
    let draft = Draft {
        claims: serde_json::to_string_pretty(&t.claims).unwrap_or_default(),
        name: t.name,
        is_new: false,
        lifetime_secs: t.lifetime_secs,
        preview_user: console.user.primary_email.clone(),
    };
    template_page(&state, &console, draft, None, None, StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct TemplateForm {
    csrf_token: String,
    #[serde(default)]
    name: String,
    claims: String,
    lifetime: Option<i64>,
    #[serde(default)]
    preview_user: String,
    intent: Option<String>,
}

pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<TemplateForm>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    submit_template(&state, &console, form.into_inner(), true).await
}

pub async fn update(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<TemplateForm>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    let mut form = form.into_inner();
    form.name = path.into_inner();
    submit_template(&state, &console, form, false).await
}

/// Preview or save; either way a mistake comes back on the form, with what was typed.
async fn submit_template(
    state: &AppState,
    console: &Console,
    form: TemplateForm,
    is_new: bool,
) -> Page {
    let draft = Draft {
        name: form.name.trim().to_owned(),
        is_new,
        claims: form.claims.clone(),
        lifetime_secs: form.lifetime.unwrap_or(DEFAULT_LIFETIME_SECS),
        preview_user: form.preview_user.trim().to_owned(),
    };
    let result = match form.intent.as_deref() {
        Some("preview") => preview(state, console, &draft).await.map(Some),
        _ => save(state, console, &draft).await.map(|()| None),
    };
    match result {
        Ok(Some(preview)) => {
            template_page(state, console, draft, Some(preview), None, StatusCode::OK).await
        }
        Ok(None) => Ok(see_other(&format!("/admin/templates/{}", draft.name))),
        Err(e) => {
            let message = inline_or_page(e)?;
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            template_page(state, console, draft, None, Some(message), status).await
        }
    }
}

fn parse_claims(text: &str) -> Result<Value, CoreError> {
    serde_json::from_str(text)
        .map_err(|e| CoreError::invalid("claims", format!("is not JSON: {e}")))
}

async fn preview(state: &AppState, console: &Console, draft: &Draft) -> Result<String, CoreError> {
    console
        .require_instance_admin()
        .map_err(|_| CoreError::Forbidden("instance administrators only".into()))?;
    let claims = parse_claims(&draft.claims)?;
    let user = state
        .core
        .users
        .resolve(&draft.preview_user)
        .await
        .map_err(|_| CoreError::invalid("preview_user", "is not a user's email or ID"))?;
    let rendered = state.core.admin.keys.preview(&console.actor, &claims, &user.id).await?;
    Ok(serde_json::to_string_pretty(&rendered).unwrap_or_default())
}

async fn save(state: &AppState, console: &Console, draft: &Draft) -> Result<(), CoreError> {
    let claims = parse_claims(&draft.claims)?;
    let keys = &state.core.admin.keys;
    if draft.is_new {
        let new = NewTemplate {
            name: draft.name.clone(),
            claims,
            hs256_secret: None,
            lifetime_secs: Some(draft.lifetime_secs),
        };
        keys.create_template(&console.actor, new).await.map(|_| ())
    } else {
        keys.update_template(&console.actor, &draft.name, Some(claims), Some(draft.lifetime_secs))
            .await
            .map(|_| ())
    }
}

pub async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    match state.core.admin.keys.delete_template(&console.actor, &path).await {
        Ok(()) => Ok(see_other("/admin/keys?notice=deleted")),
        Err(e) => {
            let message = inline_or_page(e)?;
            let t = state.core.admin.keys.template(&console.actor, &path).await?;
            let draft = Draft {
                claims: serde_json::to_string_pretty(&t.claims).unwrap_or_default(),
                name: t.name,
                is_new: false,
                lifetime_secs: t.lifetime_secs,
                preview_user: console.user.primary_email.clone(),
            };
            template_page(&state, &console, draft, None, Some(message), StatusCode::CONFLICT).await
        }
    }
}
