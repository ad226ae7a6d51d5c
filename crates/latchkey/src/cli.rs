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
}
