//! Enterprise connections: `/api/v1/organizations/{org_id}/connections` (both kinds, and the
//! creation of a SAML connection or an EASIE enrollment) and `/api/v1/connections/{id}` (read,
//! enable or disable, delete, refresh the IdP metadata, rotate the SP key). Organisation admins'
//! keys manage their own organisation's; the same services as `latchkey connections …` and
//! the console.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use latchkey_core::{
    Error as CoreError,
    enterprise::{
        easie::{EasieOptions, NewEasieConnection, Provider},
        saml::{ConnectionOptions, IdpSource, NewConnection},
    },
};
use latchkey_saml::{binding::Binding, mapping::Preset};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{JsonObject, auth::AdminActor};
use crate::{AppState, error::problem::Problem};

pub fn configure(cfg: &mut web::ServiceConfig) {
    use super::method_not_allowed as other;
    cfg.service(
        web::resource("/organizations/{org_id}/connections")
            .get(list)
            .default_service(other("GET")),
    )
    .service(
        web::resource("/organizations/{org_id}/connections/saml")
            .post(create_saml)
            .default_service(other("POST")),
    )
    .service(
        web::resource("/organizations/{org_id}/connections/easie")
            .post(create_easie)
            .default_service(other("POST")),
    )
    .service(
        web::resource("/connections/{connection_id}")
            .get(get)
            .patch(update)
            .delete(delete)
            .default_service(other("GET, PATCH, DELETE")),
    )
    .service(
        web::resource("/connections/{connection_id}/refresh-metadata")
            .post(refresh_metadata)
            .default_service(other("POST")),
    )
    .service(
        web::resource("/connections/{connection_id}/rotate-sp-key")
            .post(rotate_sp_key)
            .default_service(other("POST")),
    );
}

/// A connection: the fields both kinds share; a SAML connection adds its SP URLs, IdP side,
/// certificates, metadata state and options, an EASIE one its provider, domain and tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionDoc {
    /// `con_…`
    pub connection_id: String,
    /// `saml` or `easie`.
    pub kind: String,
    /// `saml` or `oidc`.
    pub protocol: String,
    pub org_id: String,
    pub name: String,
    pub enabled: bool,
    /// Unix seconds.
    pub created_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionList {
    #[schema(value_type = Vec<ConnectionDoc>)]
    pub data: Vec<Value>,
}

fn json_of(v: &impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Both kinds of an organisation's connections, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{org_id}/connections",
    tag = "connections",
    params(("org_id" = String, Path, description = "`org_…`")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The connections", body = ConnectionList),
        (status = 404, description = "No such organisation visible to this credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let all = state.core.admin.connections.list(&path, &actor.0).await;
    let data = all.map_err(super::problem(&req))?.iter().map(json_of).collect();
    Ok(super::no_store(StatusCode::OK, &ConnectionList { data }))
}

/// A new SAML connection: the IdP side from `metadata_xml`, else `metadata_url` (fetched now
/// and refreshed), else the fields (`idp_entity_id`, `sso_url`, `certificates`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSamlBody {
    pub name: String,
    pub metadata_xml: Option<String>,
    pub metadata_url: Option<String>,
    pub idp_entity_id: Option<String>,
    pub sso_url: Option<String>,
    /// `redirect` (default) or `post`.
    pub sso_binding: Option<String>,
    pub slo_url: Option<String>,
    /// PEM certificates (several during a key rollover).
    #[serde(default)]
    pub certificates: Vec<String>,
    /// `okta`, `entra` or `google`: their attribute names.
    pub preset: Option<String>,
    /// Default true.
    pub sign_requests: Option<bool>,
    pub require_encryption: Option<bool>,
    pub allow_idp_initiated: Option<bool>,
    pub allow_sha1: Option<bool>,
    /// 0-300 (default 60).
    pub skew_secs: Option<i64>,
    pub name_id_format: Option<String>,
    /// IdP group → organisation role.
    #[serde(default)]
    pub group_roles: BTreeMap<String, String>,
    pub default_role: Option<String>,
    /// Addresses that may still sign in with a password.
    #[serde(default)]
    pub bypass: Vec<String>,
}

fn saml_source(b: &NewSamlBody) -> Result<IdpSource, CoreError> {
    if let Some(xml) = b.metadata_xml.clone() {
        return Ok(IdpSource::MetadataXml(xml));
    }
    if let Some(url) = b.metadata_url.clone() {
        return Ok(IdpSource::MetadataUrl(url));
    }
    let (Some(entity_id), Some(sso_url)) = (b.idp_entity_id.clone(), b.sso_url.clone()) else {
        return Err(CoreError::invalid(
            "metadata_xml",
            "give metadata_xml, metadata_url, or idp_entity_id with sso_url and certificates",
        ));
    };
    let sso_binding = match b.sso_binding.as_deref() {
        None | Some("redirect") => Binding::Redirect,
        Some("post") => Binding::Post,
        Some(_) => return Err(CoreError::invalid("sso_binding", "must be redirect or post")),
    };
    Ok(IdpSource::Manual {
        entity_id,
        sso_url,
        sso_binding,
        slo_url: b.slo_url.clone(),
        certs: b.certificates.clone(),
    })
}

fn saml_options(b: &NewSamlBody) -> Result<ConnectionOptions, CoreError> {
    let preset = match b.preset.as_deref() {
        None => None,
        Some(p) => Some(p.parse::<Preset>().map_err(|e| CoreError::invalid("preset", e))?),
    };
    let mut o = ConnectionOptions::with_preset(preset);
    o.sign_requests = b.sign_requests.unwrap_or(true);
    o.require_encryption = b.require_encryption.unwrap_or(false);
    o.allow_idp_initiated = b.allow_idp_initiated.unwrap_or(false);
    o.allow_sha1 = b.allow_sha1.unwrap_or(false);
    o.skew_secs = b.skew_secs.unwrap_or(o.skew_secs);
    o.name_id_format.clone_from(&b.name_id_format);
    o.group_roles = b.group_roles.clone();
    if let Some(role) = &b.default_role {
        o.default_role.clone_from(role);
    }
    o.bypass.clone_from(&b.bypass);
    Ok(o)
}

/// Create a SAML connection (enabled).
#[utoipa::path(
    post,
    path = "/api/v1/organizations/{org_id}/connections/saml",
    tag = "connections",
    params(("org_id" = String, Path, description = "`org_…`")),
    request_body = NewSamlBody,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "The connection", body = ConnectionDoc),
        (status = 404, description = "No such organisation visible to this credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 400, description = "Bad metadata, fields or options", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn create_saml(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
    body: JsonObject<NewSamlBody>,
) -> Result<HttpResponse, Problem> {
    let p = super::problem(&req);
    let b = body.0;
    let new = NewConnection {
        reserved_id: None,
        org_id: path.into_inner(),
        name: b.name.clone(),
        source: saml_source(&b).map_err(&p)?,
        options: saml_options(&b).map_err(&p)?,
    };
    let view = state.core.saml.create(new, &actor.0).await.map_err(&p)?;
    Ok(super::no_store(StatusCode::CREATED, &view))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEasieBody {
    /// One of the organisation's verified domains.
    pub domain: String,
    /// `google` or `microsoft`.
    pub provider: String,
    /// Microsoft only: the tenant to pin (default: the one Microsoft names for the domain).
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub bypass: Vec<String>,
}

/// Enroll a verified domain with Google Workspace or Microsoft Entra ID (EASIE).
#[utoipa::path(
    post,
    path = "/api/v1/organizations/{org_id}/connections/easie",
    tag = "connections",
    params(("org_id" = String, Path, description = "`org_…`")),
    request_body = NewEasieBody,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "The connection", body = ConnectionDoc),
        (status = 404, description = "No such organisation visible to this credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The domain is already enrolled", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 400, description = "Not a verified domain, an unknown provider or tenant", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn create_easie(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
    body: JsonObject<NewEasieBody>,
) -> Result<HttpResponse, Problem> {
    let p = super::problem(&req);
    let b = body.0;
    let provider = match b.provider.as_str() {
        "google" => Provider::Google,
        "microsoft" => Provider::Microsoft,
        _ => return Err(p(CoreError::invalid("provider", "must be google or microsoft"))),
    };
    let new = NewEasieConnection {
        org_id: path.into_inner(),
        provider,
        domain: b.domain,
        tenant_id: b.tenant_id,
        options: EasieOptions { bypass: b.bypass },
    };
    let view = state.core.easie.create(new, &actor.0).await.map_err(&p)?;
    Ok(super::no_store(StatusCode::CREATED, &view))
}

/// Read a connection.
#[utoipa::path(
    get,
    path = "/api/v1/connections/{connection_id}",
    tag = "connections",
    params(("connection_id" = String, Path, description = "`con_…`")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The connection", body = ConnectionDoc),
        (status = 404, description = "No such connection visible to this credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let view = state.core.admin.connections.show(&path, &actor.0).await;
    Ok(super::no_store(StatusCode::OK, &view.map_err(super::problem(&req))?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionPatchBody {
    /// Disabling ends every session the connection signed in (with back-channel logout).
    pub enabled: bool,
}

/// Enable or disable a connection.
#[utoipa::path(
    patch,
    path = "/api/v1/connections/{connection_id}",
    tag = "connections",
    params(("connection_id" = String, Path, description = "`con_…`")),
    request_body = ConnectionPatchBody,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The connection", body = ConnectionDoc),
        (status = 404, description = "No such connection visible to this credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn update(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
    body: JsonObject<ConnectionPatchBody>,
) -> Result<HttpResponse, Problem> {
    let view = state.core.admin.connections.set_enabled(&path, body.0.enabled, &actor.0).await;
    Ok(super::no_store(StatusCode::OK, &view.map_err(super::problem(&req))?))
}

/// Delete a connection: its sessions end; the users it made stay.
#[utoipa::path(
    delete,
    path = "/api/v1/connections/{connection_id}",
    tag = "connections",
    params(("connection_id" = String, Path, description = "`con_…`")),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such connection visible to this credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    state.core.admin.connections.delete(&path, &actor.0).await.map_err(super::problem(&req))?;
    Ok(HttpResponse::NoContent().finish())
}

/// Fetch a SAML connection's IdP metadata now (a failure keeps the last good copy).
#[utoipa::path(
    post,
    path = "/api/v1/connections/{connection_id}/refresh-metadata",
    tag = "connections",
    params(("connection_id" = String, Path, description = "`con_…`")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The connection", body = ConnectionDoc),
        (status = 404, description = "No such SAML connection visible to this credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 400, description = "The connection has no metadata URL", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn refresh_metadata(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let p = super::problem(&req);
    let view = state.core.saml.refresh_metadata(&path, &actor.0).await.map_err(&p)?;
    Ok(super::no_store(StatusCode::OK, &view))
}

/// Rotate a SAML connection's SP key pair (both certificates are published during the
/// overlap).
#[utoipa::path(
    post,
    path = "/api/v1/connections/{connection_id}/rotate-sp-key",
    tag = "connections",
    params(("connection_id" = String, Path, description = "`con_…`")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The connection", body = ConnectionDoc),
        (status = 404, description = "No such SAML connection visible to this credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn rotate_sp_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let p = super::problem(&req);
    let view = state.core.saml.rotate_sp_key(&path, &actor.0).await.map_err(&p)?;
    Ok(super::no_store(StatusCode::OK, &view))
}
