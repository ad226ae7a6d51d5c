//! `/admin/api-keys`: keys for the admin API. Instance administrators see every key and make
//! instance or organisation keys; an organisation's admins see and make their organisation's
//! (`?org=`). Creating a key is a sensitive action; the key is shown once, on the page that
//! answers the creation.

use actix_web::{HttpRequest, http::StatusCode, web};
use latchkey_core::admin::NewApiKey;
use serde::Deserialize;

use super::{Console, Page, enc, inline_or_page, nav, render, views, when};
use crate::{AppState, pages::support::see_other};

#[derive(Deserialize)]
pub struct OrgQuery {
    org: Option<String>,
}

/// The organisation a page or form is about: the one named, else (for an admin of exactly
/// one organisation) theirs; None for the whole instance.
fn scope(console: &Console, named: Option<&str>) -> Option<String> {
    let named = named.map(str::trim).filter(|o| !o.is_empty()).map(str::to_owned);
    named.or_else(|| match console.admin_of.as_slice() {
        [only] if !console.is_instance_admin() => Some(only.organisation.id.clone()),
        _ => None,
    })
}

pub async fn list(req: HttpRequest, state: web::Data<AppState>, q: web::Query<OrgQuery>) -> Page {
    let console = Console::load(&req, &state).await?;
    let org = scope(&console, q.org.as_deref());
    page(&state, &console, org, None, None, StatusCode::OK).await
}

async fn page(
    state: &AppState,
    console: &Console,
    org: Option<String>,
    created: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Page {
    if let Some(o) = &org {
        console.require_org_admin(o)?;
    } else {
        console.require_instance_admin()?;
    }
    let keys = state.core.admin.api_keys.list(org.as_deref(), &console.actor).await?;
    let org_name = match &org {
        Some(o) => Some(state.core.admin.orgs.get(&console.actor, o).await?.name),
        None => None,
    };
    let view = views::ApiKeys {
        nav: nav(console, "api-keys", None),
        csrf: console.csrf.token.clone(),
        org: org_name,
        org_id: org.unwrap_or_default(),
        keys: keys
            .into_iter()
            .map(|k| views::ApiKeyRow {
                scope: k.org_id.clone().unwrap_or_else(|| k.scope.to_owned()),
                expires: when(k.expires_at),
                last_used: k.last_used_at.map_or_else(|| "never".into(), when),
                revoked: k.revoked_at.is_some(),
                id: k.id,
                name: k.name,
                prefix: k.prefix,
            })
            .collect(),
        created,
        error,
    };
    render(state, console, status, &view)
}

#[derive(Deserialize)]
pub struct CreateForm {
    csrf_token: String,
    name: String,
    #[serde(default)]
    org: String,
    days: Option<String>,
}

pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<CreateForm>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    let org = scope(&console, Some(&form.org));
    match &org {
        Some(o) => console.require_org_admin(o)?,
        None => console.require_instance_admin()?,
    }
    let here = match &org {
        Some(o) => format!("/admin/api-keys?org={}", enc(o)),
        None => "/admin/api-keys".to_owned(),
    };
    console.require_recent_sign_in(state.core.store.now(), &here)?;
    let days: i64 = match form.days.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
        None => 90,
        Some(d) => d.parse().unwrap_or(0),
    };
    let new = NewApiKey {
        name: form.name.clone(),
        org_id: org.clone(),
        ttl_secs: days.saturating_mul(86_400),
    };
    match state.core.admin.api_keys.create(new, &console.actor).await {
        Ok(created) => {
            let secret = Some(created.secret.to_string());
            page(&state, &console, org, secret, None, StatusCode::CREATED).await
        }
        Err(e) => {
            let message = inline_or_page(e)?;
            page(&state, &console, org, None, Some(message), StatusCode::UNPROCESSABLE_ENTITY).await
        }
    }
}

#[derive(Deserialize)]
pub struct RevokeForm {
    csrf_token: String,
    #[serde(default)]
    org: String,
}

pub async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<RevokeForm>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    state.core.admin.api_keys.revoke(&path, &console.actor).await?;
    Ok(see_other(&match scope(&console, Some(&form.org)) {
        Some(o) => format!("/admin/api-keys?org={}", enc(&o)),
        None => "/admin/api-keys".to_owned(),
    }))
}
