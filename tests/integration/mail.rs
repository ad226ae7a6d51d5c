//! Outgoing mail against a real SMTP server (aiosmtpd on loopback), through the job outbox:
//! every kind arrives as multipart text + HTML, the outbox survives an outage and a restart,
//! claims keep two nodes from sending twice, a rolled-back enqueue sends nothing, and without
//! SMTP mail lands in data_dir/mail.

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use latchkey_core::{
    Latchkey,
    infra::entity::job_outbox,
    infra::jobs::{Job, MailJob, RunReport, status},
    infra::mail::MailKind,
};
use sea_orm::{
    ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, TransactionTrait, sea_query::Expr,
};
use tracing::instrument::WithSubscriber;

use crate::{
    on_both_backends,
    support::{
        Backend, SmtpSink, SmtpTls, TestDb, TestPki, data_dir, free_listener, open_core,
        parse_mail_files,
    },
};

const FROM: &str = "Latchkey Tests <noreply@latchkey.test>";

/// Enqueues in its own committed transaction, as a service would.
async fn enqueue(core: &Latchkey, to: &str, kind: MailKind) -> String {
    let txn = core.store.db().begin().await.unwrap();
    let id = core.mail.enqueue(&txn, to, kind).await.unwrap();
    txn.commit().await.unwrap();
    core.mail.notify();
    id
}

async fn row(core: &Latchkey, id: &str) -> job_outbox::Model {
    job_outbox::Entity::find_by_id(id.to_owned()).one(core.store.db()).await.unwrap().unwrap()
}

/// The mail a job row carries.
fn mail(row: &job_outbox::Model) -> MailJob {
    match serde_json::from_str(&row.payload).unwrap() {
        Job::Mail(m) => m,
        other => panic!("not a mail: {other:?}"),
    }
}

/// Makes every pending row due now, as the passing of its backoff delay would.
async fn make_due(core: &Latchkey) {
    job_outbox::Entity::update_many()
        .col_expr(job_outbox::Column::RunAt, Expr::value(core.clock.now() - 1))
        .filter(job_outbox::Column::Status.eq(status::PENDING))
        .exec(core.store.db())
        .await
        .unwrap();
}

/// Mails delivered by one pass of this node's job runner.
async fn deliver_due(core: &Latchkey) -> usize {
    core.jobs.run_due().await.unwrap().done
}

async fn every_kind_arrives_as_multipart_text_and_html(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let sink = SmtpSink::start(None).await;
    let core = open_core(
        dir.path(),
        &db,
        &[("LATCHKEY_SMTP_URL", &sink.url()), ("LATCHKEY_MAIL_FROM", FROM)],
    )
    .await;

    let link = "https://id.example.com/t/tok_7f3a9c";
    // (kind, the code or link each part must carry, a word the subject must carry)
    let cases = [
        (MailKind::SignUpCode { code: "482913".into() }, "482913", "sign-up code"),
        (MailKind::PasswordReset { link: format!("{link}/reset") }, "/reset", "password"),
        (
            MailKind::Invitation {
                org_name: "Acme".into(),
                link: format!("{link}/invite"),
                inviter: Some("Ada Lovelace".into()),
            },
            "/invite",
            "Ada Lovelace invited you to join Acme",
        ),
        (
            MailKind::DomainVerificationCode {
                domain: "acme.example".into(),
                code: "771204".into(),
            },
            "771204",
            "Verify acme.example",
        ),
        (
            MailKind::JoinRequest {
                org_name: "Acme".into(),
                requester: "bob@acme.example".into(),
                link: format!("{link}/join"),
            },
            "/join",
            "bob@acme.example asks to join Acme",
        ),
    ];
    let mut ids = Vec::new();
    for (kind, _, _) in &cases {
        ids.push(enqueue(&core, "Grace@Example.com", kind.clone()).await);
    }
    assert!(ids.iter().all(|id| id.starts_with("mail_")), "{ids:?}");

    assert_eq!(deliver_due(&core).await, cases.len());
    let messages = sink.messages();
    assert_eq!(messages.len(), cases.len(), "{messages:#?}");
    for ((kind, secret, subject_part), id) in cases.iter().zip(&ids) {
        let secret =
            if secret.starts_with('/') { format!("{link}{secret}") } else { secret.to_string() };
        let m = messages
            .iter()
            .find(|m| m.message_id == format!("<{id}@latchkey.test>"))
            .unwrap_or_else(|| panic!("{} mail {id} not received", kind.name()));
        assert_eq!(m.from, FROM);
        assert_eq!(m.to, "grace@example.com");
        assert!(m.subject.contains("Latchkey"), "{}", m.subject);
        assert!(m.subject.contains(subject_part), "{}", m.subject);
        assert_eq!(m.content_type, "multipart/alternative", "{m:?}");
        let types: Vec<&str> = m.parts.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(types, ["text/plain", "text/html"]);
        for part in ["text/plain", "text/html"] {
            let body = m.part(part);
            assert!(body.contains(&secret), "{} {part} lacks {secret}: {body}", kind.name());
            assert!(body.contains("Latchkey"), "{} {part}", kind.name());
        }
        if secret.starts_with("https://") {
            let html = m.part("text/html");
            assert!(html.contains(&format!("href=\"{secret}\"")), "{}: {html}", kind.name());
        }

        let stored = row(&core, id).await;
        assert_eq!(stored.status, status::DONE);
        assert_eq!(stored.attempts, 1);
        assert!(stored.finished_at.is_some() && stored.lease_until.is_none());
        let stored = mail(&stored);
        assert!(stored.text.is_empty() && stored.html.is_empty(), "bodies erased");
    }

    // Nothing left to send, and nothing is sent twice.
    assert_eq!(deliver_due(&core).await, 0);
    assert_eq!(sink.messages().len(), cases.len());
}
on_both_backends!(every_kind_arrives_as_multipart_text_and_html);

/// Queued bodies are sealed at rest: the code is not readable in the table.
async fn queued_bodies_are_sealed(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let core = open_core(dir.path(), &db, &[]).await;
    let id =
        enqueue(&core, "ada@example.com", MailKind::SignUpCode { code: "135790".into() }).await;
    let stored = row(&core, &id).await;
    assert_eq!((stored.status.as_str(), stored.attempts), (status::PENDING, 0));
    assert_eq!(stored.kind, "mail");
    assert!(!format!("{stored:?}").contains("135790"), "{stored:?}");
    let stored = mail(&stored);
    assert_eq!(stored.template, "sign_up_code");
    assert!(stored.text.starts_with("v1.") && stored.html.starts_with("v1."));
}
on_both_backends!(queued_bodies_are_sealed);

async fn outage_is_retried_with_backoff_and_survives_a_restart(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    // A port where nothing listens (yet).
    let port = free_listener().local_addr().unwrap().port();
    let env = [("LATCHKEY_SMTP_URL", format!("smtp://127.0.0.1:{port}"))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let core = open_core(dir.path(), &db, &env).await;
    let id =
        enqueue(&core, "ada@example.com", MailKind::SignUpCode { code: "246810".into() }).await;

    let before = core.clock.now();
    assert_eq!(core.jobs.run_due().await.unwrap().retried, 1);
    let stored = row(&core, &id).await;
    assert_eq!(stored.status, status::PENDING);
    assert_eq!(stored.attempts, 1);
    assert!(stored.run_at >= before + 10, "next attempt {stored:?}");
    assert!(stored.lease_until.is_none() && stored.claim.is_none());
    assert!(stored.last_error.as_deref().is_some_and(|e| !e.is_empty()), "{stored:?}");
    // Not due yet: another pass does not try again.
    assert_eq!(core.jobs.run_due().await.unwrap(), RunReport::default());
    assert_eq!(row(&core, &id).await.attempts, 1);

    // The server comes back, and Latchkey restarts before the retry is due.
    let sink = SmtpSink::start(Some(port)).await;
    core.store.clone().close().await;
    drop(core);
    let core = open_core(dir.path(), &db, &env).await;
    assert_eq!(deliver_due(&core).await, 0, "retry is not due yet");
    make_due(&core).await;
    assert_eq!(deliver_due(&core).await, 1);
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    assert!(messages[0].part("text/plain").contains("246810"));
    assert!(messages[0].part("text/html").contains("246810"));
    let stored = row(&core, &id).await;
    assert_eq!((stored.status.as_str(), stored.attempts), (status::DONE, 2));
    assert_eq!(stored.last_error, None);

    // Delivered exactly once.
    make_due(&core).await;
    assert_eq!(deliver_due(&core).await, 0);
    assert_eq!(sink.messages().len(), 1);
}
on_both_backends!(outage_is_retried_with_backoff_and_survives_a_restart);

/// A mail still undelivered a day after it was queued is marked failed and its body erased.
async fn undeliverable_mail_is_given_up_after_a_day(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let port = free_listener().local_addr().unwrap().port();
    let url = format!("smtp://127.0.0.1:{port}");
    let core = open_core(dir.path(), &db, &[("LATCHKEY_SMTP_URL", &url)]).await;
    let id =
        enqueue(&core, "ada@example.com", MailKind::SignUpCode { code: "111111".into() }).await;
    core.clock.advance(Duration::from_secs(25 * 3600));
    assert_eq!(core.jobs.run_due().await.unwrap().failed, 1);
    let stored = row(&core, &id).await;
    assert_eq!(stored.status, status::FAILED);
    assert!(stored.last_error.is_some() && mail(&stored).text.is_empty());
    make_due(&core).await;
    assert_eq!(deliver_due(&core).await, 0);
    assert_eq!(row(&core, &id).await.attempts, 1, "a failed mail is not tried again");
}
on_both_backends!(undeliverable_mail_is_given_up_after_a_day);

/// A crashed sender's claim expires, and the mail is then sent by someone else.
async fn an_expired_claim_is_taken_over(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let sink = SmtpSink::start(None).await;
    let core = open_core(dir.path(), &db, &[("LATCHKEY_SMTP_URL", &sink.url())]).await;
    let id =
        enqueue(&core, "ada@example.com", MailKind::SignUpCode { code: "314159".into() }).await;
    // As if a node had claimed the row and died mid-send: its lease is not renewed.
    job_outbox::Entity::update_many()
        .col_expr(job_outbox::Column::Status, Expr::value(status::RUNNING))
        .col_expr(job_outbox::Column::Attempts, Expr::value(1))
        .col_expr(job_outbox::Column::Claim, Expr::value("claim_of_a_dead_node"))
        .col_expr(job_outbox::Column::LeaseUntil, Expr::value(core.clock.now() + 30))
        .filter(job_outbox::Column::Id.eq(id.clone()))
        .exec(core.store.db())
        .await
        .unwrap();
    assert_eq!(deliver_due(&core).await, 0, "a live claim is respected");
    // The lease is short: half a minute later the mail goes out, not after minutes.
    core.clock.advance(Duration::from_secs(31));
    assert_eq!(deliver_due(&core).await, 1);
    assert_eq!(sink.messages().len(), 1);
    let stored = row(&core, &id).await;
    assert_eq!((stored.status.as_str(), stored.attempts), (status::DONE, 2));
}
on_both_backends!(an_expired_claim_is_taken_over);

async fn two_nodes_never_send_the_same_mail(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let sink = SmtpSink::start(None).await;
    let env = [("LATCHKEY_SMTP_URL", sink.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let node_a = open_core(dir.path(), &db, &env).await;
    let node_b = open_core(dir.path(), &db, &env).await;
    const N: usize = 20;
    for i in 0..N {
        let code = format!("{:06}", 100_000 + i);
        enqueue(&node_a, &format!("user{i}@example.com"), MailKind::SignUpCode { code }).await;
    }
    let (a, b) = tokio::join!(deliver_due(&node_a), deliver_due(&node_b));
    assert_eq!(a + b, N, "node a sent {a}, node b sent {b}");
    let messages = sink.messages();
    assert_eq!(messages.len(), N);
    let mut ids: Vec<&str> = messages.iter().map(|m| m.message_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), N, "a mail was sent twice");
}
on_both_backends!(two_nodes_never_send_the_same_mail);

async fn a_rolled_back_enqueue_sends_nothing(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let sink = SmtpSink::start(None).await;
    let core = open_core(dir.path(), &db, &[("LATCHKEY_SMTP_URL", &sink.url())]).await;
    let txn = core.store.db().begin().await.unwrap();
    let id = core
        .mail
        .enqueue(&txn, "ada@example.com", MailKind::SignUpCode { code: "999999".into() })
        .await
        .unwrap();
    txn.rollback().await.unwrap();
    core.mail.notify();
    assert_eq!(core.jobs.run_due().await.unwrap(), RunReport::default());
    assert!(job_outbox::Entity::find_by_id(id).one(core.store.db()).await.unwrap().is_none());
    assert_eq!(job_outbox::Entity::find().count(core.store.db()).await.unwrap(), 0);
    assert!(sink.messages().is_empty());
}
on_both_backends!(a_rolled_back_enqueue_sends_nothing);

/// The job runner the server spawns delivers as soon as it is notified.
async fn the_worker_delivers_on_notify(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let sink = SmtpSink::start(None).await;
    let core = open_core(dir.path(), &db, &[("LATCHKEY_SMTP_URL", &sink.url())]).await;
    let worker = core.jobs.spawn();
    let link = "https://id.example.com/reset/tok_worker".to_owned();
    let id =
        enqueue(&core, "ada@example.com", MailKind::PasswordReset { link: link.clone() }).await;
    // Well under the 5 s poll interval: notify() is what wakes the worker.
    let messages = sink.wait_for(1, Duration::from_secs(3)).await;
    worker.abort();
    assert_eq!(messages.len(), 1, "the worker did not deliver within 3 s");
    assert!(messages[0].part("text/plain").contains(&link));
    assert_eq!(row(&core, &id).await.status, status::DONE);
}
on_both_backends!(the_worker_delivers_on_notify);

/// `smtp://…?tls=required` and `smtps://` never fall back to clear text: against a server
/// without TLS, nothing is delivered and the mail waits for a retry.
async fn required_tls_never_falls_back_to_plain_text(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let sink = SmtpSink::start(None).await;
    for url in [
        format!("smtp://127.0.0.1:{}?tls=required", sink.port),
        format!("smtps://127.0.0.1:{}", sink.port),
    ] {
        let core = open_core(dir.path(), &db, &[("LATCHKEY_SMTP_URL", &url)]).await;
        let id =
            enqueue(&core, "ada@example.com", MailKind::SignUpCode { code: "000111".into() }).await;
        assert_eq!(deliver_due(&core).await, 0, "{url}");
        let stored = row(&core, &id).await;
        assert_eq!(stored.status, status::PENDING, "{url}");
        assert!(stored.last_error.is_some(), "{url}");
        assert!(sink.messages().is_empty(), "{url}: delivered without TLS");
        // Out of the way for the next URL.
        job_outbox::Entity::delete_by_id(id).exec(core.store.db()).await.unwrap();
    }
}
on_both_backends!(required_tls_never_falls_back_to_plain_text);

/// Collects what a test's tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

async fn without_smtp_mail_is_written_to_the_data_dir(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let core = open_core(dir.path(), &db, &[]).await;
    assert!(core.settings.smtp_url.is_none());
    let id =
        enqueue(&core, "ada@example.com", MailKind::SignUpCode { code: "864209".into() }).await;

    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let sent = core.jobs.run_due().with_subscriber(subscriber).await.unwrap();
    assert_eq!(sent.done, 1);

    let path = dir.path().join("mail").join(format!("{id}.eml"));
    assert!(path.is_file(), "{} missing", path.display());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let parsed = parse_mail_files(std::slice::from_ref(&path));
    assert_eq!(parsed[0].content_type, "multipart/alternative");
    assert_eq!(parsed[0].to, "ada@example.com");
    assert_eq!(parsed[0].from, "Latchkey <noreply@localhost>");
    assert!(parsed[0].part("text/plain").contains("864209"));
    assert!(parsed[0].part("text/html").contains("864209"));

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let expected = format!("mail written to {} (no LATCHKEY_SMTP_URL configured)", path.display());
    assert!(logs.contains(&expected), "{logs}");
    assert!(logs.contains(" INFO "), "{logs}");
    assert_eq!(row(&core, &id).await.status, status::DONE);
    assert_eq!(deliver_due(&core).await, 0);
    assert_eq!(std::fs::read_dir(dir.path().join("mail")).unwrap().count(), 1);
}
on_both_backends!(without_smtp_mail_is_written_to_the_data_dir);

/// Sends one sign-up code through `url` and returns the outbox row after one delivery pass.
async fn send_one(core: &Latchkey, code: &str) -> (usize, job_outbox::Model) {
    let id = enqueue(core, "ada@example.com", MailKind::SignUpCode { code: code.into() }).await;
    let sent = deliver_due(core).await;
    (sent, row(core, &id).await)
}

/// `LATCHKEY_SMTP_URL` over STARTTLS (`?tls=required`) and implicit TLS (`smtps://`), with AUTH
/// from the URL, against a server whose certificate chains to a private CA trusted through
/// `LATCHKEY_SMTP_CA_FILE`. The server refuses MAIL before AUTH and anything before TLS.
async fn tls_with_auth_delivers_when_the_ca_file_is_trusted(backend: Backend) {
    let pki = TestPki::new();
    let ca = pki.ca_cert().display().to_string();
    for (mode, scheme, query) in
        [(SmtpTls::StartTls, "smtp", "?tls=required"), (SmtpTls::Implicit, "smtps", "")]
    {
        // A fresh store per round: each round has its own data dir, hence its own master key.
        let Some(db) = TestDb::new(backend).await else { return };
        let dir = data_dir();
        let sink = SmtpSink::start_tls(mode, &pki).await;
        let url = format!("{scheme}://mailer:s3cret@127.0.0.1:{}{query}", sink.port);
        let core = open_core(
            dir.path(),
            &db,
            &[
                ("LATCHKEY_SMTP_URL", &url),
                ("LATCHKEY_SMTP_CA_FILE", &ca),
                ("LATCHKEY_MAIL_FROM", FROM),
            ],
        )
        .await;
        let (sent, stored) = send_one(&core, "502913").await;
        assert_eq!(sent, 1, "{mode:?}: {stored:?}");
        assert_eq!((stored.status.as_str(), stored.attempts), (status::DONE, 1), "{mode:?}");
        let messages = sink.messages();
        assert_eq!(messages.len(), 1, "{mode:?}");
        let m = &messages[0];
        assert_eq!(m.message_id, format!("<{}@latchkey.test>", stored.id));
        assert_eq!(m.from, FROM);
        assert_eq!(m.to, "ada@example.com");
        assert_eq!(m.content_type, "multipart/alternative");
        assert!(m.part("text/plain").contains("502913"), "{mode:?}");
        assert!(m.part("text/html").contains("502913"), "{mode:?}");
        job_outbox::Entity::delete_many().exec(core.store.db()).await.unwrap();
        core.store.clone().close().await;
    }
}
on_both_backends!(tls_with_auth_delivers_when_the_ca_file_is_trusted);

/// A wrong password is refused by the server: nothing is delivered and the mail waits for a retry.
async fn a_wrong_smtp_password_sends_nothing(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let pki = TestPki::new();
    let ca = pki.ca_cert().display().to_string();
    let dir = data_dir();
    let sink = SmtpSink::start_tls(SmtpTls::StartTls, &pki).await;
    let url = format!("smtp://mailer:wrong@127.0.0.1:{}?tls=required", sink.port);
    let core =
        open_core(dir.path(), &db, &[("LATCHKEY_SMTP_URL", &url), ("LATCHKEY_SMTP_CA_FILE", &ca)])
            .await;
    let (sent, stored) = send_one(&core, "777001").await;
    assert_eq!(sent, 0);
    assert_eq!((stored.status.as_str(), stored.attempts), (status::PENDING, 1));
    let error = stored.last_error.unwrap_or_default();
    assert!(error.contains("535"), "{error}");
    assert!(!error.contains("wrong"), "the password leaked into the row: {error}");
    assert!(sink.messages().is_empty());
}
on_both_backends!(a_wrong_smtp_password_sends_nothing);

/// Without `LATCHKEY_SMTP_CA_FILE` the private CA is not trusted: the TLS handshake fails, so
/// neither the credentials nor the mail reach the server, over STARTTLS or implicit TLS.
async fn an_untrusted_smtp_certificate_is_refused(backend: Backend) {
    let pki = TestPki::new();
    for (mode, scheme, query) in
        [(SmtpTls::StartTls, "smtp", "?tls=required"), (SmtpTls::Implicit, "smtps", "")]
    {
        // A fresh store per round: each round has its own data dir, hence its own master key.
        let Some(db) = TestDb::new(backend).await else { return };
        let dir = data_dir();
        let sink = SmtpSink::start_tls(mode, &pki).await;
        let url = format!("{scheme}://mailer:s3cret@127.0.0.1:{}{query}", sink.port);
        let core = open_core(dir.path(), &db, &[("LATCHKEY_SMTP_URL", &url)]).await;
        let (sent, stored) = send_one(&core, "424242").await;
        assert_eq!(sent, 0, "{mode:?}");
        assert_eq!(stored.status, status::PENDING, "{mode:?}");
        let error = stored.last_error.clone().unwrap_or_default();
        assert!(error.to_ascii_lowercase().contains("certificate"), "{mode:?}: {error}");
        assert!(sink.messages().is_empty(), "{mode:?}: delivered to an untrusted server");
        job_outbox::Entity::delete_many().exec(core.store.db()).await.unwrap();
        core.store.clone().close().await;
    }
}
on_both_backends!(an_untrusted_smtp_certificate_is_refused);
