//! Google Cross-Account Protection (RISC) end to end: the emulator signs security event tokens
//! with its published Google key and pushes them to Latchkey's receiver (`/oauth/risc/google`),
//! as Google does. A genuine revocation ends the account's sessions at once (no waiting for
//! the re-check interval), suspends the EASIE membership and is audited; a forged, replayed,
//! wrong-audience, wrong-issuer, unsigned or stale one changes nothing and is audited as
//! refused; `account-enabled` resurrects nothing; one SET delivered to two nodes acts once.
//!
//! The browser helpers are the pattern of `upstream.rs`, kept here so the two files evolve
//! apart.

use latchkey_core::{
    enterprise::upstream::vault,
    identity::method::Upstream,
    infra::{
        audit::{self},
        entity::membership,
    },
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    support::{Backend, TestDb, TestServer, data_dir},
    upstream_idp::GOOGLE_CLIENT,
    upstream_support::{UpstreamFixture, browser, follow, urlencode},
};

const EVENTS: &str = "https://schemas.openid.net/secevent/risc/event-type/";

/// The emulator's Google users, Acme enrolled with acme.test through Google.
struct Fixture {
    base: UpstreamFixture,
    connection: String,
}

impl std::ops::Deref for Fixture {
    type Target = UpstreamFixture;
    fn deref(&self) -> &UpstreamFixture {
        &self.base
    }
}

async fn fixture(backend: Backend) -> Option<Fixture> {
    let config = json!({
        "google": { "users": [
            { "email": "alice@acme.test", "hd": "acme.test", "name": "Alice Doe" },
            { "email": "ann@acme.test", "hd": "acme.test", "name": "Ann Other" },
            { "email": "bob@gmail.test", "name": "Bob Roe" },
        ]},
    });
    let base = UpstreamFixture::start(backend, config, &["acme.test"]).await?;
    let connection = base.enroll(Upstream::Google, "acme.test", None).await;
    Some(Fixture { base, connection })
}

/// Signs in through the EASIE connection (or "Continue with Google" with `social`) in a new
/// browser, and returns it with the user's id.
async fn signed_in(f: &Fixture, email: &str, social: bool) -> (reqwest::Client, String) {
    let b = browser();
    let start = if social {
        "/oauth/start/google".to_owned()
    } else {
        format!("/easie/{}/login", f.connection)
    };
    let url = f.node.url(&format!("{start}?login_hint={}&return_to=/account", urlencode(email)));
    let j = follow(&f.node, &b, &url).await;
    assert_eq!((j.status, j.location.as_deref()), (303, Some("/account")), "sign-in of {email}");
    let me: Value = b.get(f.node.url("/v1/me")).send().await.unwrap().json().await.unwrap();
    (b, me["id"].as_str().unwrap().to_owned())
}

async fn session_token(f: &Fixture, b: &reqwest::Client) -> u16 {
    let res = b
        .post(f.node.url("/v1/session/token"))
        .header("Origin", f.node.base_url.clone())
        .send()
        .await
        .unwrap();
    res.status().as_u16()
}

async fn me_status(f: &Fixture, b: &reqwest::Client) -> u16 {
    b.get(f.node.url("/v1/me")).send().await.unwrap().status().as_u16()
}

async fn membership_status(f: &Fixture, user_id: &str) -> String {
    membership::Entity::find()
        .filter(membership::Column::UserId.eq(user_id))
        .filter(membership::Column::OrgId.eq(f.org_id.as_str()))
        .one(f.node.core.store.db())
        .await
        .unwrap()
        .unwrap()
        .status
}

async fn grant(f: &Fixture, user_id: &str) -> latchkey_core::infra::entity::upstream_grant::Model {
    vault::find(f.node.core.store.db(), user_id, Upstream::Google).await.unwrap().unwrap()
}

fn receiver(node_url: &str) -> String {
    format!("{node_url}/oauth/risc/google")
}

/// Has the emulator sign a SET (`request` in its admin API's format, `client_id` defaulting
/// to Latchkey's) and push it to this node; returns (status, body as JSON or null, the SET).
async fn push(f: &Fixture, mut request: Value) -> (u16, Value, String) {
    if request.get("client_id").is_none() {
        request["client_id"] = json!(GOOGLE_CLIENT.0);
    }
    request["deliver_to"] = json!(receiver(&f.node.base_url));
    let answer = f.idp.admin("/google/risc", request).await;
    let delivery = &answer["delivery"];
    let body = serde_json::from_str(delivery["body"].as_str().unwrap()).unwrap_or(Value::Null);
    let status = u16::try_from(delivery["status"].as_u64().unwrap()).unwrap();
    (status, body, answer["set"].as_str().unwrap().to_owned())
}

/// POSTs a SET (or anything) to a receiver as Google's transmitter would.
async fn post_set(url: &str, set: &str) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/secevent+jwt")
        .body(set.to_owned())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// The `upstream.security_event` audit events, newest first.
async fn security_events(f: &Fixture) -> Vec<Value> {
    audit::recent(f.node.core.store.db(), 500)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "upstream.security_event")
        .map(|e| e.data)
        .collect()
}

async fn deprovisions(f: &Fixture) -> Vec<Value> {
    audit::recent(f.node.core.store.db(), 500)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "upstream.deprovisioned")
        .map(|e| e.data)
        .collect()
}

/// A refused SET: 400 with the RFC 8935 error, audited with its reason, nothing changed.
async fn assert_refused(f: &Fixture, answer: &(u16, Value), err: &str, reason: &str) {
    assert_eq!(answer.0, 400, "{reason}: {}", answer.1);
    assert_eq!(answer.1["err"], err, "{reason}: {}", answer.1);
    assert!(answer.1["description"].as_str().is_some_and(|d| !d.is_empty()));
    let last = security_events(f).await.into_iter().next().unwrap();
    assert_eq!(last["outcome"], "refused");
    assert_eq!(last["reason"], reason, "{last}");
    assert_eq!(last["err"], err);
}

/// A SET signed with the emulator's Google key exactly as given (header and claims).
async fn signed(f: &Fixture, header: Value, claims: Value, extra: Value) -> String {
    let mut request = json!({ "family": "google", "claims": claims, "header": header });
    if let (Some(r), Some(e)) = (request.as_object_mut(), extra.as_object()) {
        r.extend(e.clone());
    }
    f.idp.admin("/sign", request).await["jwt"].as_str().unwrap().to_owned()
}

fn disabled_claims(f: &Fixture, sub: &str, jti: &str, iat: i64) -> Value {
    json!({
        "iss": f.idp.google_issuer, "aud": GOOGLE_CLIENT.0, "jti": jti, "iat": iat,
        "events": { format!("{EVENTS}account-disabled"): {
            "subject": { "subject_type": "iss-sub", "iss": f.idp.google_issuer, "sub": sub },
        }},
    })
}

/// Every way a SET can be wrong, each refused with its reason while the session lives on.
async fn assert_bad_sets_change_nothing(f: &Fixture, b: &reqwest::Client, sub: &str) {
    let alice = "alice@acme.test";
    let disabled = |extra: Value| {
        let mut r = json!({ "user": alice, "event": "account-disabled" });
        r.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        r
    };
    let forged = push(f, disabled(json!({ "forged": true }))).await;
    assert_refused(f, &(forged.0, forged.1), "authentication_failed", "signature_invalid").await;
    let other = push(f, disabled(json!({ "client_id": "other-client" }))).await;
    assert_refused(f, &(other.0, other.1), "invalid_audience", "aud_mismatch").await;
    let evil = push(f, disabled(json!({ "iss": "http://127.0.0.1:1/evil" }))).await;
    assert_refused(f, &(evil.0, evil.1), "invalid_issuer", "issuer_mismatch").await;
    let now = f.node.core.store.now();
    let stale = push(f, disabled(json!({ "iat": now - 8 * 86_400 }))).await;
    assert_refused(f, &(stale.0, stale.1), "invalid_request", "set_too_old").await;
    let future = push(f, disabled(json!({ "iat": now + 3600 }))).await;
    assert_refused(f, &(future.0, future.1), "invalid_request", "iat_invalid").await;
    // Crafted: a kid Google never published (after one refetch of its keys), no signature.
    let url = receiver(&f.node.base_url);
    let claims = disabled_claims(f, sub, "crafted-1", now);
    let unknown = signed(f, json!({ "kid": "not-published" }), claims.clone(), json!({})).await;
    assert_refused(f, &post_set(&url, &unknown).await, "invalid_key", "signature_key_unknown")
        .await;
    let none = signed(f, json!({}), claims.clone(), json!({ "alg": "none" })).await;
    let refused = "signature_algorithm_refused";
    assert_refused(f, &post_set(&url, &none).await, "invalid_key", refused).await;
    assert_refused(f, &post_set(&url, "not a jwt").await, "invalid_request", "set_malformed").await;
    // A SET for several receivers is no SET for us.
    let mut shared = claims;
    shared["aud"] = json!([GOOGLE_CLIENT.0, "other-client"]);
    let shared = signed(f, json!({}), shared, json!({})).await;
    assert_refused(f, &post_set(&url, &shared).await, "invalid_audience", "aud_mismatch").await;
    // Not a SET delivery at all: refused before anything is read.
    let res = reqwest::Client::new()
        .post(&url)
        .header("Content-Type", "application/json")
        .body(unknown)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["err"], "invalid_request");
    assert_eq!(session_token(f, b).await, 200, "no bad SET revoked anything");
    assert!(deprovisions(f).await.is_empty());
}

async fn account_disabled_revokes_at_once_and_bad_sets_change_nothing(backend: Backend) {
    let Some(f) = fixture(backend).await else { return };
    let (b, alice) = signed_in(&f, "alice@acme.test", false).await;
    let (ann_browser, ann) = signed_in(&f, "ann@acme.test", false).await;
    assert_eq!(session_token(&f, &b).await, 200);
    let sub = grant(&f, &alice).await.subject;
    assert_bad_sets_change_nothing(&f, &b, &sub).await;
    assert_eq!(grant(&f, &alice).await.status, "active");

    // The genuine event: at once, without moving the clock past the re-check interval.
    let request = json!({ "user": "alice@acme.test", "event": "account-disabled",
                          "reason": "hijacking", "jti": "risc-jti-1" });
    let (status, _, set) = push(&f, request.clone()).await;
    assert_eq!(status, 202);
    assert_eq!(session_token(&f, &b).await, 401);
    assert_eq!(me_status(&f, &b).await, 401);
    let live = f.node.core.sessions.list(Some(&alice), false, 100).await.unwrap();
    assert!(live.is_empty(), "{live:?}");
    assert_eq!(membership_status(&f, &alice).await, "suspended");
    let g = grant(&f, &alice).await;
    assert_eq!(
        (g.status.as_str(), g.revoked_reason.as_deref()),
        ("revoked", Some("risc_account_disabled"))
    );
    assert!(g.refresh_token_sealed.is_none() && g.access_token_sealed.is_none());
    let gone = deprovisions(&f).await;
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0]["reason"], "risc_account_disabled");
    assert_eq!(gone[0]["detail"], "hijacking");
    assert_eq!(gone[0]["membership_suspended"], true);
    assert_eq!(gone[0]["sessions_ended"], 1);
    let seen = security_events(&f).await.into_iter().next().unwrap();
    assert_eq!(seen["outcome"], "revoked");
    assert_eq!(seen["jti"], "risc-jti-1");
    assert_eq!(seen["events"][0]["type"], format!("{EVENTS}account-disabled"));
    assert_eq!(seen["events"][0]["subject"]["sub"], sub.as_str());
    assert_eq!(seen["grants_revoked"], json!([g.id]));
    // Another member of the organisation is untouched.
    assert_eq!(session_token(&f, &ann_browser).await, 200);
    assert_eq!(membership_status(&f, &ann).await, "active");

    // Replayed: the same SET again, and a new one with the same jti.
    let url = receiver(&f.node.base_url);
    assert_refused(&f, &post_set(&url, &set).await, "invalid_request", "jti_replayed").await;
    let again = push(&f, request).await;
    assert_refused(&f, &(again.0, again.1), "invalid_request", "jti_replayed").await;
    let replayed = security_events(&f).await.into_iter().next().unwrap();
    assert_eq!(replayed["jti"], "risc-jti-1", "a verified replay is audited with what it says");

    // Re-enabled upstream: acknowledged, nothing comes back.
    let enabled = push(&f, json!({ "user": "alice@acme.test", "event": "account-enabled" })).await;
    assert_eq!(enabled.0, 202);
    assert_eq!(security_events(&f).await[0]["outcome"], "no_action");
    assert_eq!(session_token(&f, &b).await, 401);
    assert_eq!(membership_status(&f, &alice).await, "suspended");
    assert_eq!(grant(&f, &alice).await.status, "revoked");
    // Unknown event types and revocations of accounts unknown here are acknowledged too.
    let unknown = push(&f, json!({ "sub": "1234", "event": "token-revoked" })).await;
    assert_eq!(unknown.0, 202);
    assert_eq!(security_events(&f).await[0]["outcome"], "ignored");
    let stranger = push(&f, json!({ "sub": "1234", "event": "account-purged" })).await;
    assert_eq!(stranger.0, 202);
    assert_eq!(security_events(&f).await[0]["outcome"], "unmatched");
    assert_eq!(deprovisions(&f).await.len(), 1);

    // Only a new valid sign-in makes a new session, and the membership active again.
    let (b2, same) = signed_in(&f, "alice@acme.test", false).await;
    assert_eq!(same, alice);
    assert_eq!(session_token(&f, &b2).await, 200);
    assert_eq!(membership_status(&f, &alice).await, "active");
    let metrics = reqwest::get(f.node.url("/metrics")).await.unwrap().text().await.unwrap();
    for line in [
        "latchkey_upstream_security_events_total{outcome=\"revoked\"} 1",
        "latchkey_upstream_security_events_total{outcome=\"jti_replayed\"} 2",
        "latchkey_upstream_security_events_total{outcome=\"signature_invalid\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

async fn consumer_google_sessions_end_too(backend: Backend) {
    let Some(f) = fixture(backend).await else { return };
    let (bob_browser, bob) = signed_in(&f, "bob@gmail.test", true).await;
    let (alice_browser, _) = signed_in(&f, "alice@acme.test", false).await;
    assert_eq!(grant(&f, &bob).await.connection_id, None);
    let answer = push(&f, json!({ "user": "bob@gmail.test", "event": "sessions-revoked" })).await;
    assert_eq!(answer.0, 202);
    assert_eq!(me_status(&f, &bob_browser).await, 401);
    let g = grant(&f, &bob).await;
    assert_eq!(
        (g.status.as_str(), g.revoked_reason.as_deref()),
        ("revoked", Some("risc_sessions_revoked"))
    );
    let gone = deprovisions(&f).await;
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0]["sessions_ended"], 1);
    assert_eq!(gone[0]["membership_suspended"], false);
    // Someone else's Google session is not Bob's.
    assert_eq!(session_token(&f, &alice_browser).await, 200);
    // Bob signs in again: a new session.
    let (again, same) = signed_in(&f, "bob@gmail.test", true).await;
    assert_eq!(same, bob);
    assert_eq!(me_status(&f, &again).await, 200);
}

async fn one_set_delivered_to_two_nodes_acts_once(backend: Backend) {
    let Some(f) = fixture(backend).await else { return };
    let (b, alice) = signed_in(&f, "alice@acme.test", false).await;
    let second = f.node.second_core().await;
    let listener = crate::support::free_listener();
    let other = format!("http://{}", listener.local_addr().unwrap());
    let server = latchkey_web::start(second, listener).unwrap();
    let handle = server.handle();
    tokio::spawn(server);
    // Signed once, delivered many times to both nodes at once.
    let request = json!({ "client_id": GOOGLE_CLIENT.0, "user": "alice@acme.test",
                          "event": "account-purged" });
    let set = f.idp.admin("/google/risc", request).await["set"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let url = receiver(if i % 2 == 0 { &f.node.base_url } else { &other });
        let set = set.clone();
        tasks.push(tokio::spawn(async move { post_set(&url, &set).await }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let accepted = answers.iter().filter(|(s, _)| *s == 202).count();
    let replays = answers.iter().filter(|(s, body)| *s == 400 && body["err"] == "invalid_request");
    assert_eq!(accepted, 1, "{answers:?}");
    assert_eq!(replays.count(), 19, "{answers:?}");
    assert_eq!(deprovisions(&f).await.len(), 1);
    let outcomes: Vec<Value> =
        security_events(&f).await.iter().map(|e| e["outcome"].clone()).collect();
    assert_eq!(outcomes.iter().filter(|o| *o == "revoked").count(), 1, "{outcomes:?}");
    assert_eq!(session_token(&f, &b).await, 401);
    assert_eq!(grant(&f, &alice).await.revoked_reason.as_deref(), Some("risc_account_purged"));
    handle.stop(true).await;
    // Expired replay keys are purged; fresh ones stay.
    assert_eq!(f.node.core.upstream.purge_event_ids().await.unwrap(), 0);
    f.node.clock.advance(std::time::Duration::from_secs(8 * 86_400));
    assert_eq!(f.node.core.upstream.purge_event_ids().await.unwrap(), 1);
}

on_both_backends!(account_disabled_revokes_at_once_and_bad_sets_change_nothing);
on_both_backends!(consumer_google_sessions_end_too);
on_both_backends!(one_set_delivered_to_two_nodes_acts_once);

/// Without a Google client there is no audience to check against: every SET is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_google_refuses_every_set() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let data = data_dir();
    let node = TestServer::start(data.path(), &db, &[]).await;
    let (status, body) = post_set(&receiver(&node.base_url), "e30.e30.c2ln").await;
    assert_eq!((status, body["err"].as_str()), (400, Some("access_denied")), "{body}");
    let events = audit::recent(node.core.store.db(), 10).await.unwrap();
    let refused = events.iter().find(|e| e.action == "upstream.security_event").unwrap();
    assert_eq!(refused.data["reason"], "provider_not_configured");
    node.stop().await;
}
