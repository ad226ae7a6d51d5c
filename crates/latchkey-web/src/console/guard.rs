//! Who is using the console: a signed-in user who is an instance administrator or an admin of
//! at least one organisation. Everyone else is sent to sign in (no session) or refused (403).
//! What each of them may do is decided again by the core services, with the same actor.

use actix_web::{HttpMessage as _, HttpRequest, http::Method};
use latchkey_core::{
    identity::model::{Session, User},
    infra::audit::{Actor, Principal},
    tenancy::model::UserOrganisation,
};

use crate::{
    AppState,
    error::page::PageError,
    pages::support::{Csrf, client_info, csrf, current_session, verify_csrf},
};

/// Sensitive actions (deleting, rotating keys, creating API keys) need a sign-in or a password
/// confirmation at most this old.
pub const RECENT_SIGN_IN_SECS: i64 = 600;

pub struct Console {
    pub user: User,
    pub session: Session,
    /// The organisations the user administers (instance administrators: none needed).
    pub admin_of: Vec<UserOrganisation>,
    pub actor: Actor,
    pub csrf: Csrf,
}

impl Console {
    /// The console user behind the request, for a page (GET).
    pub async fn load(req: &HttpRequest, state: &AppState) -> Result<Self, PageError> {
        let Some((ctx, _)) = current_session(req, state).await else {
            return Err(PageError::SignIn { return_to: here(req) });
        };
        let session = state.core.sessions.get(&ctx.session_id).await?;
        let user = state.core.users.get(&ctx.user_id).await?;
        let admin_of: Vec<UserOrganisation> = state
            .core
            .orgs
            .list_for_user(&user.id)
            .await?
            .into_iter()
            .filter(|o| o.role == latchkey_core::tenancy::access::ROLE_ADMIN)
            .collect();
        if !user.is_admin && admin_of.is_empty() {
            return Err(latchkey_core::Error::Forbidden(
                "the console is for instance and organisation administrators".into(),
            )
            .into());
        }
        let client = client_info(req);
        let request_id =
            req.extensions().get::<crate::http_middleware::RequestId>().map(|r| r.0.clone());
        let actor = Actor {
            principal: Principal::User(user.id.clone()),
            client_ip: client.ip,
            user_agent: client.user_agent,
            request_id,
        };
        Ok(Self { user, session, admin_of, actor, csrf: csrf(req, state) })
    }

    /// The console user behind a form submission: the CSRF check comes first, before the
    /// session is even looked at.
    pub async fn submit(
        req: &HttpRequest,
        state: &AppState,
        csrf_token: &str,
    ) -> Result<Self, PageError> {
        verify_csrf(req, state, csrf_token)?;
        Self::load(req, state).await
    }

    pub fn is_instance_admin(&self) -> bool {
        self.user.is_admin
    }

    /// Pages about the whole instance (users, applications, keys, sessions, the dashboard).
    pub fn require_instance_admin(&self) -> Result<(), PageError> {
        if self.is_instance_admin() {
            Ok(())
        } else {
            Err(latchkey_core::Error::Forbidden("only instance administrators may see this".into())
                .into())
        }
    }

    /// Pages of one organisation: instance administrators, or an admin of that organisation.
    /// Any other organisation, existing or not, is 403 alike (the services check again).
    pub fn require_org_admin(&self, org_id: &str) -> Result<(), PageError> {
        if self.is_instance_admin() || self.admin_of.iter().any(|o| o.organisation.id == org_id) {
            Ok(())
        } else {
            Err(latchkey_core::Error::Forbidden("you do not administer this organisation".into())
                .into())
        }
    }

    /// Sensitive actions: a sign-in or password confirmation within
    /// [`RECENT_SIGN_IN_SECS`], else off to confirm, coming back to `return_to`.
    pub fn require_recent_sign_in(&self, now: i64, return_to: &str) -> Result<(), PageError> {
        if signed_in_recently(self.session.authenticated_at, now) {
            Ok(())
        } else {
            Err(PageError::Reauthenticate { return_to: return_to.to_owned() })
        }
    }
}

/// Whether a proof of identity at `authenticated_at` still covers a sensitive action at `now`.
pub fn signed_in_recently(authenticated_at: i64, now: i64) -> bool {
    now >= authenticated_at && now - authenticated_at <= RECENT_SIGN_IN_SECS
}

/// This page's address, to come back to after signing in; for a form's target, the page it
/// lives on (a POST cannot be replayed by a redirect).
fn here(req: &HttpRequest) -> String {
    if req.method() == Method::GET {
        req.uri().path_and_query().map_or("/admin", |p| p.as_str()).to_owned()
    } else {
        "/admin".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sign_in_covers_sensitive_actions_for_ten_minutes_and_not_a_second_more() {
        assert!(signed_in_recently(1000, 1000));
        assert!(signed_in_recently(1000, 1600));
        assert!(!signed_in_recently(1000, 1601));
        // A proof from the future (a clock step back) is doubtful: ask again.
        assert!(!signed_in_recently(1000, 999));
    }
}
