//! The admin API (`/api/v1`): JSON resources for scripts and automation, on the same core
//! services as the CLI and the console, so the three can never disagree. Callers authenticate
//! with an API key (`Authorization: Bearer lk_…`, see [`auth`]); errors are RFC 9457 problem
//! details ([`crate::error::problem`]); the OpenAPI 3.1 document is generated from the
//! handlers' types ([`openapi`]). Handlers parse, call one core service and render; the
//! services decide what the key may see.

pub mod audit;
pub mod auth;
pub mod openapi;
pub mod orgs;
pub mod sessions;
pub mod users;

use actix_web::{HttpRequest, HttpResponse, ResponseError as _, web};

use crate::error::problem::Problem;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .app_data(web::QueryConfig::default().error_handler(|e, req| with_id(e.into(), req)))
            .app_data(web::PathConfig::default().error_handler(|e, req| with_id(e.into(), req)))
            .app_data(web::JsonConfig::default().error_handler(|e, req| with_id(e.into(), req)))
            .configure(users::configure)
            .configure(audit::configure)
            .configure(sessions::configure)
            .configure(orgs::configure)
            .configure(openapi::configure)
            .default_service(web::to(unknown)),
    );
}

fn with_id(problem: Problem, req: &HttpRequest) -> actix_web::Error {
    problem.for_request(req).into()
}

/// An unknown path or method below `/api/v1`: a problem too, not the JSON API's error shape.
async fn unknown(req: HttpRequest) -> HttpResponse {
    Problem::not_found().for_request(&req).error_response()
}

/// A representation's entity tag: the first 128 bits of its SHA-256, hex. Any change of the
/// body changes the tag, so `If-Match` on updates can refuse a stale write.
pub fn etag_of(body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(body).iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The request's `If-Match`, if it sent one (an absent header means "unconditionally"; a
/// header that does not parse matches nothing).
pub fn if_match(req: &HttpRequest) -> Option<actix_web::http::header::IfMatch> {
    use actix_web::http::header::{self, Header as _};
    if !req.headers().contains_key(header::IF_MATCH) {
        return None;
    }
    Some(header::IfMatch::parse(req).unwrap_or(header::IfMatch::Items(Vec::new())))
}

/// Whether the current representation's `tag` satisfies `If-Match` (strong comparison).
pub fn precondition_holds(
    if_match: Option<&actix_web::http::header::IfMatch>,
    tag: &actix_web::http::header::EntityTag,
) -> bool {
    use actix_web::http::header::IfMatch;
    match if_match {
        None | Some(IfMatch::Any) => true,
        Some(IfMatch::Items(tags)) => tags.iter().any(|t| t.strong_eq(tag)),
    }
}
