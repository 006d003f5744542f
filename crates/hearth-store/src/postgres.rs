//! The PostgreSQL backend: a small pool of tokio-postgres connections, each driven on a
//! runtime the store owns, so that the store's calls stay blocking calls whichever thread
//! makes them (a tokio worker too: waiting on a client's answer needs no runtime of the
//! caller's, where the synchronous `postgres` crate would start one inside it and panic).
//!
//! The apps' SQL is the one [`crate::sql`] speaks: `$N` placeholders, [`Value`] parameters,
//! rows read as [`Column`]s. Their migrations are written once; [`for_postgres_ddl`] maps
//! SQLite's column types to PostgreSQL's (64-bit integers, double precision, bytea).

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use tokio_postgres::types::{FromSql, IsNull, ToSql, Type};

use crate::sql::{Column, Value};
use crate::StoreError;

/// Connections one process opens at most (PostgreSQL allows 100 by default, for every
/// replica together); a call finding them all busy waits for one.
const MAX_CONNECTIONS: usize = 16;
/// How long a call waits for a free connection before it answers "unavailable".
const WAIT_FOR_CONNECTION: Duration = Duration::from_secs(10);
/// How long a new connection may take before the database counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
pub(crate) struct Connections {
    idle: Vec<Conn>,
    /// Connections open or opening, idle ones included.
    open: usize,
}

pub(crate) struct Pool {
    /// Taken only by `Drop`.
    runtime: Option<tokio::runtime::Runtime>,
    config: tokio_postgres::Config,
    /// TLS as the URL's `sslmode` and `sslrootcert` ask (see [`crate::tls`]).
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    idle: Mutex<Connections>,
    freed: Condvar,
    /// `host:port/dbname`, for messages (never the password).
    pub(crate) target: String,
}

/// Runs `call` (which waits for the database) so that an async runtime's worker making it
/// hands its other tasks to another worker first: a replica waiting on PostgreSQL keeps
/// serving everything else. Off a multi-threaded runtime's worker it just runs.
pub(crate) fn off_the_workers<T>(call: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(call)
        }
        _ => call(),
    }
}

/// Waits for `future` on this thread without a runtime of its own.
pub(crate) fn wait<F: std::future::Future>(future: F) -> F::Output {
    futures::executor::block_on(future)
}

impl Pool {
    /// Parses `url` (`postgres://user:password@host:port/dbname?…`) and opens a first
    /// connection, so a wrong address or password is told at start.
    pub(crate) fn connect(url: &str) -> Result<Pool, StoreError> {
        let (url, tls) = crate::tls::from_url(url).map_err(|message| StoreError::Unavailable {
            target: "the [store] url".into(),
            message,
        })?;
        let mut config: tokio_postgres::Config =
            url.parse()
                .map_err(|e: tokio_postgres::Error| StoreError::Unavailable {
                    target: "the [store] url".into(),
                    message: format!("not a PostgreSQL URL: {e}"),
                })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("hearth");
        if config.get_options().is_none() {
            // "relation … already exists, skipping" at every start is not news.
            config.options("-c client_min_messages=warning");
        }
        let target = target_of(&config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("hearth-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable {
                target: target.clone(),
                message: format!("cannot start the connection runtime: {e}"),
            })?;
        let pool = Pool {
            runtime: Some(runtime),
            config,
            tls,
            idle: Mutex::new(Connections::default()),
            freed: Condvar::new(),
            target,
        };
        drop(pool.client()?);
        Ok(pool)
    }

    /// An open connection: an idle one, or a new one while fewer than [`MAX_CONNECTIONS`]
    /// are open, or the next one given back. It returns to the pool when dropped.
    pub(crate) fn client(&self) -> Result<Lease<'_>, StoreError> {
        let deadline = std::time::Instant::now() + WAIT_FOR_CONNECTION;
        let mut pool = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            while let Some(conn) = pool.idle.pop() {
                if !conn.client.is_closed() {
                    return Ok(Lease {
                        pool: self,
                        conn: Some(conn),
                    });
                }
                pool.open -= 1;
            }
            if pool.open < MAX_CONNECTIONS {
                break;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(StoreError::Unavailable {
                    target: self.target.clone(),
                    message: format!(
                        "all {MAX_CONNECTIONS} connections stayed busy for {}s",
                        WAIT_FOR_CONNECTION.as_secs()
                    ),
                });
            }
            pool = self
                .freed
                .wait_timeout(pool, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        pool.open += 1;
        drop(pool);
        let (config, tls) = (self.config.clone(), self.tls.clone());
        let target = self.target.clone();
        let runtime = self
            .runtime
            .as_ref()
            .expect("the runtime lives until the pool drops");
        let connecting = runtime.spawn(async move {
            let (client, connection) = config.connect(tls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(database = %target, error = %e, "PostgreSQL connection closed");
                }
            });
            Ok::<_, tokio_postgres::Error>(client)
        });
        let connected = match wait(connecting) {
            Ok(connected) => connected.map_err(|e| self.error(e)),
            Err(e) => Err(StoreError::Unavailable {
                target: self.target.clone(),
                message: format!("the connection task failed: {e}"),
            }),
        };
        match connected {
            Ok(client) => Ok(Lease {
                pool: self,
                conn: Some(Conn {
                    client,
                    statements: Statements::default(),
                }),
            }),
            Err(e) => {
                self.idle.lock().unwrap_or_else(|p| p.into_inner()).open -= 1;
                self.freed.notify_one();
                Err(e)
            }
        }
    }

    /// Takes back a connection (a closed one is dropped).
    fn put(&self, conn: Conn) {
        let mut pool = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if conn.client.is_closed() {
            pool.open -= 1;
        } else {
            pool.idle.push(conn);
        }
        drop(pool);
        self.freed.notify_one();
    }

    /// A driver error as the store's: a database that cannot be reached (or went away
    /// mid-call) is [`StoreError::Unavailable`], answered 503 with Retry-After.
    pub(crate) fn error(&self, source: tokio_postgres::Error) -> StoreError {
        // No answer from the server, or one saying it is going away or cannot take more:
        // connection exceptions (08), insufficient resources (53), operator intervention
        // (57: shut down, restarting).
        let unavailable = match source.code() {
            None => true,
            Some(code) => ["08", "53", "57"]
                .iter()
                .any(|class| code.code().starts_with(class)),
        };
        if unavailable {
            return StoreError::Unavailable {
                target: self.target.clone(),
                message: describe(&source),
            };
        }
        StoreError::Postgres {
            target: self.target.clone(),
            error: source,
        }
    }
}

/// What the server said (`ERROR: relation "x" does not exist`), or the driver's own words
/// when the server said nothing.
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!("{}: {}", db.severity(), db.message());
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" ({detail})"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            text
        }
        None => match std::error::Error::source(error) {
            Some(cause) => format!("{error}: {cause}"),
            None => error.to_string(),
        },
    }
}

impl Drop for Pool {
    /// The connections' runtime stops without waiting: a pool may be dropped on an async
    /// thread, where a blocking shutdown panics.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// One pooled connection and the statements prepared on it.
pub(crate) struct Conn {
    client: tokio_postgres::Client,
    statements: Statements,
}

/// Statements prepared on one connection, by their text: a statement run again is one round
/// trip (bind and execute), not two (prepare first).
#[derive(Default)]
pub(crate) struct Statements(Mutex<std::collections::HashMap<String, tokio_postgres::Statement>>);

/// Statements one connection keeps prepared; past this it starts again (queries whose text
/// varies, such as an `IN` list, would otherwise grow it without end).
const MAX_STATEMENTS: usize = 256;

impl Statements {
    /// `sql` prepared on `client` (the connection these statements belong to).
    pub(crate) fn get(
        &self,
        client: &impl tokio_postgres::GenericClient,
        pool: &Pool,
        sql: &str,
    ) -> Result<tokio_postgres::Statement, StoreError> {
        if let Some(statement) = self.0.lock().unwrap_or_else(|p| p.into_inner()).get(sql) {
            return Ok(statement.clone());
        }
        let statement = wait(client.prepare(sql)).map_err(|e| pool.error(e))?;
        let mut cached = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if cached.len() >= MAX_STATEMENTS {
            cached.clear();
        }
        cached.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Forgets `sql` (it failed: the tables it reads may have changed under it).
    pub(crate) fn forget(&self, sql: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(sql);
    }
}

/// A connection taken from the pool, given back when dropped (a panic included).
pub(crate) struct Lease<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
}

impl Lease<'_> {
    fn conn(&self) -> &Conn {
        self.conn
            .as_ref()
            .expect("a lease holds its connection until dropped")
    }

    pub(crate) fn statements(&self) -> &Statements {
        &self.conn().statements
    }

    /// The client, to start a transaction on, beside its statements.
    pub(crate) fn parts_mut(&mut self) -> (&mut tokio_postgres::Client, &Statements) {
        let conn = self
            .conn
            .as_mut()
            .expect("a lease holds its connection until dropped");
        (&mut conn.client, &conn.statements)
    }
}

impl std::ops::Deref for Lease<'_> {
    type Target = tokio_postgres::Client;
    fn deref(&self) -> &Self::Target {
        &self.conn().client
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.put(conn);
        }
    }
}

fn target_of(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{host}:{port}/{}",
        config.get_dbname().unwrap_or("")
    )
}

/// The parameters of a statement as the driver takes them.
pub(crate) fn params(values: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Integer(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::FLOAT8 => (*v as f64).to_sql(ty, out),
                Type::FLOAT4 => (*v as f32).to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                _ => Err(format!("an integer where the statement takes {ty}").into()),
            },
            Value::Real(v) => match *ty {
                Type::FLOAT8 => v.to_sql(ty, out),
                Type::FLOAT4 => (*v as f32).to_sql(ty, out),
                _ => Err(format!("a real where the statement takes {ty}").into()),
            },
            Value::Text(v) => v.as_str().to_sql(ty, out),
            Value::Blob(v) => v.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// Column `index` of `row` as the backend-neutral [`Column`].
pub(crate) fn column(row: &tokio_postgres::Row, index: usize) -> Result<Column<'_>, String> {
    let Some(info) = row.columns().get(index) else {
        return Err(format!("the row has {} columns", row.len()));
    };
    let err = |e: tokio_postgres::Error| e.to_string();
    let value = match *info.type_() {
        Type::INT8 => row
            .try_get::<_, Option<i64>>(index)
            .map_err(err)?
            .map(Column::Integer),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(index)
            .map_err(err)?
            .map(|v| Column::Integer(v.into())),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(index)
            .map_err(err)?
            .map(|v| Column::Integer(v.into())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(index)
            .map_err(err)?
            .map(|v| Column::Integer(v.into())),
        Type::FLOAT8 => row
            .try_get::<_, Option<f64>>(index)
            .map_err(err)?
            .map(Column::Real),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(index)
            .map_err(err)?
            .map(|v| Column::Real(v.into())),
        Type::NUMERIC => row
            .try_get::<_, Option<Numeric>>(index)
            .map_err(err)?
            .map(|n| n.0),
        Type::BYTEA => row
            .try_get::<_, Option<&[u8]>>(index)
            .map_err(err)?
            .map(Column::Blob),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => row
            .try_get::<_, Option<&str>>(index)
            .map_err(err)?
            .map(Column::Text),
        ref other => {
            return Err(format!(
                "a column of type {other}, which hearth does not read"
            ))
        }
    };
    Ok(value.unwrap_or(Column::Null))
}

/// A NUMERIC (what `SUM` of a BIGINT column answers) as an integer when it has no fraction
/// and fits, else as a real.
struct Numeric(Column<'static>);

impl<'a> FromSql<'a> for Numeric {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let word = |i: usize| -> Result<u16, String> {
            raw.get(i..i + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .ok_or_else(|| "a NUMERIC cut short".to_owned())
        };
        let digits = word(0)? as usize;
        let weight = i32::from(word(2)? as i16);
        let sign = word(4)?;
        let scale = word(6)?;
        if sign == 0xC000 {
            return Ok(Numeric(Column::Real(f64::NAN)));
        }
        let negative = sign == 0x4000;
        let mut real = 0f64;
        let mut whole: Option<i128> = (scale == 0).then_some(0);
        for i in 0..digits {
            let digit = word(8 + 2 * i)?;
            let power = weight - i as i32;
            real += f64::from(digit) * 10_000f64.powi(power);
            whole = match whole {
                Some(w) if power >= 0 => u32::try_from(power)
                    .ok()
                    .and_then(|p| 10_000i128.checked_pow(p))
                    .and_then(|m| m.checked_mul(i128::from(digit)))
                    .and_then(|d| w.checked_add(d)),
                Some(w) if digit == 0 => Some(w),
                _ => None,
            };
        }
        let (sign, real_sign) = if negative { (-1i128, -1f64) } else { (1, 1.0) };
        Ok(Numeric(
            match whole.and_then(|w| i64::try_from(w * sign).ok()) {
                Some(v) => Column::Integer(v),
                None => Column::Real(real * real_sign),
            },
        ))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

/// One migration written for SQLite, for PostgreSQL: INTEGER columns become BIGINT (SQLite's
/// integers are 64-bit, PostgreSQL's INTEGER is not), REAL becomes DOUBLE PRECISION (REAL is
/// 32-bit there), BLOB becomes BYTEA, and `INTEGER PRIMARY KEY` (SQLite's rowid, with or
/// without AUTOINCREMENT) an identity column. Quoted text is left alone.
pub fn for_postgres_ddl(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 32);
    let mut words: Vec<(usize, usize)> = Vec::new();
    let bytes = sql.as_bytes();
    let mut i = 0;
    // Word spans outside quotes.
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'-' && bytes.get(i + 1) == Some(&b'-') {
            // A comment, to the end of its line (its words and apostrophes are not SQL).
            i = sql[i..].find('\n').map_or(sql.len(), |e| i + e);
        } else if c == b'\'' || c == b'"' {
            let end = sql[i + 1..]
                .find(c as char)
                .map_or(sql.len(), |e| i + 1 + e + 1);
            i = end;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            words.push((start, i));
        } else {
            i += 1;
        }
    }
    let word = |n: usize| words.get(n).map(|&(s, e)| sql[s..e].to_ascii_uppercase());
    let mut copied = 0;
    let mut n = 0;
    while n < words.len() {
        let start = words[n].0;
        let upper = word(n).unwrap_or_default();
        // SQLite numbers an INTEGER PRIMARY KEY itself (it is the rowid), AUTOINCREMENT or not.
        let rowid = upper == "INTEGER"
            && word(n + 1).as_deref() == Some("PRIMARY")
            && word(n + 2).as_deref() == Some("KEY");
        let (replacement, last) = if rowid {
            let last = if word(n + 3).as_deref() == Some("AUTOINCREMENT") {
                n + 3
            } else {
                n + 2
            };
            (
                Some("BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
                last,
            )
        } else {
            let r = match upper.as_str() {
                "INTEGER" => Some("BIGINT"),
                "REAL" => Some("DOUBLE PRECISION"),
                "BLOB" => Some("BYTEA"),
                _ => None,
            };
            (r, n)
        };
        if let Some(replacement) = replacement {
            out.push_str(&sql[copied..start]);
            out.push_str(replacement);
            copied = words[last].1;
        }
        n = last + 1;
    }
    out.push_str(&sql[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::for_postgres_ddl;

    #[test]
    fn sqlite_types_become_postgres_types_outside_quotes() {
        assert_eq!(
            for_postgres_ddl(
                "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, n integer NOT NULL, \
                 x REAL, b BLOB, note TEXT DEFAULT 'REAL INTEGER', \"real\" TEXT, realm TEXT)"
            ),
            "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, \
             n BIGINT NOT NULL, x DOUBLE PRECISION, b BYTEA, note TEXT DEFAULT 'REAL INTEGER', \
             \"real\" TEXT, realm TEXT)"
        );
        assert_eq!(
            for_postgres_ddl("CREATE TABLE l (id INTEGER PRIMARY KEY, at REAL NOT NULL)"),
            "CREATE TABLE l (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, \
             at DOUBLE PRECISION NOT NULL)"
        );
        // A comment's apostrophe opens no quote; its words are left as they are.
        assert_eq!(
            for_postgres_ddl("-- the key's REAL spend\nCREATE TABLE s (spent REAL) -- it's\n"),
            "-- the key's REAL spend\nCREATE TABLE s (spent DOUBLE PRECISION) -- it's\n"
        );
        assert_eq!(
            for_postgres_ddl("CREATE INDEX i ON t (n)"),
            "CREATE INDEX i ON t (n)"
        );
    }
}
