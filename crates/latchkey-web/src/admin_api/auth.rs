//! Who calls the admin API: an API key (`Authorization: Bearer lk_…`) is the only credential
//! so far. A missing, malformed, unknown, revoked or expired key gets 401 with
//! `WWW-Authenticate: Bearer`; what the key may do is decided by the core services.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpMessage as _, HttpRequest, dev::Payload, http::header, web};
use latchkey_core::infra::audit::Actor;

use crate::{AppState, error::problem::Problem, pages::support::client_info};

/// The authenticated caller, as the actor the services check and audit.
pub struct AdminActor(pub Actor);

impl FromRequest for AdminActor {
    type Error = Problem;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Problem>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let fail = |p: Problem| p.for_request(&req);
            let Some(state) = req.app_data::<web::Data<AppState>>() else {
                return Err(fail(Problem::new(latchkey_core::ErrorClass::Internal, None)));
            };
            let secret = bearer(&req).ok_or_else(|| fail(Problem::unauthenticated()))?;
            let principal = state
                .core
                .admin
                .api_keys
                .authenticate(secret)
                .await
                .map_err(|e| fail(Problem::from(e)))?;
            let client = client_info(&req);
            let request_id =
                req.extensions().get::<crate::http_middleware::RequestId>().map(|r| r.0.clone());
            Ok(Self(principal.actor(client.ip, client.user_agent).in_request(request_id)))
        })
    }
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
}
