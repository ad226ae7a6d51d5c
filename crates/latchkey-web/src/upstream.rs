//! Signing in through Google and Microsoft: "Continue with …" (`/oauth/start/{provider}`), an
//! organisation's EASIE connection (`/easie/{connection_id}/login`, where identifier-first
//! sign-in sends enrolled addresses), and the providers' answer at
//! `/oauth/callback/{provider}`, and Google's security event tokens (Cross-Account Protection)
//! at `/oauth/risc/google`. They only parse and render: the rules are in
//! `latchkey_core::enterprise::upstream` and `latchkey-easie`.

use actix_web::{
    HttpRequest, HttpResponse,
    http::{StatusCode, header},
    web,
};
use latchkey_core::{
    enterprise::upstream::{CallbackInput, RiscOutcome, StartRequest},
    identity::method::Upstream,
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    ApiError, AppState,
    error::page::{PageError, message_page},
    pages::support::{client_info, end_previous_session, safe_return_to, session_cookie},
    pending,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/oauth/start/{provider}").route(web::get().to(start_social)))
        .service(web::resource("/easie/{connection_id}/login").route(web::get().to(start_easie)))
        .service(web::resource("/oauth/callback/{provider}").route(web::get().to(callback)))
        .service(
            web::resource("/oauth/risc/google")
                .app_data(web::PayloadConfig::new(RISC_MAX_BODY))
                .route(web::post().to(risc_google)),
        );
}

/// A SET is a few hundred bytes; this leaves room for any event Google may add.
const RISC_MAX_BODY: usize = 64 * 1024;
const SECEVENT_JWT: &str = "application/secevent+jwt";

#[derive(Deserialize)]
pub struct StartQuery {
    return_to: Option<String>,
    login_hint: Option<String>,
}

async fn start_social(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<StartQuery>,
) -> Result<HttpResponse, PageError> {
    let provider = Upstream::parse(&path).map_err(|_| PageError::not_found())?;
    start(&req, &state, provider, None, &query).await
}

async fn start_easie(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<StartQuery>,
) -> Result<HttpResponse, PageError> {
    // The connection decides the provider; this one is only a placeholder.
    start(&req, &state, Upstream::Google, Some(&path), &query).await
}

async fn start(
    req: &HttpRequest,
    state: &AppState,
    provider: Upstream,
    connection_id: Option<&str>,
    query: &StartQuery,
) -> Result<HttpResponse, PageError> {
    let return_to = safe_return_to(query.return_to.as_deref(), state);
    let browser = pending::browser_binding(req, state);
    let start = StartRequest {
        provider,
        connection_id,
        login_hint: query.login_hint.as_deref(),
        return_to: &return_to,
        browser: &browser,
    };
    let url = state.core.upstream.start(&start).await?;
    pending::bound_redirect(state, &browser, url)
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// The provider's answer. No form CSRF check: `state`, single use and bound to this browser by
/// the pending cookie, is the proof that this browser started this sign-in.
async fn callback(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<CallbackQuery>,
) -> Result<HttpResponse, PageError> {
    let client = client_info(&req);
    let browser = pending::returned_binding(&req, &state);
    let input = CallbackInput {
        provider: &path,
        code: query.code.as_deref(),
        state: query.state.as_deref(),
        error: query.error.as_deref(),
        binding: browser.as_ref(),
        client: &client,
    };
    match state.core.upstream.callback(&input).await? {
        Ok(success) => {
            let location = safe_return_to(Some(&success.return_to), &state);
            let Some(signed_in) = success.signed_in else {
                // More access for a connected account: the session stays as it is.
                state.metrics.upstream_sign_in("connected");
                return Ok(HttpResponse::SeeOther()
                    .insert_header((header::LOCATION, location))
                    .insert_header((header::CACHE_CONTROL, "no-store"))
                    .finish());
            };
            state.metrics.upstream_sign_in("accepted");
            end_previous_session(&req, &state, &signed_in.session.id).await;
            Ok(HttpResponse::SeeOther()
                .insert_header((header::LOCATION, location))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .cookie(session_cookie(&state, &signed_in.secret))
                .finish())
        }
        Err(rejection) => {
            state.metrics.upstream_sign_in(&rejection.reason);
            let why = rejection
                .message
                .as_deref()
                .unwrap_or("The answer from the sign-in provider could not be accepted.");
            let message = format!(
                "{why} If this keeps happening, give your administrator this reference: {}.",
                rejection.reference
            );
            Ok(message_page(
                StatusCode::BAD_REQUEST,
                "Sign-in could not be completed",
                &message,
                Some(("/sign-in", "Back to sign-in")),
            ))
        }
    }
}

/// Google's push delivery of a security event token (RFC 8935): 202 once it is acted on (or
/// needs nothing), 400 with `{"err", "description"}` when it is refused. No session and no
/// CSRF check: the transmitter is a server, and the SET's signature is its authentication.
async fn risc_google(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if !content_type.is_some_and(|t| t.eq_ignore_ascii_case(SECEVENT_JWT)) {
        state.metrics.upstream_security_event("content_type_refused");
        let description = format!("the Content-Type must be {SECEVENT_JWT}");
        return Ok(set_error(&json!({ "err": "invalid_request", "description": description })));
    }
    let outcome = state.core.upstream.receive_security_event(&body, &client_info(&req)).await?;
    state.metrics.upstream_security_event(outcome.label());
    Ok(match outcome {
        RiscOutcome::Accepted(_) => HttpResponse::Accepted().finish(),
        RiscOutcome::Refused(r) => {
            set_error(&json!({ "err": r.err, "description": r.description }))
        }
    })
}

fn set_error(body: &serde_json::Value) -> HttpResponse {
    HttpResponse::BadRequest().insert_header((header::CACHE_CONTROL, "no-store")).json(body)
}
