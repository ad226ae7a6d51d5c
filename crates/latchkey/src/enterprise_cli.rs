//! `latchkey orgs …` and `latchkey connections …`: organisations, their operator-verified
//! domains and their enterprise connections (SAML, and EASIE enrollments with Google Workspace
//! or Microsoft Entra ID). SAML and EASIE connection IDs share the `con_` prefix, so `list`,
//! `show`, `enable`, `disable` and `delete` take either and act on whichever table holds it.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use latchkey_core::{
    Latchkey,
    admin::{OrgPatch, OrgQuery},
    enterprise::{
        easie::{EasieConnectionView, EasieOptions, NewEasieConnection, Provider},
        saml::{ConnectionOptions, ConnectionView, IdpSource, NewConnection},
    },
    infra::audit::Actor,
    tenancy::model::EnrollmentMode,
};
use latchkey_saml::{binding::Binding, mapping::Preset};
use serde_json::json;

use crate::{cli::JsonFlag, commands::CliError, output::print_json};

type Result<T> = std::result::Result<T, CliError>;

#[derive(Debug, Subcommand)]
pub enum OrgsCommand {
    /// Create an organisation.
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
        /// URL-safe short name (default: made from the name).
        #[arg(long)]
        slug: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// List organisations (search by ID, or slug or name prefix, with --search).
    List {
        /// An organisation ID, or the start of a slug or name (case-insensitive).
        #[arg(long)]
        search: Option<String>,
        /// Organisations to print (1-200).
        #[arg(long, default_value_t = 50)]
        limit: u64,
        /// Continue after a previous page (its `next_cursor`).
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Show one organisation.
    Show {
        /// Organisation id (org_…) or slug.
        org: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Rename an organisation or change its slug (audited with before and after).
    Update {
        /// Organisation id (org_…) or slug.
        org: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        slug: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Delete an organisation: its connections (ending the sessions they signed in), members,
    /// domains, invitations and API keys; users stay.
    Delete {
        /// Organisation id (org_…) or slug.
        org: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Manage an organisation's email domains.
    #[command(subcommand)]
    Domains(DomainsCommand),
    /// Manage an organisation's members and their roles.
    #[command(subcommand)]
    Members(MembersCommand),
    /// Manage an organisation's invitations (the link goes to the invitee by mail only).
    #[command(subcommand)]
    Invitations(InvitationsCommand),
}

#[derive(Debug, Subcommand)]
pub enum InvitationsCommand {
    /// List the pending invitations, oldest first.
    List {
        /// Organisation id (org_…) or slug.
        org: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Invite someone by email: they are mailed a link to join (not printed: it is theirs).
    Create {
        /// Organisation id (org_…) or slug.
        org: String,
        /// The invitee's email address.
        email: String,
        /// `member` (default), `admin` or a role of your own.
        #[arg(long, default_value = "member")]
        role: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Revoke a pending invitation; its link stops working.
    Revoke {
        /// Organisation id (org_…) or slug.
        org: String,
        /// Invitation id (inv_…).
        invitation_id: String,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// List the members, oldest first.
    List {
        /// Organisation id (org_…) or slug.
        org: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Add a user with a role, or change their role (audited with the role before).
    Set {
        /// Organisation id (org_…) or slug.
        org: String,
        /// User id (usr_…) or email.
        user: String,
        /// `admin`, `member` or a role of your own.
        #[arg(long)]
        role: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Remove a member (not the last admin).
    Remove {
        /// Organisation id (org_…) or slug.
        org: String,
        /// User id (usr_…) or email.
        user: String,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
pub enum DomainsCommand {
    /// Add a domain to an organisation.
    Add {
        /// Organisation id (org_…) or slug.
        org: String,
        domain: String,
        /// The operator asserts the organisation owns the domain: verified at once, audited.
        #[arg(long)]
        verified: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// List an organisation's domains with their verification state and enrollment mode.
    List {
        /// Organisation id (org_…) or slug.
        org: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Set what happens when someone with an address in the (verified) domain signs up.
    Mode {
        /// Organisation id (org_…) or slug.
        org: String,
        /// The domain (dom_… or its name).
        domain: String,
        /// `manual`, `automatic_invitation` or `automatic_suggestion`.
        #[arg(long)]
        mode: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Remove a domain (members stay).
    Remove {
        /// Organisation id (org_…) or slug.
        org: String,
        /// The domain (dom_… or its name).
        domain: String,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Debug, Args)]
pub struct AddSamlArgs {
    /// Organisation id (org_…) or slug.
    #[arg(long)]
    org: String,
    #[arg(long)]
    name: String,
    /// IdP metadata XML file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["metadata_url", "idp_entity_id"])]
    metadata_file: Option<PathBuf>,
    /// IdP metadata URL: fetched now and refreshed periodically.
    #[arg(long, value_name = "URL", conflicts_with = "idp_entity_id")]
    metadata_url: Option<String>,
    /// Manual set-up: the IdP's entity ID (with --sso-url and --cert-file).
    #[arg(long, requires_all = ["sso_url", "cert_file"])]
    idp_entity_id: Option<String>,
    /// Manual set-up: the IdP's SSO URL.
    #[arg(long, value_name = "URL")]
    sso_url: Option<String>,
    /// Manual set-up: the binding of the SSO URL.
    #[arg(long, value_parser = ["redirect", "post"], default_value = "redirect")]
    sso_binding: String,
    /// Manual set-up: the IdP's Single Logout URL (Redirect binding).
    #[arg(long, value_name = "URL")]
    slo_url: Option<String>,
    /// Manual set-up: an IdP signing certificate (PEM); repeat for a key rollover.
    #[arg(long, value_name = "FILE")]
    cert_file: Vec<PathBuf>,
    /// Accept IdP-initiated (unsolicited) sign-ins.
    #[arg(long)]
    allow_idp_initiated: bool,
    /// Where IdP-initiated sign-ins land (a path on this server).
    #[arg(long, value_name = "PATH")]
    idp_initiated_landing: Option<String>,
    /// Refuse assertions that are not encrypted.
    #[arg(long)]
    require_encryption: bool,
    /// Attribute mapping preset.
    #[arg(long, value_parser = ["okta", "entra", "google"])]
    preset: Option<String>,
    /// Accept SHA-1 signatures (legacy IdPs only).
    #[arg(long)]
    allow_sha1: bool,
    /// Do not sign AuthnRequests.
    #[arg(long)]
    unsigned_requests: bool,
    /// NameID format to ask for (a URN).
    #[arg(long)]
    name_id_format: Option<String>,
    /// Allowed clock skew in seconds (0-300, default 60).
    #[arg(long)]
    skew: Option<i64>,
    /// Map an IdP group to an organisation role: GROUP=ROLE; repeatable.
    #[arg(long, value_name = "GROUP=ROLE")]
    group_role: Vec<String>,
    /// An address that may keep signing in with a password (break-glass); repeatable.
    #[arg(long, value_name = "EMAIL")]
    bypass: Vec<String>,
    #[command(flatten)]
    out: JsonFlag,
}

#[derive(Debug, Args)]
pub struct AddEasieArgs {
    /// Organisation id (org_…) or slug.
    #[arg(long)]
    org: String,
    /// Where the domain's members sign in.
    #[arg(long, value_parser = ["google", "microsoft"])]
    provider: String,
    /// One of the organisation's verified domains.
    #[arg(long)]
    domain: String,
    /// Microsoft only: the Entra tenant ID to pin (default: resolved from the domain; when
    /// both are known they must agree).
    #[arg(long, value_name = "TID")]
    tenant_id: Option<String>,
    /// An address on the domain that may keep signing in with a password (break-glass);
    /// repeatable.
    #[arg(long, value_name = "EMAIL")]
    bypass: Vec<String>,
    #[command(flatten)]
    out: JsonFlag,
}

#[derive(Debug, Args)]
pub struct ConnectionRef {
    /// Connection id (con_…).
    connection_id: String,
    #[command(flatten)]
    out: JsonFlag,
}

#[derive(Debug, Subcommand)]
pub enum ConnectionsCommand {
    /// Add a SAML connection (Latchkey as the service provider) to an organisation.
    AddSaml(Box<AddSamlArgs>),
    /// Enroll a verified domain with Google Workspace or Microsoft Entra ID (EASIE): its
    /// addresses must then sign in through that provider.
    AddEasie(AddEasieArgs),
    /// List connections of both kinds (of one organisation with --org).
    List {
        #[arg(long)]
        org: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Show a connection: SAML: SP URLs to give the IdP, certificates and their expiry;
    /// EASIE: provider, domain, pinned tenant; warnings for both.
    Show(ConnectionRef),
    /// Enable a connection.
    Enable(ConnectionRef),
    /// Disable a connection: its sessions end (with back-channel logout).
    Disable(ConnectionRef),
    /// Delete a connection: its sessions end; accounts stay.
    Delete(ConnectionRef),
    /// Fetch the IdP metadata URL again now (SAML).
    RefreshMetadata(ConnectionRef),
    /// Rotate the SP key pair; the old certificate stays published for 14 days (SAML).
    RotateSpKey(ConnectionRef),
}

/// An organisation by id or slug.
pub(crate) async fn org_id(core: &Latchkey, org: &str) -> Result<String> {
    if org.starts_with("org_") {
        return Ok(core.orgs.get(org).await?.id);
    }
    Ok(core.orgs.get_by_slug(org).await?.id)
}

fn slug_from(name: &str) -> String {
    let mut slug = String::new();
    for c in name.trim().to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-').chars().take(64).collect::<String>();
    if slug.len() < 2 { format!("org-{slug}") } else { slug }
}

pub async fn manage_orgs(core: &Latchkey, command: OrgsCommand, actor: &Actor) -> Result<()> {
    match command {
        OrgsCommand::Create { name, slug, out } => {
            let slug = slug.unwrap_or_else(|| slug_from(&name));
            let org = core.orgs.create(&name, &slug, actor).await?;
            if out.json {
                print_json(&json!({ "org_id": org.id, "organisation": org }));
            } else {
                say!("created organisation {} ({})", org.name, org.id);
            }
        }
        OrgsCommand::List { search, limit, cursor, out } => {
            let query = OrgQuery { q: search, cursor, limit: Some(limit) };
            let page = core.admin.orgs.list(actor, &query).await?;
            if out.json {
                print_json(&page);
            } else {
                say!("{:<32} {:<24} {}", "ID", "SLUG", "NAME");
                for o in &page.data {
                    say!("{:<32} {:<24} {}", o.id, o.slug, o.name);
                }
                if let Some(next) = page.next_cursor {
                    say!("more: --cursor {next}");
                }
            }
        }
        OrgsCommand::Show { org, out } => {
            let org = core.admin.orgs.get(actor, &org_id(core, &org).await?).await?;
            if out.json {
                print_json(&org);
            } else {
                say!("{} ({}), slug {}", org.name, org.id, org.slug);
            }
        }
        OrgsCommand::Update { org, name, slug, out } => {
            let id = org_id(core, &org).await?;
            let org =
                core.admin.orgs.update(actor, &id, &OrgPatch { name, slug }, |_| true).await?;
            if out.json {
                print_json(&org);
            } else {
                say!("updated organisation {} ({}), slug {}", org.name, org.id, org.slug);
            }
        }
        OrgsCommand::Members(command) => return manage_members(core, command, actor).await,
        OrgsCommand::Invitations(command) => {
            return manage_invitations(core, command, actor).await;
        }
        OrgsCommand::Delete { org, out } => {
            let id = org_id(core, &org).await?;
            core.admin.orgs.delete(actor, &id).await?;
            if out.json {
                print_json(&json!({ "org_id": id, "deleted": true }));
            } else {
                say!("deleted organisation {id}");
            }
        }
        OrgsCommand::Domains(
            command @ (DomainsCommand::List { .. }
            | DomainsCommand::Mode { .. }
            | DomainsCommand::Remove { .. }),
        ) => return manage_domains(core, command, actor).await,
        OrgsCommand::Domains(DomainsCommand::Add { org, domain, verified, out }) => {
            let org_id = org_id(core, &org).await?;
            let d = if verified {
                core.domains.add_verified(&org_id, &domain, actor).await?
            } else {
                core.domains.add_domain(&org_id, &domain, actor).await?
            };
            if out.json {
                print_json(&d);
            } else {
                say!("added {} to {org_id}{}", domain, if verified { " (verified)" } else { "" });
            }
        }
    }
    Ok(())
}

fn read(path: &PathBuf) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))
}

fn source(args: &AddSamlArgs) -> Result<IdpSource> {
    if let Some(f) = &args.metadata_file {
        return Ok(IdpSource::MetadataXml(read(f)?));
    }
    if let Some(u) = &args.metadata_url {
        return Ok(IdpSource::MetadataUrl(u.clone()));
    }
    let (Some(entity_id), Some(sso_url)) = (&args.idp_entity_id, &args.sso_url) else {
        return Err(CliError::Usage(
            "give --metadata-file, --metadata-url, or --idp-entity-id with --sso-url and --cert-file"
                .into(),
        ));
    };
    let certs = args.cert_file.iter().map(read).collect::<Result<Vec<_>>>()?;
    let sso_binding = if args.sso_binding == "post" { Binding::Post } else { Binding::Redirect };
    Ok(IdpSource::Manual {
        entity_id: entity_id.clone(),
        sso_url: sso_url.clone(),
        sso_binding,
        slo_url: args.slo_url.clone(),
        certs,
    })
}

fn options(args: &AddSamlArgs) -> Result<ConnectionOptions> {
    let preset = match args.preset.as_deref() {
        Some("okta") => Some(Preset::Okta),
        Some("entra") => Some(Preset::Entra),
        Some("google") => Some(Preset::Google),
        _ => None,
    };
    let mut o = ConnectionOptions::with_preset(preset);
    o.allow_idp_initiated = args.allow_idp_initiated;
    o.require_encryption = args.require_encryption;
    o.allow_sha1 = args.allow_sha1;
    o.sign_requests = !args.unsigned_requests;
    o.name_id_format.clone_from(&args.name_id_format);
    if let Some(s) = args.skew {
        o.skew_secs = s;
    }
    if let Some(l) = &args.idp_initiated_landing {
        o.idp_initiated_landing.clone_from(l);
    }
    for pair in &args.group_role {
        let (group, role) = pair
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--group-role {pair}: use GROUP=ROLE")))?;
        o.group_roles.insert(group.to_owned(), role.to_owned());
    }
    o.bypass.clone_from(&args.bypass);
    Ok(o)
}

fn show(view: &ConnectionView, json: bool, done: Option<&str>) {
    if json {
        print_json(view);
        return;
    }
    if let Some(done) = done {
        say!("{done} {} ({})", view.name, view.connection_id);
    }
    say!(
        "connection:    {} ({}, {})",
        view.connection_id,
        view.name,
        if view.enabled { "enabled" } else { "disabled" }
    );
    say!("organisation:  {}", view.org_id);
    say!("SP entity ID:  {}", view.urls.sp_entity_id);
    say!("ACS URL:       {}", view.urls.acs_url);
    say!("SP metadata:   {}", view.urls.metadata_url);
    say!("login URL:     {}", view.urls.login_url);
    say!("IdP entity ID: {}", view.idp_entity_id);
    for c in &view.idp_certificates {
        let flag = if c.expires_soon { "  EXPIRES WITHIN 90 DAYS" } else { "" };
        say!("IdP cert:      sha256 {} until {}{flag}", c.sha256, c.not_after);
    }
    for w in &view.warnings {
        say!("warning:       {w}");
    }
}

fn show_easie(view: &EasieConnectionView, json: bool, done: Option<&str>) {
    if json {
        print_json(view);
        return;
    }
    if let Some(done) = done {
        say!("{done} {} ({})", view.name, view.connection_id);
    }
    say!(
        "connection:    {} ({}, {})",
        view.connection_id,
        view.name,
        if view.enabled { "enabled" } else { "disabled" }
    );
    say!("organisation:  {}", view.org_id);
    say!("provider:      {}", view.provider);
    say!("domain:        {}", view.domain);
    if let Some(t) = &view.tenant_id {
        say!("tenant:        {t}");
    }
    say!("login URL:     {}", view.login_url);
    for b in &view.options.bypass {
        say!("bypass:        {b}");
    }
    for w in &view.warnings {
        say!("warning:       {w}");
    }
}

/// A connection of either kind, as one command printed it.
enum Shown {
    Saml(Box<ConnectionView>),
    Easie(Box<EasieConnectionView>),
}

impl Shown {
    fn print(&self, json: bool, done: Option<&str>) {
        match self {
            Self::Saml(v) => show(v, json, done),
            Self::Easie(v) => show_easie(v, json, done),
        }
    }
}

async fn add_easie(core: &Latchkey, args: AddEasieArgs, actor: &Actor) -> Result<()> {
    let provider = Provider::parse(&args.provider).map_err(|e| CliError::Usage(e.to_string()))?;
    let new = NewEasieConnection {
        org_id: org_id(core, &args.org).await?,
        provider,
        domain: args.domain,
        tenant_id: args.tenant_id,
        options: EasieOptions { bypass: args.bypass },
    };
    let view = core.easie.create(new, actor).await?;
    show_easie(&view, args.out.json, Some("created"));
    Ok(())
}

fn to_json(v: &impl serde::Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| CliError::Core(e.into()))
}

/// Both kinds, oldest first; JSON items carry `kind` (`saml` or `easie`).
async fn list_connections(
    core: &Latchkey,
    org: Option<String>,
    json: bool,
    actor: &Actor,
) -> Result<()> {
    let org = match org {
        Some(o) => Some(org_id(core, &o).await?),
        None => None,
    };
    let mut rows: Vec<(i64, String, String, serde_json::Value)> = Vec::new();
    for c in core.saml.list(org.as_deref(), actor).await? {
        let line = format!(
            "{}  {}  {}  {}",
            c.connection_id,
            c.org_id,
            if c.enabled { "enabled " } else { "disabled" },
            c.name
        );
        rows.push((c.created_at, c.connection_id.clone(), line, to_json(&c)?));
    }
    for c in core.easie.list(org.as_deref(), actor).await? {
        let line = format!(
            "{}  {}  {}  {}",
            c.connection_id,
            c.org_id,
            if c.enabled { "enabled " } else { "disabled" },
            c.name
        );
        rows.push((c.created_at, c.connection_id.clone(), line, to_json(&c)?));
    }
    rows.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    if json {
        print_json(&rows.into_iter().map(|r| r.3).collect::<Vec<_>>());
    } else {
        for (_, _, line, _) in rows {
            say!("{line}");
        }
    }
    Ok(())
}

/// Runs a command on an existing connection of either kind.
async fn on_connection(
    core: &Latchkey,
    command: ConnectionsCommand,
    actor: &Actor,
) -> Result<(Shown, JsonFlag, Option<&'static str>)> {
    let (saml, easie) = (&core.saml, &core.easie);
    let id_of = |c: &ConnectionsCommand| match c {
        ConnectionsCommand::Show(r)
        | ConnectionsCommand::Enable(r)
        | ConnectionsCommand::Disable(r)
        | ConnectionsCommand::RefreshMetadata(r)
        | ConnectionsCommand::RotateSpKey(r) => Some(r.connection_id.clone()),
        _ => None,
    };
    let is_easie = match id_of(&command) {
        Some(id) => easie.is_easie(&id).await?,
        None => false,
    };
    Ok(match (command, is_easie) {
        (ConnectionsCommand::Show(r), true) => {
            (Shown::Easie(Box::new(easie.show(&r.connection_id, actor).await?)), r.out, None)
        }
        (ConnectionsCommand::Enable(r), true) => {
            let v = easie.set_enabled(&r.connection_id, true, actor).await?;
            (Shown::Easie(Box::new(v)), r.out, Some("enabled"))
        }
        (ConnectionsCommand::Disable(r), true) => {
            let v = easie.set_enabled(&r.connection_id, false, actor).await?;
            (Shown::Easie(Box::new(v)), r.out, Some("disabled"))
        }
        (ConnectionsCommand::RefreshMetadata(r) | ConnectionsCommand::RotateSpKey(r), true) => {
            return Err(CliError::Usage(format!(
                "{} is an EASIE connection: it has no SAML metadata or SP key",
                r.connection_id
            )));
        }
        (ConnectionsCommand::Show(r), false) => {
            (Shown::Saml(Box::new(saml.show(&r.connection_id, actor).await?)), r.out, None)
        }
        (ConnectionsCommand::Enable(r), false) => {
            let v = saml.set_enabled(&r.connection_id, true, actor).await?;
            (Shown::Saml(Box::new(v)), r.out, Some("enabled"))
        }
        (ConnectionsCommand::Disable(r), false) => {
            let v = saml.set_enabled(&r.connection_id, false, actor).await?;
            (Shown::Saml(Box::new(v)), r.out, Some("disabled"))
        }
        (ConnectionsCommand::RefreshMetadata(r), false) => {
            let v = saml.refresh_metadata(&r.connection_id, actor).await?;
            (Shown::Saml(Box::new(v)), r.out, Some("refreshed"))
        }
        (ConnectionsCommand::RotateSpKey(r), false) => {
            let v = saml.rotate_sp_key(&r.connection_id, actor).await?;
            (Shown::Saml(Box::new(v)), r.out, Some("rotated the SP key of"))
        }
        _ => return Err(CliError::Usage("not a command on one connection".into())),
    })
}

pub async fn manage_connections(
    core: &Latchkey,
    command: ConnectionsCommand,
    actor: &Actor,
) -> Result<()> {
    match command {
        ConnectionsCommand::AddSaml(args) => {
            let new = NewConnection {
                reserved_id: None,
                org_id: org_id(core, &args.org).await?,
                name: args.name.clone(),
                source: source(&args)?,
                options: options(&args)?,
            };
            show(&core.saml.create(new, actor).await?, args.out.json, Some("created"));
        }
        ConnectionsCommand::AddEasie(args) => add_easie(core, args, actor).await?,
        ConnectionsCommand::List { org, out } => {
            list_connections(core, org, out.json, actor).await?;
        }
        ConnectionsCommand::Delete(r) => {
            core.admin.connections.delete(&r.connection_id, actor).await?;
            if r.out.json {
                print_json(&json!({ "connection_id": r.connection_id, "deleted": true }));
            } else {
                say!("deleted {}", r.connection_id);
            }
        }
        other => {
            let (shown, out, done) = on_connection(core, other, actor).await?;
            shown.print(out.json, done);
        }
    }
    Ok(())
}

async fn manage_members(core: &Latchkey, command: MembersCommand, actor: &Actor) -> Result<()> {
    match command {
        MembersCommand::List { org, out } => {
            let members = core.orgs.members(&org_id(core, &org).await?, actor).await?;
            if out.json {
                print_json(&members);
            } else {
                say!("{:<32} {:<32} {:<10} {}", "USER", "EMAIL", "ROLE", "STATUS");
                for m in &members {
                    let ms = &m.membership;
                    say!("{:<32} {:<32} {:<10} {}", ms.user_id, m.email, ms.role, ms.status);
                }
            }
        }
        MembersCommand::Set { org, user, role, out } => {
            let (org, user) = (org_id(core, &org).await?, core.users.resolve(&user).await?);
            let m = core.orgs.set_membership(&org, &user.id, &role, actor).await?;
            if out.json {
                print_json(&m);
            } else {
                say!("{} is {} of {}", user.primary_email, m.role, org);
            }
        }
        MembersCommand::Remove { org, user, out } => {
            let (org, user) = (org_id(core, &org).await?, core.users.resolve(&user).await?);
            core.orgs.remove_member(&org, &user.id, actor).await?;
            if out.json {
                print_json(&json!({ "org_id": org, "user_id": user.id, "removed": true }));
            } else {
                say!("removed {} from {}", user.primary_email, org);
            }
        }
    }
    Ok(())
}

/// One JSON shape for an invitation everywhere (the accept link is never printed: the invitee
/// gets it by mail, as from the admin API).
async fn manage_invitations(
    core: &Latchkey,
    command: InvitationsCommand,
    actor: &Actor,
) -> Result<()> {
    let row = |i: &latchkey_core::tenancy::model::Invitation| {
        let expires = crate::output::time(Some(i.expires_at));
        say!("{:<32} {:<32} {:<10} {:<9} {expires}", i.id, i.email, i.role, i.status.as_str());
    };
    match command {
        InvitationsCommand::List { org, out } => {
            let pending = core.invitations.list_pending(&org_id(core, &org).await?, actor).await?;
            if out.json {
                print_json(&pending);
            } else {
                say!("{:<32} {:<32} {:<10} {:<9} {}", "ID", "EMAIL", "ROLE", "STATUS", "EXPIRES");
                pending.iter().for_each(row);
            }
        }
        InvitationsCommand::Create { org, email, role, out } => {
            let org = org_id(core, &org).await?;
            let issued = core.invitations.invite(&org, &email, &role, None, actor).await?;
            let i = issued.invitation;
            if out.json {
                print_json(&i);
            } else {
                say!(
                    "invited {} to {org} as {} ({}); the link is on its way by mail",
                    i.email,
                    i.role,
                    i.id
                );
            }
        }
        InvitationsCommand::Revoke { org, invitation_id, out } => {
            let org = org_id(core, &org).await?;
            let i = core.invitations.revoke(&org, &invitation_id, actor).await?;
            if out.json {
                print_json(&i);
            } else {
                say!("revoked invitation {} for {}", i.id, i.email);
            }
        }
    }
    Ok(())
}

/// A domain of `org_id` by id (`dom_…`) or by name.
async fn domain_id(core: &Latchkey, org_id: &str, domain: &str, actor: &Actor) -> Result<String> {
    if domain.starts_with("dom_") {
        return Ok(domain.to_owned());
    }
    let name = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let all = core.domains.list(org_id, actor).await?;
    all.into_iter()
        .find(|d| d.domain == name)
        .map(|d| d.id)
        .ok_or_else(|| CliError::Usage(format!("{domain} is not a domain of {org_id}")))
}

async fn manage_domains(core: &Latchkey, command: DomainsCommand, actor: &Actor) -> Result<()> {
    match command {
        DomainsCommand::List { org, out } => {
            let domains = core.domains.list(&org_id(core, &org).await?, actor).await?;
            if out.json {
                print_json(&domains);
            } else {
                say!("{:<32} {:<32} {:<9} {}", "ID", "DOMAIN", "VERIFIED", "ENROLLMENT");
                for d in &domains {
                    let mode = d.enrollment_mode.as_str();
                    say!("{:<32} {:<32} {:<9} {mode}", d.id, d.domain, d.verified);
                }
            }
        }
        DomainsCommand::Mode { org, domain, mode, out } => {
            let org = org_id(core, &org).await?;
            let id = domain_id(core, &org, &domain, actor).await?;
            let parsed = EnrollmentMode::parse(&mode);
            if parsed.as_str() != mode {
                return Err(CliError::Usage(format!(
                    "unknown mode {mode:?}: manual, automatic_invitation or automatic_suggestion"
                )));
            }
            let d = core.domains.set_enrollment_mode(&org, &id, parsed, actor).await?;
            if out.json {
                print_json(&d);
            } else {
                say!("{}: {}", d.domain, d.enrollment_mode.as_str());
            }
        }
        DomainsCommand::Remove { org, domain, out } => {
            let org = org_id(core, &org).await?;
            let id = domain_id(core, &org, &domain, actor).await?;
            core.domains.remove_domain(&org, &id, actor).await?;
            if out.json {
                print_json(&json!({ "org_id": org, "domain_id": id, "removed": true }));
            } else {
                say!("removed {domain} from {org}");
            }
        }
        DomainsCommand::Add { .. } => {
            return Err(CliError::Usage("handled by manage_orgs".into()));
        }
    }
    Ok(())
}
