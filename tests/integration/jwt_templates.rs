//! JWT templates: rendering through `POST /v1/session/token/{template}`, instance-key and HS256
//! signing checked with `jsonwebtoken`, session and template errors, and the CLI.

use latchkey_core::{
    Error, infra::audit::Actor, infra::entity::user, oauth::jwt_templates::NewTemplate,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    support::{Backend, TestDb, TestServer, client, data_dir, latchkey, verify},
};

const SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters-long";

async fn templated(node: &TestServer, secret: &str, name: &str) -> reqwest::Response {
    client()
        .post(node.url(&format!("/v1/session/token/{name}")))
        .header("Cookie", format!("latchkey_session={secret}"))
        .header("Origin", node.base_url.clone())
        .send()
        .await
        .unwrap()
}

fn verify_hs256(jwt: &str, secret: &[u8], issuer: &str) -> Value {
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::HS256);
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_issuer(&[issuer]);
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "iss", "sub", "nbf", "iat"]);
    jsonwebtoken::decode::<Value>(jwt, &jsonwebtoken::DecodingKey::from_secret(secret), &validation)
        .unwrap()
        .claims
}

async fn templates_render_sign_and_fail_closed(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let actor = Actor::cli();
    let ada = node.user("ada@example.com").await;
    user::Entity::update_many()
        .col_expr(user::Column::PublicMetadata, Expr::value(r#"{"plan":"pro","seats":3}"#))
        .filter(user::Column::Id.eq(&ada.id))
        .exec(node.core.store.db())
        .await
        .unwrap();
    let (org, membership) =
        node.core.orgs.create_for_user("Acme", "acme", &ada.id, &actor).await.unwrap();
    let (sid, secret) = node.session(&ada).await;
    node.core.sessions.set_active_org(&sid, Some(&org.id), &actor).await.unwrap();

    let claims = json!({
        "role": "authenticated",
        "email": "{{user.primary_email}}",
        "meta": "{{user.public_metadata}}",
        "verified": "{{user.email_verified}}",
        "about": "{{user.primary_email}} in {{org.slug}} as {{org.role}}",
        "org": {"id": "{{org.id}}", "name": "{{org.name}}"},
        "aud": "authenticated",
    });
    let supabase = node
        .core
        .jwt_templates
        .create(
            NewTemplate {
                name: "supabase".into(),
                claims: claims.clone(),
                hs256_secret: Some(SECRET.as_bytes().to_vec()),
                lifetime_secs: Some(3600),
            },
            &actor,
        )
        .await
        .unwrap();
    assert_eq!(supabase.signing, "HS256");
    node.core
        .jwt_templates
        .create(
            NewTemplate { name: "api".into(), claims: claims.clone(), ..Default::default() },
            &actor,
        )
        .await
        .unwrap();

    // HS256: verifies with the template's secret; rendered values keep their JSON types.
    let res = templated(&node, &secret, "supabase").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    let jwt = body["jwt"].as_str().unwrap();
    let c = verify_hs256(jwt, SECRET.as_bytes(), &node.base_url);
    assert_eq!(c["role"], "authenticated");
    assert_eq!(c["email"], "ada@example.com");
    assert_eq!(c["meta"], json!({"plan": "pro", "seats": 3}));
    assert_eq!(c["verified"], false);
    assert_eq!(c["about"], format!("ada@example.com in acme as {}", membership.role));
    assert_eq!(c["org"], json!({"id": org.id, "name": "Acme"}));
    assert_eq!(c["aud"], "authenticated");
    assert_eq!(c["sub"], ada.id.as_str());
    assert_eq!(c["sid"], sid.as_str());
    assert_eq!(c["azp"], node.base_url.as_str());
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 3600);
    assert_eq!(body["expires_at"], c["exp"]);
    // Another secret does not verify it.
    let wrong = jsonwebtoken::decode::<Value>(
        jwt,
        &jsonwebtoken::DecodingKey::from_secret(b"another-secret-another-secret-another"),
        &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256),
    );
    assert!(wrong.is_err());

    // Instance key: verifies against the JWKS with the default 60 s lifetime.
    let res = templated(&node, &secret, "api").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let jwt = body["jwt"].as_str().unwrap();
    assert!(jsonwebtoken::decode_header(jwt).unwrap().kid.is_some());
    let c = verify(jwt, &node.jwks().await, &node.base_url).expect("verifies with the JWKS");
    assert_eq!(c["email"], "ada@example.com");
    assert_eq!(c["sub"], ada.id.as_str());
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 60);

    // Creation refuses unknown placeholders, reserved claims, bad names, weak secrets, duplicates.
    for (name, claims, secret, field) in [
        ("x", json!({"a": "{{user.password_hash}}"}), None, "claims"),
        ("x", json!({"sub": "someone"}), None, "claims"),
        ("x", json!({"a": "{{user.id"}), None, "claims"),
        ("Bad Name", json!({}), None, "name"),
        ("x", json!({}), Some(b"short".to_vec()), "hs256_secret"),
    ] {
        let err = node
            .core
            .jwt_templates
            .create(
                NewTemplate {
                    name: name.into(),
                    claims,
                    hs256_secret: secret,
                    lifetime_secs: None,
                },
                &actor,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Invalid { field: f, .. } if f == field), "{err}");
    }
    let dup = node
        .core
        .jwt_templates
        .create(NewTemplate { name: "api".into(), claims: json!({}), ..Default::default() }, &actor)
        .await
        .unwrap_err();
    assert!(matches!(dup, Error::Conflict(_)), "{dup}");

    // Unknown template: 404. No session, or a foreign Origin: refused before any template work.
    assert_eq!(templated(&node, &secret, "nope").await.status(), 404);
    assert_eq!(templated(&node, "not-a-session", "api").await.status(), 401);
    let res = client()
        .post(node.url("/v1/session/token/api"))
        .header("Cookie", format!("latchkey_session={secret}"))
        .header("Origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    // A revoked session gets 401 at once, for every template.
    assert!(node.core.sessions.revoke(&sid, "test", &actor).await.unwrap());
    assert_eq!(templated(&node, &secret, "api").await.status(), 401);
    assert_eq!(templated(&node, &secret, "supabase").await.status(), 401);
    node.stop().await;
}
on_both_backends!(templates_render_sign_and_fail_closed);

fn run_json(cwd: &std::path::Path, args: &[&str]) -> Value {
    let data = cwd.display().to_string();
    let out =
        latchkey(cwd, &[("LATCHKEY_DATA_DIR", &data)]).args(args).arg("--json").output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_templates() {
    let cwd = data_dir();
    let dir = cwd.path();
    let data = dir.display().to_string();
    let secret_file = dir.join("hs256.secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();

    let added = run_json(
        dir,
        &[
            "templates",
            "add",
            "--name",
            "supabase",
            "--claims",
            r#"{"role": "authenticated", "email": "{{user.primary_email}}"}"#,
            "--hs256-secret-file",
            secret_file.to_str().unwrap(),
            "--lifetime",
            "5m",
        ],
    );
    assert_eq!(added["name"], "supabase");
    assert_eq!(added["signing"], "HS256");
    assert_eq!(added["lifetime_secs"], 300);
    assert!(!added.to_string().contains(SECRET), "the secret is never shown");
    let plain = run_json(dir, &["templates", "add", "--name", "plain", "--claims", "{}"]);
    assert_eq!(plain["signing"], "instance");
    assert_eq!(plain["lifetime_secs"], 60);

    let listed = run_json(dir, &["templates", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains(SECRET));
    let shown = run_json(dir, &["templates", "show", "supabase"]);
    assert_eq!(shown["claims"]["email"], "{{user.primary_email}}");
    let text = latchkey(dir, &[("LATCHKEY_DATA_DIR", &data)])
        .args(["templates", "list"])
        .output()
        .unwrap();
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).contains("supabase"));

    let bad = latchkey(dir, &[("LATCHKEY_DATA_DIR", &data)])
        .args(["templates", "add", "--name", "bad", "--claims", r#"{"x": "{{user.nope}}"}"#])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown placeholder"));
    for sub in ["add", "list", "show", "delete"] {
        let help = latchkey(dir, &[]).args(["templates", sub, "--help"]).output().unwrap();
        assert!(help.status.success(), "{sub}");
        assert!(String::from_utf8_lossy(&help.stdout).contains("--json"), "{sub}");
    }

    // The template the CLI stored serves tokens that verify with the secret from the file.
    let db = TestDb { url: None };
    let node = TestServer::start(dir, &db, &[]).await;
    let ada = node.user("ada@example.com").await;
    let (_, session) = node.session(&ada).await;
    let res = templated(&node, &session, "supabase").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let c = verify_hs256(body["jwt"].as_str().unwrap(), SECRET.as_bytes(), &node.base_url);
    assert_eq!(c["email"], "ada@example.com");
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 300);
    node.stop().await;

    assert_eq!(run_json(dir, &["templates", "delete", "supabase"])["name"], "supabase");
    let missing = latchkey(dir, &[("LATCHKEY_DATA_DIR", &data)])
        .args(["templates", "show", "supabase"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(3));
}
