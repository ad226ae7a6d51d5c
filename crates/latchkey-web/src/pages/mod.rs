//! Hosted pages: server-rendered, no JavaScript, strict CSP, CSRF-protected forms.

mod account;
mod auth;
mod connected;
mod orgs;
pub(crate) mod support;
mod verify_email;
pub(crate) mod views;

use actix_web::{
    FromRequest, Handler, HttpRequest, HttpResponse, Resource, Responder,
    http::{Method, header},
    web,
};

use latchkey_core::infra::ids;

use crate::error::page::method_not_allowed;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/assets/latchkey.css").route(web::get().to(stylesheet)))
        .service(web::resource("/favicon.ico").route(web::get().to(favicon)))
        .service(web::resource("/").route(web::get().to(home)))
        .service(form_page("/sign-in", auth::sign_in_form, auth::sign_in_identify))
        .service(post_only("/sign-in/password", auth::sign_in_password, |_| "/sign-in".into()))
        .service(form_page("/sign-up", auth::sign_up_form, auth::sign_up_submit))
        .service(form_page("/sign-up/verify", auth::verify_form, auth::verify_submit))
        .service(form_page("/sign-out", auth::sign_out_form, auth::sign_out))
        .service(form_page("/password/forgot", auth::forgot_form, auth::forgot_submit))
        .service(form_page("/password/reset", auth::reset_form, auth::reset_submit))
        .service(get_only("/account", account::show))
        .service(post_only("/account/profile", account::update_profile, to_account))
        .service(post_only("/account/password", account::change_password, to_account))
        .service(post_only("/account/sessions/revoke-others", account::revoke_others, to_account))
        .service(post_only("/account/apps/{client_id}/revoke", account::revoke_app, to_account))
        .service(get_only("/account/connected/{provider}/authorize", connected::authorize))
        .service(post_only(
            "/account/connected/{provider}/disconnect",
            connected::disconnect,
            to_account,
        ))
        .service(post_only(
            "/account/sessions/{session_id}/revoke",
            account::revoke_session,
            to_account,
        ))
        .service(post_only("/account/organization", orgs::switch_organisation, to_account))
        .service(post_only(
            "/account/email/verify",
            account::request_email_verification,
            to_account,
        ))
        .service(form_page("/email/verify", verify_email::form, verify_email::submit))
        .service(post_only(
            "/account/invitations/{invitation_id}/accept",
            orgs::accept_listed_invitation,
            to_account,
        ))
        .service(post_only(
            "/account/organizations/{org_id}/join",
            orgs::request_to_join,
            to_account,
        ))
        .service(form_page("/invitations/accept", orgs::invitation_form, orgs::invitation_accept))
        .service(get_only("/organizations/{org_id}/join-requests", orgs::join_requests))
        .service(post_only(
            "/organizations/{org_id}/join-requests/{request_id}/{decision}",
            orgs::decide_join_request,
            |req| match req.match_info().get("org_id") {
                // Only an id of ours goes back into a Location header.
                Some(org_id) if ids::is_valid(ids::ORGANISATION, org_id) => {
                    format!("/organizations/{org_id}/join-requests")
                }
                _ => "/account".into(),
            },
        ));
}

/// A page that shows a form on GET and takes it on POST.
fn form_page<G, GA, P, PA>(path: &str, show: G, submit: P) -> Resource
where
    G: Handler<GA>,
    GA: FromRequest + 'static,
    G::Output: Responder + 'static,
    P: Handler<PA>,
    PA: FromRequest + 'static,
    P::Output: Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(show))
        .route(web::post().to(submit))
        .default_service(web::to(|| async { method_not_allowed("GET, POST", HOME) }))
}

fn get_only<G, GA>(path: &str, show: G) -> Resource
where
    G: Handler<GA>,
    GA: FromRequest + 'static,
    G::Output: Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(show))
        .default_service(web::to(|| async { method_not_allowed("GET", HOME) }))
}

/// The target of a form. A browser that GETs it (a reload after a failed attempt, a bookmark,
/// the address bar) is sent to the page the form lives on, `form_at`; other methods get a page
/// that explains, with `Allow: POST`.
fn post_only<P, PA>(path: &str, submit: P, form_at: fn(&HttpRequest) -> String) -> Resource
where
    P: Handler<PA>,
    PA: FromRequest + 'static,
    P::Output: Responder + 'static,
{
    web::resource(path).route(web::post().to(submit)).default_service(web::to(
        move |req: HttpRequest| async move {
            if matches!(*req.method(), Method::GET | Method::HEAD) {
                support::see_other(&form_at(&req))
            } else {
                method_not_allowed("POST", HOME)
            }
        },
    ))
}

/// For POST-only browser endpoints with no page of their own to go back to (the OAuth consent
/// and account-chooser forms, which belong to an authorization request).
pub(crate) async fn post_only_page() -> HttpResponse {
    method_not_allowed("POST", HOME)
}

const HOME: (&str, &str) = ("/account", "Go to your account");

fn to_account(_: &HttpRequest) -> String {
    "/account".into()
}

const STYLESHEET: &str = include_str!("../../../../templates/assets/latchkey.css");

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(STYLESHEET)
}

/// The browser tab's icon (32×32, a keyhole on the brand colour), compiled in.
const FAVICON: &[u8] = include_bytes!("../../../../templates/assets/favicon.ico");

async fn favicon() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("image/x-icon")
        .insert_header((header::CACHE_CONTROL, "public, max-age=604800"))
        .body(FAVICON)
}

async fn home() -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, "/account")).finish()
}
