//! Request IDs, access logs, request metrics and security headers.

use std::time::Instant;

use actix_web::{
    Error, HttpMessage,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::{
        ConnectionType,
        header::{HeaderName, HeaderValue},
    },
    middleware::{DefaultHeaders, Next},
    web,
};
use tracing::Instrument;

use crate::AppState;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request ID for logs: the caller's `X-Request-Id` if it is short and plain, else a new one.
#[derive(Clone)]
pub struct RequestId(pub String);

fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .map_or_else(|| ulid::Ulid::new().to_string().to_ascii_lowercase(), str::to_owned)
}

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let id = request_id(&req);
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let path = req.path().to_owned();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let span = tracing::info_span!("request", request_id = %id, method = %method, path = %path);
    let result = next.call(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let _enter = span.enter();
    match result {
        Ok(mut res) => {
            let status = res.status().as_u16();
            let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".to_owned());
            if let Some(state) = state {
                state.metrics.observe_request(method.as_str(), &route, status, elapsed);
            }
            if let Ok(v) = HeaderValue::from_str(&id) {
                res.headers_mut().insert(REQUEST_ID, v);
            }
            if status >= 500 {
                tracing::error!(status, elapsed_us = elapsed.as_micros() as u64, "request failed");
            } else {
                tracing::info!(status, elapsed_us = elapsed.as_micros() as u64, "request");
            }
            Ok(res)
        }
        Err(e) => {
            // A refused request is the caller's mistake, not a fault of ours.
            let status = e.as_response_error().status_code();
            if status.is_server_error() {
                tracing::error!(error = %e, status = status.as_u16(), "request failed");
            } else {
                tracing::debug!(error = %e, status = status.as_u16(), "request refused");
            }
            Err(e)
        }
    }
}

/// Refuses declared bodies over the configured limit on every route, including routes that
/// ignore their body; extractors enforce the same limit on streamed bodies. A connection whose
/// declared body exceeds [`RELEASE_CONNECTION_AFTER_BYTES`] is closed after its response.
pub async fn body_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, Error> {
    let mut limit = req
        .app_data::<web::Data<AppState>>()
        .map_or(usize::MAX, |s| s.core.settings.max_body_bytes);
    // SAML messages arrive as large forms; their own limit applies there (see `saml`).
    let path = req.path();
    if path.starts_with("/saml/") && (path.ends_with("/acs") || path.ends_with("/slo")) {
        limit = limit.max(crate::saml::MAX_SAML_FORM_BYTES);
    }
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        let res = crate::error::api::payload_too_large();
        return Ok(req.into_response(res).map_into_right_body());
    }
    let mut res = next.call(req).await?;
    if declared.is_some_and(|n| n > RELEASE_CONNECTION_AFTER_BYTES) {
        res.response_mut().head_mut().set_connection_type(ConnectionType::Close);
    }
    Ok(res.map_into_left_body())
}

/// A connection that carried a request body larger than this is closed after its response.
/// Why: actix-http's HTTP/1 read buffer grows with the body it buffers (to 512 KiB for a
/// 256 KiB SAML form) and is kept for the connection's life, so every idle keep-alive
/// connection that once posted a large form would hold that much (docs/benchmarks.md, SAML
/// ACS peak RSS). Ordinary requests, and typical SAML responses of a few KiB, keep theirs.
pub const RELEASE_CONNECTION_AFTER_BYTES: usize = 64 * 1024;

/// Headers every response carries. The API serves no HTML yet, so the CSP forbids everything.
pub fn security_headers(https: bool) -> DefaultHeaders {
    let headers = DefaultHeaders::new()
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "no-referrer"))
        .add(("Content-Security-Policy", crate::csp::api()))
        .add(("Cross-Origin-Opener-Policy", "same-origin"))
        .add((
            "Permissions-Policy",
            "camera=(), microphone=(), geolocation=(), interest-cohort=()",
        ));
    if https {
        headers.add(("Strict-Transport-Security", "max-age=63072000; includeSubDomains"))
    } else {
        headers
    }
}
