//! `/admin/reauthenticate`: the password again before a sensitive action when the session's
//! last sign-in is older than ten minutes (or a fresh sign-in, for accounts without one).
//! Attempts count against the account's sign-in lockout.

use actix_web::{HttpRequest, http::StatusCode, web};
use latchkey_core::Error as CoreError;
use serde::Deserialize;

use super::{Console, Page, enc, nav, render, views};
use crate::{
    AppState,
    pages::support::{client_info, see_other},
};

#[derive(Deserialize)]
pub struct ReturnQuery {
    return_to: Option<String>,
}

/// Only a console address comes back out of this page.
fn console_path(raw: Option<&str>) -> String {
    match raw {
        Some(p)
            if (p == "/admin" || p.starts_with("/admin/") || p.starts_with("/admin?"))
                && !p.contains(['\\', '\r', '\n'])
                && !p.starts_with("//") =>
        {
            p.to_owned()
        }
        _ => "/admin".into(),
    }
}

pub async fn form(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<ReturnQuery>,
) -> Page {
    let console = Console::load(&req, &state).await?;
    let return_to = console_path(q.return_to.as_deref());
    page(&state, &console, return_to, None, StatusCode::OK).await
}

async fn page(
    state: &AppState,
    console: &Console,
    return_to: String,
    error: Option<&'static str>,
    status: StatusCode,
) -> Page {
    let email = console.user.primary_email.clone();
    let view = views::Reauthenticate {
        nav: nav(console, "", None),
        csrf: console.csrf.token.clone(),
        has_password: state.core.users.has_password(&console.user.id).await?,
        sign_in_again: format!("/sign-in?return_to={}&login_hint={}", enc(&return_to), enc(&email)),
        return_to,
        email,
        error,
    };
    render(state, console, status, &view)
}

#[derive(Deserialize)]
pub struct ReauthForm {
    csrf_token: String,
    password: String,
    return_to: Option<String>,
}

pub async fn submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<ReauthForm>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    let return_to = console_path(form.return_to.as_deref());
    let client = client_info(&req);
    match state.core.sign_in.reauthenticate(&console.session.id, &form.password, &client).await {
        Ok(()) => Ok(see_other(&return_to)),
        Err(CoreError::Invalid { .. }) => {
            let error = Some("That password is not correct.");
            page(&state, &console, return_to, error, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::console_path;

    #[test]
    fn only_console_addresses_come_back_out() {
        assert_eq!(console_path(Some("/admin/users/usr_1")), "/admin/users/usr_1");
        assert_eq!(console_path(Some("/admin")), "/admin");
        for bad in [
            "https://evil.example/admin",
            "//evil.example",
            "/administrator",
            "/account",
            "/admin/\\evil",
            "",
        ] {
            assert_eq!(console_path(Some(bad)), "/admin", "{bad}");
        }
        assert_eq!(console_path(None), "/admin");
    }
}
