//! The CLI against a running server on the same store (SQLite, and PostgreSQL where a test runs
//! on both backends).

use serde_json::Value;

use crate::{
    on_both_backends,
    support::{Backend, TestDb, TestServer, data_dir, latchkey},
};

fn run_json(cwd: &std::path::Path, args: &[&str]) -> Value {
    let out = latchkey(cwd, &[]).args(args).arg("--json").output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_users_sessions_and_keys_of_a_running_server() {
    let cwd = data_dir();
    let data = cwd.path().join("latchkey-data");
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let node = TestServer::start(&data, &db, &[]).await;
    let dir = cwd.path();

    let added = run_json(
        dir,
        &[
            "users",
            "add",
            "--email",
            "Grace@Example.com",
            "--password",
            "a long passphrase",
            "--name",
            "Grace Hopper",
        ],
    );
    assert_eq!(added["primary_email"], "grace@example.com");
    let user_id = added["id"].as_str().unwrap().to_owned();
    assert!(user_id.starts_with("usr_"));

    let dup =
        latchkey(dir, &[]).args(["users", "add", "--email", "grace@example.com"]).output().unwrap();
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let weak = latchkey(dir, &[])
        .args(["users", "add", "--email", "x@example.com", "--password", "short"])
        .output()
        .unwrap();
    assert!(!weak.status.success());

    let listed = run_json(dir, &["users", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let shown = run_json(dir, &["users", "show", "grace@example.com"]);
    assert_eq!(shown["id"], user_id);
    assert_eq!(shown["name"], "Grace Hopper");
    assert_eq!(shown["sign_in_lockout"]["failures"], 0);
    assert!(shown["sign_in_lockout"]["locked_until"].is_null());
    assert_eq!(run_json(dir, &["users", "unlock", "grace@example.com"])["id"], user_id.as_str());
    let missing =
        latchkey(dir, &[]).args(["users", "show", "nobody@example.com"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(3));

    // Sessions made by the CLI work on the server; revoking through the CLI stops them there.
    let s1 = run_json(dir, &["sessions", "create", "--user", "grace@example.com"]);
    let s2 = run_json(dir, &["sessions", "create", "--user", &user_id]);
    let secret1 = s1["secret"].as_str().unwrap();
    let secret2 = s2["secret"].as_str().unwrap();
    assert_eq!(s1["cookie_name"], "latchkey_session");
    node.token(secret1).await;
    node.token(secret2).await;
    let sessions = run_json(dir, &["sessions", "list", "--user", "grace@example.com"]);
    assert_eq!(sessions.as_array().unwrap().len(), 2);

    let sid1 = s1["id"].as_str().unwrap();
    let revoked = run_json(dir, &["sessions", "revoke", sid1]);
    assert_eq!(revoked[0]["id"], sid1);
    assert_eq!(
        (revoked.as_array().unwrap().len(), revoked[0]["status"].as_str()),
        (1, Some("revoked"))
    );
    assert_eq!(node.token_request(secret1).await.status(), 401);
    assert_eq!(node.token_request(secret2).await.status(), 200);

    let revoked = run_json(dir, &["sessions", "revoke", "--user", "grace@example.com"]);
    assert_eq!(revoked.as_array().unwrap().len(), 1);
    assert_eq!(node.token_request(secret2).await.status(), 401);
    assert_eq!(run_json(dir, &["sessions", "list", "--all"]).as_array().unwrap().len(), 2);
    assert_eq!(run_json(dir, &["sessions", "list"]).as_array().unwrap().len(), 0);

    // Deactivation through the CLI.
    let s3 = run_json(dir, &["sessions", "create", "--user", "grace@example.com"]);
    node.token(s3["secret"].as_str().unwrap()).await;
    let deactivated =
        run_json(dir, &["users", "deactivate", "grace@example.com", "--reason", "offboarded"]);
    assert_eq!(deactivated["status"], "deactivated");
    assert_eq!(node.token_request(s3["secret"].as_str().unwrap()).await.status(), 401);

    // Keys: list and rotate, seen by the server's JWKS at once.
    let keys = run_json(dir, &["keys", "list"]);
    assert_eq!(keys.as_array().unwrap().len(), 1);
    let rotated = run_json(dir, &["keys", "rotate"]);
    let new_kid = rotated[0]["kid"].as_str().unwrap();
    assert_eq!(rotated[1]["kid"], keys[0]["kid"]);
    let jwks = node.jwks().await;
    assert!(jwks.find(new_kid).is_some());
    assert!(jwks.find(keys[0]["kid"].as_str().unwrap()).is_some());
    let rotated_rs = run_json(dir, &["keys", "rotate", "--alg", "RS256"]);
    assert_eq!(rotated_rs[0]["alg"], "RS256");
    let bad = latchkey(dir, &[]).args(["keys", "rotate", "--alg", "HS256"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));

    node.stop().await;

    // Migrations are idempotent and can run against an existing store.
    let out = latchkey(dir, &[]).arg("migrate").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(run_json(dir, &["users", "list"]).as_array().unwrap().len(), 1);
}

fn keys_of(v: &Value) -> std::collections::BTreeSet<String> {
    v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().cloned().collect()
}

/// Checks that every object has the noun's shape, allowing `once` (secrets shown once) on top.
fn same_shape(noun: &str, reference: &Value, others: &[(&str, &Value)], once: &[&str]) {
    let expected = keys_of(reference);
    for (what, v) in others {
        let mut got = keys_of(v);
        for extra in once {
            got.remove(*extra);
        }
        assert_eq!(got, expected, "{noun}: `{what}` has another shape than `show`: {v}");
    }
}

fn exit_code(cwd: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let out = latchkey(cwd, &[]).args(args).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_noun_has_one_json_shape() {
    let cwd = data_dir();
    let dir = cwd.path();
    let pw = "a long passphrase";

    // Users (and their memberships).
    let added = run_json(dir, &["users", "add", "--email", "ada@example.com", "--password", pw]);
    let admin = run_json(dir, &["admin", "create", "--email", "root@example.com"]);
    assert!(admin["generated_password"].as_str().unwrap().len() >= 32);
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let core = crate::support::open_core(&dir.join("latchkey-data"), &db, &[]).await;
    let ada_id = added["id"].as_str().unwrap();
    core.orgs
        .create_for_user("Acme", "acme", ada_id, &latchkey_core::infra::audit::Actor::cli())
        .await
        .unwrap();
    core.store.close().await;
    let shown = run_json(dir, &["users", "show", "ada@example.com"]);
    assert_eq!(shown["memberships"][0]["role"], "admin");
    let listed = run_json(dir, &["users", "list"]);
    let listed_ada = listed.as_array().unwrap().iter().find(|u| u["id"] == ada_id).unwrap();
    assert_eq!(listed_ada["memberships"], shown["memberships"]);
    let unlocked = run_json(dir, &["users", "unlock", ada_id]);
    let deactivated = run_json(dir, &["users", "deactivate", ada_id]);
    assert_eq!(deactivated["status"], "deactivated");
    let reactivated = run_json(dir, &["users", "reactivate", ada_id]);
    same_shape(
        "user",
        &shown,
        &[
            ("users add", &added),
            ("admin create", &admin),
            ("users list", listed_ada),
            ("users unlock", &unlocked),
            ("users deactivate", &deactivated),
            ("users reactivate", &reactivated),
        ],
        &["generated_password"],
    );
    same_shape(
        "membership",
        &shown["memberships"][0],
        &[("list", &listed_ada["memberships"][0])],
        &[],
    );

    // Sessions.
    let created = run_json(dir, &["sessions", "create", "--user", ada_id]);
    assert!(created["secret"].is_string() && created["cookie_name"].is_string());
    let sessions = run_json(dir, &["sessions", "list", "--user", ada_id]);
    let revoked = run_json(dir, &["sessions", "revoke", created["id"].as_str().unwrap()]);
    run_json(dir, &["sessions", "create", "--user", ada_id]);
    let revoked_all = run_json(dir, &["sessions", "revoke", "--user", ada_id]);
    let ended = run_json(dir, &["sessions", "list", "--all"]);
    same_shape(
        "session",
        &sessions[0],
        &[
            ("sessions create", &created),
            ("sessions revoke", &revoked[0]),
            ("sessions revoke --user", &revoked_all[0]),
            ("sessions list --all", &ended[0]),
        ],
        &["secret", "cookie_name"],
    );

    // Signing keys.
    let keys = run_json(dir, &["keys", "list"]);
    let rotated = run_json(dir, &["keys", "rotate"]);
    assert_eq!(rotated.as_array().unwrap().len(), 2, "the new key and the retired one");
    same_shape("key", &keys[0], &[("keys rotate", &rotated[0]), ("retired", &rotated[1])], &[]);

    // Clients.
    let cb = "https://app.example.com/cb";
    let client = run_json(dir, &["clients", "add", "--name", "App", "--redirect-uri", cb]);
    let id = client["client_id"].as_str().unwrap();
    assert!(client["client_secret"].is_string());
    let public =
        run_json(dir, &["clients", "add", "--name", "Spa", "--redirect-uri", cb, "--public"]);
    let shown = run_json(dir, &["clients", "show", id]);
    let listed = run_json(dir, &["clients", "list"]);
    let rotated = run_json(dir, &["clients", "rotate-secret", id]);
    assert!(rotated["client_secret"].is_string());
    let deleted = run_json(dir, &["clients", "delete", id]);
    same_shape(
        "client",
        &shown,
        &[
            ("clients add", &client),
            ("clients add --public", &public),
            ("clients list", &listed[0]),
            ("clients rotate-secret", &rotated),
            ("clients delete", &deleted),
        ],
        &["client_secret"],
    );

    // JWT templates.
    let claims = r#"{"role":"authenticated"}"#;
    let template = run_json(dir, &["templates", "add", "--name", "api", "--claims", claims]);
    let shown = run_json(dir, &["templates", "show", "api"]);
    let listed = run_json(dir, &["templates", "list"]);
    let deleted = run_json(dir, &["templates", "delete", "api"]);
    same_shape(
        "template",
        &shown,
        &[
            ("templates add", &template),
            ("templates list", &listed[0]),
            ("templates delete", &deleted),
        ],
        &[],
    );
}

#[test]
fn usage_errors_exit_2_runtime_failures_1_and_missing_things_3() {
    let cwd = data_dir();
    let dir = cwd.path();
    let cb = "https://app.example.com/cb";
    let missing = dir.join("missing.json");
    let missing = missing.to_str().unwrap();
    for args in [
        &["users", "frobnicate"][..],
        &["users", "list", "--limit", "many"],
        &["users", "show"],
        &["sessions", "revoke"],
        &["users", "add", "--email", "not-an-address"],
        &["users", "add", "--email", "x@example.com", "--password", "short"],
        &["keys", "rotate", "--alg", "HS256"],
        &["clients", "add", "--name", "App", "--redirect-uri", "http://evil.example/cb"],
        &["clients", "add", "--name", "App", "--redirect-uri", cb, "--access-token-ttl", "5"],
        &["clients", "add", "--name", "App", "--redirect-uri", cb, "--grant-type", "password"],
        &[
            "clients",
            "add",
            "--name",
            "App",
            "--redirect-uri",
            cb,
            "--auth-method",
            "private_key_jwt",
            "--jwks-file",
            missing,
        ],
        &["templates", "add", "--name", "api", "--claims", "not json"],
        &["templates", "add", "--name", "Not A Name!", "--claims", "{}"],
        &["templates", "add", "--name", "api", "--claims", "{}", "--lifetime", "soon"],
        &["templates", "add", "--name", "api", "--claims", "{}", "--hs256-secret-file", missing],
    ] {
        let (code, stderr) = exit_code(dir, args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(!stderr.is_empty(), "{args:?}: no message");
    }
    assert_eq!(exit_code(dir, &["users", "add", "--email", "ada@example.com"]).0, Some(0));
    let (code, stderr) = exit_code(dir, &["users", "add", "--email", "ada@example.com"]);
    assert_eq!(code, Some(1), "an existing account is a failure, not a usage error: {stderr}");
    assert_eq!(exit_code(dir, &["users", "show", "nobody@example.com"]).0, Some(3));
    assert_eq!(
        exit_code(dir, &["clients", "show", "client_01m8nothere0000000000000000"]).0,
        Some(3)
    );
    assert_eq!(exit_code(dir, &["--help"]).0, Some(0));
}

/// The CLI on `backend`'s store: a command's outcome (exit code, stdout, stderr).
struct Cli {
    cwd: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Cli {
    fn new(node: &TestServer, cwd: tempfile::TempDir) -> Self {
        let env = ["LATCHKEY_DATA_DIR", "LATCHKEY_DATABASE_URL"]
            .iter()
            .filter_map(|k| node.env.get(*k).map(|v| ((*k).to_owned(), v.clone())))
            .collect();
        Self { cwd, env }
    }

    fn command(&self) -> std::process::Command {
        let env: Vec<(&str, &str)> =
            self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        latchkey(self.cwd.path(), &env)
    }

    fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = self.command().args(args).output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    }

    fn json(&self, args: &[&str]) -> Value {
        let (code, stdout, stderr) = self.run(&[args, &["--json"]].concat());
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
    }
}

async fn cli_server(backend: Backend) -> Option<(TestServer, Cli)> {
    let db = TestDb::new(backend).await?;
    let cwd = data_dir();
    let node = TestServer::start(&cwd.path().join("latchkey-data"), &db, &[]).await;
    let cli = Cli::new(&node, cwd);
    Some((node, cli))
}

/// `users delete`: the account and its sessions go (the server sees it at once), twice is
/// "not found", and the last instance administrator stays.
async fn the_cli_deletes_users(backend: Backend) {
    let Some((node, cli)) = cli_server(backend).await else { return };
    let pw = "a long passphrase";
    let root = cli.json(&["admin", "create", "--email", "root@example.com"]);
    let ada = cli.json(&["users", "add", "--email", "ada@example.com", "--password", pw]);
    let ada_id = ada["id"].as_str().unwrap();
    let session = cli.json(&["sessions", "create", "--user", ada_id]);
    let secret = session["secret"].as_str().unwrap();
    assert_eq!(node.token_request(secret).await.status(), 200);
    let deleted = cli.json(&["users", "delete", "ada@example.com"]);
    assert_eq!(
        (deleted["id"].as_str(), deleted["primary_email"].as_str()),
        (Some(ada_id), Some("ada@example.com"))
    );
    assert_eq!(node.token_request(secret).await.status(), 401);
    assert_eq!(cli.run(&["users", "show", ada_id]).0, Some(3));
    assert_eq!(cli.run(&["users", "delete", ada_id]).0, Some(3), "twice: not found");
    let events = cli.json(&["audit", "list", "--action", "user.deleted"]);
    assert_eq!(events["data"][0]["data"]["before"]["email"], "ada@example.com", "{events}");
    assert_eq!(events["data"][0]["actor"], "cli");
    let (code, _, stderr) = cli.run(&["users", "delete", root["id"].as_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("last instance administrator"), "{stderr}");
    let (code, stdout, _) = cli.run(&["users", "delete", "--help"]);
    assert!(code == Some(0) && stdout.contains("--json"), "{stdout}");
    node.stop().await;
}
on_both_backends!(the_cli_deletes_users);

/// The long flags a subcommand's `--help` lists.
fn long_flags(cli: &Cli, args: &[&str]) -> std::collections::BTreeSet<String> {
    let (code, help, _) = cli.run(&[args, &["--help"]].concat());
    assert_eq!(code, Some(0));
    help.split_whitespace()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| w.split(['=', ' ', '[', '<', ',']).next().unwrap_or_default().to_owned())
        .filter(|w| !w.is_empty())
        .collect()
}

/// `clients update` takes `clients add`'s flags, replaces lists, checks the result as a
/// registration is checked (a refused change changes nothing) and audits before and after.
async fn the_cli_updates_clients(backend: Backend) {
    let Some((node, cli)) = cli_server(backend).await else { return };
    let add = long_flags(&cli, &["clients", "add"]);
    let update = long_flags(&cli, &["clients", "update"]);
    let missing: Vec<_> = update.difference(&add).collect();
    assert!(missing.is_empty(), "update flags that add does not have: {missing:?}");
    for flag in [
        "redirect-uri",
        "grant-type",
        "scope",
        "access-token-ttl",
        "audience",
        "access-token-template",
        "id-token-template",
    ] {
        assert!(update.contains(flag), "clients update has no --{flag}: {update:?}");
    }
    let cb = "https://app.example.com/cb";
    let client = cli.json(&["clients", "add", "--name", "App", "--redirect-uri", cb]);
    let id = client["client_id"].as_str().unwrap();
    let updated = cli.json(&[
        "clients",
        "update",
        id,
        "--redirect-uri",
        cb,
        "--redirect-uri",
        "https://app.example.com/cb2",
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "client_credentials",
        "--scope",
        "openid",
        "--access-token-ttl",
        "900",
        "--audience",
        "https://api.example.com",
    ]);
    assert_eq!(updated["redirect_uris"].as_array().unwrap().len(), 2, "{updated}");
    assert_eq!(
        updated["grant_types"],
        serde_json::json!(["authorization_code", "client_credentials"])
    );
    assert_eq!(
        (updated["allowed_scopes"].clone(), updated["access_token_ttl_secs"].as_i64()),
        (serde_json::json!(["openid"]), Some(900))
    );
    assert_eq!(updated["audiences"], serde_json::json!(["https://api.example.com"]));
    assert_eq!(updated["name"], "App", "absent flags leave their field");
    // Refused as registration refuses (exit 2), and nothing changes.
    for bad in [
        &["--redirect-uri", "http://evil.example/cb"][..],
        &["--access-token-ttl", "5"],
        &["--audience", "api"],
        &["--access-token-template", "nope"],
    ] {
        let (code, _, stderr) = cli.run(&[&["clients", "update", id][..], bad].concat());
        assert_eq!(code, Some(2), "{bad:?}: {stderr}");
    }
    assert_eq!(cli.json(&["clients", "show", id])["access_token_ttl_secs"], 900);
    // Templates by name; an empty value clears a list or a template.
    cli.json(&["templates", "add", "--name", "api", "--claims", r#"{"role":"x"}"#]);
    let with_template =
        cli.json(&["clients", "update", id, "--access-token-template", "api", "--audience", ""]);
    assert_eq!(with_template["access_token_template"], "api");
    assert_eq!(with_template["audiences"], serde_json::json!([]));
    let cleared = cli.json(&["clients", "update", id, "--access-token-template", ""]);
    assert!(cleared["access_token_template"].is_null(), "{cleared}");
    let events = cli.json(&["audit", "list", "--action", "client.updated", "--target", id]);
    let first = events["data"].as_array().unwrap().last().unwrap();
    assert_eq!(
        first["data"]["changes"]["access_token_ttl_secs"],
        serde_json::json!({ "before": 300, "after": 900 })
    );
    assert_eq!(events["data"].as_array().unwrap().len(), 3, "{events}");
    assert_eq!(
        cli.run(&["clients", "update", "client_01m8nothere0000000000000000", "--name", "x"]).0,
        Some(3)
    );
    // The server sees the change at once (its client cache follows the store's revision).
    let discovery = node.core.clients.get(id).await.unwrap();
    assert_eq!(discovery.redirect_uris.len(), 2);
    node.stop().await;
}
on_both_backends!(the_cli_updates_clients);

/// `orgs invitations list|create|revoke` on the admin API's invitations service, and
/// `sessions list --user` by ID.
async fn the_cli_manages_invitations_and_lists_a_users_sessions(backend: Backend) {
    let Some((node, cli)) = cli_server(backend).await else { return };
    cli.json(&["orgs", "create", "--name", "Acme", "--slug", "acme"]);
    let invited =
        cli.json(&["orgs", "invitations", "create", "acme", "Bob@Example.com", "--role", "admin"]);
    assert_eq!(
        (invited["email"].as_str(), invited["role"].as_str(), invited["status"].as_str()),
        (Some("bob@example.com"), Some("admin"), Some("pending")),
        "{invited}"
    );
    assert!(invited.get("accept_url").is_none(), "the link is the invitee's: {invited}");
    let id = invited["id"].as_str().unwrap();
    let listed = cli.json(&["orgs", "invitations", "list", "acme"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(keys_of(&listed[0]), keys_of(&invited), "one shape");
    let (code, _, stderr) = cli.run(&["orgs", "invitations", "create", "acme", "bob@example.com"]);
    assert_eq!(code, Some(1), "already invited: {stderr}");
    let revoked = cli.json(&["orgs", "invitations", "revoke", "acme", id]);
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(cli.json(&["orgs", "invitations", "list", "acme"]), Value::Array(vec![]));
    assert_ne!(cli.run(&["orgs", "invitations", "revoke", "acme", id]).0, Some(0));
    assert_eq!(cli.run(&["orgs", "invitations", "list", "nope"]).0, Some(3));
    let (code, help, _) = cli.run(&["orgs", "invitations", "--help"]);
    assert!(code == Some(0) && help.contains("revoke"), "{help}");

    let pw = "a long passphrase";
    let ada = cli.json(&["users", "add", "--email", "ada@example.com", "--password", pw]);
    cli.json(&["users", "add", "--email", "eve@example.com", "--password", pw]);
    let ada_id = ada["id"].as_str().unwrap();
    let mine = cli.json(&["sessions", "create", "--user", ada_id]);
    cli.json(&["sessions", "create", "--user", "eve@example.com"]);
    let listed = cli.json(&["sessions", "list", "--user", ada_id]);
    let ids: Vec<&str> =
        listed.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [mine["id"].as_str().unwrap()]);
    node.stop().await;
}
on_both_backends!(the_cli_manages_invitations_and_lists_a_users_sessions);

/// `audit list --follow --json` prints the matching events, then each new one as a JSON line
/// as it is written, until killed.
async fn the_cli_follows_the_audit_log(backend: Backend) {
    use std::io::BufRead as _;
    let Some((node, cli)) = cli_server(backend).await else { return };
    let pw = "a long passphrase";
    cli.json(&["users", "add", "--email", "old@example.com", "--password", pw]);
    let mut child = cli
        .command()
        .args(["audit", "list", "--follow", "--json", "--action", "user.created"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let next = || -> Value {
        let line = rx.recv_timeout(std::time::Duration::from_secs(30)).expect("a line in time");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not one JSON object: {e}: {line}"))
    };
    assert_eq!(next()["data"]["email"], "old@example.com");
    // Events written meanwhile: one that does not match the filter, then one that does.
    let new = node.user("new@example.com").await;
    node.core
        .users
        .deactivate(&new.id, None, &latchkey_core::infra::audit::Actor::cli())
        .await
        .unwrap();
    let later = node.user("later@example.com").await;
    let got = next();
    assert_eq!(
        (got["action"].as_str(), got["target_id"].as_str()),
        (Some("user.created"), Some(new.id.as_str()))
    );
    assert_eq!(next()["target_id"], later.id.as_str());
    assert!(rx.recv_timeout(std::time::Duration::from_millis(2500)).is_err(), "nothing else");
    child.kill().unwrap();
    child.wait().unwrap();
    node.stop().await;
}
on_both_backends!(the_cli_follows_the_audit_log);
