//! SAML enterprise connections end to end over HTTP, with responses signed by the
//! `latchkey-saml` test IdP (a real XML-DSig signer): SP-initiated sign-in, just-in-time
//! provisioning and role updates, identifier routing and enforcement, the ACS's fail-closed
//! checks that depend on state (pending request, browser, replay across nodes, a connection
//! disabled mid-flow), IdP-initiated sign-in, SP metadata and lifecycle.

use std::sync::Arc;

use latchkey_core::{
    enterprise::saml::{ConnectionOptions, ConnectionView, IdpSource, NewConnection},
    infra::audit::{self, Actor},
};
use latchkey_saml::{
    algorithms::AlgorithmPolicy,
    binding::{self, Binding},
    testkit::{ResponseSpec, TestIdp},
};

use crate::{
    on_both_backends,
    support::{Backend, TestDb, TestServer, data_dir},
};

const IDP_ENTITY: &str = "https://idp.corp.example/saml";
const IDP_SSO: &str = "https://idp.corp.example/sso";

struct Fixture {
    node: TestServer,
    idp: TestIdp,
    connection: ConnectionView,
    org_id: String,
    _data: tempfile::TempDir,
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap()
}

async fn fixture(backend: Backend, options: ConnectionOptions) -> Option<Fixture> {
    fixture_with(backend, options, None).await
}

const IDP_SLO: &str = "https://idp.corp.example/slo";

async fn fixture_with(
    backend: Backend,
    options: ConnectionOptions,
    slo_url: Option<&str>,
) -> Option<Fixture> {
    let db = TestDb::new(backend).await?;
    let data = data_dir();
    let node = TestServer::start(data.path(), &db, &[]).await;
    let org = node.core.orgs.create("Corp", "corp", &Actor::cli()).await.unwrap();
    node.core.domains.add_verified(&org.id, "corp.example", &Actor::cli()).await.unwrap();
    let idp = TestIdp::generate(IDP_ENTITY);
    let new = NewConnection {
        reserved_id: None,
        org_id: org.id.clone(),
        name: "Corp IdP".into(),
        source: IdpSource::Manual {
            entity_id: IDP_ENTITY.into(),
            sso_url: IDP_SSO.into(),
            sso_binding: Binding::Redirect,
            slo_url: slo_url.map(str::to_owned),
            certs: vec![idp.cert_pem.clone()],
        },
        options,
    };
    let connection = node.core.saml.create(new, &Actor::cli()).await.unwrap();
    Some(Fixture { node, idp, connection, org_id: org.id, _data: data })
}

/// Starts SP-initiated SSO in `b`; returns (AuthnRequest ID, RelayState).
async fn start(f: &Fixture, b: &reqwest::Client) -> (String, String) {
    let res =
        b.get(format!("{}?return_to=/account", f.connection.urls.login_url)).send().await.unwrap();
    assert_eq!(res.status(), 302);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(IDP_SSO), "{location}");
    let query = location.split_once('?').unwrap().1;
    let msg =
        binding::decode_redirect(query, "SAMLRequest", &[], AlgorithmPolicy::default()).unwrap();
    assert!(query.contains("Signature="), "AuthnRequests are signed by default");
    let id = msg.xml.split("ID=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    assert_eq!(id.len(), 33, "a 128-bit random ID: {id}");
    (id, msg.relay_state.unwrap())
}

fn spec(f: &Fixture, email: &str, in_response_to: Option<&str>) -> ResponseSpec {
    let mut s = ResponseSpec::new(
        &f.connection.urls.acs_url,
        &f.connection.urls.sp_entity_id,
        email,
        f.node.clock.now(),
    );
    s.in_response_to = in_response_to.map(str::to_owned);
    s.attributes = vec![
        ("email".into(), vec![email.into()]),
        ("givenName".into(), vec!["Ada".into()]),
        ("sn".into(), vec!["Lovelace".into()]),
    ];
    s
}

async fn post_acs(
    f: &Fixture,
    b: &reqwest::Client,
    response: &str,
    relay: Option<&str>,
) -> reqwest::Response {
    let mut form = vec![("SAMLResponse", response.to_owned())];
    if let Some(r) = relay {
        form.push(("RelayState", r.to_owned()));
    }
    b.post(&f.connection.urls.acs_url).form(&form).send().await.unwrap()
}

async fn me(f: &Fixture, b: &reqwest::Client) -> Option<serde_json::Value> {
    let res = b.get(f.node.url("/v1/me")).send().await.unwrap();
    if res.status() == 401 {
        return None;
    }
    assert_eq!(res.status(), 200);
    Some(res.json().await.unwrap())
}

/// The reason of the newest `saml.response_rejected` event.
async fn last_rejection(f: &Fixture) -> String {
    let events = audit::recent(f.node.core.store.db(), 50).await.unwrap();
    events
        .iter()
        .find(|e| e.action == "saml.response_rejected")
        .map(|e| e.data["reason"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

async fn signs_in_through_the_idp_and_provisions_just_in_time(backend: Backend) {
    let Some(f) = fixture(backend, ConnectionOptions::default()).await else { return };
    let b = browser();
    let (id, relay) = start(&f, &b).await;
    let res = post_acs(
        &f,
        &b,
        &f.idp.response_b64(&spec(&f, "ada@corp.example", Some(&id))),
        Some(&relay),
    )
    .await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    assert_eq!(res.headers()["location"], "/account");
    let me = me(&f, &b).await.expect("signed in");
    assert_eq!(me["email"], "ada@corp.example");
    assert_eq!(me["email_verified"], true);
    assert_eq!(me["given_name"], "Ada");
    assert_eq!(me["method"], "saml");
    assert_eq!(me["connection_id"], f.connection.connection_id.as_str());
    assert_eq!(me["memberships"][0]["org_id"], f.org_id.as_str());
    assert_eq!(me["memberships"][0]["role"], "member");

    // The same NameID later, with a changed address and name: the same account, updated.
    let b2 = browser();
    let (id2, relay2) = start(&f, &b2).await;
    let mut s = spec(&f, "ada@corp.example", Some(&id2));
    s.attributes = vec![
        ("email".into(), vec!["ada.lovelace@corp.example".into()]),
        ("givenName".into(), vec!["Augusta".into()]),
    ];
    let res = post_acs(&f, &b2, &f.idp.response_b64(&s), Some(&relay2)).await;
    assert_eq!(res.status(), 303);
    let me2 = self::me(&f, &b2).await.unwrap();
    assert_eq!(me2["id"], me["id"], "keyed by (connection, NameID), not by address");
    assert_eq!(me2["given_name"], "Augusta");
    f.node.stop().await;
}
on_both_backends!(signs_in_through_the_idp_and_provisions_just_in_time);

async fn refuses_what_the_browser_did_not_start(backend: Backend) {
    let Some(f) = fixture(backend, ConnectionOptions::default()).await else { return };
    let (a, other) = (browser(), browser());
    let (id, relay) = start(&f, &a).await;
    let good = f.idp.response_b64(&spec(&f, "ada@corp.example", Some(&id)));

    // Another browser posting the answer (with the RelayState) gets nothing.
    let res = post_acs(&f, &other, &good, Some(&relay)).await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("ref_"), "a reference ID on the page");
    assert_eq!(last_rejection(&f).await, "in_response_to_unknown");
    assert!(me(&f, &other).await.is_none());

    // A response to another request ID.
    let (_, relay2) = start(&f, &a).await;
    let wrong = f.idp.response_b64(&spec(&f, "ada@corp.example", Some("_0000")));
    assert_eq!(post_acs(&f, &a, &wrong, Some(&relay2)).await.status(), 400);
    assert_eq!(last_rejection(&f).await, "in_response_to_mismatch");

    // No InResponseTo after an SP-initiated start.
    let (_, relay3) = start(&f, &a).await;
    let missing = f.idp.response_b64(&spec(&f, "ada@corp.example", None));
    assert_eq!(post_acs(&f, &a, &missing, Some(&relay3)).await.status(), 400);
    assert_eq!(last_rejection(&f).await, "in_response_to_missing");

    // Unsolicited, while IdP-initiated sign-in is off.
    assert_eq!(post_acs(&f, &other, &missing, None).await.status(), 400);
    assert_eq!(last_rejection(&f).await, "unsolicited_not_allowed");

    // The pending request is single use: the right browser, second time.
    let (id4, relay4) = start(&f, &a).await;
    let ok = f.idp.response_b64(&spec(&f, "ada@corp.example", Some(&id4)));
    assert_eq!(post_acs(&f, &a, &ok, Some(&relay4)).await.status(), 303);
    let again = f.idp.response_b64(&spec(&f, "ada@corp.example", Some(&id4)));
    assert_eq!(post_acs(&f, &a, &again, Some(&relay4)).await.status(), 400);
    assert_eq!(last_rejection(&f).await, "in_response_to_unknown");

    // Expired: the clock moves past the pending request's ten minutes.
    let (id5, relay5) = start(&f, &a).await;
    f.node.clock.advance(std::time::Duration::from_secs(11 * 60));
    let late = f.idp.response_b64(&spec(&f, "ada@corp.example", Some(&id5)));
    assert_eq!(post_acs(&f, &a, &late, Some(&relay5)).await.status(), 400);
    assert_eq!(last_rejection(&f).await, "in_response_to_unknown");
    f.node.stop().await;
}
on_both_backends!(refuses_what_the_browser_did_not_start);

async fn an_assertion_is_accepted_once_across_nodes(backend: Backend) {
    let opts = ConnectionOptions { allow_idp_initiated: true, ..ConnectionOptions::default() };
    let Some(f) = fixture(backend, opts).await else { return };
    // A second node on the same store.
    let second = f.node.second_core().await;
    let listener = crate::support::free_listener();
    let addr = listener.local_addr().unwrap();
    let server = latchkey_web::start(second, listener).unwrap();
    let handle = server.handle();
    tokio::spawn(server);
    let unsolicited = Arc::new(f.idp.response_b64(&spec(&f, "grace@corp.example", None)));
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (body, acs) = (unsolicited.clone(), f.connection.urls.acs_url.clone());
        // Half the posts go to the second node (the same path on its address).
        let url =
            if i % 2 == 0 { acs } else { acs.replace(&f.node.base_url, &format!("http://{addr}")) };
        tasks.push(tokio::spawn(async move {
            let res =
                browser().post(url).form(&[("SAMLResponse", body.as_str())]).send().await.unwrap();
            res.status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 303).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 49, "{statuses:?}");
    handle.stop(true).await;
    f.node.stop().await;
}
on_both_backends!(an_assertion_is_accepted_once_across_nodes);

async fn idp_initiated_lands_on_the_fixed_page(backend: Backend) {
    let opts = ConnectionOptions {
        allow_idp_initiated: true,
        idp_initiated_landing: "/account?welcome=1".into(),
        ..ConnectionOptions::default()
    };
    let Some(f) = fixture(backend, opts).await else { return };
    let b = browser();
    let res = post_acs(
        &f,
        &b,
        &f.idp.response_b64(&spec(&f, "ada@corp.example", None)),
        Some("https://evil.example/steal"),
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/account?welcome=1", "RelayState never redirects");
    // An unsolicited response that claims to answer a request is refused.
    let claims = f.idp.response_b64(&spec(&f, "ada@corp.example", Some("_abc")));
    assert_eq!(post_acs(&f, &browser(), &claims, None).await.status(), 400);
    assert_eq!(last_rejection(&f).await, "in_response_to_unknown");
    f.node.stop().await;
}
on_both_backends!(idp_initiated_lands_on_the_fixed_page);

async fn routing_enforcement_roles_and_lifecycle(backend: Backend) {
    let mut opts = ConnectionOptions::default();
    opts.group_roles.insert("it-admins".into(), "admin".into());
    opts.bypass = vec!["root@corp.example".into()];
    let Some(f) = fixture(backend, opts).await else { return };
    let core = &f.node.core;

    // Identifier-first: the domain goes to the connection, the bypassed address does not.
    let route = core.sign_in.route("someone@corp.example").await.unwrap();
    assert!(format!("{route:?}").contains(&f.connection.connection_id), "{route:?}");
    let bypass = core.sign_in.route("root@corp.example").await.unwrap();
    assert_eq!(bypass, latchkey_core::sign_in::SignInRoute::Password);

    // An existing password account on the domain: its password stops working.
    let pw = crate::support::client();
    let existing = core
        .users
        .create(
            latchkey_core::identity::users::NewUser {
                email: "ada@corp.example".into(),
                password: Some("correct horse battery".into()),
                email_verified: true,
                ..Default::default()
            },
            &Actor::cli(),
        )
        .await
        .unwrap();
    let err = core
        .sign_in
        .sign_in_with_password("ada@corp.example", "correct horse battery", &Default::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("identity provider"), "{err}");
    drop(pw);

    // First SAML sign-in links it (verified address on the verified domain) with the mapped role.
    let b = browser();
    let (id, relay) = start(&f, &b).await;
    let mut s = spec(&f, "ada@corp.example", Some(&id));
    s.attributes.push(("groups".into(), vec!["it-admins".into(), "eng".into()]));
    assert_eq!(post_acs(&f, &b, &f.idp.response_b64(&s), Some(&relay)).await.status(), 303);
    let me1 = me(&f, &b).await.unwrap();
    assert_eq!(me1["id"], existing.id.as_str(), "linked, not a second account");
    assert_eq!(me1["memberships"][0]["role"], "admin");

    // Next sign-in without the admin group: the role is taken away.
    let b2 = browser();
    let (id2, relay2) = start(&f, &b2).await;
    let mut s = spec(&f, "ada@corp.example", Some(&id2));
    s.attributes.push(("groups".into(), vec!["eng".into()]));
    assert_eq!(post_acs(&f, &b2, &f.idp.response_b64(&s), Some(&relay2)).await.status(), 303);
    assert_eq!(me(&f, &b2).await.unwrap()["memberships"][0]["role"], "member");

    // A new NameID carrying an address someone else's NameID owns: refused, nobody created.
    let b3 = browser();
    let (id3, relay3) = start(&f, &b3).await;
    let mut s = spec(&f, "ada@corp.example", Some(&id3));
    s.name_id.value = "mallory-persistent-id".into();
    s.name_id.format = Some(latchkey_saml::model::NAMEID_PERSISTENT.into());
    assert_eq!(post_acs(&f, &b3, &f.idp.response_b64(&s), Some(&relay3)).await.status(), 400);
    assert_eq!(last_rejection(&f).await, "account_refused");

    // An address outside the organisation's verified domains is never vouched for.
    let b4 = browser();
    let (id4, relay4) = start(&f, &b4).await;
    let s = spec(&f, "victim@other.example", Some(&id4));
    assert_eq!(post_acs(&f, &b4, &f.idp.response_b64(&s), Some(&relay4)).await.status(), 400);
    assert_eq!(last_rejection(&f).await, "email_outside_domains");

    // The ACS keeps what it read of the connection per store revision: a domain verified
    // after a sign-in counts at the next response, and a removed one stops counting.
    let domain = core.domains.add_verified(&f.org_id, "corp2.example", &Actor::cli()).await;
    let domain = domain.unwrap();
    let b6 = browser();
    let (id6, relay6) = start(&f, &b6).await;
    let s = spec(&f, "grace@corp2.example", Some(&id6));
    assert_eq!(post_acs(&f, &b6, &f.idp.response_b64(&s), Some(&relay6)).await.status(), 303);
    // A refusal writes no revision: the ACS now holds the connection as of the current one.
    let (id_, relay_) = start(&f, &b4).await;
    let s = spec(&f, "victim@other.example", Some(&id_));
    assert_eq!(post_acs(&f, &b4, &f.idp.response_b64(&s), Some(&relay_)).await.status(), 400);
    core.domains.remove_domain(&f.org_id, &domain.id, &Actor::cli()).await.unwrap();
    let b7 = browser();
    let (id7, relay7) = start(&f, &b7).await;
    let s = spec(&f, "grace@corp2.example", Some(&id7));
    assert_eq!(post_acs(&f, &b7, &f.idp.response_b64(&s), Some(&relay7)).await.status(), 400);
    assert_eq!(last_rejection(&f).await, "email_outside_domains");

    // Disabling the connection ends its sessions, and a flow under way fails at the ACS.
    let b5 = browser();
    let (id5, relay5) = start(&f, &b5).await;
    core.saml.set_enabled(&f.connection.connection_id, false, &Actor::cli()).await.unwrap();
    assert!(me(&f, &b).await.is_none() && me(&f, &b2).await.is_none());
    assert!(me(&f, &b6).await.is_none());
    let s = spec(&f, "ada@corp.example", Some(&id5));
    assert_eq!(post_acs(&f, &b5, &f.idp.response_b64(&s), Some(&relay5)).await.status(), 400);
    assert_eq!(last_rejection(&f).await, "connection_disabled");
    // And the domain's addresses go back to passwords.
    assert_eq!(
        core.sign_in.route("someone@corp.example").await.unwrap(),
        latchkey_core::sign_in::SignInRoute::Password
    );
    f.node.stop().await;
}
on_both_backends!(routing_enforcement_roles_and_lifecycle);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_garbage_responses_are_refused_with_a_reason() {
    let f = fixture(Backend::Sqlite, ConnectionOptions::default()).await.unwrap();
    let b = browser();
    let huge = "A".repeat(257 * 1024);
    assert_eq!(post_acs(&f, &b, &huge, None).await.status(), 400);
    assert_eq!(last_rejection(&f).await, "too_large");
    for garbage in ["", "!!!not base64", "PHNhbWw+", "\u{0}\u{1}"] {
        let res = post_acs(&f, &b, garbage, Some("x")).await;
        assert_eq!(res.status(), 400, "{garbage:?}");
    }
    // SP metadata is served with the SP's certificates and AuthnRequestsSigned.
    let md = b.get(&f.connection.urls.metadata_url).send().await.unwrap();
    assert_eq!(md.status(), 200);
    let xml = md.text().await.unwrap();
    assert!(
        xml.contains(&f.connection.urls.acs_url) && xml.contains("AuthnRequestsSigned=\"true\""),
        "{xml}"
    );
    // After a rotation both certificates are published.
    f.node.core.saml.rotate_sp_key(&f.connection.connection_id, &Actor::cli()).await.unwrap();
    let xml2 = b.get(&f.connection.urls.metadata_url).send().await.unwrap().text().await.unwrap();
    assert!(xml2.matches("use=\"signing\"").count() >= 2, "{xml2}");
    f.node.stop().await;
}

/// Signs `b` in through the connection (SP-initiated); returns the session index used.
async fn sign_in_via_idp(f: &Fixture, b: &reqwest::Client, email: &str) -> String {
    let (id, relay) = start(f, b).await;
    let s = spec(f, email, Some(&id));
    let index = s.session_index.clone().unwrap();
    let res = post_acs(f, b, &f.idp.response_b64(&s), Some(&relay)).await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    index
}

fn idp_signer(f: &Fixture) -> binding::SigningKey {
    binding::SigningKey { key_pem: f.idp.key_pem.clone(), cert_pem: f.idp.cert_pem.clone() }
}

/// The path and query of a URL on our server.
fn local(f: &Fixture, url: &str) -> String {
    url.strip_prefix(&f.node.base_url).unwrap_or(url).to_owned()
}

async fn single_logout_both_ways(backend: Backend) {
    use latchkey_saml::{NameId, logout, model::NAMEID_EMAIL};
    let Some(f) = fixture_with(backend, ConnectionOptions::default(), Some(IDP_SLO)).await else {
        return;
    };
    let slo_url = f.connection.urls.slo_url.clone();
    let name_id = NameId { value: "ada@corp.example".into(), format: Some(NAMEID_EMAIL.into()) };

    // IdP-initiated: a signed LogoutRequest naming one session index ends that session only.
    let (b1, b2) = (browser(), browser());
    let index1 = sign_in_via_idp(&f, &b1, "ada@corp.example").await;
    sign_in_via_idp(&f, &b2, "ada@corp.example").await;
    let request = |index: &str, signer: &binding::SigningKey| {
        let spec = logout::LogoutRequestSpec {
            id: "_idp-logout-1",
            issue_instant: f.node.clock.now(),
            issuer: IDP_ENTITY,
            destination: &slo_url,
            name_id: &name_id,
            session_index: Some(index),
        };
        logout::logout_request_redirect(&spec, Some("idp-state"), Some(signer)).unwrap()
    };
    // Signed with a key the connection does not trust: refused, nothing ends.
    let stranger = TestIdp::generate(IDP_ENTITY);
    let forged = binding::SigningKey { key_pem: stranger.key_pem, cert_pem: stranger.cert_pem };
    let res = browser().get(request(&index1, &forged)).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(me(&f, &b1).await.is_some());
    let res = browser().get(request(&index1, &idp_signer(&f))).send().await.unwrap();
    assert_eq!(res.status(), 302);
    let answer = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(answer.starts_with(IDP_SLO) && answer.contains("Signature="), "{answer}");
    let query = answer.split_once('?').unwrap().1;
    let msg =
        binding::decode_redirect(query, "SAMLResponse", &[], AlgorithmPolicy::default()).unwrap();
    assert!(msg.xml.contains("InResponseTo=\"_idp-logout-1\"") && msg.xml.contains("Success"));
    assert_eq!(msg.relay_state.as_deref(), Some("idp-state"));
    assert!(me(&f, &b1).await.is_none(), "the named session ended");
    assert!(me(&f, &b2).await.is_some(), "another session index lives on");

    // SP-initiated: signing out sends the browser to the IdP with a signed LogoutRequest, and
    // the IdP's answer brings it back to the sign-in page.
    let page = b2.get(f.node.url("/sign-out")).send().await.unwrap().text().await.unwrap();
    let csrf = crate::pages::csrf_in(&page);
    let res = b2
        .post(f.node.url("/sign-out"))
        .header("origin", f.node.base_url.clone())
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "a page that navigates (form-action applies to redirects)");
    let body = res.text().await.unwrap();
    let marker = "content=\"0;url=";
    let start = body.find(marker).unwrap() + marker.len();
    let to_idp = body[start..start + body[start..].find('"').unwrap()].replace("&amp;", "&");
    assert!(to_idp.starts_with(IDP_SLO) && to_idp.contains("Signature="), "{to_idp}");
    assert!(me(&f, &b2).await.is_none(), "the Latchkey session ended first");
    let query = to_idp.split_once('?').unwrap().1;
    let msg =
        binding::decode_redirect(query, "SAMLRequest", &[], AlgorithmPolicy::default()).unwrap();
    assert!(msg.xml.contains("ada@corp.example"), "{}", msg.xml);
    let request_id = msg.xml.split("ID=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let response = |in_response_to: &str| {
        let spec = logout::LogoutResponseSpec {
            id: "_idp-answer",
            issue_instant: f.node.clock.now(),
            issuer: IDP_ENTITY,
            destination: &slo_url,
            in_response_to,
            success: true,
        };
        logout::logout_response_redirect(&spec, msg.relay_state.as_deref(), Some(&idp_signer(&f)))
            .unwrap()
    };
    // Another browser cannot use the answer.
    let res = browser().get(response(&request_id)).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let res = b2.get(response(&request_id)).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/sign-in?signed_out=1");
    // Once only; and an answer to another request is refused.
    assert_eq!(b2.get(response(&request_id)).send().await.unwrap().status(), 400);
    assert_eq!(b2.get(response("_other")).send().await.unwrap().status(), 400);
    let events = audit::recent(f.node.core.store.db(), 50).await.unwrap();
    assert!(events.iter().any(|e| e.action == "saml.logout_rejected"));
    let _ = local(&f, &slo_url);
    f.node.stop().await;
}
on_both_backends!(single_logout_both_ways);

/// IdP metadata as Okta and Entra publish it: signing certificates, SLO and SSO (Redirect).
fn idp_metadata(certs: &[&TestIdp]) -> String {
    use latchkey_saml::keys::cert_base64;
    let keys: String = certs
        .iter()
        .map(|c| {
            format!(
                r#"<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#,
                cert_base64(&c.cert_der)
            )
        })
        .collect();
    format!(
        r#"<?xml version="1.0"?><md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{IDP_ENTITY}"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">{keys}<md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{IDP_SLO}"/><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{IDP_SSO}"/></md:IDPSSODescriptor></md:EntityDescriptor>"#
    )
}

/// A one-route HTTP server for the IdP's metadata: answers with `doc` (or 500 when empty).
async fn metadata_server(doc: Arc<std::sync::Mutex<String>>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let doc = doc.lock().unwrap().clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let reply = if doc.is_empty() {
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
                } else {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/samlmetadata+xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{doc}",
                        doc.len()
                    )
                };
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/metadata")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_url_refresh_follows_an_idp_key_rollover() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let data = data_dir();
    let node =
        TestServer::start(data.path(), &db, &[("LATCHKEY_SAML_METADATA_ALLOW_PRIVATE", "true")])
            .await;
    let org = node.core.orgs.create("Corp", "corp", &Actor::cli()).await.unwrap();
    node.core.domains.add_verified(&org.id, "corp.example", &Actor::cli()).await.unwrap();
    let (old, new) = (TestIdp::generate(IDP_ENTITY), TestIdp::generate(IDP_ENTITY));
    let doc = Arc::new(std::sync::Mutex::new(idp_metadata(&[&old])));
    let url = metadata_server(doc.clone()).await;
    let new_connection = |source| NewConnection {
        reserved_id: None,
        org_id: org.id.clone(),
        name: "Corp IdP".into(),
        source,
        options: ConnectionOptions::default(),
    };
    // Metadata without a signing certificate is refused with a clear error.
    let bare = idp_metadata(&[]);
    let err = node
        .core
        .saml
        .create(new_connection(IdpSource::MetadataXml(bare)), &Actor::cli())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("signing certificate"), "{err}");
    let connection = node
        .core
        .saml
        .create(new_connection(IdpSource::MetadataUrl(url)), &Actor::cli())
        .await
        .unwrap();
    assert_eq!(connection.idp_certificates.len(), 1);
    assert_eq!(connection.idp_slo_url.as_deref(), Some(IDP_SLO));
    let mut f = Fixture { node, idp: old, connection, org_id: org.id.clone(), _data: data };
    let id = f.connection.connection_id.clone();
    let b = browser();
    sign_in_via_idp(&f, &b, "ada@corp.example").await;

    // The IdP announces its next key, then switches to it and drops the old one.
    *doc.lock().unwrap() = idp_metadata(&[&f.idp, &new]);
    let view = f.node.core.saml.refresh_metadata(&id, &Actor::cli()).await.unwrap();
    assert_eq!(view.idp_certificates.len(), 2, "both certificates during the rollover");
    *doc.lock().unwrap() = idp_metadata(&[&new]);
    f.node.clock.advance(std::time::Duration::from_secs(6 * 3600 + 1));
    assert_eq!(f.node.core.saml.refresh_due().await.unwrap(), 1, "the periodic refresh is due");
    let old = std::mem::replace(&mut f.idp, new);
    sign_in_via_idp(&f, &browser(), "ada@corp.example").await;
    let old_fixture_idp = std::mem::replace(&mut f.idp, old);
    let b3 = browser();
    let (rid, relay) = start(&f, &b3).await;
    let res = post_acs(
        &f,
        &b3,
        &f.idp.response_b64(&spec(&f, "ada@corp.example", Some(&rid))),
        Some(&relay),
    )
    .await;
    assert_eq!(res.status(), 400, "the retired key no longer signs in");
    assert_eq!(last_rejection(&f).await, "bad_signature");
    f.idp = old_fixture_idp;

    // A failed fetch keeps the last good copy, is recorded and counted.
    *doc.lock().unwrap() = String::new();
    assert!(f.node.core.saml.refresh_metadata(&id, &Actor::cli()).await.is_err());
    let view = f.node.core.saml.show(&id, &Actor::cli()).await.unwrap();
    assert_eq!(view.idp_certificates.len(), 1);
    assert!(view.metadata_error.is_some());
    assert_eq!(f.node.core.saml.metadata_refresh_failures(), 1);
    sign_in_via_idp(&f, &browser(), "ada@corp.example").await;
    let events = audit::recent(f.node.core.store.db(), 50).await.unwrap();
    assert!(events.iter().any(|e| e.action == "saml.metadata_refresh_failed"));
    f.node.stop().await;
}

/// The chain an app sees: the `openidconnect` crate as the relying party → Latchkey's hosted
/// sign-in (identifier first) → the SAML IdP → back with an ID token for the SAML sign-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openidconnect_relying_party_through_a_saml_sign_in() {
    use latchkey_core::oauth::clients::NewClient;
    use openidconnect::{
        AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
        RedirectUrl, Scope, TokenResponse,
        core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata},
    };

    let mut opts = ConnectionOptions::default();
    opts.group_roles.insert("it-admins".into(), "admin".into());
    let f = fixture(Backend::Sqlite, opts).await.unwrap();
    let redirect = "http://127.0.0.1:9/cb";
    let created = f
        .node
        .core
        .clients
        .create(
            NewClient {
                name: "Wiki".into(),
                redirect_uris: vec![redirect.into()],
                first_party: true,
                ..Default::default()
            },
            &Actor::cli(),
        )
        .await
        .unwrap();
    let http = openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let meta = CoreProviderMetadata::discover_async(
        IssuerUrl::new(f.node.base_url.clone()).unwrap(),
        &http,
    )
    .await
    .unwrap();
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
        .add_scope(Scope::new("organization".into()))
        .set_pkce_challenge(challenge)
        .url();

    // The browser: authorize → sign-in page → the address → the connection → the IdP.
    let b = crate::pages::Browser::new(&f.node.base_url);
    let path = format!("{}?{}", auth_url.path(), auth_url.query().unwrap());
    let (status, _, to_sign_in) = b.get(&path).await;
    assert_eq!(status, 303);
    let to_sign_in = to_sign_in.unwrap();
    let csrf = b.csrf(&to_sign_in).await;
    let return_to = url::Url::parse(&format!("http://x{to_sign_in}"))
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "return_to")
        .unwrap()
        .1
        .into_owned();
    let (status, body, to_login) = b
        .post(
            "/sign-in",
            &[("csrf_token", &csrf), ("email", "ada@corp.example"), ("return_to", &return_to)],
        )
        .await;
    assert_eq!(status, 200, "identifier-first sends the domain to its IdP: {body}");
    assert!(to_login.is_none());
    let to_login = crate::pages::refresh_target(&body);
    assert!(
        to_login.starts_with(&format!("/saml/{}/login", f.connection.connection_id)),
        "{to_login}"
    );
    // A password for this address is refused.
    let (status, body, _) = b
        .post(
            "/sign-in/password",
            &[
                ("csrf_token", &csrf),
                ("email", "ada@corp.example"),
                ("password", "x"),
                ("return_to", "/account"),
            ],
        )
        .await;
    assert!(status.is_client_error() && body.contains("identity provider"), "{status} {body}");
    let (status, _, to_idp) = b.get(&to_login).await;
    assert_eq!(status, 302);
    let to_idp = to_idp.unwrap();
    let query = to_idp.split_once('?').unwrap().1;
    let msg =
        binding::decode_redirect(query, "SAMLRequest", &[], AlgorithmPolicy::default()).unwrap();
    let rid = msg.xml.split("ID=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let mut s = spec(&f, "ada@corp.example", Some(&rid));
    s.attributes.push(("groups".into(), vec!["it-admins".into()]));
    let res = b
        .client
        .post(&f.connection.urls.acs_url)
        .form(&[("SAMLResponse", f.idp.response_b64(&s)), ("RelayState", msg.relay_state.unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let back = res.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(back, return_to);
    let (status, body, _) = b.get(&back).await;
    assert_eq!(status, 200, "{body}");
    let marker = "content=\"0;url=";
    let start = body.find(marker).unwrap() + marker.len();
    let callback = body[start..start + body[start..].find('"').unwrap()].replace("&amp;", "&");
    let code = url::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();

    let tokens = rp
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    let id_token = tokens.id_token().unwrap();
    let claims = id_token.claims(&rp.id_token_verifier(), &nonce).unwrap();
    assert_eq!(claims.email().map(|e| e.as_str()), Some("ada@corp.example"));
    let raw = crate::oidc::flows::decode_payload(&id_token.to_string());
    assert_eq!(raw["amr"], serde_json::json!(["fed"]));
    assert_eq!(raw["acr"], latchkey_core::identity::method::ACR_ENTERPRISE_SAML);
    assert_eq!(raw["org_id"], f.org_id.as_str());
    assert_eq!(raw["org_role"], "admin");
    f.node.stop().await;
}

/// The operator's CLI: organisations, operator-verified domains and connections, with the JSON
/// fields the issue names and the usual exit codes.
#[test]
fn cli_sets_up_and_manages_a_saml_connection() {
    use crate::support::latchkey;
    let cwd = data_dir();
    let run = |args: &[&str]| -> serde_json::Value {
        let out = latchkey(cwd.path(), &[]).args(args).arg("--json").output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let idp = TestIdp::generate(IDP_ENTITY);
    std::fs::write(cwd.path().join("idp.pem"), &idp.cert_pem).unwrap();
    let org = run(&["orgs", "create", "--name", "Acme Corp"]);
    let org_id = org["org_id"].as_str().unwrap().to_owned();
    assert!(org_id.starts_with("org_"));
    let domain = run(&["orgs", "domains", "add", "acme-corp", "acme.example", "--verified"]);
    assert!(domain.to_string().contains("acme.example"), "{domain}");
    let c = run(&[
        "connections",
        "add-saml",
        "--org",
        &org_id,
        "--name",
        "Okta",
        "--idp-entity-id",
        IDP_ENTITY,
        "--sso-url",
        IDP_SSO,
        "--cert-file",
        "idp.pem",
        "--preset",
        "okta",
        "--allow-idp-initiated",
        "--group-role",
        "admins=admin",
    ]);
    let id = c["connection_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("con_"));
    let base = format!("http://127.0.0.1:8080/saml/{id}");
    assert_eq!(c["sp_entity_id"], base.as_str());
    assert_eq!(c["acs_url"], format!("{base}/acs").as_str());
    assert_eq!(c["metadata_url"], format!("{base}/metadata").as_str());
    assert_eq!(c["login_url"], format!("{base}/login").as_str());
    assert_eq!(c["options"]["allow_idp_initiated"], true);
    assert_eq!(c["options"]["group_roles"]["admins"], "admin");
    assert_eq!(c["idp_certificates"].as_array().unwrap().len(), 1);
    assert_eq!(run(&["connections", "show", &id])["connection_id"], id.as_str());
    assert_eq!(run(&["connections", "list"]).as_array().unwrap().len(), 1);
    assert_eq!(run(&["connections", "disable", &id])["enabled"], false);
    assert_eq!(run(&["connections", "enable", &id])["enabled"], true);
    let rotated = run(&["connections", "rotate-sp-key", &id]);
    assert_eq!(rotated["sp_certificates"].as_array().unwrap().len(), 2);
    assert_eq!(run(&["connections", "delete", &id])["deleted"], true);
    let out = latchkey(cwd.path(), &[]).args(["connections", "show", &id]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "a missing connection");
    // Metadata without a signing certificate: a usage error that says why.
    std::fs::write(cwd.path().join("bare.xml"), idp_metadata(&[])).unwrap();
    let out = latchkey(cwd.path(), &[])
        .args(["connections", "add-saml", "--org", &org_id, "--name", "Bare"])
        .args(["--metadata-file", "bare.xml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("signing certificate"));
    let help = latchkey(cwd.path(), &[]).args(["connections", "add-saml", "--help"]).output();
    assert!(String::from_utf8_lossy(&help.unwrap().stdout).contains("--metadata-url"));
}

/// An account on the domain whose address nobody verified is claimed by the domain's own IdP:
/// linked, verified, and stripped of what its unproven creator set up (password, sessions).
async fn the_domain_idp_claims_an_unverified_account(backend: Backend) {
    let Some(f) = fixture(backend, ConnectionOptions::default()).await else { return };
    let squatter = f.node.user("ada@corp.example").await;
    assert!(!squatter.email_verified);
    let (_, secret) = f.node.session(&squatter).await;
    let b = browser();
    sign_in_via_idp(&f, &b, "ada@corp.example").await;
    let me = me(&f, &b).await.unwrap();
    assert_eq!(me["id"], squatter.id.as_str());
    assert_eq!(me["email_verified"], true);
    assert_eq!(f.node.token_request(&secret).await.status(), 401, "the old session ended");
    // Even with the connection gone, the squatter's password is gone too.
    let core = &f.node.core;
    core.saml.delete(&f.connection.connection_id, &Actor::cli()).await.unwrap();
    let err = core
        .sign_in
        .sign_in_with_password("ada@corp.example", "correct horse battery", &Default::default())
        .await
        .unwrap_err();
    assert!(matches!(err, latchkey_core::Error::Unauthenticated(_)), "{err}");
    let events = audit::recent(core.store.db(), 50).await.unwrap();
    assert!(events.iter().any(|e| e.action == "user.claimed_by_identity_provider"));
    f.node.stop().await;
}
on_both_backends!(the_domain_idp_claims_an_unverified_account);

/// A core that is dropped frees its database connections: no service may hold another in a
/// reference cycle (the SAML service once did, through the sign-in service's registries, and
/// every test's pool stayed open until PostgreSQL ran out of connections).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_core_frees_its_connections() {
    use sea_orm::{ConnectionTrait, Statement};
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let data = data_dir();
    let watcher = crate::support::open_core(data.path(), &db, &[]).await;
    let count = || async {
        let row = watcher
            .store
            .db()
            .query_one_raw(Statement::from_string(
                sea_orm::DatabaseBackend::Postgres,
                "SELECT count(*)::bigint AS n FROM pg_stat_activity WHERE datname = current_database()",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    };
    let before = count().await;
    for _ in 0..3 {
        let core = crate::support::open_core(data.path(), &db, &[]).await;
        // Use a few connections at once, as a busy node does.
        let actor = Actor::cli();
        let busy = (0..4).map(|_| core.saml.list(None, &actor));
        futures_util::future::join_all(busy).await;
        drop(core);
    }
    // Dropped pools close their connections; PostgreSQL sees them go within moments.
    let mut after = count().await;
    for _ in 0..50 {
        if after <= before + 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        after = count().await;
    }
    assert!(after <= before + 1, "connections before {before}, after {after}");
}
