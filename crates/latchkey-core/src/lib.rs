//! Latchkey's identity store and the services that work on it: users, sessions, organisations,
//! signing keys, audit events and configuration. Nothing in this crate knows about HTTP.

pub mod activity;
pub mod audit;
pub mod auth;
pub mod backchannel;
pub mod clients;
pub mod config;
pub mod consumer_domains;
pub mod crypto;
pub mod domains;
pub mod enrollment;
pub mod entity;
mod error;
pub mod ids;
pub mod invitations;
pub mod jwt_templates;
pub mod keys;
pub mod mail;
pub mod model;
pub mod oauth;
pub mod orgs;
pub mod passwords;
mod refresh_rotation;
pub mod revision;
pub mod session_tokens;
pub mod sessions;
pub mod store;
pub mod users;

use std::sync::Arc;

pub use config::Settings;
pub use error::{Error, Result};

use crate::{
    auth::AuthService, clients::ClientService, domains::DomainService,
    enrollment::EnrollmentService, invitations::InvitationService, keys::KeyService,
    mail::MailService, orgs::OrgService, session_tokens::SessionTokenService,
    sessions::SessionService, store::Store, users::UserService,
};

/// Current time as unix seconds; every timestamp in the store uses this unit.
pub fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The identity store with all of its services, shared by the web app and the CLI.
#[derive(Clone)]
pub struct Latchkey {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub auth: AuthService,
    pub mail: MailService,
    pub users: UserService,
    pub sessions: SessionService,
    pub orgs: OrgService,
    pub invitations: InvitationService,
    pub domains: DomainService,
    pub enrollment: EnrollmentService,
    pub keys: KeyService,
    pub session_tokens: SessionTokenService,
    pub clients: ClientService,
    pub oauth: oauth::OAuthService,
    pub backchannel: backchannel::BackchannelService,
    pub jwt_templates: jwt_templates::JwtTemplateService,
}

impl Latchkey {
    /// Opens the store described by `settings`: creates the data directory and master key on
    /// first use, connects, runs migrations and makes sure the session-token signing key exists.
    pub async fn open(settings: Settings) -> Result<Self> {
        let settings = Arc::new(settings);
        let master_key = crypto::MasterKey::load_or_create(&settings)?;
        let store = Store::connect(&settings.database_url, master_key).await?;
        store.migrate().await?;
        let keys = KeyService::new(store.clone(), &settings);
        keys.ensure_active(settings.session_token_alg).await?;
        // Unseal the active key now: a wrong master key must stop start-up, not fail requests.
        keys.load_signer(settings.session_token_alg).await.map_err(|e| match e {
            Error::Crypto(_) => Error::Config(config::ConfigError::new(
                match settings.master_key {
                    config::MasterKeySource::Inline(_) => "LATCHKEY_MASTER_KEY",
                    config::MasterKeySource::File { .. } => "LATCHKEY_MASTER_KEY_FILE",
                },
                "the master key this store was created with",
                "a key that cannot decrypt the stored signing keys",
            )),
            other => other,
        })?;
        let passwords = passwords::Passwords::new(&settings.auth)?;
        let users = UserService::new(store.clone(), passwords.clone());
        let mail = MailService::new(store.clone(), &settings)?;
        let sessions = SessionService::new(store.clone(), &settings);
        let orgs = OrgService::new(store.clone());
        let clients = ClientService::new(store.clone());
        let oauth = oauth::OAuthService::new(store.clone(), keys.clone());
        let backchannel = backchannel::BackchannelService::new(
            store.clone(),
            oauth.clone(),
            &settings.public_url,
        )?;
        let jwt_templates =
            jwt_templates::JwtTemplateService::new(store.clone(), keys.clone(), &settings);
        let invitations = InvitationService::new(store.clone(), mail.clone(), &settings);
        let domains = DomainService::new(store.clone(), mail.clone(), &settings);
        let enrollment = EnrollmentService::new(store.clone(), mail.clone(), &settings);
        let session_tokens =
            SessionTokenService::new(store.clone(), keys.clone(), sessions.clone(), &settings);
        let auth = AuthService::new(
            store.clone(),
            users.clone(),
            sessions.clone(),
            passwords,
            mail.clone(),
            enrollment.clone(),
            &settings,
        );
        Ok(Self {
            settings,
            store,
            auth,
            mail,
            users,
            sessions,
            orgs,
            invitations,
            domains,
            enrollment,
            keys,
            session_tokens,
            clients,
            oauth,
            backchannel,
            jwt_templates,
        })
    }
}
