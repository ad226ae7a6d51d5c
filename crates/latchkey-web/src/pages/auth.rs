//! Sign-in (identifier first), sign-up with an emailed code, sign-out, password reset.

use actix_web::{
    HttpRequest, HttpResponse,
    http::{StatusCode, header},
    web,
};
use latchkey_core::{Error as CoreError, sign_in::SignInRoute};
use serde::Deserialize;

use super::{
    support::{
        SIGNED_OUT, clear_session_cookie, client_info, csrf, current_session, end_current_session,
        render, return_query, safe_return_to, see_other, session_cookie, verify_csrf,
    },
    views,
};
use crate::{AppState, error::page::PageError};

type Page = Result<HttpResponse, PageError>;

#[derive(Deserialize)]
pub struct ReturnQuery {
    #[serde(alias = "redirect_url")]
    return_to: Option<String>,
    login_hint: Option<String>,
    signed_out: Option<String>,
    reset: Option<String>,
}

pub async fn sign_in_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<ReturnQuery>,
) -> Page {
    let return_to = safe_return_to(q.return_to.as_deref(), &state);
    let c = csrf(&req, &state);
    let notice = match (q.signed_out.is_some(), q.reset.is_some()) {
        (true, _) => Some("You have signed out."),
        (_, true) => Some("Your password has been changed. Sign in with the new one."),
        _ => None,
    };
    let email: String = q.login_hint.as_deref().unwrap_or("").chars().take(320).collect();
    render(
        &state,
        Some(&c),
        StatusCode::OK,
        &views::SignIn {
            social: social_buttons(&state),
            csrf: &c.token,
            return_to: &return_to,
            return_query: &return_query(&return_to),
            email: &email,
            error: None,
            notice,
        },
    )
}

#[derive(Deserialize)]
pub struct IdentifyForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    email: String,
    #[serde(alias = "redirect_url")]
    return_to: Option<String>,
}

/// Step one: the address decides the next step: the password form, or the organisation's
/// enterprise connection. The domain decides, never whether an account exists, so the page
/// reveals nothing about accounts.
pub async fn sign_in_identify(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<IdentifyForm>,
) -> Page {
    verify_csrf(&req, &state, &form.csrf_token)?;
    let return_to = safe_return_to(form.return_to.as_deref(), &state);
    let c = csrf(&req, &state);
    let email = form.email.trim();
    match state.core.sign_in.route(email).await {
        Ok(SignInRoute::Enterprise { connection }) => {
            let hint = latchkey_core::infra::email::normalize_email(email)?;
            // A page that navigates, not a 303: browsers apply this form's `form-action` to
            // every redirect that follows the submission, and the connection's start
            // redirects on to the IdP's origin.
            let start = enterprise_start(&connection.start_path, &hint, &return_to);
            Ok(crate::oidc::navigate_page(&start, "Continuing to your organisation's sign-in"))
        }
        Ok(SignInRoute::Password) => render(
            &state,
            Some(&c),
            StatusCode::OK,
            &views::SignInPassword {
                csrf: &c.token,
                return_to: &return_to,
                return_query: &return_query(&return_to),
                email,
                error: None,
            },
        ),
        Err(_) => render(
            &state,
            Some(&c),
            StatusCode::BAD_REQUEST,
            &views::SignIn {
                social: social_buttons(&state),
                csrf: &c.token,
                return_to: &return_to,
                return_query: &return_query(&return_to),
                email,
                error: Some("Enter a valid email address."),
                notice: None,
            },
        ),
    }
}

/// The "Continue with …" buttons of the configured providers.
fn social_buttons(state: &AppState) -> views::Social {
    use latchkey_core::identity::method::Upstream;
    let up = &state.core.upstream;
    views::Social {
        google: up.configured(Upstream::Google),
        microsoft: up.configured(Upstream::Microsoft),
    }
}

/// The connection's start URL with the address as `login_hint` and where to come back to.
fn enterprise_start(start_path: &str, email: &str, return_to: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("login_hint", email)
        .append_pair("return_to", return_to)
        .finish();
    let sep = if start_path.contains('?') { '&' } else { '?' };
    format!("{start_path}{sep}{query}")
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(alias = "redirect_url")]
    return_to: Option<String>,
}

pub async fn sign_in_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<PasswordForm>,
) -> Page {
    verify_csrf(&req, &state, &form.csrf_token)?;
    let return_to = safe_return_to(form.return_to.as_deref(), &state);
    let client = client_info(&req);
    match state.core.sign_in.sign_in_with_password(&form.email, &form.password, &client).await {
        Ok(signed_in) => {
            super::support::end_previous_session(&req, &state, &signed_in.session.id).await;
            Ok(HttpResponse::SeeOther()
                .insert_header((header::LOCATION, return_to))
                .cookie(session_cookie(&state, &signed_in.secret))
                .finish())
        }
        Err(e) => {
            let (status, message, retry) = match e {
                CoreError::RateLimited { retry_after_secs } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("Too many attempts. Try again in {}.", human_wait(retry_after_secs)),
                    Some(retry_after_secs),
                ),
                CoreError::Unauthenticated(_) => {
                    (StatusCode::UNAUTHORIZED, "Incorrect email or password.".to_owned(), None)
                }
                other => return Err(other.into()),
            };
            let c = csrf(&req, &state);
            let mut res = render(
                &state,
                Some(&c),
                status,
                &views::SignInPassword {
                    csrf: &c.token,
                    return_to: &return_to,
                    return_query: &return_query(&return_to),
                    email: form.email.trim(),
                    error: Some(&message),
                },
            )?;
            if let Some(secs) = retry
                && let Ok(v) = header::HeaderValue::from_str(&secs.to_string())
            {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
            Ok(res)
        }
    }
}

fn human_wait(secs: u64) -> String {
    match secs {
        0..=1 => "a second".into(),
        2..=59 => format!("{secs} seconds"),
        60..=119 => "a minute".into(),
        _ => format!("{} minutes", secs.div_ceil(60)),
    }
}

pub async fn sign_up_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<ReturnQuery>,
) -> Page {
    let return_to = safe_return_to(q.return_to.as_deref(), &state);
    let c = csrf(&req, &state);
    render(
        &state,
        Some(&c),
        StatusCode::OK,
        &views::SignUp {
            social: social_buttons(&state),
            csrf: &c.token,
            return_to: &return_to,
            return_query: &return_query(&return_to),
            email: "",
            error: None,
        },
    )
}

pub async fn sign_up_submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<PasswordForm>,
) -> Page {
    verify_csrf(&req, &state, &form.csrf_token)?;
    let return_to = safe_return_to(form.return_to.as_deref(), &state);
    match state.core.sign_in.start_sign_up(&form.email, &form.password, &client_info(&req)).await {
        Ok(pending) => {
            let rq = return_query(&return_to).replacen('?', "&", 1);
            Ok(see_other(&format!("/sign-up/verify?attempt={}{rq}", pending.id)))
        }
        Err(CoreError::Invalid { field, message }) => {
            let c = csrf(&req, &state);
            let text = format!(
                "{} {message}.",
                if field == "email" { "The email address" } else { "The password" }
            );
            render(
                &state,
                Some(&c),
                StatusCode::BAD_REQUEST,
                &views::SignUp {
                    social: social_buttons(&state),
                    csrf: &c.token,
                    return_to: &return_to,
                    return_query: &return_query(&return_to),
                    email: form.email.trim(),
                    error: Some(&text),
                },
            )
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct VerifyQuery {
    #[serde(default)]
    attempt: String,
    #[serde(alias = "redirect_url")]
    return_to: Option<String>,
}

pub async fn verify_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<VerifyQuery>,
) -> Page {
    let return_to = safe_return_to(q.return_to.as_deref(), &state);
    let c = csrf(&req, &state);
    match state.core.sign_in.pending_sign_up(&q.attempt).await {
        Ok(pending) => render(
            &state,
            Some(&c),
            StatusCode::OK,
            &views::SignUpVerify {
                csrf: &c.token,
                return_to: &return_to,
                return_query: &return_query(&return_to),
                attempt: &pending.id,
                email: &pending.email,
                error: None,
            },
        ),
        Err(CoreError::NotFound(_)) => expired_sign_up(&state),
        Err(e) => Err(e.into()),
    }
}

fn expired_sign_up(state: &AppState) -> Page {
    render(
        state,
        None,
        StatusCode::NOT_FOUND,
        &views::Message {
            title: "This sign-up has expired",
            message: "Codes are valid for 10 minutes. Start again to get a new one.",
            link: Some(("/sign-up", "Start again")),
        },
    )
}

#[derive(Deserialize)]
pub struct VerifyForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    attempt: String,
    #[serde(default)]
    code: String,
    #[serde(alias = "redirect_url")]
    return_to: Option<String>,
}

pub async fn verify_submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<VerifyForm>,
) -> Page {
    verify_csrf(&req, &state, &form.csrf_token)?;
    let return_to = safe_return_to(form.return_to.as_deref(), &state);
    match state.core.sign_in.complete_sign_up(&form.attempt, &form.code, &client_info(&req)).await {
        Ok(signed_in) => {
            super::support::end_previous_session(&req, &state, &signed_in.session.id).await;
            Ok(HttpResponse::SeeOther()
                .insert_header((header::LOCATION, return_to))
                .cookie(session_cookie(&state, &signed_in.secret))
                .finish())
        }
        Err(CoreError::Invalid { message, .. }) => {
            let Ok(pending) = state.core.sign_in.pending_sign_up(&form.attempt).await else {
                return expired_sign_up(&state);
            };
            let c = csrf(&req, &state);
            let text = format!("The code {message}.");
            render(
                &state,
                Some(&c),
                StatusCode::BAD_REQUEST,
                &views::SignUpVerify {
                    csrf: &c.token,
                    return_to: &return_to,
                    return_query: &return_query(&return_to),
                    attempt: &pending.id,
                    email: &pending.email,
                    error: Some(&text),
                },
            )
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn sign_out_form(req: HttpRequest, state: web::Data<AppState>) -> Page {
    if current_session(&req, &state).await.is_none() {
        return Ok(see_other("/sign-in"));
    }
    let c = csrf(&req, &state);
    render(&state, Some(&c), StatusCode::OK, &views::SignOut { csrf: &c.token })
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf_token: String,
}

pub async fn sign_out(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<CsrfOnly>,
) -> Page {
    verify_csrf(&req, &state, &form.csrf_token)?;
    let mut res = match end_current_session(&req, &state).await? {
        // A session from an IdP with Single Logout: sign out there too, then come back.
        Some((location, binding)) => {
            let mut res = crate::oidc::navigate_page(&location, "Signing you out");
            res.add_cookie(&binding).map_err(|_| PageError::internal())?;
            res
        }
        None => HttpResponse::SeeOther().insert_header((header::LOCATION, SIGNED_OUT)).finish(),
    };
    res.add_cookie(&clear_session_cookie(&state)).map_err(|_| PageError::internal())?;
    Ok(res)
}

pub async fn forgot_form(req: HttpRequest, state: web::Data<AppState>) -> Page {
    let c = csrf(&req, &state);
    render(&state, Some(&c), StatusCode::OK, &views::Forgot { csrf: &c.token, sent: false })
}

#[derive(Deserialize)]
pub struct ForgotForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    email: String,
}

/// Always the same answer, whether or not the address has an account.
pub async fn forgot_submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<ForgotForm>,
) -> Page {
    verify_csrf(&req, &state, &form.csrf_token)?;
    state.core.sign_in.request_password_reset(&form.email, &client_info(&req)).await?;
    let c = csrf(&req, &state);
    render(&state, Some(&c), StatusCode::OK, &views::Forgot { csrf: &c.token, sent: true })
}

#[derive(Deserialize)]
pub struct ResetQuery {
    #[serde(default)]
    token: String,
}

pub async fn reset_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<ResetQuery>,
) -> Page {
    let valid = state.core.sign_in.password_reset_is_valid(&q.token).await?;
    let c = csrf(&req, &state);
    let status = if valid { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    render(
        &state,
        Some(&c),
        status,
        &views::Reset { csrf: &c.token, token: &q.token, valid, error: None },
    )
}

#[derive(Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
}

pub async fn reset_submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<ResetForm>,
) -> Page {
    verify_csrf(&req, &state, &form.csrf_token)?;
    match state.core.sign_in.reset_password(&form.token, &form.password, &client_info(&req)).await {
        Ok(()) => Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/sign-in?reset=1"))
            .cookie(clear_session_cookie(&state))
            .finish()),
        Err(CoreError::Invalid { field, message }) => {
            let valid = field != "token";
            let c = csrf(&req, &state);
            let text = if valid {
                format!("The password {message}.")
            } else {
                "This reset link is invalid, has been used, or has expired.".to_owned()
            };
            render(
                &state,
                Some(&c),
                StatusCode::BAD_REQUEST,
                &views::Reset { csrf: &c.token, token: &form.token, valid, error: Some(&text) },
            )
        }
        Err(e) => Err(e.into()),
    }
}
