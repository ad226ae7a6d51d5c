//! What resource servers rely on: RFC 8707 `resource` on user grants (the access token's `aud`
//! is the app's API), RFC 7009 revocation of single access tokens honoured at introspection and
//! userinfo at once and on every node, and a discovery document served with an entity tag.

use latchkey_core::{infra::audit::Actor, oauth::clients::NewClient};
use reqwest::StatusCode;
use serde_json::Value;

use crate::{
    oidc::flows::{
        REDIRECT, VERIFIER, auth_path, authorize, code_for, decode_payload, error_of, exchange,
        introspect, refresh, token,
    },
    on_both_backends,
    pages::Browser,
    support::{Backend, TestDb, TestServer, client, data_dir},
};

const API: &str = "https://api.example.com";
const OTHER_API: &str = "https://reports.example.com";

/// A confidential client registered for two APIs, and Ada.
async fn app(node: &TestServer) -> (String, String) {
    node.user("ada@example.com").await;
    let created = node
        .core
        .clients
        .create(
            NewClient {
                name: "Notes".into(),
                redirect_uris: vec![REDIRECT.into()],
                first_party: true,
                audiences: vec![API.into(), OTHER_API.into()],
                ..Default::default()
            },
            &Actor::cli(),
        )
        .await
        .unwrap();
    (created.client.client_id, created.client_secret.unwrap())
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn code_with(node: &TestServer, browser: &Browser, id: &str, extra: &str) -> String {
    authorize(browser, &node.url(&auth_path(id, extra)), "ada@example.com").await["code"].clone()
}

async fn userinfo(node: &TestServer, at: &str) -> StatusCode {
    client().get(node.url("/oauth2/userinfo")).bearer_auth(at).send().await.unwrap().status()
}

async fn revoke(node: &TestServer, who: (&str, Option<&str>), t: &str) -> StatusCode {
    let mut form = vec![("token", t)];
    let mut req = client().post(node.url("/oauth2/revoke"));
    match who {
        (id, Some(secret)) => req = req.basic_auth(id, Some(secret)),
        (id, None) => form.push(("client_id", id)),
    }
    req.form(&form).send().await.unwrap().status()
}

fn at_of(v: &Value) -> String {
    v["access_token"].as_str().unwrap().to_owned()
}

/// Two access tokens of one grant, from the code and then from its refresh, and the grant's
/// current refresh token: (first access token, second access token, refresh token).
async fn two_tokens_of_one_grant(
    node: &TestServer,
    basic: (&str, &str),
) -> (String, String, String) {
    let browser = Browser::new(&node.base_url);
    let first = exchange(node, basic, &code_for(node, &browser, basic.0).await).await;
    let at1 = at_of(&first);
    let rt1 = first["refresh_token"].as_str().unwrap().to_owned();
    let second = refresh(node, basic, &rt1).await.1;
    let rt2 = second["refresh_token"].as_str().unwrap().to_owned();
    (at1, at_of(&second), rt2)
}

/// The authorization request names the APIs; the code's tokens are aimed at them, a refresh
/// narrows to one (or to the issuer, for userinfo), and nothing widens the grant, not even one
/// given no resource.
async fn user_tokens_are_aimed_at_the_requested_resource(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let (id, secret) = app(&node).await;
    let basic = (id.as_str(), secret.as_str());
    let browser = Browser::new(&node.base_url);
    let iss = node.base_url.clone();

    // An unregistered resource at the authorization request goes back to the app.
    let q = authorize(
        &browser,
        &node.url(&auth_path(&id, "&resource=https%3A%2F%2Fevil.example")),
        "ada@example.com",
    )
    .await;
    assert_eq!(q["error"], "invalid_target", "{q:?}");

    let extra = format!("&resource={}&resource={}", enc(API), enc(&iss));
    let code = code_with(&node, &browser, &id, &extra).await;
    let first = exchange(&node, basic, &code).await;
    let at = at_of(&first);
    assert_eq!(decode_payload(&at)["aud"], serde_json::json!([API, iss]));
    assert_eq!(introspect(&node, &id, &secret, &at).await["active"], true);
    // Userinfo takes tokens for this server alone.
    assert_eq!(userinfo(&node, &at).await, StatusCode::UNAUTHORIZED);
    let r1 = first["refresh_token"].as_str().unwrap().to_owned();

    // Not granted (though registered): refused before the token rotates.
    let ask = |t: String, resource: String| {
        let node = &node;
        async move {
            let form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", t.as_str()),
                ("resource", resource.as_str()),
            ];
            token(node, Some(basic), &form).await
        }
    };
    assert_eq!(error_of(&ask(r1.clone(), OTHER_API.into()).await), (400, "invalid_target"));
    // Narrowed to the API, then to the issuer.
    let api_only = ask(r1, API.into()).await;
    assert_eq!(api_only.0, 200, "{}", api_only.1);
    let api_at = at_of(&api_only.1);
    assert_eq!(decode_payload(&api_at)["aud"], API);
    let introspected = introspect(&node, &id, &secret, &api_at).await;
    assert_eq!(
        (introspected["active"].clone(), introspected["aud"].clone()),
        (true.into(), API.into())
    );
    let r2 = api_only.1["refresh_token"].as_str().unwrap().to_owned();
    let iss_only = ask(r2, iss.clone()).await;
    assert_eq!(iss_only.0, 200, "{}", iss_only.1);
    let iss_at = at_of(&iss_only.1);
    assert_eq!(decode_payload(&iss_at)["aud"], iss.as_str());
    assert_eq!(userinfo(&node, &iss_at).await, StatusCode::OK);
    // Without resource, a refresh gets the whole grant again.
    let r3 = iss_only.1["refresh_token"].as_str().unwrap().to_owned();
    let whole = refresh(&node, basic, &r3).await;
    assert_eq!(decode_payload(&at_of(&whole.1))["aud"], serde_json::json!([API, iss]));

    // A grant given no resource may ask for a registered one at the code exchange.
    let code = code_for(&node, &browser, &id).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
        ("resource", OTHER_API),
    ];
    let r = token(&node, Some(basic), &form).await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(decode_payload(&at_of(&r.1))["aud"], OTHER_API);
    // ...and its refreshes stay within it.
    let rt = r.1["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(error_of(&ask(rt.clone(), API.into()).await), (400, "invalid_target"));
    assert_eq!(decode_payload(&at_of(&refresh(&node, basic, &rt).await.1))["aud"], OTHER_API);

    // A grant for which neither the request nor the exchange named one stays with the issuer:
    // its refreshes cannot aim it at a registered API.
    let plain = exchange(&node, basic, &code_for(&node, &browser, &id).await).await;
    let rt = plain["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(error_of(&ask(rt.clone(), API.into()).await), (400, "invalid_target"));
    let narrowed = ask(rt, iss.clone()).await;
    assert_eq!(narrowed.0, 200, "{}", narrowed.1);
    assert_eq!(decode_payload(&at_of(&narrowed.1))["aud"], iss.as_str());
    node.stop().await;
}
on_both_backends!(user_tokens_are_aimed_at_the_requested_resource);

/// RFC 7009 for one access token: inactive at introspection and refused at userinfo from the
/// next request on, while the grant's other tokens live on; only its own client may revoke it;
/// revoking the refresh token ends the grant's access tokens too; a public client revokes its
/// own tokens with `none`.
async fn revoked_access_tokens_end_at_once(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let (id, secret) = app(&node).await;
    let basic = (id.as_str(), secret.as_str());
    let (at1, at2, rt2) = two_tokens_of_one_grant(&node, basic).await;
    // Seen before (so remembered as verified) and live.
    for at in [&at1, &at2] {
        assert_eq!(introspect(&node, &id, &secret, at).await["active"], true);
        assert_eq!(userinfo(&node, at).await, StatusCode::OK);
    }

    // Another client naming the token changes nothing.
    let (other_id, other_secret) = {
        let c = node
            .core
            .clients
            .create(
                NewClient {
                    name: "Other".into(),
                    redirect_uris: vec![REDIRECT.into()],
                    ..Default::default()
                },
                &Actor::cli(),
            )
            .await
            .unwrap();
        (c.client.client_id, c.client_secret.unwrap())
    };
    assert_eq!(revoke(&node, (&other_id, Some(&other_secret)), &at1).await, StatusCode::OK);
    assert_eq!(introspect(&node, &id, &secret, &at1).await["active"], true);

    assert_eq!(revoke(&node, (&id, Some(&secret)), &at1).await, StatusCode::OK);
    assert_eq!(introspect(&node, &id, &secret, &at1).await["active"], false);
    assert_eq!(userinfo(&node, &at1).await, StatusCode::UNAUTHORIZED);
    // Again: still 200, still revoked; the grant's other token is untouched.
    assert_eq!(revoke(&node, (&id, Some(&secret)), &at1).await, StatusCode::OK);
    assert_eq!(introspect(&node, &id, &secret, &at2).await["active"], true);
    assert_eq!(userinfo(&node, &at2).await, StatusCode::OK);

    // Revoking the refresh token ends every access token of its grant.
    assert_eq!(revoke(&node, (&id, Some(&secret)), &rt2).await, StatusCode::OK);
    assert_eq!(introspect(&node, &id, &secret, &at2).await["active"], false);
    assert_eq!(userinfo(&node, &at2).await, StatusCode::UNAUTHORIZED);

    // A public client revokes its own access token with `none`.
    let public = node
        .core
        .clients
        .create(
            NewClient {
                name: "SPA".into(),
                public: true,
                redirect_uris: vec![REDIRECT.into()],
                first_party: true,
                ..Default::default()
            },
            &Actor::cli(),
        )
        .await
        .unwrap()
        .client
        .client_id;
    let code = code_for(&node, &Browser::new(&node.base_url), &public).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
        ("client_id", public.as_str()),
    ];
    let r = token(&node, None, &form).await;
    assert_eq!(r.0, 200, "{}", r.1);
    let spa_at = at_of(&r.1);
    assert_eq!(userinfo(&node, &spa_at).await, StatusCode::OK);
    assert_eq!(revoke(&node, (&public, None), &spa_at).await, StatusCode::OK);
    assert_eq!(userinfo(&node, &spa_at).await, StatusCode::UNAUTHORIZED);
    assert_eq!(introspect(&node, &id, &secret, &spa_at).await["active"], false);
    node.stop().await;
}
on_both_backends!(revoked_access_tokens_end_at_once);

/// Two nodes on one store: a token both have verified (and so remember) and revoked on node A
/// is inactive and refused on node B at the next request; so is one whose grant A revoked.
async fn revocation_on_one_node_is_seen_by_the_other(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node_a = TestServer::start(dir.path(), &db, &[]).await;
    let node_b =
        TestServer::start(dir.path(), &db, &[("LATCHKEY_PUBLIC_URL", &node_a.base_url)]).await;
    let (id, secret) = app(&node_a).await;
    let basic = (id.as_str(), secret.as_str());
    let (at1, at2, rt2) = two_tokens_of_one_grant(&node_a, basic).await;
    for node in [&node_a, &node_b] {
        for at in [&at1, &at2] {
            assert_eq!(introspect(node, &id, &secret, at).await["active"], true);
            assert_eq!(userinfo(node, at).await, StatusCode::OK);
        }
    }
    assert_eq!(revoke(&node_a, basic_some(basic), &at1).await, StatusCode::OK);
    assert_eq!(introspect(&node_b, &id, &secret, &at1).await["active"], false);
    assert_eq!(userinfo(&node_b, &at1).await, StatusCode::UNAUTHORIZED);
    assert_eq!(introspect(&node_b, &id, &secret, &at2).await["active"], true);

    assert_eq!(revoke(&node_a, basic_some(basic), &rt2).await, StatusCode::OK);
    assert_eq!(introspect(&node_b, &id, &secret, &at2).await["active"], false);
    assert_eq!(userinfo(&node_b, &at2).await, StatusCode::UNAUTHORIZED);
    node_b.stop().await;
    node_a.stop().await;
}
on_both_backends!(revocation_on_one_node_is_seen_by_the_other);

fn basic_some<'a>(b: (&'a str, &'a str)) -> (&'a str, Option<&'a str>) {
    (b.0, Some(b.1))
}

/// A token remembered as verified stops verifying once its key is withdrawn from the JWKS.
async fn a_withdrawn_key_ends_remembered_tokens(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let (id, secret) = app(&node).await;
    let basic = (id.as_str(), secret.as_str());
    let browser = Browser::new(&node.base_url);
    let at = at_of(&exchange(&node, basic, &code_for(&node, &browser, &id).await).await);
    assert_eq!(introspect(&node, &id, &secret, &at).await["active"], true);
    let header = crate::oidc::flows::decode_header(&at);
    let kid = header["kid"].as_str().unwrap().to_owned();
    let alg =
        latchkey_core::infra::jose::SigningAlg::parse(header["alg"].as_str().unwrap()).unwrap();
    node.core.keys.rotate(alg, &Actor::cli()).await.unwrap();
    // Retired but still published: the token still verifies.
    assert_eq!(introspect(&node, &id, &secret, &at).await["active"], true);
    node.core.keys.withdraw(&kid, &Actor::cli()).await.unwrap();
    assert_eq!(introspect(&node, &id, &secret, &at).await["active"], false);
    assert_eq!(userinfo(&node, &at).await, StatusCode::UNAUTHORIZED);
    node.stop().await;
}
on_both_backends!(a_withdrawn_key_ends_remembered_tokens);

/// Discovery is the same bytes until something changes: an entity tag, `304` for a client that
/// holds it (strong or weak form), and a cache lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_has_an_entity_tag() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let url = node.url("/.well-known/openid-configuration");
    let res = client().get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "public, max-age=300");
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() > 10, "{etag}");
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["issuer"], node.base_url.as_str());
    for tag in [etag.clone(), format!("W/{etag}"), format!("\"x\", {etag}")] {
        let again = client().get(&url).header("if-none-match", tag.as_str()).send().await.unwrap();
        assert_eq!(again.status(), 304, "{tag}");
        assert_eq!(again.headers()["etag"], etag.as_str());
    }
    let other = client().get(&url).header("if-none-match", "\"other\"").send().await.unwrap();
    assert_eq!(other.status(), 200);
    // Another node serving the same document gives the same tag.
    let node_b =
        TestServer::start(dir.path(), &db, &[("LATCHKEY_PUBLIC_URL", &node.base_url)]).await;
    let b = client().get(node_b.url("/.well-known/openid-configuration")).send().await.unwrap();
    assert_eq!(b.headers()["etag"], etag.as_str());
    node_b.stop().await;
    node.stop().await;
}
