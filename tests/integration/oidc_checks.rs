//! The OpenID Connect provider checks a request completely before it writes anything: a refused
//! request leaves the refresh token, the code and the client assertion it presented usable. The
//! client-assertion replay check is atomic, and a store that fails behind a check is answered as
//! the server error it is, never as the client's mistake.

use latchkey_core::{infra::audit::Actor, infra::jose::SigningAlg, oauth::clients::NewClient};
use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::{
    oidc::flows::{
        REDIRECT, VERIFIER, assertion, code_for, decode_payload, error_of, exchange, introspect,
        refresh, setup, token,
    },
    on_both_backends,
    pages::Browser,
    support::{Backend, TestServer, client},
};

const API: &str = "https://api.example.com";

/// A refresh request that asks for more than the grant (or for another audience) is refused
/// before the token is rotated: the same token then still works and the grant is not revoked.
/// A rotated token presented again is reuse whatever else the request says.
async fn refresh_scope_is_checked_before_rotation(backend: Backend) {
    let Some((node, _dir, id, secret)) = setup(backend).await else { return };
    let basic = (id.as_str(), secret.as_str());
    let browser = Browser::new(&node.base_url);
    // The code grants `openid offline_access`.
    let first = exchange(&node, basic, &code_for(&node, &browser, &id).await).await;
    let r1 = first["refresh_token"].as_str().unwrap().to_owned();
    let at1 = first["access_token"].as_str().unwrap().to_owned();
    let grant = |extra: (&'static str, &'static str)| {
        let r1 = r1.clone();
        let node = &node;
        async move {
            let form = [("grant_type", "refresh_token"), ("refresh_token", r1.as_str()), extra];
            token(node, Some(basic), &form).await
        }
    };
    for (extra, expected) in [
        (("scope", "openid email"), "invalid_scope"),
        (("scope", "openid OFFLINE_ACCESS"), "invalid_scope"),
        (("scope", "offline_access organization"), "invalid_scope"),
        (("resource", API), "invalid_target"),
        (("audience", API), "invalid_target"),
        (("resource", "not-a-uri"), "invalid_target"),
    ] {
        assert_eq!(error_of(&grant(extra).await), (400, expected), "{extra:?}");
    }
    assert_eq!(introspect(&node, &id, &secret, &at1).await["active"], true, "grant revoked");
    assert_eq!(introspect(&node, &id, &secret, &r1).await["active"], true, "token rotated");

    // Narrowing is allowed, and the refused requests left the token usable.
    let narrowed = grant(("scope", "openid")).await;
    assert_eq!(narrowed.0, 200, "{}", narrowed.1);
    assert_eq!(narrowed.1["scope"], "openid");
    assert_eq!(decode_payload(narrowed.1["access_token"].as_str().unwrap())["scope"], "openid");
    let r2 = narrowed.1["refresh_token"].as_str().unwrap().to_owned();

    // r1 is rotated now: presenting it again is reuse, even with a scope that is refused.
    assert_eq!(error_of(&grant(("scope", "openid email")).await), (400, "invalid_grant"));
    assert_eq!(refresh(&node, basic, &r2).await.0, 400, "the reused token's family is revoked");
    node.stop().await;
}
on_both_backends!(refresh_scope_is_checked_before_rotation);

/// A code's client, redirect URI, PKCE verifier and requested audience are checked before the
/// code is used: refused presentations leave it to its client, which then redeems it once.
async fn code_checks_come_before_the_code_is_used(backend: Backend) {
    let Some((node, _dir, id, secret)) = setup(backend).await else { return };
    let other = node
        .core
        .clients
        .create(
            NewClient {
                name: "Other".into(),
                redirect_uris: vec![REDIRECT.into()],
                first_party: true,
                ..Default::default()
            },
            &Actor::cli(),
        )
        .await
        .unwrap();
    let other_secret = other.client_secret.unwrap();
    let browser = Browser::new(&node.base_url);
    let code = code_for(&node, &browser, &id).await;
    let mine = (id.as_str(), secret.as_str());
    let wrong_verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK";
    for (changes, expected) in [
        (vec![("redirect_uri", "http://127.0.0.1:9/other")], "invalid_grant"),
        (vec![("code_verifier", wrong_verifier)], "invalid_grant"),
        (vec![("code_verifier", "")], "invalid_grant"),
        (vec![("resource", API)], "invalid_target"),
        (vec![("audience", "https://id.example.evil")], "invalid_target"),
    ] {
        let r = exchange_code(&node, mine, &code, &changes).await;
        assert_eq!(error_of(&r), (400, expected), "{changes:?}");
    }
    // Another client presenting the code.
    let theirs = (other.client.client_id.as_str(), other_secret.as_str());
    assert_eq!(error_of(&exchange_code(&node, theirs, &code, &[]).await), (400, "invalid_grant"));

    // The code's own client redeems it (naming the issuer as the audience is fine)...
    let ok = exchange_code(&node, mine, &code, &[("audience", &node.base_url)]).await;
    assert_eq!(ok.0, 200, "{}", ok.1);
    let at = ok.1["access_token"].as_str().unwrap().to_owned();
    assert_eq!(decode_payload(&at)["aud"], node.base_url.as_str());
    // ...once: a second use is a replay and revokes what the first issued.
    assert_eq!(error_of(&exchange_code(&node, mine, &code, &[]).await), (400, "invalid_grant"));
    assert_eq!(introspect(&node, &id, &secret, &at).await["active"], false);
    node.stop().await;
}
on_both_backends!(code_checks_come_before_the_code_is_used);

/// Exchanges `code` as `who`, with the usual form changed by `changes` (an empty value removes
/// the parameter).
async fn exchange_code(
    node: &TestServer,
    who: (&str, &str),
    code: &str,
    changes: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    for (k, v) in changes {
        form.retain(|(key, _)| key != k);
        if !v.is_empty() {
            form.push((k, v));
        }
    }
    token(node, Some(who), &form).await
}

/// A `private_key_jwt` client (client_credentials, one registered audience) and its key.
async fn assertion_client(node: &TestServer) -> (String, Vec<u8>) {
    let (pem, jwk) = SigningAlg::ES256.generate().unwrap();
    let mut jwk = Value::Object(jwk.as_ref().clone());
    jwk["kid"] = json!("k1");
    let created = node
        .core
        .clients
        .create(
            NewClient {
                name: "Batch".into(),
                grant_types: vec!["client_credentials".into()],
                token_endpoint_auth_method: Some("private_key_jwt".into()),
                jwks: Some(json!({ "keys": [jwk] })),
                allowed_scopes: vec!["reports:read".into()],
                audiences: vec![API.into()],
                ..Default::default()
            },
            &Actor::cli(),
        )
        .await
        .unwrap();
    (created.client.client_id, pem)
}

fn signed_assertion(node: &TestServer, client_id: &str, pem: &[u8], jti: &str) -> String {
    let now = node.clock.now();
    let claims = json!({
        "iss": client_id, "sub": client_id, "aud": node.url("/oauth2/token"),
        "exp": now + 60, "iat": now, "jti": jti,
    });
    assertion(pem, "k1", &claims)
}

/// POSTs a form authenticated with `assertion` to `path`.
async fn post_with_assertion(
    node: &TestServer,
    path: &str,
    assertion: &str,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut form = form.to_vec();
    form.push(("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"));
    form.push(("client_assertion", assertion));
    let res = client().post(node.url(path)).form(&form).send().await.unwrap();
    let status = res.status();
    assert_eq!(res.headers()["cache-control"], "no-store", "{path}: {status}");
    (status, res.json().await.unwrap_or(Value::Null))
}

/// The assertion's `jti` is recorded only once the request has passed its checks: refused
/// requests (scope, audience, grant type, missing parameters, at every endpoint) leave the
/// assertion usable, once.
async fn assertion_is_used_only_by_an_accepted_request(backend: Backend) {
    let Some((node, _dir, _, _)) = setup(backend).await else { return };
    let (id, pem) = assertion_client(&node).await;
    let a = signed_assertion(&node, &id, &pem, "j1");
    let cc = |extra: &[(&'static str, &'static str)]| {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend_from_slice(extra);
        form
    };
    for (path, form, expected) in [
        ("/oauth2/token", cc(&[("scope", "admin")]), "invalid_scope"),
        ("/oauth2/token", cc(&[("scope", "openid")]), "invalid_scope"),
        ("/oauth2/token", cc(&[("audience", "https://evil.example")]), "invalid_target"),
        ("/oauth2/token", cc(&[("resource", "api")]), "invalid_target"),
        (
            "/oauth2/token",
            vec![("grant_type", "refresh_token"), ("refresh_token", "x")],
            "unauthorized_client",
        ),
        ("/oauth2/token", vec![("grant_type", "password")], "unsupported_grant_type"),
        ("/oauth2/revoke", vec![], "invalid_request"),
        ("/oauth2/introspect", vec![], "invalid_request"),
    ] {
        let r = post_with_assertion(&node, path, &a, &form).await;
        assert_eq!(error_of(&r), (400, expected), "{path} {form:?}");
    }
    let ok = post_with_assertion(
        &node,
        "/oauth2/token",
        &a,
        &cc(&[("scope", "reports:read"), ("resource", API)]),
    )
    .await;
    assert_eq!(ok.0, 200, "{}", ok.1);
    assert_eq!(decode_payload(ok.1["access_token"].as_str().unwrap())["aud"], API);
    let again = post_with_assertion(&node, "/oauth2/token", &a, &cc(&[])).await;
    assert_eq!(error_of(&again), (401, "invalid_client"), "replay");
    let again = post_with_assertion(&node, "/oauth2/revoke", &a, &[("token", "x")]).await;
    assert_eq!(error_of(&again), (401, "invalid_client"), "replay at another endpoint");
    node.stop().await;
}
on_both_backends!(assertion_is_used_only_by_an_accepted_request);

/// Twenty concurrent uses of one assertion: exactly one is accepted.
async fn concurrent_uses_of_one_assertion(backend: Backend) {
    let Some((node, _dir, _, _)) = setup(backend).await else { return };
    let (id, pem) = assertion_client(&node).await;
    let a = signed_assertion(&node, &id, &pem, "shared");
    let form = [("grant_type", "client_credentials")];
    let tries = (0..20).map(|_| post_with_assertion(&node, "/oauth2/token", &a, &form));
    let outcomes = futures_util::future::join_all(tries).await;
    let accepted = outcomes.iter().filter(|o| o.0 == 200).count();
    assert_eq!(accepted, 1, "{outcomes:?}");
    for o in outcomes.iter().filter(|o| o.0 != 200) {
        assert_eq!(error_of(o), (401, "invalid_client"));
    }
    node.stop().await;
}
on_both_backends!(concurrent_uses_of_one_assertion);

/// Makes every insert into the assertion-id table fail, as a store in trouble would.
async fn break_jti_inserts(node: &TestServer, backend: Backend) {
    let db = node.core.store.db();
    let statements: &[&str] = match backend {
        Backend::Sqlite => &["CREATE TRIGGER jti_fails BEFORE INSERT ON oauth_assertion_jtis \
              BEGIN SELECT RAISE(ABORT, 'simulated store failure'); END"],
        Backend::Postgres => &[
            "CREATE FUNCTION jti_fails() RETURNS trigger AS $$ \
             BEGIN RAISE EXCEPTION 'simulated store failure'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER jti_fails BEFORE INSERT ON oauth_assertion_jtis \
             FOR EACH ROW EXECUTE FUNCTION jti_fails()",
        ],
    };
    for sql in statements {
        db.execute_unprepared(sql).await.unwrap();
    }
}

/// A store failure at the assertion replay check is a server error (503
/// `temporarily_unavailable`), not a replay (`invalid_client`), and uses nothing up.
async fn assertion_replay_check_failure_is_a_server_error(backend: Backend) {
    let Some((node, _dir, _, _)) = setup(backend).await else { return };
    let (id, pem) = assertion_client(&node).await;
    let form = [("grant_type", "client_credentials")];
    let a = signed_assertion(&node, &id, &pem, "j1");
    break_jti_inserts(&node, backend).await;
    let r = post_with_assertion(&node, "/oauth2/token", &a, &form).await;
    assert_eq!(error_of(&r), (503, "temporarily_unavailable"), "{}", r.1);
    assert!(!r.1.to_string().contains("simulated"), "internals leaked: {}", r.1);

    // Repaired: the same assertion is accepted (the failure recorded nothing), once.
    let repair = match backend {
        Backend::Sqlite => "DROP TRIGGER jti_fails",
        Backend::Postgres => "DROP TRIGGER jti_fails ON oauth_assertion_jtis",
    };
    node.core.store.db().execute_unprepared(repair).await.unwrap();
    assert_eq!(post_with_assertion(&node, "/oauth2/token", &a, &form).await.0, 200);
    let replay = post_with_assertion(&node, "/oauth2/token", &a, &form).await;
    assert_eq!(error_of(&replay), (401, "invalid_client"));

    // The table gone altogether: a server error too.
    node.core.store.db().execute_unprepared("DROP TABLE oauth_assertion_jtis").await.unwrap();
    let b = signed_assertion(&node, &id, &pem, "j2");
    let r = post_with_assertion(&node, "/oauth2/token", &b, &form).await;
    assert_eq!(error_of(&r), (503, "temporarily_unavailable"), "{}", r.1);
    node.stop().await;
}
on_both_backends!(assertion_replay_check_failure_is_a_server_error);

/// Userinfo and introspection answer a store failure behind their checks as a server error,
/// not as an invalid or inactive token.
async fn token_checks_report_store_failures(backend: Backend) {
    let Some((node, _dir, id, secret)) = setup(backend).await else { return };
    let basic = (id.as_str(), secret.as_str());
    let browser = Browser::new(&node.base_url);
    let tokens = exchange(&node, basic, &code_for(&node, &browser, &id).await).await;
    let at = tokens["access_token"].as_str().unwrap();
    let res = client().get(node.url("/oauth2/userinfo")).bearer_auth(at).send().await.unwrap();
    assert_eq!(res.status(), 200);
    // The grant-revocation check now fails in the store (the revision moves on, so the grant's
    // state remembered from the request above must be read again).
    node.core.store.db().execute_unprepared("DROP TABLE oauth_codes").await.unwrap();
    node.core
        .store
        .db()
        .execute_unprepared("UPDATE store_revision SET revision = revision + 1")
        .await
        .unwrap();
    let res = client().get(node.url("/oauth2/userinfo")).bearer_auth(at).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.headers().get("www-authenticate").is_none(), "not a Bearer challenge");
    let res = client()
        .post(node.url("/oauth2/introspect"))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", at)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "temporarily_unavailable");
    node.stop().await;
}
on_both_backends!(token_checks_report_store_failures);

/// Revoking another client's refresh token changes nothing (RFC 7009 §2.1: 200 regardless).
async fn revocation_by_another_client_changes_nothing(backend: Backend) {
    let Some((node, _dir, id, secret)) = setup(backend).await else { return };
    let other = node
        .core
        .clients
        .create(
            NewClient {
                name: "Other".into(),
                redirect_uris: vec![REDIRECT.into()],
                first_party: true,
                ..Default::default()
            },
            &Actor::cli(),
        )
        .await
        .unwrap();
    let other_secret = other.client_secret.unwrap();
    let basic = (id.as_str(), secret.as_str());
    let browser = Browser::new(&node.base_url);
    let tokens = exchange(&node, basic, &code_for(&node, &browser, &id).await).await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    let res = client()
        .post(node.url("/oauth2/revoke"))
        .basic_auth(&other.client.client_id, Some(&other_secret))
        .form(&[("token", rt), ("token_type_hint", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(refresh(&node, basic, rt).await.0, 200, "still the owner's");
    node.stop().await;
}
on_both_backends!(revocation_by_another_client_changes_nothing);
