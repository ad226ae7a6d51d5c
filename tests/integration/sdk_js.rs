//! The JavaScript SDK (sdk/js) against a running Latchkey: the routes Latchkey adds for it
//! (`/v1/sdk/*`, CORS on the token endpoint's refusals), and, in headless Chromium
//! (tests/e2e/sdk-js.mjs), the browser module on a plain page served from another loopback
//! port, its web components, and the Express example API (docs/examples/express-api).

use std::{path::PathBuf, time::Duration};

use latchkey_core::{identity::users::NewUser, infra::audit::Actor};
use reqwest::header;
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    support::{Backend, TestDb, TestServer, client, data_dir, free_listener, node_test},
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn jwt_payload(jwt: &str) -> Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

const MODULE: &str = include_str!("../../sdk/js/src/browser.js");

on_both_backends!(sdk_routes_for_pages_on_allowed_origins);
async fn sdk_routes_for_pages_on_allowed_origins(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let data = data_dir();
    let app = "http://127.0.0.1:1";
    let node = TestServer::start(data.path(), &db, &[("LATCHKEY_ALLOWED_ORIGINS", app)]).await;
    let http = client();

    // The module: the file itself, cacheable for a year, readable from any origin.
    let res = http.get(node.url("/v1/sdk/latchkey.js")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    assert_eq!(h[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
    assert_eq!(h[header::CACHE_CONTROL], "public, max-age=31536000, immutable");
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let etag = h[header::ETAG].to_str().unwrap().to_owned();
    assert_eq!(res.text().await.unwrap(), MODULE);
    let res = http
        .get(node.url("/v1/sdk/latchkey.js"))
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    assert_eq!(res.headers()[header::ETAG], etag.as_str());
    let head = http.head(node.url("/v1/sdk/latchkey.js")).send().await.unwrap();
    assert_eq!(
        (head.status().as_u16(), head.headers()[header::ETAG].to_str().unwrap()),
        (200, etag.as_str())
    );

    // Refusals of the token endpoint are readable by allowed origins (so a page can tell a
    // sign-out from a network failure), not by others.
    let token = |origin: &str| {
        http.post(node.url("/v1/session/token")).header(header::ORIGIN, origin.to_owned()).send()
    };
    let res = token(app).await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], app);
    assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    let res = token("http://evil.test").await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(!res.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));

    let mut ada = NewUser {
        email: "ada@example.com".into(),
        name: Some("Ada Lovelace".into()),
        ..NewUser::default()
    };
    ada.email_verified = true;
    let user = node.core.users.create(ada, &Actor::cli()).await.unwrap();
    let acme = node.core.orgs.create("Acme", "acme", &Actor::cli()).await.unwrap();
    node.core.orgs.set_membership(&acme.id, &user.id, "admin", &Actor::cli()).await.unwrap();
    let (_, secret) = node.session(&user).await;
    let cookie = format!("latchkey_session={secret}");

    // Who is signed in, from the page's origin; refused to other origins.
    let me = |origin: &str| {
        http.get(node.url("/v1/sdk/me"))
            .header(header::ORIGIN, origin.to_owned())
            .header(header::COOKIE, cookie.clone())
            .send()
    };
    let res = me(app).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], app);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["name"], "Ada Lovelace");
    assert_eq!(body["memberships"][0]["org_name"], "Acme");
    assert_eq!(me("http://evil.test").await.unwrap().status(), 403);
    let res = http.get(node.url("/v1/sdk/me")).header(header::ORIGIN, app).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], app);

    // Preflight, then switching the active organisation: the next token carries it.
    let res = http
        .request(reqwest::Method::OPTIONS, node.url("/v1/sdk/active-organization"))
        .header(header::ORIGIN, app)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], app);
    let switch = |origin: &str, org: Value| {
        http.post(node.url("/v1/sdk/active-organization"))
            .header(header::ORIGIN, origin.to_owned())
            .header(header::COOKIE, cookie.clone())
            .json(&json!({ "org_id": org }))
            .send()
    };
    assert_eq!(switch("http://evil.test", json!(acme.id)).await.unwrap().status(), 403);
    let res = switch(app, json!(acme.id)).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], app);
    let claims = jwt_payload(&node.token(&secret).await);
    assert_eq!(
        (claims["org_id"].as_str(), claims["org_slug"].as_str()),
        (Some(&*acme.id), Some("acme"))
    );

    // Sign-out: refused cross-site; from the page it ends the session and clears the cookie.
    let sign_out = |origin: &str| {
        http.post(node.url("/v1/sdk/sign-out"))
            .header(header::ORIGIN, origin.to_owned())
            .header(header::COOKIE, cookie.clone())
            .send()
    };
    assert_eq!(sign_out("http://evil.test").await.unwrap().status(), 403);
    assert_eq!(node.token_request(&secret).await.status(), 200, "the session survives");
    let res = sign_out(app).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], app);
    let set_cookie = res.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(set_cookie.starts_with("latchkey_session=;"), "{set_cookie}");
    assert_eq!(res.json::<Value>().await.unwrap(), json!({ "logout_url": null }));
    assert_eq!(node.token_request(&secret).await.status(), 401);
    node.stop().await;
}

/// Serves requests from the scripts: they write `req-<n>` (JSON: `{"advance": seconds}`,
/// `{"revoke": session id}`, `{"rotate": true}` for the session tokens' key, `{"withdraw": kid}`)
/// into the directory, we answer `ack-<n>` with the server's time after the change (and the new
/// and retired kids of a rotation).
fn serve_clock_requests(node: &TestServer, dir: PathBuf) -> tokio::task::JoinHandle<()> {
    let (clock, core) = (node.clock.clone(), node.core.clone());
    tokio::spawn(async move {
        for n in 1.. {
            let request = dir.join(format!("req-{n}"));
            let text = loop {
                if let Ok(text) = std::fs::read_to_string(&request) {
                    break text;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let cmd: Value = serde_json::from_str(&text).unwrap();
            if let Some(seconds) = cmd["advance"].as_u64() {
                clock.advance(Duration::from_secs(seconds));
            }
            if let Some(id) = cmd["revoke"].as_str() {
                assert!(core.sessions.revoke(id, "test", &Actor::cli()).await.unwrap());
            }
            let mut ack = json!({ "now": clock.now() });
            if cmd["rotate"] == true {
                let alg = core.session_tokens.algorithm();
                let (new, retired) = core.keys.rotate(alg, &Actor::cli()).await.unwrap();
                ack["kid"] = json!(new.kid);
                ack["retired"] = json!(retired.map(|r| r.kid));
            }
            if let Some(kid) = cmd["withdraw"].as_str() {
                core.keys.withdraw(kid, &Actor::cli()).await.unwrap();
            }
            let tmp = dir.join(format!("ack-{n}.tmp"));
            std::fs::write(&tmp, ack.to_string()).unwrap();
            std::fs::rename(tmp, dir.join(format!("ack-{n}"))).unwrap();
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_module_components_and_express_example_in_chromium() {
    let repo = repo();
    for (dir, what) in [
        ("tests/e2e/node_modules/playwright-core", "npm ci --prefix tests/e2e"),
        ("sdk/js/node_modules/jose", "npm ci --prefix sdk/js"),
        (
            "docs/examples/express-api/node_modules/express",
            "npm ci --prefix docs/examples/express-api",
        ),
    ] {
        assert!(repo.join(dir).is_dir(), "{dir} is missing: run ./scripts/test (or `{what}`)");
    }
    let page_port = free_listener().local_addr().unwrap().port();
    let api_port = free_listener().local_addr().unwrap().port();
    let page_origin = format!("http://127.0.0.1:{page_port}");
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let data = data_dir();
    let node =
        TestServer::start(data.path(), &db, &[("LATCHKEY_ALLOWED_ORIGINS", &page_origin)]).await;

    let password = "correct horse battery";
    let ada = NewUser {
        email: "ada@example.com".into(),
        password: Some(password.into()),
        name: Some("Ada Lovelace".into()),
        email_verified: true,
        ..NewUser::default()
    };
    let user = node.core.users.create(ada, &Actor::cli()).await.unwrap();
    let acme = node.core.orgs.create("Acme", "acme", &Actor::cli()).await.unwrap();
    let globex = node.core.orgs.create("Globex", "globex", &Actor::cli()).await.unwrap();
    for org in [&acme, &globex] {
        node.core.orgs.set_membership(&org.id, &user.id, "member", &Actor::cli()).await.unwrap();
    }
    // Sessions made here for the scenarios that do not go through the sign-in pages.
    let (session_a, secret_a) = node.session(&user).await;
    let (_, secret_c) = node.session(&user).await;

    let clock_dir = tempfile::tempdir().unwrap();
    let watcher = serve_clock_requests(&node, clock_dir.path().to_owned());
    let script = repo.join("tests/e2e/sdk-js.mjs");
    let envs = [
        ("LATCHKEY_URL", node.base_url.clone()),
        ("PAGE_PORT", page_port.to_string()),
        ("API_PORT", api_port.to_string()),
        ("USER_ID", user.id.clone()),
        ("USER_EMAIL", "ada@example.com".into()),
        ("USER_PASSWORD", password.into()),
        ("GLOBEX_ID", globex.id.clone()),
        ("SESSION_A_ID", session_a),
        ("SESSION_A_SECRET", secret_a),
        ("SESSION_C_SECRET", secret_c),
        ("CLOCK_DIR", clock_dir.path().display().to_string()),
    ];
    let (passed, report) = node_test(script, Vec::new(), Vec::from(envs)).await;
    watcher.abort();
    assert!(passed, "SDK browser test failed:\n{report}");
    assert!(report.contains("ℹ pass 3"), "not every scenario ran:\n{report}");
    eprintln!("{report}");
    node.stop().await;
}

/// The verifier of sdk/js against this server's tokens and JWK Set (tests/e2e/sdk-verify.mjs):
/// valid, expired, not yet valid, wrong issuer, wrong authorised party, tampered, `alg: none`,
/// HS256 keyed with the public key, an unknown `kid` found after a rotation, a withdrawn key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifier_against_a_running_latchkey() {
    let repo = repo();
    assert!(
        repo.join("sdk/js/node_modules/jose").is_dir(),
        "run ./scripts/test (or `npm ci --prefix sdk/js`)"
    );
    let (app, other) = ("http://127.0.0.1:1", "http://127.0.0.1:2");
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let data = data_dir();
    let origins = format!("{app},{other}");
    let node = TestServer::start(data.path(), &db, &[("LATCHKEY_ALLOWED_ORIGINS", &origins)]).await;
    let user = node.user("ada@example.com").await;
    let (_, secret) = node.session(&user).await;
    let clock_dir = tempfile::tempdir().unwrap();
    let watcher = serve_clock_requests(&node, clock_dir.path().to_owned());
    let script = repo.join("tests/e2e/sdk-verify.mjs");
    let envs = [
        ("LATCHKEY_URL", node.base_url.clone()),
        ("SESSION_SECRET", secret),
        ("APP_ORIGIN", app.to_owned()),
        ("OTHER_ORIGIN", other.to_owned()),
        ("CLOCK_DIR", clock_dir.path().display().to_string()),
    ];
    let (passed, report) = node_test(script, Vec::new(), Vec::from(envs)).await;
    watcher.abort();
    assert!(passed, "SDK verifier test failed:\n{report}");
    assert!(report.contains("ℹ pass 2"), "not every scenario ran:\n{report}");
    node.stop().await;
}
