//! The admin console (`/admin`): server-rendered pages in the hosted pages' style, no
//! JavaScript, the page CSP, CSRF on every form. Handlers parse, call the same core services
//! as the admin API and the CLI (which check what the signed-in user may do), and render.

mod api_keys;
mod apps;
mod audit;
mod charts;
mod connections;
mod dashboard;
mod guard;
mod keys;
mod multipart;
mod orgs;
mod reauthenticate;
mod sessions;
mod users;
pub(crate) mod views;

use actix_web::{FromRequest, Handler, HttpResponse, Resource, Responder, http::StatusCode, web};
use askama::Template;
use serde::Deserialize;

use crate::{AppState, error::page::PageError, pages::support};

pub use guard::Console;

type Page = Result<HttpResponse, PageError>;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get("/admin", dashboard::show))
        .service(get("/admin/users", users::list))
        .service(get("/admin/users/{id}", users::show))
        .service(post("/admin/users/{id}/deactivate", users::deactivate))
        .service(post("/admin/users/{id}/reactivate", users::reactivate))
        .service(post("/admin/users/{id}/unlock", users::unlock))
        .service(post("/admin/users/{id}/reset-password", users::reset_password))
        .service(post("/admin/users/{id}/sessions/revoke-all", users::revoke_all_sessions))
        .service(form("/admin/organizations", orgs::list, orgs::create))
        .service(get("/admin/organizations/{id}", orgs::show))
        .service(post("/admin/organizations/{id}/delete", orgs::delete))
        .service(post("/admin/organizations/{id}/members/{user_id}/role", orgs::set_role))
        .service(post("/admin/organizations/{id}/members/{user_id}/remove", orgs::remove_member))
        .service(post("/admin/organizations/{id}/invitations", orgs::invite))
        .service(post(
            "/admin/organizations/{id}/invitations/{inv}/revoke",
            orgs::revoke_invitation,
        ))
        .service(post("/admin/organizations/{id}/domains", orgs::add_domain))
        .service(post("/admin/organizations/{id}/domains/{dom}/verify", orgs::verify_domain))
        .service(post("/admin/organizations/{id}/domains/{dom}/mark-verified", orgs::mark_verified))
        .service(post("/admin/organizations/{id}/domains/{dom}/mode", orgs::set_mode))
        .service(post("/admin/organizations/{id}/domains/{dom}/remove", orgs::remove_domain))
        .service(form("/admin/applications", apps::list, apps::create))
        .service(form("/admin/applications/{id}", apps::show, apps::update))
        .service(post("/admin/applications/{id}/rotate-secret", apps::rotate_secret))
        .service(post("/admin/applications/{id}/delete", apps::delete))
        .service(post("/admin/users/{id}/delete", users::delete))
        .service(get("/admin/keys", keys::list))
        .service(post("/admin/keys/rotate", keys::rotate))
        .service(post("/admin/keys/{kid}/withdraw", keys::withdraw))
        .service(get("/admin/templates/new", keys::new_form))
        .service(post("/admin/templates", keys::create))
        .service(form("/admin/templates/{name}", keys::show, keys::update))
        .service(post("/admin/templates/{name}/delete", keys::delete))
        .service(get("/admin/organizations/{id}/connections/saml/new", connections::saml_new))
        .service(post("/admin/organizations/{id}/connections/saml", connections::saml_create))
        .service(get("/admin/organizations/{id}/connections/easie/new", connections::easie_new))
        .service(post("/admin/organizations/{id}/connections/easie", connections::easie_create))
        .service(get("/admin/connections/{id}", connections::show))
        .service(post("/admin/connections/{id}/enable", connections::enable))
        .service(post("/admin/connections/{id}/disable", connections::disable))
        .service(post("/admin/connections/{id}/refresh-metadata", connections::refresh_metadata))
        .service(post("/admin/connections/{id}/rotate-sp-key", connections::rotate_sp_key))
        .service(post("/admin/connections/{id}/delete", connections::delete))
        .service(get("/admin/connections/{id}/test", connections::test))
        .service(form("/admin/api-keys", api_keys::list, api_keys::create))
        .service(post("/admin/api-keys/{id}/revoke", api_keys::revoke))
        .service(get("/admin/sessions", sessions::list))
        .service(post("/admin/sessions/{id}/revoke", sessions::revoke))
        .service(get("/admin/audit", audit::list))
        .service(get("/admin/audit/export", audit::export))
        .service(form("/admin/reauthenticate", reauthenticate::form, reauthenticate::submit));
}

/// A page with a form that posts to itself.
fn form<G, GA, P, PA>(path: &str, show: G, submit: P) -> Resource
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
        .default_service(web::to(|| async { not_allowed("GET, POST") }))
}

fn get<G, A>(path: &str, show: G) -> Resource
where
    G: Handler<A>,
    A: FromRequest + 'static,
    G::Output: Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(show))
        .default_service(web::to(|| async { not_allowed("GET") }))
}

/// A form's target. A GET of it (a reload, the address bar) goes to the console's home.
fn post<P, A>(path: &str, submit: P) -> Resource
where
    P: Handler<A>,
    A: FromRequest + 'static,
    P::Output: Responder + 'static,
{
    web::resource(path).route(web::post().to(submit)).default_service(web::to(
        |req: actix_web::HttpRequest| async move {
            if matches!(*req.method(), actix_web::http::Method::GET | actix_web::http::Method::HEAD)
            {
                support::see_other("/admin")
            } else {
                not_allowed("POST")
            }
        },
    ))
}

fn not_allowed(allow: &str) -> HttpResponse {
    crate::error::page::method_not_allowed(allow, ("/admin", "Go to the console"))
}

/// Every console form carries the CSRF token and nothing else, or these fields too.
#[derive(Deserialize)]
pub struct CsrfOnly {
    pub csrf_token: String,
}

/// A console page, rendered with the page headers and the CSRF cookie.
fn render<T: Template>(state: &AppState, console: &Console, status: StatusCode, view: &T) -> Page {
    support::render(state, Some(&console.csrf), status, view)
}

fn nav(console: &Console, section: &'static str, notice: Option<&'static str>) -> views::Nav {
    views::Nav {
        who: console.user.primary_email.clone(),
        instance_admin: console.is_instance_admin(),
        section,
        notice,
    }
}

/// A Unix time as the console shows it (UTC, to the minute).
fn when(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map_or_else(|| ts.to_string(), |t| t.format("%Y-%m-%d %H:%M").to_string())
}

/// A query-string value, encoded.
fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// An error the page shows next to its form (bad input, a conflict), or, for anything else
/// (403, 404, 429, 5xx), the error page.
fn inline_or_page(e: latchkey_core::Error) -> Result<String, PageError> {
    use latchkey_core::ErrorClass;
    let failure = crate::error::Failure::from(e);
    match failure.class {
        ErrorClass::InvalidInput | ErrorClass::Conflict | ErrorClass::PreconditionFailed => {
            Ok(failure.message.unwrap_or_else(|| "This cannot be done now.".into()))
        }
        _ => Err(PageError::Failed(failure)),
    }
}
