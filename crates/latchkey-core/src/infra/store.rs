//! The database connection and the few operations every service shares.

use std::{sync::Arc, time::Duration};

use latchkey_migration::{Migrator, MigratorTrait};
pub use sea_orm::DbErr;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    EntityTrait, SqliteTransactionMode, TransactionOptions, TransactionTrait,
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
};

use futures_util::future::BoxFuture;

use crate::{
    Error, Result,
    infra::clock::Clock,
    infra::config::SqliteSync,
    infra::crypto::MasterKey,
    infra::entity::store_revision,
    infra::inline_sqlite::{InlineSqlite, WriteTxn},
    infra::revision::{RevisionGate, RevisionSource},
};

#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// Where write transactions run ([`Store::begin_write`]). On SQLite a pool of its own with
    /// one connection: SQLite has one writer at a time anyway, and then writers queue here, in
    /// order, instead of sleeping in SQLite's busy handler; and the connection's page cache stays
    /// warm, where with writes spread over the pool every commit made the other connections
    /// drop their caches and read the pages again. With the read pool sized to the workers, the
    /// SAML ACS went from 38% to 46% of the raw verify rate (docs/benchmarks.md). On PostgreSQL
    /// the same pool as `db`.
    writer: DatabaseConnection,
    master_key: Arc<MasterKey>,
    /// Wakes this node's job runner after a commit that queued jobs.
    jobs_wake: Arc<tokio::sync::Notify>,
    /// Shared by every cache that is tagged with the store revision, so one request's read
    /// serves all of them.
    gate: Arc<RevisionGate>,
    /// SQLite only: a plain connection for reading the revision in-line (see
    /// [`Store::current_revision`]).
    revision_reader: Option<Arc<RevisionReader>>,
    /// SQLite only: a write connection of Latchkey's own, for batches of writes that would
    /// otherwise cost a pool round trip per statement (see [`Store::with_sqlite_writer`]).
    sqlite_writer: Option<Arc<std::sync::Mutex<rusqlite::Connection>>>,
    /// SQLite only: whose turn it is on `sqlite_writer` (see `Store::on_sqlite_writer`).
    writer_turn: Arc<tokio::sync::Mutex<()>>,
    /// Dropped with the last clone of the store: background threads watch it to know when to
    /// stop.
    alive: Arc<()>,
    clock: Clock,
}

/// See [`Store::open_pool`].
const STARTUP_LOCK_RETRIES: u32 = 30;

/// The connection pools of an open database (see [`Store::begin_write`] for why two).
pub struct Pools {
    db: DatabaseConnection,
    writer: DatabaseConnection,
}

/// How often the background checkpointer copies committed WAL pages back to the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// SQLite: copies the WAL back into the database file from a thread of its own, with passive
/// checkpoints (they never block readers or writers). Left to the committing connection, a
/// checkpoint runs inside whatever write happens to cross the threshold, and a burst of refresh
/// rotations waited tens of milliseconds behind one.
fn spawn_checkpointer(path: std::path::PathBuf, sync: SqliteSync, alive: std::sync::Weak<()>) {
    let spawned = std::thread::Builder::new().name("latchkey-checkpoint".into()).spawn(move || {
        let Ok(conn) = open_sqlite(&path, sync, Duration::from_millis(100)) else { return };
        loop {
            std::thread::sleep(CHECKPOINT_INTERVAL);
            if alive.upgrade().is_none() {
                return;
            }
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::debug!(error = %e, "background checkpoint skipped");
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no background checkpointer; SQLite checkpoints on commit");
    }
}

/// Opens a plain connection to the store's SQLite file, with the settings the pool uses.
fn open_sqlite(
    path: &std::path::Path,
    sync: SqliteSync,
    busy: Duration,
) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = rusqlite::Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(busy)?;
    // Per connection, as in the pool: the durability the operator chose
    // (LATCHKEY_SQLITE_SYNCHRONOUS), and foreign keys enforced.
    conn.pragma_update(None, "synchronous", sync.pragma())?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Reads the revision row of an SQLite store directly, on the calling thread. Through the
/// pool a read is a round trip to a worker thread, tens of microseconds of wake-ups; here it
/// is a few microseconds, cheap enough to do for every request. WAL readers never wait for
/// writers, so the call does not block in practice; a busy or failed read falls back to the
/// pool.
struct RevisionReader {
    conn: std::sync::Mutex<rusqlite::Connection>,
}

impl RevisionReader {
    fn open(path: &std::path::Path, sync: SqliteSync) -> Option<Self> {
        let conn = open_sqlite(path, sync, Duration::from_millis(20))
            .inspect_err(|e| tracing::warn!(error = %e, "no in-line revision reader"))
            .ok()?;
        Some(Self { conn: std::sync::Mutex::new(conn) })
    }

    fn read(&self) -> Option<i64> {
        let conn = self.conn.lock().ok()?;
        let mut stmt =
            conn.prepare_cached("SELECT revision FROM store_revision WHERE id = 1").ok()?;
        stmt.query_row([], |row| row.get(0)).ok()
    }
}

impl Store {
    /// Opens the database and builds the store on it (see [`Store::open_database`]). On
    /// SQLite every connection (the pool's and Latchkey's own) commits with the durability
    /// `sync` asks for.
    pub async fn connect(
        url: &str,
        sync: SqliteSync,
        master_key: MasterKey,
        clock: Clock,
    ) -> Result<Self> {
        let pools = Self::open_database(url, sync, 4).await?;
        Ok(Self::new(pools, url, sync, master_key, clock))
    }

    /// Connects to the database of `url`. Fails fast, and as a configuration error that names
    /// `LATCHKEY_DATABASE_URL` (password redacted) or the SQLite file, when it cannot be opened:
    /// one connection attempt with a short timeout first, rather than the pool's retries.
    ///
    /// On SQLite the pool for reads and autocommit writes has `sqlite_readers` connections (one
    /// per request thread makes sense: more only spread the page cache, which each commit
    /// elsewhere empties).
    pub async fn open_database(url: &str, sync: SqliteSync, sqlite_readers: u32) -> Result<Pools> {
        let db = Self::open_pool(url, sync, sqlite_readers.max(1)).await?;
        let writer = if url.starts_with("sqlite:") {
            Self::open_pool(url, sync, 1).await?
        } else {
            db.clone()
        };
        Ok(Pools { db, writer })
    }

    /// [`Self::open_database`] with at most `sqlite_connections` connections on SQLite.
    /// A database still locked after the busy timeout is tried again, once a second, this many
    /// times (SQLite only: PostgreSQL does not lock at connect).
    async fn open_pool(
        url: &str,
        sync: SqliteSync,
        sqlite_connections: u32,
    ) -> Result<DatabaseConnection> {
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.sqlx_logging(false).connect_timeout(Duration::from_secs(10));
        if url.starts_with("sqlite:") {
            if let Some(dir) = sqlite_parent_dir(url) {
                crate::infra::crypto::create_private_dir(&dir)
                    .map_err(|e| unopenable(url, io_cause(&e)))?;
            }
            // WAL lets the CLI write while the server reads; busy_timeout makes concurrent
            // writers wait instead of failing.
            let synchronous = match sync {
                SqliteSync::Normal => SqliteSynchronous::Normal,
                SqliteSync::Full => SqliteSynchronous::Full,
            };
            opts.max_connections(sqlite_connections).min_connections(1).map_sqlx_sqlite_opts(
                move |o| {
                    o.journal_mode(SqliteJournalMode::Wal)
                        .synchronous(synchronous)
                        .busy_timeout(Duration::from_secs(10))
                        .foreign_keys(true)
                },
            );
        } else {
            probe_postgres(url).await?;
            opts.max_connections(16).min_connections(1);
        }
        // Nodes (and the CLI) started together queue on the database while one of them runs the
        // migrations in a transaction; the busy timeout covers one such wait, not a queue of
        // them on a loaded machine. A locked database at start-up is waited for, a while.
        let mut attempts = 0;
        loop {
            match Database::connect(opts.clone()).await {
                Err(e)
                    if e.to_string().contains("database is locked")
                        && attempts < STARTUP_LOCK_RETRIES =>
                {
                    attempts += 1;
                    tracing::info!(
                        attempt = attempts,
                        "the database is locked by another process; waiting"
                    );
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                other => return other.map_err(|e| unopenable(url, e.to_string())),
            }
        }
    }

    /// The store on an open database.
    pub fn new(
        pools: Pools,
        url: &str,
        sync: SqliteSync,
        master_key: MasterKey,
        clock: Clock,
    ) -> Self {
        let Pools { db, writer } = pools;
        let store = Self {
            db,
            writer,
            master_key: Arc::new(master_key),
            jobs_wake: Arc::new(tokio::sync::Notify::new()),
            gate: Arc::default(),
            revision_reader: sqlite_path(url)
                .and_then(|p| RevisionReader::open(&p, sync))
                .map(Arc::new),
            sqlite_writer: sqlite_path(url)
                .and_then(|p| {
                    open_sqlite(&p, sync, Duration::from_secs(10))
                        .and_then(|c| {
                            // Batches touch index pages all over the token tables: keep more of
                            // them (8 MiB: every sign-in writes here too, and 16 MiB filled up
                            // to the SAML benchmark's memory ceiling). Checkpoints run in the
                            // background (see `spawn_checkpointer`); this connection only steps
                            // in if the WAL grows past ~64 MB regardless.
                            c.pragma_update(None, "cache_size", -8192)?;
                            c.pragma_update(None, "wal_autocheckpoint", 16000)?;
                            Ok(c)
                        })
                        .inspect_err(|e| tracing::warn!(error = %e, "no own SQLite writer"))
                        .ok()
                })
                .map(|c| Arc::new(std::sync::Mutex::new(c))),
            writer_turn: Arc::default(),
            alive: Arc::new(()),
            clock,
        };
        if let Some(path) = sqlite_path(url) {
            spawn_checkpointer(path, sync, Arc::downgrade(&store.alive));
        }
        store
    }

    /// The clock every service of this store reads the time from.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Current time as unix seconds (see [`Clock`]).
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn master_key(&self) -> &MasterKey {
        &self.master_key
    }

    /// Call after committing a transaction that queued jobs (the job outbox, `jobs.rs`): this
    /// node's runner runs them at once instead of at its next poll.
    pub fn notify_jobs(&self) {
        self.jobs_wake.notify_one();
    }

    pub(crate) fn jobs_wake(&self) -> &tokio::sync::Notify {
        &self.jobs_wake
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Applies pending migrations, in one transaction that holds the store's lock, so that of
    /// several nodes (or CLI commands) that start together only the first migrates and the others
    /// then find nothing to do: on PostgreSQL an advisory lock, on SQLite the write lock
    /// (`BEGIN IMMEDIATE`; without it two processes both create the first table and one fails).
    pub async fn migrate(&self) -> Result<()> {
        let txn = self.begin_write().await?;
        if self.backend() == DbBackend::Postgres {
            txn.execute_unprepared("SELECT pg_advisory_xact_lock(7361726)").await?;
        }
        Migrator::up(&txn, None).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads and then writes fails at once with
    /// SQLITE_BUSY when another connection wrote in between, while an immediate one waits for
    /// the busy timeout. PostgreSQL ignores the option. On SQLite the transaction runs on the
    /// writer pool's one connection (see `Store::writer`).
    pub async fn begin_write(&self) -> Result<DatabaseTransaction> {
        let options = TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        };
        Ok(self.writer.begin_with_options(options).await?)
    }

    pub async fn ping(&self) -> Result<()> {
        self.db.ping().await.map_err(Error::from)
    }

    /// The store-wide revision: bumped by every write that can make a cached session or key stale.
    pub async fn revision(&self) -> Result<i64> {
        let row = store_revision::Entity::find_by_id(1).one(&self.db).await?;
        row.map(|r| r.revision).ok_or_else(|| Error::Internal("store_revision row missing".into()))
    }

    /// The revision as of some moment after this call began, read through the shared
    /// [`RevisionGate`] (one query serves every request waiting at that moment). Caches keyed by
    /// revision compare against it: anything committed before the request arrived is seen.
    pub async fn current_revision(&self) -> Result<i64> {
        self.gate.current(self, true).await
    }

    /// [`Self::current_revision`] with the read always going through the pool. The slower read
    /// lets more requests queue behind it, so more of them finish together; on the session-token
    /// path, whose requests are otherwise very short, that measured about a fifth less CPU per
    /// token (docs/benchmarks.md), while the OAuth token endpoint is faster with the in-line
    /// read.
    pub async fn current_revision_pooled(&self) -> Result<i64> {
        self.gate.current(self, false).await
    }

    pub(crate) fn has_sqlite_writer(&self) -> bool {
        self.sqlite_writer.is_some()
    }

    /// SQLite only: runs `f` on Latchkey's own write connection, on a blocking thread. None
    /// on PostgreSQL (or when the connection could not be opened): use the pool.
    pub(crate) async fn with_sqlite_writer<T, F>(&self, f: F) -> Option<Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> Result<T> + Send + 'static,
    {
        let writer = self.sqlite_writer.clone()?;
        Some(self.on_sqlite_writer(writer, f).await.and_then(|outcome| outcome))
    }

    /// Runs `run` on `writer` on a blocking thread, in turn: writes wait for their turn as
    /// tasks, so at most one blocking thread holds or waits for the connection.
    async fn on_sqlite_writer<R, F>(
        &self,
        writer: Arc<std::sync::Mutex<rusqlite::Connection>>,
        run: F,
    ) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> R + Send + 'static,
    {
        let turn = self.writer_turn.clone().lock_owned().await;
        let task = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            // A panic while the connection was held poisons nothing that matters: its open
            // transaction, if any, is rolled back here.
            let mut conn = writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            run(&mut conn)
        });
        task.await.map_err(|e| Error::Internal(format!("SQLite writer: {e}")))
    }

    /// Runs `f` in one write transaction and commits if it succeeds (rolls back otherwise).
    /// On SQLite with Latchkey's own writer, the whole transaction runs on a blocking thread
    /// with every statement executed in-line ([`InlineSqlite`]): one hop instead of a round
    /// trip to sqlx's worker thread per statement. Elsewhere a pooled [`Self::begin_write`].
    /// `f` must do all its database work through the transaction it is given.
    pub(crate) async fn write<T, E, F>(&self, f: F) -> std::result::Result<T, E>
    where
        T: Send + 'static,
        E: From<Error> + Send + 'static,
        F: for<'t, 'c> FnOnce(&'t WriteTxn<'c>) -> BoxFuture<'t, std::result::Result<T, E>>
            + Send
            + 'static,
    {
        let Some(writer) = self.sqlite_writer.clone() else {
            let txn = WriteTxn::Pooled(self.begin_write().await?);
            let outcome = f(&txn).await;
            if let (Ok(_), WriteTxn::Pooled(txn)) = (&outcome, txn) {
                txn.commit().await.map_err(Error::from)?;
            }
            return outcome;
        };
        let runtime = tokio::runtime::Handle::current();
        let run = move |conn: &mut rusqlite::Connection| {
            conn.execute_batch("BEGIN IMMEDIATE").map_err(Error::from)?;
            let txn = WriteTxn::Inline(InlineSqlite::new(conn));
            let outcome = runtime.block_on(f(&txn));
            drop(txn);
            let end = if outcome.is_ok() { "COMMIT" } else { "ROLLBACK" };
            if let Err(e) = conn.execute_batch(end) {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                return Err(Error::from(e).into());
            }
            outcome
        };
        self.on_sqlite_writer(writer, run).await.unwrap_or_else(|e| Err(e.into()))
    }

    pub async fn bump_revision<C: ConnectionTrait>(conn: &C) -> Result<()> {
        use sea_orm::sea_query::{Expr, ExprTrait, Query};
        let stmt = Query::update()
            .table(store_revision::Entity)
            .value(
                store_revision::Column::Revision,
                Expr::col(store_revision::Column::Revision).add(1),
            )
            .and_where(Expr::col(store_revision::Column::Id).eq(1))
            .to_owned();
        conn.execute(&stmt).await?;
        Ok(())
    }

    pub async fn close(self) {
        // On PostgreSQL `writer` is `db`: closing a closed pool again is a no-op.
        let _ = self.writer.close_by_ref().await;
        let _ = self.db.close().await;
    }
}

/// How long the first connection to PostgreSQL may take. The pool would retry a refused
/// connection until its 10 s acquire timeout and then report only "pool timed out".
const FIRST_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One connection attempt, without the pool's retries, so that a database that is down or
/// misnamed stops start-up at once with the reason.
async fn probe_postgres(url: &str) -> Result<()> {
    use sea_orm::sqlx::{ConnectOptions as _, Connection as _, postgres::PgConnectOptions};
    let options: PgConnectOptions = url.parse().map_err(|e| unopenable(url, format!("{e}")))?;
    match tokio::time::timeout(FIRST_CONNECT_TIMEOUT, options.connect()).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(unopenable(url, e.to_string())),
        Err(_) => {
            Err(unopenable(url, format!("no answer within {} s", FIRST_CONNECT_TIMEOUT.as_secs())))
        }
    }
}

/// The error for a database that cannot be opened: a configuration error (exit code 2 in the
/// CLI) naming the setting, with the URL's password redacted, or the SQLite file.
fn unopenable(url: &str, cause: String) -> Error {
    let cause = cause.trim_start_matches("Connection Error: ");
    let (expected, got) = match sqlite_path(url) {
        Some(path) => (
            "an SQLite database file that can be created or opened for reading and writing",
            format!("{} ({cause})", path.display()),
        ),
        None if url.starts_with("sqlite:") => ("an SQLite database", format!("{url} ({cause})")),
        None => (
            "a PostgreSQL database that accepts connections",
            format!("{} ({cause})", crate::infra::config::redact_url(url)),
        ),
    };
    crate::infra::config::ConfigError::new("LATCHKEY_DATABASE_URL", expected, got).into()
}

fn io_cause(e: &Error) -> String {
    match e {
        Error::Io { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

/// The gate reads the revision row through the store.
impl RevisionSource for Store {
    fn reads_inline(&self) -> bool {
        self.revision_reader.is_some()
    }

    fn read_inline(&self) -> Option<i64> {
        self.revision_reader.as_ref().and_then(|r| r.read())
    }

    fn read(&self) -> impl std::future::Future<Output = Result<i64>> + Send {
        self.revision()
    }
}

/// The database file of an `sqlite:` URL; None for other URLs and in-memory databases.
fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next()?;
    if path.is_empty() || path == ":memory:" || path.starts_with("file::memory:") {
        return None;
    }
    Some(std::path::PathBuf::from(path))
}

fn sqlite_parent_dir(url: &str) -> Option<std::path::PathBuf> {
    sqlite_path(url)?.parent().map(|p| p.to_path_buf()).filter(|p| !p.as_os_str().is_empty())
}

#[cfg(test)]
mod tests {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, PaginatorTrait, QueryFilter};

    use super::*;
    use crate::infra::entity::{sign_in_throttle, user};

    /// `PRAGMA synchronous` as the pool and each of Latchkey's own connections see it
    /// (SQLite: 1 is NORMAL, 2 is FULL).
    async fn synchronous_levels(store: &Store) -> Vec<i64> {
        use sea_orm::{ConnectionTrait, Statement};
        let row = store
            .db()
            .query_one_raw(Statement::from_string(DbBackend::Sqlite, "PRAGMA synchronous"))
            .await
            .unwrap()
            .unwrap();
        let pool: i32 = row.try_get_by_index(0).unwrap();
        let writer = store
            .with_sqlite_writer(|c| {
                Ok(c.pragma_query_value(None, "synchronous", |r| r.get::<_, i64>(0))?)
            })
            .await
            .unwrap()
            .unwrap();
        let reader = store.revision_reader.as_ref().unwrap();
        let reader = reader
            .conn
            .lock()
            .unwrap()
            .pragma_query_value(None, "synchronous", |r| r.get::<_, i64>(0))
            .unwrap();
        vec![i64::from(pool), writer, reader]
    }

    #[tokio::test]
    async fn sqlite_synchronous_reaches_every_connection() {
        let dir = tempfile::tempdir().unwrap();
        for (sync, level) in [(SqliteSync::Normal, 1), (SqliteSync::Full, 2)] {
            let path = dir.path().join(format!("{sync:?}.db"));
            let url = format!("sqlite://{}?mode=rwc", path.display());
            let key = MasterKey::from_text(&MasterKey::generate_text()).unwrap();
            let store = Store::connect(&url, sync, key, Clock::system()).await.unwrap();
            store.migrate().await.unwrap();
            assert_eq!(synchronous_levels(&store).await, [level; 3], "{sync:?}");
        }
    }

    /// The bundled SQLite keeps a statement's plan whatever is bound to it (SQLITE_ENABLE_QPSG,
    /// set in .cargo/config.toml): otherwise binding a `LIMIT ?` (every sea-orm `.one()`)
    /// expires the prepared statement and each execution compiles it again.
    #[test]
    fn bound_limits_do_not_recompile_statements() {
        use rusqlite::StatementStatus;
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1), (2);",
        )
        .unwrap();
        let mut stmt = conn.prepare("SELECT id FROM t WHERE id >= ?1 LIMIT ?2").unwrap();
        for limit in [1_i64, 2, 1, 2] {
            let ids: Vec<i64> = stmt
                .query_map((1, limit), |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            assert_eq!(ids.len(), usize::try_from(limit).unwrap());
        }
        assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0, "statement was recompiled");
    }

    // Store::write: the in-line transaction on SQLite.

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let key = MasterKey::from_text(&MasterKey::generate_text()).unwrap();
        let store = Store::connect(&url, SqliteSync::Normal, key, Clock::system()).await.unwrap();
        store.migrate().await.unwrap();
        (dir, store)
    }

    fn new_user(id: &str, email: &str) -> user::ActiveModel {
        user::ActiveModel {
            id: Set(id.into()),
            primary_email: Set(email.into()),
            email_verified: Set(true),
            name: Set(None),
            given_name: Set(Some("Ada".into())),
            family_name: Set(None),
            image_url: Set(None),
            public_metadata: Set("{}".into()),
            private_metadata: Set("{}".into()),
            is_admin: Set(false),
            status: Set("active".into()),
            status_reason: Set(None),
            created_at: Set(10),
            updated_at: Set(10),
            last_sign_in_at: Set(None),
        }
    }

    /// Inserts with RETURNING, reads, updates, counts and a unique violation in-line, as
    /// sea-orm does them through the pool; committed on success, rolled back on failure.
    #[tokio::test]
    async fn a_transaction_in_line_reads_and_writes_like_the_pool() {
        let (_dir, store) = store().await;
        let written = store
            .write(|txn| {
                Box::pin(async move {
                    assert!(matches!(txn, WriteTxn::Inline(_)), "SQLite runs in-line");
                    let u = new_user("usr_1", "ada@example.com").insert(txn).await?;
                    assert_eq!(u.given_name.as_deref(), Some("Ada"));
                    assert!(u.email_verified && u.last_sign_in_at.is_none());
                    let mut am: user::ActiveModel = u.into();
                    am.last_sign_in_at = Set(Some(20));
                    am.update(txn).await?;
                    let throttle = sign_in_throttle::ActiveModel {
                        key: Set("k".into()),
                        failures: Set(2),
                        first_failure_at: Set(1),
                        last_failure_at: Set(2),
                        locked_until: Set(None),
                    }
                    .insert(txn)
                    .await?;
                    assert_eq!(throttle.failures, 2);
                    let dup = new_user("usr_2", "ada@example.com").insert(txn).await.unwrap_err();
                    assert!(matches!(
                        crate::infra::inline_sqlite::constraint_violation(&dup),
                        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
                    ));
                    let n = user::Entity::find()
                        .filter(user::Column::PrimaryEmail.eq("ada@example.com"))
                        .count(txn)
                        .await?;
                    Ok::<_, crate::Error>(n)
                })
            })
            .await
            .unwrap();
        assert_eq!(written, 1);
        let u = user::Entity::find_by_id("usr_1").one(store.db()).await.unwrap().unwrap();
        assert_eq!(u.last_sign_in_at, Some(20));
        let refused: crate::Result<()> = store
            .write(|txn| {
                Box::pin(async move {
                    new_user("usr_3", "bob@example.com").insert(txn).await?;
                    Err(crate::Error::Conflict("changed my mind".into()))
                })
            })
            .await;
        assert!(refused.is_err());
        assert!(user::Entity::find_by_id("usr_3").one(store.db()).await.unwrap().is_none());
        // The writer is usable again after a rollback.
        store
            .write(|txn| {
                Box::pin(async move {
                    new_user("usr_4", "cy@example.com").insert(txn).await?;
                    Ok::<_, crate::Error>(())
                })
            })
            .await
            .unwrap();
        assert_eq!(user::Entity::find().count(store.db()).await.unwrap(), 2);
    }

    /// 50 writes at once on the one writer: each caller hears its own outcome, a failed write
    /// leaves nothing behind and takes nothing of the others with it, and a unique violation is
    /// told to the write that caused it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fifty_writes_at_once_each_keep_or_lose_only_their_own_changes() {
        let (_dir, store) = store().await;
        let mut tasks = Vec::new();
        for i in 0..50_u32 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .write(move |txn| {
                        Box::pin(async move {
                            // Writes 10..20 take the addresses of writes 0..10: one of each
                            // pair must lose.
                            let email = format!("u{}@example.com", if i < 20 { i % 10 } else { i });
                            new_user(&format!("usr_{i}"), &email).insert(txn).await?;
                            if i % 7 == 3 {
                                return Err(crate::Error::Conflict(format!("write {i} gave up")));
                            }
                            Ok::<_, crate::Error>(i)
                        })
                    })
                    .await
            }));
        }
        let mut kept = Vec::new();
        for (i, task) in tasks.into_iter().enumerate() {
            match task.await.unwrap() {
                Ok(got) => {
                    assert_eq!(got as usize, i, "a caller heard another write's outcome");
                    kept.push(format!("usr_{i}"));
                }
                Err(crate::Error::Conflict(why)) => assert_eq!(why, format!("write {i} gave up")),
                Err(crate::Error::Database(e)) => {
                    assert!(i < 20, "write {i}: {e}");
                    assert!(matches!(
                        crate::infra::inline_sqlite::constraint_violation(&e),
                        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
                    ));
                }
                Err(e) => panic!("write {i}: {e}"),
            }
        }
        let mut stored: Vec<String> =
            user::Entity::find().all(store.db()).await.unwrap().into_iter().map(|u| u.id).collect();
        stored.sort();
        kept.sort();
        assert_eq!(stored, kept, "exactly the successful writes are stored");
        for pair in 0..10 {
            let email = format!("u{pair}@example.com");
            let owners = user::Entity::find()
                .filter(user::Column::PrimaryEmail.eq(email))
                .count(store.db())
                .await
                .unwrap();
            // Both of a pair may have given up (i % 7 == 3), never both stored.
            assert!(owners <= 1);
        }
        assert!(kept.len() >= 25, "{kept:?}");
    }
}
