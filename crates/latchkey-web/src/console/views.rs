//! askama views of the console (templates in `templates/console/`). Rows hold display-ready
//! strings; escaping is askama's (HTML), except the charts, which the server draws itself.

use askama::Template;

/// What the layout needs: who is signed in, what they may open, where they are.
pub struct Nav {
    pub who: String,
    pub instance_admin: bool,
    pub section: &'static str,
    pub notice: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "console/dashboard.html")]
pub struct Dashboard {
    pub nav: Nav,
    pub users: u64,
    pub organisations: u64,
    pub active_sessions: u64,
    pub sign_ins_today: u64,
    pub failed_today: u64,
    pub sign_in_chart: String,
    pub token_chart: String,
}

pub struct UserRow {
    pub id: String,
    pub email: String,
    pub name: String,
    pub status: String,
    pub verified: bool,
    pub admin: bool,
    pub created: String,
}

#[derive(Template)]
#[template(path = "console/users.html")]
pub struct Users {
    pub nav: Nav,
    pub q: String,
    pub rows: Vec<UserRow>,
    pub next: Option<String>,
}

pub struct MembershipRow {
    pub org_id: String,
    pub org_name: String,
    pub role: String,
}

pub struct IdentityRow {
    pub kind: String,
    pub subject: String,
    pub email: String,
}

pub struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub user_label: String,
    pub device: String,
    pub ip: String,
    pub method: String,
    pub last_active: String,
}

pub struct EventRow {
    pub id: String,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub org: String,
    pub request_id: String,
    pub data: String,
}

#[derive(Template)]
#[template(path = "console/user.html")]
pub struct UserPage {
    pub nav: Nav,
    pub csrf: String,
    pub user: UserRow,
    pub status_reason: String,
    pub last_sign_in: String,
    pub locked: bool,
    pub memberships: Vec<MembershipRow>,
    pub identities: Vec<IdentityRow>,
    /// (application, scopes, granted)
    pub consents: Vec<(String, String, String)>,
    pub sessions: Vec<SessionRow>,
    pub events: Vec<EventRow>,
}

pub struct OrgRow {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub created: String,
}

#[derive(Template)]
#[template(path = "console/orgs.html")]
pub struct Orgs {
    pub nav: Nav,
    pub csrf: String,
    pub q: String,
    pub rows: Vec<OrgRow>,
    pub next: Option<String>,
    pub error: Option<String>,
}

pub struct MemberRow {
    pub user_id: String,
    pub email: String,
    pub name: String,
    pub role: String,
    pub status: String,
}

pub struct InvitationRow {
    pub id: String,
    pub email: String,
    pub role: String,
    pub expires: String,
}

pub struct DomainRow {
    pub id: String,
    pub domain: String,
    pub verified: bool,
    pub method: String,
    pub mode: String,
    pub txt_name: String,
    pub txt_value: String,
}

pub struct ConnectionRow {
    pub id: String,
    pub kind: &'static str,
    pub label: String,
    pub enabled: bool,
}

#[derive(Template)]
#[template(path = "console/org.html")]
pub struct OrgPage {
    pub nav: Nav,
    pub csrf: String,
    pub org: OrgRow,
    pub members: Vec<MemberRow>,
    pub invitations: Vec<InvitationRow>,
    pub domains: Vec<DomainRow>,
    pub connections: Vec<ConnectionRow>,
    /// Pending join requests: (request ID, email, requested).
    pub join_requests: Vec<(String, String, String)>,
    pub instance_admin: bool,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/sessions.html")]
pub struct Sessions {
    pub nav: Nav,
    pub csrf: String,
    pub user: String,
    pub rows: Vec<SessionRow>,
    pub next: Option<String>,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
pub struct Audit {
    pub nav: Nav,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub org: String,
    pub since: String,
    pub until: String,
    pub rows: Vec<EventRow>,
    pub next: Option<String>,
    /// The filters as a query string, for the export links.
    pub filter_query: String,
}

#[derive(Template)]
#[template(path = "console/reauthenticate.html")]
pub struct Reauthenticate {
    pub nav: Nav,
    pub csrf: String,
    pub return_to: String,
    pub email: String,
    pub has_password: bool,
    pub sign_in_again: String,
    pub error: Option<&'static str>,
}

pub struct AppRow {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub grants: String,
    pub scopes: String,
    pub redirect_uris: String,
    pub audiences: String,
    pub access_token_ttl: i64,
    pub access_token_template: String,
    pub id_token_template: String,
    pub created: String,
}

#[derive(Template)]
#[template(path = "console/apps.html")]
pub struct Apps {
    pub nav: Nav,
    pub csrf: String,
    pub rows: Vec<AppRow>,
    pub next: Option<String>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/app.html")]
pub struct AppPage {
    pub nav: Nav,
    pub csrf: String,
    pub app: AppRow,
    pub discovery_url: String,
    /// A secret just issued, shown this once.
    pub secret: Option<String>,
    pub error: Option<String>,
}

pub struct KeyRow {
    pub kid: String,
    pub alg: String,
    pub status: String,
    pub created: String,
    pub published: bool,
    pub publish_until: String,
}

pub struct TemplateRow {
    pub name: String,
    pub signing: String,
    pub lifetime_secs: i64,
    pub updated: String,
}

#[derive(Template)]
#[template(path = "console/keys.html")]
pub struct Keys {
    pub nav: Nav,
    pub csrf: String,
    pub keys: Vec<KeyRow>,
    pub templates: Vec<TemplateRow>,
}

#[derive(Template)]
#[template(path = "console/template.html")]
pub struct TemplatePage {
    pub nav: Nav,
    pub csrf: String,
    /// Empty for a new template.
    pub name: String,
    pub is_new: bool,
    pub claims: String,
    pub lifetime_secs: i64,
    pub preview_user: String,
    /// The claims as they render for the preview user, pretty-printed.
    pub preview: Option<String>,
    pub error: Option<String>,
}

/// The SAML wizard's fields, as typed (kept when the form comes back with an error).
#[derive(Debug, Clone, Default)]
pub struct SamlDraft {
    pub name: String,
    pub metadata_xml: String,
    pub metadata_url: String,
    pub idp_entity_id: String,
    pub sso_url: String,
    pub sso_binding: String,
    pub certificate: String,
    pub preset: String,
    pub map_email: String,
    pub map_groups: String,
    pub group_roles: String,
    pub bypass: String,
    /// Checkboxes: present ("on") when ticked.
    pub sign_requests: Option<String>,
    pub require_encryption: Option<String>,
    pub allow_idp_initiated: Option<String>,
    pub allow_sha1: Option<String>,
    /// As typed (checked when the options are made).
    pub skew: Option<String>,
}

/// The wizard's form as the template reads it.
pub struct SamlFormView {
    pub name: String,
    pub metadata_xml: String,
    pub metadata_url: String,
    pub idp_entity_id: String,
    pub sso_url: String,
    pub sso_binding: String,
    pub certificate: String,
    pub preset: String,
    pub map_email: String,
    pub map_groups: String,
    pub group_roles: String,
    pub bypass: String,
    pub sign_requests: bool,
    pub require_encryption: bool,
    pub allow_idp_initiated: bool,
    pub allow_sha1: bool,
    pub skew: i64,
}

#[derive(Template)]
#[template(path = "console/saml_new.html")]
pub struct SamlNew {
    pub nav: Nav,
    pub csrf: String,
    pub org_id: String,
    pub org_name: String,
    pub connection_id: String,
    pub sp_entity_id: String,
    pub acs_url: String,
    pub metadata_url: String,
    pub form: SamlFormView,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/easie_new.html")]
pub struct EasieNew {
    pub nav: Nav,
    pub csrf: String,
    pub org_id: String,
    pub org_name: String,
    pub domains: Vec<String>,
    pub error: Option<String>,
}

pub struct ConnectionSummary {
    pub id: String,
    pub kind: &'static str,
    pub name: String,
    pub org_id: String,
    pub enabled: bool,
    pub warnings: Vec<String>,
    pub facts: Vec<(String, String)>,
    /// (whose, SHA-256, expiry, expires within 90 days)
    pub certificates: Vec<(String, String, String, bool)>,
}

#[derive(Template)]
#[template(path = "console/connection.html")]
pub struct ConnectionPage {
    pub nav: Nav,
    pub csrf: String,
    pub c: ConnectionSummary,
}

/// The answer of a connection test, shown where the ACS lands (no console session there: the
/// IdP's cross-site POST carries no SameSite cookie).
#[derive(Template)]
#[template(path = "console/saml_test.html")]
pub struct SamlTest<'a> {
    pub t: &'a latchkey_core::enterprise::saml::TestedAssertion,
    pub name_id_format: &'a str,
    pub given_name: &'a str,
    pub family_name: &'a str,
    pub display_name: &'a str,
}

pub struct ApiKeyRow {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub scope: String,
    pub expires: String,
    pub last_used: String,
    pub revoked: bool,
}

#[derive(Template)]
#[template(path = "console/api_keys.html")]
pub struct ApiKeys {
    pub nav: Nav,
    pub csrf: String,
    /// The organisation's name when the page is one organisation's keys.
    pub org: Option<String>,
    /// Its ID (empty: every key of the instance).
    pub org_id: String,
    pub keys: Vec<ApiKeyRow>,
    /// A key just created, shown this once.
    pub created: Option<String>,
    pub error: Option<String>,
}
