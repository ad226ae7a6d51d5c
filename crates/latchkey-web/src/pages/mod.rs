//! Hosted pages: server-rendered, no JavaScript, strict CSP, CSRF-protected forms.

mod account;
mod auth;
mod orgs;
pub(crate) mod support;
pub(crate) mod views;

use actix_web::{HttpResponse, http::header, web};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/assets/latchkey.css").route(web::get().to(stylesheet)))
        .service(web::resource("/").route(web::get().to(home)))
        .service(
            web::resource("/sign-in")
                .route(web::get().to(auth::sign_in_form))
                .route(web::post().to(auth::sign_in_identify)),
        )
        .service(web::resource("/sign-in/password").route(web::post().to(auth::sign_in_password)))
        .service(
            web::resource("/sign-up")
                .route(web::get().to(auth::sign_up_form))
                .route(web::post().to(auth::sign_up_submit)),
        )
        .service(
            web::resource("/sign-up/verify")
                .route(web::get().to(auth::verify_form))
                .route(web::post().to(auth::verify_submit)),
        )
        .service(
            web::resource("/sign-out")
                .route(web::get().to(auth::sign_out_form))
                .route(web::post().to(auth::sign_out)),
        )
        .service(
            web::resource("/password/forgot")
                .route(web::get().to(auth::forgot_form))
                .route(web::post().to(auth::forgot_submit)),
        )
        .service(
            web::resource("/password/reset")
                .route(web::get().to(auth::reset_form))
                .route(web::post().to(auth::reset_submit)),
        )
        .service(web::resource("/account").route(web::get().to(account::show)))
        .service(web::resource("/account/profile").route(web::post().to(account::update_profile)))
        .service(web::resource("/account/password").route(web::post().to(account::change_password)))
        .service(
            web::resource("/account/sessions/revoke-others")
                .route(web::post().to(account::revoke_others)),
        )
        .service(
            web::resource("/account/apps/{client_id}/revoke")
                .route(web::post().to(account::revoke_app)),
        )
        .service(
            web::resource("/account/sessions/{session_id}/revoke")
                .route(web::post().to(account::revoke_session)),
        )
        .service(
            web::resource("/account/organization").route(web::post().to(orgs::switch_organisation)),
        )
        .service(
            web::resource("/account/invitations/{invitation_id}/accept")
                .route(web::post().to(orgs::accept_listed_invitation)),
        )
        .service(
            web::resource("/account/organizations/{org_id}/join")
                .route(web::post().to(orgs::request_to_join)),
        )
        .service(
            web::resource("/invitations/accept")
                .route(web::get().to(orgs::invitation_form))
                .route(web::post().to(orgs::invitation_accept)),
        )
        .service(
            web::resource("/organizations/{org_id}/join-requests")
                .route(web::get().to(orgs::join_requests)),
        )
        .service(
            web::resource("/organizations/{org_id}/join-requests/{request_id}/{decision}")
                .route(web::post().to(orgs::decide_join_request)),
        );
}

const STYLESHEET: &str = include_str!("../../../../templates/assets/latchkey.css");

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(STYLESHEET)
}

async fn home() -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, "/account")).finish()
}
