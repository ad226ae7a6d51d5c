//! `/account`'s connected Google and Microsoft accounts: asking a provider for more access,
//! and disconnecting. The rules are in `latchkey_core::enterprise::upstream::connect`.
//!
//! `GET /account/connected/{provider}/authorize?scope=…` only starts a flow at the provider:
//! nothing changes until the user consents there and the answer comes back to the browser that
//! started it (the pending request's state and binding cookie), so a GET is safe from CSRF.
//! `POST /account/connected/{provider}/disconnect` changes the account: a CSRF-checked form.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use latchkey_core::{
    Error as CoreError, enterprise::upstream::connect::parse_requested_scopes,
    identity::method::Upstream, infra::audit::Actor,
};
use serde::Deserialize;

use super::{
    account::render_account,
    support::{client_info, current_session, see_other, to_sign_in, verify_csrf},
    views::ConnectedRow,
};
use crate::{AppState, error::page::PageError, pending};

type Page = Result<HttpResponse, PageError>;

fn provider_name(p: Upstream) -> &'static str {
    match p {
        Upstream::Google => "Google",
        Upstream::Microsoft => "Microsoft",
    }
}

/// The user's connected accounts as `/account` lists them.
pub(super) async fn rows(state: &AppState, user_id: &str) -> Result<Vec<ConnectedRow>, PageError> {
    Ok(state
        .core
        .upstream
        .connected_accounts(user_id)
        .await?
        .into_iter()
        .map(|a| ConnectedRow {
            provider: a.provider.as_str(),
            provider_name: provider_name(a.provider),
            email: a.email.unwrap_or_default(),
            scopes: a.scopes.join(" "),
            enterprise: a.connection_id.is_some(),
        })
        .collect())
}

#[derive(Deserialize)]
pub struct AuthorizeQuery {
    scope: Option<String>,
}

/// Sends the browser to the provider for the connected account's scopes plus `scope`.
pub async fn authorize(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<AuthorizeQuery>,
) -> Page {
    let Some((session, _)) = current_session(&req, &state).await else {
        return Ok(to_sign_in(&req));
    };
    let provider = Upstream::parse(&path).map_err(|_| PageError::not_found())?;
    let refuse = |text: String, status: StatusCode| {
        let (req, state, session) = (&req, &state, &session);
        async move {
            let (user, current) = (&session.user_id, &session.session_id);
            render_account(req, state, user, current, None, Some(&text), status).await
        }
    };
    let requested = match parse_requested_scopes(q.scope.as_deref().unwrap_or_default()) {
        Ok(s) => s,
        Err(CoreError::Invalid { message, .. }) => {
            let text = format!("The access asked for is not valid: the scope {message}.");
            return refuse(text, StatusCode::BAD_REQUEST).await;
        }
        Err(e) => return Err(e.into()),
    };
    let browser = pending::browser_binding(&req, &state);
    let upstream = &state.core.upstream;
    match upstream.start_connect(&session.user_id, provider, &requested, &browser).await {
        Ok(url) => pending::bound_redirect(&state, &browser, url),
        Err(CoreError::NotFound(_)) => {
            let text = format!("You have no connected {} account.", provider_name(provider));
            refuse(text, StatusCode::NOT_FOUND).await
        }
        Err(CoreError::Forbidden(m)) => refuse(format!("{m}."), StatusCode::FORBIDDEN).await,
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf_token: String,
}

/// Forgets the connected account's tokens (and revokes them at Google, without waiting).
pub async fn disconnect(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Page {
    verify_csrf(&req, &state, &form.csrf_token)?;
    let Some((session, _)) = current_session(&req, &state).await else {
        return Ok(to_sign_in(&req));
    };
    let provider = Upstream::parse(&path).map_err(|_| PageError::not_found())?;
    let client = client_info(&req);
    let actor = Actor::user(&session.user_id, client.ip, client.user_agent);
    match state.core.upstream.disconnect(&session.user_id, provider, &actor).await {
        Ok(revocation) => {
            if let Some(r) = revocation {
                actix_web::rt::spawn(r.send());
            }
            Ok(see_other("/account?notice=disconnected"))
        }
        Err(CoreError::Forbidden(_)) => {
            let text = "Your organisation requires this connection: it cannot be disconnected.";
            let (user, current) = (&session.user_id, &session.session_id);
            render_account(&req, &state, user, current, None, Some(text), StatusCode::FORBIDDEN)
                .await
        }
        Err(CoreError::NotFound(_)) => Err(PageError::not_found()),
        Err(e) => Err(e.into()),
    }
}
