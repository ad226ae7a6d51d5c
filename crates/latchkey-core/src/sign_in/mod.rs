//! Signing in and signing up: the identifier-first decision, password sign-in with throttling,
//! email-verified sign-up, password reset and change.

mod reset;
mod sign_up;
mod throttle;
mod verify_email;

use sea_orm::EntityTrait;
use serde::Serialize;
use serde_json::json;

pub use sign_up::PendingSignUp;
pub use throttle::LockoutStatus;
pub use verify_email::VerificationRequest;

use crate::{
    Error, Result, Settings,
    identity::model::{Session, User, UserStatus},
    identity::passwords::Passwords,
    identity::sessions::{SessionOrigin, SessionService},
    identity::users::{UserService, normalize_email},
    infra::audit::{self, Actor},
    infra::config::AuthPolicy,
    infra::entity::password_credential,
    infra::mail::MailService,
    infra::store::Store,
    tenancy::enrollment::EnrollmentService,
};

/// How a person with a given email address signs in. The hosted sign-in page asks for the
/// address first and then follows this; enterprise connections (SAML, EASIE) add variants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum SignInMethod {
    Password,
}

/// Where a request comes from, for sessions, throttling and the audit log.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl ClientInfo {
    fn actor_for(&self, user_id: Option<&str>) -> Actor {
        match user_id {
            Some(id) => Actor::user(id, self.ip.clone(), self.user_agent.clone()),
            None => Actor {
                name: "anonymous".into(),
                client_ip: self.ip.clone(),
                user_agent: self.user_agent.clone(),
            },
        }
    }

    fn session_origin(&self, method: &str) -> SessionOrigin {
        SessionOrigin {
            auth_method: method.into(),
            client_ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
        }
    }
}

/// A new session: what the browser must store as its cookie.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: User,
    pub session: Session,
    pub secret: String,
}

#[derive(Clone)]
pub struct AuthService {
    store: Store,
    users: UserService,
    sessions: SessionService,
    passwords: Passwords,
    mail: MailService,
    enrollment: EnrollmentService,
    policy: AuthPolicy,
    public_url: String,
}

impl AuthService {
    pub fn new(
        store: Store,
        users: UserService,
        sessions: SessionService,
        passwords: Passwords,
        mail: MailService,
        enrollment: EnrollmentService,
        settings: &Settings,
    ) -> Self {
        Self {
            store,
            users,
            sessions,
            passwords,
            mail,
            enrollment,
            policy: settings.auth,
            public_url: settings.public_url.clone(),
        }
    }

    /// The seam of identifier-first sign-in: which method this address must use. It never
    /// reveals whether an account exists.
    pub async fn sign_in_method(&self, email: &str) -> Result<SignInMethod> {
        normalize_email(email)?;
        Ok(SignInMethod::Password)
    }

    /// Password sign-in. Every failure looks the same to the caller (wrong password, unknown
    /// or inactive account), costs one Argon2 verification, and counts against the account and
    /// the client IP; past the limits the caller gets [`Error::RateLimited`].
    pub async fn sign_in_with_password(
        &self,
        email: &str,
        password: &str,
        client: &ClientInfo,
    ) -> Result<SignedIn> {
        let email = normalize_email(email).map_err(|_| Error::Unauthenticated("invalid email"))?;
        let now = self.store.now();
        let keys = throttle::Keys::new(&email, client.ip.as_deref());
        if let Err(e) = throttle::check(self.store.db(), &keys, &self.policy, now).await {
            audit::record(
                self.store.db(),
                now,
                &client.actor_for(None),
                "sign_in.throttled",
                None,
                json!({ "email": email }),
            )
            .await?;
            return Err(e);
        }

        let user = self.users.find_by_email(&email).await?;
        let credential = match &user {
            Some(u) => {
                password_credential::Entity::find_by_id(u.id.clone()).one(self.store.db()).await?
            }
            None => None,
        };
        let verified = match &credential {
            Some(c) => self.passwords.verify(password.to_owned(), c.password_hash.clone()).await?,
            None => {
                self.passwords.verify_dummy(password.to_owned()).await?;
                false
            }
        };
        let active = user.as_ref().is_some_and(|u| u.status == UserStatus::Active);

        match user {
            Some(user) if verified && active => {
                throttle::record_success(self.store.db(), &keys).await?;
                let actor = client.actor_for(Some(&user.id));
                let (session, secret) = self
                    .sessions
                    .create(&user.id, client.session_origin("password"), &actor)
                    .await?;
                audit::record(
                    self.store.db(),
                    now,
                    &actor,
                    "sign_in.succeeded",
                    Some(&user.id),
                    json!({ "method": "password", "session_id": session.id }),
                )
                .await?;
                Ok(SignedIn { user, session, secret })
            }
            user => {
                let reason = match (&user, verified) {
                    (None, _) => "unknown_account",
                    (Some(_), true) => "account_inactive",
                    (Some(_), false) if credential.is_none() => "no_password",
                    _ => "wrong_password",
                };
                let user_id = user.as_ref().map(|u| u.id.as_str());
                let locked =
                    throttle::record_failure(self.store.db(), &keys, &self.policy, now).await?;
                let actor = client.actor_for(None);
                audit::record(
                    self.store.db(),
                    now,
                    &actor,
                    "sign_in.failed",
                    user_id,
                    json!({ "email": email, "reason": reason }),
                )
                .await?;
                if locked {
                    audit::record(self.store.db(), now, &Actor::system(), "user.locked_out", user_id, json!({ "email": email, "until": now + self.policy.lockout.as_secs() as i64 })).await?;
                }
                Err(Error::Unauthenticated("wrong email or password"))
            }
        }
    }

    /// Lockout state of an account, for administrators.
    pub async fn lockout_status(&self, email: &str) -> Result<LockoutStatus> {
        let email = normalize_email(email)?;
        throttle::status(self.store.db(), &throttle::Keys::new(&email, None), self.store.now())
            .await
    }

    /// Clears an account's failed sign-in counter and lockout.
    pub async fn unlock(&self, email: &str, actor: &Actor) -> Result<()> {
        let now = self.store.now();
        let email = normalize_email(email)?;
        let txn = self.store.begin_write().await?;
        throttle::record_success(&txn, &throttle::Keys::new(&email, None)).await?;
        audit::record(&txn, now, actor, "user.unlocked", None, json!({ "email": email })).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Changes a signed-in user's password after checking the current one.
    pub async fn change_password(
        &self,
        user_id: &str,
        current: &str,
        new: &str,
        client: &ClientInfo,
    ) -> Result<()> {
        let now = self.store.now();
        let user = self.users.get(user_id).await?;
        let credential =
            password_credential::Entity::find_by_id(user.id.clone()).one(self.store.db()).await?;
        let ok = match credential {
            Some(c) => self.passwords.verify(current.to_owned(), c.password_hash).await?,
            None => false,
        };
        if !ok {
            audit::record(
                self.store.db(),
                now,
                &client.actor_for(Some(user_id)),
                "password.change_failed",
                Some(user_id),
                json!({}),
            )
            .await?;
            return Err(Error::invalid("current_password", "is not correct"));
        }
        crate::identity::passwords::check_strength(
            new,
            &user.primary_email,
            self.policy.password_min_score,
        )?;
        let hash = self.passwords.hash(new.to_owned()).await?;
        let txn = self.store.begin_write().await?;
        self.users.set_password_hash(&txn, user_id, hash).await?;
        audit::record(
            &txn,
            now,
            &client.actor_for(Some(user_id)),
            "password.changed",
            Some(user_id),
            json!({}),
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    pub fn public_url(&self) -> &str {
        &self.public_url
    }
}

/// Mails one address may be sent by sign-up or reset requests per window, and requests one
/// client IP may make.
const MAILS_PER_ADDRESS: u32 = 5;
const MAIL_REQUESTS_PER_IP: u32 = 30;

impl AuthService {
    /// Limits requests that send mail, per address and per client IP.
    async fn limit_mail_requests(
        &self,
        kind: &str,
        email: &str,
        client: &ClientInfo,
    ) -> Result<()> {
        let now = self.store.now();
        let window = self.policy.lockout.as_secs() as i64;
        if let Some(ip) = &client.ip {
            throttle::hit(
                self.store.db(),
                &format!("{kind}:ip:{ip}"),
                MAIL_REQUESTS_PER_IP,
                window,
                now,
            )
            .await?;
        }
        throttle::hit(
            self.store.db(),
            &format!("{kind}:email:{email}"),
            MAILS_PER_ADDRESS,
            window,
            now,
        )
        .await
    }
}

/// Failed attempts left before a code is void.
pub const CODE_MAX_ATTEMPTS: i32 = 5;

fn sign_up_code_purpose(id: &str) -> String {
    format!("sign_up_code:{id}")
}
