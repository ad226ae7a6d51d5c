use std::{net::TcpListener, time::Instant};

use latchkey_core::{
    Latchkey, Settings,
    identity::sessions::SessionOrigin,
    identity::users::NewUser,
    infra::audit::Actor,
    infra::config::ConfigError,
    infra::jose::SigningAlg,
    model::User,
    oauth::clients::{ClientPatch, NewClient},
};
use serde_json::json;

use crate::{
    cli::{
        AdminCommand, Cli, ClientsCommand, Command, ConfigCommand, KeysCommand, NewClientArgs,
        NewUserArgs, SessionsCommand, TemplatesCommand, UpdateClientArgs, UsersCommand,
    },
    output::UserView,
    output::{self, print_json},
};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Core(#[from] latchkey_core::Error),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Io(String),
}

impl CliError {
    /// 2 for configuration and usage errors (clap's own parse errors exit with 2 too), 3 for
    /// something named on the command line that does not exist, 1 for failures while running.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) | Self::Usage(_) => 2,
            // A value the core refuses came from the command line: a usage error.
            Self::Core(latchkey_core::Error::Config(_) | latchkey_core::Error::Invalid { .. }) => 2,
            Self::Core(latchkey_core::Error::NotFound(_)) => 3,
            Self::Core(_) | Self::Io(_) => 1,
        }
    }
}

type Result<T> = std::result::Result<T, CliError>;

pub async fn run(cli: Cli) -> Result<()> {
    let settings = Settings::from_env(cli.config.as_deref())?;
    let serving = matches!(cli.command, Command::Serve);
    crate::logging::init(&settings, serving);
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    match cli.command {
        Command::Config(ConfigCommand::Check(out)) => config_check(&settings, out.json),
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            let started = Instant::now();
            let core = Latchkey::open(settings).await?;
            say!("migrations applied ({} ms)", started.elapsed().as_millis());
            core.store.close().await;
            Ok(())
        }
        command => {
            let core = Latchkey::open(settings).await?;
            let result = manage(&core, command).await;
            core.store.close().await;
            result
        }
    }
}

fn config_check(settings: &Settings, json: bool) -> Result<()> {
    let effective = settings.redacted();
    if json {
        print_json(&json!({ "valid": true, "settings": effective }));
    } else {
        say!("configuration is valid");
        for (k, v) in effective {
            say!("{k}={}", v.as_str().map_or_else(|| v.to_string(), str::to_owned));
        }
    }
    Ok(())
}

async fn serve(settings: Settings) -> Result<()> {
    let started = Instant::now();
    let listen = settings.listen;
    // Bind first: a taken port should fail before any work on the data directory.
    let listener = TcpListener::bind(listen)
        .map_err(|e| CliError::Io(format!("cannot listen on {listen} (LATCHKEY_LISTEN): {e}")))?;
    let core = Latchkey::open(settings).await?;
    let public_url = core.settings.public_url.clone();
    tracing::info!(
        listen = %listen,
        issuer = %public_url,
        database = if core.settings.is_sqlite() { "sqlite" } else { "postgres" },
        startup_ms = started.elapsed().as_millis() as u64,
        "Latchkey is ready"
    );
    if core.users.count_admins().await? == 0 {
        say!(
            "No administrator yet: create one with `latchkey admin create --email you@example.com` (same data directory and settings)."
        );
    }
    say!("Latchkey listening on {public_url} (bound to {listen})");
    latchkey_web::serve(core.clone(), listener)
        .await
        .map_err(|e| CliError::Io(format!("server error: {e}")))?;
    core.store.close().await;
    Ok(())
}

async fn manage(core: &Latchkey, command: Command) -> Result<()> {
    let actor = Actor::cli();
    match command {
        Command::Admin(AdminCommand::Create(args)) => create_user(core, args, true, &actor).await,
        Command::Users(command) => manage_users(core, command, &actor).await,
        Command::Sessions(command) => manage_sessions(core, command, &actor).await,
        Command::Keys(command) => manage_keys(core, command, &actor).await,
        Command::Clients(command) => manage_clients(core, command, &actor).await,
        Command::Templates(command) => manage_templates(core, command, &actor).await,
        Command::Orgs(command) => crate::enterprise_cli::manage_orgs(core, command, &actor).await,
        Command::Connections(command) => {
            crate::enterprise_cli::manage_connections(core, command, &actor).await
        }
        Command::ApiKeys(command) => crate::admin_cli::manage_api_keys(core, command, &actor).await,
        Command::Audit(command) => crate::admin_cli::manage_audit(core, command, &actor).await,
        Command::Serve | Command::Migrate | Command::Config(_) => {
            Err(CliError::Usage("handled elsewhere".into()))
        }
    }
}

/// The one JSON shape of a user: the same in `show`, in `list` items and after every change.
async fn user_view(core: &Latchkey, user: User) -> Result<UserView> {
    let memberships = core.orgs.memberships_of_user(&user.id).await?;
    let sign_in_lockout = core.sign_in.lockout_status(&user.primary_email).await?;
    Ok(UserView { user, memberships, sign_in_lockout })
}

async fn manage_users(core: &Latchkey, command: UsersCommand, actor: &Actor) -> Result<()> {
    let (view, out, done) = match command {
        UsersCommand::Add(args) => return create_user(core, args, false, actor).await,
        UsersCommand::List { limit, offset, out } => {
            let users = core.users.list(limit, offset).await?;
            if out.json {
                let mut views = Vec::with_capacity(users.len());
                for user in users {
                    views.push(user_view(core, user).await?);
                }
                print_json(&views);
            } else {
                output::users_table(&users);
            }
            return Ok(());
        }
        UsersCommand::Show { user, out } => {
            let user = core.users.resolve(&user).await?;
            (user_view(core, user).await?, out, None)
        }
        UsersCommand::Unlock { user, out } => {
            let user = core.users.resolve(&user).await?;
            core.sign_in.unlock(&user.primary_email, actor).await?;
            (user_view(core, user).await?, out, Some("unlocked"))
        }
        UsersCommand::Deactivate { user, reason, out } => {
            let user = core.users.resolve(&user).await?;
            let user = core.users.deactivate(&user.id, reason, actor).await?;
            (user_view(core, user).await?, out, Some("deactivated"))
        }
        UsersCommand::Update {
            user,
            name,
            given_name,
            family_name,
            email,
            verified,
            unverified,
            out,
        } => {
            let user = core.users.resolve(&user).await?;
            let patch = latchkey_core::admin::UserPatch {
                name: name.map(Some),
                given_name: given_name.map(Some),
                family_name: family_name.map(Some),
                email_verified: (verified || unverified).then_some(verified),
                email,
            };
            let user = core.admin.users.update(actor, &user.id, &patch, |_| true).await?;
            (user_view(core, user).await?, out, Some("updated"))
        }
        UsersCommand::Delete { user, out } => {
            let user = core.users.resolve(&user).await?;
            let view = user_view(core, user).await?;
            core.admin.users.delete(actor, &view.user.id).await?;
            if out.json {
                // The user as it was, as `show` printed it.
                print_json(&view);
            } else {
                say!("deleted {} ({}); all sessions ended", view.user.primary_email, view.user.id);
            }
            return Ok(());
        }
        UsersCommand::Reactivate { user, out } => {
            let user = core.users.resolve(&user).await?;
            let user = core.users.reactivate(&user.id, actor).await?;
            (user_view(core, user).await?, out, Some("reactivated"))
        }
    };
    match (out.json, done) {
        (true, _) => print_json(&view),
        (false, None) => output::user_details(&view.user, &view.memberships, &view.sign_in_lockout),
        (false, Some("deactivated")) => {
            say!("deactivated {} ({}); all sessions revoked", view.user.primary_email, view.user.id)
        }
        (false, Some(done)) => say!("{done} {} ({})", view.user.primary_email, view.user.id),
    }
    Ok(())
}

async fn manage_sessions(core: &Latchkey, command: SessionsCommand, actor: &Actor) -> Result<()> {
    match command {
        SessionsCommand::List { user, org, all, limit, out } => {
            let user_id = match user {
                Some(u) => Some(core.users.resolve(&u).await?.id),
                None => None,
            };
            let sessions = match org {
                Some(org) => {
                    let query = latchkey_core::admin::SessionQuery {
                        user_id,
                        org_id: Some(crate::enterprise_cli::org_id(core, &org).await?),
                        include_ended: all,
                        cursor: None,
                        limit: Some(limit.min(200)),
                    };
                    core.admin.sessions.list(actor, &query).await?.data
                }
                None => core.sessions.list(user_id.as_deref(), all, limit).await?,
            };
            if out.json {
                print_json(&sessions)
            } else {
                output::sessions_table(&sessions)
            }
            Ok(())
        }
        SessionsCommand::Create { user, out } => {
            let user = core.users.resolve(&user).await?;
            let origin = SessionOrigin {
                auth_method: latchkey_core::identity::method::AuthMethod::Operator,
                client_ip: None,
                user_agent: Some("latchkey-cli".into()),
                ..Default::default()
            };
            let (session, secret) = core.sessions.create(&user.id, origin, actor).await?;
            let cookie = latchkey_web::session_cookie_name(core.settings.secure_cookies());
            if out.json {
                // The session's shape, plus the cookie secret, shown once.
                print_json(&with_secrets(
                    &session,
                    json!({ "secret": secret, "cookie_name": cookie }),
                ));
            } else {
                say!("session {} for {}", session.id, user.primary_email);
                say!("cookie: {cookie}={secret}");
            }
            Ok(())
        }
        SessionsCommand::Revoke { session_id, user, out } => {
            let revoked = match (session_id, user) {
                (Some(id), None) => {
                    let changed = core.sessions.revoke(&id, "revoked_by_admin", actor).await?;
                    if changed { vec![id] } else { Vec::new() }
                }
                (None, Some(u)) => {
                    let user = core.users.resolve(&u).await?;
                    let active = core.sessions.list(Some(&user.id), false, u64::MAX >> 1).await?;
                    core.sessions.revoke_all_for_user(&user.id, "revoked_by_admin", actor).await?;
                    active.into_iter().map(|s| s.id).collect()
                }
                _ => return Err(CliError::Usage("give a session id or --user, not both".into())),
            };
            if out.json {
                // Like `list`: the sessions this revoked, as they are now.
                let mut sessions = Vec::with_capacity(revoked.len());
                for id in &revoked {
                    sessions.push(core.sessions.get(id).await?);
                }
                print_json(&sessions);
            } else if revoked.is_empty() {
                say!("nothing to revoke: no active session matched");
            } else {
                for id in &revoked {
                    say!("revoked {id}");
                }
            }
            Ok(())
        }
    }
}

async fn manage_keys(core: &Latchkey, command: KeysCommand, actor: &Actor) -> Result<()> {
    match command {
        KeysCommand::List(out) => {
            let keys = core.keys.list().await?;
            if out.json {
                print_json(&keys)
            } else {
                output::keys_table(&keys)
            }
            Ok(())
        }
        KeysCommand::Rotate { alg, out } => {
            let alg = match alg {
                None => core.settings.session_token_alg,
                Some(a) => SigningAlg::parse(&a).ok_or_else(|| {
                    CliError::Usage(format!("unknown algorithm {a:?}: use ES256, RS256 or EdDSA"))
                })?,
            };
            let (new, old) = core.keys.rotate(alg, actor).await?;
            if out.json {
                // Like `list`: the keys this changed, the new active one first.
                let changed: Vec<_> = std::iter::once(&new).chain(old.as_ref()).collect();
                print_json(&changed);
            } else {
                say!("new {} key {} is active", new.alg, new.kid);
                if let Some(old) = old {
                    say!(
                        "retired {}; published until {}",
                        old.kid,
                        output::time(old.publish_until)
                    );
                }
            }
            Ok(())
        }
        KeysCommand::Withdraw { kid, out } => {
            let key = core.keys.withdraw(&kid, actor).await?;
            if out.json {
                print_json(&key);
            } else {
                say!("withdrew {} ({}): it is no longer in the JWKS", key.kid, key.alg);
            }
            Ok(())
        }
    }
}

/// A noun's object with the secrets that are shown only once added to it.
fn with_secrets<T: serde::Serialize>(object: &T, secrets: serde_json::Value) -> serde_json::Value {
    let mut v = serde_json::to_value(object).unwrap_or_default();
    if let (Some(fields), serde_json::Value::Object(extra)) = (v.as_object_mut(), secrets) {
        fields.extend(extra);
    }
    v
}

async fn create_user(
    core: &Latchkey,
    args: NewUserArgs,
    is_admin: bool,
    actor: &Actor,
) -> Result<()> {
    let generated = is_admin && args.password.is_none();
    let password =
        if generated { Some(latchkey_core::infra::crypto::random_secret()) } else { args.password };
    let user = core
        .users
        .create(
            NewUser {
                email: args.email,
                password: password.clone(),
                name: args.name,
                email_verified: is_admin,
                is_admin,
                ..Default::default()
            },
            actor,
        )
        .await?;
    if args.out.json {
        let view = user_view(core, user).await?;
        match (generated, password) {
            (true, Some(p)) => print_json(&with_secrets(&view, json!({ "generated_password": p }))),
            _ => print_json(&view),
        }
    } else {
        say!(
            "created {} {} ({})",
            if is_admin { "administrator" } else { "user" },
            user.primary_email,
            user.id
        );
        if let (true, Some(p)) = (generated, password) {
            say!("generated password (shown once): {p}");
        }
    }
    Ok(())
}

async fn manage_clients(core: &Latchkey, command: ClientsCommand, actor: &Actor) -> Result<()> {
    match command {
        ClientsCommand::Add(args) => add_client(core, args, actor).await,
        ClientsCommand::Update(args) => update_client(core, args, actor).await,
        ClientsCommand::List(out) => {
            let clients = core.clients.list().await?;
            if out.json {
                print_json(&clients)
            } else {
                output::clients_table(&clients)
            }
            Ok(())
        }
        ClientsCommand::Show { client_id, out } => {
            let client = core.admin.apps.get(actor, &client_id).await?;
            if out.json {
                print_json(&client)
            } else {
                output::client_details(&client)
            }
            Ok(())
        }
        ClientsCommand::RotateSecret { client_id, overlap, out } => {
            let (client, secret) =
                core.admin.apps.rotate_secret(actor, &client_id, overlap).await?;
            if out.json {
                print_json(&with_secrets(&client, json!({ "client_secret": secret })));
            } else {
                say!("new secret for {} (shown once): {secret}", client.client_id);
                say!("the previous secret stays valid for {overlap} s");
            }
            Ok(())
        }
        ClientsCommand::Delete { client_id, out } => {
            let client = core.admin.apps.get(actor, &client_id).await?;
            core.admin.apps.delete(actor, &client_id).await?;
            if out.json {
                print_json(&client)
            } else {
                say!("deleted client {client_id}")
            }
            Ok(())
        }
    }
}

async fn add_client(core: &Latchkey, args: NewClientArgs, actor: &Actor) -> Result<()> {
    let jwks = match &args.jwks_file {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CliError::Usage(format!("--jwks-file: cannot read {}: {e}", path.display()))
            })?;
            Some(serde_json::from_str(&text).map_err(|e| {
                CliError::Usage(format!("{} is not a JSON JWK set: {e}", path.display()))
            })?)
        }
    };
    let created = core
        .admin
        .apps
        .create(
            actor,
            NewClient {
                name: args.name,
                public: args.public,
                redirect_uris: args.redirect_uris,
                post_logout_redirect_uris: args.post_logout_redirect_uris,
                grant_types: args.grant_types,
                token_endpoint_auth_method: args.auth_method,
                jwks,
                first_party: args.first_party,
                backchannel_logout_uri: args.backchannel_logout_uri,
                allowed_scopes: args.scopes,
                id_token_alg: args.id_token_alg,
                access_token_ttl_secs: args.access_token_ttl,
                audiences: args.audiences,
                access_token_template: args.access_token_template,
                id_token_template: args.id_token_template,
            },
        )
        .await?;
    if args.out.json {
        print_json(&created);
    } else {
        say!(
            "created {} client {} ({})",
            created.client.client_type.as_str(),
            created.client.name,
            created.client.client_id
        );
        if let Some(secret) = &created.client_secret {
            say!("client secret (shown once): {secret}");
        }
    }
    Ok(())
}

async fn update_client(core: &Latchkey, args: UpdateClientArgs, actor: &Actor) -> Result<()> {
    // An empty value clears: a list given as one empty value is the empty list.
    let list =
        |v: Option<Vec<String>>| v.map(|l| l.into_iter().filter(|s| !s.is_empty()).collect());
    let optional = |v: Option<String>| v.map(|s| Some(s).filter(|s| !s.is_empty()));
    let patch = ClientPatch {
        name: args.name,
        redirect_uris: list(args.redirect_uris),
        post_logout_redirect_uris: list(args.post_logout_redirect_uris),
        grant_types: list(args.grant_types),
        allowed_scopes: list(args.scopes),
        first_party: args.first_party,
        backchannel_logout_uri: optional(args.backchannel_logout_uri),
        id_token_alg: args.id_token_alg,
        access_token_ttl_secs: args.access_token_ttl,
        audiences: list(args.audiences),
        access_token_template: optional(args.access_token_template),
        id_token_template: optional(args.id_token_template),
    };
    let client = core.admin.apps.update(actor, &args.client_id, &patch, |_| true).await?;
    if args.out.json {
        print_json(&client);
    } else {
        say!("updated client {} ({})", client.name, client.client_id);
    }
    Ok(())
}

/// The key material of `--hs256-secret-file`. Files written by editors and `echo` end with a
/// newline; it is not key material.
fn read_secret_file(path: &std::path::Path) -> Result<Vec<u8>> {
    let mut bytes = std::fs::read(path).map_err(|e| {
        CliError::Usage(format!("--hs256-secret-file: cannot read {}: {e}", path.display()))
    })?;
    if bytes.ends_with(b"\r\n") {
        bytes.truncate(bytes.len() - 2);
    } else if bytes.ends_with(b"\n") {
        bytes.truncate(bytes.len() - 1);
    }
    Ok(bytes)
}

/// `--lifetime` in seconds.
fn parse_lifetime(text: &str) -> Result<i64> {
    let d = humantime::parse_duration(text)
        .map_err(|e| CliError::Usage(format!("--lifetime {text:?} is not a duration: {e}")))?;
    Ok(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

async fn manage_templates(core: &Latchkey, command: TemplatesCommand, actor: &Actor) -> Result<()> {
    match command {
        TemplatesCommand::Add { name, claims, hs256_secret_file, lifetime, out } => {
            let claims = serde_json::from_str(&claims)
                .map_err(|e| CliError::Usage(format!("--claims is not JSON: {e}")))?;
            let hs256_secret = hs256_secret_file.as_deref().map(read_secret_file).transpose()?;
            let lifetime_secs = lifetime.as_deref().map(parse_lifetime).transpose()?;
            let template = core
                .jwt_templates
                .create(
                    latchkey_core::oauth::jwt_templates::NewTemplate {
                        name,
                        claims,
                        hs256_secret,
                        lifetime_secs,
                    },
                    actor,
                )
                .await?;
            if out.json {
                print_json(&template)
            } else {
                say!(
                    "created JWT template {} ({}, {} s); served at POST /v1/session/token/{}",
                    template.name,
                    template.signing,
                    template.lifetime_secs,
                    template.name
                )
            }
            Ok(())
        }
        TemplatesCommand::List(out) => {
            let templates = core.jwt_templates.list().await?;
            if out.json {
                print_json(&templates)
            } else {
                output::templates_table(&templates)
            }
            Ok(())
        }
        TemplatesCommand::Show { name, out } => {
            let template = core.jwt_templates.get(&name).await?;
            if out.json {
                print_json(&template)
            } else {
                output::template_details(&template)
            }
            Ok(())
        }
        TemplatesCommand::Delete { name, out } => {
            let template = core.jwt_templates.get(&name).await?;
            core.jwt_templates.delete(&name, actor).await?;
            if out.json {
                print_json(&template)
            } else {
                say!("deleted JWT template {name}")
            }
            Ok(())
        }
    }
}
