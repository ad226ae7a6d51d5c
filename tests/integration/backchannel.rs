//! Back-Channel Logout 1.0: ended sessions notify the clients that got tokens for them, through
//! the job outbox, with logout tokens a third-party JOSE library accepts.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use latchkey_core::{
    Latchkey,
    infra::audit::Actor,
    infra::entity::job_outbox,
    infra::jobs::{Job, LogoutJob, RunReport, status},
    oauth::NewCode,
    oauth::backchannel::LOGOUT_EVENT,
    oauth::clients::NewClient,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use crate::{
    on_both_backends,
    support::{Backend, TestDb, TestServer, data_dir},
};

/// A minimal HTTP receiver: records each request's path and `logout_token`, answers 200.
#[derive(Clone, Default)]
pub(crate) struct Receiver {
    got: Arc<Mutex<Vec<(String, String)>>>,
}

impl Receiver {
    pub(crate) async fn serve(&self, listener: TcpListener) {
        let got = self.got.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let got = got.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let (head_end, length) = loop {
                        let n = sock.read(&mut chunk).await.unwrap();
                        assert!(n > 0, "connection closed mid-request");
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .map(|v| v.trim().parse::<usize>().unwrap())
                                .unwrap_or(0);
                            break (i + 4, length);
                        }
                    };
                    while buf.len() < head_end + length {
                        let n = sock.read(&mut chunk).await.unwrap();
                        assert!(n > 0);
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    assert!(head.starts_with("POST "), "{head}");
                    assert!(
                        head.to_ascii_lowercase()
                            .contains("content-type: application/x-www-form-urlencoded"),
                        "{head}"
                    );
                    let path = head.split(' ').nth(1).unwrap().to_owned();
                    let body = &buf[head_end..head_end + length];
                    let token = url::form_urlencoded::parse(body)
                        .find(|(k, _)| k == "logout_token")
                        .map(|(_, v)| v.into_owned())
                        .unwrap();
                    got.lock().unwrap().push((path, token));
                    sock.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
                    )
                    .await
                    .unwrap();
                });
            }
        });
    }

    pub(crate) fn received(&self) -> Vec<(String, String)> {
        self.got.lock().unwrap().clone()
    }

    pub(crate) async fn wait_for(&self, n: usize) -> Vec<(String, String)> {
        for _ in 0..200 {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {n} logout tokens, got {:?}", self.received());
    }
}

/// The logout notifications queued so far (one job per client and session).
async fn logout_jobs(core: &Latchkey) -> Vec<job_outbox::Model> {
    job_outbox::Entity::find()
        .filter(job_outbox::Column::Kind.eq("backchannel_logout"))
        .all(core.store.db())
        .await
        .unwrap()
}

fn logout_of(row: &job_outbox::Model) -> LogoutJob {
    match serde_json::from_str(&row.payload).unwrap() {
        Job::BackchannelLogout(l) => l,
        other => panic!("not a logout: {other:?}"),
    }
}

/// Waits until every queued job has finished (the server's runner works in the background), so
/// that what a receiver got is final: a finished job is never claimed again.
async fn wait_until_all_finished(core: &Latchkey) -> Vec<job_outbox::Model> {
    for _ in 0..200 {
        let rows = job_outbox::Entity::find().all(core.store.db()).await.unwrap();
        if rows.iter().all(|r| r.status == status::DONE || r.status == status::FAILED) {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("jobs still unfinished: {:?}", job_outbox::Entity::find().all(core.store.db()).await);
}

async fn add_client(
    node: &TestServer,
    name: &str,
    bcl: Option<String>,
    alg: Option<&str>,
) -> String {
    node.core
        .clients
        .create(
            NewClient {
                name: name.into(),
                redirect_uris: vec!["http://127.0.0.1:9/cb".into()],
                backchannel_logout_uri: bcl,
                id_token_alg: alg.map(str::to_owned),
                ..Default::default()
            },
            &Actor::cli(),
        )
        .await
        .unwrap()
        .client
        .client_id
}

/// Links `client_id` to the session the way the authorization flow does: a code issued for
/// the session and redeemed (tokens were issued).
async fn grant(node: &TestServer, client_id: &str, user_id: &str, session_id: &str, redeem: bool) {
    let code = node
        .core
        .oauth
        .issue_code(NewCode {
            client_id: client_id.into(),
            user_id: user_id.into(),
            session_id: session_id.into(),
            redirect_uri: "http://127.0.0.1:9/cb".into(),
            scopes: vec!["openid".into()],
            nonce: Some("n".into()),
            code_challenge: None,
            auth_time: 0,
            resources: vec![],
        })
        .await
        .unwrap();
    if redeem {
        node.core.oauth.redeem_code(&code).await.unwrap();
    }
}

/// Checks a logout token with `jsonwebtoken` against the published JWKS (Back-Channel Logout
/// 1.0 §2.4 and §2.6) and returns its claims and algorithm.
async fn verify_logout_token(node: &TestServer, token: &str, aud: &str) -> (Value, String) {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    let jwks = node.jwks().await;
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_issuer(&[node.base_url.as_str()]);
    validation.set_audience(&[aud]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "iat", "sub"]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation).unwrap().claims;
    assert_eq!(claims["events"], json!({ LOGOUT_EVENT: {} }));
    assert!(claims.get("nonce").is_none(), "a logout token must not carry a nonce");
    assert!(claims["jti"].as_str().unwrap().starts_with("bcl_"));
    (claims, format!("{:?}", header.alg))
}

async fn revoked_session_notifies_its_clients(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let receiver = Receiver::default();
    receiver.serve(listener).await;
    let uri = |p: &str| Some(format!("http://127.0.0.1:{port}/{p}"));

    let wiki = add_client(&node, "Wiki", uri("wiki"), None).await;
    let chat = add_client(&node, "Chat", uri("chat"), Some("ES256")).await;
    let quiet = add_client(&node, "Quiet", None, None).await;
    let unused = add_client(&node, "Unused", uri("unused"), None).await;
    let ada = node.user("ada@example.com").await;
    let (sid, _) = node.session(&ada).await;
    let (other_sid, _) = node.session(&ada).await;
    grant(&node, &wiki, &ada.id, &sid, true).await;
    grant(&node, &wiki, &ada.id, &sid, true).await;
    grant(&node, &chat, &ada.id, &sid, true).await;
    grant(&node, &quiet, &ada.id, &sid, true).await;
    // A code never redeemed issued nothing: that client is not told.
    grant(&node, &unused, &ada.id, &sid, false).await;
    grant(&node, &wiki, &ada.id, &other_sid, true).await;

    assert!(node.core.sessions.revoke(&sid, "admin", &Actor::cli()).await.unwrap());
    let mut got = receiver.wait_for(2).await;
    got.sort();
    assert_eq!(got.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(), ["/chat", "/wiki"]);
    let (chat_claims, chat_alg) = verify_logout_token(&node, &got[0].1, &chat).await;
    let (wiki_claims, wiki_alg) = verify_logout_token(&node, &got[1].1, &wiki).await;
    assert_eq!(chat_alg, "ES256", "signed with the client's ID-token algorithm");
    assert_eq!(wiki_alg, "RS256");
    for claims in [&chat_claims, &wiki_claims] {
        assert_eq!(claims["sid"], sid.as_str());
        assert_eq!(claims["sub"], ada.id.as_str());
    }
    assert_ne!(chat_claims["jti"], wiki_claims["jti"]);
    wait_until_all_finished(&node.core).await;
    let rows = logout_jobs(&node.core).await;
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.status == status::DONE && r.attempts == 1), "{rows:?}");
    let mut jtis: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    jtis.sort();
    let mut sent = vec![chat_claims["jti"].as_str().unwrap(), wiki_claims["jti"].as_str().unwrap()];
    sent.sort();
    assert_eq!(jtis, sent, "the jti is the job id");

    // Signing out of the other session (end) notifies Wiki for that one.
    assert!(node.core.sessions.end(&other_sid, &Actor::cli()).await.unwrap());
    let got = receiver.wait_for(3).await;
    assert_eq!(got[2].0, "/wiki");
    let (claims, _) = verify_logout_token(&node, &got[2].1, &wiki).await;
    assert_eq!(claims["sid"], other_sid.as_str());
    // Ending an already ended session queues nothing more.
    wait_until_all_finished(&node.core).await;
    let queued = job_outbox::Entity::find().all(node.core.store.db()).await.unwrap().len();
    assert!(!node.core.sessions.revoke(&sid, "again", &Actor::cli()).await.unwrap());
    let after = job_outbox::Entity::find().all(node.core.store.db()).await.unwrap().len();
    assert_eq!(after, queued, "a job was queued for an already ended session");
    assert_eq!(node.core.jobs.run_due().await.unwrap(), RunReport::default());
    assert_eq!(receiver.received().len(), 3);
    node.stop().await;
}
on_both_backends!(revoked_session_notifies_its_clients);

async fn undelivered_logout_is_retried_once_the_receiver_is_up(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    // Reserve a port, then close it: the receiver is down.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let wiki = add_client(&node, "Wiki", Some(format!("http://127.0.0.1:{port}/bcl")), None).await;
    let ada = node.user("ada@example.com").await;
    let (sid, _) = node.session(&ada).await;
    grant(&node, &wiki, &ada.id, &sid, true).await;

    // Deactivating the user revokes the session (through the shared revocation path).
    node.core.users.deactivate(&ada.id, None, &Actor::cli()).await.unwrap();
    let db_conn = node.core.store.db();
    let mut row = None;
    for _ in 0..200 {
        let rows = logout_jobs(&node.core).await;
        if let Some(r) = rows.into_iter().find(|r| r.attempts >= 1 && r.status == status::PENDING) {
            row = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let row = row.expect("a failed first attempt, waiting to be retried");
    assert!(row.last_error.is_some());
    assert!(row.run_at > node.clock.now(), "backs off");
    assert_eq!(logout_of(&row).session_id, sid);

    let receiver = Receiver::default();
    receiver.serve(TcpListener::bind(("127.0.0.1", port)).await.unwrap()).await;
    // Make it due now, as if the backoff had passed; a second core (another node) races the
    // server's worker for it, and the lease lets only one of them deliver.
    let other = node.second_core().await;
    job_outbox::Entity::update_many()
        .col_expr(job_outbox::Column::RunAt, Expr::value(0i64))
        .filter(job_outbox::Column::Id.eq(&row.id))
        .exec(db_conn)
        .await
        .unwrap();
    node.core.store.notify_jobs();
    let (a, b) = tokio::join!(other.jobs.run_due(), node.core.jobs.run_due());
    let got = receiver.wait_for(1).await;
    wait_until_all_finished(&node.core).await;
    assert_eq!(receiver.received().len(), 1, "delivered exactly once");
    assert!(a.unwrap().done + b.unwrap().done <= 1);
    let (claims, _) = verify_logout_token(&node, &got[0].1, &wiki).await;
    assert_eq!(claims["sid"], sid.as_str());
    assert_eq!(claims["jti"], row.id.as_str(), "the jti stays the same across retries");
    let row = job_outbox::Entity::find_by_id(row.id).one(db_conn).await.unwrap().unwrap();
    assert_eq!(row.status, status::DONE);
    assert_eq!(row.attempts, 2);
    node.stop().await;
}
on_both_backends!(undelivered_logout_is_retried_once_the_receiver_is_up);

/// Deleting a user ends their sessions as deactivation does, and the applications that got
/// tokens for them are told, although the grants the fan-out reads go with the user; nothing
/// of theirs is left but the audit trail.
async fn deleting_a_user_tells_their_applications_and_leaves_nothing(backend: Backend) {
    use latchkey_core::infra::entity::{
        external_identity, membership, oauth_code, session, user_email,
    };
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, PaginatorTrait};

    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let receiver = Receiver::default();
    receiver.serve(listener).await;
    let wiki = add_client(&node, "Wiki", Some(format!("http://127.0.0.1:{port}/wiki")), None).await;
    let ada = node.user("ada@example.com").await;
    let bob = node.user("bob@example.com").await;
    let org = node.core.orgs.create("Acme", "acme", &Actor::cli()).await.unwrap();
    node.core.orgs.set_membership(&org.id, &ada.id, "admin", &Actor::cli()).await.unwrap();
    let (sid, secret) = node.session(&ada).await;
    let (_, bob_secret) = node.session(&bob).await;
    grant(&node, &wiki, &ada.id, &sid, true).await;
    let conn = node.core.store.db();
    external_identity::ActiveModel {
        id: Set("ext_01jtest000000000000000000".into()),
        user_id: Set(ada.id.clone()),
        issuer: Set("https://accounts.google.com".into()),
        subject: Set("1234".into()),
        connection_id: Set(None),
        email: Set(Some("ada@example.com".into())),
        created_at: Set(0),
        last_used_at: Set(0),
    }
    .insert(conn)
    .await
    .unwrap();
    assert_eq!(node.token_request(&secret).await.status(), 200);

    node.core.admin.users.delete(&Actor::cli(), &ada.id).await.unwrap();
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].0, "/wiki");
    let (claims, _) = verify_logout_token(&node, &got[0].1, &wiki).await;
    assert_eq!(
        (claims["sid"].as_str(), claims["sub"].as_str()),
        (Some(sid.as_str()), Some(ada.id.as_str()))
    );
    assert_eq!(node.token_request(&secret).await.status(), 401);
    assert_eq!(node.token_request(&bob_secret).await.status(), 200, "others are untouched");
    let left = [
        session::Entity::find().filter(session::Column::UserId.eq(&ada.id)).count(conn).await,
        membership::Entity::find().filter(membership::Column::UserId.eq(&ada.id)).count(conn).await,
        user_email::Entity::find().filter(user_email::Column::UserId.eq(&ada.id)).count(conn).await,
        oauth_code::Entity::find().filter(oauth_code::Column::UserId.eq(&ada.id)).count(conn).await,
        external_identity::Entity::find()
            .filter(external_identity::Column::UserId.eq(&ada.id))
            .count(conn)
            .await,
    ];
    assert_eq!(left.map(Result::unwrap), [0; 5]);
    assert!(matches!(node.core.users.get(&ada.id).await, Err(latchkey_core::Error::NotFound(_))));
    // The address is free again; a second deletion finds nothing.
    node.user("ada@example.com").await;
    assert!(matches!(
        node.core.admin.users.delete(&Actor::cli(), &ada.id).await,
        Err(latchkey_core::Error::NotFound(_))
    ));
    wait_until_all_finished(&node.core).await;
    assert_eq!(receiver.received().len(), 1, "told once");
    node.stop().await;
}
on_both_backends!(deleting_a_user_tells_their_applications_and_leaves_nothing);

/// Sessions that expire (absolute or idle) while stored as active are marked `expired` by the
/// sweep, which queues back-channel logout for their clients once, even when two nodes sweep
/// at the same moment.
async fn expired_sessions_notify_their_clients_once(backend: Backend) {
    use latchkey_core::{infra::entity::session, model::SessionStatus};

    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let other = node.second_core().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let receiver = Receiver::default();
    receiver.serve(listener).await;
    let wiki = add_client(&node, "Wiki", Some(format!("http://127.0.0.1:{port}/wiki")), None).await;
    let ada = node.user("ada@example.com").await;

    let db_conn = node.core.store.db();
    let now = crate::support::unix_now();
    let set = |id: String, expires_at: i64, idle_expires_at: i64| async move {
        session::Entity::update_many()
            .col_expr(session::Column::ExpiresAt, Expr::value(expires_at))
            .col_expr(session::Column::IdleExpiresAt, Expr::value(idle_expires_at))
            .filter(session::Column::Id.eq(id))
            .exec(db_conn)
            .await
            .unwrap();
    };
    let mut sessions = Vec::new();
    for _ in 0..5 {
        let (sid, secret) = node.session(&ada).await;
        grant(&node, &wiki, &ada.id, &sid, true).await;
        sessions.push((sid, secret));
    }
    let [absolute, idle, grace, old, live] = <[(String, String); 5]>::try_from(sessions).unwrap();
    // Past its absolute expiry; idle long enough; idle only for a moment (activity another
    // node has not written yet may still move it); expired two days ago; alive.
    set(absolute.0.clone(), now - 1, now + 600).await;
    set(idle.0.clone(), now + 3600, now - 300).await;
    set(grace.0.clone(), now + 3600, now - 5).await;
    set(old.0.clone(), now - 2 * 86400, now - 2 * 86400).await;
    let revision = node.core.store.revision().await.unwrap();

    // Expired sessions are refused before any sweep, and nothing has been sent yet.
    assert_eq!(node.token_request(&absolute.1).await.status(), 401);
    assert!(receiver.received().is_empty());

    // Two nodes sweep at once: every due session is marked once, in total.
    let (a, b) = tokio::join!(node.core.sessions.sweep_expired(), other.sessions.sweep_expired());
    assert_eq!(a.unwrap() + b.unwrap(), 3, "absolute, idle and old");
    node.core.store.notify_jobs();
    let mut got = receiver.wait_for(2).await;
    let mut sids = Vec::new();
    for (path, token) in &got {
        assert_eq!(path, "/wiki");
        let (claims, _) = verify_logout_token(&node, token, &wiki).await;
        assert_eq!(claims["sub"], ada.id.as_str());
        sids.push(claims["sid"].as_str().unwrap().to_owned());
    }
    sids.sort();
    let mut expected = vec![absolute.0.clone(), idle.0.clone()];
    expected.sort();
    assert_eq!(sids, expected, "the old one is marked without news for the client");

    let status = |id: &str| {
        let id = id.to_owned();
        async move {
            let m = session::Entity::find_by_id(id).one(db_conn).await.unwrap().unwrap();
            (m.status, m.end_reason, m.ended_at)
        }
    };
    assert_eq!(
        status(&absolute.0).await,
        ("expired".into(), Some("absolute_timeout".into()), Some(now - 1))
    );
    assert_eq!(
        status(&idle.0).await,
        ("expired".into(), Some("idle_timeout".into()), Some(now - 300))
    );
    assert_eq!(status(&old.0).await.0, "expired");
    assert_eq!(status(&grace.0).await, ("active".into(), None, None));
    assert_eq!(status(&live.0).await, ("active".into(), None, None));
    assert!(node.core.store.revision().await.unwrap() > revision, "caches must reload");
    assert_eq!(node.core.sessions.get(&idle.0).await.unwrap().status, SessionStatus::Expired);

    // Marked expired, an idle session stays unusable even if its idle expiry moves again
    // (a longer timeout, late activity): the stored status decides.
    set(idle.0.clone(), now + 3600, now + 3600).await;
    assert_eq!(node.token_request(&idle.1).await.status(), 401);
    assert_eq!(node.token_request(&live.1).await.status(), 200);

    // Sweeping again finds nothing and queues nothing more.
    wait_until_all_finished(&node.core).await;
    assert_eq!(node.core.sessions.sweep_expired().await.unwrap(), 0);
    assert_eq!(other.sessions.sweep_expired().await.unwrap(), 0);
    let rows = logout_jobs(&node.core).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(other.jobs.run_due().await.unwrap(), RunReport::default());
    got = receiver.received();
    assert_eq!(got.len(), 2);

    // Past the grace, the briefly idle session goes too.
    set(grace.0.clone(), now + 3600, now - 120).await;
    assert_eq!(other.sessions.sweep_expired().await.unwrap(), 1);
    node.core.store.notify_jobs();
    let got = receiver.wait_for(3).await;
    let (claims, _) = verify_logout_token(&node, &got[2].1, &wiki).await;
    assert_eq!(claims["sid"], grace.0.as_str());
    node.stop().await;
}
on_both_backends!(expired_sessions_notify_their_clients_once);
