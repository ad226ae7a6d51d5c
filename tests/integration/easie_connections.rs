//! EASIE connections: enrolling a verified domain with Google Workspace or Microsoft Entra ID
//! (the Microsoft tenant pinned from the emulator's per-domain discovery), the CLI for both
//! connection kinds, identifier-first routing and the password refusals it brings, the audited
//! bypass, the end of sessions when a connection is disabled or deleted, and suspended
//! memberships, which grant nothing until a sign-in through the connection reactivates them.

use std::{path::Path, process::Output, sync::Arc, time::Duration};

use latchkey_core::{
    Error, Latchkey,
    enterprise::easie::{EasieConnectionView, EasieOptions, NewEasieConnection, Provider},
    identity::method::AuthMethod,
    infra::{
        audit::{self, Actor, ClientInfo},
        entity::{job_outbox, session},
    },
    sign_in::{OrgGrant, SignInRoute, Verified, VerifiedSubject},
    tenancy::orgs,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    pages::{Browser, refresh_target},
    support::{Backend, SmtpSink, TestDb, TestServer, data_dir, latchkey, open_core, verify},
    upstream_idp::UpstreamIdp,
};

const T_CONTOSO: &str = "11111111-1111-4111-8111-111111111111";
const T_FABRIKAM: &str = "22222222-2222-4222-8222-222222222222";
const T_UNLISTED: &str = "33333333-3333-4333-8333-333333333333";
const CONSUMER_TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
const PASSWORD: &str = "correct horse battery";

/// Two work tenants that own a domain each, and a domain Microsoft places in the consumer tenant.
async fn emulator() -> UpstreamIdp {
    UpstreamIdp::start(json!({
        "microsoft": { "tenants": [
            { "tid": T_CONTOSO, "domains": ["contoso.test"], "name": "Contoso" },
            { "tid": T_FABRIKAM, "domains": ["fabrikam.test"], "name": "Fabrikam" },
            { "tid": CONSUMER_TENANT, "domains": ["personal.test"], "name": "Personal" },
        ]},
    }))
    .await
}

/// Only the Google client: enough to enroll Google domains without an emulator.
fn google_only() -> Vec<(&'static str, String)> {
    vec![
        ("LATCHKEY_GOOGLE_CLIENT_ID", "google-client".into()),
        ("LATCHKEY_GOOGLE_CLIENT_SECRET", "google-secret".into()),
    ]
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

// ------------------------------------------------------------------ the CLI

struct Cli<'a> {
    cwd: &'a Path,
    env: Vec<(&'static str, String)>,
}

impl Cli<'_> {
    fn run(&self, args: &[&str]) -> Output {
        latchkey(self.cwd, &borrowed(&self.env)).args(args).output().unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(&[args, &["--json"]].concat());
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Runs a command that must fail with `code`; returns its message.
    fn fails(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(&[args, &["--json"]].concat());
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed {}", String::from_utf8_lossy(&out.stdout));
        stderr
    }
}

fn keys(v: &Value) -> std::collections::BTreeSet<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

/// Enrollment through `latchkey connections add-easie`, every refusal it must make, and the
/// connection commands working on both kinds with one JSON shape per kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_enrolls_domains_and_manages_both_kinds_of_connection() {
    let idp = emulator().await;
    let cwd = data_dir();
    let data = cwd.path().join("data");
    let mut env = idp.settings();
    env.push(("LATCHKEY_DATA_DIR", data.display().to_string()));
    let cli = Cli { cwd: cwd.path(), env: env.clone() };

    let acme = cli.json(&["orgs", "create", "--name", "Acme", "--slug", "acme"]);
    let acme_id = acme["org_id"].as_str().unwrap().to_owned();
    cli.json(&["orgs", "create", "--name", "Other", "--slug", "other"]);
    for d in ["acme.test", "contoso.test", "fabrikam.test", "unlisted.test", "personal.test"] {
        cli.json(&["orgs", "domains", "add", "acme", d, "--verified"]);
    }
    cli.json(&["orgs", "domains", "add", "acme", "pending.test"]);
    let add = |org: &'static str, provider: &'static str, domain: &'static str| {
        vec!["connections", "add-easie", "--org", org, "--provider", provider, "--domain", domain]
    };

    // Google: nothing to pin.
    let google = cli
        .json(&[&add("acme", "google", "ACME.test")[..], &["--bypass", "Root@acme.test"]].concat());
    let google_id = google["connection_id"].as_str().unwrap().to_owned();
    assert!(google_id.starts_with("con_"), "{google}");
    assert_eq!(google["kind"], "easie");
    assert_eq!(google["provider"], "google");
    assert_eq!(google["domain"], "acme.test");
    assert_eq!(google["tenant_id"], Value::Null);
    assert_eq!(google["enabled"], true);
    assert_eq!(google["org_id"], acme_id.as_str());
    assert_eq!(google["name"], "Google Workspace (acme.test)");
    assert_eq!(google["options"]["bypass"], json!(["root@acme.test"]));
    assert!(google["login_url"].as_str().unwrap().ends_with(&format!("/easie/{google_id}/login")));
    let msg = cli.fails(
        2,
        &[&add("acme", "google", "contoso.test")[..], &["--tenant-id", T_CONTOSO]].concat(),
    );
    assert!(msg.contains("only Microsoft"), "{msg}");

    // Microsoft: the tenant comes from the domain's discovery document.
    let contoso = cli.json(&add("acme", "microsoft", "contoso.test"));
    assert_eq!(
        (contoso["provider"].as_str(), contoso["tenant_id"].as_str()),
        (Some("microsoft"), Some(T_CONTOSO))
    );
    // A given tenant must agree with Microsoft's answer; the consumer tenant never passes.
    let msg = cli.fails(
        2,
        &[&add("acme", "microsoft", "fabrikam.test")[..], &["--tenant-id", T_CONTOSO]].concat(),
    );
    assert!(msg.contains(T_FABRIKAM), "names the tenant Microsoft gave: {msg}");
    let msg = cli.fails(
        2,
        &[&add("acme", "microsoft", "fabrikam.test")[..], &["--tenant-id", CONSUMER_TENANT]]
            .concat(),
    );
    assert!(msg.contains("personal"), "{msg}");
    let msg = cli.fails(
        2,
        &[&add("acme", "microsoft", "fabrikam.test")[..], &["--tenant-id", "organizations"]]
            .concat(),
    );
    assert!(msg.contains("tenant"), "{msg}");
    let msg = cli.fails(2, &add("acme", "microsoft", "personal.test"));
    assert!(msg.contains("consumer tenant"), "{msg}");
    let fabrikam = cli.json(
        &[
            &add("acme", "microsoft", "fabrikam.test")[..],
            &["--tenant-id", &T_FABRIKAM.to_uppercase()],
        ]
        .concat(),
    );
    assert_eq!(fabrikam["tenant_id"], T_FABRIKAM);
    // A domain Microsoft does not know needs the tenant given, and then pins it unconfirmed.
    let msg = cli.fails(2, &add("acme", "microsoft", "unlisted.test"));
    assert!(msg.contains("--tenant-id"), "{msg}");
    let unlisted = cli.json(
        &[&add("acme", "microsoft", "unlisted.test")[..], &["--tenant-id", T_UNLISTED]].concat(),
    );
    assert_eq!(unlisted["tenant_id"], T_UNLISTED);

    // Domains the organisation cannot enroll.
    let msg = cli.fails(2, &add("acme", "google", "pending.test"));
    assert!(msg.contains("not a verified domain"), "unverified: {msg}");
    let msg = cli.fails(2, &add("other", "google", "acme.test"));
    assert!(msg.contains("not a verified domain"), "another organisation's: {msg}");
    let msg = cli.fails(2, &add("acme", "google", "gmail.com"));
    assert!(msg.contains("consumer"), "{msg}");
    let msg = cli.fails(2, &add("acme", "google", "never-added.test"));
    assert!(msg.contains("not a verified domain"), "{msg}");
    let msg = cli.fails(1, &add("acme", "microsoft", "acme.test"));
    assert!(msg.contains("already enrolled"), "twice: {msg}");
    let msg = cli.fails(
        2,
        &[&add("acme", "google", "acme.test")[..], &["--bypass", "root@elsewhere.test"]].concat(),
    );
    assert!(msg.contains("bypass"), "{msg}");
    cli.fails(2, &add("acme", "yahoo", "acme.test"));

    // A provider the operator has not configured, named by its setting.
    let unconfigured: Vec<_> =
        env.iter().filter(|(k, _)| !k.starts_with("LATCHKEY_GOOGLE_CLIENT")).cloned().collect();
    let bare = Cli { cwd: cwd.path(), env: unconfigured };
    bare.json(&["orgs", "domains", "add", "acme", "beta.test", "--verified"]);
    let msg = bare.fails(2, &add("acme", "google", "beta.test"));
    assert!(msg.contains("LATCHKEY_GOOGLE_CLIENT_ID"), "{msg}");

    // An organisation with an enabled SAML connection (it covers all its domains) enrolls nothing.
    let saml_idp = latchkey_saml::testkit::TestIdp::generate("https://idp.other.test/saml");
    let cert = cwd.path().join("idp.pem");
    std::fs::write(&cert, &saml_idp.cert_pem).unwrap();
    let core = open_core(&data, &TestDb { url: None }, &[]).await;
    core.domains
        .add_verified(&acme_other_id(&core).await, "other.test", &Actor::cli())
        .await
        .unwrap();
    core.store.close().await;
    let saml = cli.json(&[
        "connections",
        "add-saml",
        "--org",
        "other",
        "--name",
        "Other IdP",
        "--idp-entity-id",
        "https://idp.other.test/saml",
        "--sso-url",
        "https://idp.other.test/sso",
        "--cert-file",
        cert.to_str().unwrap(),
    ]);
    let saml_id = saml["connection_id"].as_str().unwrap().to_owned();
    assert_eq!(saml["kind"], "saml");
    let msg = cli.fails(1, &add("other", "google", "other.test"));
    assert!(msg.contains("SAML") && msg.contains(&saml_id), "{msg}");
    cli.json(&["connections", "disable", &saml_id]);
    let other_easie = cli.json(&add("other", "google", "other.test"));
    let other_easie_id = other_easie["connection_id"].as_str().unwrap().to_owned();
    // Enabling the SAML connection again is SAML's business; the EASIE view warns about it.
    cli.json(&["connections", "enable", &saml_id]);
    let shown = cli.json(&["connections", "show", &other_easie_id]);
    assert!(shown["warnings"].to_string().contains(&saml_id), "{shown}");
    // And an EASIE connection disabled meanwhile cannot be enabled while SAML is.
    cli.json(&["connections", "disable", &other_easie_id]);
    let msg = cli.fails(1, &["connections", "enable", &other_easie_id]);
    assert!(msg.contains("SAML"), "{msg}");

    // list / show / enable / disable / delete, both kinds, one shape per kind.
    let all = cli.json(&["connections", "list"]);
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 6, "{all:?}");
    let kinds: Vec<&str> = all.iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "saml").count(), 1, "{kinds:?}");
    let of_acme = cli.json(&["connections", "list", "--org", "acme"]);
    assert_eq!(of_acme.as_array().unwrap().len(), 4);
    assert!(of_acme.as_array().unwrap().iter().all(|c| c["org_id"] == acme_id.as_str()));
    let shown = cli.json(&["connections", "show", &google_id]);
    let listed = all.iter().find(|c| c["connection_id"] == google_id.as_str()).unwrap();
    let disabled = cli.json(&["connections", "disable", &google_id]);
    assert_eq!(disabled["enabled"], false);
    let enabled = cli.json(&["connections", "enable", &google_id]);
    assert_eq!(enabled["enabled"], true);
    for other in [listed, &disabled, &enabled, &google] {
        assert_eq!(keys(other), keys(&shown), "{other}");
    }
    let saml_shown = cli.json(&["connections", "show", &saml_id]);
    let saml_listed = all.iter().find(|c| c["connection_id"] == saml_id.as_str()).unwrap();
    assert_eq!(keys(saml_listed), keys(&saml_shown));
    assert!(saml_shown.get("sp_entity_id").is_some() && saml_shown["protocol"] == "saml");
    let msg = cli.fails(2, &["connections", "rotate-sp-key", &google_id]);
    assert!(msg.contains("EASIE"), "{msg}");
    let deleted = cli.json(&["connections", "delete", &google_id]);
    assert_eq!(deleted, json!({ "connection_id": google_id, "deleted": true }));
    cli.fails(3, &["connections", "show", &google_id]);
    cli.fails(3, &["connections", "disable", &google_id]);
    cli.fails(3, &["connections", "show", "con_01aaaaaaaaaaaaaaaaaaaaaaaa"]);
    // The SAML connection is still there and still works with the same commands.
    assert_eq!(cli.json(&["connections", "disable", &saml_id])["enabled"], false);
    // The domain can be enrolled again once its connection is gone.
    cli.json(&add("acme", "google", "acme.test"));

    // Text output and help.
    let out = cli.run(&["connections", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Microsoft Entra ID (contoso.test)") && text.contains("Other IdP"),
        "{text}"
    );
    let help = cli.run(&["connections", "add-easie", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in ["--org", "--provider", "--domain", "--tenant-id", "--bypass", "--json"] {
        assert!(help.contains(flag), "{flag} in {help}");
    }
    let help = cli.run(&["connections", "--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("add-easie"));

    // Every change is on record with its actor.
    let core = open_core(&data, &TestDb { url: None }, &[]).await;
    let events = audit::recent(core.store.db(), 200).await.unwrap();
    let created: Vec<_> =
        events.iter().filter(|e| e.action == "easie.connection_created").collect();
    assert_eq!(created.len(), 6);
    let pinned = |tid: &str| {
        created.iter().find(|e| e.data["tenant_id"] == tid).unwrap().data["tenant_source"].clone()
    };
    assert_eq!(pinned(T_CONTOSO), "discovered");
    assert_eq!(pinned(T_FABRIKAM), "given_confirmed");
    assert_eq!(pinned(T_UNLISTED), "given_unconfirmed");
    let disabled = events
        .iter()
        .find(|e| {
            e.action == "easie.connection_disabled"
                && e.target_id.as_deref() == Some(google_id.as_str())
        })
        .unwrap();
    assert_eq!(disabled.actor, "cli");
    assert_eq!(
        (disabled.data["before"]["enabled"].as_bool(), disabled.data["after"]["enabled"].as_bool()),
        (Some(true), Some(false))
    );
    let deleted = events.iter().find(|e| e.action == "easie.connection_deleted").unwrap();
    assert_eq!(deleted.data["before"]["domain"], "acme.test");
    core.store.close().await;
}

async fn acme_other_id(core: &Latchkey) -> String {
    core.orgs.get_by_slug("other").await.unwrap().id
}

// ------------------------------------------------------------------ the service

fn new_connection(org_id: &str, provider: Provider, domain: &str) -> NewEasieConnection {
    NewEasieConnection {
        org_id: org_id.into(),
        provider,
        domain: domain.into(),
        tenant_id: None,
        options: EasieOptions::default(),
    }
}

/// Of simultaneous enrollments of one domain, from two nodes, exactly one wins; the others
/// get a conflict and leave nothing behind. Organisation admins may enroll, members may not.
async fn one_domain_is_enrolled_once_under_concurrency(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let idp = emulator().await;
    let dir = data_dir();
    let env = idp.settings();
    let a = open_core(dir.path(), &db, &borrowed(&env)).await;
    let b = open_core(dir.path(), &db, &borrowed(&env)).await;
    let org = a.orgs.create("Acme", "acme", &Actor::cli()).await.unwrap();
    for d in ["acme.test", "contoso.test"] {
        a.domains.add_verified(&org.id, d, &Actor::cli()).await.unwrap();
    }
    // Started together, so that several pass the checks before any insert commits: the unique
    // index must then decide, and its refusal must read as a conflict.
    let n = 16;
    let start = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for i in 0..n {
        let core = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (org_id, start) = (org.id.clone(), start.clone());
        let provider = if i % 4 == 0 { Provider::Microsoft } else { Provider::Google };
        let domain = if provider == Provider::Microsoft { "contoso.test" } else { "acme.test" };
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            core.easie.create(new_connection(&org_id, provider, domain), &Actor::cli()).await
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let won: Vec<&EasieConnectionView> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(won.len(), 2, "one per domain: {results:?}");
    assert!(
        results.iter().filter_map(|r| r.as_ref().err()).all(|e| matches!(e, Error::Conflict(_))),
        "{results:?}"
    );
    let listed = a.easie.list(Some(&org.id), &Actor::cli()).await.unwrap();
    assert_eq!(listed.len(), 2);
    let ms = listed.iter().find(|c| c.provider == Provider::Microsoft).unwrap();
    assert_eq!(ms.tenant_id.as_deref(), Some(T_CONTOSO));

    // Authorisation lives in the service: a member is refused, an outsider sees nothing.
    let ada = a
        .users
        .create(
            latchkey_core::identity::users::NewUser {
                email: "ada@acme.test".into(),
                ..Default::default()
            },
            &Actor::cli(),
        )
        .await
        .unwrap();
    a.orgs.set_membership(&org.id, &ada.id, "member", &Actor::cli()).await.unwrap();
    let mallory = a
        .users
        .create(
            latchkey_core::identity::users::NewUser {
                email: "mallory@evil.test".into(),
                ..Default::default()
            },
            &Actor::cli(),
        )
        .await
        .unwrap();
    let as_ada = Actor::user(&ada.id, None, None);
    let as_mallory = Actor::user(&mallory.id, None, None);
    a.domains.add_verified(&org.id, "gamma.test", &Actor::cli()).await.unwrap();
    let refused =
        a.easie.create(new_connection(&org.id, Provider::Google, "gamma.test"), &as_ada).await;
    assert!(matches!(refused, Err(Error::Forbidden(_))), "{refused:?}");
    let refused =
        a.easie.create(new_connection(&org.id, Provider::Google, "gamma.test"), &as_mallory).await;
    assert!(matches!(refused, Err(Error::NotFound(_))), "{refused:?}");
    assert!(matches!(a.easie.show(&ms.connection_id, &as_ada).await, Err(Error::Forbidden(_))));
    assert!(matches!(
        a.easie.set_enabled(&ms.connection_id, false, &as_mallory).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(a.easie.delete(&ms.connection_id, &as_ada).await, Err(Error::Forbidden(_))));
    assert!(matches!(a.easie.list(None, &as_ada).await, Err(Error::Forbidden(_))));
    assert!(a.easie.show(&ms.connection_id, &Actor::cli()).await.unwrap().enabled);
    a.orgs.set_membership(&org.id, &ada.id, "admin", &Actor::cli()).await.unwrap();
    let mine = a
        .easie
        .create(new_connection(&org.id, Provider::Google, "gamma.test"), &as_ada)
        .await
        .unwrap();
    let events = audit::recent(a.store.db(), 50).await.unwrap();
    let created = events
        .iter()
        .find(|e| e.target_id.as_deref() == Some(mine.connection_id.as_str()))
        .unwrap();
    assert_eq!(
        (created.action.as_str(), created.actor.clone()),
        ("easie.connection_created", format!("user:{}", ada.id))
    );
    a.store.close().await;
    b.store.close().await;
}
on_both_backends!(one_domain_is_enrolled_once_under_concurrency);

/// An EASIE session as the upstream sign-in will finish it: through the one completion, with
/// the connection's method and membership grant.
fn easie_sign_in(connection_id: Option<&str>, user_id: &str, org_id: Option<&str>) -> Verified {
    Verified {
        method: AuthMethod::UpstreamOidc {
            upstream: Provider::Google,
            connection_id: connection_id.map(str::to_owned),
        },
        subject: VerifiedSubject::User(user_id.to_owned()),
        join: org_id.map(|o| OrgGrant {
            org_id: o.to_owned(),
            role: "member".into(),
            authoritative: false,
        }),
        upstream_session: None,
    }
}

async fn record_grant(core: &Latchkey, user_id: &str, connection: &str, org: &str) {
    use latchkey_core::enterprise::upstream::vault::{self, GrantWrite, IssuedTokens};
    let tokens = IssuedTokens {
        access_token: "at".into(),
        expires_at: None,
        refresh_token: Some("rt".into()),
        scopes: Vec::new(),
    };
    let snapshot = vault::snapshot_from_json("{}").unwrap();
    let now = core.store.now();
    let grant = GrantWrite {
        user_id,
        provider: Provider::Google,
        issuer: "https://accounts.google.test",
        subject: user_id,
        easie: Some((connection, org)),
        tokens: &tokens,
        snapshot: &snapshot,
        next_check_at: Some(now + 600),
    };
    vault::record_sign_in(core.store.db(), core.store.master_key(), &grant, now).await.unwrap();
}

fn client() -> ClientInfo {
    ClientInfo { ip: Some("192.0.2.7".into()), user_agent: Some("tests".into()) }
}

async fn session_status(core: &Latchkey, id: &str) -> (String, Option<String>) {
    let s = session::Entity::find_by_id(id.to_owned()).one(core.store.db()).await.unwrap().unwrap();
    (s.status, s.end_reason)
}

/// Whether the back-channel logout of `session_id` was queued.
async fn logout_queued(core: &Latchkey, session_id: &str) -> bool {
    job_outbox::Entity::find()
        .filter(job_outbox::Column::Kind.eq("sessions_ended"))
        .all(core.store.db())
        .await
        .unwrap()
        .iter()
        .any(|j| j.payload.contains(session_id))
}

/// The enrolled domain (and only it) goes to its provider; its addresses cannot use a
/// password, sign up or reset, except the audited bypass; disabling stops the enforcement and
/// ends the connection's sessions, enabling brings it back, deleting ends it for good and
/// keeps the accounts.
async fn routing_enforcement_and_lifecycle(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let smtp = SmtpSink::start(None).await;
    let dir = data_dir();
    let mut env = google_only();
    env.push(("LATCHKEY_SMTP_URL", smtp.url()));
    let node = TestServer::start(dir.path(), &db, &borrowed(&env)).await;
    let core = &node.core;
    let org = core.orgs.create("Acme", "acme", &Actor::cli()).await.unwrap();
    let acme_domain = core.domains.add_verified(&org.id, "acme.test", &Actor::cli()).await.unwrap();
    core.domains.add_verified(&org.id, "beta.test", &Actor::cli()).await.unwrap();
    let ada = node.user("ada@acme.test").await;
    node.user("root@acme.test").await;
    node.user("bob@beta.test").await;
    let new = NewEasieConnection {
        options: EasieOptions { bypass: vec!["ROOT@acme.test".into()] },
        ..new_connection(&org.id, Provider::Google, "acme.test")
    };
    let c = core.easie.create(new, &Actor::cli()).await.unwrap();
    let id = c.connection_id.clone();

    // Identifier-first: the enrolled domain goes to the connection's start, with the hint.
    let browser = Browser::new(&node.base_url);
    let csrf = browser.csrf("/sign-in").await;
    let form =
        [("csrf_token", csrf.as_str()), ("email", "Ada@ACME.test"), ("return_to", "/account")];
    let (status, body, _) = browser.post("/sign-in", &form).await;
    assert_eq!(status, 200);
    assert_eq!(
        refresh_target(&body),
        format!("/easie/{id}/login?login_hint=ada%40acme.test&return_to=%2Faccount")
    );
    match core.sign_in.route("nobody@acme.test").await.unwrap() {
        SignInRoute::Enterprise { connection } => {
            assert_eq!(connection.protocol, "easie");
            assert_eq!(connection.name, "Google Workspace (acme.test)");
            assert_eq!(connection.org_id, org.id);
        }
        other => panic!("{other:?}"),
    }
    // Only that domain: the organisation's other verified domain keeps its passwords.
    assert_eq!(core.sign_in.route("bob@beta.test").await.unwrap(), SignInRoute::Password);
    assert_eq!(browser.sign_in("bob@beta.test", PASSWORD, "").await.0, 303);

    // No password, sign-up or reset for enrolled addresses.
    let denied = core.sign_in.sign_in_with_password("ada@acme.test", PASSWORD, &client()).await;
    assert!(matches!(denied, Err(Error::Forbidden(_))), "{denied:?}");
    let sign_up =
        core.sign_in.start_sign_up("new@acme.test", "quartz violin ember lantern", &client()).await;
    assert!(matches!(sign_up, Err(Error::Invalid { field: "email", .. })), "{sign_up:?}");
    core.sign_in.request_password_reset("ada@acme.test", &client()).await.unwrap();
    core.sign_in.request_password_reset("bob@beta.test", &client()).await.unwrap();
    let mails = smtp.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0].to.contains("bob@beta.test"), "{mails:?}");

    // The break-glass address keeps its password, and its use is on record.
    assert_eq!(Browser::new(&node.base_url).sign_in("root@acme.test", PASSWORD, "").await.0, 303);
    let events = audit::recent(core.store.db(), 50).await.unwrap();
    let bypass = events.iter().find(|e| e.action == "sign_in.bypass_used").unwrap();
    assert_eq!(
        (bypass.target_id.as_deref(), bypass.data["email"].as_str()),
        (Some(id.as_str()), Some("root@acme.test"))
    );

    // Sessions: one through the connection, one social (same provider, no connection), one
    // with a password.
    let through = core
        .sign_in
        .complete(easie_sign_in(Some(&id), &ada.id, Some(&org.id)), &client())
        .await
        .unwrap();
    let social =
        core.sign_in.complete(easie_sign_in(None, &ada.id, None), &client()).await.unwrap();
    let bob_session =
        core.sign_in.sign_in_with_password("bob@beta.test", PASSWORD, &client()).await.unwrap();
    assert_eq!(through.session.auth_method.to_stored(), format!("oidc:google:{id}"));
    let found = latchkey_core::enterprise::easie::connections::enabled_for_domain(
        core.store.db(),
        "acme.test",
    )
    .await
    .unwrap();
    assert_eq!(found.map(|c| c.id), Some(id.clone()));

    // Disabling: enforcement stops, the connection's sessions end with back-channel logout.
    let off = core.easie.set_enabled(&id, false, &Actor::cli()).await.unwrap();
    assert!(!off.enabled);
    assert_eq!(
        session_status(core, &through.session.id).await,
        ("revoked".into(), Some("connection_disabled".into()))
    );
    assert!(logout_queued(core, &through.session.id).await);
    for other in [&social.session.id, &bob_session.session.id] {
        assert_eq!(session_status(core, other).await.0, "active");
    }
    assert_eq!(core.sign_in.route("ada@acme.test").await.unwrap(), SignInRoute::Password);
    core.sign_in.sign_in_with_password("ada@acme.test", PASSWORD, &client()).await.unwrap();
    assert!(
        latchkey_core::enterprise::easie::connections::enabled_for_domain(
            core.store.db(),
            "acme.test"
        )
        .await
        .unwrap()
        .is_none()
    );
    let events = audit::recent(core.store.db(), 50).await.unwrap();
    let disabled = events.iter().find(|e| e.action == "easie.connection_disabled").unwrap();
    assert_eq!(disabled.data["sessions_ended"], 1);

    // Enabling brings enforcement back.
    core.easie.set_enabled(&id, true, &Actor::cli()).await.unwrap();
    assert!(matches!(
        core.sign_in.route("ada@acme.test").await.unwrap(),
        SignInRoute::Enterprise { .. }
    ));
    assert!(
        core.sign_in.sign_in_with_password("ada@acme.test", PASSWORD, &client()).await.is_err()
    );
    let again = core
        .sign_in
        .complete(easie_sign_in(Some(&id), &ada.id, Some(&org.id)), &client())
        .await
        .unwrap();

    // Bypass list changes are validated and audited with before and after.
    let changed = core
        .easie
        .set_options(&id, EasieOptions { bypass: vec!["ada@acme.test".into()] }, &Actor::cli())
        .await
        .unwrap();
    assert_eq!(changed.options.bypass, vec!["ada@acme.test"]);
    assert_eq!(core.sign_in.route("ada@acme.test").await.unwrap(), SignInRoute::Password);
    assert!(matches!(
        core.sign_in.route("root@acme.test").await.unwrap(),
        SignInRoute::Enterprise { .. }
    ));
    let bad = core
        .easie
        .set_options(&id, EasieOptions { bypass: vec!["bob@beta.test".into()] }, &Actor::cli())
        .await;
    assert!(matches!(bad, Err(Error::Invalid { field: "bypass", .. })), "{bad:?}");
    let events = audit::recent(core.store.db(), 50).await.unwrap();
    let updated = events.iter().find(|e| e.action == "easie.connection_updated").unwrap();
    assert_eq!(updated.data["before"]["bypass"], json!(["root@acme.test"]));
    assert_eq!(updated.data["after"]["bypass"], json!(["ada@acme.test"]));
    core.easie.set_options(&id, EasieOptions::default(), &Actor::cli()).await.unwrap();

    // A domain the organisation gives up is no longer vouched for by its enrollment.
    core.domains.remove_domain(&org.id, &acme_domain.id, &Actor::cli()).await.unwrap();
    assert!(
        latchkey_core::enterprise::easie::connections::enabled_for_domain(
            core.store.db(),
            "acme.test"
        )
        .await
        .unwrap()
        .is_none()
    );
    let shown = core.easie.show(&id, &Actor::cli()).await.unwrap();
    assert!(shown.warnings.iter().any(|w| w.contains("no longer a verified domain")), "{shown:?}");
    assert_eq!(core.sign_in.route("ada@acme.test").await.unwrap(), SignInRoute::Password);

    // Deleting ends the connection's sessions and keeps the accounts and memberships.
    core.easie.delete(&id, &Actor::cli()).await.unwrap();
    assert_eq!(
        session_status(core, &again.session.id).await,
        ("revoked".into(), Some("connection_deleted".into()))
    );
    assert!(logout_queued(core, &again.session.id).await);
    assert_eq!(session_status(core, &social.session.id).await.0, "active");
    assert_eq!(core.users.get(&ada.id).await.unwrap().primary_email, "ada@acme.test");
    assert!(core.orgs.membership(&org.id, &ada.id).await.unwrap().is_some());
    assert!(matches!(core.easie.show(&id, &Actor::cli()).await, Err(Error::NotFound(_))));
    assert!(matches!(core.easie.delete(&id, &Actor::cli()).await, Err(Error::NotFound(_))));
    assert!(matches!(
        core.easie.show("con_../../etc", &Actor::cli()).await,
        Err(Error::NotFound(_))
    ));
    node.stop().await;
}
on_both_backends!(routing_enforcement_and_lifecycle);

// ------------------------------------------------------------------ suspended memberships

async fn org_claims(node: &TestServer, secret: &str) -> Value {
    let claims = verify(&node.token(secret).await, &node.jwks().await, &node.base_url).unwrap();
    json!({ "org_id": claims.get("org_id"), "org_role": claims.get("org_role") })
}

async fn me(node: &TestServer, secret: &str) -> Value {
    let res = crate::support::client()
        .get(node.url("/v1/me"))
        .header("Cookie", format!("latchkey_session={secret}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// A suspended membership grants nothing (no organisation claims, no access, no switching to
/// it, not among the user's organisations, no admin weight) while admins still see it with its
/// status; a sign-in through the organisation's connection reactivates it, audited, and
/// nothing else does.
async fn suspended_memberships_grant_nothing(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let core = &node.core;
    let ada = node.user("ada@acme.test").await;
    let bob = node.user("bob@acme.test").await;
    let (org, _) = core.orgs.create_for_user("Acme", "acme", &ada.id, &Actor::cli()).await.unwrap();
    core.orgs.set_membership(&org.id, &bob.id, "member", &Actor::cli()).await.unwrap();
    let (bob_session, bob_secret) = node.session(&bob).await;
    let as_bob = Actor::user(&bob.id, None, None);
    core.sessions.set_active_org(&bob_session, Some(&org.id), &as_bob).await.unwrap();
    assert_eq!(
        org_claims(&node, &bob_secret).await,
        json!({ "org_id": org.id, "org_role": "member" })
    );
    assert_eq!(me(&node, &bob_secret).await["memberships"].as_array().unwrap().len(), 1);
    core.orgs.view(&org.id, &as_bob).await.unwrap();

    let now = node.clock.now();
    assert!(orgs::suspend_member(core.store.db(), &org.id, &bob.id, now).await.unwrap());
    assert!(!orgs::suspend_member(core.store.db(), &org.id, &bob.id, now).await.unwrap(), "once");
    assert!(!orgs::suspend_member(core.store.db(), &org.id, "usr_nobody", now).await.unwrap());

    // Nothing granted: claims, access, switching, the user's own list.
    assert_eq!(org_claims(&node, &bob_secret).await, json!({ "org_id": null, "org_role": null }));
    assert_eq!(me(&node, &bob_secret).await["memberships"], json!([]));
    assert!(matches!(core.orgs.view(&org.id, &as_bob).await, Err(Error::NotFound(_))));
    assert!(matches!(core.orgs.members(&org.id, &as_bob).await, Err(Error::NotFound(_))));
    let switch = core.sessions.set_active_org(&bob_session, Some(&org.id), &as_bob).await;
    assert!(matches!(switch, Err(Error::Invalid { .. })), "{switch:?}");
    assert!(core.orgs.list_for_user(&bob.id).await.unwrap().is_empty());
    let subject = latchkey_core::identity::subject::load_by_id(core.store.db(), &bob_session)
        .await
        .unwrap()
        .unwrap();
    assert!(subject.org.is_none());
    // Admins and the operator still see the membership, with its status.
    let members = core.orgs.members(&org.id, &Actor::user(&ada.id, None, None)).await.unwrap();
    let listed = members.iter().find(|m| m.membership.user_id == bob.id).unwrap();
    assert_eq!(listed.membership.status, "suspended");
    assert_eq!(core.orgs.memberships_of_user(&bob.id).await.unwrap()[0].status, "suspended");
    let events = audit::recent(core.store.db(), 20).await.unwrap();
    let suspended = events.iter().filter(|e| e.action == "org.membership_suspended").count();
    assert_eq!(suspended, 1);

    // A suspended admin carries no weight: the last active admin stays.
    core.orgs.set_membership(&org.id, &bob.id, "admin", &Actor::cli()).await.unwrap();
    let demote = core.orgs.set_membership(&org.id, &ada.id, "member", &Actor::cli()).await;
    assert!(matches!(demote, Err(Error::Conflict(_))), "{demote:?}");
    let leave = core.orgs.leave(&org.id, &ada.id, &Actor::user(&ada.id, None, None)).await;
    assert!(matches!(leave, Err(Error::Conflict(_))), "{leave:?}");
    core.orgs.set_membership(&org.id, &bob.id, "member", &Actor::cli()).await.unwrap();
    assert!(
        matches!(core.orgs.view(&org.id, &as_bob).await, Err(Error::NotFound(_))),
        "a role change reactivates nothing"
    );

    // Signing in without the organisation's connection reactivates nothing.
    let social =
        core.sign_in.complete(easie_sign_in(None, &bob.id, None), &client()).await.unwrap();
    assert!(core.orgs.list_for_user(&bob.id).await.unwrap().is_empty());
    assert_eq!(org_claims(&node, &social.secret).await["org_id"], Value::Null);

    // A sign-in through the connection does, and says so.
    let via = core
        .sign_in
        .complete(
            easie_sign_in(Some("con_01aaaaaaaaaaaaaaaaaaaaaaaa"), &bob.id, Some(&org.id)),
            &client(),
        )
        .await
        .unwrap();
    // An EASIE session mints only with its upstream grant, which a real sign-in records.
    record_grant(core, &bob.id, "con_01aaaaaaaaaaaaaaaaaaaaaaaa", &org.id).await;
    assert_eq!(
        org_claims(&node, &via.secret).await,
        json!({ "org_id": org.id, "org_role": "member" })
    );
    core.orgs.view(&org.id, &as_bob).await.unwrap();
    core.sessions.set_active_org(&bob_session, Some(&org.id), &as_bob).await.unwrap();
    assert_eq!(org_claims(&node, &bob_secret).await["org_id"], org.id.as_str());
    let events = audit::recent(core.store.db(), 20).await.unwrap();
    let reactivated: Vec<_> =
        events.iter().filter(|e| e.action == "org.membership_reactivated").collect();
    assert_eq!(reactivated.len(), 1);
    assert_eq!(
        (reactivated[0].target_id.as_deref(), reactivated[0].data["user_id"].as_str()),
        (Some(org.id.as_str()), Some(bob.id.as_str()))
    );

    // A connection that decides roles (authoritative) reactivates too, even with the same role.
    assert!(
        orgs::suspend_member(core.store.db(), &org.id, &bob.id, node.clock.now()).await.unwrap()
    );
    let mut grant = easie_sign_in(Some("con_01aaaaaaaaaaaaaaaaaaaaaaaa"), &bob.id, Some(&org.id));
    grant.join.as_mut().unwrap().authoritative = true;
    core.sign_in.complete(grant, &client()).await.unwrap();
    assert_eq!(core.orgs.membership(&org.id, &bob.id).await.unwrap().unwrap().status, "active");
    let events = audit::recent(core.store.db(), 20).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.action == "org.membership_reactivated").count(), 2);
    node.stop().await;
}
on_both_backends!(suspended_memberships_grant_nothing);
