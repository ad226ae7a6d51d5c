//! The hybrid session model: session → short-lived JWT → revoke → 401, on every node.

use latchkey_core::infra::audit::Actor;
use serde_json::Value;

use crate::{
    on_both_backends,
    support::{Backend, TestDb, TestServer, client, data_dir, verify},
};

async fn token_is_verifiable_and_revocation_is_immediate(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node_a = TestServer::start(dir.path(), &db, &[]).await;
    let ada = node_a.user("ada@example.com").await;
    let (sid, secret) = node_a.session(&ada).await;

    let res = node_a.token_request(&secret).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    let jwt = body["jwt"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    let claims = verify(jwt, &node_a.jwks().await, &node_a.base_url)
        .expect("token verifies against the JWKS");
    assert_eq!(claims["sub"], ada.id);
    assert_eq!(claims["sid"], sid);
    assert_eq!(claims["iss"], node_a.base_url);
    assert_eq!(claims["azp"], node_a.base_url);
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 60);
    assert_eq!(claims["nbf"], claims["iat"]);
    assert!(claims.get("org_id").is_none());
    assert_eq!(body["expires_at"], claims["exp"]);

    // A tampered token fails verification.
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    parts[1] = base64_url(&serde_json::to_vec(&serde_json::json!({"sub": "usr_someone_else", "iss": node_a.base_url, "exp": 4102444800i64, "nbf": 0, "iat": 0})).unwrap());
    assert!(verify(&parts.join("."), &node_a.jwks().await, &node_a.base_url).is_err());

    // A second node on the same store serves the same session, then sees the revocation
    // made through a third handle (the CLI's view) on its very next request.
    let node_b = TestServer::start(dir.path(), &db, &[]).await;
    assert_eq!(node_b.token_request(&secret).await.status(), 200);
    let cli = node_a.second_core().await;
    assert!(cli.sessions.revoke(&sid, "revoked_by_admin", &Actor::cli()).await.unwrap());
    for node in [&node_a, &node_b] {
        let res = node.token_request(&secret).await;
        assert_eq!(res.status(), 401);
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["error"], "invalid_session");
    }
    assert_eq!(cli.sessions.get(&sid).await.unwrap().status.as_str(), "revoked");
    // Revoking twice is a no-op, not an error.
    assert!(!cli.sessions.revoke(&sid, "again", &Actor::cli()).await.unwrap());

    // Unknown and malformed secrets are refused the same way.
    for bad in
        ["", "nope", "x".repeat(300).as_str(), "a b", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]
    {
        let res = node_b.token_request(bad).await;
        assert_eq!(res.status(), 401, "secret {bad:?}");
    }
    node_b.stop().await;
    node_a.stop().await;
}
on_both_backends!(token_is_verifiable_and_revocation_is_immediate);

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn deactivated_and_banned_users_get_no_token(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let other = node.second_core().await;

    let ada = node.user("ada@example.com").await;
    let (ada_sid, ada_secret) = node.session(&ada).await;
    node.token(&ada_secret).await;
    other.users.deactivate(&ada.id, Some("left the company".into()), &Actor::cli()).await.unwrap();
    assert_eq!(node.token_request(&ada_secret).await.status(), 401);
    assert_eq!(node.core.sessions.get(&ada_sid).await.unwrap().status.as_str(), "revoked");
    // Reactivation does not revive old sessions, and no new one starts while deactivated.
    other.users.reactivate(&ada.id, &Actor::cli()).await.unwrap();
    assert_eq!(node.token_request(&ada_secret).await.status(), 401);

    let bob = node.user("bob@example.com").await;
    let (_, bob_secret) = node.session(&bob).await;
    node.token(&bob_secret).await;
    other.users.ban(&bob.id, None, &Actor::cli()).await.unwrap();
    assert_eq!(node.token_request(&bob_secret).await.status(), 401);
    assert!(node.core.sessions.create(&bob.id, Default::default(), &Actor::cli()).await.is_err());

    // The audit trail has the deactivation.
    let events = latchkey_core::infra::audit::recent(node.core.store.db(), 50).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.action == "user.deactivated"
                && e.target_id.as_deref() == Some(ada.id.as_str()))
    );
    assert!(events.iter().any(|e| e.action == "session.created"));
    node.stop().await;
}
on_both_backends!(deactivated_and_banned_users_get_no_token);

async fn active_organisation_appears_in_the_token(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let ada = node.user("ada@example.com").await;
    let (sid, secret) = node.session(&ada).await;
    let acme = node.core.orgs.create("Acme Corp", "acme", &Actor::cli()).await.unwrap();

    // Not a member yet: switching is refused.
    assert!(node.core.sessions.set_active_org(&sid, Some(&acme.id), &Actor::cli()).await.is_err());
    node.core.orgs.set_membership(&acme.id, &ada.id, "admin", &Actor::cli()).await.unwrap();
    node.core.sessions.set_active_org(&sid, Some(&acme.id), &Actor::cli()).await.unwrap();
    let claims = verify(&node.token(&secret).await, &node.jwks().await, &node.base_url).unwrap();
    assert_eq!(claims["org_id"], acme.id);
    assert_eq!(claims["org_role"], "admin");
    assert_eq!(claims["org_slug"], "acme");

    // A role change made elsewhere shows in the next token. (Another admin first: the last
    // admin cannot be demoted.)
    let bob = node.user("bob@example.com").await;
    node.core.orgs.set_membership(&acme.id, &bob.id, "admin", &Actor::cli()).await.unwrap();
    let other = node.second_core().await;
    other.orgs.set_membership(&acme.id, &ada.id, "member", &Actor::cli()).await.unwrap();
    let claims = verify(&node.token(&secret).await, &node.jwks().await, &node.base_url).unwrap();
    assert_eq!(claims["org_role"], "member");

    node.core.sessions.set_active_org(&sid, None, &Actor::cli()).await.unwrap();
    let claims = verify(&node.token(&secret).await, &node.jwks().await, &node.base_url).unwrap();
    assert!(claims.get("org_id").is_none());
    node.stop().await;
}
on_both_backends!(active_organisation_appears_in_the_token);

async fn expired_and_idle_sessions_get_no_token(backend: Backend) {
    use latchkey_core::infra::entity::session;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};

    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let ada = node.user("ada@example.com").await;
    let (idle_sid, idle_secret) = node.session(&ada).await;
    let (old_sid, old_secret) = node.session(&ada).await;
    let (live_sid, live_secret) = node.session(&ada).await;
    for s in [&idle_secret, &old_secret, &live_secret] {
        node.token(s).await;
    }
    // Write the activity those requests recorded; otherwise it would (rightly) count as fresher
    // than the past we are about to write into the rows.
    node.core.session_tokens.flush_activity().await.unwrap();
    let now = crate::support::unix_now();
    let other = node.second_core().await;
    // Move the clock of two sessions into the past, as if time had passed.
    session::Entity::update_many()
        .col_expr(session::Column::LastActiveAt, Expr::value(now - 8 * 86400))
        .col_expr(session::Column::IdleExpiresAt, Expr::value(now - 86400))
        .filter(session::Column::Id.eq(idle_sid.as_str()))
        .exec(other.store.db())
        .await
        .unwrap();
    session::Entity::update_many()
        .col_expr(session::Column::ExpiresAt, Expr::value(now - 1))
        .filter(session::Column::Id.eq(old_sid.as_str()))
        .exec(other.store.db())
        .await
        .unwrap();
    latchkey_core::infra::store::Store::bump_revision(other.store.db()).await.unwrap();

    assert_eq!(node.token_request(&idle_secret).await.status(), 401);
    assert_eq!(node.token_request(&old_secret).await.status(), 401);
    assert_eq!(node.token_request(&live_secret).await.status(), 200);
    let listed: Vec<String> = node
        .core
        .sessions
        .list(Some(&ada.id), false, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, vec![live_sid.clone()]);
    assert_eq!(node.core.sessions.get(&old_sid).await.unwrap().status.as_str(), "expired");

    // Activity is kept in memory and written in batches.
    let before = node.core.sessions.get(&live_sid).await.unwrap().last_active_at;
    node.clock.advance(std::time::Duration::from_secs(1));
    node.token(&live_secret).await;
    assert!(node.core.session_tokens.flush_activity().await.unwrap() >= 1);
    let after = node.core.sessions.get(&live_sid).await.unwrap();
    assert!(after.last_active_at > before, "{} > {before}", after.last_active_at);
    assert!(after.idle_expires_at > now + 6 * 86400);
    node.stop().await;
}
on_both_backends!(expired_and_idle_sessions_get_no_token);

/// CSRF: the token endpoint needs an allowed Origin or the custom header; CORS only for allowed origins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_checks_origin() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let dir = data_dir();
    let node = TestServer::start(
        dir.path(),
        &db,
        &[("LATCHKEY_ALLOWED_ORIGINS", "https://app.example.com")],
    )
    .await;
    let ada = node.user("ada@example.com").await;
    let (_, secret) = node.session(&ada).await;
    let cookie = format!("latchkey_session={secret}");
    let post = || client().post(node.url("/v1/session/token")).header("Cookie", cookie.clone());

    let res = post().send().await.unwrap();
    assert_eq!(res.status(), 403, "no Origin and no CSRF header");
    for origin in
        ["https://evil.example.com", "null", "https://app.example.com.evil.com", "not a url"]
    {
        let res = post().header("Origin", origin).send().await.unwrap();
        assert_eq!(res.status(), 403, "origin {origin}");
        assert!(res.headers().get("access-control-allow-origin").is_none());
    }

    let res = post().header("X-Latchkey-CSRF", "1").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let jwt = res.json::<Value>().await.unwrap()["jwt"].as_str().unwrap().to_owned();
    assert_eq!(verify(&jwt, &node.jwks().await, &node.base_url).unwrap()["azp"], node.base_url);

    let res = post().header("Origin", "https://app.example.com").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(res.headers()["access-control-allow-credentials"], "true");
    let jwt = res.json::<Value>().await.unwrap()["jwt"].as_str().unwrap().to_owned();
    assert_eq!(
        verify(&jwt, &node.jwks().await, &node.base_url).unwrap()["azp"],
        "https://app.example.com"
    );

    let preflight = client()
        .request(reqwest::Method::OPTIONS, node.url("/v1/session/token"))
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], "https://app.example.com");
    let preflight = client()
        .request(reqwest::Method::OPTIONS, node.url("/v1/session/token"))
        .header("Origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 403);

    // Without a cookie there is nothing to mint.
    let res = client()
        .post(node.url("/v1/session/token"))
        .header("X-Latchkey-CSRF", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    node.stop().await;
}
