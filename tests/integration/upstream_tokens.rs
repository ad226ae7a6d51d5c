//! Upstream token access against the emulator (oidc-provider): the signed-in user's current
//! Google or Microsoft access token (`/v1/me/oauth/{provider}/access-token`) and a back end's
//! (`/v1/users/{id}/oauth/{provider}/access-token` with a client_credentials token), refreshed
//! when it expires (Microsoft's rotated refresh token kept); what a refused refresh does;
//! incremental authorisation from `/account`; disconnecting. Latchkey's clock is moved forward
//! instead of waiting; the emulator's tokens are made to outlive that.

use latchkey_core::{
    Error,
    enterprise::upstream::vault,
    identity::method::Upstream,
    infra::audit::{self, Actor},
    oauth::clients::NewClient,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    pages::{Browser, csrf_in},
    support::Backend,
    upstream_support::{Journey, UpstreamFixture, follow, urlencode},
};

const CONTOSO: &str = "11111111-1111-4111-8111-111111111111";
const CONSUMER: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
const CALENDAR: &str = "https://www.googleapis.com/auth/calendar.readonly";
const CSRF_HEADER: &str = "x-latchkey-csrf";

type Fixture = UpstreamFixture;

async fn fixture(backend: Backend) -> Option<Fixture> {
    UpstreamFixture::start(backend, emulator_config(), &["acme.test", "contoso.test"]).await
}

fn emulator_config() -> Value {
    json!({
        // Access tokens expire after an hour by Latchkey's clock, which the tests move hours
        // ahead: the emulator's ID tokens must outlive that.
        "ttl": { "IdToken": 86400, "AccessToken": 3600 },
        "google": { "users": [
            { "email": "bob@gmail.test", "name": "Bob Roe" },
            { "email": "oscar@gmail.test", "name": "Oscar Poe" },
            { "email": "alice@acme.test", "hd": "acme.test", "name": "Alice Doe" },
        ]},
        "microsoft": {
            "tenants": [ { "tid": CONTOSO, "domains": ["contoso.test"], "name": "Contoso" } ],
            "users": [
                { "tid": CONSUMER, "email": "frank@outlook.test" },
                { "tid": CONTOSO, "email": "carol@contoso.test", "xms_edov": true },
            ],
        },
    })
}

/// Signs in with "Continue with …" (or through an EASIE connection) and returns the user id.
async fn sign_in(f: &Fixture, b: &Browser, start: &str, hint: &str) -> String {
    let q = format!("{start}?login_hint={}&return_to=/account", urlencode(hint));
    let j = follow(&f.node, &b.client, &f.node.url(&q)).await;
    assert_eq!((j.status, j.location.as_deref()), (303, Some("/account")), "{}", j.body);
    let me: Value = b.client.get(f.node.url("/v1/me")).send().await.unwrap().json().await.unwrap();
    me["id"].as_str().unwrap().to_owned()
}

/// GET /v1/me/oauth/{provider}/access-token as a program (the CSRF header, no Origin).
async fn my_token(f: &Fixture, b: &Browser, provider: &str) -> (u16, Value) {
    let url = f.node.url(&format!("/v1/me/oauth/{provider}/access-token"));
    let res = b.client.get(url).header(CSRF_HEADER, "1").send().await.unwrap();
    let status = res.status().as_u16();
    assert_eq!(res.headers()["cache-control"], "no-store");
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn access_token_of(f: &Fixture, b: &Browser, provider: &str) -> String {
    let (status, body) = my_token(f, b, provider).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["provider"], provider);
    body["access_token"].as_str().unwrap().to_owned()
}

/// What the emulator's Google userinfo says of an access token.
async fn google_userinfo(f: &Fixture, token: &str) -> u16 {
    let url = format!("{}/v1/userinfo", f.idp.google_issuer);
    reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap().status().as_u16()
}

async fn audited(f: &Fixture, action: &str) -> Vec<audit::AuditEvent> {
    let events = audit::recent(f.node.core.store.db(), 500).await.unwrap();
    events.into_iter().filter(|e| e.action == action).collect()
}

fn hours(h: u64) -> std::time::Duration {
    std::time::Duration::from_secs(h * 3600)
}

fn minutes(m: u64) -> std::time::Duration {
    std::time::Duration::from_secs(m * 60)
}

async fn the_session_gets_the_current_token_then_a_refreshed_one(backend: Backend) {
    let Some(f) = fixture(backend).await else { return };
    let b = Browser::new(&f.node.base_url);
    let bob = sign_in(&f, &b, "/oauth/start/google", "bob@gmail.test").await;
    let (status, body) = my_token(&f, &b, "google").await;
    assert_eq!(status, 200, "{body}");
    let first = body["access_token"].as_str().unwrap().to_owned();
    let db = f.node.core.store.db();
    let key = f.node.core.store.master_key();
    let grant = vault::find(db, &bob, Upstream::Google).await.unwrap().unwrap();
    assert_eq!(*vault::access_token(key, &grant).unwrap().unwrap(), first);
    assert_eq!(body["expires_at"], grant.access_token_expires_at.unwrap());
    assert!(body["scopes"].as_array().unwrap().iter().any(|s| s == "email"), "{body}");
    assert_eq!(google_userinfo(&f, &first).await, 200, "a token the provider accepts");
    // Until it nears its expiry, the same token, nothing asked upstream.
    f.node.clock.advance(minutes(50));
    assert_eq!(access_token_of(&f, &b, "google").await, first);
    // Within a minute of it: a new one (Google keeps its refresh token).
    f.node.clock.advance(minutes(9) + std::time::Duration::from_secs(30));
    let second = access_token_of(&f, &b, "google").await;
    assert_ne!(second, first);
    assert_eq!(google_userinfo(&f, &second).await, 200);
    let after = vault::find(db, &bob, Upstream::Google).await.unwrap().unwrap();
    assert_eq!(
        *vault::refresh_token(key, &after).unwrap().unwrap(),
        *vault::refresh_token(key, &grant).unwrap().unwrap()
    );
    assert_eq!(access_token_of(&f, &b, "google").await, second, "refreshed once");
    let issued = audited(&f, "upstream.token_issued").await;
    assert_eq!(issued.len(), 4);
    assert!(issued.iter().all(|e| e.actor == format!("user:{bob}")));
    assert!(issued.iter().all(|e| e.target_id.as_deref() == Some(bob.as_str())));
    assert_eq!(issued.iter().filter(|e| e.data["refreshed"] == true).count(), 1);
    assert!(!issued.iter().any(|e| e.data.to_string().contains(&second)), "never the token");

    // Microsoft rotates its refresh token on every use: each new one is kept, or the next
    // refresh would be refused as a replay.
    let mb = Browser::new(&f.node.base_url);
    let frank = sign_in(&f, &mb, "/oauth/start/microsoft", "frank@outlook.test").await;
    let mut token = access_token_of(&f, &mb, "microsoft").await;
    let mut refresh = vault::refresh_token(
        key,
        &vault::find(db, &frank, Upstream::Microsoft).await.unwrap().unwrap(),
    )
    .unwrap()
    .unwrap();
    for _ in 0..2 {
        f.node.clock.advance(hours(2));
        let next = access_token_of(&f, &mb, "microsoft").await;
        assert_ne!(next, token);
        let grant = vault::find(db, &frank, Upstream::Microsoft).await.unwrap().unwrap();
        let rotated = vault::refresh_token(key, &grant).unwrap().unwrap();
        assert_ne!(*rotated, *refresh, "the rotated refresh token replaced the old one");
        (token, refresh) = (next, rotated);
    }
    assert_eq!(access_token_of(&f, &mb, "microsoft").await, token);
    // Requests at once, on this node and on another sharing the store: one refresh (a second
    // use of the old refresh token would be a replay, which revokes the whole grant).
    f.node.clock.advance(hours(2));
    let other = f.node.second_core().await;
    let actor = Actor::user(&frank, None, None);
    let (here, again, there) = tokio::join!(
        f.node.core.upstream.access_token(&frank, Upstream::Microsoft, &actor),
        f.node.core.upstream.access_token(&frank, Upstream::Microsoft, &actor),
        other.upstream.access_token(&frank, Upstream::Microsoft, &actor),
    );
    let fresh: Vec<String> = [here, again, there]
        .into_iter()
        .filter_map(|r| match r {
            Ok(t) => Some(t.access_token.to_string()),
            Err(Error::Unavailable(_)) => None,
            Err(e) => panic!("{e}"),
        })
        .collect();
    // Whichever node wins the refresh answers; the others answer with its token or, while it
    // runs and the old one has expired, ask for a retry.
    assert!(!fresh.is_empty());
    assert!(fresh.iter().all(|t| *t == fresh[0] && *t != token), "{fresh:?}");
    f.node.clock.advance(hours(2));
    assert_ne!(access_token_of(&f, &mb, "microsoft").await, fresh[0], "the grant still works");
    // Bob has no Microsoft account, and there is no such provider.
    assert_eq!(my_token(&f, &b, "microsoft").await.0, 404);
    assert_eq!(my_token(&f, &b, "yahoo").await.0, 404);
    // Counted by outcome (the unknown provider is not a token request).
    let metrics = reqwest::get(f.node.url("/metrics")).await.unwrap().text().await.unwrap();
    let count = |outcome: &str| -> u64 {
        let prefix = format!("latchkey_upstream_access_tokens_total{{outcome=\"{outcome}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0, |n| n.parse().unwrap())
    };
    assert!(count("issued") >= 5, "{metrics}");
    assert_eq!(count("not_connected"), 1, "{metrics}");
    assert!(!metrics.contains(&token), "no token in the metrics");
}

async fn the_session_endpoint_is_a_credentialed_json_api(backend: Backend) {
    let Some(f) = fixture(backend).await else { return };
    let b = Browser::new(&f.node.base_url);
    sign_in(&f, &b, "/oauth/start/google", "bob@gmail.test").await;
    let url = f.node.url("/v1/me/oauth/google/access-token");
    // Neither an Origin nor the CSRF header: a cross-site request could have sent the cookie.
    let res = b.client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let res = b.client.get(&url).header("Origin", "https://evil.example").send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.headers().get("access-control-allow-origin").is_none());
    // Our own origin: CORS for it, with credentials.
    let res = b.client.get(&url).header("Origin", f.node.base_url.clone()).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["access-control-allow-origin"], f.node.base_url.as_str());
    assert_eq!(res.headers()["access-control-allow-credentials"], "true");
    let preflight = b
        .client
        .request(reqwest::Method::OPTIONS, &url)
        .header("Origin", f.node.base_url.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-methods"], "GET");
    // No session.
    let res = reqwest::Client::new().get(&url).header(CSRF_HEADER, "1").send().await.unwrap();
    assert_eq!(res.status(), 401);
}

/// A client_credentials client; `scopes` as registered (none: the defaults).
async fn back_end(f: &Fixture, scopes: &[&str]) -> (String, String) {
    let created = f
        .node
        .core
        .clients
        .create(
            NewClient {
                name: "Back end".into(),
                grant_types: vec!["client_credentials".into()],
                allowed_scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                ..Default::default()
            },
            &Actor::cli(),
        )
        .await
        .unwrap();
    (created.client.client_id, created.client_secret.unwrap())
}

async fn client_token(f: &Fixture, (id, secret): &(String, String), scope: &str) -> (u16, Value) {
    let mut form = vec![("grant_type", "client_credentials")];
    if !scope.is_empty() {
        form.push(("scope", scope));
    }
    let res = reqwest::Client::new()
        .post(f.node.url("/oauth2/token"))
        .basic_auth(id, Some(secret))
        .form(&form)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// GET /v1/users/{user}/oauth/{provider}/access-token: status, challenge, body.
async fn for_user(
    f: &Fixture,
    bearer: Option<&str>,
    user: &str,
    provider: &str,
) -> (u16, Option<String>, Value) {
    let url = f.node.url(&format!("/v1/users/{user}/oauth/{provider}/access-token"));
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.headers()["cache-control"], "no-store");
    let challenge = res.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    (res.status().as_u16(), challenge, res.json().await.unwrap_or(Value::Null))
}

async fn back_ends_need_a_client_token_with_the_scope(backend: Backend) {
    let Some(f) = fixture(backend).await else { return };
    let b = Browser::new(&f.node.base_url);
    let bob = sign_in(&f, &b, "/oauth/start/google", "bob@gmail.test").await;
    let mine = access_token_of(&f, &b, "google").await;
    let allowed = back_end(&f, &["users:oauth_tokens", "reports"]).await;
    let (status, body) = client_token(&f, &allowed, "users:oauth_tokens").await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let (status, _, body) = for_user(&f, Some(&token), &bob, "google").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["access_token"], mine.as_str());
    assert_eq!(body["provider"], "google");
    let issued = audited(&f, "upstream.token_issued").await;
    assert_eq!(issued[0].actor, format!("client:{}", allowed.0));
    assert_eq!(issued[0].target_id.as_deref(), Some(bob.as_str()));
    // No grant for the provider, no such user, no such provider: all 404.
    for (user, provider) in [(&bob, "microsoft"), (&"usr_nobody".to_owned(), "google")] {
        let (status, challenge, body) = for_user(&f, Some(&token), user, provider).await;
        assert_eq!((status, challenge), (404, None), "{body}");
        assert_eq!(body["error"], "not_found");
    }
    assert_eq!(for_user(&f, Some(&token), &bob, "yahoo").await.0, 404);

    // The same client's token without the scope; a client not registered for it.
    let (status, body) = client_token(&f, &allowed, "reports").await;
    assert_eq!(status, 200, "{body}");
    let narrow = body["access_token"].as_str().unwrap().to_owned();
    let (status, challenge, body) = for_user(&f, Some(&narrow), &bob, "google").await;
    assert_eq!((status, body["error"].as_str()), (403, Some("insufficient_scope")));
    assert!(challenge.unwrap().contains("error=\"insufficient_scope\""));
    let other = back_end(&f, &["reports"]).await;
    let (status, body) = client_token(&f, &other, "users:oauth_tokens").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")));
    let (_, body) = client_token(&f, &other, "").await;
    let plain = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(for_user(&f, Some(&plain), &bob, "google").await.0, 403);

    // Not a Latchkey access token at all: no token, garbage, a session token.
    let session = b.client.post(f.node.url("/v1/session/token")).header(CSRF_HEADER, "1");
    let session: Value = session.send().await.unwrap().json().await.unwrap();
    let session = session["jwt"].as_str().unwrap().to_owned();
    for bearer in [None, Some("not-a-token"), Some(session.as_str()), Some(mine.as_str())] {
        let (status, challenge, body) = for_user(&f, bearer, &bob, "google").await;
        assert_eq!(status, 401, "{bearer:?}: {body}");
        assert!(challenge.unwrap().contains("error=\"invalid_token\""));
    }
    // A deleted client's tokens stop at once.
    f.node.core.clients.delete(&allowed.0, &Actor::cli()).await.unwrap();
    assert_eq!(for_user(&f, Some(&token), &bob, "google").await.0, 401);
}

async fn a_refused_refresh_revokes_the_grant(backend: Backend) {
    let Some(f) = fixture(backend).await else { return };
    let db = f.node.core.store.db();
    // A personal account: the grant is revoked, the user told there is no account.
    let b = Browser::new(&f.node.base_url);
    let bob = sign_in(&f, &b, "/oauth/start/google", "bob@gmail.test").await;
    access_token_of(&f, &b, "google").await;
    f.idp.admin("/google/users/bob@gmail.test/suspend", json!({})).await;
    f.node.clock.advance(hours(2));
    assert_eq!(my_token(&f, &b, "google").await.0, 404);
    let grant = vault::find(db, &bob, Upstream::Google).await.unwrap().unwrap();
    assert_eq!(
        (grant.status.as_str(), grant.revoked_reason.as_deref()),
        ("revoked", Some("invalid_grant"))
    );
    assert!(grant.refresh_token_sealed.is_none() && grant.access_token_sealed.is_none());
    assert_eq!(audited(&f, "upstream.grant_revoked").await.len(), 1);
    assert_eq!(b.client.get(f.node.url("/v1/me")).send().await.unwrap().status(), 200);

    // An EASIE account is re-checked before its token is handed out after the interval, and
    // deprovisioned when upstream refuses.
    let connection = f.enroll(Upstream::Google, "acme.test", None).await;
    let a = Browser::new(&f.node.base_url);
    let alice = sign_in(&f, &a, &format!("/easie/{connection}/login"), "alice@acme.test").await;
    let first = access_token_of(&f, &a, "google").await;
    f.node.clock.advance(minutes(11));
    let rechecked = access_token_of(&f, &a, "google").await;
    assert_ne!(rechecked, first, "the re-check's refresh brought a new token");
    f.idp.admin("/google/users/alice@acme.test/suspend", json!({})).await;
    f.node.clock.advance(minutes(11));
    assert_eq!(my_token(&f, &a, "google").await.0, 401);
    let grant = vault::find(db, &alice, Upstream::Google).await.unwrap().unwrap();
    assert_eq!(grant.status, "revoked");
    let gone = audited(&f, "upstream.deprovisioned").await;
    assert_eq!(gone[0].data["reason"], "invalid_grant");
    assert!(f.node.core.sessions.list(Some(&alice), false, 10).await.unwrap().is_empty());
    assert_eq!(a.client.get(f.node.url("/v1/me")).send().await.unwrap().status(), 401);
}

/// Starts "Request more access" from `/account` and follows it to its end.
async fn request_more(f: &Fixture, b: &Browser, provider: &str, scope: &str) -> Journey {
    let path = format!("/account/connected/{provider}/authorize?scope={}", urlencode(scope));
    follow(&f.node, &b.client, &f.node.url(&path)).await
}

async fn grant_scopes(f: &Fixture, user: &str, provider: Upstream) -> Vec<String> {
    let grant = vault::find(f.node.core.store.db(), user, provider).await.unwrap().unwrap();
    grant.scopes.split(' ').map(str::to_owned).collect()
}

async fn more_access_comes_from_the_same_identity_without_a_new_session(backend: Backend) {
    let Some(f) = fixture(backend).await else { return };
    let b = Browser::new(&f.node.base_url);
    let bob = sign_in(&f, &b, "/oauth/start/google", "bob@gmail.test").await;
    let session = b.cookie("latchkey_session").unwrap();
    assert!(!grant_scopes(&f, &bob, Upstream::Google).await.contains(&CALENDAR.to_owned()));
    let j = request_more(&f, &b, "google", CALENDAR).await;
    assert_eq!(j.status, 303, "{}", j.body);
    assert_eq!(j.location.as_deref(), Some("/account?notice=connected"));
    assert_eq!(b.cookie("latchkey_session").unwrap(), session, "no new session");
    assert_eq!(f.node.core.sessions.list(Some(&bob), false, 10).await.unwrap().len(), 1);
    assert!(grant_scopes(&f, &bob, Upstream::Google).await.contains(&CALENDAR.to_owned()));
    let (_, body) = my_token(&f, &b, "google").await;
    assert!(body["scopes"].as_array().unwrap().iter().any(|s| s == CALENDAR), "{body}");
    let (status, page, _) = b.get("/account?notice=connected").await;
    assert_eq!(status, 200);
    assert!(page.contains("Connected accounts") && page.contains(CALENDAR), "{page}");
    assert!(page.contains("bob@gmail.test") && page.contains("Personal"));
    assert!(page.contains("The provider granted the access you asked for."));
    let connected = audited(&f, "upstream.connected").await;
    assert_eq!(connected[0].data["requested"], json!([CALENDAR]));

    // The provider answering for another account is refused, and changes nothing. (From a
    // second browser holding Bob's session, so the emulator has no session to end first.)
    let b2 = Browser::new(&f.node.base_url);
    b2.set_session(&session);
    let start = b2
        .client
        .get(
            f.node
                .url(&format!("/account/connected/google/authorize?scope={}", urlencode(CALENDAR))),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 302);
    let auth = start.headers()["location"].to_str().unwrap().to_owned();
    let j = follow(&f.node, &b2.client, &format!("{auth}&user=oscar%40gmail.test")).await;
    assert_eq!(j.status, 400, "{}", j.body);
    let refused = audited(&f, "upstream.sign_in_rejected").await;
    assert_eq!(refused[0].data["reason"], "connect_identity_mismatch");
    assert!(f.node.core.users.find_by_email("oscar@gmail.test").await.unwrap().is_none());
    assert_eq!(b2.cookie("latchkey_session").unwrap(), session);
    assert!(grant_scopes(&f, &bob, Upstream::Google).await.contains(&CALENDAR.to_owned()));

    // Microsoft, through /common.
    let mb = Browser::new(&f.node.base_url);
    let frank = sign_in(&f, &mb, "/oauth/start/microsoft", "frank@outlook.test").await;
    let j = request_more(&f, &mb, "microsoft", "Calendars.Read").await;
    assert_eq!(j.location.as_deref(), Some("/account?notice=connected"), "{}", j.body);
    let scopes = grant_scopes(&f, &frank, Upstream::Microsoft).await;
    assert!(scopes.contains(&"Calendars.Read".to_owned()), "{scopes:?}");
    assert!(scopes.contains(&"offline_access".to_owned()), "{scopes:?}");

    // Refused before anything starts: bad scopes, a provider not connected, no session.
    let too_many: Vec<String> = (0..21).map(|i| format!("s{i}")).collect();
    for bad in ["", "a\tb", "caf\u{e9}", &too_many.join(" "), &"x".repeat(1025)] {
        let (status, page, _) =
            b.get(&format!("/account/connected/google/authorize?scope={}", urlencode(bad))).await;
        assert_eq!(status, 400, "{bad:?}");
        assert!(page.contains("The access asked for is not valid"), "{page}");
    }
    let (status, page, _) =
        b.get("/account/connected/microsoft/authorize?scope=Calendars.Read").await;
    assert_eq!(status, 404);
    assert!(page.contains("You have no connected Microsoft account."));
    let (status, _, location) =
        Browser::new(&f.node.base_url).get("/account/connected/google/authorize?scope=x").await;
    assert_eq!(status, 303);
    assert!(location.unwrap().starts_with("/sign-in"));

    // An EASIE account asks for more through its own tenant checks, and stays enterprise.
    let connection = f.enroll(Upstream::Microsoft, "contoso.test", Some(CONTOSO)).await;
    let cb = Browser::new(&f.node.base_url);
    let carol = sign_in(&f, &cb, &format!("/easie/{connection}/login"), "carol@contoso.test").await;
    let j = request_more(&f, &cb, "microsoft", "Mail.Read Calendars.Read").await;
    assert_eq!(j.location.as_deref(), Some("/account?notice=connected"), "{}", j.body);
    let grant =
        vault::find(f.node.core.store.db(), &carol, Upstream::Microsoft).await.unwrap().unwrap();
    assert_eq!(grant.connection_id.as_deref(), Some(connection.as_str()));
    assert!(grant.scopes.contains("Mail.Read") && grant.scopes.contains("Calendars.Read"));
    let (_, page, _) = cb.get("/account").await;
    assert!(page.contains("Organisation") && page.contains("Required by your organisation"));
}

async fn disconnecting_forgets_the_tokens(backend: Backend) {
    let Some(f) = fixture(backend).await else { return };
    let db = f.node.core.store.db();
    // Microsoft, from the account page: a CSRF-checked form.
    let b = Browser::new(&f.node.base_url);
    let frank = sign_in(&f, &b, "/oauth/start/microsoft", "frank@outlook.test").await;
    let (_, page, _) = b.get("/account").await;
    assert!(page.contains("/account/connected/microsoft/disconnect"), "{page}");
    let path = "/account/connected/microsoft/disconnect";
    assert_eq!(b.post(path, &[("csrf_token", "forged")]).await.0, StatusCode::FORBIDDEN);
    assert_eq!(grant_status(&f, &frank, Upstream::Microsoft).await, "active");
    let (status, _, location) = b.post(path, &[("csrf_token", &csrf_in(&page))]).await;
    assert_eq!(status, 303);
    assert_eq!(location.as_deref(), Some("/account?notice=disconnected"));
    let grant = vault::find(db, &frank, Upstream::Microsoft).await.unwrap().unwrap();
    assert_eq!(
        (grant.status.as_str(), grant.revoked_reason.as_deref()),
        ("revoked", Some("disconnected"))
    );
    assert!(grant.refresh_token_sealed.is_none());
    assert_eq!(my_token(&f, &b, "microsoft").await.0, 404);
    let (_, page, _) = b.get("/account?notice=disconnected").await;
    assert!(!page.contains("Connected accounts"));
    assert_eq!(audited(&f, "upstream.disconnected").await.len(), 1);
    // Signing in with it again connects it again.
    let again = Browser::new(&f.node.base_url);
    sign_in(&f, &again, "/oauth/start/microsoft", "frank@outlook.test").await;
    assert_eq!(grant_status(&f, &frank, Upstream::Microsoft).await, "active");

    // Google: revoked upstream too (awaited here; the page does not wait for it).
    let gb = Browser::new(&f.node.base_url);
    let bob = sign_in(&f, &gb, "/oauth/start/google", "bob@gmail.test").await;
    let token = access_token_of(&f, &gb, "google").await;
    let actor = Actor::user(&bob, None, None);
    let revocation = f.node.core.upstream.disconnect(&bob, Upstream::Google, &actor).await.unwrap();
    assert_eq!(google_userinfo(&f, &token).await, 200);
    revocation.expect("Google revokes").send().await;
    assert_eq!(google_userinfo(&f, &token).await, 401, "revoked at Google");

    // An organisation's account cannot be disconnected.
    let connection = f.enroll(Upstream::Google, "acme.test", None).await;
    let a = Browser::new(&f.node.base_url);
    let alice = sign_in(&f, &a, &format!("/easie/{connection}/login"), "alice@acme.test").await;
    let (_, page, _) = a.get("/account").await;
    assert!(!page.contains("/account/connected/google/disconnect"));
    let (status, page, _) =
        a.post("/account/connected/google/disconnect", &[("csrf_token", &csrf_in(&page))]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("Your organisation requires this connection"), "{page}");
    assert_eq!(grant_status(&f, &alice, Upstream::Google).await, "active");
}

async fn grant_status(f: &Fixture, user: &str, provider: Upstream) -> String {
    vault::find(f.node.core.store.db(), user, provider).await.unwrap().unwrap().status
}

on_both_backends!(the_session_gets_the_current_token_then_a_refreshed_one);
on_both_backends!(the_session_endpoint_is_a_credentialed_json_api);
on_both_backends!(back_ends_need_a_client_token_with_the_scope);
on_both_backends!(a_refused_refresh_revokes_the_grant);
on_both_backends!(more_access_comes_from_the_same_identity_without_a_new_session);
on_both_backends!(disconnecting_forgets_the_tokens);
