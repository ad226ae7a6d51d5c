//! Enterprise connections in the console: the SAML wizard (the SP values to paste into the
//! IdP first, for a connection ID reserved by the page; then the IdP's metadata, by paste, URL
//! or fields; attribute names and options), the EASIE form (a verified domain with Google or
//! Microsoft), and one connection's page (details, certificates and their expiry, the last
//! metadata refresh, enable, disable, refresh, rotate the SP key, delete, test).

use actix_web::{HttpRequest, http::StatusCode, web};
use latchkey_core::{
    Error as CoreError,
    admin::AnyConnection,
    enterprise::{
        easie::EasieConnectionView,
        easie::connections::{EasieOptions, NewEasieConnection},
        saml::{ConnectionOptions, ConnectionView, IdpSource, NewConnection},
    },
    infra::ids,
};
use latchkey_saml::{binding::Binding, mapping::Preset};
use serde::Deserialize;

use super::{Console, CsrfOnly, Page, enc, inline_or_page, nav, render, views, when};
use crate::{AppState, pages::support::see_other};

#[derive(Deserialize)]
pub struct WizardQuery {
    connection_id: Option<String>,
}

/// Step 1: the SP values for a reserved connection ID (kept in the address, so a reload
/// shows the same ones).
pub async fn saml_new(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<WizardQuery>,
) -> Page {
    let console = Console::load(&req, &state).await?;
    console.require_org_admin(&path)?;
    let Some(id) = q.connection_id.clone().filter(|i| ids::is_valid(ids::SAML_CONNECTION, i))
    else {
        let id = ids::new_id(ids::SAML_CONNECTION);
        let here =
            format!("/admin/organizations/{path}/connections/saml/new?connection_id={}", enc(&id));
        return Ok(see_other(&here));
    };
    let draft = views::SamlDraft {
        sign_requests: Some("on".into()),
        skew: Some("60".into()),
        ..views::SamlDraft::default()
    };
    wizard(&state, &console, &path, id, draft, None, StatusCode::OK).await
}

async fn wizard(
    state: &AppState,
    console: &Console,
    org_id: &str,
    connection_id: String,
    draft: views::SamlDraft,
    error: Option<String>,
    status: StatusCode,
) -> Page {
    let org = state.core.admin.orgs.get(&console.actor, org_id).await?;
    let urls = state.core.saml.urls(&connection_id);
    let view = views::SamlNew {
        nav: nav(console, "organizations", None),
        csrf: console.csrf.token.clone(),
        org_id: org.id,
        org_name: org.name,
        connection_id,
        sp_entity_id: urls.sp_entity_id,
        acs_url: urls.acs_url,
        metadata_url: urls.metadata_url,
        form: form_view(draft),
        error,
    };
    render(state, console, status, &view)
}

fn form_view(d: views::SamlDraft) -> views::SamlFormView {
    views::SamlFormView {
        sign_requests: d.sign_requests.is_some(),
        require_encryption: d.require_encryption.is_some(),
        allow_idp_initiated: d.allow_idp_initiated.is_some(),
        allow_sha1: d.allow_sha1.is_some(),
        skew: d.skew.as_deref().and_then(|s| s.trim().parse().ok()).unwrap_or(60),
        name: d.name,
        metadata_xml: d.metadata_xml,
        metadata_url: d.metadata_url,
        idp_entity_id: d.idp_entity_id,
        sso_url: d.sso_url,
        sso_binding: d.sso_binding,
        certificate: d.certificate,
        preset: d.preset,
        map_email: d.map_email,
        map_groups: d.map_groups,
        group_roles: d.group_roles,
        bypass: d.bypass,
    }
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

/// Where the IdP side comes from: pasted metadata, else a URL, else the fields.
fn source(d: &views::SamlDraft) -> Result<IdpSource, CoreError> {
    if !d.metadata_xml.trim().is_empty() {
        return Ok(IdpSource::MetadataXml(d.metadata_xml.trim().to_owned()));
    }
    if !d.metadata_url.trim().is_empty() {
        return Ok(IdpSource::MetadataUrl(d.metadata_url.trim().to_owned()));
    }
    if d.idp_entity_id.trim().is_empty() || d.sso_url.trim().is_empty() {
        return Err(CoreError::invalid(
            "metadata",
            "paste the IdP metadata, give its URL, or fill in the entity ID, SSO URL and certificate",
        ));
    }
    // Several PEM blocks for a rollover: split at each BEGIN.
    let certs: Vec<String> = d
        .certificate
        .split("-----BEGIN CERTIFICATE-----")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| format!("-----BEGIN CERTIFICATE-----\n{c}"))
        .collect();
    Ok(IdpSource::Manual {
        entity_id: d.idp_entity_id.trim().to_owned(),
        sso_url: d.sso_url.trim().to_owned(),
        sso_binding: if d.sso_binding == "post" { Binding::Post } else { Binding::Redirect },
        slo_url: None,
        certs,
    })
}

fn options(d: &views::SamlDraft) -> Result<ConnectionOptions, CoreError> {
    let preset = match d.preset.as_str() {
        "" => None,
        other => Some(other.parse::<Preset>().map_err(|e| CoreError::invalid("preset", e))?),
    };
    let mut o = ConnectionOptions::with_preset(preset);
    o.sign_requests = d.sign_requests.is_some();
    o.require_encryption = d.require_encryption.is_some();
    o.allow_idp_initiated = d.allow_idp_initiated.is_some();
    o.allow_sha1 = d.allow_sha1.is_some();
    o.skew_secs = match d.skew.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => 60,
        Some(s) => {
            s.parse().map_err(|_| CoreError::invalid("skew", "must be a number of seconds"))?
        }
    };
    if !d.map_email.trim().is_empty() {
        o.mapping.email = vec![d.map_email.trim().to_owned()];
    }
    if !d.map_groups.trim().is_empty() {
        o.mapping.groups = vec![d.map_groups.trim().to_owned()];
    }
    for pair in lines(&d.group_roles) {
        let (group, role) = pair
            .split_once('=')
            .ok_or_else(|| CoreError::invalid("group_roles", "write each line as GROUP=ROLE"))?;
        o.group_roles.insert(group.trim().to_owned(), role.trim().to_owned());
    }
    o.bypass = lines(&d.bypass);
    Ok(o)
}

/// The most a wizard submission may carry (metadata files included).
const MAX_WIZARD_BYTES: usize = 1024 * 1024;

/// The wizard's fields from its multipart form (the metadata may come as a file).
fn draft_from(mut f: std::collections::HashMap<String, String>) -> views::SamlDraft {
    let mut take = |k: &str| f.remove(k).unwrap_or_default();
    let file = take("metadata_file");
    let pasted = take("metadata_xml");
    views::SamlDraft {
        // An uploaded file wins over the text box (the page keeps what was pasted otherwise).
        metadata_xml: if file.trim().is_empty() { pasted } else { file },
        name: take("name"),
        metadata_url: take("metadata_url"),
        idp_entity_id: take("idp_entity_id"),
        sso_url: take("sso_url"),
        sso_binding: take("sso_binding"),
        certificate: take("certificate"),
        preset: take("preset"),
        map_email: take("map_email"),
        map_groups: take("map_groups"),
        group_roles: take("group_roles"),
        bypass: take("bypass"),
        sign_requests: Some(take("sign_requests")).filter(|v| !v.is_empty()),
        require_encryption: Some(take("require_encryption")).filter(|v| !v.is_empty()),
        allow_idp_initiated: Some(take("allow_idp_initiated")).filter(|v| !v.is_empty()),
        allow_sha1: Some(take("allow_sha1")).filter(|v| !v.is_empty()),
        skew: Some(take("skew")).filter(|v| !v.is_empty()),
    }
}

pub async fn saml_create(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: actix_multipart::Multipart,
) -> Page {
    let mut fields = super::multipart::text_fields(form, MAX_WIZARD_BYTES).await?;
    let csrf_token = fields.remove("csrf_token").unwrap_or_default();
    let console = Console::submit(&req, &state, &csrf_token).await?;
    console.require_org_admin(&path)?;
    let connection_id = fields.remove("connection_id").unwrap_or_default();
    let draft = draft_from(fields);
    let made = match (source(&draft), options(&draft)) {
        (Ok(source), Ok(options)) => {
            let new = NewConnection {
                reserved_id: Some(connection_id.clone()),
                org_id: path.clone(),
                name: draft.name.clone(),
                source,
                options,
            };
            state.core.saml.create(new, &console.actor).await
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    match made {
        Ok(c) => Ok(see_other(&format!("/admin/connections/{}", c.connection_id))),
        Err(e) => {
            let message = inline_or_page(e)?;
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            wizard(&state, &console, &path, connection_id, draft, Some(message), status).await
        }
    }
}

pub async fn easie_new(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Page {
    let console = Console::load(&req, &state).await?;
    console.require_org_admin(&path)?;
    easie_page(&state, &console, &path, None, StatusCode::OK).await
}

async fn easie_page(
    state: &AppState,
    console: &Console,
    org_id: &str,
    error: Option<String>,
    status: StatusCode,
) -> Page {
    let org = state.core.admin.orgs.get(&console.actor, org_id).await?;
    let domains = state.core.domains.list(org_id, &console.actor).await?;
    let view = views::EasieNew {
        nav: nav(console, "organizations", None),
        csrf: console.csrf.token.clone(),
        org_id: org.id,
        org_name: org.name,
        domains: domains.into_iter().filter(|d| d.verified).map(|d| d.domain).collect(),
        error,
    };
    render(state, console, status, &view)
}

#[derive(Deserialize)]
pub struct EasieForm {
    csrf_token: String,
    domain: String,
    provider: String,
    #[serde(default)]
    tenant_id: String,
    #[serde(default)]
    bypass: String,
}

pub async fn easie_create(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<EasieForm>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    console.require_org_admin(&path)?;
    let provider = match form.provider.as_str() {
        "google" => latchkey_core::enterprise::easie::Provider::Google,
        "microsoft" => latchkey_core::enterprise::easie::Provider::Microsoft,
        _ => return Err(CoreError::invalid("provider", "must be google or microsoft").into()),
    };
    let new = NewEasieConnection {
        org_id: path.clone(),
        provider,
        domain: form.domain.clone(),
        tenant_id: Some(form.tenant_id.trim().to_owned()).filter(|t| !t.is_empty()),
        options: EasieOptions { bypass: lines(&form.bypass) },
    };
    match state.core.easie.create(new, &console.actor).await {
        Ok(c) => Ok(see_other(&format!("/admin/connections/{}", c.connection_id))),
        Err(e) => {
            let message = inline_or_page(e)?;
            easie_page(&state, &console, &path, Some(message), StatusCode::UNPROCESSABLE_ENTITY)
                .await
        }
    }
}

pub async fn show(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> Page {
    let console = Console::load(&req, &state).await?;
    let summary = summary(&state, &console, &path).await?;
    let view = views::ConnectionPage {
        nav: nav(&console, "organizations", None),
        csrf: console.csrf.token.clone(),
        c: summary,
    };
    render(&state, &console, StatusCode::OK, &view)
}

async fn summary(
    state: &AppState,
    console: &Console,
    id: &str,
) -> Result<views::ConnectionSummary, crate::error::page::PageError> {
    Ok(match state.core.admin.connections.show(id, &console.actor).await? {
        AnyConnection::Saml(c) => saml_summary(*c),
        AnyConnection::Easie(c) => easie_summary(*c),
    })
}

fn easie_summary(c: EasieConnectionView) -> views::ConnectionSummary {
    let facts = vec![
        ("Provider".to_owned(), format!("{:?}", c.provider)),
        ("Domain".to_owned(), c.domain.clone()),
        ("Tenant".to_owned(), c.tenant_id.clone().unwrap_or_else(|| "—".into())),
        ("Sign-in URL".to_owned(), c.login_url.clone()),
        ("Break-glass addresses".to_owned(), c.options.bypass.join(", ")),
        ("Created".to_owned(), when(c.created_at)),
    ];
    views::ConnectionSummary {
        id: c.connection_id,
        kind: "EASIE",
        name: c.name,
        org_id: c.org_id,
        enabled: c.enabled,
        warnings: c.warnings,
        facts,
        certificates: Vec::new(),
    }
}

fn saml_summary(c: ConnectionView) -> views::ConnectionSummary {
    let refreshed = match (&c.idp_metadata_url, c.metadata_refreshed_at) {
        (None, _) => "not fetched (given by paste or fields)".to_owned(),
        (Some(_), Some(at)) => when(at),
        (Some(_), None) => "never".to_owned(),
    };
    let mut facts = vec![
        ("SP entity ID".to_owned(), c.urls.sp_entity_id.clone()),
        ("ACS URL".to_owned(), c.urls.acs_url.clone()),
        ("SP metadata URL".to_owned(), c.urls.metadata_url.clone()),
        ("IdP entity ID".to_owned(), c.idp_entity_id.clone()),
        (
            "IdP SSO URL".to_owned(),
            c.idp_sso_redirect_url.clone().or(c.idp_sso_post_url.clone()).unwrap_or_default(),
        ),
        ("IdP metadata URL".to_owned(), c.idp_metadata_url.clone().unwrap_or_else(|| "—".into())),
        ("Last metadata refresh".to_owned(), refreshed),
    ];
    if let Some(e) = &c.metadata_error {
        facts.push(("Last refresh error".to_owned(), e.clone()));
    }
    facts.push(("Options".to_owned(), serde_json::to_string(&c.options).unwrap_or_default()));
    let cert = |whose: &str, v: &latchkey_core::enterprise::saml::connections::CertificateView| {
        (whose.to_owned(), v.sha256.clone(), when(v.not_after), v.expires_soon)
    };
    let mut certificates: Vec<_> =
        c.idp_certificates.iter().map(|v| cert("IdP signing", v)).collect();
    certificates.extend(c.sp_certificates.iter().map(|v| cert("Latchkey (SP)", v)));
    views::ConnectionSummary {
        id: c.connection_id,
        kind: "SAML",
        name: c.name,
        org_id: c.org_id,
        enabled: c.enabled,
        warnings: c.warnings,
        facts,
        certificates,
    }
}

pub async fn enable(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    state.core.admin.connections.set_enabled(&path, true, &console.actor).await?;
    Ok(see_other(&format!("/admin/connections/{path}")))
}

pub async fn disable(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    state.core.admin.connections.set_enabled(&path, false, &console.actor).await?;
    Ok(see_other(&format!("/admin/connections/{path}")))
}

pub async fn refresh_metadata(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    state.core.saml.refresh_metadata(&path, &console.actor).await?;
    Ok(see_other(&format!("/admin/connections/{path}")))
}

pub async fn rotate_sp_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    console
        .require_recent_sign_in(state.core.store.now(), &format!("/admin/connections/{path}"))?;
    state.core.saml.rotate_sp_key(&path, &console.actor).await?;
    Ok(see_other(&format!("/admin/connections/{path}")))
}

pub async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    console
        .require_recent_sign_in(state.core.store.now(), &format!("/admin/connections/{path}"))?;
    let connections = &state.core.admin.connections;
    let org_id = connections.show(&path, &console.actor).await?.org_id().to_owned();
    connections.delete(&path, &console.actor).await?;
    Ok(see_other(&format!("/admin/organizations/{org_id}")))
}

/// "Test connection": a sign-in at the IdP whose answer comes back as a page of what the
/// mapping made of it (see `SamlService::start_test`), in the tab the button opened.
pub async fn test(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> Page {
    let console = Console::load(&req, &state).await?;
    let browser = crate::pending::browser_binding(&req, &state);
    let start = state.core.saml.start_test(&path, &browser, &console.actor).await?;
    crate::saml::bound_start(&state, &browser, start)
}
