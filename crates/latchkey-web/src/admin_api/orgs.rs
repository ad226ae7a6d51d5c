//! `/api/v1/organizations`: list and search, create (instance keys), read and change (with
//! `If-Match`). An organisation's key sees only its own organisation.

use actix_web::{
    HttpRequest, HttpResponse,
    http::{StatusCode, header},
    web,
};
use latchkey_core::{
    admin::{OrgPatch, OrgQuery},
    tenancy::model::Organisation,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{Versioned, auth::AdminActor};
use crate::{AppState, error::problem::Problem};

pub fn configure(cfg: &mut web::ServiceConfig) {
    use super::method_not_allowed as other;
    cfg.service(
        web::resource("/organizations").get(list).post(create).default_service(other("GET, POST")),
    )
    .service(
        web::resource("/organizations/{org_id}")
            .get(get)
            .patch(update)
            .delete(delete)
            .default_service(other("GET, PATCH, DELETE")),
    );
}

/// An organisation as the admin API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationResource {
    /// `org_…`
    pub id: String,
    pub name: String,
    /// URL-safe short name, unique on the instance.
    pub slug: String,
    /// Unix seconds.
    pub created_at: i64,
}

impl From<Organisation> for OrganizationResource {
    fn from(o: Organisation) -> Self {
        Self { id: o.id, name: o.name, slug: o.slug, created_at: o.created_at }
    }
}

/// One page of organisations.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationPage {
    pub data: Vec<OrganizationResource>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrganizationsQuery {
    /// An organisation ID (exact), or the start of a slug or a name (case-insensitive).
    pub q: Option<String>,
    /// The `next_cursor` of the previous page (empty: the first page).
    pub cursor: Option<String>,
    /// Organisations per page, 1-200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
}

/// A new organisation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrganizationBody {
    #[schema(min_length = 1, max_length = 256, pattern = r"\S")]
    pub name: String,
    /// 2-64 lower-case letters, digits and single hyphens.
    #[schema(min_length = 2, max_length = 64, pattern = r"^[a-z0-9]+(-[a-z0-9]+)*$")]
    pub slug: String,
}

/// The fields an administrator may change; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganizationPatchBody {
    #[schema(min_length = 1, max_length = 256, pattern = r"\S")]
    pub name: Option<String>,
    #[schema(min_length = 2, max_length = 64, pattern = r"^[a-z0-9]+(-[a-z0-9]+)*$")]
    pub slug: Option<String>,
}

fn versioned(org: Organisation) -> Versioned {
    Versioned::of(&OrganizationResource::from(org))
}

/// List and search organisations.
#[utoipa::path(
    get,
    path = "/api/v1/organizations",
    tag = "organizations",
    params(OrganizationsQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of organisations, ordered by ID", body = OrganizationPage),
        (status = 400, description = "A bad query, limit or cursor", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    query: web::Query<OrganizationsQuery>,
) -> Result<HttpResponse, Problem> {
    let OrganizationsQuery { q, cursor, limit } = query.into_inner();
    let page = state
        .core
        .admin
        .orgs
        .list(&actor.0, &OrgQuery { q, cursor, limit })
        .await
        .map_err(super::problem(&req))?;
    let body = OrganizationPage {
        data: page.data.into_iter().map(OrganizationResource::from).collect(),
        next_cursor: page.next_cursor,
    };
    Ok(super::no_store(StatusCode::OK, &body))
}

/// Create an organisation (instance keys).
#[utoipa::path(
    post,
    path = "/api/v1/organizations",
    tag = "organizations",
    request_body = NewOrganizationBody,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "The new organisation", body = OrganizationResource),
        (status = 400, description = "A bad name or slug", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not an instance key", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The slug is taken", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    body: super::JsonObject<NewOrganizationBody>,
) -> Result<HttpResponse, Problem> {
    let org = state
        .core
        .admin
        .orgs
        .create(&actor.0, &body.0.name, &body.0.slug)
        .await
        .map_err(super::problem(&req))?;
    let location = format!("/api/v1/organizations/{}", org.id);
    let mut res = versioned(org).respond(&req, StatusCode::CREATED);
    if let Ok(v) = header::HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// Read an organisation, with its `ETag`.
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{org_id}",
    tag = "organizations",
    params(("org_id" = String, Path, description = "`org_…`")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The organisation", body = OrganizationResource),
        (status = 304, description = "Unchanged since the given ETag"),
        (status = 404, description = "No such organisation visible to this key", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let org = state.core.admin.orgs.get(&actor.0, &path).await.map_err(super::problem(&req))?;
    Ok(versioned(org).respond(&req, StatusCode::OK))
}

/// Rename an organisation or change its slug. With `If-Match`, only if unchanged (else 412).
#[utoipa::path(
    patch,
    path = "/api/v1/organizations/{org_id}",
    tag = "organizations",
    params(
        ("org_id" = String, Path, description = "`org_…`"),
        ("If-Match" = Option<String>, Header, description = "The ETag last read; `*` for any"),
    ),
    request_body = OrganizationPatchBody,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The changed organisation", body = OrganizationResource),
        (status = 400, description = "A bad name or slug", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such organisation visible to this key", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The slug is taken", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 412, description = "Changed since the given ETag", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn update(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
    body: super::JsonObject<OrganizationPatchBody>,
) -> Result<HttpResponse, Problem> {
    let b = body.0;
    let patch = OrgPatch { name: b.name, slug: b.slug };
    let if_match = super::if_match(&req);
    let precondition = |current: &Organisation| {
        super::precondition_holds(if_match.as_ref(), versioned(current.clone()).tag())
    };
    let org = state
        .core
        .admin
        .orgs
        .update(&actor.0, &path, &patch, precondition)
        .await
        .map_err(super::problem(&req))?;
    Ok(versioned(org).respond(&req, StatusCode::OK))
}

/// Delete an organisation (instance credentials): its connections end the sessions they signed
/// in; its memberships, domains, invitations and keys go with it; users stay.
#[utoipa::path(
    delete,
    path = "/api/v1/organizations/{org_id}",
    tag = "organizations",
    params(("org_id" = String, Path, description = "`org_…`")),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not an instance credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such organisation", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    state.core.admin.orgs.delete(&actor.0, &path).await.map_err(super::problem(&req))?;
    Ok(HttpResponse::NoContent().finish())
}
