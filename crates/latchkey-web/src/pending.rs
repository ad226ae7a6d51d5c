//! The browser side of pending sign-in requests (`latchkey_core::sign_in::pending`): the
//! cookie that binds a request to the browser that started it, and the two steps every
//! protocol's routes take — [`begin`] before sending the browser to the identity provider, and
//! [`take`] when its answer comes back.
//!
//! Identity providers answer with a cross-site POST (SAML's HTTP-POST binding, OIDC's
//! `form_post`). Browsers do not send `SameSite=Lax` cookies with it, and the form CSRF check
//! refuses it. So the binding cookie is `SameSite=None; Secure` (with the `__Host-` prefix)
//! whenever the public URL is https, and [`take`] applies no form CSRF check: the single-use
//! token that travelled through the provider, together with this cookie, is the proof that this
//! browser started this request. On a plain-http loopback set-up (development and tests) the
//! cookie cannot be `Secure`, so it is `SameSite=Lax`, which still accompanies same-site answers.

use std::time::Duration;

use actix_web::{
    HttpRequest, HttpResponse,
    cookie::{Cookie, SameSite, time::Duration as CookieDuration},
    http::header,
};
use latchkey_core::sign_in::pending::{
    BrowserBinding, MAX_TTL, PendingKind, PendingRequest, PendingToken,
};

use crate::{AppState, error::page::PageError};

fn cookie_name(state: &AppState) -> &'static str {
    if state.core.settings.secure_cookies() {
        "__Host-latchkey_pending"
    } else {
        "latchkey_pending"
    }
}

/// The binding cookie for `binding`.
pub fn binding_cookie(state: &AppState, binding: &BrowserBinding) -> Cookie<'static> {
    let secure = state.core.settings.secure_cookies();
    Cookie::build(cookie_name(state), binding.0.clone())
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(if secure { SameSite::None } else { SameSite::Lax })
        .max_age(CookieDuration::seconds(i64::try_from(MAX_TTL.as_secs()).unwrap_or(1800)))
        .finish()
}

/// Sends the browser off to a protocol peer (an IdP, Google, Microsoft) with the binding of the
/// request it started: `res` gets the binding cookie and `no-store` (it carries a single-use
/// `state` or request ID that no cache may keep).
pub fn bound_response(
    state: &AppState,
    binding: &BrowserBinding,
    mut res: HttpResponse,
) -> Result<HttpResponse, PageError> {
    res.add_cookie(&binding_cookie(state, binding)).map_err(|_| PageError::internal())?;
    res.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    Ok(res)
}

/// A 302 to `url` as a [`bound_response`].
pub fn bound_redirect(
    state: &AppState,
    binding: &BrowserBinding,
    url: String,
) -> Result<HttpResponse, PageError> {
    let res = HttpResponse::Found().insert_header((header::LOCATION, url)).finish();
    bound_response(state, binding, res)
}

/// The browser's existing binding, or a new one (the caller sets [`binding_cookie`]).
pub fn browser_binding(req: &HttpRequest, state: &AppState) -> BrowserBinding {
    returned_binding(req, state).unwrap_or_default()
}

/// The binding cookie the browser sent, if it looks like one of ours.
pub fn returned_binding(req: &HttpRequest, state: &AppState) -> Option<BrowserBinding> {
    req.cookie(cookie_name(state))
        .map(|c| BrowserBinding(c.value().to_owned()))
        .filter(|b| b.0.len() == 43)
}

/// A started request: the token to send through the provider, and the cookie to set on the
/// response that sends the browser there (the browser's existing binding is reused, so several
/// tabs can sign in at once).
pub struct Begun {
    pub token: PendingToken,
    pub cookie: Cookie<'static>,
}

/// Stores a pending request bound to this browser, for `ttl` (at most half an hour).
pub async fn begin(
    req: &HttpRequest,
    state: &AppState,
    kind: &PendingKind,
    return_to: &str,
    ttl: Duration,
) -> Result<Begun, PageError> {
    let binding = returned_binding(req, state).unwrap_or_default();
    let token = state.core.pending.begin(kind, return_to, &binding, ttl).await?;
    Ok(Begun { token, cookie: binding_cookie(state, &binding) })
}

/// Takes back the request an identity provider's answer refers to: the answer's token and
/// this browser's binding cookie must both match, once, before the request expires. Anything
/// else is a 404 page (an expired sign-in, or someone else's).
pub async fn take(
    req: &HttpRequest,
    state: &AppState,
    token: &str,
) -> Result<PendingRequest, PageError> {
    let Some(binding) = returned_binding(req, state) else {
        return Err(PageError::not_found());
    };
    Ok(state.core.pending.take(&PendingToken(token.to_owned()), &binding).await?)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use actix_web::{App, HttpResponse, http::header, test, web};
    use latchkey_core::{
        Latchkey, Settings,
        sign_in::pending::{PendingKind, PendingToken},
    };

    use super::*;

    async fn core(dir: &std::path::Path, public_url: &str) -> Latchkey {
        let env = HashMap::from([
            ("LATCHKEY_DATA_DIR".to_owned(), dir.display().to_string()),
            ("LATCHKEY_PUBLIC_URL".to_owned(), public_url.to_owned()),
        ]);
        let settings = Settings::load(None, &env).unwrap_or_else(|e| panic!("{e}"));
        Latchkey::open(settings).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// A protocol's two routes, as SAML and EASIE build them on these helpers.
    async fn start(
        req: HttpRequest,
        state: web::Data<AppState>,
    ) -> Result<HttpResponse, PageError> {
        let kind = PendingKind::SamlAuthn {
            connection_id: "con_1".into(),
            request_id: "_r1".into(),
            tested_by: None,
        };
        let begun = begin(&req, &state, &kind, "/account", Duration::from_secs(300)).await?;
        Ok(HttpResponse::Ok().cookie(begun.cookie).body(begun.token.0))
    }

    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "RelayState")]
        relay_state: String,
    }

    async fn acs(
        req: HttpRequest,
        state: web::Data<AppState>,
        form: web::Form<Answer>,
    ) -> Result<HttpResponse, PageError> {
        let taken = take(&req, &state, &form.relay_state).await?;
        Ok(HttpResponse::Ok().body(taken.return_to))
    }

    #[actix_web::test]
    async fn a_cross_site_answer_with_the_binding_cookie_is_taken_once() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let core = core(dir.path(), "https://id.example.com").await;
        let state = web::Data::new(AppState::new(core));
        let app = test::init_service(
            App::new()
                .app_data(state.clone())
                .route("/start", web::get().to(start))
                .route("/acs", web::post().to(acs)),
        )
        .await;

        let res =
            test::call_service(&app, test::TestRequest::get().uri("/start").to_request()).await;
        let cookie = res
            .response()
            .cookies()
            .next()
            .map(|c| c.into_owned())
            .unwrap_or_else(|| panic!("no binding cookie"));
        // A cookie a cross-site POST carries, and only to this origin over https.
        assert_eq!(cookie.name(), "__Host-latchkey_pending");
        assert_eq!(cookie.same_site(), Some(SameSite::None));
        assert_eq!(
            (cookie.secure(), cookie.http_only(), cookie.path()),
            (Some(true), Some(true), Some("/"))
        );
        let token = String::from_utf8(test::read_body(res).await.to_vec()).unwrap_or_default();

        let answer = |with_cookie: bool| {
            let mut req = test::TestRequest::post()
                .uri("/acs")
                .insert_header((header::ORIGIN, "https://idp.example.net"))
                .insert_header(("sec-fetch-site", "cross-site"))
                .set_form([("RelayState", token.as_str())]);
            if with_cookie {
                req = req.cookie(cookie.clone());
            }
            req.to_request()
        };
        // Another browser (no binding cookie) gets nothing, and does not burn the request.
        assert_eq!(test::call_service(&app, answer(false)).await.status(), 404);
        let res = test::call_service(&app, answer(true)).await;
        assert_eq!(res.status(), 200);
        assert_eq!(test::read_body(res).await, "/account");
        // Single use.
        assert_eq!(test::call_service(&app, answer(true)).await.status(), 404);
        let other = BrowserBinding::new();
        assert!(state.core.pending.take(&PendingToken(token.clone()), &other).await.is_err());
    }

    #[actix_web::test]
    async fn plain_http_set_ups_get_a_lax_cookie() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let state = AppState::new(core(dir.path(), "http://127.0.0.1:8080").await);
        let cookie = binding_cookie(&state, &BrowserBinding::new());
        assert_eq!(cookie.name(), "latchkey_pending");
        assert_eq!((cookie.same_site(), cookie.secure()), (Some(SameSite::Lax), Some(false)));
    }
}
