//! `/api/v1/keys` and `/api/v1/templates`: the signing keys (listed, rotated) and the JWT
//! templates (listed, created, read, changed, deleted, and claims previewed for a user), for
//! instance credentials only, on the same service as the console (`admin::KeyAdmin`).

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use latchkey_core::{
    infra::keys::SigningKeyInfo,
    oauth::jwt_templates::{JwtTemplate, NewTemplate},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{JsonObject, auth::AdminActor};
use crate::{AppState, error::problem::Problem};

pub fn configure(cfg: &mut web::ServiceConfig) {
    use super::method_not_allowed as other;
    cfg.service(web::resource("/keys").get(list_keys).default_service(other("GET")))
        .service(web::resource("/keys/rotate").post(rotate).default_service(other("POST")))
        .service(
            web::resource("/keys/{kid}/withdraw").post(withdraw).default_service(other("POST")),
        )
        .service(
            web::resource("/templates")
                .get(list_templates)
                .post(create_template)
                .default_service(other("GET, POST")),
        )
        .service(web::resource("/templates/preview").post(preview).default_service(other("POST")))
        .service(
            web::resource("/templates/{name}")
                .get(get_template)
                .patch(update_template)
                .delete(delete_template)
                .default_service(other("GET, PATCH, DELETE")),
        );
}

/// A signing key (its public half is in the JWKS while published).
#[derive(Debug, Serialize, ToSchema)]
pub struct SigningKeyResource {
    /// The JWK `kid`.
    pub kid: String,
    /// `ES256`, `RS256` or `EdDSA`.
    pub alg: String,
    /// `active`, `retired` (published until its tokens expire) or `withdrawn`.
    pub status: String,
    /// Unix seconds.
    pub created_at: i64,
    pub retired_at: Option<i64>,
    /// A retired key stays in the JWKS until then.
    pub publish_until: Option<i64>,
    pub published: bool,
}

impl From<SigningKeyInfo> for SigningKeyResource {
    fn from(k: SigningKeyInfo) -> Self {
        Self {
            kid: k.kid,
            alg: k.alg,
            status: k.status,
            created_at: k.created_at,
            retired_at: k.retired_at,
            publish_until: k.publish_until,
            published: k.published,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SigningKeyList {
    pub data: Vec<SigningKeyResource>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// `ES256`, `RS256` or `EdDSA`.
    pub alg: String,
}

/// The key that signs from now on, and the one it replaced (still published for a while).
#[derive(Debug, Serialize, ToSchema)]
pub struct Rotation {
    pub active: SigningKeyResource,
    pub retired: Option<SigningKeyResource>,
}

/// List the signing keys, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/keys",
    tag = "keys",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The keys", body = SigningKeyList),
        (status = 403, description = "Not an instance credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn list_keys(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
) -> Result<HttpResponse, Problem> {
    let keys = state.core.admin.keys.keys(&actor.0).await.map_err(super::problem(&req))?;
    let body = SigningKeyList { data: keys.into_iter().map(Into::into).collect() };
    Ok(super::no_store(StatusCode::OK, &body))
}

/// Rotate the signing key of one algorithm.
#[utoipa::path(
    post,
    path = "/api/v1/keys/rotate",
    tag = "keys",
    request_body = RotateBody,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "The new key and the retired one", body = Rotation),
        (status = 403, description = "Not an instance credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Another rotation of the same algorithm at the same time", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 400, description = "An unknown algorithm", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn rotate(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    body: JsonObject<RotateBody>,
) -> Result<HttpResponse, Problem> {
    let keys = &state.core.admin.keys;
    let (active, retired) =
        keys.rotate(&actor.0, &body.0.alg).await.map_err(super::problem(&req))?;
    let body = Rotation { active: active.into(), retired: retired.map(Into::into) };
    Ok(super::no_store(StatusCode::CREATED, &body))
}

/// Take a retired key out of the JWKS now: the tokens it signed stop verifying.
#[utoipa::path(
    post,
    path = "/api/v1/keys/{kid}/withdraw",
    tag = "keys",
    params(("kid" = String, Path, description = "The key's `kid`")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The key, withdrawn", body = SigningKeyResource),
        (status = 403, description = "Not an instance credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such key", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The active key (rotate first)", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn withdraw(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let key =
        state.core.admin.keys.withdraw(&actor.0, &path).await.map_err(super::problem(&req))?;
    Ok(super::no_store(StatusCode::OK, &SigningKeyResource::from(key)))
}

/// A JWT template.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateResource {
    /// `tpl_…`
    pub id: String,
    pub name: String,
    /// The claims; string values may hold `{{user.…}}`, `{{session.…}}`, `{{org.…}}`.
    #[schema(value_type = Object)]
    pub claims: serde_json::Value,
    /// `instance` (the instance's key) or `HS256`.
    pub signing: String,
    pub lifetime_secs: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<JwtTemplate> for TemplateResource {
    fn from(t: JwtTemplate) -> Self {
        Self {
            id: t.id,
            name: t.name,
            claims: t.claims,
            signing: t.signing,
            lifetime_secs: t.lifetime_secs,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateList {
    pub data: Vec<TemplateResource>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTemplateBody {
    /// 1-64 of a-z, 0-9, `-` and `_`.
    pub name: String,
    #[schema(value_type = Object)]
    pub claims: serde_json::Value,
    /// 30 to 86,400 seconds (default 60).
    pub lifetime_secs: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplatePatchBody {
    #[schema(value_type = Option<Object>)]
    pub claims: Option<serde_json::Value>,
    pub lifetime_secs: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewBody {
    #[schema(value_type = Object)]
    pub claims: serde_json::Value,
    /// The user to render for (`usr_…`); their latest live session and its organisation
    /// fill `session` and `org`, when they have one.
    pub user_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewResult {
    #[schema(value_type = Object)]
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// List the JWT templates.
#[utoipa::path(
    get,
    path = "/api/v1/templates",
    tag = "keys",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The templates", body = TemplateList),
        (status = 403, description = "Not an instance credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn list_templates(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
) -> Result<HttpResponse, Problem> {
    let list = state.core.admin.keys.templates(&actor.0).await.map_err(super::problem(&req))?;
    let body = TemplateList { data: list.into_iter().map(Into::into).collect() };
    Ok(super::no_store(StatusCode::OK, &body))
}

/// Create a JWT template (signed with the instance's key).
#[utoipa::path(
    post,
    path = "/api/v1/templates",
    tag = "keys",
    request_body = NewTemplateBody,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "The template", body = TemplateResource),
        (status = 403, description = "Not an instance credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "A template of that name exists", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 400, description = "A bad name, claims or lifetime", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn create_template(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    body: JsonObject<NewTemplateBody>,
) -> Result<HttpResponse, Problem> {
    let b = body.0;
    let new = NewTemplate {
        name: b.name,
        claims: b.claims,
        hs256_secret: None,
        lifetime_secs: b.lifetime_secs,
    };
    let t =
        state.core.admin.keys.create_template(&actor.0, new).await.map_err(super::problem(&req))?;
    Ok(super::no_store(StatusCode::CREATED, &TemplateResource::from(t)))
}

/// Read a JWT template.
#[utoipa::path(
    get,
    path = "/api/v1/templates/{name}",
    tag = "keys",
    params(("name" = String, Path, description = "The template's name")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The template", body = TemplateResource),
        (status = 403, description = "Not an instance credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such template", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn get_template(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let t = state.core.admin.keys.template(&actor.0, &path).await.map_err(super::problem(&req))?;
    Ok(super::no_store(StatusCode::OK, &TemplateResource::from(t)))
}

/// Change a JWT template's claims or lifetime (tokens already issued keep theirs).
#[utoipa::path(
    patch,
    path = "/api/v1/templates/{name}",
    tag = "keys",
    params(("name" = String, Path, description = "The template's name")),
    request_body = TemplatePatchBody,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The template", body = TemplateResource),
        (status = 403, description = "Not an instance credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such template", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 400, description = "Bad claims or lifetime", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn update_template(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
    body: JsonObject<TemplatePatchBody>,
) -> Result<HttpResponse, Problem> {
    let b = body.0;
    let keys = &state.core.admin.keys;
    let t = keys
        .update_template(&actor.0, &path, b.claims, b.lifetime_secs)
        .await
        .map_err(super::problem(&req))?;
    Ok(super::no_store(StatusCode::OK, &TemplateResource::from(t)))
}

/// Delete a JWT template (refused while an application uses it).
#[utoipa::path(
    delete,
    path = "/api/v1/templates/{name}",
    tag = "keys",
    params(("name" = String, Path, description = "The template's name")),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not an instance credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such template", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "An application uses it", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn delete_template(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    state.core.admin.keys.delete_template(&actor.0, &path).await.map_err(super::problem(&req))?;
    Ok(HttpResponse::NoContent().finish())
}

/// What claims render to for a user (nothing is signed or stored).
#[utoipa::path(
    post,
    path = "/api/v1/templates/preview",
    tag = "keys",
    request_body = PreviewBody,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The rendered claims", body = PreviewResult),
        (status = 403, description = "Not an instance credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 400, description = "Bad claims", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn preview(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    body: JsonObject<PreviewBody>,
) -> Result<HttpResponse, Problem> {
    let b = body.0;
    let keys = &state.core.admin.keys;
    let claims =
        keys.preview(&actor.0, &b.claims, &b.user_id).await.map_err(super::problem(&req))?;
    Ok(super::no_store(StatusCode::OK, &PreviewResult { claims }))
}
