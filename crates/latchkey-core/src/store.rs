//! The database connection and the few operations every service shares.

use std::{sync::Arc, time::Duration};

use latchkey_migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    EntityTrait, SqliteTransactionMode, TransactionOptions, TransactionTrait,
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
};

use crate::{Error, Result, crypto::MasterKey, entity::store_revision, revision::RevisionGate};

#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    master_key: Arc<MasterKey>,
    /// Wakes the back-channel logout worker after a commit that queued notifications.
    backchannel_wake: Arc<tokio::sync::Notify>,
    /// Shared by every cache that is tagged with the store revision, so one request's read
    /// serves all of them.
    gate: Arc<RevisionGate>,
}

impl Store {
    pub async fn connect(url: &str, master_key: MasterKey) -> Result<Self> {
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.sqlx_logging(false).connect_timeout(Duration::from_secs(10));
        if url.starts_with("sqlite:") {
            if let Some(dir) = sqlite_parent_dir(url) {
                crate::crypto::create_private_dir(&dir)?;
            }
            // WAL lets the CLI write while the server reads; busy_timeout makes concurrent
            // writers wait instead of failing.
            opts.max_connections(4).min_connections(1).map_sqlx_sqlite_opts(|o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
            });
        } else {
            opts.max_connections(16).min_connections(1);
        }
        let db = Database::connect(opts).await?;
        Ok(Self {
            db,
            master_key: Arc::new(master_key),
            backchannel_wake: Arc::new(tokio::sync::Notify::new()),
            gate: Arc::default(),
        })
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn master_key(&self) -> &MasterKey {
        &self.master_key
    }

    /// Call after committing a session change: queued logout notifications go out at once.
    pub fn notify_backchannel(&self) {
        self.backchannel_wake.notify_one();
    }

    pub(crate) fn backchannel_wake(&self) -> &tokio::sync::Notify {
        &self.backchannel_wake
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Applies pending migrations. On PostgreSQL an advisory lock serialises nodes that start
    /// together, so only one of them migrates.
    pub async fn migrate(&self) -> Result<()> {
        if self.backend() == DbBackend::Postgres {
            let txn = self.db.begin().await?;
            txn.execute_unprepared("SELECT pg_advisory_xact_lock(7361726)").await?;
            Migrator::up(&txn, None).await?;
            txn.commit().await?;
        } else {
            Migrator::up(&self.db, None).await?;
        }
        Ok(())
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads and then writes fails at once with
    /// SQLITE_BUSY when another connection wrote in between, while an immediate one waits for
    /// the busy timeout. PostgreSQL ignores the option.
    pub async fn begin_write(&self) -> Result<DatabaseTransaction> {
        let options = TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        };
        Ok(self.db.begin_with_options(options).await?)
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
        self.gate.current(self).await
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
        let _ = self.db.close().await;
    }
}

fn sqlite_parent_dir(url: &str) -> Option<std::path::PathBuf> {
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    std::path::Path::new(path)
        .parent()
        .map(|p| p.to_path_buf())
        .filter(|p| !p.as_os_str().is_empty())
}
