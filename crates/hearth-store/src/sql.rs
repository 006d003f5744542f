//! The apps' way into the database, in terms no backend owns: statements with `$1 … $N`
//! placeholders (PostgreSQL's own syntax; rewritten to `?N` for SQLite), parameters as
//! [`Value`]s, rows read through [`Row::get`] into plain Rust types, transactions as
//! closures. An app's typed store (the recommendation tables, the gateway's keys and ledger …)
//! is written against this, so a second backend can sit behind [`Database`] without touching
//! the app. Where the backends' SQL differs, [`Database::backend`] says which one runs.

use std::borrow::Cow;

use crate::postgres::{self, wait};
use crate::{Database, Engine, StoreError};

/// Which database engine a [`Database`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A value bound to a statement, in the types every backend has.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

macro_rules! integer_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::Integer(i64::from(v))
            }
        }
    )*};
}
integer_from!(i64, i32, u32, u16, u8, bool);

impl From<u64> for Value {
    /// Counts and token numbers: stored as signed 64-bit, saturating at `i64::MAX`.
    fn from(v: u64) -> Self {
        Value::Integer(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::from(v as u64)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}

impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Value::Real(f64::from(v))
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

impl<T: Clone + Into<Value>> From<&Option<T>> for Value {
    fn from(v: &Option<T>) -> Self {
        v.clone().map_or(Value::Null, Into::into)
    }
}

/// The parameters of a statement, in order: `params![a, b, c]` binds `$1`, `$2`, `$3`.
#[macro_export]
macro_rules! params {
    () => {
        &[] as &[$crate::sql::Value]
    };
    ($($v:expr),+ $(,)?) => {
        &[$($crate::sql::Value::from($v)),+] as &[$crate::sql::Value]
    };
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Integer(v) => ValueRef::Integer(*v),
            Value::Real(v) => ValueRef::Real(*v),
            Value::Text(v) => ValueRef::Text(v.as_bytes()),
            Value::Blob(v) => ValueRef::Blob(v),
        }))
    }
}

/// A column value as a row holds it.
#[derive(Debug, Clone, Copy)]
pub enum Column<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// A Rust type a column can be read into; the error says what the column held instead.
pub trait FromColumn: Sized {
    fn from_column(column: Column<'_>) -> Result<Self, String>;
}

fn mismatch<T>(want: &str, got: Column<'_>) -> Result<T, String> {
    let held = match got {
        Column::Null => "NULL",
        Column::Integer(_) => "an integer",
        Column::Real(_) => "a real",
        Column::Text(_) => "text",
        Column::Blob(_) => "a blob",
    };
    Err(format!("expected {want}, found {held}"))
}

impl FromColumn for i64 {
    fn from_column(c: Column<'_>) -> Result<Self, String> {
        match c {
            Column::Integer(v) => Ok(v),
            other => mismatch("an integer", other),
        }
    }
}

impl FromColumn for u64 {
    fn from_column(c: Column<'_>) -> Result<Self, String> {
        let v = i64::from_column(c)?;
        u64::try_from(v).map_err(|_| format!("expected a count, found {v}"))
    }
}

impl FromColumn for u32 {
    fn from_column(c: Column<'_>) -> Result<Self, String> {
        let v = i64::from_column(c)?;
        u32::try_from(v).map_err(|_| format!("expected a 32-bit count, found {v}"))
    }
}

impl FromColumn for bool {
    fn from_column(c: Column<'_>) -> Result<Self, String> {
        Ok(i64::from_column(c)? != 0)
    }
}

impl FromColumn for f64 {
    fn from_column(c: Column<'_>) -> Result<Self, String> {
        match c {
            Column::Real(v) => Ok(v),
            // SUM and AVG of integers, and integral reals SQLite stores as integers.
            Column::Integer(v) => Ok(v as f64),
            other => mismatch("a number", other),
        }
    }
}

impl FromColumn for String {
    fn from_column(c: Column<'_>) -> Result<Self, String> {
        match c {
            Column::Text(v) => Ok(v.to_owned()),
            other => mismatch("text", other),
        }
    }
}

impl FromColumn for Vec<u8> {
    fn from_column(c: Column<'_>) -> Result<Self, String> {
        match c {
            Column::Blob(v) => Ok(v.to_owned()),
            other => mismatch("a blob", other),
        }
    }
}

impl FromColumn for Value {
    /// Whatever the column holds.
    fn from_column(c: Column<'_>) -> Result<Self, String> {
        Ok(match c {
            Column::Null => Value::Null,
            Column::Integer(v) => Value::Integer(v),
            Column::Real(v) => Value::Real(v),
            Column::Text(v) => Value::Text(v.to_owned()),
            Column::Blob(v) => Value::Blob(v.to_owned()),
        })
    }
}

impl<T: FromColumn> FromColumn for Option<T> {
    fn from_column(c: Column<'_>) -> Result<Self, String> {
        match c {
            Column::Null => Ok(None),
            other => T::from_column(other).map(Some),
        }
    }
}

/// One row of a query's answer.
pub struct Row<'a> {
    row: RowOf<'a>,
}

enum RowOf<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Postgres(&'a tokio_postgres::Row),
}

impl Row<'_> {
    /// Column `index` (0-based) as `T`.
    pub fn get<T: FromColumn>(&self, index: usize) -> Result<T, StoreError> {
        use rusqlite::types::ValueRef;
        let bad = |message: String| StoreError::Column { index, message };
        let column = match self.row {
            RowOf::Sqlite(row) => match row.get_ref(index).map_err(|e| bad(e.to_string()))? {
                ValueRef::Null => Column::Null,
                ValueRef::Integer(v) => Column::Integer(v),
                ValueRef::Real(v) => Column::Real(v),
                ValueRef::Text(v) => Column::Text(
                    std::str::from_utf8(v).map_err(|_| bad("text that is not UTF-8".into()))?,
                ),
                ValueRef::Blob(v) => Column::Blob(v),
            },
            RowOf::Postgres(row) => postgres::column(row, index).map_err(bad)?,
        };
        T::from_column(column).map_err(bad)
    }
}

/// `$N` → `?N` outside string literals and quoted names: SQLite reads `$1` as a *named*
/// parameter, numbered by first appearance, which would bind `$2 … $1` out of order.
fn for_sqlite(sql: &str) -> Cow<'_, str> {
    if !sql.contains('$') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                }
                out.push(c);
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) => out.push('?'),
            None => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn prepare<'c>(
    conn: &'c rusqlite::Connection,
    db: &Database,
    sql: &str,
) -> Result<rusqlite::CachedStatement<'c>, StoreError> {
    conn.prepare_cached(&for_sqlite(sql))
        .map_err(|e| db.error(e))
}

/// The rows of a query, mapped; with `first`, only the first one is read.
fn run_query<T>(
    conn: &rusqlite::Connection,
    db: &Database,
    sql: &str,
    params: &[Value],
    first: bool,
    mut map: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = prepare(conn, db, sql)?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params))
        .map_err(|e| db.error(e))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| db.error(e))? {
        out.push(map(&Row {
            row: RowOf::Sqlite(row),
        })?);
        if first {
            break;
        }
    }
    Ok(out)
}

fn run_execute(
    conn: &rusqlite::Connection,
    db: &Database,
    sql: &str,
    params: &[Value],
) -> Result<u64, StoreError> {
    let changed = prepare(conn, db, sql)?
        .execute(rusqlite::params_from_iter(params))
        .map_err(|e| db.error(e))?;
    Ok(changed as u64)
}

/// The rows of a query on a PostgreSQL connection or transaction, mapped; with `first`,
/// only the first one.
fn pg_query<T>(
    client: &impl tokio_postgres::GenericClient,
    statements: &postgres::Statements,
    pool: &postgres::Pool,
    sql: &str,
    params: &[Value],
    first: bool,
    mut map: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let statement = statements.get(client, pool, sql)?;
    let rows = wait(client.query(&statement, &postgres::params(params))).map_err(|e| {
        statements.forget(sql);
        pool.error(e)
    })?;
    let mut out = Vec::with_capacity(if first { 1 } else { rows.len() });
    for row in &rows {
        out.push(map(&Row {
            row: RowOf::Postgres(row),
        })?);
        if first {
            break;
        }
    }
    Ok(out)
}

fn pg_execute(
    client: &impl tokio_postgres::GenericClient,
    statements: &postgres::Statements,
    pool: &postgres::Pool,
    sql: &str,
    params: &[Value],
) -> Result<u64, StoreError> {
    let statement = statements.get(client, pool, sql)?;
    wait(client.execute(&statement, &postgres::params(params))).map_err(|e| {
        statements.forget(sql);
        pool.error(e)
    })
}

/// A transaction ([`Database::write`]): on SQLite's one writer, or on a PostgreSQL
/// connection of the pool.
pub struct Tx<'a> {
    tx: TxOf<'a>,
    db: &'a Database,
}

enum TxOf<'a> {
    Sqlite(rusqlite::Transaction<'a>),
    Postgres(
        tokio_postgres::Transaction<'a>,
        &'a postgres::Pool,
        &'a postgres::Statements,
    ),
}

impl Tx<'_> {
    /// Runs one statement; returns the rows it changed.
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        match &self.tx {
            TxOf::Sqlite(tx) => run_execute(tx, self.db, sql, params),
            TxOf::Postgres(tx, pool, statements) => pg_execute(tx, statements, pool, sql, params),
        }
    }

    /// Every row of a query, mapped.
    pub fn query<T>(
        &self,
        sql: &str,
        params: &[Value],
        map: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        match &self.tx {
            TxOf::Sqlite(tx) => run_query(tx, self.db, sql, params, false, map),
            TxOf::Postgres(tx, pool, statements) => {
                pg_query(tx, statements, pool, sql, params, false, map)
            }
        }
    }

    /// The first row of a query, mapped (the rest are not read); None when there is none.
    pub fn query_one<T>(
        &self,
        sql: &str,
        params: &[Value],
        map: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        Ok(match &self.tx {
            TxOf::Sqlite(tx) => run_query(tx, self.db, sql, params, true, map)?,
            TxOf::Postgres(tx, pool, statements) => {
                pg_query(tx, statements, pool, sql, params, true, map)?
            }
        }
        .pop())
    }

    /// Several statements without parameters (a migration).
    pub(crate) fn batch(&self, sql: &str) -> Result<(), StoreError> {
        match &self.tx {
            TxOf::Sqlite(tx) => tx.execute_batch(sql).map_err(|e| self.db.error(e)),
            TxOf::Postgres(tx, pool, _) => wait(tx.batch_execute(sql)).map_err(|e| pool.error(e)),
        }
    }
}

impl Database {
    /// The engine behind this database.
    pub fn backend(&self) -> Backend {
        match self.engine {
            Engine::Sqlite { .. } => Backend::Sqlite,
            Engine::Postgres(_) => Backend::Postgres,
        }
    }

    /// Runs `write` in one transaction: committed when it returns `Ok` (and durable before
    /// this returns), rolled back when it returns an error. On SQLite it runs on the one
    /// writer; on PostgreSQL on a connection of its own, at READ COMMITTED: a decision that
    /// must not race another replica's is one statement (`UPDATE … WHERE … RETURNING`) or
    /// takes a row lock (`SELECT … FOR UPDATE`).
    pub fn write<T>(
        &self,
        write: impl FnOnce(&Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &self.engine {
            Engine::Sqlite { .. } => {
                let mut conn = self.conn();
                let tx = Tx {
                    tx: TxOf::Sqlite(conn.transaction().map_err(|e| self.error(e))?),
                    db: self,
                };
                let value = write(&tx)?;
                if let TxOf::Sqlite(tx) = tx.tx {
                    tx.commit().map_err(|e| self.error(e))?;
                }
                Ok(value)
            }
            Engine::Postgres(pool) => postgres::off_the_workers(|| {
                let mut lease = pool.client()?;
                let (client, statements) = lease.parts_mut();
                let result = (|| {
                    let tx = Tx {
                        tx: TxOf::Postgres(
                            wait(client.transaction()).map_err(|e| pool.error(e))?,
                            pool,
                            statements,
                        ),
                        db: self,
                    };
                    let value = write(&tx)?;
                    if let TxOf::Postgres(tx, _, _) = tx.tx {
                        wait(tx.commit()).map_err(|e| pool.error(e))?;
                    }
                    Ok(value)
                })();
                result
            }),
        }
    }

    /// One statement, committed on its own; returns the rows it changed.
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        match &self.engine {
            Engine::Sqlite { .. } => run_execute(&self.conn(), self, sql, params),
            Engine::Postgres(pool) => postgres::off_the_workers(|| {
                let client = pool.client()?;
                pg_execute(&*client, client.statements(), pool, sql, params)
            }),
        }
    }

    /// Every row of a query (on SQLite, on a reader beside the writer).
    pub fn query<T>(
        &self,
        sql: &str,
        params: &[Value],
        map: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        match &self.engine {
            Engine::Sqlite { .. } => {
                self.read(|conn| run_query(conn, self, sql, params, false, map))
            }
            Engine::Postgres(pool) => postgres::off_the_workers(|| {
                let client = pool.client()?;
                pg_query(&*client, client.statements(), pool, sql, params, false, map)
            }),
        }
    }

    /// The first row of a query, mapped (the rest are not read); None when there is none.
    pub fn query_one<T>(
        &self,
        sql: &str,
        params: &[Value],
        map: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        Ok(match &self.engine {
            Engine::Sqlite { .. } => {
                self.read(|conn| run_query(conn, self, sql, params, true, map))?
            }
            Engine::Postgres(pool) => postgres::off_the_workers(|| {
                let client = pool.client()?;
                pg_query(&*client, client.statements(), pool, sql, params, true, map)
            })?,
        }
        .pop())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_outside_quotes_only() {
        assert_eq!(
            for_sqlite("SELECT '$1', \"$2\" FROM t WHERE a = $2 AND b = $10"),
            "SELECT '$1', \"$2\" FROM t WHERE a = ?2 AND b = ?10"
        );
        assert!(matches!(for_sqlite("SELECT 1"), Cow::Borrowed(_)));
        // A `$` not followed by a digit stays.
        assert_eq!(for_sqlite("SELECT $a"), "SELECT $a");
    }

    /// A fresh database on each backend: SQLite in a temporary directory, and a new database
    /// on the test PostgreSQL server.
    fn both() -> Vec<(Database, tempfile::TempDir)> {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Database::open(&dir.path().join("t.db")).unwrap();
        let postgres = Database::connect(&hearth_testdata::postgres_database()).unwrap();
        assert_eq!(postgres.backend(), Backend::Postgres);
        vec![(sqlite, dir), (postgres, tempfile::tempdir().unwrap())]
    }

    #[test]
    fn a_postgres_database_is_used_and_dropped_on_async_threads() {
        let url = hearth_testdata::postgres_database();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        runtime.block_on(async move {
            let db = Database::connect(&url).unwrap();
            db.ping().unwrap();
            let other = db.clone();
            tokio::spawn(async move { other.ping().unwrap() })
                .await
                .unwrap();
            // The last handle (and its connections' runtime) goes here, on a worker.
            drop(db);
        });
    }

    #[test]
    fn statements_bind_in_placeholder_order_and_rows_read_back_typed() {
        for (db, _dir) in both() {
            db.migrate(
                "t",
                &["CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER, x REAL, note TEXT, b BLOB)"],
            )
            .unwrap();
            // $2 before $1 in the text: bound by number, not by appearance.
            let changed = db
                .execute(
                    "INSERT INTO t (n, id, x, note, b) VALUES ($2, $1, $3, $4, $5)",
                    crate::params!["a", 7u64, 0.1, None::<String>, vec![0u8, 255]],
                )
                .unwrap();
            assert_eq!(changed, 1);
            let row = db
                .query_one(
                    "SELECT id, n, x, note, b FROM t WHERE id = $1",
                    crate::params!["a"],
                    |r| {
                        Ok((
                            r.get::<String>(0)?,
                            r.get::<u64>(1)?,
                            r.get::<f64>(2)?,
                            r.get::<Option<String>>(3)?,
                            r.get::<Vec<u8>>(4)?,
                        ))
                    },
                )
                .unwrap();
            // 0.1 comes back exactly: a REAL column is 64-bit on both.
            assert_eq!(
                row,
                Some(("a".into(), 7, 0.1, None, vec![0, 255])),
                "{db:?}"
            );
            // 64-bit integers, and SUM over them read as an integer (NUMERIC on PostgreSQL).
            db.execute(
                "INSERT INTO t (id, n) VALUES ($1, $2)",
                crate::params!["big", i64::MAX / 2],
            )
            .unwrap();
            let sum = db
                .query_one("SELECT SUM(n) FROM t", crate::params![], |r| {
                    r.get::<i64>(0)
                })
                .unwrap();
            assert_eq!(sum, Some(i64::MAX / 2 + 7), "{db:?}");
            // A type that does not fit is an error naming the column, not a panic.
            let err = db
                .query("SELECT id FROM t", crate::params![], |r| r.get::<i64>(0))
                .unwrap_err();
            assert!(err.to_string().contains("column 0"), "{err}");
            assert!(db
                .query_one("SELECT id FROM t WHERE id = $1", crate::params!["b"], |r| {
                    r.get::<String>(0)
                })
                .unwrap()
                .is_none());
        }
    }

    #[test]
    fn a_failed_write_rolls_back_and_a_unique_violation_is_told_apart() {
        for (db, _dir) in both() {
            db.migrate("t", &["CREATE TABLE t (id TEXT PRIMARY KEY)"])
                .unwrap();
            let failed = db.write(|tx| {
                tx.execute("INSERT INTO t (id) VALUES ($1)", crate::params!["a"])?;
                tx.execute("INSERT INTO t (id) VALUES ($1)", crate::params!["a"])
            });
            let err = failed.unwrap_err();
            assert!(err.is_unique_violation(), "{err}");
            let count = |db: &Database| {
                db.query_one("SELECT COUNT(*) FROM t", crate::params![], |r| {
                    r.get::<u64>(0)
                })
                .unwrap()
                .unwrap()
            };
            assert_eq!(
                count(&db),
                0,
                "the first insert rolled back with the second"
            );
            db.write(|tx| tx.execute("INSERT INTO t (id) VALUES ($1)", crate::params!["a"]))
                .unwrap();
            assert_eq!(count(&db), 1);
            let other = db
                .execute("INSERT INTO nowhere VALUES (1)", crate::params![])
                .unwrap_err();
            assert!(!other.is_unique_violation());
        }
    }

    #[test]
    fn migrations_apply_once_even_when_started_together_and_a_rowid_key_numbers_itself() {
        for (db, _dir) in both() {
            let migrations = [
                "CREATE TABLE log (id INTEGER PRIMARY KEY, at REAL NOT NULL)",
                "CREATE INDEX log_at ON log (at)",
            ];
            std::thread::scope(|s| {
                for _ in 0..3 {
                    s.spawn(|| db.migrate("log", &migrations).unwrap());
                }
            });
            db.migrate("log", &migrations).unwrap();
            let version = db
                .query_one(
                    "SELECT version FROM schema_versions WHERE namespace = $1",
                    crate::params!["log"],
                    |r| r.get::<u32>(0),
                )
                .unwrap();
            assert_eq!(version, Some(2));
            for at in [1.5, 2.5] {
                db.execute("INSERT INTO log (at) VALUES ($1)", crate::params![at])
                    .unwrap();
            }
            let ids = db
                .query("SELECT id FROM log ORDER BY id", crate::params![], |r| {
                    r.get::<i64>(0)
                })
                .unwrap();
            assert_eq!(ids, [1, 2], "{db:?}");
            let err = db.migrate("log", &migrations[..1]).unwrap_err();
            assert!(
                matches!(err, StoreError::SchemaTooNew { found: 2, .. }),
                "{err}"
            );
        }
    }
}
