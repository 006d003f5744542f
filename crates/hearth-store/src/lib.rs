//! hearth-store owns the data directory's durable state: the embedded database (SQLite, WAL,
//! full fsync on commit, so an acknowledged write survives a crash), each app's schema
//! migrations, and versioned artifact directories (trained models, indexes) published
//! atomically.
//!
//! It knows no app's records: apps (hearth-recs, hearth-support, hearth-gateway) bring their
//! own tables as migrations and their own queries, written against [`sql`]'s backend-neutral
//! statements, rows and transactions; no app sees the SQLite driver. It never speaks HTTP.

mod artifacts;
mod copy;
mod lease;
mod postgres;
pub mod sql;
mod tls;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

pub use artifacts::{ArtifactVersion, Artifacts};
pub use copy::CopiedTable;
pub use lease::Leases;
pub use postgres::for_postgres_ddl;
pub use sql::{Backend, Row, Tx, Value};

/// Every failure the store reports; each has a stable public code ([`StoreError::code`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {}: {source}", path.display())]
    Database {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The server's own words (its message, and detail or hint when it gave them), not the
    /// driver's wrapping of them.
    #[error("database {target}: {}", postgres::describe(error))]
    Postgres {
        target: String,
        error: tokio_postgres::Error,
    },
    /// The database cannot be reached (or went away mid-call): try again shortly.
    #[error("database {target} is unavailable: {message}")]
    Unavailable { target: String, message: String },
    /// A column that does not hold what the query's reader expects.
    #[error("column {index}: {message}")]
    Column { index: usize, message: String },
    /// The database was written by a newer hearth.
    #[error("{namespace} schema version {found} is newer than this hearth knows ({known}); upgrade hearth")]
    SchemaTooNew {
        namespace: String,
        found: u32,
        known: u32,
    },
    /// An operation the store will not do as asked (the message says why and what to do).
    #[error("{0}")]
    Refused(String),
}

impl StoreError {
    pub fn code(&self) -> hearth_types::ErrorCode {
        match self {
            StoreError::Database { .. } | StoreError::Postgres { .. } => {
                hearth_types::ErrorCode::DatabaseError
            }
            StoreError::Unavailable { .. } => hearth_types::ErrorCode::DatabaseUnavailable,
            StoreError::Column { .. } => hearth_types::ErrorCode::DatabaseError,
            StoreError::Io { .. } => hearth_types::ErrorCode::IoError,
            StoreError::SchemaTooNew { .. } => hearth_types::ErrorCode::SchemaTooNew,
            StoreError::Refused(_) => hearth_types::ErrorCode::DatabaseError,
        }
    }

    /// Whether a write failed because a row with the same unique key exists (the caller
    /// usually answers it as a field already taken).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Database {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } => {
                e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            }
            StoreError::Postgres { error, .. } => {
                error.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
            }
            _ => false,
        }
    }

    pub fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// One schema migration of [`Database::migrate_each`].
#[derive(Debug, Clone, Copy)]
pub enum Migration<'a> {
    /// Written for SQLite; PostgreSQL runs it with its types mapped ([`for_postgres_ddl`]).
    Both(&'a str),
    /// One text per backend, each run as written (an empty one changes nothing there).
    Each { sqlite: &'a str, postgres: &'a str },
}

/// The database: embedded SQLite, or a PostgreSQL server. Cheap to clone. Calls block (and
/// may be made from any thread); long work on async threads goes through `spawn_blocking`.
#[derive(Clone)]
pub struct Database {
    /// The SQLite file, or the PostgreSQL server's `postgres://host:port/dbname`.
    path: PathBuf,
    pub(crate) engine: Engine,
}

#[derive(Clone)]
pub(crate) enum Engine {
    /// One writer connection behind a mutex (SQLite serialises writers anyway).
    Sqlite {
        conn: Arc<Mutex<rusqlite::Connection>>,
        /// Idle read-only connections: WAL lets readers run beside the writer and each other.
        readers: Arc<Mutex<Vec<rusqlite::Connection>>>,
    },
    Postgres(Arc<postgres::Pool>),
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("path", &self.path)
            .finish()
    }
}

impl Database {
    /// Opens (creating) the database file and its migration table.
    pub fn open(path: &Path) -> Result<Database, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::io(parent, e))?;
        }
        let err = |source| StoreError::Database {
            path: path.to_owned(),
            source,
        };
        let conn = rusqlite::Connection::open(path).map_err(err)?;
        // WAL lets readers run beside the writer; FULL syncs the log on every commit, so a
        // committed (acknowledged) write survives a crash or power loss.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_versions (
                 namespace TEXT PRIMARY KEY,
                 version INTEGER NOT NULL
             )",
        )
        .map_err(err)?;
        Ok(Database {
            path: path.to_owned(),
            engine: Engine::Sqlite {
                conn: Arc::new(Mutex::new(conn)),
                readers: Arc::new(Mutex::new(Vec::new())),
            },
        })
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://user:password@host:port/
    /// dbname`) and makes its migration table. An unreachable server is
    /// [`StoreError::Unavailable`].
    pub fn connect(url: &str) -> Result<Database, StoreError> {
        let pool = postgres::Pool::connect(url)?;
        let db = Database {
            path: PathBuf::from(&pool.target),
            engine: Engine::Postgres(Arc::new(pool)),
        };
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_versions (
                 namespace TEXT PRIMARY KEY,
                 version BIGINT NOT NULL
             )",
            &[],
        )?;
        Ok(db)
    }

    /// Whether the database answers (one round trip): readiness checks call it.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.query_one("SELECT 1", &[], |r| r.get::<i64>(0))
            .map(|_| ())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `other` is this same handle (one writer, one reader pool), not merely the same
    /// file opened again.
    pub fn is_same_handle(&self, other: &Database) -> bool {
        match (&self.engine, &other.engine) {
            (Engine::Sqlite { conn: a, .. }, Engine::Sqlite { conn: b, .. }) => Arc::ptr_eq(a, b),
            (Engine::Postgres(a), Engine::Postgres(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Applies the migrations of `namespace` not yet applied, each in its own transaction.
    /// Migration N (0-based) is applied once; never edit a released one, append a new one.
    /// Each is written for SQLite; PostgreSQL runs it with its types mapped
    /// ([`for_postgres_ddl`]).
    pub fn migrate(&self, namespace: &str, migrations: &[&str]) -> Result<(), StoreError> {
        let both: Vec<Migration<'_>> = migrations.iter().map(|m| Migration::Both(m)).collect();
        self.migrate_each(namespace, &both)
    }

    /// [`Database::migrate`] where a migration may differ between the backends. Both
    /// backends count the same list, so a database keeps its version when it moves from
    /// one to the other.
    pub fn migrate_each(
        &self,
        namespace: &str,
        migrations: &[Migration<'_>],
    ) -> Result<(), StoreError> {
        if let Engine::Postgres(_) = &self.engine {
            return self.migrate_postgres(namespace, migrations);
        }
        let mut conn = self.conn();
        let err = |source| StoreError::Database {
            path: self.path.clone(),
            source,
        };
        let current: u32 = conn
            .query_row(
                "SELECT version FROM schema_versions WHERE namespace = ?1",
                [namespace],
                |r| r.get(0),
            )
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(0),
                e => Err(e),
            })
            .map_err(err)?;
        if current as usize > migrations.len() {
            return Err(StoreError::SchemaTooNew {
                namespace: namespace.to_owned(),
                found: current,
                known: migrations.len() as u32,
            });
        }
        for (n, migration) in migrations.iter().enumerate().skip(current as usize) {
            let sql = match migration {
                Migration::Both(sql) | Migration::Each { sqlite: sql, .. } => sql,
            };
            let tx = conn.transaction().map_err(err)?;
            tx.execute_batch(sql).map_err(err)?;
            tx.execute(
                "INSERT INTO schema_versions (namespace, version) VALUES (?1, ?2)
                 ON CONFLICT(namespace) DO UPDATE SET version = excluded.version",
                rusqlite::params![namespace, n as u32 + 1],
            )
            .map_err(err)?;
            tx.commit().map_err(err)?;
            tracing::info!(namespace, version = n + 1, "schema migrated");
        }
        Ok(())
    }

    /// [`Database::migrate`] on PostgreSQL: each migration (its types mapped by
    /// [`for_postgres_ddl`]) in a transaction that holds the namespace's advisory lock, so
    /// replicas starting together apply it once.
    fn migrate_postgres(
        &self,
        namespace: &str,
        migrations: &[Migration<'_>],
    ) -> Result<(), StoreError> {
        loop {
            let applied = self.write(|tx| {
                tx.execute(
                    "SELECT pg_advisory_xact_lock(hashtext($1))",
                    crate::params![format!("hearth-migrate:{namespace}")],
                )?;
                let current: u32 = tx
                    .query_one(
                        "SELECT version FROM schema_versions WHERE namespace = $1",
                        crate::params![namespace],
                        |r| r.get(0),
                    )?
                    .unwrap_or(0);
                if current as usize > migrations.len() {
                    return Err(StoreError::SchemaTooNew {
                        namespace: namespace.to_owned(),
                        found: current,
                        known: migrations.len() as u32,
                    });
                }
                let sql = match migrations.get(current as usize) {
                    None => return Ok(None),
                    Some(Migration::Both(sql)) => for_postgres_ddl(sql),
                    Some(Migration::Each { postgres, .. }) => postgres.to_string(),
                };
                tx.batch(&sql)?;
                tx.execute(
                    "INSERT INTO schema_versions (namespace, version) VALUES ($1, $2)
                     ON CONFLICT (namespace) DO UPDATE SET version = excluded.version",
                    crate::params![namespace, current + 1],
                )?;
                Ok(Some(current + 1))
            })?;
            match applied {
                Some(version) => tracing::info!(namespace, version, "schema migrated"),
                None => return Ok(()),
            }
        }
    }

    /// The SQLite writer connection.
    pub(crate) fn conn(&self) -> MutexGuard<'_, rusqlite::Connection> {
        let Engine::Sqlite { conn, .. } = &self.engine else {
            unreachable!("the SQLite writer of a PostgreSQL database")
        };
        // A panic while holding the lock leaves SQLite consistent (an open transaction rolls
        // back when dropped), so a poisoned lock is still usable.
        conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `read` on a read-only connection from a small pool, so concurrent reads neither
    /// wait for each other nor for a writer (WAL). The connection returns to the pool after.
    pub(crate) fn read<T>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let Engine::Sqlite { readers, .. } = &self.engine else {
            unreachable!("a SQLite reader of a PostgreSQL database")
        };
        let pooled = readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let conn = rusqlite::Connection::open_with_flags(&self.path, flags)
                    .map_err(|e| self.error(e))?;
                conn.busy_timeout(std::time::Duration::from_secs(5))
                    .map_err(|e| self.error(e))?;
                conn
            }
        };
        let result = read(&conn);
        const KEEP: usize = 8;
        let mut idle = readers.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < KEEP {
            idle.push(conn);
        }
        result
    }

    /// Maps a rusqlite error to this database's error.
    pub(crate) fn error(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Database {
            path: self.path.clone(),
            source,
        }
    }
}

/// Where durable state lives: the database (the data directory's `hearth.db`, or a
/// PostgreSQL server) and the artifacts directory (`$DATA_DIR/artifacts`, or a path shared by
/// every replica).
#[derive(Debug, Clone)]
pub struct Store {
    artifacts: PathBuf,
    db: Database,
}

/// Where [`Store::open_with`] keeps things; `None` takes the data directory's default.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// A PostgreSQL URL (`postgres://user:password@host:port/dbname`).
    pub url: Option<String>,
    pub artifacts_dir: Option<PathBuf>,
}

impl Store {
    /// The embedded store: `data_dir/hearth.db` and `data_dir/artifacts`.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        Self::open_with(data_dir, &StoreOptions::default())
    }

    pub fn open_with(data_dir: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        let db = match &options.url {
            Some(url) => Database::connect(url)?,
            None => {
                std::fs::create_dir_all(data_dir).map_err(|e| StoreError::io(data_dir, e))?;
                Database::open(&data_dir.join("hearth.db"))?
            }
        };
        Ok(Store {
            artifacts: options
                .artifacts_dir
                .clone()
                .unwrap_or_else(|| data_dir.join("artifacts")),
            db,
        })
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Versioned artifacts of one kind (e.g. `recs`).
    pub fn artifacts(&self, kind: &str) -> Artifacts {
        Artifacts::new(self.artifacts.join(kind))
    }
}
