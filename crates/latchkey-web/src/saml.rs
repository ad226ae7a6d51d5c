//! The SAML service-provider endpoints of each connection: SP-initiated start, the assertion
//! consumer service, SP metadata and Single Logout. They only parse and render: the rules are
//! in `latchkey_core::enterprise::saml` and `latchkey-saml`.

use actix_web::{
    HttpMessage, HttpRequest, HttpResponse,
    http::{StatusCode, header},
    web,
};
use askama::Template;
use latchkey_core::enterprise::saml::{
    AcsInput, AcsOutcome, LoginStart, TestedAssertion, logout::SloMessage, logout::SloOutcome,
};
use latchkey_saml::{
    binding::PostForm,
    post_body::{PostBody, PostBodyDecoder},
    response::{DecodedResponse, MAX_RESPONSE_BYTES},
};
use serde::Deserialize;

use crate::{
    AppState,
    error::page::{PageError, message_page},
    pages::support::{client_info, end_previous_session, safe_return_to, session_cookie},
    pending,
};

/// Most a SAML POST may carry: the 256 KiB SAMLResponse limit plus the form's overhead, so the
/// field limit itself is what refuses (with an audited reason).
pub const MAX_SAML_FORM_BYTES: usize = 300 * 1024;

/// SAML posts read, decoded and verified at the same time, per worker thread (at least two). A
/// 256 KiB response costs several megabytes while it is parsed and verified (libxml2 and our
/// own reading), and verification is CPU-bound anyway. Later posts wait for a permit before
/// Latchkey reads their bodies; actix-http still buffers up to 128 KiB of each waiting body
/// (about 400 KB per waiting connection, docs/benchmarks.md), the rest stays in the socket.
pub fn max_saml_in_flight(workers: usize) -> usize {
    workers.max(2)
}

/// The one script a page of ours runs: submitting the POST-binding form.
const AUTO_SUBMIT: &str = "document.forms[0].submit();";

#[derive(Template)]
#[template(path = "pages/saml_post.html")]
struct PostPage<'a> {
    action: &'a str,
    fields: &'a [(String, String)],
}

fn post_page(form: &PostForm) -> Result<HttpResponse, PageError> {
    let body = PostPage { action: &form.action, fields: &form.fields }
        .render()
        .map_err(|_| PageError::internal())?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            crate::csp::post_binding_page(AUTO_SUBMIT, &form.action),
        ))
        .body(body))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/saml/{connection_id}/login").route(web::get().to(login)))
        .service(web::resource("/saml/{connection_id}/acs").route(web::post().to(acs)))
        .service(web::resource("/saml/{connection_id}/metadata").route(web::get().to(metadata)))
        .service(
            web::resource("/saml/{connection_id}/slo")
                .app_data(web::FormConfig::default().limit(MAX_SAML_FORM_BYTES))
                .route(web::get().to(slo_redirect))
                .route(web::post().to(slo_post)),
        );
}

#[derive(Deserialize)]
pub struct LoginQuery {
    return_to: Option<String>,
    binding: Option<String>,
}

async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<LoginQuery>,
) -> Result<HttpResponse, PageError> {
    let return_to = safe_return_to(query.return_to.as_deref(), &state);
    let prefer_post = query.binding.as_deref() == Some("post");
    let browser = pending::browser_binding(&req, &state);
    let start = state.core.saml.start_login(&path, &return_to, &browser, prefer_post).await?;
    bound_start(&state, &browser, start)
}

/// The browser's way to the IdP, with its pending-request binding.
pub(crate) fn bound_start(
    state: &AppState,
    browser: &latchkey_core::sign_in::pending::BrowserBinding,
    start: LoginStart,
) -> Result<HttpResponse, PageError> {
    match start {
        LoginStart::Redirect(url) => pending::bound_redirect(state, browser, url),
        LoginStart::Post(form) => pending::bound_response(state, browser, post_page(&form)?),
    }
}

/// The ACS form, decoded as it arrives (see `latchkey_saml::post_body`); None when the body is
/// not such a form or exceeds [`MAX_SAML_FORM_BYTES`].
async fn read_acs_form(req: &HttpRequest, mut payload: web::Payload) -> Option<PostBody> {
    use futures_util::StreamExt as _;
    if !req.content_type().eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return None;
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut decoder = PostBodyDecoder::new("SAMLResponse", MAX_RESPONSE_BYTES, declared);
    let mut read = 0usize;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.ok()?;
        read += chunk.len();
        if read > MAX_SAML_FORM_BYTES {
            return None;
        }
        decoder.feed(&chunk).ok()?;
    }
    decoder.finish().ok()
}

/// The assertion consumer service (HTTP-POST binding). No form CSRF check: the IdP posts
/// cross-site; the pending request, bound to this browser, is the proof (see `pending`).
async fn acs(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, PageError> {
    // The body is read only once a permit is held (see `max_saml_in_flight`).
    let _permit = state.saml_permits.acquire().await.map_err(|_| PageError::internal())?;
    let Some(form) = read_acs_form(&req, payload).await else {
        state.metrics.saml_response("bad_form");
        return Ok(message_page(
            StatusCode::BAD_REQUEST,
            "Sign-in could not be completed",
            "The identity provider's answer could not be read. Go back and try again.",
            Some(("/sign-in", "Back to sign-in")),
        ));
    };
    let response = form.message.and_then(DecodedResponse::from_xml);
    let client = client_info(&req);
    let browser = pending::returned_binding(&req, &state);
    let input = AcsInput {
        connection_id: &path,
        response: &response,
        relay_state: form.relay_state.as_deref(),
        binding: browser.as_ref(),
        client: &client,
    };
    match state.core.saml.consume(&input).await? {
        Ok(AcsOutcome::Tested(tested)) => {
            state.metrics.saml_response("tested");
            tested_page(&state, &tested)
        }
        Ok(AcsOutcome::SignedIn(success)) => {
            state.metrics.saml_response("accepted");
            end_previous_session(&req, &state, &success.signed_in.session.id).await;
            Ok(HttpResponse::SeeOther()
                .insert_header((header::LOCATION, safe_return_to(Some(&success.return_to), &state)))
                .cookie(session_cookie(&state, &success.signed_in.secret))
                .finish())
        }
        Err(rejection) => {
            state.metrics.saml_response(&rejection.reason);
            let message = format!(
                "Your organisation's identity provider sent an answer that could not be accepted. \
                 If this keeps happening, give your administrator this reference: {}.",
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

/// The result of a connection test (nobody signed in).
fn tested_page(state: &AppState, t: &TestedAssertion) -> Result<HttpResponse, PageError> {
    let view = crate::console::views::SamlTest {
        t,
        name_id_format: t.name_id_format.as_deref().unwrap_or("—"),
        given_name: t.given_name.as_deref().unwrap_or("—"),
        family_name: t.family_name.as_deref().unwrap_or("—"),
        display_name: t.display_name.as_deref().unwrap_or("—"),
    };
    crate::pages::support::render(state, None, StatusCode::OK, &view)
}

async fn metadata(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let xml = state.core.saml.sp_metadata(&path).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/samlmetadata+xml")
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(xml))
}

async fn slo_redirect(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let browser = pending::returned_binding(&req, &state);
    let outcome = state
        .core
        .saml
        .single_logout(&path, SloMessage::Redirect(req.query_string()), browser.as_ref())
        .await?;
    slo_answer(&state, outcome)
}

#[derive(Deserialize)]
pub struct SloForm {
    #[serde(rename = "SAMLRequest")]
    saml_request: Option<String>,
    #[serde(rename = "SAMLResponse")]
    saml_response: Option<String>,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

async fn slo_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<SloForm>,
) -> Result<HttpResponse, PageError> {
    let browser = pending::returned_binding(&req, &state);
    let message = SloMessage::Post {
        saml_request: form.saml_request.as_deref(),
        saml_response: form.saml_response.as_deref(),
        relay_state: form.relay_state.as_deref(),
    };
    let outcome = state.core.saml.single_logout(&path, message, browser.as_ref()).await?;
    slo_answer(&state, outcome)
}

fn slo_answer(state: &AppState, outcome: SloOutcome) -> Result<HttpResponse, PageError> {
    match outcome {
        SloOutcome::Redirect(url) => {
            Ok(HttpResponse::Found().insert_header((header::LOCATION, url)).finish())
        }
        SloOutcome::Post(form) => post_page(&form),
        SloOutcome::Done { return_to } => Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, safe_return_to(Some(&return_to), state)))
            .finish()),
    }
}
