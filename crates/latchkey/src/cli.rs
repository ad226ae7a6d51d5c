use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Latchkey: a self-hosted identity provider (OpenID Connect, SAML, hosted sign-in).
///
/// Settings come from LATCHKEY_* environment variables and an optional TOML file;
/// the environment wins. See docs/configuration.md.
#[derive(Debug, Parser)]
#[command(name = "latchkey", version, propagate_version = true)]
pub struct Cli {
    /// TOML configuration file (keys are the setting names without LATCHKEY_, lower-case).
    #[arg(long, global = true, env = "LATCHKEY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per run: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (creates the data directory, master key and first signing key if missing).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage instance administrators.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Inspect and revoke sessions.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Inspect and rotate signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage OpenID Connect / OAuth clients (relying parties).
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Manage JWT templates (claims for POST /v1/session/token/{name} and for clients' tokens).
    #[command(subcommand)]
    Templates(TemplatesCommand),
    /// Manage organisations and their domains.
    #[command(subcommand)]
    Orgs(crate::enterprise_cli::OrgsCommand),
    /// Manage enterprise connections (SAML and EASIE) of organisations.
    #[command(subcommand)]
    Connections(crate::enterprise_cli::ConnectionsCommand),
    /// Manage keys for the admin API (/api/v1).
    #[command(subcommand)]
    ApiKeys(crate::admin_cli::ApiKeysCommand),
    /// Read the audit log.
    #[command(subcommand)]
    Audit(crate::admin_cli::AuditCommand),
}

#[derive(Debug, Args, Clone, Copy)]
pub struct JsonFlag {
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print the effective values, secrets redacted.
    Check(JsonFlag),
}

#[derive(Debug, Args)]
pub struct NewUserArgs {
    /// Email address (the sign-in identifier).
    #[arg(long)]
    pub email: String,
    /// Initial password (at least 8 characters). Prefer LATCHKEY_NEW_PASSWORD to keep it out of `ps`.
    #[arg(long, env = "LATCHKEY_NEW_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Display name.
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub out: JsonFlag,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an instance administrator. Without --password a strong one is generated and printed once.
    Create(NewUserArgs),
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user.
    Add(NewUserArgs),
    /// List users.
    List {
        /// Maximum number of users to print.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// Number of users to skip.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Show one user, by id (usr_…) or email.
    Show {
        user: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Deactivate a user and revoke all of their sessions.
    Deactivate {
        /// User id (usr_…) or email.
        user: String,
        /// Why, for the audit log.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Reactivate a deactivated or banned user.
    Reactivate {
        /// User id (usr_…) or email.
        user: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Change a user's names or the verified mark of their address (audited with before and after).
    Update {
        /// User id (usr_…) or email.
        user: String,
        /// Display name (an empty value clears it).
        #[arg(long)]
        name: Option<String>,
        /// Given name (an empty value clears it).
        #[arg(long)]
        given_name: Option<String>,
        /// Family name (an empty value clears it).
        #[arg(long)]
        family_name: Option<String>,
        /// A new primary address; the old one no longer signs in. Unverified unless --verified.
        #[arg(long)]
        email: Option<String>,
        /// Mark the primary address verified.
        #[arg(long, conflicts_with = "unverified")]
        verified: bool,
        /// Mark the primary address not verified.
        #[arg(long)]
        unverified: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Delete a user: their sessions end (applications are told by back-channel logout), and
    /// their grants, memberships, external identities and addresses go. Audited; refused for
    /// the last instance administrator.
    Delete {
        /// User id (usr_…) or email.
        user: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Clear a user's failed sign-in count and lockout.
    Unlock {
        /// User id (usr_…) or email.
        user: String,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List active sessions (all sessions with --all).
    List {
        /// Only this user's sessions (id or email).
        #[arg(long)]
        user: Option<String>,
        /// Only sessions of this organisation's members (id or slug; at most 200 printed).
        #[arg(long)]
        org: Option<String>,
        /// Include ended, revoked and expired sessions.
        #[arg(long)]
        all: bool,
        /// Maximum number of sessions to print.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Start a session for a user and print its cookie secret (support and testing; audited).
    Create {
        /// User id (usr_…) or email.
        #[arg(long)]
        user: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Revoke one session, or all sessions of a user with --user.
    Revoke {
        /// Session id (ses_…).
        #[arg(required_unless_present = "user", conflicts_with = "user")]
        session_id: Option<String>,
        /// Revoke every active session of this user (id or email).
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List signing keys and whether they are published in the JWKS.
    List(JsonFlag),
    /// Introduce a new signing key; the old one stays published until its tokens have expired.
    Rotate {
        /// Algorithm of the key to rotate: ES256, RS256 or EdDSA (default: the session token algorithm).
        #[arg(long)]
        alg: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Take a retired key out of the JWKS now (a suspected compromise): the tokens it signed
    /// stop verifying at once. The active key cannot be withdrawn; rotate first.
    Withdraw {
        /// The key's kid.
        kid: String,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Debug, Args)]
pub struct NewClientArgs {
    /// Display name, shown on the consent screen.
    #[arg(long)]
    pub name: String,
    /// Redirect URI (exact match); repeat for several.
    #[arg(long = "redirect-uri", value_name = "URI")]
    pub redirect_uris: Vec<String>,
    /// Where the client may send the browser after logout; repeat for several.
    #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
    pub post_logout_redirect_uris: Vec<String>,
    /// A public client (browser or native app): no secret, PKCE required.
    #[arg(long)]
    pub public: bool,
    /// A first-party client: users are not asked for consent.
    #[arg(long)]
    pub first_party: bool,
    /// Back-channel logout URI (OpenID Connect Back-Channel Logout 1.0).
    #[arg(long, value_name = "URI")]
    pub backchannel_logout_uri: Option<String>,
    /// Grant type: authorization_code, refresh_token or client_credentials; repeat for several
    /// (default: authorization_code and refresh_token).
    #[arg(long = "grant-type", value_name = "GRANT")]
    pub grant_types: Vec<String>,
    /// Allowed scope; repeat for several (default: openid profile email offline_access
    /// organization).
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// Token endpoint authentication: client_secret_basic (default), client_secret_post or
    /// private_key_jwt (needs --jwks-file).
    #[arg(long, value_name = "METHOD")]
    pub auth_method: Option<String>,
    /// JWK set (JSON file) holding the client's public keys, for private_key_jwt.
    #[arg(long, value_name = "FILE")]
    pub jwks_file: Option<PathBuf>,
    /// ID token signing algorithm: RS256 (default), ES256 or EdDSA.
    #[arg(long, value_name = "ALG")]
    pub id_token_alg: Option<String>,
    /// Access token lifetime in seconds (60-3600, default 300).
    #[arg(long, value_name = "SECS")]
    pub access_token_ttl: Option<i64>,
    /// An audience (absolute URI, an API) the client may ask for with `resource` (RFC 8707) at
    /// the authorization request or the token endpoint; the access token's aud becomes that
    /// value. Repeat for several.
    #[arg(long = "audience", value_name = "URI")]
    pub audiences: Vec<String>,
    /// JWT template (see `latchkey templates`) whose claims are added to the client's access
    /// tokens. Protocol claims (iss, sub, aud, exp, scope, …) are never taken from it.
    #[arg(long, value_name = "NAME")]
    pub access_token_template: Option<String>,
    /// JWT template whose claims are added to the client's ID tokens (same rules).
    #[arg(long, value_name = "NAME")]
    pub id_token_template: Option<String>,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// What `clients update` changes: the flags of `clients add` (same names), each leaving its
/// field as it is when absent. A repeatable flag replaces the whole list; an empty value
/// (`--audience ''`) clears a list or an optional value. The client type (`--public`) and its
/// authentication (`--auth-method`, `--jwks-file`) are fixed at registration.
#[derive(Debug, Args)]
pub struct UpdateClientArgs {
    /// Client id (client_…).
    pub client_id: String,
    /// Display name, shown on the consent screen.
    #[arg(long)]
    pub name: Option<String>,
    /// Redirect URI (exact match); repeat for several. Replaces the registered list.
    #[arg(long = "redirect-uri", value_name = "URI")]
    pub redirect_uris: Option<Vec<String>>,
    /// Where the client may send the browser after logout; repeat for several.
    #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// A first-party client (`--first-party=false` to ask users for consent again).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub first_party: Option<bool>,
    /// Back-channel logout URI (an empty value removes it).
    #[arg(long, value_name = "URI")]
    pub backchannel_logout_uri: Option<String>,
    /// Grant type; repeat for several. Replaces the registered list.
    #[arg(long = "grant-type", value_name = "GRANT")]
    pub grant_types: Option<Vec<String>>,
    /// Allowed scope; repeat for several. Replaces the registered list.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Option<Vec<String>>,
    /// ID token signing algorithm: RS256, ES256 or EdDSA.
    #[arg(long, value_name = "ALG")]
    pub id_token_alg: Option<String>,
    /// Access token lifetime in seconds (60-3600).
    #[arg(long, value_name = "SECS")]
    pub access_token_ttl: Option<i64>,
    /// An audience (API) its access tokens may be aimed at (RFC 8707 `resource`); repeat for
    /// several. Replaces the registered list.
    #[arg(long = "audience", value_name = "URI")]
    pub audiences: Option<Vec<String>>,
    /// JWT template for the client's access tokens (an empty value removes it).
    #[arg(long, value_name = "NAME")]
    pub access_token_template: Option<String>,
    /// JWT template for the client's ID tokens (an empty value removes it).
    #[arg(long, value_name = "NAME")]
    pub id_token_template: Option<String>,
    #[command(flatten)]
    pub out: JsonFlag,
}

// Parsed once per run: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Register a client. A confidential client's secret is printed once.
    Add(NewClientArgs),
    /// List registered clients.
    List(JsonFlag),
    /// Change a client, checked as a registration is (audited with before and after).
    Update(UpdateClientArgs),
    /// Show one client.
    Show {
        /// Client id (client_…).
        client_id: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Issue a new client secret (printed once); the old one keeps working during the overlap.
    RotateSecret {
        /// Client id (client_…).
        client_id: String,
        /// How long the previous secret stays valid, in seconds (0 ends it at once).
        #[arg(long, default_value_t = 86400)]
        overlap: i64,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Delete a client; its secrets stop working at once.
    Delete {
        /// Client id (client_…).
        client_id: String,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
pub enum TemplatesCommand {
    /// Add a JWT template.
    Add {
        /// Template name (a-z, 0-9, - and _), used in the URL.
        #[arg(long)]
        name: String,
        /// Claims as a JSON object; string values may hold {{user.…}}, {{session.…}} and
        /// {{org.…}} placeholders.
        #[arg(long, value_name = "JSON")]
        claims: String,
        /// Sign with HS256 using the secret in this file (at least 32 bytes; one trailing
        /// newline is ignored) instead of the instance key.
        #[arg(long, value_name = "FILE")]
        hs256_secret_file: Option<PathBuf>,
        /// Token lifetime, such as 60s or 5m (30 s to 24 h; default 60 s).
        #[arg(long, value_name = "DURATION")]
        lifetime: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// List JWT templates.
    List(JsonFlag),
    /// Show one JWT template.
    Show {
        name: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Delete a JWT template; tokens already issued stay valid until they expire. Refused while
    /// a client uses it for its tokens.
    Delete {
        name: String,
        #[command(flatten)]
        out: JsonFlag,
    },
}
