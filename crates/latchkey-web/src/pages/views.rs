//! askama views of the hosted pages (templates in `templates/pages/`).

use askama::Template;
use latchkey_core::model::User;

/// The upstream providers offered for consumer sign-in (configured ones only).
#[derive(Debug, Clone, Copy, Default)]
pub struct Social {
    pub google: bool,
    pub microsoft: bool,
}

#[derive(Template)]
#[template(path = "pages/sign_in.html")]
pub struct SignIn<'a> {
    pub csrf: &'a str,
    /// Which "Continue with …" buttons to show.
    pub social: Social,
    pub return_to: &'a str,
    pub return_query: &'a str,
    pub email: &'a str,
    pub error: Option<&'a str>,
    pub notice: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "pages/sign_in_password.html")]
pub struct SignInPassword<'a> {
    pub csrf: &'a str,
    pub return_to: &'a str,
    pub return_query: &'a str,
    pub email: &'a str,
    pub error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "pages/sign_up.html")]
pub struct SignUp<'a> {
    pub csrf: &'a str,
    /// Which "Continue with …" buttons to show.
    pub social: Social,
    pub return_to: &'a str,
    pub return_query: &'a str,
    pub email: &'a str,
    pub error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "pages/sign_up_verify.html")]
pub struct SignUpVerify<'a> {
    pub csrf: &'a str,
    pub return_to: &'a str,
    pub return_query: &'a str,
    pub attempt: &'a str,
    pub email: &'a str,
    pub error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "pages/sign_out.html")]
pub struct SignOut<'a> {
    pub csrf: &'a str,
}

#[derive(Template)]
#[template(path = "pages/forgot.html")]
pub struct Forgot<'a> {
    pub csrf: &'a str,
    pub sent: bool,
}

#[derive(Template)]
#[template(path = "pages/reset.html")]
pub struct Reset<'a> {
    pub csrf: &'a str,
    pub token: &'a str,
    pub valid: bool,
    pub error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "pages/verify_email.html")]
pub struct VerifyEmail<'a> {
    pub csrf: &'a str,
    pub token: &'a str,
    pub return_to: &'a str,
}

#[derive(Template)]
#[template(path = "pages/message.html")]
pub struct Message<'a> {
    pub title: &'a str,
    pub message: &'a str,
    pub link: Option<(&'a str, &'a str)>,
}

pub struct SessionRow {
    pub id: String,
    pub device: String,
    pub ip: String,
    pub last_active: String,
    pub last_active_iso: String,
    pub current: bool,
}

pub struct OrgRow {
    pub id: String,
    pub name: String,
    pub role: String,
    pub active: bool,
}

pub struct InvitationRow {
    pub id: String,
    pub org_name: String,
    pub role: String,
}

pub struct SuggestionRow {
    pub org_id: String,
    pub org_name: String,
    pub requested: bool,
}

/// A connected Google or Microsoft account on `/account`.
pub struct ConnectedRow {
    /// `google` or `microsoft`, as in the paths.
    pub provider: &'static str,
    pub provider_name: &'static str,
    pub email: String,
    pub scopes: String,
    /// Through the organisation's EASIE connection: it cannot be disconnected.
    pub enterprise: bool,
}

#[derive(Template)]
#[template(path = "pages/account.html")]
pub struct Account<'a> {
    pub csrf: &'a str,
    pub user: &'a User,
    pub user_name: &'a str,
    pub sessions: Vec<SessionRow>,
    pub organisations: Vec<OrgRow>,
    pub has_active_org: bool,
    pub invitations: Vec<InvitationRow>,
    pub suggestions: Vec<SuggestionRow>,
    pub apps: Vec<latchkey_core::oauth::ConsentInfo>,
    pub connected: Vec<ConnectedRow>,
    pub notice: Option<&'a str>,
    pub error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "pages/invitation.html")]
pub struct InvitationPage<'a> {
    pub csrf: &'a str,
    pub token: &'a str,
    pub org_name: &'a str,
    pub role: &'a str,
    pub error: Option<&'a str>,
    /// The user's address when it is the invited one but not verified yet: the page offers to
    /// mail a verification link.
    pub unverified: Option<&'a str>,
}

pub struct JoinRequestRow {
    pub id: String,
    pub name: String,
    pub email: String,
}

#[derive(Template)]
#[template(path = "pages/join_requests.html")]
pub struct JoinRequests<'a> {
    pub csrf: &'a str,
    pub org_id: &'a str,
    pub org_name: &'a str,
    pub requests: Vec<JoinRequestRow>,
    pub notice: Option<&'a str>,
}
