//! The CLI against a running server on the same SQLite data directory.

use serde_json::Value;

use crate::support::{Backend, TestDb, TestServer, data_dir, latchkey};

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
    assert_eq!(added["user"]["primary_email"], "grace@example.com");
    let user_id = added["user"]["id"].as_str().unwrap().to_owned();
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
    assert_eq!(shown["user"]["id"], user_id);
    assert_eq!(shown["user"]["name"], "Grace Hopper");
    assert_eq!(shown["sign_in_lockout"]["failures"], 0);
    assert!(shown["sign_in_lockout"]["locked_until"].is_null());
    assert_eq!(
        run_json(dir, &["users", "unlock", "grace@example.com"])["unlocked"],
        user_id.as_str()
    );
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

    let sid1 = s1["session"]["id"].as_str().unwrap();
    let revoked = run_json(dir, &["sessions", "revoke", sid1]);
    assert_eq!(revoked["revoked"], serde_json::json!([sid1]));
    assert_eq!(node.token_request(secret1).await.status(), 401);
    assert_eq!(node.token_request(secret2).await.status(), 200);

    let revoked = run_json(dir, &["sessions", "revoke", "--user", "grace@example.com"]);
    assert_eq!(revoked["revoked"].as_array().unwrap().len(), 1);
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
    let new_kid = rotated["active"]["kid"].as_str().unwrap();
    assert_eq!(rotated["retired"]["kid"], keys[0]["kid"]);
    let jwks = node.jwks().await;
    assert!(jwks.find(new_kid).is_some());
    assert!(jwks.find(keys[0]["kid"].as_str().unwrap()).is_some());
    let rotated_rs = run_json(dir, &["keys", "rotate", "--alg", "RS256"]);
    assert_eq!(rotated_rs["active"]["alg"], "RS256");
    let bad = latchkey(dir, &[]).args(["keys", "rotate", "--alg", "HS256"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));

    node.stop().await;

    // Migrations are idempotent and can run against an existing store.
    let out = latchkey(dir, &[]).arg("migrate").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(run_json(dir, &["users", "list"]).as_array().unwrap().len(), 1);
}
