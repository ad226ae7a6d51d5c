//! `/email/verify`: the link from an email-verification mail. GET shows a button and POST uses
//! the link, so a mail scanner that fetches links does not spend it.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use latchkey_core::Error as CoreError;
use serde::Deserialize;

use super::{
    support::{client_info, csrf, render, safe_return_to, see_other, verify_csrf},
    views,
};
use crate::{AppState, error::page::PageError};

type Page = Result<HttpResponse, PageError>;

#[derive(Deserialize)]
pub struct LinkQuery {
    #[serde(default)]
    token: String,
    return_to: Option<String>,
}

pub async fn form(req: HttpRequest, state: web::Data<AppState>, q: web::Query<LinkQuery>) -> Page {
    if !state.core.sign_in.email_verification_is_valid(&q.token).await? {
        return invalid_link(&state);
    }
    let return_to = safe_return_to(q.return_to.as_deref(), &state);
    let c = csrf(&req, &state);
    render(
        &state,
        Some(&c),
        StatusCode::OK,
        &views::VerifyEmail { csrf: &c.token, token: &q.token, return_to: &return_to },
    )
}

#[derive(Deserialize)]
pub struct LinkForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    token: String,
    return_to: Option<String>,
}

pub async fn submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<LinkForm>,
) -> Page {
    verify_csrf(&req, &state, &form.csrf_token)?;
    match state.core.sign_in.verify_email(&form.token, &client_info(&req)).await {
        Ok(_) => {
            let return_to = safe_return_to(form.return_to.as_deref(), &state);
            Ok(see_other(if return_to == "/account" {
                "/account?notice=email_verified"
            } else {
                &return_to
            }))
        }
        Err(CoreError::Invalid { .. }) => invalid_link(&state),
        Err(e) => Err(e.into()),
    }
}

fn invalid_link(state: &AppState) -> Page {
    render(
        state,
        None,
        StatusCode::BAD_REQUEST,
        &views::Message {
            title: "This verification link is no longer valid",
            message: "It may have been used already, or it has expired. Send yourself a new one from your account page.",
            link: Some(("/account", "Go to your account")),
        },
    )
}
