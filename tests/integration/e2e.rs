//! End-to-end through the real pages in headless Chromium, driven by playwright-core from
//! tests/e2e (installed by scripts/test), against this in-process server and a real SMTP server.

use std::path::PathBuf;

use serde_json::Value;

use crate::{
    chain_app::ChainApp,
    support::{Backend, SmtpSink, TestDb, TestServer, data_dir, node_test},
};

fn e2e_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_flow_in_chromium() {
    let dir = e2e_dir();
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run ./scripts/test (or `npm ci --prefix tests/e2e`)"
    );
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "Chromium missing: run ./scripts/test (apt package chromium)"
    );

    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let smtp = SmtpSink::start(None).await;
    let data = data_dir();
    let node = TestServer::start(data.path(), &db, &[("LATCHKEY_SMTP_URL", &smtp.url())]).await;

    let base = node.base_url.clone();
    let maildir = smtp.maildir();
    let script = dir.join("account-flow.mjs");
    let envs = vec![("LATCHKEY_URL", base), ("MAILDIR", maildir.display().to_string())];
    let (passed, report) = node_test(script, Vec::new(), envs).await;
    assert!(passed, "browser test failed:\n{report}");
    assert!(report.contains("pass 1") || report.contains("✔"), "{report}");
    node.stop().await;
}

/// openid-client (npm, current major) as the relying party, signing in through the real pages
/// in Chromium.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openid_client_relying_party() {
    use latchkey_core::{identity::users::NewUser, infra::audit::Actor, oauth::clients::NewClient};

    let dir = e2e_dir();
    assert!(
        dir.join("node_modules/openid-client").is_dir(),
        "openid-client is not installed: run ./scripts/test"
    );
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let data = data_dir();
    let node = TestServer::start(data.path(), &db, &[]).await;
    node.core
        .users
        .create(
            NewUser {
                email: "ada@example.com".into(),
                password: Some("correct horse battery".into()),
                email_verified: true,
                ..Default::default()
            },
            &Actor::cli(),
        )
        .await
        .unwrap();
    let callback_port = crate::support::free_listener().local_addr().unwrap().port();
    let created = node
        .core
        .clients
        .create(
            NewClient {
                name: "Reports (third party)".into(),
                redirect_uris: vec![format!("http://127.0.0.1:{callback_port}/callback")],
                grant_types: vec!["authorization_code".into(), "refresh_token".into()],
                ..Default::default()
            },
            &Actor::cli(),
        )
        .await
        .unwrap();
    let base = node.base_url.clone();
    let script = dir.join("oidc-rp.mjs");
    let client_id = created.client.client_id.clone();
    let secret = created.client_secret.clone().unwrap();
    let envs = vec![
        ("LATCHKEY_URL", base),
        ("CLIENT_ID", client_id),
        ("CLIENT_SECRET", secret),
        ("CALLBACK_PORT", callback_port.to_string()),
        ("USER_EMAIL", "ada@example.com".to_owned()),
        ("USER_PASSWORD", "correct horse battery".to_owned()),
    ];
    let (passed, report) = node_test(script, Vec::new(), envs).await;
    assert!(passed, "openid-client test failed:\n{report}");
    node.stop().await;
}

/// SAML enterprise connections in Chromium against the real pysaml2 test IdP
/// (tests/saml-idp, installed by scripts/test): the script starts the IdPs and sets up
/// organisations, domains and connections through the CLI on this server's store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saml_flows_in_chromium() {
    let dir = e2e_dir();
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run ./scripts/test (or `npm ci --prefix tests/e2e`)"
    );
    assert!(
        dir.join("../saml-idp/.venv/bin/python").exists(),
        "the SAML test IdP is not installed: run ./scripts/test"
    );
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let smtp = SmtpSink::start(None).await;
    let data = data_dir();
    let settings =
        [("LATCHKEY_SAML_METADATA_ALLOW_PRIVATE", "true"), ("LATCHKEY_SMTP_URL", &smtp.url())];
    let node = TestServer::start(data.path(), &db, &settings).await;
    let maildir = smtp.maildir();
    let env_json = serde_json::to_string(&node.env).unwrap();
    let base = node.base_url.clone();
    let script = dir.join("saml-flow.mjs");
    // SAML_E2E_ONLY=<regex> runs only the flows whose names match (when working on one).
    let only = std::env::var("SAML_E2E_ONLY").ok();
    let args = only.map(|only| format!("--test-name-pattern={only}")).into_iter().collect();
    let envs = vec![
        ("LATCHKEY_URL", base),
        ("LATCHKEY_BIN", env!("CARGO_BIN_EXE_latchkey").to_owned()),
        ("LATCHKEY_ENV_JSON", env_json),
        ("MAILDIR", maildir.display().to_string()),
    ];
    let (passed, report) = node_test(script, args, envs).await;
    assert!(passed, "SAML browser flows failed:\n{report}");
    assert!(!report.contains("ℹ pass 0"), "no SAML browser flow ran:\n{report}");
    eprintln!("{report}");
    node.stop().await;
}

/// Google / Microsoft sign-in and EASIE in Chromium against the upstream emulator
/// (tests/upstream-idp, installed by scripts/test): social sign-up, enrollment through the CLI,
/// enforced sign-in for both providers with just-in-time membership, and refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn easie_flows_in_chromium() {
    use crate::upstream_idp::UpstreamIdp;

    let dir = e2e_dir();
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run ./scripts/test (or `npm ci --prefix tests/e2e`)"
    );
    let idp = UpstreamIdp::start(serde_json::json!({
        "google": { "users": [
            { "email": "alice@acme.test", "hd": "acme.test", "name": "Alice Doe" },
            { "email": "erin@acme.test", "hd": "acme.test" },
            { "email": "bob@gmail.test", "name": "Bob Roe" },
            { "email": "mallory@acme.test" },
            { "email": "frank@acme.test", "hd": "acme.test", "name": "Frank Poe" },
        ]},
        "microsoft": {
            "tenants": [{ "tid": "11111111-1111-4111-8111-111111111111", "domains": ["contoso.test"] }],
            "users": [
                { "tid": "11111111-1111-4111-8111-111111111111", "email": "carol@contoso.test" },
                { "tid": "11111111-1111-4111-8111-111111111111", "email": "dave@contoso.test" },
            ],
        },
    }))
    .await;
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let data = data_dir();
    let settings = idp.settings();
    let extra: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let node = TestServer::start(data.path(), &db, &extra).await;
    idp.register_clients(&node.base_url).await;
    // The chain's app, on the `openidconnect` crate.
    let app = ChainApp::start(&node).await;
    let env_json = serde_json::to_string(&node.env).unwrap();
    let base = node.base_url.clone();
    let admin = idp.admin.clone();
    let app_url = app.url.clone();
    let script = dir.join("easie-flow.mjs");
    let envs = vec![
        ("LATCHKEY_URL", base),
        ("LATCHKEY_BIN", env!("CARGO_BIN_EXE_latchkey").to_owned()),
        ("LATCHKEY_ENV_JSON", env_json),
        ("UPSTREAM_ADMIN", admin),
        ("APP_URL", app_url),
    ];
    let (passed, report) = node_test(script, Vec::new(), envs).await;
    assert!(passed, "EASIE browser flows failed:\n{report}");
    assert!(!report.contains("ℹ pass 0"), "no EASIE browser flow ran:\n{report}");

    // The app holds a verified federated sign-in for each provider's member (the browser saw
    // its page); after the Google account is suspended upstream, the app's next refresh past the
    // re-check interval is refused and the app is told that session ended, while the Microsoft
    // member's refresh still works.
    let sign_ins = app.sign_ins();
    let of = |email: &str| sign_ins.iter().find(|s| s.email == email).cloned();
    let (mut frank, mut dave) = (of("frank@acme.test").unwrap(), of("dave@contoso.test").unwrap());
    assert!(frank.amr == ["fed"] && dave.amr == ["fed"], "{sign_ins:?}");
    app.refresh(&mut frank).await.unwrap();
    idp.admin("/google/users/frank@acme.test/suspend", serde_json::json!({})).await;
    node.clock.advance(std::time::Duration::from_secs(11 * 60));
    assert!(
        app.refresh(&mut frank).await.is_err(),
        "the deprovisioned member's refresh is refused"
    );
    app.refresh(&mut dave).await.unwrap();
    let logouts = app.logouts.wait_for(1).await;
    let ended: Vec<Value> = logouts.iter().map(|(_, t)| jwt_payload(t)).collect();
    assert!(ended.iter().any(|l| l["sub"] == frank.sub.as_str() && l["sid"] == frank.sid.as_str()));
    assert!(ended.iter().all(|l| l["sid"] != dave.sid.as_str()), "{ended:?}");
    app.stop().await;
    node.stop().await;
}

fn jwt_payload(jwt: &str) -> Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap(),
    )
    .unwrap()
}

/// The admin console in Chromium (`tests/e2e/console-flow.mjs`): an instance admin's round of
/// the console and an organisation admin's refusals. The script asks for the clock to move on
/// (a file in CLOCK_DIR) so the recent-sign-in rule is seen without waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_chromium() {
    use latchkey_core::{identity::users::NewUser, infra::audit::Actor};
    let dir = e2e_dir();
    assert!(dir.join("node_modules/playwright-core").is_dir(), "run ./scripts/test first");
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let data = data_dir();
    let node = TestServer::start(data.path(), &db, &[]).await;
    let password = "console test passphrase";
    let account = |email: &str, admin: bool| NewUser {
        email: email.into(),
        password: Some(password.into()),
        is_admin: admin,
        email_verified: true,
        ..NewUser::default()
    };
    let users = &node.core.users;
    users.create(account("root@admin.test", true), &Actor::cli()).await.unwrap();
    let alice = users.create(account("alice@acme.test", false), &Actor::cli()).await.unwrap();
    let target = users.create(account("bobby@people.test", false), &Actor::cli()).await.unwrap();
    for i in 0..40 {
        let filler = NewUser { email: format!("bob{i:02}@people.test"), ..NewUser::default() };
        users.create(filler, &Actor::cli()).await.unwrap();
    }
    let acme = node.core.orgs.create("Acme", "acme", &Actor::cli()).await.unwrap();
    let globex = node.core.orgs.create("Globex", "globex", &Actor::cli()).await.unwrap();
    node.core.orgs.set_membership(&acme.id, &alice.id, "admin", &Actor::cli()).await.unwrap();
    let (_, target_secret) = node.session(&target).await;
    assert_eq!(node.token_request(&target_secret).await.status(), 200);

    let clock_dir = tempfile::tempdir().unwrap();
    let watcher = {
        let (clock, dir) = (node.clock.clone(), clock_dir.path().to_owned());
        tokio::spawn(async move {
            while !dir.join("advance").exists() {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            clock.advance(std::time::Duration::from_secs(660));
            std::fs::write(dir.join("advanced"), "").unwrap();
        })
    };
    let (base, script) = (node.base_url.clone(), dir.join("console-flow.mjs"));
    let (clock_path, other) = (clock_dir.path().to_owned(), globex.id.clone());
    let envs = vec![
        ("LATCHKEY_URL", base),
        ("ADMIN_EMAIL", "root@admin.test".to_owned()),
        ("ORG_ADMIN_EMAIL", "alice@acme.test".to_owned()),
        ("PASSWORD", password.to_string()),
        ("TARGET_EMAIL", "bobby@people.test".to_owned()),
        ("OTHER_ORG_ID", other),
        ("CLOCK_DIR", clock_path.display().to_string()),
    ];
    let (passed, report) = node_test(script, Vec::new(), envs).await;
    assert!(passed, "browser test failed:\n{report}");
    assert!(report.contains("pass 2"), "{report}");
    watcher.abort();
    // What the browser did holds in the store: the session is gone, the user deactivated.
    assert_eq!(node.token_request(&target_secret).await.status(), 401);
    let target = node.core.users.get(&target.id).await.unwrap();
    assert_eq!(target.status.as_str(), "deactivated");
    node.stop().await;
}
