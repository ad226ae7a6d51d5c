//! `/api/v1/applications`: the OAuth / OpenID Connect clients (relying parties), for instance
//! credentials only: listed by cursor, registered (a confidential client's secret is in the
//! answer, once), read with an `ETag`, changed with `If-Match`, their secret rotated, deleted.
//! The same core service as `latchkey clients …` (`admin::AppAdmin`).

use actix_web::{
    HttpRequest, HttpResponse,
    http::{StatusCode, header},
    web,
};
use latchkey_core::{
    admin::AppQuery,
    oauth::clients::{Client, ClientPatch, DEFAULT_SECRET_OVERLAP_SECS, NewClient},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{JsonObject, Versioned, auth::AdminActor, users::present};
use crate::{AppState, error::problem::Problem};

pub fn configure(cfg: &mut web::ServiceConfig) {
    use super::method_not_allowed as other;
    cfg.service(
        web::resource("/applications").get(list).post(create).default_service(other("GET, POST")),
    )
    .service(
        web::resource("/applications/{client_id}")
            .get(get)
            .patch(update)
            .delete(delete)
            .default_service(other("GET, PATCH, DELETE")),
    )
    .service(
        web::resource("/applications/{client_id}/rotate-secret")
            .post(rotate_secret)
            .default_service(other("POST")),
    );
}

/// An application (OAuth / OpenID Connect client) as the admin API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApplicationResource {
    /// The OAuth `client_id` (`client_…`).
    pub id: String,
    pub name: String,
    /// `confidential` or `public`.
    pub client_type: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    /// `client_secret_basic`, `client_secret_post`, `private_key_jwt` or `none`.
    pub token_endpoint_auth_method: String,
    /// The client's public keys, for `private_key_jwt`.
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    /// Users are not asked for consent.
    pub first_party: bool,
    pub backchannel_logout_uri: Option<String>,
    /// The scopes the client may ask for.
    pub scopes: Vec<String>,
    pub require_pkce: bool,
    /// `RS256`, `ES256` or `EdDSA`.
    pub id_token_alg: String,
    pub access_token_ttl_secs: i64,
    pub id_token_ttl_secs: i64,
    pub refresh_token_ttl_secs: i64,
    /// Audiences (APIs) its access tokens may be aimed at with `resource` (RFC 8707).
    pub audiences: Vec<String>,
    /// The JWT template whose claims are added to access tokens.
    pub access_token_template: Option<String>,
    /// The JWT template whose claims are added to ID tokens.
    pub id_token_template: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<Client> for ApplicationResource {
    fn from(c: Client) -> Self {
        Self {
            client_type: c.client_type.as_str().to_owned(),
            id: c.client_id,
            name: c.name,
            redirect_uris: c.redirect_uris,
            post_logout_redirect_uris: c.post_logout_redirect_uris,
            grant_types: c.grant_types,
            token_endpoint_auth_method: c.token_endpoint_auth_method,
            jwks: c.jwks,
            first_party: c.first_party,
            backchannel_logout_uri: c.backchannel_logout_uri,
            scopes: c.allowed_scopes,
            require_pkce: c.require_pkce,
            id_token_alg: c.id_token_alg,
            access_token_ttl_secs: c.access_token_ttl_secs,
            id_token_ttl_secs: c.id_token_ttl_secs,
            refresh_token_ttl_secs: c.refresh_token_ttl_secs,
            audiences: c.audiences,
            access_token_template: c.access_token_template,
            id_token_template: c.id_token_template,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// An application with its client secret, shown this once (absent for public clients and
/// `private_key_jwt`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApplicationWithSecret {
    #[serde(flatten)]
    pub application: ApplicationResource,
    pub client_secret: Option<String>,
}

/// One page of applications.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApplicationPage {
    pub data: Vec<ApplicationResource>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApplicationsQuery {
    /// The `next_cursor` of the previous page (empty: the first page).
    pub cursor: Option<String>,
    /// Applications per page, 1-200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
}

/// A new application; absent lists take the defaults of the client type.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApplicationBody {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    /// A browser or native app: no secret, PKCE required.
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Default: `authorization_code` and `refresh_token`.
    #[serde(default)]
    pub grant_types: Vec<String>,
    /// Default: `client_secret_basic` (confidential) or `none` (public).
    pub token_endpoint_auth_method: Option<String>,
    /// A JWK set, for `private_key_jwt`.
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    #[serde(default)]
    pub first_party: bool,
    pub backchannel_logout_uri: Option<String>,
    /// Default: `openid profile email offline_access organization`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `RS256` (default), `ES256` or `EdDSA`.
    pub id_token_alg: Option<String>,
    /// 60-3600 (default 300).
    pub access_token_ttl_secs: Option<i64>,
    /// APIs its access tokens may be aimed at with `resource` (RFC 8707).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Needs the `authorization_code` grant type.
    pub access_token_template: Option<String>,
    pub id_token_template: Option<String>,
}

/// The fields an administrator may change; absent fields stay as they are, a list replaces
/// the registered one, `null` clears an optional field. The client type and authentication
/// method are fixed at registration.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplicationPatchBody {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// An empty list means the defaults.
    pub grant_types: Option<Vec<String>>,
    /// An empty list means the defaults.
    pub scopes: Option<Vec<String>>,
    pub first_party: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub backchannel_logout_uri: Option<Option<String>>,
    pub id_token_alg: Option<String>,
    pub access_token_ttl_secs: Option<i64>,
    pub audiences: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub access_token_template: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub id_token_template: Option<Option<String>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RotateQuery {
    /// Seconds the previous secret stays valid (0 ends it at once; default 86400).
    #[param(minimum = 0, maximum = 2592000)]
    pub overlap_secs: Option<i64>,
}

fn versioned(client: Client) -> Versioned {
    Versioned::of(&ApplicationResource::from(client))
}

fn with_secret(client: Client, secret: Option<String>) -> ApplicationWithSecret {
    ApplicationWithSecret { application: client.into(), client_secret: secret }
}

/// List applications.
#[utoipa::path(
    get,
    path = "/api/v1/applications",
    tag = "applications",
    params(ApplicationsQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of applications, ordered by ID", body = ApplicationPage),
        (status = 400, description = "A bad limit or cursor", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not an instance credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    query: web::Query<ApplicationsQuery>,
) -> Result<HttpResponse, Problem> {
    let ApplicationsQuery { cursor, limit } = query.into_inner();
    let page = state
        .core
        .admin
        .apps
        .list(&actor.0, &AppQuery { cursor, limit })
        .await
        .map_err(super::problem(&req))?;
    let body = ApplicationPage {
        data: page.data.into_iter().map(ApplicationResource::from).collect(),
        next_cursor: page.next_cursor,
    };
    Ok(super::no_store(StatusCode::OK, &body))
}

/// Register an application. A confidential client's secret is in the answer, once.
#[utoipa::path(
    post,
    path = "/api/v1/applications",
    tag = "applications",
    request_body = NewApplicationBody,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "The new application, with its secret", body = ApplicationWithSecret),
        (status = 400, description = "A bad value", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not an instance credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    body: JsonObject<NewApplicationBody>,
) -> Result<HttpResponse, Problem> {
    let b = body.0;
    let new = NewClient {
        name: b.name,
        public: b.public,
        redirect_uris: b.redirect_uris,
        post_logout_redirect_uris: b.post_logout_redirect_uris,
        grant_types: b.grant_types,
        token_endpoint_auth_method: b.token_endpoint_auth_method,
        jwks: b.jwks,
        first_party: b.first_party,
        backchannel_logout_uri: b.backchannel_logout_uri,
        allowed_scopes: b.scopes,
        id_token_alg: b.id_token_alg,
        access_token_ttl_secs: b.access_token_ttl_secs,
        audiences: b.audiences,
        access_token_template: b.access_token_template,
        id_token_template: b.id_token_template,
    };
    let created =
        state.core.admin.apps.create(&actor.0, new).await.map_err(super::problem(&req))?;
    let location = format!("/api/v1/applications/{}", created.client.client_id);
    let body = with_secret(created.client, created.client_secret);
    let mut res = super::no_store(StatusCode::CREATED, &body);
    if let Ok(v) = header::HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// Read an application, with its `ETag`.
#[utoipa::path(
    get,
    path = "/api/v1/applications/{client_id}",
    tag = "applications",
    params(("client_id" = String, Path, description = "`client_…`")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The application", body = ApplicationResource,
         headers(("ETag" = String, description = "The representation's version"))),
        (status = 304, description = "Unchanged since the given ETag"),
        (status = 403, description = "Not an instance credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such application", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let client = state.core.admin.apps.get(&actor.0, &path).await.map_err(super::problem(&req))?;
    Ok(versioned(client).respond(&req, StatusCode::OK))
}

/// Change an application, checked as a registration is. With `If-Match`, only if unchanged
/// (else 412).
#[utoipa::path(
    patch,
    path = "/api/v1/applications/{client_id}",
    tag = "applications",
    params(
        ("client_id" = String, Path, description = "`client_…`"),
        ("If-Match" = Option<String>, Header, description = "The ETag last read; `*` for any"),
    ),
    request_body = ApplicationPatchBody,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The changed application", body = ApplicationResource,
         headers(("ETag" = String, description = "The new version"))),
        (status = 400, description = "An unknown field or a bad value", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not an instance credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such application", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 412, description = "Changed since the given ETag", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn update(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
    body: JsonObject<ApplicationPatchBody>,
) -> Result<HttpResponse, Problem> {
    let b = body.0;
    let patch = ClientPatch {
        name: b.name,
        redirect_uris: b.redirect_uris,
        post_logout_redirect_uris: b.post_logout_redirect_uris,
        grant_types: b.grant_types,
        allowed_scopes: b.scopes,
        first_party: b.first_party,
        backchannel_logout_uri: b.backchannel_logout_uri,
        id_token_alg: b.id_token_alg,
        access_token_ttl_secs: b.access_token_ttl_secs,
        audiences: b.audiences,
        access_token_template: b.access_token_template,
        id_token_template: b.id_token_template,
    };
    let if_match = super::if_match(&req);
    let precondition = |current: &Client| {
        super::precondition_holds(if_match.as_ref(), versioned(current.clone()).tag())
    };
    let client = state
        .core
        .admin
        .apps
        .update(&actor.0, &path, &patch, precondition)
        .await
        .map_err(super::problem(&req))?;
    Ok(versioned(client).respond(&req, StatusCode::OK))
}

/// Delete an application: its secrets stop working at once; its grants and refresh tokens go.
#[utoipa::path(
    delete,
    path = "/api/v1/applications/{client_id}",
    tag = "applications",
    params(("client_id" = String, Path, description = "`client_…`")),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not an instance credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such application", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    state.core.admin.apps.delete(&actor.0, &path).await.map_err(super::problem(&req))?;
    Ok(HttpResponse::NoContent().finish())
}

/// Issue a new client secret (in the answer, once); the previous one keeps working for
/// `overlap_secs`.
#[utoipa::path(
    post,
    path = "/api/v1/applications/{client_id}/rotate-secret",
    tag = "applications",
    params(("client_id" = String, Path, description = "`client_…`"), RotateQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The application, with its new secret", body = ApplicationWithSecret),
        (status = 400, description = "A bad overlap, or a client without a secret", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not an instance credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such application", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn rotate_secret(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
    query: web::Query<RotateQuery>,
) -> Result<HttpResponse, Problem> {
    let overlap = query.overlap_secs.unwrap_or(DEFAULT_SECRET_OVERLAP_SECS);
    let (client, secret) = state
        .core
        .admin
        .apps
        .rotate_secret(&actor.0, &path, overlap)
        .await
        .map_err(super::problem(&req))?;
    Ok(super::no_store(StatusCode::OK, &with_secret(client, Some(secret))))
}
