//! The admin API (`/api/v1`): JSON resources for scripts and automation, on the same core
//! services as the CLI and the console, so the three can never disagree. Callers authenticate
//! with an API key (`Authorization: Bearer lk_…`, see [`auth`]); errors are RFC 9457 problem
//! details ([`crate::error::problem`]); the OpenAPI 3.1 document is generated from the
//! handlers' types ([`openapi`]). Handlers parse, call one core service and render; the
//! services decide what the key may see.

pub mod audit;
pub mod auth;
pub mod openapi;
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
