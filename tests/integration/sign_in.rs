//! The sign-in seam: limits that hold under concurrent attempts, the one transactional
//! completion (password, sign-up code, upstream identities with just-in-time provisioning and
//! linking), identifier-first routing through a connection registry, and the pending-request
//! store.

use std::{sync::Arc, time::Duration};

use latchkey_core::{
    Error, Latchkey,
    identity::{
        external::{LinkPolicy, UpstreamIdentity},
        method::{AuthMethod, Upstream},
        users::NewUser,
    },
    infra::{
        audit::{Actor, ClientInfo},
        entity::{
            external_identity, org_domain, pending_request, sign_in_throttle, sign_up_attempt,
        },
    },
    model::AuditEvent,
    sign_in::{
        ConnectionRegistry, EnterpriseConnection, OrgGrant, Verified, VerifiedSubject,
        pending::{BrowserBinding, PendingKind, PendingToken},
        routing::BoxFuture,
    },
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, sea_query::Expr,
};

use crate::{
    on_both_backends,
    pages::Browser,
    support::{Backend, SmtpSink, TestDb, TestServer, data_dir},
};

const PASSWORD: &str = "correct horse battery";

fn client(ip: &str) -> ClientInfo {
    ClientInfo { ip: Some(ip.to_owned()), user_agent: Some("tests".into()) }
}

async fn events(core: &Latchkey, action: &str) -> Vec<AuditEvent> {
    latchkey_core::infra::audit::recent(core.store.db(), 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == action)
        .collect()
}

/// Runs `n` copies of `f` at once, on the runtime's worker threads.
async fn in_parallel<T, F, Fut>(n: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(f(i))).collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

// ------------------------------------------------------------------ limits under concurrency

/// 50 wrong passwords at once against one account: no more are evaluated than the lockout
/// allows (2 here), and the stored counter agrees with the evaluations.
async fn parallel_wrong_passwords_never_outrun_the_account_limit(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[("LATCHKEY_SIGN_IN_MAX_FAILURES", "2")]).await;
    node.user("ada@example.com").await;
    let core = node.core.clone();
    let results = in_parallel(50, move |i| {
        let core = core.clone();
        async move {
            let ip = format!("198.51.100.{}", i + 1);
            core.sign_in
                .sign_in_with_password("ada@example.com", "wrong guess!!", &client(&ip))
                .await
        }
    })
    .await;
    let evaluated = results.iter().filter(|r| matches!(r, Err(Error::Unauthenticated(_)))).count();
    let refused = results.iter().filter(|r| matches!(r, Err(Error::RateLimited { .. }))).count();
    assert_eq!(evaluated + refused, 50, "{results:?}");
    assert_eq!(evaluated, 2, "{results:?}");
    assert_eq!(events(&node.core, "sign_in.failed").await.len(), evaluated);
    let row = sign_in_throttle::Entity::find_by_id("account:ada@example.com".to_owned())
        .one(node.core.store.db())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.failures as usize, evaluated);
    // The account is locked: the right password is refused too.
    let right = node
        .core
        .sign_in
        .sign_in_with_password("ada@example.com", PASSWORD, &client("192.0.2.1"))
        .await;
    assert!(matches!(right, Err(Error::RateLimited { .. })), "{right:?}");
    node.stop().await;
}
on_both_backends!(parallel_wrong_passwords_never_outrun_the_account_limit);

/// 50 wrong passwords at once from one address, each for another account: exactly the per-IP
/// cap is evaluated.
async fn parallel_wrong_passwords_never_outrun_the_ip_cap(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node =
        TestServer::start(dir.path(), &db, &[("LATCHKEY_SIGN_IN_IP_MAX_FAILURES", "5")]).await;
    let core = node.core.clone();
    let results = in_parallel(50, move |i| {
        let core = core.clone();
        async move {
            let email = format!("user{i}@example.com");
            core.sign_in
                .sign_in_with_password(&email, "wrong guess!!", &client("203.0.113.7"))
                .await
        }
    })
    .await;
    let evaluated = results.iter().filter(|r| matches!(r, Err(Error::Unauthenticated(_)))).count();
    assert_eq!(evaluated, 5, "{results:?}");
    assert_eq!(events(&node.core, "sign_in.failed").await.len(), 5);
    // Another address is not affected.
    let other = node
        .core
        .sign_in
        .sign_in_with_password("user1@example.com", "x", &client("203.0.113.8"))
        .await;
    assert!(matches!(other, Err(Error::Unauthenticated(_))), "{other:?}");
    node.stop().await;
}
on_both_backends!(parallel_wrong_passwords_never_outrun_the_ip_cap);

/// A successful sign-in gives its reservation back: the IP's count does not grow with
/// successes, and the account's streak ends.
async fn successes_give_their_reservation_back(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node =
        TestServer::start(dir.path(), &db, &[("LATCHKEY_SIGN_IN_IP_MAX_FAILURES", "3")]).await;
    node.user("ada@example.com").await;
    let from = client("203.0.113.9");
    for _ in 0..10 {
        node.core.sign_in.sign_in_with_password("ada@example.com", PASSWORD, &from).await.unwrap();
    }
    let ip = sign_in_throttle::Entity::find_by_id("ip:203.0.113.9".to_owned())
        .one(node.core.store.db())
        .await
        .unwrap();
    assert!(ip.as_ref().is_none_or(|r| r.failures == 0), "{ip:?}");
    assert_eq!(node.core.sign_in.lockout_status("ada@example.com").await.unwrap().failures, 0);
    node.stop().await;
}
on_both_backends!(successes_give_their_reservation_back);

/// 50 sign-up requests at once for one address: at most the per-address mail limit (5) get
/// through, so the form cannot be turned into a mail cannon.
async fn parallel_mail_requests_never_outrun_the_mail_limit(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let core = node.core.clone();
    let results = in_parallel(50, move |i| {
        let core = core.clone();
        async move {
            let ip = format!("198.51.100.{}", i + 1);
            core.sign_in
                .start_sign_up("grace@example.com", "quartz violin ember lantern", &client(&ip))
                .await
        }
    })
    .await;
    let started = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(
        started,
        5,
        "{:?}",
        results.iter().filter(|r| r.is_err()).take(1).collect::<Vec<_>>()
    );
    assert!(
        results.iter().filter(|r| r.is_err()).all(|r| matches!(r, Err(Error::RateLimited { .. })))
    );
    assert_eq!(events(&node.core, "sign_up.started").await.len(), 5);
    node.stop().await;
}
on_both_backends!(parallel_mail_requests_never_outrun_the_mail_limit);

/// 20 wrong codes at once for one sign-up: at most five tries are evaluated, and the attempt is
/// void afterwards.
async fn parallel_code_guesses_never_outrun_the_try_limit(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let pending = node
        .core
        .sign_in
        .start_sign_up("alan@example.com", "quartz violin ember lantern", &client("192.0.2.4"))
        .await
        .unwrap();
    let core = node.core.clone();
    let id = pending.id.clone();
    let results = in_parallel(20, move |i| {
        let (core, id) = (core.clone(), id.clone());
        async move {
            let guess = format!("{:06}", 999_000 + i);
            core.sign_in.complete_sign_up(&id, &guess, &client("192.0.2.4")).await
        }
    })
    .await;
    assert!(results.iter().all(|r| matches!(r, Err(Error::Invalid { .. }))), "{results:?}");
    assert_eq!(events(&node.core, "sign_up.code_failed").await.len(), 5);
    let row = sign_up_attempt::Entity::find_by_id(pending.id.clone())
        .one(node.core.store.db())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.attempts, 5);
    node.stop().await;
}
on_both_backends!(parallel_code_guesses_never_outrun_the_try_limit);

// ------------------------------------------------------------------ one transactional completion

/// A failure anywhere in completing a sign-up (here: the audit log cannot be written) leaves
/// no account, an unspent code and no session: the step is one transaction.
async fn a_failed_sign_up_completion_leaves_nothing_behind(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let smtp = SmtpSink::start(None).await;
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[("LATCHKEY_SMTP_URL", &smtp.url())]).await;
    let pending = node
        .core
        .sign_in
        .start_sign_up("edsger@example.com", "quartz violin ember lantern", &client("192.0.2.5"))
        .await
        .unwrap();
    let mails = smtp.wait_for(1, Duration::from_secs(15)).await;
    let code = crate::pages::code_in(mails[0].part("text/plain"));

    let db = node.core.store.db();
    db.execute_unprepared("ALTER TABLE audit_events RENAME TO audit_events_away").await.unwrap();
    let failed = node.core.sign_in.complete_sign_up(&pending.id, &code, &client("192.0.2.5")).await;
    assert!(failed.is_err(), "{failed:?}");
    db.execute_unprepared("ALTER TABLE audit_events_away RENAME TO audit_events").await.unwrap();

    assert!(node.core.users.find_by_email("edsger@example.com").await.unwrap().is_none());
    let row =
        sign_up_attempt::Entity::find_by_id(pending.id.clone()).one(db).await.unwrap().unwrap();
    assert!(row.completed_at.is_none(), "the code was spent without an account");
    assert_eq!(row.attempts, 0, "the failed completion's try was kept");
    // With the store healthy again the same code completes the sign-up, once.
    let done =
        node.core.sign_in.complete_sign_up(&pending.id, &code, &client("192.0.2.5")).await.unwrap();
    assert!(done.created);
    assert_eq!(done.session.auth_method, AuthMethod::Password);
    let again = node.core.sign_in.complete_sign_up(&pending.id, &code, &client("192.0.2.5")).await;
    assert!(matches!(again, Err(Error::Invalid { .. })), "{again:?}");
    for action in ["user.created", "session.created", "sign_up.completed"] {
        assert_eq!(events(&node.core, action).await.len(), 1, "{action}");
    }
    node.stop().await;
}
on_both_backends!(a_failed_sign_up_completion_leaves_nothing_behind);

fn saml(connection: &str) -> AuthMethod {
    AuthMethod::Saml { connection_id: connection.to_owned() }
}

fn upstream(subject: &str, email: &str, verified: bool) -> UpstreamIdentity {
    UpstreamIdentity {
        issuer: "https://idp.acme.test/saml".into(),
        subject: subject.into(),
        email: Some(email.into()),
        email_verified: verified,
        given_name: Some("Ivy".into()),
        family_name: Some("Ng".into()),
        name: None,
    }
}

fn through_connection(up: UpstreamIdentity, policy: LinkPolicy, join: Option<&str>) -> Verified {
    Verified {
        method: saml("con_acme"),
        subject: VerifiedSubject::Upstream { identity: up, policy },
        join: join.map(|org_id| OrgGrant {
            org_id: org_id.into(),
            role: "member".into(),
            authoritative: false,
        }),
        upstream_session: None,
    }
}

const OPEN: LinkPolicy = LinkPolicy {
    provision: true,
    link_verified_email: true,
    refresh_profile: false,
    domain_authority: false,
    provision_unverified: false,
};

/// Upstream identities: provisioned just in time with the connection's membership, signed in
/// again through their link, linked to an existing account only on a verified address, and
/// refused (audited, nothing written) otherwise.
async fn upstream_identities_provision_link_and_refuse(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let core = &node.core;
    let org = core.orgs.create("Acme", "acme", &Actor::cli()).await.unwrap();
    let from = client("192.0.2.6");

    // A new identity: an account, a link, the membership and a session with its method.
    let first = core
        .sign_in
        .complete(
            through_connection(upstream("00u1", "Ivy@Acme.test", true), OPEN, Some(&org.id)),
            &from,
        )
        .await
        .unwrap();
    assert!(first.created);
    assert_eq!(first.user.primary_email, "ivy@acme.test");
    assert!(first.user.email_verified);
    assert_eq!(first.user.given_name.as_deref(), Some("Ivy"));
    assert_eq!(first.session.auth_method, saml("con_acme"));
    assert_eq!(
        core.orgs.membership(&org.id, &first.user.id).await.unwrap().unwrap().role,
        "member"
    );
    let links =
        latchkey_core::identity::external::of_user(core.store.db(), &first.user.id).await.unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].connection_id.as_deref(), Some("con_acme"));

    // The same identity again: the same account, through its link.
    let again = core
        .sign_in
        .complete(through_connection(upstream("00u1", "ivy@acme.test", false), OPEN, None), &from)
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.user.id, first.user.id);

    // Another identity at the same issuer claiming the same address is refused.
    let refused = core
        .sign_in
        .complete(through_connection(upstream("00u2", "ivy@acme.test", true), OPEN, None), &from)
        .await;
    assert!(matches!(refused, Err(Error::Forbidden(_))), "{refused:?}");

    // An existing account links only when both addresses are verified.
    core.users
        .create(
            NewUser { email: "max@acme.test".into(), email_verified: false, ..Default::default() },
            &Actor::cli(),
        )
        .await
        .unwrap();
    let unverified = core
        .sign_in
        .complete(through_connection(upstream("00u3", "max@acme.test", true), OPEN, None), &from)
        .await;
    assert!(matches!(unverified, Err(Error::Forbidden(_))), "{unverified:?}");
    let rex = core
        .users
        .create(
            NewUser { email: "rex@acme.test".into(), email_verified: true, ..Default::default() },
            &Actor::cli(),
        )
        .await
        .unwrap();
    let linked = core
        .sign_in
        .complete(through_connection(upstream("00u4", "rex@acme.test", true), OPEN, None), &from)
        .await
        .unwrap();
    assert_eq!(linked.user.id, rex.id);
    assert!(!linked.created);

    // A connection that does not provision refuses strangers; nothing is created.
    let closed = LinkPolicy { provision: false, link_verified_email: false, ..OPEN };
    let stranger = core
        .sign_in
        .complete(
            through_connection(upstream("00u5", "sam@acme.test", true), closed, Some(&org.id)),
            &from,
        )
        .await;
    assert!(matches!(stranger, Err(Error::Forbidden(_))), "{stranger:?}");
    assert!(core.users.find_by_email("sam@acme.test").await.unwrap().is_none());

    // A deactivated account cannot sign in through its link either.
    core.users.deactivate(&first.user.id, None, &Actor::cli()).await.unwrap();
    let inactive = core
        .sign_in
        .complete(through_connection(upstream("00u1", "ivy@acme.test", true), OPEN, None), &from)
        .await;
    assert!(matches!(inactive, Err(Error::Forbidden(_))), "{inactive:?}");

    assert_eq!(events(core, "sign_in.failed").await.len(), 4);
    let identities = external_identity::Entity::find().count(core.store.db()).await.unwrap();
    assert_eq!(identities, 2);
    node.stop().await;
}
on_both_backends!(upstream_identities_provision_link_and_refuse);

/// Ten first sign-ins of one new identity at once make one account and one link.
async fn concurrent_first_sign_ins_make_one_account(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let core = node.core.clone();
    let results = in_parallel(10, move |_| {
        let core = core.clone();
        async move {
            let v = through_connection(upstream("00u9", "uma@acme.test", true), OPEN, None);
            core.sign_in.complete(v, &client("192.0.2.7")).await
        }
    })
    .await;
    let ok: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(ok.len(), 10, "{results:?}");
    assert!(ok.iter().all(|s| s.user.id == ok[0].user.id));
    assert_eq!(ok.iter().filter(|s| s.created).count(), 1);
    let db = node.core.store.db();
    assert_eq!(external_identity::Entity::find().count(db).await.unwrap(), 1);
    let accounts = node.core.users.list(100, 0).await.unwrap();
    assert_eq!(accounts.iter().filter(|u| u.primary_email == "uma@acme.test").count(), 1);
    node.stop().await;
}
on_both_backends!(concurrent_first_sign_ins_make_one_account);

// ------------------------------------------------------------------ identifier-first routing

/// A connection protocol as the registry sees it: one connection for one organisation.
struct OneConnection {
    org_id: String,
    bypass: Vec<String>,
}

impl ConnectionRegistry for OneConnection {
    fn connection_for<'a>(
        &'a self,
        org_id: &'a str,
        domain: &'a str,
    ) -> BoxFuture<'a, latchkey_core::Result<Option<EnterpriseConnection>>> {
        Box::pin(async move {
            Ok((org_id == self.org_id && domain == "acme.test").then(|| EnterpriseConnection {
                id: "con_acme".into(),
                org_id: org_id.to_owned(),
                protocol: "saml".into(),
                name: "Acme Okta".into(),
                start_path: "/sso/con_acme/start".into(),
                bypass: self.bypass.clone(),
            }))
        })
    }
}

/// Marks a domain verified for an organisation (verification itself is tested in orgs.rs).
async fn verified_domain(node: &TestServer, org_id: &str, domain: &str) {
    let d = node.core.domains.add_domain(org_id, domain, &Actor::cli()).await.unwrap();
    org_domain::Entity::update_many()
        .col_expr(org_domain::Column::VerifiedDomain, Expr::value(domain))
        .col_expr(org_domain::Column::VerifiedAt, Expr::value(node.clock.now()))
        .filter(org_domain::Column::Id.eq(d.id))
        .exec(node.core.store.db())
        .await
        .unwrap();
}

/// Addresses on a domain whose organisation requires a connection are sent to it by the
/// identifier step, with the address as login_hint; they cannot use a password, sign up or get
/// a reset link, except the listed break-glass addresses. Other domains are untouched.
async fn enterprise_routing_sends_domains_to_their_connection(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let smtp = SmtpSink::start(None).await;
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[("LATCHKEY_SMTP_URL", &smtp.url())]).await;
    let org = node.core.orgs.create("Acme", "acme", &Actor::cli()).await.unwrap();
    verified_domain(&node, &org.id, "acme.test").await;
    node.core.sign_in.register_connections(Arc::new(OneConnection {
        org_id: org.id.clone(),
        bypass: vec!["root@acme.test".into()],
    }));
    node.user("ada@acme.test").await;
    node.user("root@acme.test").await;
    node.user("bob@elsewhere.test").await;

    let browser = Browser::new(&node.base_url);
    let csrf = browser.csrf("/sign-in").await;
    let (status, body, _) = browser
        .post(
            "/sign-in",
            &[("csrf_token", &csrf), ("email", "Ada@Acme.test"), ("return_to", "/account")],
        )
        .await;
    // A page that navigates on (the form's form-action would block a redirect to the IdP).
    assert_eq!(status, 200);
    assert_eq!(
        crate::pages::refresh_target(&body),
        "/sso/con_acme/start?login_hint=ada%40acme.test&return_to=%2Faccount"
    );
    // Unknown addresses on the domain go the same way: the domain decides, not the account.
    let (_, unknown, _) =
        browser.post("/sign-in", &[("csrf_token", &csrf), ("email", "nobody@acme.test")]).await;
    assert!(crate::pages::refresh_target(&unknown).starts_with("/sso/con_acme/start?"));

    // No password for routed addresses, even the right one.
    let denied = node
        .core
        .sign_in
        .sign_in_with_password("ada@acme.test", PASSWORD, &client("192.0.2.8"))
        .await;
    assert!(matches!(denied, Err(Error::Forbidden(_))), "{denied:?}");
    let sign_up = node
        .core
        .sign_in
        .start_sign_up("new@acme.test", "quartz violin ember lantern", &client("192.0.2.8"))
        .await;
    assert!(matches!(sign_up, Err(Error::Invalid { field: "email", .. })), "{sign_up:?}");
    node.core.sign_in.request_password_reset("ada@acme.test", &client("192.0.2.8")).await.unwrap();

    // The break-glass address and other domains keep their passwords.
    assert_eq!(browser.sign_in("root@acme.test", PASSWORD, "").await.0, 303);
    node.core
        .sign_in
        .sign_in_with_password("bob@elsewhere.test", PASSWORD, &client("192.0.2.8"))
        .await
        .unwrap();
    node.core
        .sign_in
        .request_password_reset("bob@elsewhere.test", &client("192.0.2.8"))
        .await
        .unwrap();
    let mails = smtp.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0].to.contains("bob@elsewhere.test"), "{mails:?}");
    node.stop().await;
}
on_both_backends!(enterprise_routing_sends_domains_to_their_connection);

// ------------------------------------------------------------------ pending requests

fn oidc_request(nonce: &str) -> PendingKind {
    PendingKind::UpstreamOidc {
        upstream: Upstream::Google,
        connection_id: None,
        nonce: nonce.into(),
        pkce_verifier: "verifier-that-must-stay-secret".into(),
        target: "google".into(),
        extra_scopes: Vec::new(),
        connect_user_id: None,
    }
}

/// A pending request comes back once, to the browser that started it, before it expires; its
/// secrets are sealed at rest; of 20 simultaneous takes exactly one wins.
async fn pending_requests_are_single_use_expiring_and_browser_bound(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let pending = &node.core.pending;
    let browser = BrowserBinding::new();
    let ttl = Duration::from_secs(300);

    let kind = PendingKind::SamlAuthn {
        connection_id: "con_acme".into(),
        request_id: "_a1b2".into(),
        tested_by: None,
    };
    let token = pending.begin(&kind, "/account", &browser, ttl).await.unwrap();
    let not_found = |r: latchkey_core::Result<_>| matches!(r, Err(Error::NotFound(_)));
    assert!(not_found(pending.take(&token, &BrowserBinding::new()).await), "another browser");
    assert!(not_found(pending.take(&PendingToken("forged".into()), &browser).await));
    let taken = pending.take(&token, &browser).await.unwrap();
    assert_eq!((taken.kind, taken.return_to.as_str()), (kind, "/account"));
    assert!(not_found(pending.take(&token, &browser).await), "second use");

    // Secrets are sealed at rest.
    pending.begin(&oidc_request("nonce-in-the-clear?"), "/", &browser, ttl).await.unwrap();
    let rows = pending_request::Entity::find().all(node.core.store.db()).await.unwrap();
    assert!(
        rows.iter()
            .all(|r| !r.payload.contains("nonce-in-the-clear") && !r.payload.contains("verifier"))
    );

    // Expiry, by the clock.
    let late =
        pending.begin(&oidc_request("n2"), "/", &browser, Duration::from_secs(60)).await.unwrap();
    node.clock.advance(Duration::from_secs(61));
    assert!(not_found(pending.take(&late, &browser).await), "expired");

    // One winner among simultaneous takes.
    let token = pending.begin(&oidc_request("n3"), "/", &browser, ttl).await.unwrap();
    let store = node.core.pending.clone();
    let (token, binding) = (Arc::new(token), Arc::new(browser));
    let results = in_parallel(20, move |_| {
        let (store, token, binding) = (store.clone(), token.clone(), binding.clone());
        async move { store.take(&token, &binding).await }
    })
    .await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results.into_iter().filter(|r| r.is_err()).all(not_found));
    node.clock.advance(Duration::from_secs(2 * 3600));
    assert_eq!(node.core.pending.purge().await.unwrap(), 4);
    assert_eq!(pending_request::Entity::find().count(node.core.store.db()).await.unwrap(), 0);
    node.stop().await;
}
on_both_backends!(pending_requests_are_single_use_expiring_and_browser_bound);

// ------------------------------------------------------------------ authorisation in services

/// The organisation services check the caller themselves: a member who is not an admin, an
/// outsider and an anonymous caller are refused without any handler in between, and the
/// operator (CLI) may act.
async fn organisation_services_authorise_the_caller(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let core = &node.core;
    let alice = node.user("alice@acme.test").await;
    let mel = node.user("mel@acme.test").await;
    let olly = node.user("olly@other.test").await;
    let (org, _) =
        core.orgs.create_for_user("Acme", "acme", &alice.id, &Actor::cli()).await.unwrap();
    core.orgs.set_membership(&org.id, &mel.id, "member", &Actor::cli()).await.unwrap();
    let as_user = |u: &latchkey_core::model::User| Actor::user(&u.id, None, None);
    let (admin, member, outsider) = (as_user(&alice), as_user(&mel), as_user(&olly));
    let anonymous = ClientInfo::default().actor_for(None);

    // Members read; outsiders cannot tell the organisation exists.
    assert_eq!(core.orgs.members(&org.id, &member).await.unwrap().len(), 2);
    assert!(matches!(core.orgs.members(&org.id, &outsider).await, Err(Error::NotFound(_))));
    assert!(matches!(core.orgs.view(&org.id, &anonymous).await, Err(Error::Unauthenticated(_))));

    // Admin-only actions, straight at the services.
    let r = core.orgs.set_membership(&org.id, &olly.id, "admin", &member).await;
    assert!(matches!(r, Err(Error::Forbidden(_))), "{r:?}");
    let r = core.invitations.invite(&org.id, "x@acme.test", "member", Some(&mel.id), &member).await;
    assert!(matches!(r, Err(Error::Forbidden(_))), "{r:?}");
    let r = core.invitations.list_pending(&org.id, &member).await;
    assert!(matches!(r, Err(Error::Forbidden(_))), "{r:?}");
    let r = core.domains.add_domain(&org.id, "acme.test", &member).await;
    assert!(matches!(r, Err(Error::Forbidden(_))), "{r:?}");
    let r = core.domains.list(&org.id, &member).await;
    assert!(matches!(r, Err(Error::Forbidden(_))), "{r:?}");
    let r = core.enrollment.list_join_requests(&org.id, &member).await;
    assert!(matches!(r, Err(Error::Forbidden(_))), "{r:?}");
    let r = core.orgs.remove_member(&org.id, &alice.id, &member).await;
    assert!(matches!(r, Err(Error::Forbidden(_))), "{r:?}");
    let r = core.orgs.set_membership(&org.id, &olly.id, "admin", &outsider).await;
    assert!(matches!(r, Err(Error::NotFound(_))), "{r:?}");
    assert!(core.users.find_by_email("olly@other.test").await.unwrap().is_some());
    assert!(core.orgs.membership(&org.id, &olly.id).await.unwrap().is_none());

    // A member may leave on their own; the admin and the operator may act.
    core.domains.add_domain(&org.id, "acme.test", &admin).await.unwrap();
    assert_eq!(core.domains.list(&org.id, &Actor::cli()).await.unwrap().len(), 1);
    assert_eq!(core.orgs.view(&org.id, &Actor::cli()).await.unwrap().role, "operator");
    core.orgs.leave(&org.id, &mel.id, &member).await.unwrap();
    core.orgs.set_membership(&org.id, &olly.id, "member", &admin).await.unwrap();
    node.stop().await;
}
on_both_backends!(organisation_services_authorise_the_caller);

// ------------------------------------------------------------------ one address rule

/// An address the mailer would refuse cannot become an account from any door (CLI, sign-up,
/// invitations), and an account stored with one before the rule existed changes no answer:
/// reset and sign-up answer as they would for an address nobody has.
async fn one_address_rule_and_answers_that_never_depend_on_an_account(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let hostile = "x\"<y>@example.test";

    let env: Vec<(&str, &str)> = node.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = crate::support::latchkey(dir.path(), &env)
        .args(["users", "add", "--email", hostile])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("email"));
    let org = node.core.orgs.create("Acme", "acme", &Actor::cli()).await.unwrap();
    let r = node.core.invitations.invite(&org.id, hostile, "member", None, &Actor::cli()).await;
    assert!(matches!(r, Err(Error::Invalid { field: "email", .. })), "{r:?}");

    // An account from before the rule, stored as it was given.
    let legacy = node.user("legacy@example.test").await;
    latchkey_core::infra::entity::user_email::Entity::update_many()
        .col_expr(latchkey_core::infra::entity::user_email::Column::Email, Expr::value(hostile))
        .filter(latchkey_core::infra::entity::user_email::Column::UserId.eq(&legacy.id))
        .exec(node.core.store.db())
        .await
        .unwrap();

    let browser = Browser::new(&node.base_url);
    let answer = |path: &'static str, email: &'static str| {
        let browser = &browser;
        async move {
            let csrf = browser.csrf(path).await;
            let form = [
                ("csrf_token", csrf.as_str()),
                ("email", email),
                ("password", "quartz violin ember lantern"),
            ];
            let (status, body, _) = browser.post(path, &form).await;
            // The form echoes the address, escaped.
            let escaped = email.replace('"', "&#34;").replace('<', "&#60;").replace('>', "&#62;");
            let body = body.replace(email, "ADDRESS").replace(&escaped, "ADDRESS");
            (status, body.replace(&csrf, "CSRF"))
        }
    };
    for path in ["/password/forgot", "/sign-up"] {
        let stored = answer(path, "x\"<y>@example.test").await;
        let nobody = answer(path, "q\"<z>@example.test").await;
        assert!(!stored.0.is_server_error(), "{path}: {}", stored.0);
        assert_eq!(stored.0, nobody.0, "{path}");
        assert_eq!(stored.1, nobody.1, "{path}");
    }
    node.stop().await;
}
on_both_backends!(one_address_rule_and_answers_that_never_depend_on_an_account);
