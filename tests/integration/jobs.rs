//! The job outbox on several nodes: a job claimed by a node that dies is taken over once its
//! short lease runs out, a running job's lease is renewed so nobody takes it over, two nodes run
//! each job once, an outcome counts only while its claim holds, a rolled-back enqueue runs
//! nothing, and the migration moves the old outboxes' pending rows in. Time is moved with the
//! nodes' shared clock; the handlers are the tests' own, so a job takes as long as a test says.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use latchkey_core::{
    Latchkey,
    infra::clock::Clock,
    infra::entity::job_outbox,
    infra::jobs::{
        self, ClaimedJob, Handler, Job, JobFuture, JobKind, LEASE, LogoutJob, Outcome, RunReport,
        status,
    },
    infra::mail::MailKind,
    runtime::JobRunner,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, TransactionTrait,
    sea_query::{Alias, Expr, Query},
};
use tokio::sync::Notify;

use crate::{
    on_both_backends,
    support::{Backend, TestDb, data_dir, open_core_with_clock},
};

/// A handler that records the jobs it ran and, when gated, waits for the test to let it finish.
#[derive(Default)]
struct Probe {
    ran: Mutex<Vec<String>>,
    /// Set: each job waits for `release` (a job that runs as long as the test wants, or
    /// forever: a node that dies mid-job).
    gated: bool,
    started: Notify,
    release: Notify,
}

impl Probe {
    fn gated() -> Arc<Self> {
        Arc::new(Self { gated: true, ..Default::default() })
    }

    fn ran(&self) -> Vec<String> {
        self.ran.lock().unwrap().clone()
    }
}

impl Handler for Probe {
    fn run<'a>(&'a self, job: &'a ClaimedJob) -> JobFuture<'a> {
        Box::pin(async move {
            if self.gated {
                self.started.notify_one();
                self.release.notified().await;
            }
            // Let the other node's pass interleave with this one.
            tokio::task::yield_now().await;
            self.ran.lock().unwrap().push(job.id.clone());
            Outcome::Done(Vec::new())
        })
    }
}

/// Two nodes on one store and one clock.
async fn two_nodes(db: &TestDb, dir: &std::path::Path) -> (Latchkey, Latchkey, Clock) {
    let clock = Clock::system();
    let a = open_core_with_clock(dir, db, &[], clock.clone()).await;
    let b = open_core_with_clock(dir, db, &[], clock.clone()).await;
    (a, b, clock)
}

fn runner(node: &Latchkey, probe: &Arc<Probe>) -> JobRunner {
    node.jobs.clone().with_handler(JobKind::Mail, probe.clone())
}

async fn queue_mail(node: &Latchkey) -> String {
    let txn = node.store.begin_write().await.unwrap();
    let kind = MailKind::SignUpCode { code: "123456".into() };
    let id = node.mail.enqueue(&txn, "ada@example.com", kind).await.unwrap();
    txn.commit().await.unwrap();
    id
}

async fn row(node: &Latchkey, id: &str) -> job_outbox::Model {
    job_outbox::Entity::find_by_id(id.to_owned()).one(node.store.db()).await.unwrap().unwrap()
}

/// A node claims a job and dies before finishing it. Another node leaves the job alone while the
/// lease holds and runs it as soon as the lease (half a minute, not minutes) has run out.
async fn a_dead_nodes_job_is_taken_over_after_one_lease(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let (a, b, clock) = two_nodes(&db, dir.path()).await;
    let id = queue_mail(&a).await;

    let dying = Probe::gated();
    let b_runner = runner(&b, &dying);
    let b_pass = tokio::spawn(async move { b_runner.run_due().await });
    dying.started.notified().await;
    b_pass.abort();
    let _ = b_pass.await;
    // The node is dead once its running job is dropped too (the runner and the job's task are
    // the only other holders of the handler).
    for _ in 0..200 {
        if Arc::strong_count(&dying) == 1 {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(Arc::strong_count(&dying), 1, "the dead node's job is still running");
    let claimed = row(&a, &id).await;
    assert_eq!((claimed.status.as_str(), claimed.attempts), (status::RUNNING, 1));
    assert!(claimed.lease_until.unwrap() <= clock.now() + 30, "{claimed:?}");

    let survivor = Arc::new(Probe::default());
    let a_runner = runner(&a, &survivor);
    assert_eq!(a_runner.run_due().await.unwrap(), RunReport::default(), "a live lease holds");
    // Half a lease later (real time passes too, so not to the second) it still holds...
    clock.advance(LEASE / 2);
    assert_eq!(a_runner.run_due().await.unwrap(), RunReport::default(), "the lease still holds");
    // ...and a full lease after that it has run out.
    clock.advance(LEASE);
    assert_eq!(a_runner.run_due().await.unwrap().done, 1);
    assert_eq!(survivor.ran(), std::slice::from_ref(&id));
    assert!(dying.ran().is_empty());
    let done = row(&a, &id).await;
    assert_eq!((done.status.as_str(), done.attempts), (status::DONE, 2));
    assert_eq!((done.claim, done.lease_until), (None, None));
}
on_both_backends!(a_dead_nodes_job_is_taken_over_after_one_lease);

/// A job that runs for two leases keeps its claim: its node renews the lease while it runs, so
/// another node never takes it over, and it is recorded done once, by its own node.
async fn a_running_jobs_lease_is_renewed(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let (a, b, clock) = two_nodes(&db, dir.path()).await;
    let id = queue_mail(&a).await;

    let slow = Probe::gated();
    let b_runner = runner(&b, &slow);
    let b_pass = tokio::spawn(async move { b_runner.run_due().await });
    slow.started.notified().await;
    let token = row(&a, &id).await.claim.unwrap();

    let other = Arc::new(Probe::default());
    let a_runner = runner(&a, &other);
    for step in 1..=4 {
        // Half a lease at a time: each step finds the lease renewed (from the moved clock).
        clock.advance(LEASE / 2);
        let mut renewed = None;
        for _ in 0..100 {
            let r = row(&a, &id).await;
            if r.lease_until.is_some_and(|t| t >= clock.now() + 25) {
                renewed = Some(r);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let renewed = renewed.unwrap_or_else(|| panic!("lease not renewed at step {step}"));
        assert_eq!(renewed.claim.as_deref(), Some(token.as_str()));
        assert_eq!(a_runner.run_due().await.unwrap(), RunReport::default(), "step {step}");
    }
    slow.release.notify_one();
    assert_eq!(b_pass.await.unwrap().unwrap().done, 1);
    assert_eq!(slow.ran(), std::slice::from_ref(&id));
    assert!(other.ran().is_empty(), "the running job was taken over");
    let done = row(&a, &id).await;
    assert_eq!((done.status.as_str(), done.attempts), (status::DONE, 1));
}
on_both_backends!(a_running_jobs_lease_is_renewed);

/// When another node took a job over, the first node's outcome is not recorded.
async fn an_outcome_counts_only_while_its_claim_holds(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let (a, b, _) = two_nodes(&db, dir.path()).await;
    let id = queue_mail(&a).await;
    let slow = Probe::gated();
    let b_runner = runner(&b, &slow);
    let b_pass = tokio::spawn(async move { b_runner.run_due().await });
    slow.started.notified().await;
    // Another node's claim replaces this one (as after a takeover).
    job_outbox::Entity::update_many()
        .col_expr(job_outbox::Column::Claim, Expr::value("claim_of_another_node"))
        .filter(job_outbox::Column::Id.eq(&id))
        .exec(a.store.db())
        .await
        .unwrap();
    slow.release.notify_one();
    let report = b_pass.await.unwrap().unwrap();
    assert_eq!((report.done, report.lost), (0, 1));
    let r = row(&a, &id).await;
    assert_eq!(r.status, status::RUNNING);
    assert_eq!(r.claim.as_deref(), Some("claim_of_another_node"));
}
on_both_backends!(an_outcome_counts_only_while_its_claim_holds);

/// Two nodes working the same queue at once run every job exactly once between them.
async fn two_nodes_run_each_job_once(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let (a, b, _) = two_nodes(&db, dir.path()).await;
    const N: usize = 40;
    let mut ids = Vec::new();
    for _ in 0..N {
        ids.push(queue_mail(&a).await);
    }
    let (pa, pb) = (Arc::new(Probe::default()), Arc::new(Probe::default()));
    let (ra, rb) = (runner(&a, &pa), runner(&b, &pb));
    let (x, y) = tokio::join!(ra.run_due(), rb.run_due());
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.done + y.done, N, "{x:?} {y:?}");
    let mut ran = [pa.ran(), pb.ran()].concat();
    assert_eq!(ran.len(), N, "a job ran twice");
    ran.sort();
    ids.sort();
    assert_eq!(ran, ids);
    let done = job_outbox::Entity::find()
        .filter(job_outbox::Column::Status.eq(status::DONE))
        .filter(job_outbox::Column::Attempts.eq(1))
        .count(a.store.db())
        .await
        .unwrap();
    assert_eq!(done, N as u64);
}
on_both_backends!(two_nodes_run_each_job_once);

/// A job queued in a transaction that rolls back does not exist; a dedupe key queues once.
async fn a_rolled_back_enqueue_runs_nothing(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let (a, _, clock) = two_nodes(&db, dir.path()).await;
    let job = Job::SessionsEnded { session_ids: vec!["ses_01".into()] };
    let txn = a.store.begin_write().await.unwrap();
    assert!(jobs::enqueue(&txn, &job, clock.now(), None).await.unwrap().is_some());
    txn.rollback().await.unwrap();
    a.store.notify_jobs();
    let probe = Arc::new(Probe::default());
    let runner = a.jobs.clone().with_handler(JobKind::SessionsEnded, probe.clone());
    assert_eq!(runner.run_due().await.unwrap(), RunReport::default());
    assert!(probe.ran().is_empty());
    assert_eq!(job_outbox::Entity::find().count(a.store.db()).await.unwrap(), 0);

    // With a dedupe key, a second job is not queued while the first is stored.
    let conn = a.store.db();
    let first = jobs::enqueue(conn, &job, clock.now(), Some("k")).await.unwrap();
    let second = jobs::enqueue(conn, &job, clock.now(), Some("k")).await.unwrap();
    assert!(first.is_some() && second.is_none(), "{first:?} {second:?}");
    assert_eq!(runner.run_due().await.unwrap().done, 1);
    assert_eq!(probe.ran(), [first.unwrap()]);
}
on_both_backends!(a_rolled_back_enqueue_runs_nothing);

/// Upgrading: mail and logout notifications still pending in the old outboxes become jobs with
/// the same ids (so the Message-ID and `jti` do not change), attempts, error and deadline; sent
/// rows are history and stay behind. The moved mail is then delivered.
async fn pending_rows_of_the_old_outboxes_become_jobs(backend: Backend) {
    use latchkey_migration::{Migrator, MigratorTrait};

    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let core = open_core_with_clock(dir.path(), &db, &[], Clock::system()).await;
    // Down, the old rows and up again on one connection: with the pool, a statement could run
    // on a SQLite connection whose cached schema predates the `DROP TABLE` (an index of the
    // dropped table then "already exists" when it is created again).
    let txn = core.store.db().begin().await.unwrap();
    let conn = &txn;
    // Back to just before the job outbox (undoing the migrations after it first).
    let names: Vec<String> = Migrator::migrations().iter().map(|m| m.name().to_owned()).collect();
    let outbox = names.iter().position(|n| n.ends_with("_job_outbox")).unwrap();
    Migrator::down(conn, Some(u32::try_from(names.len() - outbox).unwrap())).await.unwrap();
    let now = core.clock.now();
    let seal = |s: &str| core.store.master_key().seal("mail-body", s.as_bytes()).unwrap();
    let mail_id = "mail_01jqa0b9z6x5y4w3v2t1s0r9q8";
    let mail_columns = [
        "id",
        "kind",
        "recipient",
        "subject",
        "text_body",
        "html_body",
        "status",
        "attempts",
        "next_attempt_at",
        "claimed_until",
        "last_error",
        "created_at",
        "sent_at",
    ];
    for (id, status, text) in
        [(mail_id, "pending", seal("code 864209")), ("mail_sent", "sent", "".into())]
    {
        let insert = Query::insert()
            .into_table(Alias::new("mail_outbox"))
            .columns(mail_columns.map(Alias::new))
            .values_panic([
                id.into(),
                "sign_up_code".into(),
                "ada@example.com".into(),
                "Your Latchkey sign-up code".into(),
                text.clone().into(),
                text.into(),
                status.into(),
                2.into(),
                (now - 1).into(),
                None::<i64>.into(),
                Some("connection refused").into(),
                (now - 60).into(),
                None::<i64>.into(),
            ])
            .to_owned();
        conn.execute(&insert).await.unwrap();
    }
    let logout_columns = [
        "id",
        "client_id",
        "session_id",
        "user_id",
        "uri",
        "status",
        "attempts",
        "next_attempt_at",
        "claimed_until",
        "last_error",
        "created_at",
        "sent_at",
    ];
    let insert = Query::insert()
        .into_table(Alias::new("backchannel_outbox"))
        .columns(logout_columns.map(Alias::new))
        .values_panic([
            "bcl_01jqa0b9z6x5y4w3v2t1s0r9q8".into(),
            "client_1".into(),
            "ses_1".into(),
            "usr_1".into(),
            "https://rp.example/bcl".into(),
            "sending".into(),
            1.into(),
            (now - 5).into(),
            Some(now + 100).into(),
            None::<String>.into(),
            (now - 5).into(),
            None::<i64>.into(),
        ])
        .to_owned();
    conn.execute(&insert).await.unwrap();
    Migrator::up(conn, None).await.unwrap();
    txn.commit().await.unwrap();
    let conn = core.store.db();

    let rows = job_outbox::Entity::find().all(conn).await.unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let mail = row(&core, mail_id).await;
    assert_eq!(
        (mail.kind.as_str(), mail.status.as_str(), mail.attempts),
        ("mail", status::PENDING, 2)
    );
    assert_eq!(mail.last_error.as_deref(), Some("connection refused"));
    assert_eq!((mail.run_at, mail.give_up_at), (now - 1, now - 60 + 24 * 3600));
    let logout = row(&core, "bcl_01jqa0b9z6x5y4w3v2t1s0r9q8").await;
    assert_eq!(logout.run_at, now + 100, "due once the old node's claim would have expired");
    let Job::BackchannelLogout(l) = serde_json::from_str(&logout.payload).unwrap() else {
        panic!("{logout:?}")
    };
    assert_eq!(
        l,
        LogoutJob {
            client_id: "client_1".into(),
            session_id: "ses_1".into(),
            user_id: "usr_1".into(),
            uri: "https://rp.example/bcl".into(),
        }
    );

    // The moved mail goes out (to the data dir here), with its old id as Message-ID.
    assert_eq!(core.jobs.run_due().await.unwrap().done, 1);
    let eml =
        std::fs::read_to_string(dir.path().join("mail").join(format!("{mail_id}.eml"))).unwrap();
    assert!(eml.contains(&format!("Message-ID: <{mail_id}@localhost>")), "{eml}");
    assert!(eml.contains("code 864209"), "{eml}");
    assert_eq!(row(&core, mail_id).await.status, status::DONE);
}
on_both_backends!(pending_rows_of_the_old_outboxes_become_jobs);
