//! A write transaction that runs in one hop on SQLite ([`crate::infra::store::Store::write`]).
//!
//! Through sqlx, every statement of a transaction is a round trip to the connection's worker
//! thread: two thread switches and a channel wake-up each. A sign-in completion is about nine
//! statements, and on the SAML ACS those hops cost more CPU than the statements themselves
//! (docs/benchmarks.md, "SAML assertion consumer service"). [`InlineSqlite`] is a sea-orm
//! connection over Latchkey's own rusqlite writer that executes each statement in-line on the
//! calling thread, so the same service code (generic over `ConnectionTrait`) runs its whole
//! transaction on one blocking thread.
//!
//! sea-orm offers no public constructor for its results outside its own drivers; they are built
//! through its mock connection (`carry_rows`, `carry_exec`), whose rows convert values strictly
//! by variant (an `i64` field needs `Value::BigInt`): [`row_value`] picks the variant from the
//! column's declared type, and the few `i32` columns of the schema by name (a unit test checks
//! that list against every entity). (Its proxy rows would do, but sea-orm 2.0.4's `proxy`
//! feature does not compile with `sqlx-sqlite`.)

use std::{collections::BTreeMap, sync::Mutex};

use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, ExecResult, MockDatabase,
    MockDatabaseConnection, MockExecResult, QueryResult, RuntimeErr, Statement, Value,
    sqlx::{self, error::DatabaseError},
};

/// The columns that entities read as `i32`; every other INTEGER column is an `i64`.
const I32_COLUMNS: &[&str] = &["id", "attempts", "email_code_attempts", "failures"];

/// A sea-orm connection executing on a borrowed rusqlite connection, in-line. The caller holds
/// the transaction (BEGIN IMMEDIATE … COMMIT) around it.
pub struct InlineSqlite<'c> {
    // A mutex only to make the connection `Sync`, as `ConnectionTrait` requires: it is used by
    // one thread, and never held across an await.
    conn: Mutex<&'c mut rusqlite::Connection>,
}

impl<'c> InlineSqlite<'c> {
    pub fn new(conn: &'c mut rusqlite::Connection) -> Self {
        Self { conn: Mutex::new(conn) }
    }

    fn with_conn<T>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, DbErr> {
        let conn = self.conn.lock().map_err(|_| DbErr::Custom("SQLite writer poisoned".into()))?;
        f(&conn).map_err(to_db_err)
    }

    fn query(&self, stmt: &Statement, limit: Option<usize>) -> Result<Vec<QueryResult>, DbErr> {
        let params = params_of(stmt)?;
        self.with_conn(|conn| {
            let mut prepared = conn.prepare_cached(&stmt.sql)?;
            let columns: Vec<(String, Option<String>)> = prepared
                .columns()
                .iter()
                .map(|c| (c.name().to_owned(), c.decl_type().map(str::to_ascii_lowercase)))
                .collect();
            let mut rows = prepared.query(rusqlite::params_from_iter(params.iter()))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let mut values = BTreeMap::new();
                for (i, (name, decl)) in columns.iter().enumerate() {
                    values.insert(name.clone(), row_value(name, decl.as_deref(), row.get_ref(i)?)?);
                }
                out.push(values);
                if limit.is_some_and(|l| out.len() >= l) {
                    break;
                }
            }
            Ok(out)
        })
        .and_then(carry_rows)
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for InlineSqlite<'_> {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Sqlite
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let params = params_of(&stmt)?;
        self.with_conn(|conn| {
            let mut prepared = conn.prepare_cached(&stmt.sql)?;
            let rows = prepared.execute(rusqlite::params_from_iter(params.iter()))?;
            let last = u64::try_from(conn.last_insert_rowid()).unwrap_or_default();
            Ok(MockExecResult { last_insert_id: last, rows_affected: rows as u64 })
        })
        .and_then(carry_exec)
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.with_conn(|conn| {
            conn.execute_batch(sql)?;
            Ok(MockExecResult { last_insert_id: 0, rows_affected: conn.changes() })
        })
        .and_then(carry_exec)
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        Ok(self.query(&stmt, Some(1))?.into_iter().next())
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.query(&stmt, None)
    }
}

/// The write transaction a service's code runs in: Latchkey's own SQLite writer in-line, or a
/// pooled transaction (PostgreSQL, or SQLite without its own writer).
pub enum WriteTxn<'c> {
    Inline(InlineSqlite<'c>),
    Pooled(DatabaseTransaction),
}

#[async_trait::async_trait]
impl ConnectionTrait for WriteTxn<'_> {
    fn get_database_backend(&self) -> DbBackend {
        match self {
            Self::Inline(c) => c.get_database_backend(),
            Self::Pooled(c) => c.get_database_backend(),
        }
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match self {
            Self::Inline(c) => c.execute_raw(stmt).await,
            Self::Pooled(c) => c.execute_raw(stmt).await,
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match self {
            Self::Inline(c) => c.execute_unprepared(sql).await,
            Self::Pooled(c) => c.execute_unprepared(sql).await,
        }
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self {
            Self::Inline(c) => c.query_one_raw(stmt).await,
            Self::Pooled(c) => c.query_one_raw(stmt).await,
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self {
            Self::Inline(c) => c.query_all_raw(stmt).await,
            Self::Pooled(c) => c.query_all_raw(stmt).await,
        }
    }

    fn support_returning(&self) -> bool {
        match self {
            Self::Inline(c) => c.support_returning(),
            Self::Pooled(c) => c.support_returning(),
        }
    }
}

/// Rows as sea-orm query results (see the module documentation).
fn carry_rows(rows: Vec<BTreeMap<String, Value>>) -> Result<Vec<QueryResult>, DbErr> {
    let carrier = MockDatabase::new(DbBackend::Sqlite).append_query_results([rows]);
    MockDatabaseConnection::new(carrier).query_all(Statement::from_string(DbBackend::Sqlite, ""))
}

/// A statement's outcome as a sea-orm result (see the module documentation).
fn carry_exec(result: MockExecResult) -> Result<ExecResult, DbErr> {
    let carrier = MockDatabase::new(DbBackend::Sqlite).append_exec_results([result]);
    MockDatabaseConnection::new(carrier).execute(Statement::from_string(DbBackend::Sqlite, ""))
}

/// The statement's bound values as SQLite values.
fn params_of(stmt: &Statement) -> Result<Vec<rusqlite::types::Value>, DbErr> {
    use rusqlite::types::Value as Sql;
    let Some(values) = &stmt.values else { return Ok(Vec::new()) };
    values
        .0
        .iter()
        .map(|v| {
            Ok(match v {
                Value::Bool(b) => b.map_or(Sql::Null, |b| Sql::Integer(i64::from(b))),
                Value::TinyInt(n) => n.map_or(Sql::Null, |n| Sql::Integer(n.into())),
                Value::SmallInt(n) => n.map_or(Sql::Null, |n| Sql::Integer(n.into())),
                Value::Int(n) => n.map_or(Sql::Null, |n| Sql::Integer(n.into())),
                Value::BigInt(n) => n.map_or(Sql::Null, Sql::Integer),
                Value::TinyUnsigned(n) => n.map_or(Sql::Null, |n| Sql::Integer(n.into())),
                Value::SmallUnsigned(n) => n.map_or(Sql::Null, |n| Sql::Integer(n.into())),
                Value::Unsigned(n) => n.map_or(Sql::Null, |n| Sql::Integer(n.into())),
                Value::BigUnsigned(n) => match n {
                    None => Sql::Null,
                    Some(n) => Sql::Integer(i64::try_from(*n).map_err(|_| unsupported(v))?),
                },
                Value::Float(f) => f.map_or(Sql::Null, |f| Sql::Real(f.into())),
                Value::Double(f) => f.map_or(Sql::Null, Sql::Real),
                Value::String(s) => s.clone().map_or(Sql::Null, Sql::Text),
                Value::Char(c) => c.map_or(Sql::Null, |c| Sql::Text(c.to_string())),
                Value::Bytes(b) => b.clone().map_or(Sql::Null, Sql::Blob),
                Value::Json(j) => j.as_ref().map_or(Sql::Null, |j| Sql::Text(j.to_string())),
                other => return Err(unsupported(other)),
            })
        })
        .collect()
}

fn unsupported(v: &Value) -> DbErr {
    DbErr::Custom(format!("the in-line SQLite connection cannot bind {v:?}"))
}

/// A column's value as the variant its entity field reads (see the module documentation).
fn row_value(
    name: &str,
    decl: Option<&str>,
    value: rusqlite::types::ValueRef<'_>,
) -> rusqlite::Result<Value> {
    use rusqlite::types::ValueRef;
    let kind = ColumnKind::of(name, decl);
    Ok(match (value, kind) {
        (ValueRef::Null, ColumnKind::Bool) => Value::Bool(None),
        (ValueRef::Null, ColumnKind::Int) => Value::Int(None),
        (ValueRef::Null, ColumnKind::BigInt) => Value::BigInt(None),
        (ValueRef::Null, ColumnKind::Real) => Value::Double(None),
        (ValueRef::Null, ColumnKind::Blob) => Value::Bytes(None),
        (ValueRef::Null, ColumnKind::Text | ColumnKind::Unknown) => Value::String(None),
        (ValueRef::Integer(n), ColumnKind::Bool) => Value::Bool(Some(n != 0)),
        (ValueRef::Integer(n), ColumnKind::Int) => Value::Int(Some(
            i32::try_from(n).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(0, n))?,
        )),
        (ValueRef::Integer(n), _) => Value::BigInt(Some(n)),
        (ValueRef::Real(f), _) => Value::Double(Some(f)),
        (ValueRef::Text(t), _) => Value::String(Some(String::from_utf8_lossy(t).into_owned())),
        (ValueRef::Blob(b), _) => Value::Bytes(Some(b.to_vec())),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnKind {
    Bool,
    Int,
    BigInt,
    Real,
    Text,
    Blob,
    /// An expression (no declared type): the stored value decides.
    Unknown,
}

impl ColumnKind {
    /// SQLite's own affinity rules (datatype3.html §3.1) on the declared type, with `boolean`
    /// and the schema's `i32` columns apart.
    fn of(name: &str, decl: Option<&str>) -> Self {
        let Some(decl) = decl else { return Self::Unknown };
        if decl == "boolean" {
            Self::Bool
        } else if decl.contains("int") {
            if I32_COLUMNS.contains(&name) { Self::Int } else { Self::BigInt }
        } else if decl.contains("char") || decl.contains("clob") || decl.contains("text") {
            Self::Text
        } else if decl.contains("blob") {
            Self::Blob
        } else if decl.contains("real") || decl.contains("floa") || decl.contains("doub") {
            Self::Real
        } else {
            Self::Unknown
        }
    }
}

/// A failed statement as sea-orm reports a database error, so that [`constraint_violation`]
/// recognises it like one from sqlx.
fn to_db_err(e: rusqlite::Error) -> DbErr {
    match e {
        rusqlite::Error::SqliteFailure(code, message) => {
            let message = message.unwrap_or_else(|| code.to_string());
            let err = InlineSqliteError { extended_code: code.extended_code, message };
            DbErr::Exec(RuntimeErr::SqlxError(sqlx::Error::Database(Box::new(err)).into()))
        }
        other => DbErr::Custom(format!("sqlite: {other}")),
    }
}

/// sea-orm's [`DbErr::sql_err`] for errors from the pools and from [`InlineSqlite`] alike.
pub fn constraint_violation(e: &DbErr) -> Option<sea_orm::SqlErr> {
    if let Some(found) = e.sql_err() {
        return Some(found);
    }
    let (DbErr::Exec(RuntimeErr::SqlxError(err)) | DbErr::Query(RuntimeErr::SqlxError(err))) = e
    else {
        return None;
    };
    let sqlx::Error::Database(db) = err.as_ref() else { return None };
    let inline = db.try_downcast_ref::<InlineSqliteError>()?;
    let message = inline.message.clone();
    match inline.kind() {
        sqlx::error::ErrorKind::UniqueViolation => {
            Some(sea_orm::SqlErr::UniqueConstraintViolation(message))
        }
        sqlx::error::ErrorKind::ForeignKeyViolation => {
            Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(message))
        }
        _ => None,
    }
}

/// An SQLite error from the in-line connection, in sqlx's shape.
#[derive(Debug)]
struct InlineSqliteError {
    extended_code: i32,
    message: String,
}

impl std::fmt::Display for InlineSqliteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(code: {}) {}", self.extended_code, self.message)
    }
}

impl std::error::Error for InlineSqliteError {}

impl DatabaseError for InlineSqliteError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(std::borrow::Cow::Owned(self.extended_code.to_string()))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        match self.extended_code {
            // SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE
            1555 | 2067 => sqlx::error::ErrorKind::UniqueViolation,
            // SQLITE_CONSTRAINT_FOREIGNKEY
            787 => sqlx::error::ErrorKind::ForeignKeyViolation,
            // SQLITE_CONSTRAINT_NOTNULL
            1299 => sqlx::error::ErrorKind::NotNullViolation,
            // SQLITE_CONSTRAINT_CHECK
            275 => sqlx::error::ErrorKind::CheckViolation,
            _ => sqlx::error::ErrorKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ColumnTrait, ColumnType, EntityTrait, IdenStatic, Iterable};

    use super::*;
    use crate::infra::entity::*;

    /// Every `i32` field of every entity is in [`I32_COLUMNS`], and no `i64` field shares a
    /// name with one: otherwise rows read in-line fail to convert.
    #[test]
    fn the_i32_columns_are_those_of_the_entities() {
        fn check<E: EntityTrait>(seen: &mut Vec<String>) {
            for col in E::Column::iter() {
                let name = col.as_str();
                match col.def().get_column_type() {
                    ColumnType::Integer => {
                        assert!(I32_COLUMNS.contains(&name), "{name} is an i32 column");
                        seen.push(name.to_owned());
                    }
                    ColumnType::BigInteger => {
                        assert!(!I32_COLUMNS.contains(&name), "{name} is an i64 column")
                    }
                    _ => {}
                }
            }
        }
        let mut seen = Vec::new();
        macro_rules! check_all {
            ($($m:ident),*) => { $(check::<$m::Entity>(&mut seen);)* };
        }
        check_all!(
            api_key,
            audit_event,
            easie_connection,
            email_verification,
            external_identity,
            job_outbox,
            jwt_template,
            membership,
            oauth_assertion_jti,
            oauth_client,
            oauth_client_secret,
            oauth_code,
            oauth_consent,
            oauth_refresh_token,
            oauth_revoked_access_token,
            org_domain,
            org_invitation,
            org_join_request,
            organisation,
            password_credential,
            password_reset,
            pending_request,
            saml_assertion_id,
            saml_connection,
            saml_sp_key,
            session,
            session_upstream,
            setting,
            sign_in_throttle,
            sign_up_attempt,
            signing_key,
            store_revision,
            upstream_event_id,
            upstream_grant,
            user,
            user_email
        );
        for name in I32_COLUMNS {
            assert!(seen.iter().any(|s| s == name), "{name} is no longer an i32 column");
        }
    }

    #[test]
    fn declared_types_pick_the_variants() {
        use rusqlite::types::ValueRef;
        let v = |name, decl, value| row_value(name, decl, value).unwrap();
        assert_eq!(v("is_admin", Some("boolean"), ValueRef::Integer(1)), Value::Bool(Some(true)));
        assert_eq!(v("failures", Some("integer"), ValueRef::Integer(3)), Value::Int(Some(3)));
        assert_eq!(v("created_at", Some("integer"), ValueRef::Integer(3)), Value::BigInt(Some(3)));
        assert_eq!(v("ended_at", Some("integer"), ValueRef::Null), Value::BigInt(None));
        assert_eq!(v("name", Some("varchar(256)"), ValueRef::Null), Value::String(None));
        assert_eq!(v("count", None, ValueRef::Integer(7)), Value::BigInt(Some(7)));
        assert!(row_value("failures", Some("integer"), ValueRef::Integer(1 << 40)).is_err());
    }
}
