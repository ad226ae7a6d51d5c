//! `latchkey-verify` (the app-side verifier) against a running Latchkey: real session tokens and
//! RFC 9068 access tokens verify; every refusal the SDK promises holds for real tokens; a key
//! rotation gives an unknown kid that is then found; a withdrawn key is refused once the cached
//! key set is refreshed; and the actix example (docs/examples/actix-api) protects its API.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use latchkey_core::{
    infra::audit::Actor, infra::clock::Clock as NodeClock, infra::jose::SigningAlg,
    oauth::clients::NewClient,
};
use latchkey_verify::{CacheSettings, Clock, TokenType, Verifier, VerifyError};
use serde_json::{Value, json};

use crate::{
    oidc::flows::{CHALLENGE, REDIRECT, VERIFIER, authorize, token},
    on_both_backends,
    pages::Browser,
    support::{Backend, TestDb, TestServer, client, data_dir, free_listener, node_test},
};

// The example's app factory, tested in-process against the running Latchkey.
#[allow(dead_code)]
#[path = "../../docs/examples/actix-api/main.rs"]
mod actix_api;

/// The verifier reads the test node's clock, which the test moves forward, shifted by `offset`
/// seconds (an app server whose clock is off).
struct Shifted(NodeClock, i64);

impl Clock for Shifted {
    fn now(&self) -> i64 {
        self.0.now() + self.1
    }
}

const CACHE: CacheSettings =
    CacheSettings { max_age: 300, min_refetch_interval: 30, stale_if_error: 600 };

fn verifier_for(node: &TestServer, azp: &str, offset: i64) -> Verifier {
    Verifier::builder(node.base_url.clone())
        .authorized_party(azp)
        .clock(Shifted(node.clock.clone(), offset))
        .cache(CACHE)
        .build()
        .unwrap()
}

fn kid_of(jwt: &str) -> String {
    let header = URL_SAFE_NO_PAD.decode(jwt.split('.').next().unwrap()).unwrap();
    serde_json::from_slice::<Value>(&header).unwrap()["kid"].as_str().unwrap().to_owned()
}

fn reassemble(header: &Value, payload: &str, sig: &[u8]) -> String {
    format!(
        "{}.{payload}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(sig)
    )
}

async fn session_tokens_verify_and_forgeries_are_refused(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let ada = node.user("ada@example.com").await;
    let (sid, secret) = node.session(&ada).await;
    let jwt = node.token(&secret).await;
    let v = verifier_for(&node, &node.base_url, 0);

    let claims = v.verify(&jwt).await.expect("a fresh session token verifies");
    assert_eq!(claims.token_type(), TokenType::Session);
    assert_eq!((claims.sub(), claims.sid()), (ada.id.as_str(), Some(sid.as_str())));
    assert_eq!(claims.azp(), Some(node.base_url.as_str()));
    assert_eq!(claims.org_id(), None);

    // Expired (past exp + the 5 s skew) and not yet valid (an app clock behind by a minute).
    let late = verifier_for(&node, &node.base_url, 66);
    assert_eq!(late.verify(&jwt).await.unwrap_err(), VerifyError::Expired);
    let early = verifier_for(&node, &node.base_url, -60);
    assert_eq!(early.verify(&jwt).await.unwrap_err(), VerifyError::NotYetValid);

    // Another authorised party; another issuer (same keys, fetched explicitly).
    let other_app = verifier_for(&node, "https://other-app.example.com", 0);
    assert_eq!(other_app.verify(&jwt).await.unwrap_err(), VerifyError::Audience);
    let other_issuer = Verifier::builder("https://id.example.com")
        .authorized_party(node.base_url.clone())
        .jwks_uri(node.url("/.well-known/jwks.json"))
        .clock(Shifted(node.clock.clone(), 0))
        .build()
        .unwrap();
    assert_eq!(other_issuer.verify(&jwt).await.unwrap_err(), VerifyError::Issuer);

    // Tampered payload and signature.
    let parts: Vec<&str> = jwt.split('.').collect();
    let mut forged: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    forged["sub"] = json!("usr_someone_else");
    let forged_b64 = URL_SAFE_NO_PAD.encode(forged.to_string());
    let tampered = format!("{}.{forged_b64}.{}", parts[0], parts[2]);
    assert_eq!(v.verify(&tampered).await.unwrap_err(), VerifyError::Signature);
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[0] ^= 0x80;
    let bad_sig = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&sig));
    assert_eq!(v.verify(&bad_sig).await.unwrap_err(), VerifyError::Signature);

    // alg none, and HS256 keyed with the published key (its JSON and its raw coordinates).
    let kid = kid_of(&jwt);
    let none = json!({"alg": "none", "typ": "JWT", "kid": kid});
    let unsigned = reassemble(&none, &forged_b64, b"");
    assert_eq!(v.verify(&unsigned).await.unwrap_err(), VerifyError::Algorithm("none"));
    let jwks: Value = client()
        .get(node.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()).unwrap();
    let mut coordinates = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    coordinates.extend(URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap());
    for secret in [jwk.to_string().into_bytes(), coordinates] {
        let hs = json!({"alg": "HS256", "typ": "JWT", "kid": kid});
        let input = format!("{}.{forged_b64}", URL_SAFE_NO_PAD.encode(hs.to_string()));
        let mac = ring_hmac(&secret, input.as_bytes());
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac));
        assert_eq!(v.verify(&token).await.unwrap_err(), VerifyError::Algorithm("HMAC"));
    }
    node.stop().await;
}
on_both_backends!(session_tokens_verify_and_forgeries_are_refused);

/// HMAC-SHA256, as an attacker would compute it.
fn ring_hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&key, message).as_ref().to_vec()
}

async fn rotation_is_found_and_withdrawal_is_refused(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[("LATCHKEY_SESSION_TOKEN_TTL", "1200s")]).await;
    let ada = node.user("ada@example.com").await;
    let (_, secret) = node.session(&ada).await;
    let v = verifier_for(&node, &node.base_url, 0);
    let old = node.token(&secret).await;
    v.verify(&old).await.unwrap();

    // A rotation: the server signs with a key the verifier has not seen. Within 30 s of the
    // last fetch the miss is not refetched; after it, the new key is found.
    let cli = node.second_core().await;
    let (new_key, retired) = cli.keys.rotate(SigningAlg::ES256, &Actor::cli()).await.unwrap();
    let new = node.token(&secret).await;
    assert_eq!(kid_of(&new), new_key.kid);
    assert_eq!(v.verify(&new).await.unwrap_err(), VerifyError::UnknownKey);
    node.clock.advance(Duration::from_secs(30));
    assert_eq!(v.verify(&new).await.unwrap().sub(), ada.id);
    v.verify(&old).await.expect("the retired key is still published");

    // Withdrawn: the cached set still has it until it ages, then the refreshed set does not.
    let old_kid = retired.unwrap().kid;
    assert_eq!(kid_of(&old), old_kid);
    cli.keys.withdraw(&old_kid, &Actor::cli()).await.unwrap();
    v.verify(&old).await.expect("cached until the key set ages");
    node.clock.advance(Duration::from_secs(300));
    assert_eq!(v.verify(&old).await.unwrap_err(), VerifyError::UnknownKey);
    v.verify(&new).await.expect("the active key still verifies");
    // A fresh verifier never sees the withdrawn key at all.
    let fresh = verifier_for(&node, &node.base_url, 0);
    assert_eq!(fresh.verify(&old).await.unwrap_err(), VerifyError::UnknownKey);
    node.stop().await;
}
on_both_backends!(rotation_is_found_and_withdrawal_is_refused);

/// Every algorithm Latchkey can sign session tokens with verifies, keys found via discovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_session_token_algorithm_verifies() {
    for alg in ["ES256", "RS256", "EdDSA"] {
        let db = TestDb::new(Backend::Sqlite).await.unwrap();
        let dir = data_dir();
        let node = TestServer::start(dir.path(), &db, &[("LATCHKEY_SESSION_TOKEN_ALG", alg)]).await;
        let ada = node.user("ada@example.com").await;
        let (_, secret) = node.session(&ada).await;
        let v = Verifier::builder(node.base_url.clone())
            .authorized_party(node.base_url.clone())
            .use_discovery()
            .clock(Shifted(node.clock.clone(), 0))
            .build()
            .unwrap();
        let claims =
            v.verify(&node.token(&secret).await).await.unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(claims.sub(), ada.id);
        node.stop().await;
    }
}

/// The API an app's access tokens are aimed at (RFC 8707 `resource`).
const NOTES_API: &str = "https://notes-api.example.com";

async fn access_tokens_verify_as_at_jwt(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let ada = node.user("ada@example.com").await;
    let new = NewClient {
        name: "Wiki".into(),
        redirect_uris: vec![REDIRECT.into()],
        first_party: true,
        audiences: vec![NOTES_API.into()],
        ..Default::default()
    };
    let created = node.core.clients.create(new, &Actor::cli()).await.unwrap();
    let (id, secret) = (created.client.client_id, created.client_secret.unwrap());
    let browser = Browser::new(&node.base_url);
    let auth = format!(
        "/oauth2/authorize?response_type=code&client_id={id}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&scope=openid+email&state=st&nonce=n&code_challenge={CHALLENGE}&code_challenge_method=S256&resource=https%3A%2F%2Fnotes-api.example.com"
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
    let access = body["access_token"].as_str().unwrap();
    let payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(access.split('.').nth(1).unwrap()).unwrap())
            .unwrap();
    // RFC 8707: the token is aimed at the API the app asked for.
    assert_eq!(payload["aud"], NOTES_API);
    let aud = NOTES_API.to_owned();

    let api = Verifier::builder(node.base_url.clone())
        .audience(aud.clone())
        .client(id.clone())
        .clock(Shifted(node.clock.clone(), 0))
        .build()
        .unwrap();
    let claims = api.verify(access).await.expect("the access token verifies");
    assert_eq!(claims.token_type(), TokenType::Access);
    assert_eq!((claims.sub(), claims.client_id()), (ada.id.as_str(), Some(id.as_str())));
    assert!(claims.has_scope("openid") && claims.has_scope("email"));
    assert!(claims.sid().is_some());

    // The same token for an API that is not its audience, or from another client, or where
    // only session tokens are accepted; and the ID token is no access token.
    let elsewhere = Verifier::builder(node.base_url.clone())
        .audience("https://other-api.example.com")
        .build()
        .unwrap();
    assert_eq!(elsewhere.verify(access).await.unwrap_err(), VerifyError::Audience);
    let other_client = Verifier::builder(node.base_url.clone())
        .audience(aud.clone())
        .client("cli_other")
        .build()
        .unwrap();
    assert_eq!(other_client.verify(access).await.unwrap_err(), VerifyError::Audience);
    let sessions_only = Verifier::builder(node.base_url.clone())
        .audience(aud.clone())
        .token_types(&[TokenType::Session])
        .build()
        .unwrap();
    assert_eq!(sessions_only.verify(access).await.unwrap_err(), VerifyError::Type);
    let id_token = body["id_token"].as_str().unwrap();
    let as_session = Verifier::builder(node.base_url.clone())
        .audience(id.clone())
        .authorized_party(id.clone())
        .build()
        .unwrap();
    assert!(as_session.verify(id_token).await.is_err(), "an ID token must not pass");
    node.stop().await;
}
on_both_backends!(access_tokens_verify_as_at_jwt);

/// The actix example against a running Latchkey: its public and protected routes, the RFC 6750
/// challenge, and CORS for the configured web app origin.
async fn the_actix_example_protects_its_api(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let app_origin = "http://127.0.0.1:9";
    let node =
        TestServer::start(dir.path(), &db, &[("LATCHKEY_ALLOWED_ORIGINS", app_origin)]).await;
    let ada = node.user("ada@example.com").await;
    let (_, secret) = node.session(&ada).await;
    // A session token minted for the web app: the browser SDK asks with the app's Origin.
    let res = client()
        .post(node.url("/v1/session/token"))
        .header("Cookie", format!("latchkey_session={secret}"))
        .header("Origin", app_origin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let jwt = res.json::<Value>().await.unwrap()["jwt"].as_str().unwrap().to_owned();

    let env = [("LATCHKEY_ISSUER", node.base_url.clone()), ("APP_ORIGIN", app_origin.to_owned())];
    let config =
        actix_api::Config::from_env(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .unwrap();
    let listener = free_listener();
    let api = format!("http://{}", listener.local_addr().unwrap());
    let server = actix_api::server(&config, listener).unwrap();
    let handle = server.handle();
    tokio::spawn(server);
    let get = |path: &str| client().get(format!("{api}{path}"));

    let res = get("/api/public").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"message": "hello", "sub": null}));
    let res = get("/api/public").bearer_auth(&jwt).send().await.unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["sub"], ada.id);

    let res = get("/api/me").send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"actix-api\"");
    let res = get("/api/me").bearer_auth(&jwt).header("Origin", app_origin).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["access-control-allow-origin"], app_origin);
    let me: Value = res.json().await.unwrap();
    assert_eq!((me["sub"].as_str(), me["azp"].as_str()), (Some(ada.id.as_str()), Some(app_origin)));
    assert_eq!(me["token_type"], "session");

    // A token minted for Latchkey's own origin is not for this app.
    let own = node.token(&secret).await;
    let res = get("/api/me").bearer_auth(&own).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");

    // A tampered token (the example reads the system clock, so expiry is covered above).
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(json!({"sub": "usr_x"}).to_string());
    let res = get("/api/me").bearer_auth(parts.join(".")).send().await.unwrap();
    assert_eq!(res.status(), 401);

    // CORS: the app's preflight is allowed with Authorization; another origin is not.
    let preflight = |origin: &str| {
        client()
            .request(reqwest::Method::OPTIONS, format!("{api}/api/me"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .header("Access-Control-Request-Headers", "authorization")
    };
    let res = preflight(app_origin).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["access-control-allow-origin"], app_origin);
    assert!(
        res.headers()["access-control-allow-headers"].to_str().unwrap().contains("authorization")
    );
    let res = preflight("https://evil.example.com").send().await.unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());

    handle.stop(true).await;
    node.stop().await;
}
on_both_backends!(the_actix_example_protects_its_api);

/// The plain HTML page of docs/examples/html-page, in headless Chromium, signs in through
/// Latchkey's browser module and calls the actix example with its session token
/// (tests/e2e/sdk-actix.mjs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_page_calls_the_actix_example_in_chromium() {
    let repo = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    assert!(
        repo.join("tests/e2e/node_modules/playwright-core").is_dir(),
        "tests/e2e/node_modules is missing: run ./scripts/test (or `npm ci --prefix tests/e2e`)"
    );
    let page_port = free_listener().local_addr().unwrap().port();
    let page_origin = format!("http://127.0.0.1:{page_port}");
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let dir = data_dir();
    let node =
        TestServer::start(dir.path(), &db, &[("LATCHKEY_ALLOWED_ORIGINS", &page_origin)]).await;
    let ada = node.user("ada@example.com").await;
    let (_, secret) = node.session(&ada).await;

    let env = [("LATCHKEY_ISSUER", node.base_url.clone()), ("APP_ORIGIN", page_origin.clone())];
    let config =
        actix_api::Config::from_env(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .unwrap();
    let listener = free_listener();
    let api_url = format!("http://{}", listener.local_addr().unwrap());
    let server = actix_api::server(&config, listener).unwrap();
    let handle = server.handle();
    tokio::spawn(server);

    let envs = [
        ("LATCHKEY_URL", node.base_url.clone()),
        ("PAGE_PORT", page_port.to_string()),
        ("API_URL", api_url),
        ("USER_ID", ada.id.clone()),
        ("SESSION_SECRET", secret),
    ];
    let script = repo.join("tests/e2e/sdk-actix.mjs");
    let (passed, report) = node_test(script, Vec::new(), Vec::from(envs)).await;
    assert!(passed, "actix example browser test failed:\n{report}");
    assert!(report.contains("ℹ pass 1"), "the scenario did not run:\n{report}");
    handle.stop(true).await;
    node.stop().await;
}
