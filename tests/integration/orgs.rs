//! Organisations through the JSON API: invitations, roles, verified domains (with a real DNS
//! server), enrollment through verified domains, and the active organisation in session tokens.

use std::{
    net::{TcpListener, TcpStream, UdpSocket},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use latchkey_core::{identity::users::NewUser, infra::audit::Actor, model::User};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    support::{Backend, TestDb, TestServer, client, data_dir, verify},
};

/// A signed-in user calling the API from a non-browser client (custom CSRF header).
struct Api {
    base: String,
    cookie: String,
}

impl Api {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = client()
            .request(method, format!("{}{path}", self.base))
            .header("Cookie", &self.cookie)
            .header("X-Latchkey-CSRF", "1");
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(Method::DELETE, path, None).await
    }
}

async fn new_user(node: &TestServer, email: &str, verified: bool) -> User {
    node.core
        .users
        .create(
            NewUser {
                email: email.into(),
                email_verified: verified,
                password: Some("correct horse battery".into()),
                ..Default::default()
            },
            &Actor::cli(),
        )
        .await
        .unwrap()
}

/// A user with a verified address and a session; returns the user, their API client and the
/// session cookie secret.
async fn signed_in(node: &TestServer, email: &str) -> (User, Api, String) {
    let user = new_user(node, email, true).await;
    let (api, secret) = session_of(node, &user).await;
    (user, api, secret)
}

async fn session_of(node: &TestServer, user: &User) -> (Api, String) {
    let (_, secret) = node.session(user).await;
    (Api { base: node.base_url.clone(), cookie: format!("latchkey_session={secret}") }, secret)
}

async fn create_org(api: &Api, name: &str, slug: &str) -> String {
    let (status, org) = api.post("/v1/organizations", json!({ "name": name, "slug": slug })).await;
    assert_eq!(status, 201, "{org}");
    assert_eq!(org["role"], "admin");
    org["id"].as_str().unwrap().to_owned()
}

async fn add_domain(api: &Api, org_id: &str, domain: &str) -> Value {
    let (status, d) =
        api.post(&format!("/v1/organizations/{org_id}/domains"), json!({ "domain": domain })).await;
    assert_eq!(status, 201, "{domain}: {d}");
    d
}

fn token_of(accept_url: &str) -> String {
    accept_url.split_once("token=").unwrap().1.to_owned()
}

async fn audit_actions(node: &TestServer) -> Vec<String> {
    latchkey_core::infra::audit::recent(node.core.store.db(), 500)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect()
}

async fn invitations_are_single_use_and_bound_to_the_address(backend: Backend) {
    use latchkey_core::infra::entity::org_invitation;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};

    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let (alice, a, alice_secret) = signed_in(&node, "alice@acme.test").await;

    // CSRF: unsafe methods need our Origin or the custom header; then a live session.
    let body = json!({ "name": "Acme", "slug": "acme" });
    let cookie = format!("latchkey_session={alice_secret}");
    let res = client()
        .post(node.url("/v1/organizations"))
        .header("Cookie", &cookie)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = client()
        .post(node.url("/v1/organizations"))
        .header("Cookie", &cookie)
        .header("Origin", "https://evil.example.com")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = client()
        .post(node.url("/v1/organizations"))
        .header("X-Latchkey-CSRF", "1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(a.get("/v1/organizations").await.1["data"].as_array().unwrap().is_empty());

    // A browser on our own origin passes the CSRF check.
    let res = client()
        .post(node.url("/v1/organizations"))
        .header("Cookie", &cookie)
        .header("Origin", node.base_url.clone())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let org: Value = res.json().await.unwrap();
    let org_id = org["id"].as_str().unwrap().to_owned();
    assert_eq!((org["slug"].as_str(), org["role"].as_str()), (Some("acme"), Some("admin")));
    let (status, _) = a.post("/v1/organizations", json!({ "name": "Other", "slug": "acme" })).await;
    assert_eq!(status, 409, "slugs are unique");
    let (status, _) = a.post("/v1/organizations", json!({ "name": "Bad", "slug": "Not OK" })).await;
    assert_eq!(status, 400);

    let (status, mine) = a.get("/v1/organizations").await;
    assert_eq!(status, 200);
    assert_eq!(mine["data"][0]["id"], org_id.as_str());
    assert_eq!(mine["data"][0]["role"], "admin");
    let (_, members) = a.get(&format!("/v1/organizations/{org_id}/memberships")).await;
    assert_eq!(members["data"].as_array().unwrap().len(), 1);
    assert_eq!(members["data"][0]["user_id"], alice.id.as_str());
    assert_eq!(members["data"][0]["email"], "alice@acme.test");
    assert_eq!(members["data"][0]["role"], "admin");

    // Invite: 201 with the accept link for the admin to copy; one pending per address.
    let invitations = format!("/v1/organizations/{org_id}/invitations");
    let (status, inv) = a.post(&invitations, json!({ "email": "Bob@Acme.test" })).await;
    assert_eq!(status, 201, "{inv}");
    assert_eq!(inv["email"], "bob@acme.test");
    assert_eq!(inv["role"], "member");
    assert_eq!(inv["status"], "pending");
    assert_eq!(inv["inviter_user_id"], alice.id.as_str());
    let accept_url = inv["accept_url"].as_str().unwrap();
    assert!(accept_url.starts_with(&format!("{}/invitations/accept?token=", node.base_url)));
    let bob_token = token_of(accept_url);
    let expires_in = inv["expires_at"].as_i64().unwrap() - inv["created_at"].as_i64().unwrap();
    assert_eq!(expires_in, 7 * 86400);
    let (status, _) = a.post(&invitations, json!({ "email": "bob@acme.test" })).await;
    assert_eq!(status, 409, "one pending invitation per address");
    let (status, _) = a.post(&invitations, json!({ "email": "alice@acme.test" })).await;
    assert_eq!(status, 409, "already a member");
    let (status, _) = a.post(&invitations, json!({ "email": "not an address" })).await;
    assert_eq!(status, 400);
    let (_, pending) = a.get(&invitations).await;
    assert_eq!(pending["data"].as_array().unwrap().len(), 1);

    // Only the invited, verified address can accept.
    let (_, b, _) = signed_in(&node, "bob@acme.test").await;
    let (_, c, _) = signed_in(&node, "carol@acme.test").await;
    let accept = |token: &str| json!({ "token": token });
    let (status, err) = c.post("/v1/invitations/accept", accept(&bob_token)).await;
    assert_eq!(status, 403, "{err}");
    assert_eq!(b.get(&format!("/v1/organizations/{org_id}")).await.0, 404);
    let (status, m) = b.post("/v1/invitations/accept", accept(&bob_token)).await;
    assert_eq!(status, 200, "{m}");
    assert_eq!((m["org_id"].as_str(), m["role"].as_str()), (Some(org_id.as_str()), Some("member")));
    let (status, _) = b.post("/v1/invitations/accept", accept(&bob_token)).await;
    assert_eq!(status, 409, "an invitation is single use");
    let (status, seen) = b.get(&format!("/v1/organizations/{org_id}")).await;
    assert_eq!((status, seen["role"].as_str()), (200, Some("member")));
    assert!(a.get(&invitations).await.1["data"].as_array().unwrap().is_empty());

    // An unverified address cannot accept either.
    let unverified = new_user(&node, "una@acme.test", false).await;
    let (una, _) = session_of(&node, &unverified).await;
    let (_, inv) = a.post(&invitations, json!({ "email": "una@acme.test" })).await;
    let (status, _) = una
        .post("/v1/invitations/accept", accept(&token_of(inv["accept_url"].as_str().unwrap())))
        .await;
    assert_eq!(status, 403);

    // Members may look but not manage; outsiders see nothing.
    assert_eq!(b.get(&format!("/v1/organizations/{org_id}/memberships")).await.0, 200);
    assert_eq!(b.post(&invitations, json!({ "email": "x@acme.test" })).await.0, 403);
    assert_eq!(b.get(&invitations).await.0, 403);
    assert_eq!(c.get(&format!("/v1/organizations/{org_id}")).await.0, 404);
    assert_eq!(c.post(&invitations, json!({ "email": "x@acme.test" })).await.0, 404);
    assert_eq!(c.get("/v1/organizations/org_nonsense").await.0, 404);

    // Expired and revoked invitations are refused.
    let (dave, d, _) = signed_in(&node, "dave@acme.test").await;
    let (_, inv) =
        a.post(&invitations, json!({ "email": &dave.primary_email, "role": "admin" })).await;
    let dave_token = token_of(inv["accept_url"].as_str().unwrap());
    org_invitation::Entity::update_many()
        .col_expr(org_invitation::Column::ExpiresAt, Expr::value(crate::support::unix_now() - 1))
        .filter(org_invitation::Column::Id.eq(inv["id"].as_str().unwrap()))
        .exec(node.core.store.db())
        .await
        .unwrap();
    let (status, err) = d.post("/v1/invitations/accept", accept(&dave_token)).await;
    assert_eq!(status, 409, "{err}");
    assert!(err["error_description"].as_str().unwrap().contains("expired"), "{err}");
    // The expired one no longer blocks a new invitation.
    let (_, inv) = a.post(&invitations, json!({ "email": &dave.primary_email })).await;
    let (status, revoked) =
        a.delete(&format!("{invitations}/{}", inv["id"].as_str().unwrap())).await;
    assert_eq!((status, revoked["status"].as_str()), (200, Some("revoked")));
    let (status, err) = d
        .post("/v1/invitations/accept", accept(&token_of(inv["accept_url"].as_str().unwrap())))
        .await;
    assert_eq!(status, 409);
    assert!(err["error_description"].as_str().unwrap().contains("revoked"), "{err}");
    let (status, _) = a.delete(&format!("{invitations}/{}", inv["id"].as_str().unwrap())).await;
    assert_eq!(status, 409, "only pending invitations can be revoked");
    assert_eq!(d.post("/v1/invitations/accept", accept("no-such-token-at-all-here")).await.0, 404);
    assert_eq!(d.post("/v1/invitations/accept", accept("a b")).await.0, 404);

    let actions = audit_actions(&node).await;
    for action in [
        "org.created",
        "org.invitation_created",
        "org.invitation_accepted",
        "org.invitation_revoked",
    ] {
        assert!(actions.iter().any(|a| a == action), "{action} audited");
    }
    node.stop().await;
}
on_both_backends!(invitations_are_single_use_and_bound_to_the_address);

async fn the_last_admin_stays(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let (alice, a, _) = signed_in(&node, "alice@acme.test").await;
    let (bob, b, _) = signed_in(&node, "bob@acme.test").await;
    let org_id = create_org(&a, "Acme", "acme").await;
    let memberships = format!("/v1/organizations/{org_id}/memberships");
    let leave = format!("/v1/organizations/{org_id}/leave");

    let (status, m) = a.post(&memberships, json!({ "user_id": &bob.id })).await;
    assert_eq!((status, m["role"].as_str()), (200, Some("member")), "{m}");
    assert_eq!(a.post(&memberships, json!({ "user_id": &bob.id, "role": "Boss!" })).await.0, 400);
    let ghost = "usr_00000000000000000000000000";
    assert_eq!(a.post(&memberships, json!({ "user_id": ghost })).await.0, 404);

    // Members cannot manage; the last admin can neither go nor be demoted.
    assert_eq!(b.delete(&format!("{memberships}/{}", alice.id)).await.0, 403);
    assert_eq!(b.post(&memberships, json!({ "user_id": &bob.id, "role": "admin" })).await.0, 403);
    assert_eq!(a.post(&leave, json!({})).await.0, 409);
    assert_eq!(a.delete(&format!("{memberships}/{}", alice.id)).await.0, 409);
    let (status, err) =
        a.post(&memberships, json!({ "user_id": &alice.id, "role": "member" })).await;
    assert_eq!(status, 409, "{err}");

    // With a second admin, the first may leave; then the second is the last one.
    assert_eq!(a.post(&memberships, json!({ "user_id": &bob.id, "role": "admin" })).await.0, 200);
    assert_eq!(a.post(&leave, json!({})).await.0, 204);
    assert_eq!(a.get(&format!("/v1/organizations/{org_id}")).await.0, 404);
    assert_eq!(b.delete(&format!("{memberships}/{}", alice.id)).await.0, 404);
    assert_eq!(b.post(&leave, json!({})).await.0, 409);

    // An admin removes a member, who then sees nothing.
    let (carol, c, _) = signed_in(&node, "carol@acme.test").await;
    assert_eq!(b.post(&memberships, json!({ "user_id": &carol.id })).await.0, 200);
    assert_eq!(c.get(&format!("/v1/organizations/{org_id}")).await.0, 200);
    assert_eq!(b.delete(&format!("{memberships}/{}", carol.id)).await.0, 204);
    assert_eq!(c.get(&format!("/v1/organizations/{org_id}")).await.0, 404);
    assert_eq!(c.post(&leave, json!({})).await.0, 404);

    let actions = audit_actions(&node).await;
    assert!(actions.iter().any(|a| a == "org.member_left"));
    assert!(actions.iter().any(|a| a == "org.member_removed"));
    node.stop().await;
}
on_both_backends!(the_last_admin_stays);

/// A real DNS server (Debian's dnsmasq) answering TXT records on loopback; killed on drop, so
/// also when the test fails.
struct DnsServer {
    child: Child,
}

/// A loopback port free for both UDP and TCP, where the test's DNS server will listen.
fn free_dns_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port for the DNS server");
}

impl DnsServer {
    fn start(port: u16, txt_records: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new("dnsmasq");
        cmd.args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            // Names under .test that we do not serve get NXDOMAIN instead of a refusal.
            "--local=/test/",
        ])
        .arg(format!("--port={port}"));
        for (name, value) in txt_records {
            cmd.arg(format!("--txt-record={name},{value}"));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq runs (apt-get install dnsmasq-base; scripts/test installs it)");
        let mut server = Self { child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("dnsmasq exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "dnsmasq did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn domains_are_verified_by_dns_and_belong_to_one_organisation(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let port = free_dns_port();
    let resolver = format!("127.0.0.1:{port}");
    let node = TestServer::start(dir.path(), &db, &[("LATCHKEY_DNS_RESOLVER", &resolver)]).await;
    let (_, a, _) = signed_in(&node, "alice@acme.test").await;
    let (_, b, _) = signed_in(&node, "bob@other.test").await;
    let (_, c, _) = signed_in(&node, "carol@third.test").await;
    let org_a = create_org(&a, "Acme", "acme").await;
    let org_b = create_org(&b, "Other", "other").await;
    let org_c = create_org(&c, "Third", "third").await;
    let domains = |org: &str| format!("/v1/organizations/{org}/domains");

    // Consumer domains and non-domains are refused.
    for bad in [
        "gmail.com",
        "GMAIL.COM",
        "mail.yahoo.co.uk",
        "outlook.com.",
        "not a domain",
        "192.0.2.1",
        "localhost",
    ] {
        let (status, err) = a.post(&domains(&org_a), json!({ "domain": bad })).await;
        assert_eq!(status, 400, "{bad}: {err}");
    }

    let acme_a = add_domain(&a, &org_a, "Acme.Test.").await;
    assert_eq!(acme_a["domain"], "acme.test");
    assert_eq!(acme_a["verified"], false);
    assert_eq!(acme_a["enrollment_mode"], "manual");
    assert_eq!(acme_a["txt_record_name"], "_latchkey-challenge.acme.test");
    let token_a = acme_a["txt_record_value"].as_str().unwrap().to_owned();
    assert_eq!(a.post(&domains(&org_a), json!({ "domain": "acme.test" })).await.0, 409);
    let idn = add_domain(&a, &org_a, "Bücher.test").await;
    assert_eq!(idn["domain"], "xn--bcher-kva.test");
    // Another organisation may claim it too while nobody has verified it.
    let acme_b = add_domain(&b, &org_b, "acme.test").await;
    let token_b = acme_b["txt_record_value"].as_str().unwrap().to_owned();
    assert_ne!(token_a, token_b);
    let wrong = add_domain(&a, &org_a, "wrong.test").await;
    let missing = add_domain(&a, &org_a, "missing.test").await;

    let _dns = DnsServer::start(
        port,
        &[
            ("_latchkey-challenge.acme.test", &token_a),
            ("_latchkey-challenge.acme.test", &token_b),
            ("_latchkey-challenge.wrong.test", "not-the-token"),
        ],
    );
    let verify_path =
        |org: &str, d: &Value| format!("{}/{}/verify-dns", domains(org), d["id"].as_str().unwrap());

    let (status, err) = a.post(&verify_path(&org_a, &missing), json!({})).await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error_description"].as_str().unwrap().contains("_latchkey-challenge.missing.test")
    );
    let (status, err) = a.post(&verify_path(&org_a, &wrong), json!({})).await;
    assert_eq!(status, 400, "{err}");
    let (_, still) = a.get(&format!("{}/{}", domains(&org_a), wrong["id"].as_str().unwrap())).await;
    assert_eq!(still["verified"], false);

    let (status, verified) = a.post(&verify_path(&org_a, &acme_a), json!({})).await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["verified"], true);
    assert_eq!(verified["verification_method"], "dns");
    assert!(verified["txt_record_value"].is_null());
    // Verifying again is a no-op.
    assert_eq!(a.post(&verify_path(&org_a, &acme_a), json!({})).await.0, 200);

    // The domain is org A's now: B's proof does not count, and nobody else can add it.
    let (status, err) = b.post(&verify_path(&org_b, &acme_b), json!({})).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(c.post(&domains(&org_c), json!({ "domain": "ACME.test" })).await.0, 409);
    // Other organisations cannot reach A's domains at all.
    assert_eq!(b.post(&verify_path(&org_a, &acme_a), json!({})).await.0, 404);
    assert_eq!(b.post(&verify_path(&org_b, &acme_a), json!({})).await.0, 404);

    let (_, listed) = a.get(&domains(&org_a)).await;
    let names: Vec<&str> =
        listed["data"].as_array().unwrap().iter().map(|d| d["domain"].as_str().unwrap()).collect();
    assert_eq!(names, ["acme.test", "missing.test", "wrong.test", "xn--bcher-kva.test"]);

    // Enrollment mode and removal.
    let acme_path = format!("{}/{}", domains(&org_a), acme_a["id"].as_str().unwrap());
    assert_eq!(a.patch(&acme_path, json!({ "enrollment_mode": "sometimes" })).await.0, 400);
    let (status, d) =
        a.patch(&acme_path, json!({ "enrollment_mode": "automatic_invitation" })).await;
    assert_eq!((status, d["enrollment_mode"].as_str()), (200, Some("automatic_invitation")));
    let wrong_path = format!("{}/{}", domains(&org_a), wrong["id"].as_str().unwrap());
    assert_eq!(a.delete(&wrong_path).await.0, 204);
    assert_eq!(a.get(&wrong_path).await.0, 404);

    // Members are not admins.
    let (dave, d, _) = signed_in(&node, "dave@acme.test").await;
    node.core.orgs.set_membership(&org_a, &dave.id, "member", &Actor::cli()).await.unwrap();
    assert_eq!(d.get(&domains(&org_a)).await.0, 403);
    assert_eq!(d.post(&domains(&org_a), json!({ "domain": "dave.test" })).await.0, 403);
    assert_eq!(d.post(&verify_path(&org_a, &missing), json!({})).await.0, 403);

    // Email verification: the address must be on the domain; codes are checked and limited.
    let email_path =
        format!("{}/{}/email-verification", domains(&org_a), missing["id"].as_str().unwrap());
    let confirm_path = format!("{email_path}/confirm");
    assert_eq!(a.post(&confirm_path, json!({ "code": "123456" })).await.0, 409, "nothing sent yet");
    assert_eq!(a.post(&email_path, json!({ "address": "it@elsewhere.test" })).await.0, 400);
    assert_eq!(a.post(&email_path, json!({ "address": "it@sub.missing.test" })).await.0, 400);
    let (status, sent) = a.post(&email_path, json!({ "address": "IT@missing.test" })).await;
    assert_eq!(status, 202, "{sent}");
    assert_eq!(sent["email_code_sent_to"], "it@missing.test");
    assert_eq!(
        a.post(&email_path, json!({ "address": "it@missing.test" })).await.0,
        409,
        "resend throttled"
    );
    assert_eq!(a.post(&confirm_path, json!({ "code": "12ab56" })).await.0, 400);
    let mut statuses = Vec::new();
    for code in ["000000", "000001", "000002", "000003", "000004", "000005"] {
        statuses.push(a.post(&confirm_path, json!({ "code": code })).await.0);
    }
    assert_eq!(statuses, [400, 400, 400, 400, 400, 409], "five tries per code");
    let (_, still) =
        a.get(&format!("{}/{}", domains(&org_a), missing["id"].as_str().unwrap())).await;
    assert_eq!(still["verified"], false);

    let actions = audit_actions(&node).await;
    for action in [
        "org.domain_added",
        "org.domain_verified",
        "org.domain_enrollment_mode_set",
        "org.domain_removed",
        "org.domain_email_verification_started",
    ] {
        assert!(actions.iter().any(|a| a == action), "{action} audited");
    }
    node.stop().await;
}
on_both_backends!(domains_are_verified_by_dns_and_belong_to_one_organisation);

async fn verified_domains_drive_enrollment(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let port = free_dns_port();
    let resolver = format!("127.0.0.1:{port}");
    let node = TestServer::start(dir.path(), &db, &[("LATCHKEY_DNS_RESOLVER", &resolver)]).await;
    let (_, a, _) = signed_in(&node, "alice@acme.test").await;
    let org_id = create_org(&a, "Acme", "acme").await;
    let domains = format!("/v1/organizations/{org_id}/domains");

    let mut added = Vec::new();
    for name in ["invite.test", "suggest.test", "manual.test"] {
        let (status, d) = a.post(&domains, json!({ "domain": name })).await;
        assert_eq!(status, 201);
        added.push((
            name,
            d["id"].as_str().unwrap().to_owned(),
            d["txt_record_value"].as_str().unwrap().to_owned(),
        ));
    }
    let records: Vec<(String, String)> = added
        .iter()
        .map(|(name, _, token)| (format!("_latchkey-challenge.{name}"), token.clone()))
        .collect();
    let records: Vec<(&str, &str)> =
        records.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
    let dns = DnsServer::start(port, &records);
    for (name, id, _) in &added {
        let (status, d) = a.post(&format!("{domains}/{id}/verify-dns"), json!({})).await;
        assert_eq!(status, 200, "{name}: {d}");
    }
    drop(dns);
    for (name, mode) in
        [("invite.test", "automatic_invitation"), ("suggest.test", "automatic_suggestion")]
    {
        let id = &added.iter().find(|(n, _, _)| *n == name).unwrap().1;
        assert_eq!(
            a.patch(&format!("{domains}/{id}"), json!({ "enrollment_mode": mode })).await.0,
            200
        );
    }

    // automatic_invitation: a pending invitation on the account page, accepted from there.
    let (ivy, i, _) = signed_in(&node, "ivy@invite.test").await;
    node.core.enrollment.on_sign_up(&ivy).await.unwrap();
    node.core.enrollment.on_sign_up(&ivy).await.unwrap();
    let (status, mine) = i.get("/v1/me/invitations").await;
    assert_eq!(status, 200);
    let mine = mine["data"].as_array().unwrap().clone();
    assert_eq!(mine.len(), 1, "one invitation however often sign-up is reported");
    assert_eq!(
        (mine[0]["org_slug"].as_str(), mine[0]["role"].as_str()),
        (Some("acme"), Some("member"))
    );
    let (_, pending) = a.get(&format!("/v1/organizations/{org_id}/invitations")).await;
    assert_eq!(pending["data"][0]["source"], "domain");
    let (_, other, _) = signed_in(&node, "olga@acme.test").await;
    let accept_path = format!("/v1/me/invitations/{}/accept", mine[0]["id"].as_str().unwrap());
    assert_eq!(other.post(&accept_path, json!({})).await.0, 404, "someone else's invitation");
    let (status, m) = i.post(&accept_path, json!({})).await;
    assert_eq!((status, m["role"].as_str()), (200, Some("member")), "{m}");
    assert_eq!(i.get(&format!("/v1/organizations/{org_id}")).await.0, 200);
    assert!(i.get("/v1/me/invitations").await.1["data"].as_array().unwrap().is_empty());
    // Members get nothing more, and unverified addresses get nothing.
    node.core.enrollment.on_sign_up(&ivy).await.unwrap();
    let uma = new_user(&node, "uma@invite.test", false).await;
    let (u, _) = session_of(&node, &uma).await;
    node.core.enrollment.on_sign_up(&uma).await.unwrap();
    assert!(u.get("/v1/me/invitations").await.1["data"].as_array().unwrap().is_empty());

    // automatic_suggestion: suggestion → request → an admin approves → member.
    let (sam, s, _) = signed_in(&node, "sam@suggest.test").await;
    node.core.enrollment.on_sign_up(&sam).await.unwrap();
    let (_, suggestions) = s.get("/v1/me/suggestions").await;
    assert_eq!(suggestions["data"][0]["org_id"], org_id.as_str());
    assert_eq!(suggestions["data"][0]["status"], "suggested");
    let join = format!("/v1/organizations/{org_id}/join-requests");
    assert!(a.get(&join).await.1["data"].as_array().unwrap().is_empty(), "not asked yet");
    let (status, request) = s.post(&join, json!({})).await;
    assert_eq!((status, request["status"].as_str()), (200, Some("pending")), "{request}");
    assert_eq!(
        s.post(&join, json!({})).await.1["id"],
        request["id"],
        "asking twice is one request"
    );
    assert_eq!(s.get("/v1/me/suggestions").await.1["data"][0]["status"], "pending");
    assert_eq!(s.get(&format!("/v1/organizations/{org_id}")).await.0, 404);
    let (_, requests) = a.get(&join).await;
    assert_eq!(requests["data"][0]["email"], "sam@suggest.test");
    let request_id = request["id"].as_str().unwrap();
    assert_eq!(
        i.post(&format!("{join}/{request_id}/approve"), json!({})).await.0,
        403,
        "members cannot approve"
    );
    let (status, m) = a.post(&format!("{join}/{request_id}/approve"), json!({})).await;
    assert_eq!((status, m["role"].as_str()), (200, Some("member")), "{m}");
    assert_eq!(s.get(&format!("/v1/organizations/{org_id}")).await.1["role"], "member");
    assert_eq!(a.post(&format!("{join}/{request_id}/approve"), json!({})).await.0, 409);
    assert!(s.get("/v1/me/suggestions").await.1["data"].as_array().unwrap().is_empty());

    // A rejected request cannot be repeated.
    let (rex, r, _) = signed_in(&node, "rex@suggest.test").await;
    node.core.enrollment.on_sign_up(&rex).await.unwrap();
    let (_, request) = r.post(&join, json!({})).await;
    let (status, rejected) =
        a.post(&format!("{join}/{}/reject", request["id"].as_str().unwrap()), json!({})).await;
    assert_eq!((status, rejected["status"].as_str()), (200, Some("rejected")));
    assert_eq!(r.post(&join, json!({})).await.0, 409);
    assert_eq!(r.get(&format!("/v1/organizations/{org_id}")).await.0, 404);

    // manual: nothing happens, and nobody outside a suggestion domain may ask to join.
    let (max, x, _) = signed_in(&node, "max@manual.test").await;
    node.core.enrollment.on_sign_up(&max).await.unwrap();
    assert!(x.get("/v1/me/invitations").await.1["data"].as_array().unwrap().is_empty());
    assert!(x.get("/v1/me/suggestions").await.1["data"].as_array().unwrap().is_empty());
    assert_eq!(x.post(&join, json!({})).await.0, 403);
    assert_eq!(other.post(&join, json!({})).await.0, 403);

    let actions = audit_actions(&node).await;
    for action in [
        "org.join_suggested",
        "org.join_requested",
        "org.join_request_approved",
        "org.join_request_rejected",
    ] {
        assert!(actions.iter().any(|a| a == action), "{action} audited");
    }
    node.stop().await;
}
on_both_backends!(verified_domains_drive_enrollment);

async fn the_active_organisation_is_in_the_session_token(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let (_, a, alice_secret) = signed_in(&node, "alice@acme.test").await;
    let (bob, b, bob_secret) = signed_in(&node, "bob@acme.test").await;
    let (_, m, mallory_secret) = signed_in(&node, "mallory@evil.test").await;
    let org_id = create_org(&a, "Acme", "acme").await;
    let switch = "/v1/session/active-organization";
    let claims = |secret: String| {
        let node = &node;
        async move { verify(&node.token(&secret).await, &node.jwks().await, &node.base_url).unwrap() }
    };

    let (status, active) = a.post(switch, json!({ "org_id": &org_id })).await;
    assert_eq!(status, 200, "{active}");
    assert_eq!(active, json!({ "org_id": &org_id, "org_role": "admin", "org_slug": "acme" }));
    let c = claims(alice_secret.clone()).await;
    assert_eq!(
        (c["org_id"].as_str(), c["org_role"].as_str(), c["org_slug"].as_str()),
        (Some(org_id.as_str()), Some("admin"), Some("acme"))
    );

    // Non-members cannot switch to it; their token stays without an organisation.
    let (status, _) = m.post(switch, json!({ "org_id": &org_id })).await;
    assert_eq!(status, 400);
    assert!(claims(mallory_secret).await.get("org_id").is_none());

    // A role change shows in the member's next token at once.
    let memberships = format!("/v1/organizations/{org_id}/memberships");
    assert_eq!(a.post(&memberships, json!({ "user_id": &bob.id })).await.0, 200);
    assert_eq!(b.post(switch, json!({ "org_id": &org_id })).await.0, 200);
    assert_eq!(claims(bob_secret.clone()).await["org_role"], "member");
    assert_eq!(a.post(&memberships, json!({ "user_id": &bob.id, "role": "admin" })).await.0, 200);
    assert_eq!(claims(bob_secret.clone()).await["org_role"], "admin");
    // Leaving drops the organisation from the token.
    assert_eq!(b.post(&format!("/v1/organizations/{org_id}/leave"), json!({})).await.0, 204);
    assert!(claims(bob_secret).await.get("org_id").is_none());

    // Clearing it, and the CSRF check on the switch.
    assert_eq!(a.post(switch, json!({ "org_id": null })).await.0, 200);
    assert!(claims(alice_secret.clone()).await.get("org_id").is_none());
    let res = client()
        .post(node.url(switch))
        .header("Cookie", format!("latchkey_session={alice_secret}"))
        .json(&json!({ "org_id": &org_id }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(claims(alice_secret).await.get("org_id").is_none());
    node.stop().await;
}
on_both_backends!(the_active_organisation_is_in_the_session_token);

/// The emailed-code path end to end, with the code read from mail a real SMTP server received.
async fn domains_are_verified_by_an_emailed_code(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let smtp = crate::support::SmtpSink::start(None).await;
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[("LATCHKEY_SMTP_URL", &smtp.url())]).await;
    let (_, a, _) = signed_in(&node, "alice@acme.test").await;
    let org_id = create_org(&a, "Acme", "acme").await;
    let (_, d) = a
        .post(&format!("/v1/organizations/{org_id}/domains"), json!({ "domain": "acme.test" }))
        .await;
    let domain_id = d["id"].as_str().unwrap();
    let (status, started) = a
        .post(
            &format!("/v1/organizations/{org_id}/domains/{domain_id}/email-verification"),
            json!({ "address": "it@acme.test" }),
        )
        .await;
    assert!((200..300).contains(&status), "{started}");
    // An address off the domain is refused.
    let (status, _) = a
        .post(
            &format!("/v1/organizations/{org_id}/domains/{domain_id}/email-verification"),
            json!({ "address": "it@elsewhere.test" }),
        )
        .await;
    assert!((400..500).contains(&status));

    let mails = smtp.wait_for(1, std::time::Duration::from_secs(15)).await;
    let mail = mails.iter().find(|m| m.to.contains("it@acme.test")).expect("verification mail");
    let text = mail.part("text/plain");
    let code = text
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .expect("a 6-digit code in the mail")
        .to_owned();

    let confirm =
        format!("/v1/organizations/{org_id}/domains/{domain_id}/email-verification/confirm");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert!((400..500).contains(&a.post(&confirm, json!({ "code": wrong })).await.0));
    let (status, verified) = a.post(&confirm, json!({ "code": code })).await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["verified"], true);
    assert_eq!(verified["verification_method"], "email");
    assert_eq!(a.post(&confirm, json!({ "code": code })).await.0, 409, "codes are single use");
    node.stop().await;
}
on_both_backends!(domains_are_verified_by_an_emailed_code);

/// The hosted pages around organisations: an emailed invitation link followed through sign-in,
/// switching the active organisation, domain enrollment after sign-up, and join requests.
async fn organisation_pages(backend: Backend) {
    use crate::pages::Browser;

    let Some(db) = TestDb::new(backend).await else { return };
    let smtp = crate::support::SmtpSink::start(None).await;
    let dir = data_dir();
    let port = free_dns_port();
    let resolver = format!("127.0.0.1:{port}");
    let node = TestServer::start(
        dir.path(),
        &db,
        &[("LATCHKEY_DNS_RESOLVER", &resolver), ("LATCHKEY_SMTP_URL", &smtp.url())],
    )
    .await;
    let (_, alice_api, _) = signed_in(&node, "alice@acme.test").await;
    let org_id = create_org(&alice_api, "Acme", "acme").await;
    let domains = format!("/v1/organizations/{org_id}/domains");
    let mut records = Vec::new();
    for (name, mode) in
        [("invite.test", "automatic_invitation"), ("suggest.test", "automatic_suggestion")]
    {
        let d = add_domain(&alice_api, &org_id, name).await;
        records.push((
            format!("_latchkey-challenge.{name}"),
            d["txt_record_value"].as_str().unwrap().to_owned(),
            d["id"].as_str().unwrap().to_owned(),
            mode,
        ));
    }
    let served: Vec<(&str, &str)> =
        records.iter().map(|(n, t, _, _)| (n.as_str(), t.as_str())).collect();
    let dns = DnsServer::start(port, &served);
    for (_, _, id, mode) in &records {
        assert_eq!(alice_api.post(&format!("{domains}/{id}/verify-dns"), json!({})).await.0, 200);
        assert_eq!(
            alice_api.patch(&format!("{domains}/{id}"), json!({ "enrollment_mode": mode })).await.0,
            200
        );
    }
    drop(dns);

    // Bob follows an emailed invitation link: sign-in first, then back to the invitation.
    new_user(&node, "bob@acme.test", true).await;
    let (status, inv) = alice_api
        .post(
            &format!("/v1/organizations/{org_id}/invitations"),
            json!({ "email": "bob@acme.test" }),
        )
        .await;
    assert_eq!(status, 201);
    let accept_path =
        inv["accept_url"].as_str().unwrap().trim_start_matches(&node.base_url).to_owned();
    let bob = Browser::new(&node.base_url);
    let (status, _, location) = bob.get(&accept_path).await;
    assert_eq!(status, 303);
    assert!(location.unwrap().starts_with("/sign-in?return_to=%2Finvitations%2Faccept%3Ftoken%3D"));
    let (status, _, location) =
        bob.sign_in("bob@acme.test", "correct horse battery", &accept_path).await;
    assert_eq!((status.as_u16(), location.as_deref()), (303, Some(accept_path.as_str())));
    let (status, body, _) = bob.get(&accept_path).await;
    assert_eq!(status, 200);
    assert!(body.contains("Join Acme"), "{body}");
    let csrf = crate::pages::csrf_in(&body);
    let token = token_of(&accept_path);
    let (status, _, location) =
        bob.post("/invitations/accept", &[("csrf_token", &csrf), ("token", &token)]).await;
    assert_eq!((status.as_u16(), location.as_deref()), (303, Some("/account?notice=joined")));
    let (_, body, _) = bob.get("/account?notice=joined").await;
    assert!(
        body.contains("You have joined the organisation.")
            && body.contains("Acme")
            && body.contains("Switch to Acme"),
        "{body}"
    );
    // The link works once, and a member cannot see the admins' page.
    assert_eq!(bob.get(&accept_path).await.0, 404);
    assert_eq!(bob.get(&format!("/organizations/{org_id}/join-requests")).await.0, 404);

    // Switching organisation changes the session token's claims.
    let (status, _, _) =
        bob.post("/account/organization", &[("csrf_token", &csrf), ("org_id", &org_id)]).await;
    assert_eq!(status, 303);
    let res = bob
        .client
        .post(node.url("/v1/session/token"))
        .header("X-Latchkey-CSRF", "1")
        .send()
        .await
        .unwrap();
    let jwt = res.json::<Value>().await.unwrap()["jwt"].as_str().unwrap().to_owned();
    let claims = crate::support::verify(&jwt, &node.jwks().await, &node.base_url).unwrap();
    assert_eq!(
        (claims["org_id"].as_str(), claims["org_role"].as_str(), claims["org_slug"].as_str()),
        (Some(org_id.as_str()), Some("member"), Some("acme"))
    );
    let (_, body, _) = bob.get("/account").await;
    assert!(body.contains("Use your personal account"));
    assert_eq!(
        bob.post("/account/organization", &[("csrf_token", &csrf), ("org_id", "")]).await.0,
        303
    );
    let res = bob
        .client
        .post(node.url("/v1/session/token"))
        .header("X-Latchkey-CSRF", "1")
        .send()
        .await
        .unwrap();
    let jwt = res.json::<Value>().await.unwrap()["jwt"].as_str().unwrap().to_owned();
    assert!(
        crate::support::verify(&jwt, &node.jwks().await, &node.base_url)
            .unwrap()
            .get("org_id")
            .is_none()
    );
    // Not a member: refused.
    let (other_api, _) = session_of(&node, &new_user(&node, "zed@other.test", true).await).await;
    let other_org = create_org(&other_api, "Other", "other").await;
    assert_eq!(
        bob.post("/account/organization", &[("csrf_token", &csrf), ("org_id", &other_org)]).await.0,
        404
    );

    // Eve signs up on an automatic-invitation domain: the invitation waits on her account page.
    let eve = Browser::new(&node.base_url);
    let csrf_eve = eve.csrf("/sign-up").await;
    let (_, _, location) = eve
        .post(
            "/sign-up",
            &[
                ("csrf_token", &csrf_eve),
                ("email", "eve@invite.test"),
                ("password", "quartz violin ember lantern"),
            ],
        )
        .await;
    let attempt = location.unwrap().trim_start_matches("/sign-up/verify?attempt=").to_owned();
    let mails = smtp.wait_for(2, std::time::Duration::from_secs(15)).await;
    let text = mails
        .iter()
        .find(|m| m.to.contains("eve@invite.test"))
        .unwrap()
        .part("text/plain")
        .to_owned();
    let code = text.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 6).unwrap().to_owned();
    assert_eq!(
        eve.post(
            "/sign-up/verify",
            &[("csrf_token", &csrf_eve), ("attempt", &attempt), ("code", &code)]
        )
        .await
        .0,
        303
    );
    let (_, body, _) = eve.get("/account").await;
    assert!(body.contains("Invitation to join <strong>Acme</strong>"), "{body}");
    let marker = "/account/invitations/";
    let start = body.find(marker).unwrap() + marker.len();
    let invitation_id: String = body[start..].chars().take_while(|c| *c != '/').collect();
    let (status, _, location) = eve
        .post(&format!("/account/invitations/{invitation_id}/accept"), &[("csrf_token", &csrf_eve)])
        .await;
    assert_eq!((status.as_u16(), location.as_deref()), (303, Some("/account?notice=joined")));

    // Dave's domain suggests Acme: he asks to join and Alice approves on her page.
    let dave_user = new_user(&node, "dave@suggest.test", true).await;
    node.core.enrollment.on_sign_up(&dave_user).await.unwrap();
    let dave = Browser::new(&node.base_url);
    assert_eq!(dave.sign_in("dave@suggest.test", "correct horse battery", "").await.0, 303);
    let (_, body, _) = dave.get("/account").await;
    assert!(body.contains("uses your email domain") && body.contains("Request to join"), "{body}");
    let csrf_dave = crate::pages::csrf_in(&body);
    let (status, _, location) = dave
        .post(&format!("/account/organizations/{org_id}/join"), &[("csrf_token", &csrf_dave)])
        .await;
    assert_eq!((status.as_u16(), location.as_deref()), (303, Some("/account?notice=requested")));
    assert!(dave.get("/account").await.1.contains("Requested"));

    let alice = Browser::new(&node.base_url);
    assert_eq!(alice.sign_in("alice@acme.test", "correct horse battery", "").await.0, 303);
    let (status, body, _) = alice.get(&format!("/organizations/{org_id}/join-requests")).await;
    assert_eq!(status, 200);
    assert!(body.contains("dave@suggest.test"), "{body}");
    let csrf_alice = crate::pages::csrf_in(&body);
    let marker = "/join-requests/";
    let start = body.find(&format!("{marker}jrq_")).unwrap() + marker.len();
    let request_id: String = body[start..].chars().take_while(|c| *c != '/').collect();
    let (status, _, location) = alice
        .post(
            &format!("/organizations/{org_id}/join-requests/{request_id}/approve"),
            &[("csrf_token", &csrf_alice)],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(location.unwrap(), format!("/organizations/{org_id}/join-requests?notice=approved"));
    let roles = node.core.orgs.memberships_of_user(&dave_user.id).await.unwrap();
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0].role, "member");
    node.stop().await;
}
on_both_backends!(organisation_pages);

/// The link of the latest verification mail to `to`, as a path on the site.
async fn verification_link(smtp: &crate::support::SmtpSink, to: &str, n: usize) -> String {
    let mails = smtp.wait_for(n, Duration::from_secs(15)).await;
    let mail = mails
        .iter()
        .rev()
        .find(|m| m.to.contains(to) && m.subject.contains("Verify your email address"))
        .unwrap_or_else(|| panic!("no verification mail to {to}"));
    let text = mail.part("text/plain");
    let link = text.split_whitespace().find(|w| w.contains("/email/verify?")).unwrap();
    assert!(
        mail.part("text/html").contains(&link.replace('&', "&amp;"))
            || mail.part("text/html").contains(&link.replace('&', "&#38;"))
    );
    let url = url::Url::parse(link).unwrap();
    format!("{}?{}", url.path(), url.query().unwrap())
}

/// An invitation to an address that is not verified yet: the page says why and offers a
/// verification link; once the link is used, accepting works.
async fn an_unverified_address_is_verified_by_link_before_accepting(backend: Backend) {
    use crate::pages::{Browser, csrf_in};
    use latchkey_core::infra::entity::{email_verification, user_email};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

    let Some(db) = TestDb::new(backend).await else { return };
    let smtp = crate::support::SmtpSink::start(None).await;
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[("LATCHKEY_SMTP_URL", &smtp.url())]).await;
    let (_, alice, _) = signed_in(&node, "alice@acme.test").await;
    let org_id = create_org(&alice, "Acme", "acme").await;
    let bob_user = new_user(&node, "bob@acme.test", false).await;
    let (status, inv) = alice
        .post(
            &format!("/v1/organizations/{org_id}/invitations"),
            json!({ "email": "bob@acme.test" }),
        )
        .await;
    assert_eq!(status, 201, "{inv}");
    let accept_path =
        inv["accept_url"].as_str().unwrap().trim_start_matches(&node.base_url).to_owned();
    let token = token_of(&accept_path);
    let bob = Browser::new(&node.base_url);
    assert_eq!(bob.sign_in("bob@acme.test", "correct horse battery", &accept_path).await.0, 303);

    // The page and the refusal say why, and the invitation stays pending.
    let (status, body, _) = bob.get(&accept_path).await;
    assert_eq!(status, 403);
    assert!(
        body.contains("is not verified yet") && body.contains("Send a verification link"),
        "{body}"
    );
    assert!(!body.contains("no longer valid"), "{body}");
    let csrf = csrf_in(&body);
    let (status, body, _) =
        bob.post("/invitations/accept", &[("csrf_token", &csrf), ("token", &token)]).await;
    assert_eq!(status, 403);
    assert!(body.contains("is not verified yet") && !body.contains("no longer valid"), "{body}");
    let (status, body, _) = bob
        .post(
            &format!("/account/invitations/{}/accept", inv["id"].as_str().unwrap()),
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(status, 403);
    assert!(
        body.contains("Verify your email address") && body.contains("email-unverified"),
        "{body}"
    );
    assert_eq!(node.core.invitations.list_pending(&org_id, &Actor::cli()).await.unwrap().len(), 1);

    // One click mails a link; the token is stored only as a hash.
    let (status, body, _) = bob
        .post("/account/email/verify", &[("csrf_token", &csrf), ("return_to", &accept_path)])
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Check your inbox") && body.contains("bob@acme.test"), "{body}");
    let link = verification_link(&smtp, "bob@acme.test", 2).await;
    let link_token = url::form_urlencoded::parse(link.split_once('?').unwrap().1.as_bytes())
        .find(|(k, _)| k == "token")
        .unwrap()
        .1
        .into_owned();
    let rows = email_verification::Entity::find().all(node.core.store.db()).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].email.as_str(), rows[0].token_hash.len()), ("bob@acme.test", 64));
    assert_ne!(rows[0].token_hash, link_token);

    // Opening the link (twice, as a mail scanner might) does not use it; the button does.
    for _ in 0..2 {
        let (status, body, _) = bob.get(&link).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("Verify my email address"), "{body}");
    }
    let (_, body, _) = bob.get(&link).await;
    let form_return_to = format!("value=\"{}\"", accept_path.replace('&', "&#38;"));
    assert!(body.contains(&form_return_to), "{body}");
    let (status, _, location) = bob
        .post(
            "/email/verify",
            &[("csrf_token", &csrf_in(&body)), ("token", &link_token), ("return_to", &accept_path)],
        )
        .await;
    assert_eq!((status.as_u16(), location.as_deref()), (303, Some(accept_path.as_str())));
    assert!(node.core.users.get(&bob_user.id).await.unwrap().email_verified);
    let row = user_email::Entity::find()
        .filter(user_email::Column::Email.eq("bob@acme.test"))
        .one(node.core.store.db())
        .await
        .unwrap()
        .unwrap();
    assert!(row.verified && row.verified_at.is_some());
    // Single use.
    assert_eq!(bob.get(&link).await.0, 400);
    let (status, body, _) =
        bob.post("/email/verify", &[("csrf_token", &csrf), ("token", &link_token)]).await;
    assert_eq!(status, 400);
    assert!(body.contains("no longer valid"), "{body}");

    // Now accepting works.
    let (status, body, _) = bob.get(&accept_path).await;
    assert_eq!(status, 200);
    assert!(body.contains("Join Acme") && body.contains("Accept invitation"), "{body}");
    let (status, _, location) =
        bob.post("/invitations/accept", &[("csrf_token", &csrf), ("token", &token)]).await;
    assert_eq!((status.as_u16(), location.as_deref()), (303, Some("/account?notice=joined")));
    assert_eq!(node.core.orgs.memberships_of_user(&bob_user.id).await.unwrap().len(), 1);
    let actions = audit_actions(&node).await;
    assert!(actions.iter().any(|a| a == "email.verification_requested"), "{actions:?}");
    assert!(actions.iter().any(|a| a == "email.verified"), "{actions:?}");

    // Rate-limited like every mail a request can send; links expire.
    let carol_user = new_user(&node, "carol@acme.test", false).await;
    let carol = Browser::new(&node.base_url);
    let (_, carol_secret) = node.session(&carol_user).await;
    carol.set_session(&carol_secret);
    let (status, body, _) = carol.get("/account").await;
    assert_eq!(status, 200);
    assert!(body.contains("email-unverified"), "{body}");
    let csrf = csrf_in(&body);
    for i in 0..5 {
        let (status, _, _) = carol.post("/account/email/verify", &[("csrf_token", &csrf)]).await;
        assert_eq!(status, 200, "request {i}");
    }
    let (status, _, _) = carol.post("/account/email/verify", &[("csrf_token", &csrf)]).await;
    assert_eq!(status, 429);
    let link = verification_link(&smtp, "carol@acme.test", 7).await;
    assert_eq!(carol.get(&link).await.0, 200);
    node.clock.advance(Duration::from_secs(61 * 60));
    assert_eq!(carol.get(&link).await.0, 400);
    assert!(!node.core.users.get(&carol_user.id).await.unwrap().email_verified);
    node.stop().await;
}
on_both_backends!(an_unverified_address_is_verified_by_link_before_accepting);
