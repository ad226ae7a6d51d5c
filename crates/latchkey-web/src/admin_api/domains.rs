//! `/api/v1/organizations/{org_id}/domains`: an organisation's email domains with their
//! verification state and enrollment mode; add one (unverified: the answer carries the DNS TXT
//! record to publish; only the operator's CLI asserts ownership outright), set its enrollment
//! mode, remove it. The organisation's own checks apply (`tenancy::access`).

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use latchkey_core::tenancy::model::{EnrollmentMode, OrgDomain};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{JsonObject, auth::AdminActor};
use crate::{AppState, error::problem::Problem};

pub fn configure(cfg: &mut web::ServiceConfig) {
    use super::method_not_allowed as other;
    cfg.service(
        web::resource("/organizations/{org_id}/domains")
            .get(list)
            .post(add)
            .default_service(other("GET, POST")),
    )
    .service(
        web::resource("/organizations/{org_id}/domains/{domain_id}")
            .patch(update)
            .delete(remove)
            .default_service(other("PATCH, DELETE")),
    )
    .service(
        web::resource("/organizations/{org_id}/domains/{domain_id}/verify")
            .post(verify)
            .default_service(other("POST")),
    );
}

/// A domain as the admin API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DomainResource {
    /// `dom_…`
    pub id: String,
    pub org_id: String,
    pub domain: String,
    pub verified: bool,
    pub verified_at: Option<i64>,
    /// `dns`, `email` or `operator`, once verified.
    pub verification_method: Option<String>,
    /// `manual`, `automatic_invitation` or `automatic_suggestion`.
    pub enrollment_mode: String,
    /// While unverified: the TXT record to publish (`name` and `value`).
    pub txt_record_name: Option<String>,
    pub txt_record_value: Option<String>,
    pub created_at: i64,
}

impl From<OrgDomain> for DomainResource {
    fn from(d: OrgDomain) -> Self {
        Self {
            enrollment_mode: d.enrollment_mode.as_str().to_owned(),
            id: d.id,
            org_id: d.org_id,
            domain: d.domain,
            verified: d.verified,
            verified_at: d.verified_at,
            verification_method: d.verification_method,
            txt_record_name: d.txt_record_name,
            txt_record_value: d.txt_record_value,
            created_at: d.created_at,
        }
    }
}

/// The organisation's domains.
#[derive(Debug, Serialize, ToSchema)]
pub struct DomainList {
    pub data: Vec<DomainResource>,
}

/// A domain to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDomainBody {
    /// ASCII (punycode) form, e.g. `example.com`.
    #[schema(min_length = 1, max_length = 253)]
    pub domain: String,
    /// Instance credentials only: assert that the organisation owns the domain (verified at
    /// once, audited with the method `operator`). Organisation keys prove it by DNS.
    #[serde(default)]
    pub verified: bool,
}

/// The enrollment mode to set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainPatchBody {
    /// What happens when someone with an address in the (verified) domain signs up.
    pub enrollment_mode: EnrollmentModeDoc,
}

/// `manual`, `automatic_invitation` or `automatic_suggestion`.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnrollmentModeDoc {
    Manual,
    AutomaticInvitation,
    AutomaticSuggestion,
}

impl From<EnrollmentModeDoc> for EnrollmentMode {
    fn from(m: EnrollmentModeDoc) -> Self {
        match m {
            EnrollmentModeDoc::Manual => Self::Manual,
            EnrollmentModeDoc::AutomaticInvitation => Self::AutomaticInvitation,
            EnrollmentModeDoc::AutomaticSuggestion => Self::AutomaticSuggestion,
        }
    }
}

/// List an organisation's domains.
#[utoipa::path(
    get,
    path = "/api/v1/organizations/{org_id}/domains",
    tag = "organizations",
    params(("org_id" = String, Path, description = "`org_…`")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The domains, by name", body = DomainList),
        (status = 404, description = "No such organisation visible to this credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let domains = state.core.domains.list(&path, &actor.0).await.map_err(super::problem(&req))?;
    let body = DomainList { data: domains.into_iter().map(DomainResource::from).collect() };
    Ok(super::no_store(StatusCode::OK, &body))
}

/// Add a domain, unverified; publish the TXT record of the answer to verify it.
#[utoipa::path(
    post,
    path = "/api/v1/organizations/{org_id}/domains",
    tag = "organizations",
    params(("org_id" = String, Path, description = "`org_…`")),
    request_body = NewDomainBody,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "The domain", body = DomainResource),
        (status = 404, description = "No such organisation visible to this credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Already added", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn add(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
    body: JsonObject<NewDomainBody>,
) -> Result<HttpResponse, Problem> {
    let domains = &state.core.domains;
    let d = if body.0.verified {
        domains.add_verified(&path, &body.0.domain, &actor.0).await
    } else {
        domains.add_domain(&path, &body.0.domain, &actor.0).await
    };
    let d = d.map_err(super::problem(&req))?;
    Ok(super::no_store(StatusCode::CREATED, &DomainResource::from(d)))
}

/// Check the domain's DNS TXT record (`_latchkey-challenge.{domain}`) now; verified when it
/// holds the domain's token.
#[utoipa::path(
    post,
    path = "/api/v1/organizations/{org_id}/domains/{domain_id}/verify",
    tag = "organizations",
    params(
        ("org_id" = String, Path, description = "`org_…`"),
        ("domain_id" = String, Path, description = "`dom_…`"),
    ),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The domain, verified", body = DomainResource),
        (status = 404, description = "No such organisation or domain", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 400, description = "The TXT record is not there (yet), or DNS could not be asked", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn verify(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let (org_id, domain_id) = path.into_inner();
    let d = state
        .core
        .domains
        .verify_dns(&org_id, &domain_id, &actor.0)
        .await
        .map_err(super::problem(&req))?;
    Ok(super::no_store(StatusCode::OK, &DomainResource::from(d)))
}

/// Set a domain's enrollment mode.
#[utoipa::path(
    patch,
    path = "/api/v1/organizations/{org_id}/domains/{domain_id}",
    tag = "organizations",
    params(
        ("org_id" = String, Path, description = "`org_…`"),
        ("domain_id" = String, Path, description = "`dom_…`"),
    ),
    request_body = DomainPatchBody,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The domain", body = DomainResource),
        (status = 404, description = "No such organisation or domain", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn update(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<(String, String)>,
    body: JsonObject<DomainPatchBody>,
) -> Result<HttpResponse, Problem> {
    let (org_id, domain_id) = path.into_inner();
    let mode = body.0.enrollment_mode.into();
    let d = state
        .core
        .domains
        .set_enrollment_mode(&org_id, &domain_id, mode, &actor.0)
        .await
        .map_err(super::problem(&req))?;
    Ok(super::no_store(StatusCode::OK, &DomainResource::from(d)))
}

/// Remove a domain (members stay; pending automatic invitations it made are revoked).
#[utoipa::path(
    delete,
    path = "/api/v1/organizations/{org_id}/domains/{domain_id}",
    tag = "organizations",
    params(
        ("org_id" = String, Path, description = "`org_…`"),
        ("domain_id" = String, Path, description = "`dom_…`"),
    ),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such organisation or domain", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn remove(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let (org_id, domain_id) = path.into_inner();
    state
        .core
        .domains
        .remove_domain(&org_id, &domain_id, &actor.0)
        .await
        .map_err(super::problem(&req))?;
    Ok(HttpResponse::NoContent().finish())
}
