//! Google and Microsoft sign-in end to end over HTTP against the emulator (oidc-provider):
//! consumer social sign-in with linking and the token vault, EASIE enterprise sign-in with
//! just-in-time provisioning, and the refusals the tenant checks owe, each with its audited
//! reason. The browser is a cookie-keeping HTTP client that follows redirects by hand, so each
//! hop (and the callback URL, for replay) is visible.

use latchkey_core::{
    enterprise::upstream::{Pace, vault},
    identity::method::Upstream,
    infra::audit::{self, Actor},
};
use sea_orm::EntityTrait;
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    support::Backend,
    upstream_support::{Journey, UpstreamFixture, browser, follow, urlencode},
};

const CONTOSO: &str = "11111111-1111-4111-8111-111111111111";
const FABRIKAM: &str = "22222222-2222-4222-8222-222222222222";
const CONSUMER: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

type Fixture = UpstreamFixture;

async fn fixture(backend: Backend) -> Option<Fixture> {
    UpstreamFixture::start(backend, emulator_config(), &["acme.test", "contoso.test"]).await
}

fn emulator_config() -> Value {
    json!({
        // The tests move Latchkey's clock hours ahead of the emulator's: its tokens must
        // outlive that.
        "ttl": { "IdToken": 86400, "AccessToken": 86400 },
        "google": { "users": [
            { "email": "alice@acme.test", "hd": "acme.test", "name": "Alice Doe" },
            { "email": "bob@gmail.test", "name": "Bob Roe" },
            // A consumer Google account on the enrolled domain (no `hd`).
            { "email": "mallory@acme.test", "name": "Mallory" },
            { "email": "eve@acme.test", "hd": "acme.test", "email_verified": false },
            { "email": "alice+x@acme.test", "hd": "acme.test" },
            // A Workspace of another domain claiming an address on the enrolled one.
            { "email": "trudy@acme.test", "hd": "evil.test" },
            { "email": "erin@acme.test", "hd": "acme.test" },
        ]},
        "microsoft": {
            "tenants": [
                { "tid": CONTOSO, "domains": ["contoso.test"], "name": "Contoso" },
                { "tid": FABRIKAM, "domains": ["fabrikam.test"], "name": "Fabrikam" },
            ],
            "users": [
                { "tid": CONTOSO, "email": "carol@contoso.test", "name": "Carol Lee", "xms_edov": true,
                  "oid": CONTOSO_CAROL },
                { "tid": CONTOSO, "email": "dave@fabrikam.test", "acct": 1,
                  "preferred_username": "dave_fabrikam.test#EXT#@contoso.test" },
                { "tid": FABRIKAM, "email": "carol@contoso.test", "name": "Carol Impostor",
                  "oid": FABRIKAM_CAROL },
                { "tid": CONSUMER, "email": "frank@outlook.test" },
                { "tid": CONSUMER, "email": "grace@contoso.test" },
                { "tid": CONTOSO, "email": "alice@acme.test" },
            ],
        },
    })
}

async fn social(f: &Fixture, b: &reqwest::Client, provider: &str, hint: &str) -> Journey {
    let q = format!("/oauth/start/{provider}?login_hint={}&return_to=/account", urlencode(hint));
    follow(&f.node, b, &f.node.url(&q)).await
}

async fn easie(f: &Fixture, b: &reqwest::Client, connection: &str, hint: &str) -> Journey {
    let q = format!("/easie/{connection}/login?login_hint={}&return_to=/account", urlencode(hint));
    follow(&f.node, b, &f.node.url(&q)).await
}

async fn me(f: &Fixture, b: &reqwest::Client) -> Value {
    let res = b.get(f.node.url("/v1/me")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

fn assert_signed_in(j: &Journey) {
    assert_eq!(j.status, 303, "{}", j.body);
    assert_eq!(j.location.as_deref(), Some("/account"));
}

/// The reasons of the refusals audited so far, newest first.
async fn refusals(f: &Fixture) -> Vec<String> {
    audit::recent(f.node.core.store.db(), 500)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "upstream.sign_in_rejected")
        .map(|e| e.data["reason"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn assert_refused(f: &Fixture, j: &Journey, reason: &str) {
    assert_eq!(j.status, 400, "expected a refusal ({reason}), got: {}", j.body);
    assert!(j.body.contains("ref_"), "the page names a reference: {}", j.body);
    assert_eq!(refusals(f).await.first().map(String::as_str), Some(reason));
}

async fn social_sign_in_provisions_links_and_keeps_the_grant(backend: Backend) {
    let Some(f) = fixture(backend).await else { return };
    let b = browser();
    let j = social(&f, &b, "google", "bob@gmail.test").await;
    assert_signed_in(&j);
    let first = me(&f, &b).await;
    assert_eq!(first["email"], "bob@gmail.test");
    let user_id = first["id"].as_str().unwrap().to_owned();
    let db = f.node.core.store.db();
    let grant = vault::find(db, &user_id, Upstream::Google).await.unwrap().unwrap();
    assert_eq!(grant.connection_id, None);
    assert_eq!(grant.next_check_at, None, "consumer grants are not re-checked");
    let key = f.node.core.store.master_key();
    let refresh = vault::refresh_token(key, &grant).unwrap().expect("a refresh token is kept");
    assert!(!grant.refresh_token_sealed.as_deref().unwrap().contains(refresh.as_str()));
    // The same Google account again, from another browser: the same user, one identity.
    let b2 = browser();
    assert_signed_in(&social(&f, &b2, "google", "bob@gmail.test").await);
    assert_eq!(me(&f, &b2).await["id"], user_id.as_str());
    let ids = latchkey_core::identity::external::of_user(db, &user_id).await.unwrap();
    assert_eq!(ids.len(), 1);
    // A Microsoft personal account is a social sign-in too, through /common.
    let b3 = browser();
    assert_signed_in(&social(&f, &b3, "microsoft", "frank@outlook.test").await);
    let frank = me(&f, &b3).await;
    assert_ne!(frank["id"], user_id.as_str());
    // Microsoft vouches for no address without xms_edov: the new account's is unverified.
    assert_eq!(frank["email"], "frank@outlook.test");
    assert_eq!(frank["email_verified"], false);
    assert_eq!(first["email_verified"], true);
}

async fn enterprise_google_provisions_members_just_in_time(backend: Backend) {
    let Some(f) = fixture(backend).await else { return };
    let connection = f.enroll(Upstream::Google, "acme.test", None).await;
    let b = browser();
    assert_signed_in(&easie(&f, &b, &connection, "alice@acme.test").await);
    let alice = me(&f, &b).await;
    let user_id = alice["id"].as_str().unwrap().to_owned();
    assert_eq!(alice["email"], "alice@acme.test");
    let orgs = f.node.core.orgs.list_for_user(&user_id).await.unwrap();
    assert_eq!(orgs.len(), 1, "the enrollment's organisation made her a member");
    let grant =
        vault::find(f.node.core.store.db(), &user_id, Upstream::Google).await.unwrap().unwrap();
    assert_eq!(grant.connection_id.as_deref(), Some(connection.as_str()));
    assert!(grant.next_check_at.is_some(), "EASIE grants are re-checked");
    // "Continue with Google" with the same Workspace account is still an enterprise sign-in:
    // the claims decide, not the button.
    let b2 = browser();
    assert_signed_in(&social(&f, &b2, "google", "alice@acme.test").await);
    assert_eq!(me(&f, &b2).await["id"], user_id.as_str());
    let sessions = f.node.core.sessions.list(Some(&user_id), false, 100).await.unwrap();
    assert!(
        sessions.iter().all(|s| s.auth_method.to_stored() == format!("oidc:google:{connection}")),
        "{sessions:?}"
    );
}

async fn enterprise_google_refusals_are_audited(backend: Backend) {
    let Some(f) = fixture(backend).await else { return };
    let connection = f.enroll(Upstream::Google, "acme.test", None).await;
    let cases = [
        ("mallory@acme.test", "consumer_account_on_enrolled_domain"),
        ("eve@acme.test", "email_unverified"),
        ("alice+x@acme.test", "sub_addressing"),
        ("trudy@acme.test", "hd_mismatch"),
    ];
    for (who, reason) in cases {
        for start in ["social", "easie"] {
            let b = browser();
            let j = match start {
                "social" => social(&f, &b, "google", who).await,
                _ => easie(&f, &b, &connection, who).await,
            };
            assert_refused(&f, &j, reason).await;
        }
    }
    // A Microsoft account claiming an address of the Google-enrolled domain.
    let b = browser();
    let j = social(&f, &b, "microsoft", "alice@acme.test").await;
    assert_refused(&f, &j, "other_provider_for_enrolled_domain").await;
    assert!(f.node.core.users.find_by_email("mallory@acme.test").await.unwrap().is_none());
}

async fn enterprise_microsoft_checks_the_pinned_tenant(backend: Backend) {
    let Some(f) = fixture(backend).await else { return };
    let connection = f.enroll(Upstream::Microsoft, "contoso.test", Some(CONTOSO)).await;
    let b = browser();
    assert_signed_in(&easie(&f, &b, &connection, CONTOSO_CAROL).await);
    let carol = me(&f, &b).await;
    assert_eq!(carol["email"], "carol@contoso.test");
    // A guest of the tenant, another tenant's user with the same address, a personal account.
    let b = browser();
    assert_refused(&f, &easie(&f, &b, &connection, "dave@fabrikam.test").await, "guest_account")
        .await;
    let b = browser();
    let j = social(&f, &b, "microsoft", FABRIKAM_CAROL).await;
    assert_refused(&f, &j, "tenant_mismatch").await;
    let b = browser();
    let j = social(&f, &b, "microsoft", "grace@contoso.test").await;
    assert_refused(&f, &j, "consumer_account_on_enrolled_domain").await;
    // Carol through /common is the same enterprise identity: the same account.
    let b = browser();
    assert_signed_in(&social(&f, &b, "microsoft", CONTOSO_CAROL).await);
    assert_eq!(me(&f, &b).await["id"], carol["id"]);
}

/// The same address in two tenants: `/common` is told which account by its oid.
const CONTOSO_CAROL: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const FABRIKAM_CAROL: &str = "bbbbbbbb-0000-4000-8000-000000000002";

async fn state_is_single_use_and_bound_to_the_browser(backend: Backend) {
    let Some(f) = fixture(backend).await else { return };
    let b = browser();
    let j = social(&f, &b, "google", "bob@gmail.test").await;
    assert_signed_in(&j);
    let callback = j.callback.expect("passed through the callback");
    // Replayed in the same browser, and in another one.
    for b in [&b, &browser()] {
        let res = b.get(&callback).send().await.unwrap();
        assert_eq!(res.status(), 400);
        assert_eq!(refusals(&f).await.first().map(String::as_str), Some("state_unknown"));
    }
    // A provider error is refused with its code, after consuming the state.
    let b = browser();
    let start =
        b.get(f.node.url("/oauth/start/google?login_hint=bob@gmail.test")).send().await.unwrap();
    let auth = start.headers()["location"].to_str().unwrap().to_owned();
    let state = reqwest::Url::parse(&auth)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let denied = format!("/oauth/callback/google?error=access_denied&state={state}");
    let res = b.get(f.node.url(&denied)).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(refusals(&f).await.first().map(String::as_str), Some("upstream_error"));
    // The answer for one provider at the other's callback.
    let b = browser();
    let start = b.get(f.node.url("/oauth/start/google")).send().await.unwrap();
    let auth = start.headers()["location"].to_str().unwrap().to_owned();
    let state = reqwest::Url::parse(&auth)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let res = b
        .get(f.node.url(&format!("/oauth/callback/microsoft?code=x&state={state}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(refusals(&f).await.first().map(String::as_str), Some("pending_request_mismatch"));
    drop(f.idp);
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

fn minutes(m: u64) -> std::time::Duration {
    std::time::Duration::from_secs(m * 60)
}

async fn deprovisioned_upstream_ends_sessions_and_nothing_resurrects_them(backend: Backend) {
    let Some(f) = fixture(backend).await else { return };
    let connection = f.enroll(Upstream::Google, "acme.test", None).await;
    let b = browser();
    assert_signed_in(&easie(&f, &b, &connection, "alice@acme.test").await);
    let alice = me(&f, &b).await["id"].as_str().unwrap().to_owned();
    assert_eq!(session_token(&f, &b).await, 200);
    // Suspended upstream: nothing changes until the interval is over...
    f.idp.admin("/google/users/alice@acme.test/suspend", json!({})).await;
    assert_eq!(session_token(&f, &b).await, 200);
    f.node.clock.advance(minutes(11));
    // ...then the next token request re-checks, is refused, and the sessions are gone.
    assert_eq!(session_token(&f, &b).await, 401);
    let db = f.node.core.store.db();
    let grant = vault::find(db, &alice, Upstream::Google).await.unwrap().unwrap();
    assert_eq!(grant.status, "revoked");
    assert_eq!(grant.revoked_reason.as_deref(), Some("invalid_grant"));
    assert!(grant.refresh_token_sealed.is_none(), "a revoked grant keeps no token");
    let live = f.node.core.sessions.list(Some(&alice), false, 100).await.unwrap();
    assert!(live.is_empty(), "{live:?}");
    let events = audit::recent(db, 100).await.unwrap();
    let gone = events.iter().find(|e| e.action == "upstream.deprovisioned").unwrap();
    assert_eq!(gone.data["membership_suspended"], true);
    assert_eq!(gone.data["reason"], "invalid_grant");
    assert_eq!(membership_status(&f, &alice).await, "suspended");
    // Reinstated upstream: the old session stays dead.
    f.idp.admin("/google/users/alice@acme.test/reinstate", json!({})).await;
    f.node.clock.advance(minutes(11));
    assert_eq!(session_token(&f, &b).await, 401);
    assert_eq!(me_status(&f, &b).await, 401);
    // A new valid sign-in is a new session, and the membership is active again.
    let b2 = browser();
    assert_signed_in(&easie(&f, &b2, &connection, "alice@acme.test").await);
    assert_eq!(session_token(&f, &b2).await, 200);
    assert_eq!(membership_status(&f, &alice).await, "active");
}

async fn membership_status(f: &Fixture, user_id: &str) -> String {
    use latchkey_core::infra::entity::membership;
    use sea_orm::{ColumnTrait, QueryFilter};
    membership::Entity::find()
        .filter(membership::Column::UserId.eq(user_id))
        .filter(membership::Column::OrgId.eq(f.org_id.as_str()))
        .one(f.node.core.store.db())
        .await
        .unwrap()
        .unwrap()
        .status
}

async fn me_status(f: &Fixture, b: &reqwest::Client) -> u16 {
    b.get(f.node.url("/v1/me")).send().await.unwrap().status().as_u16()
}

async fn an_upstream_outage_is_tolerated_for_the_grace_then_fails_closed(backend: Backend) {
    let Some(f) = fixture(backend).await else { return };
    let connection = f.enroll(Upstream::Microsoft, "contoso.test", Some(CONTOSO)).await;
    let b = browser();
    assert_signed_in(&easie(&f, &b, &connection, CONTOSO_CAROL).await);
    let carol = me(&f, &b).await["id"].as_str().unwrap().to_owned();
    let db = f.node.core.store.db();
    let first = vault::find(db, &carol, Upstream::Microsoft).await.unwrap().unwrap();
    // A check while upstream answers rotates Microsoft's refresh token.
    f.node.clock.advance(minutes(11));
    assert_eq!(session_token(&f, &b).await, 200);
    let key = f.node.core.store.master_key();
    let second = vault::find(db, &carol, Upstream::Microsoft).await.unwrap().unwrap();
    assert_ne!(
        *vault::refresh_token(key, &first).unwrap().unwrap(),
        *vault::refresh_token(key, &second).unwrap().unwrap(),
        "the rotated refresh token replaced the old one"
    );
    f.idp.admin("/microsoft/outage", json!({ "status": 503 })).await;
    f.node.clock.advance(minutes(11));
    assert_eq!(session_token(&f, &b).await, 200, "inside the grace");
    f.node.clock.advance(minutes(40));
    assert_eq!(session_token(&f, &b).await, 200, "still inside the grace");
    f.node.clock.advance(minutes(15));
    assert_eq!(session_token(&f, &b).await, 401, "beyond the grace: fail closed");
    let live = f.node.core.sessions.list(Some(&carol), false, 100).await.unwrap();
    assert_eq!(live.len(), 1, "an outage revokes nothing");
    // Upstream back: the next check succeeds and the session works again.
    f.idp.admin_delete("/microsoft/outage").await;
    f.node.clock.advance(minutes(6));
    assert_eq!(session_token(&f, &b).await, 200);
    assert!(f.node.core.upstream.unavailable_count() >= 2);
    let metrics = reqwest::get(f.node.url("/metrics")).await.unwrap().text().await.unwrap();
    let line = metrics.lines().find(|l| l.starts_with("latchkey_upstream_unavailable_total"));
    let count: u64 = line.and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0);
    assert!(count >= 2, "{line:?}");
}

/// The background sweep re-checks grants shortly before they fall due, so token requests
/// rarely wait for upstream; a suspended account is revoked by the sweep alone.
async fn the_sweep_rechecks_ahead_and_revokes_without_a_request(backend: Backend) {
    let Some(f) = fixture(backend).await else { return };
    let connection = f.enroll(Upstream::Google, "acme.test", None).await;
    let (alice, erin) = (browser(), browser());
    assert_signed_in(&easie(&f, &alice, &connection, "alice@acme.test").await);
    assert_signed_in(&easie(&f, &erin, &connection, "erin@acme.test").await);
    let up = &f.node.core.upstream;
    // Nothing is due right after sign-in.
    assert_eq!(up.recheck_due(4, Pace::UNPACED).await.unwrap().checked, 0);
    f.idp.admin("/google/users/alice@acme.test/suspend", json!({})).await;
    // Inside the sweep's lead (half the interval, at most five minutes), it checks ahead.
    f.node.clock.advance(minutes(6));
    let report = up.recheck_due(4, Pace::UNPACED).await.unwrap();
    assert_eq!((report.checked, report.revoked, report.kept), (2, 1, 1), "{report:?}");
    assert_eq!(session_token(&f, &alice).await, 401);
    // Erin's grant was refreshed ahead: past the interval, her token needs no upstream call.
    f.idp.admin("/google/outage", json!({ "status": 503 })).await;
    f.node.clock.advance(minutes(2));
    assert_eq!(session_token(&f, &erin).await, 200);
    assert_eq!(up.unavailable_count(), 0, "no upstream request was needed");
    assert_eq!(
        up.recheck_due(4, Pace::UNPACED).await.unwrap().checked,
        0,
        "revoked grants are done"
    );
}

/// Follows redirects from `url` until the provider sends the browser to Latchkey's callback;
/// returns that URL without requesting it.
async fn until_callback(f: &Fixture, b: &reqwest::Client, url: &str) -> String {
    let mut url = url.to_owned();
    for _ in 0..25 {
        if url.starts_with(&f.node.url("/oauth/callback/")) {
            return url;
        }
        let res = b.get(&url).send().await.unwrap();
        let loc = res.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
        let loc = loc.unwrap_or_else(|| panic!("{url}: {}", res.status()));
        url = reqwest::Url::parse(&url).unwrap().join(&loc).unwrap().to_string();
    }
    panic!("never reached the callback");
}

/// First sign-ins of one new member race (four tabs answering at once): one account and one
/// membership come out, and both browsers are signed in to it.
async fn racing_first_sign_ins_provision_once(backend: Backend) {
    let Some(f) = fixture(backend).await else { return };
    let connection = f.enroll(Upstream::Google, "acme.test", None).await;
    let second = f.node.second_core().await;
    let start =
        format!("/easie/{connection}/login?login_hint=alice%40acme.test&return_to=/account");
    let browsers: Vec<_> = (0..4).map(|_| browser()).collect();
    let mut callbacks = Vec::new();
    for b in &browsers {
        callbacks.push(until_callback(&f, b, &f.node.url(&start)).await);
    }
    let answers = futures_util::future::join_all(
        browsers
            .iter()
            .zip(&callbacks)
            .map(|(b, url)| async move { b.get(url).send().await.unwrap() }),
    )
    .await;
    for res in &answers {
        assert_eq!(res.status(), 303, "every racing sign-in completes");
    }
    let mut ids = std::collections::BTreeSet::new();
    for b in &browsers {
        ids.insert(me(&f, b).await["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "one account: {ids:?}");
    let user = ids.into_iter().next().unwrap();
    assert_eq!(second.orgs.list_for_user(&user).await.unwrap().len(), 1);
    let linked =
        latchkey_core::identity::external::of_user(second.store.db(), &user).await.unwrap();
    assert_eq!(linked.len(), 1);
}

on_both_backends!(racing_first_sign_ins_provision_once);
on_both_backends!(the_sweep_rechecks_ahead_and_revokes_without_a_request);
on_both_backends!(deprovisioned_upstream_ends_sessions_and_nothing_resurrects_them);
on_both_backends!(an_upstream_outage_is_tolerated_for_the_grace_then_fails_closed);
on_both_backends!(social_sign_in_provisions_links_and_keeps_the_grant);
on_both_backends!(enterprise_google_provisions_members_just_in_time);
on_both_backends!(enterprise_google_refusals_are_audited);
on_both_backends!(enterprise_microsoft_checks_the_pinned_tenant);
on_both_backends!(state_is_single_use_and_bound_to_the_browser);

/// The chain an app sees: the `openidconnect` crate as the relying party → Latchkey's sign-in
/// → the organisation's EASIE connection at the upstream provider → back to the app with an ID
/// token for the federated sign-in, whose session the app can refresh only while the upstream
/// account lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openidconnect_relying_party_through_an_easie_sign_in() {
    use latchkey_core::oauth::clients::NewClient;
    use openidconnect::{
        AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
        OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, RefreshToken, Scope, TokenResponse,
        core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata},
    };

    let f = fixture(Backend::Sqlite).await.unwrap();
    let connection = f.enroll(Upstream::Google, "acme.test", None).await;
    let redirect = "http://127.0.0.1:9/cb";
    // The app's back-channel logout endpoint.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let logout_uri = format!("http://{}/logout", listener.local_addr().unwrap());
    let receiver = crate::backchannel::Receiver::default();
    receiver.serve(listener).await;
    let new = NewClient {
        name: "Wiki".into(),
        redirect_uris: vec![redirect.into()],
        backchannel_logout_uri: Some(logout_uri),
        first_party: true,
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        ..Default::default()
    };
    let created = f.node.core.clients.create(new, &Actor::cli()).await.unwrap();
    let http = openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let issuer = IssuerUrl::new(f.node.base_url.clone()).unwrap();
    let meta = CoreProviderMetadata::discover_async(issuer, &http).await.unwrap();
    let rp = CoreClient::from_provider_metadata(
        meta,
        ClientId::new(created.client.client_id.clone()),
        created.client_secret.clone().map(ClientSecret::new),
    )
    .set_redirect_uri(RedirectUrl::new(redirect.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, _state, nonce) = rp
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();

    // authorize → the sign-in page, whose identifier-first step sends acme.test to the
    // connection (tested in easie_connections); the browser goes there with the same return_to.
    let b = browser();
    let res = b.get(auth_url.as_str()).send().await.unwrap();
    let to_sign_in = res.headers()["location"].to_str().unwrap().to_owned();
    let sign_in = reqwest::Url::parse(&f.node.url(&to_sign_in)).unwrap();
    let return_to = sign_in.query_pairs().find(|(k, _)| k == "return_to").unwrap().1.into_owned();
    let start = format!(
        "/easie/{connection}/login?login_hint=alice%40acme.test&return_to={}",
        urlencode(&return_to)
    );
    let j = follow(&f.node, &b, &f.node.url(&start)).await;
    assert_eq!(j.status, 303, "{}", j.body);
    // Back at Latchkey's authorization endpoint, signed in: on to the app with a code.
    let mut next = f.node.url(j.location.as_deref().unwrap());
    let code = loop {
        let res = b.get(&next).send().await.unwrap();
        // A redirect, or the navigating page that carries the app's redirect.
        let loc = match res.headers().get("location") {
            Some(l) => l.to_str().unwrap().to_owned(),
            None => crate::pages::refresh_target(&res.text().await.unwrap()).replace("&amp;", "&"),
        };
        if loc.starts_with(redirect) {
            let url = reqwest::Url::parse(&loc).unwrap();
            break url.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
        }
        next = reqwest::Url::parse(&next).unwrap().join(&loc).unwrap().to_string();
    };
    let tokens = rp
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    let claims = tokens.id_token().unwrap().claims(&rp.id_token_verifier(), &nonce).unwrap();
    assert_eq!(claims.email().map(|e| e.as_str()), Some("alice@acme.test"));
    let amr: Vec<_> = claims.auth_method_refs().unwrap().iter().map(|a| a.as_str()).collect();
    assert_eq!(amr, ["fed"]);
    // While the upstream account lives, the app refreshes; once it is suspended upstream, the
    // refresh after the re-check interval fails.
    let refresh = RefreshToken::new(tokens.refresh_token().unwrap().secret().clone());
    let refreshed =
        rp.exchange_refresh_token(&refresh).unwrap().request_async(&http).await.unwrap();
    f.idp.admin("/google/users/alice@acme.test/suspend", json!({})).await;
    f.node.clock.advance(minutes(11));
    let refresh = RefreshToken::new(refreshed.refresh_token().unwrap().secret().clone());
    let refused = rp.exchange_refresh_token(&refresh).unwrap().request_async(&http).await;
    assert!(refused.is_err(), "the deprovisioned session's grant is refused");
    // The app is told the session ended, with a logout token for its user and session.
    let got = receiver.wait_for(1).await;
    let payload = got[0].1.split('.').nth(1).unwrap();
    use base64::Engine as _;
    let logout: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap(),
    )
    .unwrap();
    assert_eq!(logout["sub"], claims.subject().as_str());
    assert!(logout["sid"].as_str().is_some_and(|s| s.starts_with("ses_")), "{logout}");
}
