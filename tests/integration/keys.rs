//! Signing keys: rotation keeps old tokens verifiable until they expire; every algorithm works.

use std::time::Duration;

use latchkey_core::{infra::audit::Actor, infra::jose::SigningAlg};

use crate::{
    on_both_backends,
    support::{Backend, TestDb, TestServer, data_dir, verify},
};

async fn rotation_keeps_old_tokens_verifiable_until_expiry(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(
        dir.path(),
        &db,
        &[("LATCHKEY_SESSION_TOKEN_TTL", "3s"), ("LATCHKEY_CLOCK_SKEW", "0s")],
    )
    .await;
    let ada = node.user("ada@example.com").await;
    let (_, secret) = node.session(&ada).await;

    let old_token = node.token(&secret).await;
    let old_kid = jsonwebtoken::decode_header(&old_token).unwrap().kid.unwrap();

    let cli = node.second_core().await;
    let (new_key, retired) = cli.keys.rotate(SigningAlg::ES256, &Actor::cli()).await.unwrap();
    assert_eq!(retired.unwrap().kid, old_kid);

    // The server switches to the new key at once, and both keys are published.
    let new_token = node.token(&secret).await;
    assert_eq!(jsonwebtoken::decode_header(&new_token).unwrap().kid.unwrap(), new_key.kid);
    let jwks = node.jwks().await;
    assert!(jwks.find(&old_kid).is_some() && jwks.find(&new_key.kid).is_some());
    verify(&old_token, &jwks, &node.base_url).expect("old token still verifies");
    verify(&new_token, &jwks, &node.base_url).expect("new token verifies");

    // Once every token signed by the old key has expired, the key leaves the JWKS.
    node.clock.advance(Duration::from_secs(5));
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
