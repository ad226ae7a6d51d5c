//! Signing in and signing up. Identifier-first routing decides, from the address's domain,
//! whether someone signs in with a password or through their organisation's enterprise
//! connection ([`routing`]). Each method verifies in its own way — a password with throttling,
//! an emailed sign-up code, and (through the connection registry) SAML and upstream OpenID
//! Connect — and then calls the one completion, [`SignInService::complete`], which provisions or
//! links the account, applies membership and enrollment, starts the session and records it, in
//! one transaction. Requests waiting on an identity provider live in [`pending`].

mod complete;
pub mod me;
mod password;
pub mod pending;
mod reset;
pub mod routing;
mod sign_up;
pub(crate) mod throttle;
mod verify_email;

use std::sync::{Arc, RwLock};

pub use complete::{OrgGrant, SignedIn, UpstreamSession, Verified, VerifiedSubject};
pub use routing::{ConnectionRegistry, EnterpriseConnection, SignInRoute};
pub use sign_up::PendingSignUp;
pub use throttle::LockoutStatus;
pub use verify_email::VerificationRequest;

/// Where a request comes from (re-exported here for the pages that sign people in).
pub use crate::infra::audit::ClientInfo;
use crate::{
    Result, Settings,
    identity::{passwords::Passwords, sessions::SessionService, users::UserService},
    infra::{config::AuthPolicy, mail::MailService, store::Store},
};

#[derive(Clone)]
pub struct SignInService {
    store: Store,
    users: UserService,
    sessions: SessionService,
    passwords: Passwords,
    mail: MailService,
    policy: AuthPolicy,
    public_url: String,
    /// The enterprise connection protocols (SAML, EASIE) that route addresses to themselves.
    registries: Arc<RwLock<Vec<Arc<dyn ConnectionRegistry>>>>,
}

impl SignInService {
    pub fn new(
        store: Store,
        users: UserService,
        sessions: SessionService,
        passwords: Passwords,
        mail: MailService,
        settings: &Settings,
    ) -> Self {
        Self {
            store,
            users,
            sessions,
            passwords,
            mail,
            policy: settings.auth,
            public_url: settings.public_url.clone(),
            registries: Arc::default(),
        }
    }

    /// Adds a protocol's connections to identifier-first routing.
    pub fn register_connections(&self, registry: Arc<dyn ConnectionRegistry>) {
        if let Ok(mut list) = self.registries.write() {
            list.push(registry);
        }
    }

    pub fn public_url(&self) -> &str {
        &self.public_url
    }
}

/// Mails one address may be sent by sign-up or reset requests per window, and requests one
/// client IP may make.
const MAILS_PER_ADDRESS: u32 = 5;
const MAIL_REQUESTS_PER_IP: u32 = 30;

impl SignInService {
    /// Limits requests that send mail, per address and per client IP; the request is counted
    /// before any mail is queued.
    async fn limit_mail_requests(
        &self,
        kind: &str,
        email: &str,
        client: &ClientInfo,
    ) -> Result<()> {
        let now = self.store.now();
        let window = i64::try_from(self.policy.lockout.as_secs()).unwrap_or(i64::MAX / 4);
        let db = self.store.db();
        if let Some(ip) = &client.ip {
            let key = format!("{kind}:ip:{ip}");
            throttle::hit(db, &key, MAIL_REQUESTS_PER_IP, window, now).await?;
        }
        let key = format!("{kind}:email:{email}");
        throttle::hit(db, &key, MAILS_PER_ADDRESS, window, now).await
    }
}
