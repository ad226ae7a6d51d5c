//! The admin API (`/api/v1`): JSON resources for scripts and automation, on the same core
//! services as the CLI and the console, so the three can never disagree. Callers authenticate
//! with an API key (`Authorization: Bearer lk_…`, see [`auth`]); errors are RFC 9457 problem
//! details ([`crate::error::problem`]); the OpenAPI 3.1 document is generated from the
//! handlers' types ([`openapi`]). Handlers parse, call one core service and render; the
//! services decide what the key may see.

pub mod applications;
pub mod audit;
pub mod auth;
pub mod connections;
pub mod domains;
pub mod invitations;
pub mod keys;
pub mod members;
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
            .configure(members::configure)
            .configure(domains::configure)
            .configure(invitations::configure)
            .configure(applications::configure)
            .configure(keys::configure)
            .configure(connections::configure)
            .configure(openapi::configure)
            .default_service(web::to(unknown)),
    );
}

/// A JSON answer that no cache may keep (admin data, credentials' effects).
pub fn no_store(status: actix_web::http::StatusCode, body: &impl serde::Serialize) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(body)
}

/// Maps a core error to the request's problem (with its ID).
pub fn problem(req: &HttpRequest) -> impl Fn(latchkey_core::Error) -> Problem + '_ {
    move |e| Problem::from(e).for_request(req)
}

fn with_id(problem: Problem, req: &HttpRequest) -> actix_web::Error {
    problem.for_request(req).into()
}

/// An unknown path or method below `/api/v1`: a problem too, not the JSON API's error shape.
async fn unknown(req: HttpRequest) -> HttpResponse {
    Problem::not_found().for_request(&req).error_response()
}

/// A resource's JSON and its entity tag: the first 128 bits of the JSON's SHA-256. Any change
/// of the representation changes the tag, so `If-Match` on updates can refuse a stale write.
pub struct Versioned {
    body: Vec<u8>,
    tag: actix_web::http::header::EntityTag,
}

impl Versioned {
    pub fn of<T: serde::Serialize>(resource: &T) -> Self {
        use sha2::{Digest, Sha256};
        let body = serde_json::to_vec(resource).unwrap_or_default();
        let hex: String =
            Sha256::digest(&body).iter().take(16).map(|b| format!("{b:02x}")).collect();
        Self { body, tag: actix_web::http::header::EntityTag::new_strong(hex) }
    }

    pub fn tag(&self) -> &actix_web::http::header::EntityTag {
        &self.tag
    }

    /// The answer with `ETag`; to a GET whose `If-None-Match` names the tag, 304.
    pub fn respond(self, req: &HttpRequest, status: actix_web::http::StatusCode) -> HttpResponse {
        use actix_web::http::header::{self, Header as _, IfNoneMatch};
        if req.method() == actix_web::http::Method::GET
            && let Ok(IfNoneMatch::Items(tags)) = IfNoneMatch::parse(req)
            && tags.iter().any(|t| t.strong_eq(&self.tag))
        {
            return HttpResponse::NotModified().insert_header(header::ETag(self.tag)).finish();
        }
        HttpResponse::build(status)
            .insert_header(header::ETag(self.tag))
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .content_type("application/json")
            .body(self.body)
    }
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

/// A known path asked with a method it does not have: 405 with `Allow` (RFC 9110 §15.5.6),
/// as a problem.
pub fn method_not_allowed(allow: &'static str) -> actix_web::Route {
    web::route().to(move |req: HttpRequest| async move {
        use actix_web::{HttpMessage as _, http::header};
        let request_id =
            req.extensions().get::<crate::http_middleware::RequestId>().map(|r| r.0.clone());
        let body = serde_json::json!({
            "type": "https://latchkey.dev/problems/method-not-allowed",
            "title": "This method is not allowed on this path",
            "status": 405,
            "detail": format!("allowed: {allow}"),
            "instance": request_id.map(|id| format!("urn:latchkey:request:{id}")),
        });
        HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, allow))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .content_type(crate::error::problem::CONTENT_TYPE)
            .body(body.to_string())
    })
}

/// A JSON request body that must be an object (serde would otherwise take a struct from an
/// array of its fields, `[null, null]`). Content type and syntax are checked by actix's JSON
/// extractor (its errors are problems, see [`configure`]); the shape here.
pub struct JsonObject<T>(pub T);

impl<T: serde::de::DeserializeOwned + 'static> actix_web::FromRequest for JsonObject<T> {
    type Error = actix_web::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        let json = web::Json::<serde_json::Value>::from_request(&req, payload);
        Box::pin(async move {
            let value = json.await?.into_inner();
            let bad = |detail: String| -> actix_web::Error {
                Problem::bad_request(detail).for_request(&req).into()
            };
            if !value.is_object() {
                return Err(bad("body: must be a JSON object".into()));
            }
            serde_json::from_value(value).map(JsonObject).map_err(|e| bad(format!("body: {e}")))
        })
    }
}
