//! `latchkey api-keys …`: keys for the admin API, scoped to the instance or to one
//! organisation. The secret is printed once, at creation (`key` in the JSON).
//! `latchkey audit list`: the audit log with the admin API's filters.

use clap::Subcommand;
use latchkey_core::{
    Latchkey,
    admin::{ApiKey, AuditQuery, NewApiKey, api_keys::DEFAULT_TTL_SECS, audit_log::FOLLOW_BATCH},
    infra::audit::{Actor, AuditEvent},
};
use serde_json::json;

use crate::{
    cli::JsonFlag,
    commands::CliError,
    enterprise_cli::org_id,
    output::{self, print_json},
};

type Result<T> = std::result::Result<T, CliError>;

#[derive(Debug, Subcommand)]
pub enum ApiKeysCommand {
    /// Create a key; its secret is printed once.
    Create {
        /// What the key is for (shown in listings and the audit log).
        #[arg(long)]
        name: String,
        /// Limit the key to this organisation (id or slug); without it the key acts on the
        /// whole instance.
        #[arg(long)]
        org: Option<String>,
        /// Lifetime, e.g. `30d`, `12h` (default 90 days, at most 730 days).
        #[arg(long)]
        expires_in: Option<humantime::Duration>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// List keys (never their secrets).
    List {
        /// Only this organisation's keys (id or slug).
        #[arg(long)]
        org: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Revoke a key at once.
    Revoke {
        /// The key's id (apk_…).
        id: String,
        #[command(flatten)]
        out: JsonFlag,
    },
}

pub async fn manage_api_keys(
    core: &Latchkey,
    command: ApiKeysCommand,
    actor: &Actor,
) -> Result<()> {
    match command {
        ApiKeysCommand::Create { name, org, expires_in, out } => {
            let org_id = match org {
                Some(o) => Some(org_id(core, &o).await?),
                None => None,
            };
            let ttl_secs = match expires_in {
                Some(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                None => DEFAULT_TTL_SECS,
            };
            let created =
                core.admin.api_keys.create(NewApiKey { name, org_id, ttl_secs }, actor).await?;
            if out.json {
                let mut v = serde_json::to_value(&created.key).unwrap_or_default();
                v["key"] = json!(created.secret.as_str());
                print_json(&v);
            } else {
                say!("created API key {} ({})", created.key.id, scope_of(&created.key));
                say!("key (shown once, store it now): {}", created.secret.as_str());
                say!("expires {}", output::time(Some(created.key.expires_at)));
            }
        }
        ApiKeysCommand::List { org, out } => {
            let org_id = match org {
                Some(o) => Some(org_id(core, &o).await?),
                None => None,
            };
            let keys = core.admin.api_keys.list(org_id.as_deref(), actor).await?;
            if out.json {
                print_json(&keys);
            } else {
                keys_table(&keys);
            }
        }
        ApiKeysCommand::Revoke { id, out } => {
            let key = core.admin.api_keys.revoke(&id, actor).await?;
            if out.json {
                print_json(&key);
            } else {
                say!("revoked API key {}", key.id);
            }
        }
    }
    Ok(())
}

fn scope_of(key: &ApiKey) -> String {
    match &key.org_id {
        Some(org) => format!("organisation {org}"),
        None => "instance".into(),
    }
}

fn keys_table(keys: &[ApiKey]) {
    say!(
        "{:<32} {:<24} {:<10} {:<34} {:<20} {}",
        "ID",
        "NAME",
        "PREFIX",
        "SCOPE",
        "EXPIRES",
        "STATE"
    );
    for k in keys {
        let state = if k.revoked_at.is_some() { "revoked" } else { "active" };
        say!(
            "{:<32} {:<24} {:<10} {:<34} {:<20} {}",
            k.id,
            k.name,
            k.prefix,
            scope_of(k),
            output::time(Some(k.expires_at)),
            state
        );
    }
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit events, newest first (`--json` prints `{"data", "next_cursor"}`).
    List {
        /// Only this actor: `user:usr_…`, `api_key:apk_…`, `client:…`, `cli`, `system`.
        #[arg(long)]
        actor: Option<String>,
        /// Only this action, e.g. `user.created`.
        #[arg(long)]
        action: Option<String>,
        /// Only events about this object ID.
        #[arg(long)]
        target: Option<String>,
        /// Only events concerning this organisation (ID or slug).
        #[arg(long)]
        org: Option<String>,
        /// From this time (Unix seconds or RFC 3339, inclusive).
        #[arg(long, value_parser = parse_time)]
        since: Option<i64>,
        /// Before this time (Unix seconds or RFC 3339, exclusive).
        #[arg(long, value_parser = parse_time)]
        until: Option<i64>,
        /// Events to print (1-200).
        #[arg(long, default_value_t = 50)]
        limit: u64,
        /// Continue after a previous page (its `next_cursor`).
        #[arg(long)]
        cursor: Option<String>,
        /// Print the matching events oldest first, then keep printing newer ones as they are
        /// written (checked every second) until interrupted; with --json, one JSON object
        /// per line.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
}

fn parse_time(s: &str) -> std::result::Result<i64, String> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("not Unix seconds or an RFC 3339 time: {e}"))
        .and_then(|t| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_err(|_| "before 1970".to_owned())
                .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        })
}

pub async fn manage_audit(core: &Latchkey, command: AuditCommand, actor: &Actor) -> Result<()> {
    let AuditCommand::List {
        actor: who,
        action,
        target,
        org,
        since,
        until,
        limit,
        cursor,
        follow,
        out,
    } = command;
    let org = match org {
        Some(o) => Some(crate::enterprise_cli::org_id(core, &o).await?),
        None => None,
    };
    let query =
        AuditQuery { actor: who, action, target, org, since, until, cursor, limit: Some(limit) };
    let page = core.admin.audit_log.events(actor, &query).await?;
    if follow {
        return follow_audit(core, actor, query, page.data, out.json).await;
    }
    if out.json {
        print_json(&page);
        return Ok(());
    }
    say!("{:<22} {:<40} {:<28} {}", "TIME", "ACTOR", "ACTION", "TARGET");
    for e in &page.data {
        say!("{}", audit_row(e));
    }
    if let Some(next) = page.next_cursor {
        say!("more: --cursor {next}");
    }
    Ok(())
}

fn audit_row(e: &AuditEvent) -> String {
    format!(
        "{:<22} {:<40} {:<28} {}",
        output::time(Some(e.occurred_at)),
        e.actor,
        e.action,
        e.target_id.as_deref().unwrap_or("-")
    )
}

/// Seconds a follower looks back before the newest event it printed: an event is stamped
/// before its transaction commits, so one may appear after a newer one was already read.
const FOLLOW_LOOKBACK_SECS: i64 = 5;

/// `audit list --follow`: `first` (a newest-first page) oldest first, then every newer event
/// matching the same filters, polled every second, until interrupted or stdout is closed.
async fn follow_audit(
    core: &Latchkey,
    actor: &Actor,
    query: AuditQuery,
    mut first: Vec<AuditEvent>,
    json: bool,
) -> Result<()> {
    let log = &core.admin.audit_log;
    if !json {
        say!("{:<22} {:<40} {:<28} {}", "TIME", "ACTOR", "ACTION", "TARGET");
    }
    let mut newest = first.first().map_or_else(|| core.store.now(), |e| e.occurred_at);
    // What already exists counts as seen (printed or not, as `--limit` chose): only events
    // written from now on are new.
    let mut seen: std::collections::HashMap<String, i64> = log
        .from_time(actor, &query, newest - FOLLOW_LOOKBACK_SECS)
        .await?
        .into_iter()
        .map(|e| (e.id, e.occurred_at))
        .collect();
    first.reverse();
    for e in &first {
        if !emit(e, json) {
            return Ok(());
        }
    }
    let mut interval = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        interval.tick().await;
        let from = newest - FOLLOW_LOOKBACK_SECS;
        seen.retain(|_, at| *at >= from);
        let batch = log.from_time(actor, &query, from).await?;
        for e in &batch {
            if seen.contains_key(&e.id) {
                continue;
            }
            if !emit(e, json) {
                return Ok(());
            }
            newest = newest.max(e.occurred_at);
            seen.insert(e.id.clone(), e.occurred_at);
        }
        // A full batch starts the next poll at its last event, so that a burst larger than
        // a batch still moves forward.
        if batch.len() as u64 >= FOLLOW_BATCH
            && let Some(last) = batch.last()
        {
            newest = newest.max(last.occurred_at + FOLLOW_LOOKBACK_SECS);
        }
    }
}

/// Prints one event (a JSON object on one line with `json`); false once stdout is gone.
fn emit(e: &AuditEvent, json: bool) -> bool {
    use std::io::Write as _;
    let line = if json { serde_json::to_string(e).unwrap_or_default() } else { audit_row(e) };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}
