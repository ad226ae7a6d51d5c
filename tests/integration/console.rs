//! The admin console (`/admin`) through HTTP as a browser sends it: who may open which page,
//! the actions and their audit events, CSRF, the recent-sign-in rule for sensitive actions,
//! the audit export. (The Chromium run of the same console is in `e2e`.)

use std::time::Duration;

use latchkey_core::{identity::users::NewUser, infra::audit::Actor};
use reqwest::StatusCode;

use crate::{
    on_both_backends,
    pages::{Browser, csrf_in},
    support::{Backend, TestDb, TestServer, data_dir},
};

const PASSWORD: &str = "correct horse battery";

async fn account(node: &TestServer, email: &str, name: &str, is_admin: bool) -> String {
    let new = NewUser {
        email: email.into(),
        name: Some(name.into()),
        password: Some(PASSWORD.into()),
        is_admin,
        email_verified: true,
        ..NewUser::default()
    };
    node.core.users.create(new, &Actor::cli()).await.unwrap().id
}

/// A browser signed in through the hosted form as `email`.
async fn signed_in(node: &TestServer, email: &str) -> Browser {
    let browser = Browser::new(&node.base_url);
    let (status, body, location) = browser.sign_in(email, PASSWORD, "/admin").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(location.as_deref(), Some("/admin"));
    browser
}

fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let s = html.find(start).unwrap_or_else(|| panic!("no {start} in {html}")) + start.len();
    &html[s..s + html[s..].find(end).unwrap()]
}

/// Posts `fields` (and a file, as `metadata_file`) as `multipart/form-data`, as the browser
/// sends the SAML wizard.
async fn post_multipart(
    browser: &Browser,
    path: &str,
    fields: &[(&str, &str)],
    file: Option<&str>,
) -> (StatusCode, String, Option<String>) {
    let boundary = "----latchkey-test-boundary-7d1";
    let mut body = String::new();
    for (k, v) in fields {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
        ));
    }
    if let Some(content) = file {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"metadata_file\"; filename=\"idp.xml\"\r\nContent-Type: application/xml\r\n\r\n{content}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    let res = browser
        .client
        .post(format!("{}{path}", browser.base))
        .header("Origin", browser.base.clone())
        .header("Content-Type", format!("multipart/form-data; boundary={boundary}"))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let location = res.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
    (status, res.text().await.unwrap(), location)
}

/// The path segment just before `suffix` (an ID in a form's action).
fn id_before<'a>(html: &'a str, suffix: &str) -> &'a str {
    let end = html.find(suffix).unwrap_or_else(|| panic!("no {suffix} in {html}"));
    let start = html[..end].rfind('/').unwrap() + 1;
    &html[start..end]
}

/// The "next page" link of a listing.
fn next_link(html: &str) -> String {
    let end = html.find("\" rel=\"next\"").unwrap_or_else(|| panic!("no next page in {html}"));
    let start = html[..end].rfind("href=\"").unwrap() + "href=\"".len();
    html[start..end].replace("&amp;", "&").replace("&#38;", "&")
}

async fn an_instance_admin_runs_the_instance_from_the_console(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let data = data_dir();
    let node = TestServer::start(data.path(), &db, &[]).await;
    account(&node, "root@admin.test", "Root", true).await;
    let bob = account(&node, "bob@people.test", "Bob Builder", false).await;
    for i in 0..60 {
        let new = NewUser {
            email: format!("user{i:02}@people.test"),
            name: Some(format!("User {i}")),
            ..NewUser::default()
        };
        node.core.users.create(new, &Actor::cli()).await.unwrap();
    }
    let (_, bob_secret) = node.session(&node.core.users.get(&bob).await.unwrap()).await;
    let bob_session = node.token(&bob_secret).await;
    assert!(!bob_session.is_empty());
    let admin = signed_in(&node, "root@admin.test").await;

    // The dashboard counts what the store holds.
    let (status, dash, _) = admin.get("/admin").await;
    assert_eq!(status, 200, "{dash}");
    assert_eq!(between(&dash, "id=\"stat-users\">", "<"), "62");
    assert!(dash.contains("<svg class=\"chart\""), "{dash}");

    // Find Bob among many, by name prefix, case-insensitively; paging by cursor.
    let (status, found, _) = admin.get("/admin/users?q=bob%20b").await;
    assert_eq!(status, 200);
    assert!(found.contains(&format!("/admin/users/{bob}")), "{found}");
    assert!(!found.contains("user01@people.test"));
    let (_, first, _) = admin.get("/admin/users").await;
    let next = next_link(&first);
    let (status, second, _) = admin.get(&next).await;
    assert_eq!(status, 200);
    assert!(!second.contains("rel=\"next\""), "62 users on two pages of 50: {second}");
    assert!(!first.contains("user59@") && second.contains("user59@"));

    // The instance's sessions name their users.
    let (status, sessions, _) = admin.get("/admin/sessions").await;
    assert_eq!(status, 200, "{sessions}");
    assert!(sessions.contains("bob@people.test") && sessions.contains("root@admin.test"));
    // Revoke Bob's session: his next token request fails.
    let (status, page, _) = admin.get(&format!("/admin/users/{bob}")).await;
    assert_eq!(status, 200, "{page}");
    let session_id = id_before(&page, "/revoke\"").to_owned();
    let csrf = csrf_in(&page);
    let revoke = format!("/admin/sessions/{session_id}/revoke");
    let (status, _, location) =
        admin.post(&revoke, &[("csrf_token", &csrf), ("back", "user")]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, Some(format!("/admin/users/{bob}?notice=revoked")));
    assert_eq!(node.token_request(&bob_secret).await.status(), 401);

    // Deactivate Bob.
    let deactivate = format!("/admin/users/{bob}/deactivate");
    let (status, _, _) = admin.post(&deactivate, &[("csrf_token", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, page, _) = admin.get(&format!("/admin/users/{bob}")).await;
    assert!(between(&page, "id=\"user-status\">", "<").starts_with("deactivated"), "{page}");

    // A form without the token, or from another site, changes nothing.
    let reactivate = format!("/admin/users/{bob}/reactivate");
    let (status, _, _) = admin.post(&reactivate, &[("csrf_token", "x".repeat(43).as_str())]).await;
    assert_eq!(status, 403);
    let cross_site = admin
        .client
        .post(node.url(&reactivate))
        .header("Origin", "https://evil.example")
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);
    assert_eq!(node.core.users.get(&bob).await.unwrap().status.as_str(), "deactivated");

    // Create an organisation and verify a domain.
    let (_, orgs, _) = admin.get("/admin/organizations").await;
    let (status, _, location) = admin
        .post(
            "/admin/organizations",
            &[("csrf_token", &csrf_in(&orgs)), ("name", "Initech"), ("slug", "initech")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let org_path = location.unwrap().split('?').next().unwrap().to_owned();
    let org_id = org_path.trim_start_matches("/admin/organizations/").to_owned();
    let add = format!("{org_path}/domains");
    let (status, _, _) =
        admin.post(&add, &[("csrf_token", &csrf), ("domain", "initech.test")]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, org_page, _) = admin.get(&org_path).await;
    let mark =
        format!("{org_path}/domains/{}/mark-verified", id_before(&org_page, "/mark-verified\""));
    let (status, _, _) = admin.post(&mark, &[("csrf_token", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, org_page, _) = admin.get(&org_path).await;
    assert!(org_page.contains("verified</span> (operator)"), "{org_page}");

    // Every action is in the audit log, by this admin, and the organisation's own view.
    let (_, log, _) = admin.get("/admin/audit?actor=").await;
    for action in ["session.revoked", "user.deactivated", "org.created", "org.domain_verified"] {
        assert!(log.contains(action), "{action} missing from the audit log: {log}");
    }
    let (_, org_log, _) = admin.get(&format!("/admin/audit?org={org_id}")).await;
    assert!(org_log.contains("org.domain_verified") && !org_log.contains("user.deactivated"));
    let export = admin.get(&format!("/admin/audit/export?format=jsonl&org={org_id}")).await;
    assert_eq!(export.0, 200);
    let lines: Vec<serde_json::Value> =
        export.1.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.iter().any(|e| e["action"] == "org.domain_added"), "{}", export.1);
    assert!(lines.iter().all(|e| e["org_id"] == org_id.as_str()), "{}", export.1);
    let csv = admin.get("/admin/audit/export?format=csv&action=user.deactivated").await;
    assert_eq!(csv.0, 200);
    let mut rows = csv.1.lines();
    assert!(rows.next().unwrap().starts_with("id,occurred_at,actor,action"));
    let row = rows.next().unwrap();
    assert!(row.contains(",user.deactivated,") && row.contains(&bob), "{row}");
    assert_eq!(rows.next(), None);
    node.stop().await;
}
on_both_backends!(an_instance_admin_runs_the_instance_from_the_console);

async fn organisation_admins_see_their_organisation_only(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let data = data_dir();
    let node = TestServer::start(data.path(), &db, &[]).await;
    let acme = node.core.orgs.create("Acme", "acme", &Actor::cli()).await.unwrap();
    let globex = node.core.orgs.create("Globex", "globex", &Actor::cli()).await.unwrap();
    let alice = account(&node, "alice@acme.test", "Alice", false).await;
    let carol = account(&node, "carol@acme.test", "Carol", false).await;
    node.core.orgs.set_membership(&acme.id, &alice, "admin", &Actor::cli()).await.unwrap();
    node.core.orgs.set_membership(&acme.id, &carol, "member", &Actor::cli()).await.unwrap();
    node.core.orgs.set_membership(&globex.id, &carol, "member", &Actor::cli()).await.unwrap();

    let alice_browser = signed_in(&node, "alice@acme.test").await;
    let (status, _, location) = alice_browser.get("/admin").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/admin/organizations"));
    let (status, list, _) = alice_browser.get("/admin/organizations").await;
    assert_eq!(status, 200);
    assert!(list.contains("Acme") && !list.contains("Globex"), "{list}");
    let (status, page, _) = alice_browser.get(&format!("/admin/organizations/{}", acme.id)).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("carol@acme.test"));
    // Another organisation, an unknown one and the instance pages: 403 alike.
    for path in [
        format!("/admin/organizations/{}", globex.id),
        "/admin/organizations/org_01JZZZZZZZZZZZZZZZZZZZZZZZ".to_owned(),
        "/admin/users".to_owned(),
        format!("/admin/users/{carol}"),
        "/admin/sessions".to_owned(),
        format!("/admin/audit?org={}", globex.id),
    ] {
        let (status, body, _) = alice_browser.get(&path).await;
        assert!(status == 403 || status == 404, "{path}: {status} {body}");
        assert!(!body.contains("Globex"), "{path} shows the other organisation: {body}");
    }
    let csrf = csrf_in(&page);
    let remove = format!("/admin/organizations/{}/members/{carol}/remove", globex.id);
    let (status, _, _) = alice_browser.post(&remove, &[("csrf_token", &csrf)]).await;
    assert_eq!(status, 403);
    assert!(node.core.orgs.membership(&globex.id, &carol).await.unwrap().is_some());
    // Her own organisation's audit log is hers to read.
    let (status, log, _) = alice_browser.get("/admin/audit").await;
    assert_eq!(status, 200, "{log}");
    assert!(log.contains("org.membership_set"), "{log}");

    // A member who administers nothing gets no console at all.
    let carol_browser = signed_in(&node, "carol@acme.test").await;
    let (status, _, _) = carol_browser.get("/admin").await;
    assert_eq!(status, 403);
    // Nobody signed in: off to sign in, coming back.
    let (status, _, location) = Browser::new(&node.base_url).get("/admin/users?q=a").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/sign-in?return_to=%2Fadmin%2Fusers%3Fq%3Da"));
    node.stop().await;
}
on_both_backends!(organisation_admins_see_their_organisation_only);

async fn sensitive_actions_need_a_recent_sign_in(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let data = data_dir();
    let node = TestServer::start(data.path(), &db, &[]).await;
    account(&node, "root@admin.test", "Root", true).await;
    let org = node.core.orgs.create("Doomed", "doomed", &Actor::cli()).await.unwrap();
    let admin = signed_in(&node, "root@admin.test").await;
    let org_path = format!("/admin/organizations/{}", org.id);
    let (_, page, _) = admin.get(&org_path).await;
    let csrf = csrf_in(&page);
    let delete = format!("{org_path}/delete");

    // Eleven minutes after signing in, deleting asks for the password first.
    node.clock.advance(Duration::from_secs(11 * 60));
    let (status, _, location) = admin.post(&delete, &[("csrf_token", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = location.unwrap();
    assert_eq!(
        location,
        format!("/admin/reauthenticate?return_to=%2Fadmin%2Forganizations%2F{}", org.id)
    );
    assert!(node.core.orgs.get(&org.id).await.is_ok(), "deleted without a recent sign-in");
    let (status, form, _) = admin.get(&location).await;
    assert_eq!(status, 200, "{form}");
    let reauth = [("csrf_token", csrf.as_str()), ("return_to", org_path.as_str())];
    let (status, body, _) =
        admin.post("/admin/reauthenticate", &[reauth[0], reauth[1], ("password", "wrong")]).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("not correct"));
    let (status, _, location) =
        admin.post("/admin/reauthenticate", &[reauth[0], reauth[1], ("password", PASSWORD)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some(org_path.as_str()));
    // The return address never leaves the console.
    let (_, _, location) = admin
        .post(
            "/admin/reauthenticate",
            &[reauth[0], ("return_to", "https://evil.example/"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(location.as_deref(), Some("/admin"));

    let (status, _, location) = admin.post(&delete, &[("csrf_token", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/admin/organizations"));
    assert!(node.core.orgs.get(&org.id).await.is_err());
    let events = latchkey_core::infra::audit::recent(node.core.store.db(), 50).await.unwrap();
    let reauth_event = events.iter().find(|e| e.action == "session.reauthenticated").unwrap();
    assert!(reauth_event.actor.starts_with("user:"));
    assert!(
        events.iter().any(|e| e.action == "sign_in.failed" && e.data["reason"] == "wrong_password")
    );
    node.stop().await;
}
on_both_backends!(sensitive_actions_need_a_recent_sign_in);

async fn keys_rotate_and_templates_preview_for_a_chosen_user(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let data = data_dir();
    let node = TestServer::start(data.path(), &db, &[]).await;
    account(&node, "root@admin.test", "Root", true).await;
    account(&node, "ada@people.test", "Ada Lovelace", false).await;
    let admin = signed_in(&node, "root@admin.test").await;
    let (status, keys, _) = admin.get("/admin/keys").await;
    assert_eq!(status, 200, "{keys}");
    let csrf = csrf_in(&keys);
    let active_before = node.core.keys.list().await.unwrap();

    // Rotation is sensitive: after ten minutes it asks for the password, and rotates nothing.
    node.clock.advance(Duration::from_secs(601));
    let (status, _, location) =
        admin.post("/admin/keys/rotate", &[("csrf_token", &csrf), ("alg", "ES256")]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/admin/reauthenticate?return_to=%2Fadmin%2Fkeys"));
    assert_eq!(node.core.keys.list().await.unwrap().len(), active_before.len());
    let reauth =
        [("csrf_token", csrf.as_str()), ("return_to", "/admin/keys"), ("password", PASSWORD)];
    assert_eq!(admin.post("/admin/reauthenticate", &reauth).await.0, StatusCode::SEE_OTHER);
    let (status, _, _) =
        admin.post("/admin/keys/rotate", &[("csrf_token", &csrf), ("alg", "ES256")]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let after = node.core.keys.list().await.unwrap();
    assert_eq!(after.len(), active_before.len() + 1);
    assert_eq!(after.iter().filter(|k| k.alg == "ES256" && k.status == "active").count(), 1);

    // A template: preview for Ada, then save; a bad one comes back with its error.
    let claims = r#"{"who": "{{user.primary_email}}", "name": "{{user.name}}"}"#;
    let form = |intent: &'static str, claims: &'static str| {
        [
            ("csrf_token", csrf.clone()),
            ("name", "profile".to_owned()),
            ("claims", claims.to_owned()),
            ("lifetime", "120".to_owned()),
            ("preview_user", "ada@people.test".to_owned()),
            ("intent", intent.to_owned()),
        ]
    };
    let as_refs = |f: &[(&'static str, String); 6]| -> Vec<(&'static str, String)> { f.to_vec() };
    let post = |f: Vec<(&'static str, String)>| {
        let admin = &admin;
        async move {
            let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            admin.post("/admin/templates", &pairs).await
        }
    };
    let (status, page, _) = post(as_refs(&form("preview", claims))).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("&#34;who&#34;: &#34;ada@people.test&#34;")
            || page.contains("&quot;who&quot;: &quot;ada@people.test&quot;"),
        "{page}"
    );
    assert!(node.core.jwt_templates.get("profile").await.is_err(), "a preview saves nothing");
    let (status, page, _) = post(as_refs(&form("save", r#"{"iss": "me"}"#))).await;
    assert_eq!(status, 422, "{page}");
    let (status, _, location) = post(as_refs(&form("save", claims))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/admin/templates/profile"));
    let saved = node.core.jwt_templates.get("profile").await.unwrap();
    assert_eq!(saved.lifetime_secs, 120);
    // Edit, then delete; both audited.
    let edit = [
        ("csrf_token", csrf.as_str()),
        ("claims", r#"{"who": "{{user.id}}"}"#),
        ("lifetime", "300"),
        ("intent", "save"),
    ];
    assert_eq!(admin.post("/admin/templates/profile", &edit).await.0, StatusCode::SEE_OTHER);
    assert_eq!(node.core.jwt_templates.get("profile").await.unwrap().lifetime_secs, 300);
    let (status, _, _) =
        admin.post("/admin/templates/profile/delete", &[("csrf_token", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(node.core.jwt_templates.get("profile").await.is_err());
    let events = latchkey_core::infra::audit::recent(node.core.store.db(), 20).await.unwrap();
    for action in
        ["key.rotated", "jwt_template.created", "jwt_template.updated", "jwt_template.deleted"]
    {
        let e = events.iter().find(|e| e.action == action).unwrap_or_else(|| panic!("{action}"));
        assert!(e.actor.starts_with("user:usr_"), "{action} by {}", e.actor);
    }
    let updated = events.iter().find(|e| e.action == "jwt_template.updated").unwrap();
    assert_eq!(updated.data["before"]["lifetime_secs"], 120);
    assert_eq!(updated.data["after"]["lifetime_secs"], 300);
    node.stop().await;
}
on_both_backends!(keys_rotate_and_templates_preview_for_a_chosen_user);

/// The SAML wizard: the SP values first, for the connection ID the page reserves; the IdP by
/// fields; then "test connection" runs a real SP-initiated round trip whose answer is shown as
/// mapped, signing nobody in and creating nobody.
async fn the_saml_wizard_creates_and_tests_a_connection(backend: Backend) {
    use latchkey_saml::{
        algorithms::AlgorithmPolicy,
        binding,
        testkit::{ResponseSpec, TestIdp},
    };
    let Some(db) = TestDb::new(backend).await else { return };
    let data = data_dir();
    let node = TestServer::start(data.path(), &db, &[]).await;
    account(&node, "root@admin.test", "Root", true).await;
    let org = node.core.orgs.create("Corp", "corp", &Actor::cli()).await.unwrap();
    node.core.domains.add_verified(&org.id, "corp.example", &Actor::cli()).await.unwrap();
    let admin = signed_in(&node, "root@admin.test").await;

    let (status, _, location) =
        admin.get(&format!("/admin/organizations/{}/connections/saml/new", org.id)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let wizard = location.unwrap();
    let reserved = wizard.split("connection_id=").nth(1).unwrap().to_owned();
    let (status, page, _) = admin.get(&wizard).await;
    assert_eq!(status, 200, "{page}");
    let sp_entity_id = format!("{}/saml/{reserved}", node.base_url);
    assert_eq!(between(&page, "id=\"sp-entity-id\">", "<"), sp_entity_id);
    assert_eq!(between(&page, "id=\"acs-url\">", "<"), format!("{sp_entity_id}/acs"));

    // Nothing about the IdP: the form comes back with the reason, and nothing is created.
    let csrf = csrf_in(&page);
    let base_form = [
        ("csrf_token", csrf.as_str()),
        ("connection_id", reserved.as_str()),
        ("name", "Corp IdP"),
        ("sign_requests", "on"),
        ("skew", "60"),
        ("group_roles", "IT=admin"),
    ];
    let create = format!("/admin/organizations/{}/connections/saml", org.id);
    let (status, body, _) = post_multipart(&admin, &create, &base_form, None).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("paste the IdP metadata"), "{body}");
    assert!(node.core.saml.show(&reserved, &Actor::cli()).await.is_err());

    let idp = TestIdp::generate("https://idp.corp.example");
    // A form without its CSRF token is refused, and makes nothing.
    let (status, _, _) = post_multipart(&admin, &create, &base_form[1..], None).await;
    assert_eq!(status, 403);
    // The IdP's metadata as an uploaded file.
    let metadata = format!(
        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.corp.example"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.corp.example/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>"#,
        latchkey_saml::keys::cert_base64(&idp.cert_der)
    );
    let (status, _, location) = post_multipart(&admin, &create, &base_form, Some(&metadata)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, Some(format!("/admin/connections/{reserved}")));
    let (status, page, _) = admin.get(&format!("/admin/connections/{reserved}")).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("IdP signing") && page.contains(&sp_entity_id), "{page}");

    // Test connection: to the IdP with a signed AuthnRequest, back with a response.
    let (status, _, location) = admin.get(&format!("/admin/connections/{reserved}/test")).await;
    assert_eq!(status, 302);
    let location = location.unwrap();
    let query = location.split_once('?').unwrap().1;
    let msg =
        binding::decode_redirect(query, "SAMLRequest", &[], AlgorithmPolicy::default()).unwrap();
    let request_id = msg.xml.split("ID=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let users_before = node.core.users.list(1000, 0).await.unwrap().len();
    let acs = format!("{sp_entity_id}/acs");
    let mut spec = ResponseSpec::new(&acs, &sp_entity_id, "ada@corp.example", node.clock.now());
    spec.in_response_to = Some(request_id);
    spec.attributes = vec![
        ("email".into(), vec!["ada@corp.example".into()]),
        ("givenName".into(), vec!["Ada".into()]),
        ("groups".into(), vec!["IT".into(), "Staff".into()]),
    ];
    let response = idp.response_b64(&spec);
    let res = admin
        .client
        .post(&acs)
        .form(&[
            ("SAMLResponse", response.as_str()),
            ("RelayState", msg.relay_state.as_deref().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let shown = res.text().await.unwrap();
    assert!(shown.contains("The connection works"), "{shown}");
    assert_eq!(between(&shown, "id=\"tested-email\">", "<"), "ada@corp.example");
    assert_eq!(between(&shown, "id=\"tested-role\">", "<"), "admin");
    assert_eq!(node.core.users.list(1000, 0).await.unwrap().len(), users_before, "nobody created");
    let events = latchkey_core::infra::audit::recent(node.core.store.db(), 20).await.unwrap();
    let tested = events.iter().find(|e| e.action == "saml.connection_tested").unwrap();
    assert!(tested.actor.starts_with("user:usr_"));
    assert_eq!(tested.org_id.as_deref(), Some(org.id.as_str()));
    // The same response again is a replay, not a second test.
    let again = admin
        .client
        .post(&acs)
        .form(&[
            ("SAMLResponse", response.as_str()),
            ("RelayState", msg.relay_state.as_deref().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 400);

    // Disabling and deleting (a sensitive action) from its page.
    let csrf = csrf_in(&page);
    let disable = format!("/admin/connections/{reserved}/disable");
    assert_eq!(admin.post(&disable, &[("csrf_token", &csrf)]).await.0, StatusCode::SEE_OTHER);
    assert!(!node.core.saml.show(&reserved, &Actor::cli()).await.unwrap().enabled);
    // Every event about the connection is in its organisation's log, with what changed.
    let events = latchkey_core::infra::audit::recent(node.core.store.db(), 20).await.unwrap();
    let disabled = events.iter().find(|e| e.action == "saml.connection_disabled").unwrap();
    assert_eq!(disabled.org_id.as_deref(), Some(org.id.as_str()));
    assert_eq!(
        (disabled.data["before"]["enabled"].as_bool(), disabled.data["after"]["enabled"].as_bool()),
        (Some(true), Some(false))
    );
    let rejected_or_tested: Vec<_> =
        events.iter().filter(|e| e.target_id.as_deref() == Some(reserved.as_str())).collect();
    assert!(
        rejected_or_tested.iter().all(|e| e.org_id.as_deref() == Some(org.id.as_str())),
        "{rejected_or_tested:?}"
    );
    let delete = format!("/admin/connections/{reserved}/delete");
    let (status, _, location) = admin.post(&delete, &[("csrf_token", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, Some(format!("/admin/organizations/{}", org.id)));
    assert!(node.core.saml.show(&reserved, &Actor::cli()).await.is_err());
    node.stop().await;
}
on_both_backends!(the_saml_wizard_creates_and_tests_a_connection);

async fn api_keys_are_made_in_the_console_and_shown_once(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let data = data_dir();
    let node = TestServer::start(data.path(), &db, &[]).await;
    account(&node, "root@admin.test", "Root", true).await;
    let acme = node.core.orgs.create("Acme", "acme", &Actor::cli()).await.unwrap();
    let globex = node.core.orgs.create("Globex", "globex", &Actor::cli()).await.unwrap();
    let alice = account(&node, "alice@acme.test", "Alice", false).await;
    node.core.orgs.set_membership(&acme.id, &alice, "admin", &Actor::cli()).await.unwrap();

    let admin = signed_in(&node, "root@admin.test").await;
    let (status, page, _) = admin.get("/admin/api-keys").await;
    assert_eq!(status, 200, "{page}");
    let csrf = csrf_in(&page);
    let (status, made, _) = admin
        .post("/admin/api-keys", &[("csrf_token", &csrf), ("name", "deploy"), ("days", "30")])
        .await;
    assert_eq!(status, 201, "{made}");
    let secret = between(&made, "id=\"api-key-secret\">", "<").to_owned();
    assert!(secret.starts_with("lk_"), "{secret}");
    let res = reqwest::Client::new()
        .get(node.url("/api/v1/users"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (_, listed, _) = admin.get("/admin/api-keys").await;
    assert!(listed.contains("deploy") && !listed.contains(&secret), "shown once only");

    // An organisation's admin makes keys of that organisation only.
    let alice_browser = signed_in(&node, "alice@acme.test").await;
    let (status, page, _) = alice_browser.get("/admin/api-keys").await;
    assert_eq!(status, 200, "{page}");
    let csrf = csrf_in(&page);
    let (status, made, _) =
        alice_browser.post("/admin/api-keys", &[("csrf_token", &csrf), ("name", "ci")]).await;
    assert_eq!(status, 201, "{made}");
    let keys = node.core.admin.api_keys.list(Some(&acme.id), &Actor::cli()).await.unwrap();
    assert_eq!(keys.iter().filter(|k| k.name == "ci").count(), 1);
    let (status, _, _) = alice_browser
        .post("/admin/api-keys", &[("csrf_token", &csrf), ("name", "x"), ("org", &globex.id)])
        .await;
    assert_eq!(status, 403);
    assert_eq!(alice_browser.get(&format!("/admin/api-keys?org={}", globex.id)).await.0, 403);

    // Creating a key is sensitive: after ten minutes the password comes first.
    node.clock.advance(Duration::from_secs(601));
    let (status, _, location) =
        admin.post("/admin/api-keys", &[("csrf_token", &csrf_in(&listed)), ("name", "late")]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/admin/reauthenticate?return_to=%2Fadmin%2Fapi-keys"));
    node.stop().await;
}
on_both_backends!(api_keys_are_made_in_the_console_and_shown_once);
