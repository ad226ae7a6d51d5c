//! Signing keys: rotation keeps old tokens verifiable until they expire; every algorithm works.

use std::time::Duration;

use latchkey_core::{infra::audit::Actor, infra::jose::SigningAlg};

use latchkey_core::oauth::{clients::NewClient, jwt_templates::NewTemplate};
use serde_json::{Value, json};

use crate::{
    oidc::flows::{CHALLENGE, REDIRECT, VERIFIER, authorize, introspect, token},
    on_both_backends,
    pages::Browser,
    support::{Backend, TestDb, TestServer, client, data_dir, open_core, verify},
};

/// How long a retired key stays published with the default settings: the longest-lived token
/// an instance key signs (a JWT-template token, up to 24 h) plus `LATCHKEY_CLOCK_SKEW`.
const RETENTION: Duration = Duration::from_secs(24 * 3600 + 60);

async fn rotation_keeps_old_tokens_verifiable_until_expiry(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[("LATCHKEY_SESSION_TOKEN_TTL", "3s")]).await;
    let ada = node.user("ada@example.com").await;
    let (_, secret) = node.session(&ada).await;

    let old_token = node.token(&secret).await;
    let old_kid = jsonwebtoken::decode_header(&old_token).unwrap().kid.unwrap();

    let cli = node.second_core().await;
    let (new_key, retired) = cli.keys.rotate(SigningAlg::ES256, &Actor::cli()).await.unwrap();
    let retired = retired.unwrap();
    assert_eq!(retired.kid, old_kid);
    assert_eq!(retired.publish_until, retired.retired_at.map(|t| t + RETENTION.as_secs() as i64));

    // The server switches to the new key at once, and both keys are published.
    let new_token = node.token(&secret).await;
    assert_eq!(jsonwebtoken::decode_header(&new_token).unwrap().kid.unwrap(), new_key.kid);
    let jwks = node.jwks().await;
    assert!(jwks.find(&old_kid).is_some() && jwks.find(&new_key.kid).is_some());
    verify(&old_token, &jwks, &node.base_url).expect("old token still verifies");
    verify(&new_token, &jwks, &node.base_url).expect("new token verifies");

    // Long after this short session token expired, the key stays: other tokens it signed
    // (access, ID and template tokens) can live much longer.
    node.clock.advance(Duration::from_secs(600));
    assert!(node.jwks().await.find(&old_kid).is_some(), "retired key left too early");

    // Once anything the old key can have signed has expired, the key leaves the JWKS.
    node.clock.advance(RETENTION - Duration::from_secs(600) + Duration::from_secs(1));
    let jwks = node.jwks().await;
    assert!(jwks.find(&old_kid).is_none(), "retired key still published");
    assert!(jwks.find(&new_key.kid).is_some());
    let err = verify(&old_token, &jwks, &node.base_url).unwrap_err();
    assert!(matches!(err.kind(), jsonwebtoken::errors::ErrorKind::InvalidKeyFormat), "{err:?}");
    let listed = cli.keys.list().await.unwrap();
    assert!(listed.iter().any(|k| k.kid == old_kid && k.status == "retired" && !k.published));
    node.stop().await;
}
on_both_backends!(rotation_keeps_old_tokens_verifiable_until_expiry);

/// Each supported algorithm signs session tokens that an independent library verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_mints_verifiable_tokens() {
    for (alg, expected) in [
        ("ES256", jsonwebtoken::Algorithm::ES256),
        ("RS256", jsonwebtoken::Algorithm::RS256),
        ("EdDSA", jsonwebtoken::Algorithm::EdDSA),
    ] {
        let db = TestDb::new(Backend::Sqlite).await.unwrap();
        let dir = data_dir();
        let node = TestServer::start(dir.path(), &db, &[("LATCHKEY_SESSION_TOKEN_ALG", alg)]).await;
        let ada = node.user("ada@example.com").await;
        let (_, secret) = node.session(&ada).await;
        let token = node.token(&secret).await;
        assert_eq!(jsonwebtoken::decode_header(&token).unwrap().alg, expected);
        let claims = verify(&token, &node.jwks().await, &node.base_url)
            .unwrap_or_else(|e| panic!("{alg}: {e:?}"));
        assert_eq!(claims["sub"], ada.id);
        // The private key is sealed at rest: the stored row holds no PEM.
        let keys = {
            use sea_orm::EntityTrait;
            latchkey_core::infra::entity::signing_key::Entity::find()
                .all(node.core.store.db())
                .await
                .unwrap()
        };
        assert!(
            keys.iter().all(|k| k.private_key_enc.starts_with("v1.")
                && !k.private_key_enc.contains("PRIVATE KEY"))
        );
        node.stop().await;
    }
}

/// Several nodes started at the same moment on an empty database (each migrating, then making
/// sure a signing key exists, and asking for the RS256 key as discovery does) end up with one
/// active key per algorithm, and every node signs with it.
async fn nodes_started_together_share_one_active_key(backend: Backend) {
    use latchkey_core::infra::entity::signing_key;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    const NODES: usize = 4;
    let nodes = futures_util::future::join_all((0..NODES).map(|_| async {
        let core = open_core(dir.path(), &db, &[]).await;
        core.keys.ensure_active(SigningAlg::RS256).await.unwrap();
        core
    }))
    .await;
    let active = signing_key::Entity::find()
        .filter(signing_key::Column::Status.eq("active"))
        .all(nodes[0].store.db())
        .await
        .unwrap();
    let mut algs: Vec<&str> = active.iter().map(|k| k.alg.as_str()).collect();
    algs.sort();
    let kids: Vec<(&str, &str)> = active.iter().map(|k| (k.alg.as_str(), k.kid.as_str())).collect();
    assert_eq!(algs, ["ES256", "RS256"], "one active key per algorithm: {kids:?}");
    for alg in [SigningAlg::ES256, SigningAlg::RS256] {
        let kid = &active.iter().find(|k| k.alg == alg.as_str()).unwrap().kid;
        for node in &nodes {
            assert_eq!(&node.keys.current_signer(alg).await.unwrap().kid, kid, "{alg:?}");
        }
    }
}
on_both_backends!(nodes_started_together_share_one_active_key);

/// An OpenID Connect access token issued just before a rotation keeps working at Latchkey's own
/// userinfo and introspection endpoints until its own expiry, well past the retention of the
/// session tokens alone (60 s TTL + 60 s skew here); so does its key in the JWKS.
async fn access_tokens_outlive_a_rotation_until_their_expiry(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    node.user("ada@example.com").await;
    const TTL: u64 = 900;
    let created = node
        .core
        .clients
        .create(
            NewClient {
                name: "Wiki".into(),
                redirect_uris: vec![REDIRECT.into()],
                first_party: true,
                access_token_ttl_secs: Some(TTL as i64),
                ..Default::default()
            },
            &Actor::cli(),
        )
        .await
        .unwrap();
    let (id, secret) = (created.client.client_id, created.client_secret.unwrap());
    let browser = Browser::new(&node.base_url);
    let auth = format!(
        "/oauth2/authorize?response_type=code&client_id={id}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&scope=openid+email&state=st&nonce=n&code_challenge={CHALLENGE}&code_challenge_method=S256"
    );
    let q = authorize(&browser, &node.url(&auth), "ada@example.com").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", q["code"].as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let (status, body) = token(&node, Some((&id, &secret)), &form).await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().unwrap().to_owned();
    let header = jsonwebtoken::decode_header(&access).unwrap();
    let old_kid = header.kid.unwrap();
    let alg = SigningAlg::parse(&format!("{:?}", header.alg)).unwrap();
    let (new_key, _) = node.core.keys.rotate(alg, &Actor::cli()).await.unwrap();
    assert_ne!(new_key.kid, old_kid);

    let userinfo = || async {
        client().get(node.url("/oauth2/userinfo")).bearer_auth(&access).send().await.unwrap()
    };
    // Past the old 120 s retention, and again just before the token's expiry: still valid.
    let mut moved = 0;
    for at in [300, TTL - 5] {
        node.clock.advance(Duration::from_secs(at - moved));
        moved = at;
        let res = userinfo().await;
        assert_eq!(res.status(), 200, "{at} s after the rotation");
        assert_eq!(res.json::<Value>().await.unwrap()["email"], "ada@example.com");
        let intro = introspect(&node, &id, &secret, &access).await;
        assert_eq!(intro["active"], true, "{at} s after the rotation: {intro}");
        assert!(node.jwks().await.find(&old_kid).is_some(), "{at} s after the rotation");
    }
    // Past its own expiry it stops, because it expired, not because its key went.
    node.clock.advance(Duration::from_secs(10));
    assert_eq!(userinfo().await.status(), 401);
    assert_eq!(introspect(&node, &id, &secret, &access).await, json!({ "active": false }));
    assert!(node.jwks().await.find(&old_kid).is_some());
    node.stop().await;
}
on_both_backends!(access_tokens_outlive_a_rotation_until_their_expiry);

/// A JWT-template token signed with an instance key verifies against the JWKS until it
/// expires, even when the key was rotated right after it was minted.
async fn template_tokens_keep_their_key_published_until_they_expire(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let ada = node.user("ada@example.com").await;
    let (_, secret) = node.session(&ada).await;
    const LIFETIME: u64 = 6 * 3600;
    node.core
        .jwt_templates
        .create(
            NewTemplate {
                name: "api".into(),
                claims: json!({ "role": "authenticated" }),
                lifetime_secs: Some(LIFETIME as i64),
                ..Default::default()
            },
            &Actor::cli(),
        )
        .await
        .unwrap();
    let res = client()
        .post(node.url("/v1/session/token/api"))
        .header("Cookie", format!("latchkey_session={secret}"))
        .header("Origin", node.base_url.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let jwt = res.json::<Value>().await.unwrap()["jwt"].as_str().unwrap().to_owned();
    let old_kid = jsonwebtoken::decode_header(&jwt).unwrap().kid.unwrap();
    node.core.keys.rotate(SigningAlg::ES256, &Actor::cli()).await.unwrap();

    // Just before the token expires, its key is still published and the token verifies.
    node.clock.advance(Duration::from_secs(LIFETIME - 5));
    let jwks = node.jwks().await;
    assert!(jwks.find(&old_kid).is_some(), "the template token's key left the JWKS");
    let claims = verify(&jwt, &jwks, &node.base_url).expect("an unexpired template token verifies");
    assert_eq!(claims["role"], "authenticated");
    node.stop().await;
}
on_both_backends!(template_tokens_keep_their_key_published_until_they_expire);

/// A store where nodes raced before the unique `active_alg` existed holds two active keys for
/// one algorithm: the migration keeps the newest active and retires the other, still published.
async fn the_migration_retires_duplicate_active_keys(backend: Backend) {
    use latchkey_core::infra::entity::signing_key;
    use sea_orm::{ConnectionTrait, EntityTrait};

    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let core = open_core(dir.path(), &db, &[]).await;
    let kept = core.keys.ensure_active(SigningAlg::ES256).await.unwrap().kid;
    let conn = core.store.db();
    // Back to the schema before the migration, with an older second active key beside the
    // first (a copy: only its public half is ever used here).
    for sql in [
        "DROP INDEX idx_signing_keys_active_alg",
        "ALTER TABLE signing_keys DROP COLUMN active_alg",
        "DELETE FROM seaql_migrations WHERE version = 'm20261206_000011_one_active_signing_key'",
        "INSERT INTO signing_keys (kid, alg, private_key_enc, public_jwk, status, created_at) \
         SELECT 'key_older', alg, private_key_enc, public_jwk, status, created_at - 10 \
         FROM signing_keys WHERE alg = 'ES256'",
    ] {
        conn.execute_unprepared(sql).await.unwrap();
    }
    core.store.clone().close().await;
    drop(core);

    let core = open_core(dir.path(), &db, &[]).await;
    let rows = signing_key::Entity::find().all(core.store.db()).await.unwrap();
    let row = |kid: &str| rows.iter().find(|k| k.kid == kid).unwrap().clone();
    let (kept_row, older) = (row(&kept), row("key_older"));
    assert_eq!(
        (kept_row.status.as_str(), kept_row.active_alg.as_deref()),
        ("active", Some("ES256"))
    );
    assert_eq!((older.status.as_str(), older.active_alg.as_deref()), ("retired", None));
    let now = core.clock.now();
    assert!(older.publish_until.unwrap() >= now + 24 * 3600, "{older:?}");
    assert_eq!(core.keys.current_signer(SigningAlg::ES256).await.unwrap().kid, kept);
    let listed = core.keys.list().await.unwrap();
    assert!(listed.iter().any(|k| k.kid == "key_older" && k.published));
}
on_both_backends!(the_migration_retires_duplicate_active_keys);
