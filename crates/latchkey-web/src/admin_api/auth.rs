//! Who calls the admin API, as `Authorization: Bearer`: an API key (`lk_…`), or a Latchkey
//! client_credentials access token carrying the `admin:*` scope (the client then acts on the
//! whole instance, as an instance key does, within the same per-minute limit). A missing,
//! malformed, unknown, revoked or expired credential gets 401 with `WWW-Authenticate: Bearer`;
//! a token without the scope 403; what the caller may do is decided by the core services.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpMessage as _, HttpRequest, dev::Payload, web};
use latchkey_core::infra::audit::{Actor, Principal};

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
            let secret = crate::extract::bearer_token(&req)
                .ok_or_else(|| fail(Problem::unauthenticated()))?;
            let client = client_info(&req);
            let request_id =
                req.extensions().get::<crate::http_middleware::RequestId>().map(|r| r.0.clone());
            let actor = if secret.starts_with(latchkey_core::admin::api_keys::SECRET_PREFIX) {
                let keys = &state.core.admin.api_keys;
                let caller = client.actor_for(None).in_request(request_id.clone());
                let principal =
                    keys.authenticate(secret, &caller).await.map_err(|e| fail(e.into()))?;
                principal.actor(client.ip, client.user_agent)
            } else {
                let client_id = admin_client(state, secret).await.map_err(fail)?;
                Actor {
                    principal: Principal::AdminClient(client_id),
                    client_ip: client.ip,
                    user_agent: client.user_agent,
                    request_id: None,
                }
            };
            Ok(Self(actor.in_request(request_id)))
        })
    }
}

/// The client of a Latchkey client_credentials access token with the `admin:*` scope, charged
/// to the rate limit. A token without the scope is 403; anything else that is not such a
/// token is 401.
async fn admin_client(state: &AppState, token: &str) -> Result<String, Problem> {
    use latchkey_core::{ErrorClass, oauth::provider::OAuthFailure};
    use latchkey_oidc::{ErrorCode, SCOPE_ADMIN};
    let client_id = match state.core.oidc.authorize_client(token, SCOPE_ADMIN).await {
        Ok(c) => c,
        Err(OAuthFailure::Refused(e)) if e.code == ErrorCode::InsufficientScope => {
            return Err(Problem::new(ErrorClass::Forbidden, Some(e.description)));
        }
        Err(OAuthFailure::Refused(_)) => return Err(Problem::unauthenticated()),
        Err(OAuthFailure::Failed(e)) => return Err(e.into()),
    };
    state.core.admin.api_keys.charge_client(&client_id).await?;
    Ok(client_id)
}
