//! Latchkey's identity store and the services that work on it: users, sessions, organisations,
//! signing keys, audit events and configuration. Nothing in this crate knows about HTTP.

pub mod admin;
pub mod enterprise;
pub mod identity;
pub mod infra;
#[cfg(test)]
mod layering;
pub mod oauth;
pub mod runtime;
pub mod sign_in;
pub mod tenancy;

/// The domain types the CLI prints with `--json`, whichever domain defines them.
pub mod model {
    pub use crate::{
        identity::model::*,
        infra::clock::Clock,
        infra::{audit::AuditEvent, keys::SigningKeyInfo},
        tenancy::model::*,
    };
}

use std::sync::Arc;

pub use infra::{
    config::Settings,
    error::{Error, ErrorClass, Result},
};

use crate::{
    identity::session_tokens::SessionTokenService,
    identity::sessions::SessionService,
    identity::users::UserService,
    infra::clock::Clock,
    infra::keys::KeyService,
    infra::mail::MailService,
    infra::store::Store,
    oauth::clients::ClientService,
    sign_in::{SignInService, pending::PendingStore},
    tenancy::domains::DomainService,
    tenancy::enrollment::EnrollmentService,
    tenancy::invitations::InvitationService,
    tenancy::orgs::OrgService,
};

/// The longest each kind of token signed with the instance keys can live, each from the setting
/// or the validation rule that bounds it: how long a retired key must stay published.
fn signed_lifetimes(settings: &Settings) -> infra::keys::SignedLifetimes {
    let secs = |s: i64| std::time::Duration::from_secs(s.unsigned_abs());
    infra::keys::SignedLifetimes {
        session_token: settings.session_token_ttl,
        access_token: secs(oauth::clients::MAX_ACCESS_TOKEN_TTL_SECS),
        id_token: secs(oauth::clients::ID_TOKEN_TTL_SECS),
        template_token: secs(oauth::jwt_templates::MAX_LIFETIME_SECS),
        logout_token: secs(oauth::backchannel::LOGOUT_TOKEN_TTL_SECS),
    }
}

/// The identity store with all of its services, shared by the web app and the CLI.
#[derive(Clone)]
pub struct Latchkey {
    pub settings: Arc<Settings>,
    /// The time every service reads (tests advance it).
    pub clock: Clock,
    pub store: Store,
    /// Every way of signing in, and the one completion they share.
    pub sign_in: SignInService,
    /// Requests waiting for an identity provider's answer.
    pub pending: PendingStore,
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
    /// The OpenID Connect provider's endpoints (token, userinfo, introspection, revocation,
    /// authorization, consent, account chooser, logout).
    pub oidc: oauth::OidcService,
    pub backchannel: oauth::backchannel::BackchannelService,
    /// Runs the job outbox (mail, back-channel logout); servers start it with `spawn`.
    pub jobs: runtime::JobRunner,
    pub jwt_templates: oauth::jwt_templates::JwtTemplateService,
    /// SAML enterprise connections (Latchkey as the service provider).
    pub saml: enterprise::saml::SamlService,
    /// Google and Microsoft as upstream providers: social sign-in, EASIE, the token vault.
    pub upstream: enterprise::upstream::UpstreamService,
    /// EASIE connections: domains enrolled with Google Workspace or Microsoft Entra ID.
    pub easie: enterprise::easie::EasieService,
    /// API keys, the user directory and the audit log for administrators.
    pub admin: admin::AdminServices,
}

impl Latchkey {
    /// Opens the store described by `settings`: checks the master key setting, connects (creating
    /// the data directory on first use), creates the master key on first use, runs migrations
    /// and makes sure the session-token signing key exists.
    pub async fn open(settings: Settings) -> Result<Self> {
        Self::open_with_clock(settings, Clock::system()).await
    }

    /// [`Self::open`] with a given clock: tests share one between the nodes they start and
    /// move it forward instead of waiting.
    pub async fn open_with_clock(settings: Settings, clock: Clock) -> Result<Self> {
        let settings = Arc::new(settings);
        let store = open_store(&settings, clock.clone()).await?;
        let keys = open_keys(&store, &settings).await?;
        let passwords = identity::passwords::Passwords::new(&settings.auth)?;
        let users = UserService::new(store.clone(), passwords.clone());
        let mail = MailService::new(store.clone(), &settings)?;
        let sessions = SessionService::new(store.clone(), &settings);
        let orgs = OrgService::new(store.clone());
        let clients = ClientService::new(store.clone());
        let oauth = oauth::OAuthService::new(store.clone(), keys.clone());
        let gates = identity::mint_gate::MintGates::default();
        let backchannel = oauth::backchannel::BackchannelService::new(
            store.clone(),
            oauth.clone(),
            &settings.public_url,
        )?;
        let jwt_templates =
            oauth::jwt_templates::JwtTemplateService::new(store.clone(), keys.clone(), &settings);
        let parts = oauth::provider::Parts {
            store: store.clone(),
            clients: clients.clone(),
            grants: oauth.clone(),
            keys: keys.clone(),
            templates: jwt_templates.clone(),
            users: users.clone(),
            sessions: sessions.clone(),
            gates: gates.clone(),
        };
        let oidc = oauth::OidcService::new(&settings, parts);
        let (invitations, domains, enrollment) = tenancy_services(&store, &mail, &settings);
        let session_tokens = SessionTokenService::new(
            store.clone(),
            keys.clone(),
            sessions.clone(),
            &settings,
            gates.clone(),
        );
        let sign_in = SignInService::new(
            store.clone(),
            users.clone(),
            sessions.clone(),
            passwords,
            mail.clone(),
            &settings,
        );
        let enterprise = enterprise_connections(&store, &sign_in, &settings, &gates)?;
        let jobs = job_runner(&store, &mail, &backchannel, &enterprise);
        let (pending, saml, upstream, easie) = enterprise;
        let services = (&users, &sessions, &orgs, &clients, &oauth);
        let signing = (&keys, &jwt_templates);
        let admin =
            admin::AdminServices::new(&store, services, signing, (&saml, &easie), &settings);
        Ok(Self {
            settings,
            clock,
            store,
            sign_in,
            pending,
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
            oidc,
            backchannel,
            jobs,
            jwt_templates,
            saml,
            upstream,
            easie,
            admin,
        })
    }
}

/// The signing keys, with the active session-token key made to exist and unsealed now: a wrong
/// master key must stop start-up, not fail requests.
async fn open_keys(store: &Store, settings: &Settings) -> Result<KeyService> {
    let keys = KeyService::new(store.clone(), signed_lifetimes(settings), settings.clock_skew);
    keys.ensure_active(settings.session_token_alg).await?;
    keys.load_signer(settings.session_token_alg)
        .await
        .map_err(|e| wrong_master_key(e, settings))?;
    Ok(keys)
}

fn tenancy_services(
    store: &Store,
    mail: &MailService,
    settings: &Settings,
) -> (InvitationService, DomainService, EnrollmentService) {
    (
        InvitationService::new(store.clone(), mail.clone(), settings),
        DomainService::new(store.clone(), mail.clone(), settings),
        EnrollmentService::new(store.clone(), mail.clone(), settings),
    )
}

type Enterprise = (
    PendingStore,
    enterprise::saml::SamlService,
    enterprise::upstream::UpstreamService,
    enterprise::easie::EasieService,
);

/// The job runner, with the services whose background work it runs.
fn job_runner(
    store: &Store,
    mail: &MailService,
    backchannel: &oauth::backchannel::BackchannelService,
    (pending, saml, upstream, _): &Enterprise,
) -> runtime::JobRunner {
    runtime::JobRunner::new(
        store.clone(),
        mail.clone(),
        backchannel.clone(),
        pending.clone(),
        saml.clone(),
        upstream.clone(),
    )
}

/// The pending-request store and the enterprise connection protocols, registered with
/// identifier-first routing.
fn enterprise_connections(
    store: &Store,
    sign_in: &SignInService,
    settings: &Settings,
    gates: &identity::mint_gate::MintGates,
) -> Result<Enterprise> {
    let pending = PendingStore::new(store.clone());
    let saml = enterprise::saml::SamlService::new(
        store.clone(),
        sign_in.clone(),
        pending.clone(),
        settings,
    );
    sign_in.register_connections(Arc::new(enterprise::saml::registry::SamlRegistry::new(
        store.clone(),
    )));
    sign_in.register_connections(Arc::new(enterprise::easie::registry::EasieRegistry::new(
        store.clone(),
    )));
    let easie = enterprise::easie::EasieService::new(store.clone(), settings)?;
    let upstream = enterprise::upstream::UpstreamService::new(
        store.clone(),
        sign_in.clone(),
        pending.clone(),
        settings,
    )?;
    // EASIE sessions are re-validated upstream before anything is minted for them.
    gates.register(Arc::new(upstream.clone()));
    Ok((pending, saml, upstream, easie))
}

/// Opens and migrates the store. A bad key setting stops start-up before anything is touched;
/// a database that cannot be opened stops it before a new master key is written.
async fn open_store(settings: &Settings, clock: Clock) -> Result<Store> {
    let master_key = infra::crypto::MasterKey::load(settings)?;
    let readers = u32::try_from(settings.workers.clamp(1, 4)).unwrap_or(1);
    let pools =
        Store::open_database(&settings.database_url, settings.sqlite_synchronous, readers).await?;
    let master_key = match master_key {
        Some(key) => key,
        None => infra::crypto::MasterKey::create_default(settings)?,
    };
    let store =
        Store::new(pools, &settings.database_url, settings.sqlite_synchronous, master_key, clock);
    store.migrate().await?;
    Ok(store)
}

/// A key that cannot unseal the stored signing keys is a configuration error naming the setting.
fn wrong_master_key(e: Error, settings: &Settings) -> Error {
    match e {
        Error::Crypto(_) => Error::Config(infra::config::ConfigError::new(
            match settings.master_key {
                infra::config::MasterKeySource::Inline(_) => "LATCHKEY_MASTER_KEY",
                infra::config::MasterKeySource::File { .. } => "LATCHKEY_MASTER_KEY_FILE",
            },
            "the master key this store was created with",
            "a key that cannot decrypt the stored signing keys",
        )),
        other => other,
    }
}
