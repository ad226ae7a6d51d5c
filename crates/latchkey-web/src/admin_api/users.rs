//! `/api/v1/users`: search and read users; change, deactivate and delete them (instance
//! credentials). An instance key sees every user; an organisation's key sees that
//! organisation's members only (others are 404, as if they did not exist).

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use latchkey_core::{
    admin::{UserPatch, UserQuery},
    identity::model::User,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{Versioned, auth::AdminActor};
use crate::{AppState, error::problem::Problem};

pub fn configure(cfg: &mut web::ServiceConfig) {
    use super::method_not_allowed as other;
    cfg.service(web::resource("/users").get(list).default_service(other("GET")))
        .service(
            web::resource("/users/{user_id}")
                .get(get)
                .patch(update)
                .delete(delete)
                .default_service(other("GET, PATCH, DELETE")),
        )
        .service(
            web::resource("/users/{user_id}/deactivate")
                .post(deactivate)
                .default_service(other("POST")),
        )
        .service(
            web::resource("/users/{user_id}/reactivate")
                .post(reactivate)
                .default_service(other("POST")),
        );
}

/// A user as the admin API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserResource {
    /// `usr_…`
    pub id: String,
    /// The primary email address (lower case).
    pub email: String,
    pub email_verified: bool,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub image_url: Option<String>,
    /// `active`, `deactivated` or `banned`.
    pub status: String,
    /// An instance administrator.
    pub is_admin: bool,
    #[schema(value_type = Object)]
    pub public_metadata: serde_json::Value,
    #[schema(value_type = Object)]
    pub private_metadata: serde_json::Value,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
    pub last_sign_in_at: Option<i64>,
}

impl From<User> for UserResource {
    fn from(u: User) -> Self {
        Self {
            status: u.status.as_str().to_owned(),
            id: u.id,
            email: u.primary_email,
            email_verified: u.email_verified,
            name: u.name,
            given_name: u.given_name,
            family_name: u.family_name,
            image_url: u.image_url,
            is_admin: u.is_admin,
            public_metadata: u.public_metadata,
            private_metadata: u.private_metadata,
            created_at: u.created_at,
            updated_at: u.updated_at,
            last_sign_in_at: u.last_sign_in_at,
        }
    }
}

/// One page of users.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserPage {
    pub data: Vec<UserResource>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsersQuery {
    /// A user ID (exact), or the start of an email address or a name (case-insensitive).
    pub q: Option<String>,
    /// The `next_cursor` of the previous page (empty: the first page).
    pub cursor: Option<String>,
    /// Users per page, 1-200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
}

/// Search users.
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "users",
    params(UsersQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of users, ordered by ID", body = UserPage),
        (status = 400, description = "A bad query, limit or cursor", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "The key may not list users", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    query: web::Query<UsersQuery>,
) -> Result<HttpResponse, Problem> {
    let UsersQuery { q, cursor, limit } = query.into_inner();
    let page = state
        .core
        .admin
        .directory
        .users(&actor.0, &UserQuery { q, cursor, limit })
        .await
        .map_err(super::problem(&req))?;
    let body = UserPage {
        data: page.data.into_iter().map(UserResource::from).collect(),
        next_cursor: page.next_cursor,
    };
    Ok(super::no_store(StatusCode::OK, &body))
}

/// Read one user. The answer carries an `ETag`; `If-None-Match` with it answers 304.
#[utoipa::path(
    get,
    path = "/api/v1/users/{user_id}",
    tag = "users",
    params(("user_id" = String, Path, description = "`usr_…`")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The user", body = UserResource,
         headers(("ETag" = String, description = "The representation's version"))),
        (status = 304, description = "Unchanged since the given ETag"),
        (status = 401, description = "No valid API key", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such user visible to this key", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let user =
        state.core.admin.directory.user(&actor.0, &path).await.map_err(super::problem(&req))?;
    Ok(versioned(user).respond(&req, StatusCode::OK))
}

fn versioned(user: User) -> Versioned {
    Versioned::of(&UserResource::from(user))
}

/// Absent stays absent (`None`); `null` is `Some(None)`: "clear this field".
pub(super) fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// The fields an administrator may change; absent fields stay as they are, `null` clears a name.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatchBody {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 256)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 256)]
    pub given_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 256)]
    pub family_name: Option<Option<String>>,
    /// Mark the primary email address verified (or not).
    pub email_verified: Option<bool>,
    /// A new primary address (the old one is released; the new one is unverified unless
    /// `email_verified` is given). 409 when another account holds it.
    #[schema(max_length = 320)]
    pub email: Option<String>,
}

/// Change a user. With `If-Match`, only if the user is still as last read (else 412).
#[utoipa::path(
    patch,
    path = "/api/v1/users/{user_id}",
    tag = "users",
    params(
        ("user_id" = String, Path, description = "`usr_…`"),
        ("If-Match" = Option<String>, Header, description = "The ETag last read; `*` for any"),
    ),
    request_body = UserPatchBody,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The changed user", body = UserResource,
         headers(("ETag" = String, description = "The new version"))),
        (status = 400, description = "An unknown field or a bad value", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not an instance key", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The new address belongs to another account", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 412, description = "The user changed since the given ETag", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn update(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
    body: super::JsonObject<UserPatchBody>,
) -> Result<HttpResponse, Problem> {
    let b = body.0;
    let patch = UserPatch {
        name: b.name,
        given_name: b.given_name,
        family_name: b.family_name,
        email_verified: b.email_verified,
        email: b.email,
    };
    let if_match = super::if_match(&req);
    let precondition = |current: &User| {
        super::precondition_holds(if_match.as_ref(), versioned(current.clone()).tag())
    };
    let user = state
        .core
        .admin
        .users
        .update(&actor.0, &path, &patch, precondition)
        .await
        .map_err(super::problem(&req))?;
    Ok(versioned(user).respond(&req, StatusCode::OK))
}

/// Delete a user (instance credentials): their sessions end (applications are told by
/// back-channel logout); their grants, memberships, external identities and addresses go.
/// The last instance administrator cannot be deleted (409).
#[utoipa::path(
    delete,
    path = "/api/v1/users/{user_id}",
    tag = "users",
    params(("user_id" = String, Path, description = "`usr_…`")),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid API key", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not an instance credential", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The last instance administrator", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    state.core.admin.users.delete(&actor.0, &path).await.map_err(super::problem(&req))?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeactivateBody {
    /// Why (kept with the account and in the audit log).
    pub reason: Option<String>,
}

/// Deactivate a user: every session is revoked at once; sign-in is refused until reactivated.
#[utoipa::path(
    post,
    path = "/api/v1/users/{user_id}/deactivate",
    tag = "users",
    params(("user_id" = String, Path, description = "`usr_…`")),
    request_body(content = Option<DeactivateBody>),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The deactivated user", body = UserResource),
        (status = 401, description = "No valid API key", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not an instance key", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn deactivate(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    // The body is optional; one that is there must be valid.
    let text = std::str::from_utf8(&body).unwrap_or("x").trim();
    let reason = if text.is_empty() || text == "null" {
        None
    } else {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Problem::bad_request(format!("body: {e}")).for_request(&req))?;
        if !value.is_object() {
            return Err(Problem::bad_request("body: must be a JSON object").for_request(&req));
        }
        serde_json::from_value::<DeactivateBody>(value)
            .map_err(|e| Problem::bad_request(format!("body: {e}")).for_request(&req))?
            .reason
    };
    set_active(&req, &state, &actor, &path, false, reason).await
}

/// Reactivate a user (revoked sessions stay revoked).
#[utoipa::path(
    post,
    path = "/api/v1/users/{user_id}/reactivate",
    tag = "users",
    params(("user_id" = String, Path, description = "`usr_…`")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The reactivated user", body = UserResource),
        (status = 401, description = "No valid API key", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not an instance key", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn reactivate(
    req: HttpRequest,
    state: web::Data<AppState>,
    actor: AdminActor,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    set_active(&req, &state, &actor, &path, true, None).await
}

async fn set_active(
    req: &HttpRequest,
    state: &AppState,
    actor: &AdminActor,
    id: &str,
    active: bool,
    reason: Option<String>,
) -> Result<HttpResponse, Problem> {
    let user = state
        .core
        .admin
        .users
        .set_active(&actor.0, id, active, reason)
        .await
        .map_err(super::problem(req))?;
    Ok(versioned(user).respond(req, StatusCode::OK))
}
