//! Running Latchkey: what the admin API, the console and the CLI share beyond the domain
//! services they call (API keys, the user directory, the audit log, and the administrative
//! views of users, sessions, organisations and applications). It comes last in the layering: it
//! may use every domain, and none uses it.

pub mod api_keys;
pub mod app_admin;
pub mod audit_log;
pub mod connection_admin;
pub mod dashboard;
pub mod directory;
pub mod key_admin;
pub mod org_admin;
pub mod paging;
pub mod session_admin;
pub mod user_admin;
pub mod user_details;

pub use api_keys::{ApiKey, ApiKeyPrincipal, ApiKeyService, CreatedApiKey, NewApiKey};
pub use app_admin::{AppAdmin, AppQuery};
pub use audit_log::{AuditLog, AuditQuery};
pub use connection_admin::{AnyConnection, ConnectionAdmin};
pub use dashboard::{Dashboard, DashboardStats};
pub use directory::{Directory, UserQuery};
pub use key_admin::KeyAdmin;
pub use org_admin::{OrgAdmin, OrgPatch, OrgQuery};
pub use paging::Page;
pub use session_admin::{SessionAdmin, SessionQuery};
pub use user_admin::{UserAdmin, UserPatch};
pub use user_details::{UserDetails, UserOverview};

/// The services the admin API, the console and the CLI use beyond the domains' own.
#[derive(Clone)]
pub struct AdminServices {
    /// Keys for the admin API.
    pub api_keys: ApiKeyService,
    /// Users as administrators search them.
    pub directory: Directory,
    /// The audit log as administrators read it.
    pub audit_log: AuditLog,
    /// Changing accounts.
    pub users: UserAdmin,
    /// Listing and revoking sessions.
    pub sessions: SessionAdmin,
    /// Listing, creating, changing and deleting organisations.
    pub orgs: OrgAdmin,
    /// The console's figures.
    pub dashboard: Dashboard,
    /// One account's memberships, identities and lockout.
    pub user_details: UserDetails,
    /// Applications (OAuth / OpenID Connect clients).
    pub apps: AppAdmin,
    /// Signing keys and JWT templates.
    pub keys: KeyAdmin,
    /// Enterprise connections of either kind.
    pub connections: ConnectionAdmin,
}

impl AdminServices {
    pub fn new(
        store: &crate::infra::store::Store,
        services: (
            &crate::identity::users::UserService,
            &crate::identity::sessions::SessionService,
            &crate::tenancy::orgs::OrgService,
            &crate::oauth::clients::ClientService,
            &crate::oauth::OAuthService,
        ),
        signing: (
            &crate::infra::keys::KeyService,
            &crate::oauth::jwt_templates::JwtTemplateService,
        ),
        connections: (
            &crate::enterprise::saml::SamlService,
            &crate::enterprise::easie::EasieService,
        ),
        settings: &crate::infra::config::Settings,
    ) -> Self {
        let (users, sessions, orgs, clients, grants) = services;
        let (saml, easie) = connections;
        let (keys, templates) = signing;
        Self {
            orgs: OrgAdmin::new(store.clone(), orgs.clone(), saml.clone(), easie.clone()),
            sessions: SessionAdmin::new(store.clone(), sessions.clone()),
            users: UserAdmin::new(store.clone(), users.clone()),
            apps: AppAdmin::new(store.clone(), clients.clone()),
            keys: KeyAdmin::new(store.clone(), keys.clone(), templates.clone()),
            connections: ConnectionAdmin::new(saml.clone(), easie.clone()),
            api_keys: ApiKeyService::new(store.clone(), settings.auth.api_key_rate_limit),
            directory: Directory::new(store.clone()),
            audit_log: AuditLog::new(store.clone()),
            dashboard: Dashboard::new(store.clone()),
            user_details: UserDetails::new(store.clone(), orgs.clone(), grants.clone()),
        }
    }
}
