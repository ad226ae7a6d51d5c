//! OpenID Connect provider: the client registry (store on both backends, and the CLI).

use latchkey_core::{
    Error,
    audit::Actor,
    clients::{self, NewClient},
};
use serde_json::Value;

use crate::{
    on_both_backends,
    support::{Backend, TestDb, data_dir, latchkey, open_core},
};

fn confidential(name: &str) -> NewClient {
    NewClient {
        name: name.into(),
        redirect_uris: vec!["https://rp.example.com/cb".into(), "http://127.0.0.1:9/cb".into()],
        post_logout_redirect_uris: vec!["https://rp.example.com/bye".into()],
        ..Default::default()
    }
}

async fn client_registry_stores_hashed_rotating_secrets(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let core = open_core(dir.path(), &db, &[]).await;
    let actor = Actor::cli();

    let created = core.clients.create(confidential("Wiki"), &actor).await.unwrap();
    let id = created.client.client_id.clone();
    let secret = created.client_secret.clone().unwrap();
    assert!(id.starts_with("client_"));
    assert_eq!(created.client.token_endpoint_auth_method, clients::AUTH_SECRET_BASIC);
    assert_eq!(created.client.id_token_alg, "RS256");
    assert!(created.client.require_pkce);
    assert!(!created.client.first_party);
    assert_eq!(created.client.grant_types, ["authorization_code", "refresh_token"]);

    // Exact redirect URI matching: no prefix, case or trailing-slash leniency.
    let client = core.clients.get(&id).await.unwrap();
    assert!(client.has_redirect_uri("https://rp.example.com/cb"));
    for near in
        ["https://rp.example.com/cb/", "https://RP.example.com/cb", "https://rp.example.com/c"]
    {
        assert!(!client.has_redirect_uri(near), "{near}");
    }
    assert!(client.has_post_logout_redirect_uri("https://rp.example.com/bye"));

    // Secrets are stored hashed, never in clear.
    use latchkey_core::entity::oauth_client_secret;
    use sea_orm::EntityTrait;
    let rows = oauth_client_secret::Entity::find().all(core.store.db()).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_ne!(rows[0].secret_hash, secret);
    assert!(core.clients.verify_secret(&id, &secret).await.unwrap());
    assert!(!core.clients.verify_secret(&id, "wrong").await.unwrap());
    assert!(!core.clients.verify_secret(&id, "").await.unwrap());

    // Rotation with overlap: both secrets work; with overlap 0 the old ones stop at once.
    let (_, second) = core.clients.rotate_secret(&id, 3600, &actor).await.unwrap();
    assert!(core.clients.verify_secret(&id, &secret).await.unwrap());
    assert!(core.clients.verify_secret(&id, &second).await.unwrap());
    let (_, third) = core.clients.rotate_secret(&id, 0, &actor).await.unwrap();
    assert!(!core.clients.verify_secret(&id, &secret).await.unwrap());
    assert!(!core.clients.verify_secret(&id, &second).await.unwrap());
    assert!(core.clients.verify_secret(&id, &third).await.unwrap());

    // A secret belongs to its client only.
    let other = core.clients.create(confidential("Other"), &actor).await.unwrap();
    assert!(!core.clients.verify_secret(&other.client.client_id, &third).await.unwrap());

    // Public clients: no secret, auth method none, no client_credentials.
    let public = core
        .clients
        .create(NewClient { public: true, first_party: true, ..confidential("SPA") }, &actor)
        .await
        .unwrap();
    assert!(public.client_secret.is_none());
    assert_eq!(public.client.token_endpoint_auth_method, clients::AUTH_NONE);
    assert!(core.clients.rotate_secret(&public.client.client_id, 0, &actor).await.is_err());
    let bad = NewClient {
        public: true,
        grant_types: vec!["client_credentials".into()],
        ..confidential("M2M")
    };
    assert!(matches!(core.clients.create(bad, &actor).await, Err(Error::Invalid { .. })));

    // Unsafe registrations are refused.
    for uri in ["http://rp.example.com/cb", "https://rp.example.com/cb#x", "/cb"] {
        let bad = NewClient { redirect_uris: vec![uri.into()], ..confidential("Bad") };
        assert!(
            matches!(core.clients.create(bad, &actor).await, Err(Error::Invalid { .. })),
            "{uri}"
        );
    }
    let no_uri = NewClient { redirect_uris: vec![], ..confidential("Bad") };
    assert!(core.clients.create(no_uri, &actor).await.is_err());
    let bad_jwt = NewClient {
        token_endpoint_auth_method: Some("private_key_jwt".into()),
        ..confidential("Bad")
    };
    assert!(core.clients.create(bad_jwt, &actor).await.is_err());

    assert_eq!(core.clients.list().await.unwrap().len(), 3);
    core.clients.delete(&id, &actor).await.unwrap();
    assert!(core.clients.find(&id).await.unwrap().is_none());
    assert!(!core.clients.verify_secret(&id, &third).await.unwrap());
    assert!(matches!(core.clients.delete(&id, &actor).await, Err(Error::NotFound(_))));
    assert!(core.clients.find("client_../x").await.unwrap().is_none());
    core.store.close().await;
}
on_both_backends!(client_registry_stores_hashed_rotating_secrets);

fn run_json(cwd: &std::path::Path, args: &[&str]) -> Value {
    let out = latchkey(cwd, &[]).args(args).arg("--json").output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_clients() {
    let cwd = data_dir();
    let dir = cwd.path();

    let added = run_json(
        dir,
        &[
            "clients",
            "add",
            "--name",
            "Wiki",
            "--redirect-uri",
            "https://wiki.example.com/cb",
            "--redirect-uri",
            "http://127.0.0.1:8080/cb",
            "--post-logout-redirect-uri",
            "https://wiki.example.com/",
            "--backchannel-logout-uri",
            "https://wiki.example.com/bcl",
        ],
    );
    let id = added["client_id"].as_str().unwrap().to_owned();
    let secret = added["client_secret"].as_str().unwrap().to_owned();
    assert!(id.starts_with("client_"));
    assert_eq!(secret.len(), 43);
    assert_eq!(added["client_type"], "confidential");
    assert_eq!(added["redirect_uris"].as_array().unwrap().len(), 2);
    assert_eq!(added["backchannel_logout_uri"], "https://wiki.example.com/bcl");

    let public = run_json(
        dir,
        &[
            "clients",
            "add",
            "--name",
            "SPA",
            "--redirect-uri",
            "https://spa.example.com/cb",
            "--public",
            "--first-party",
        ],
    );
    assert!(public.get("client_secret").is_none());
    assert_eq!(public["client_type"], "public");
    assert_eq!(public["first_party"], true);
    assert_eq!(public["token_endpoint_auth_method"], "none");

    // The secret is shown once: never by list or show.
    let listed = run_json(dir, &["clients", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains(&secret));
    let shown = run_json(dir, &["clients", "show", &id]);
    assert_eq!(shown["name"], "Wiki");
    assert!(!shown.to_string().contains(&secret));

    let rotated = run_json(dir, &["clients", "rotate-secret", &id, "--overlap", "0"]);
    assert_eq!(rotated["client_id"], id.as_str());
    assert_ne!(rotated["client_secret"], secret.as_str());

    let plain = latchkey(dir, &[]).args(["clients", "list"]).output().unwrap();
    assert!(plain.status.success());
    assert!(String::from_utf8_lossy(&plain.stdout).contains("Wiki"));

    let bad = latchkey(dir, &[])
        .args(["clients", "add", "--name", "Bad", "--redirect-uri", "http://evil.example/cb"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    for sub in ["add", "list", "show", "rotate-secret", "delete"] {
        let help = latchkey(dir, &[]).args(["clients", sub, "--help"]).output().unwrap();
        assert!(help.status.success(), "{sub}");
        assert!(String::from_utf8_lossy(&help.stdout).contains("--json"), "{sub}");
    }

    assert_eq!(run_json(dir, &["clients", "delete", &id])["deleted"], id.as_str());
    let missing = latchkey(dir, &[]).args(["clients", "show", &id]).output().unwrap();
    assert_eq!(missing.status.code(), Some(3));
    assert_eq!(run_json(dir, &["clients", "list"]).as_array().unwrap().len(), 1);
}
