//! hearth-store owns the data directory's durable state: the embedded database (SQLite, WAL,
//! full fsync on commit, so an acknowledged write survives a crash), each app's schema
//! migrations, and versioned artifact directories (trained models, indexes) published
//! atomically.
//!
//! It knows no app's records: apps (hearth-recs, hearth-support, hearth-gateway) bring their
//! own tables as migrations and their own queries, written against [`sql`]'s backend-neutral
//! statements, rows and transactions; no app sees the SQLite driver. It never speaks HTTP.

mod artifacts;
pub mod sql;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

pub use artifacts::{ArtifactVersion, Artifacts};
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
}

impl StoreError {
    pub fn code(&self) -> hearth_types::ErrorCode {
        match self {
            StoreError::Database { .. } => hearth_types::ErrorCode::DatabaseError,
            StoreError::Column { .. } => hearth_types::ErrorCode::DatabaseError,
            StoreError::Io { .. } => hearth_types::ErrorCode::IoError,
            StoreError::SchemaTooNew { .. } => hearth_types::ErrorCode::SchemaTooNew,
        }
    }

    /// Whether a write failed because a row with the same unique key exists (the caller
    /// usually answers it as a field already taken).
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            StoreError::Database {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        )
    }

    pub fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// The embedded database. Cheap to clone; one connection shared behind a mutex (SQLite
/// serialises writers anyway). Calls block: async callers use `spawn_blocking`.
#[derive(Clone)]
pub struct Database {
    path: PathBuf,
    conn: Arc<Mutex<rusqlite::Connection>>,
    /// Idle read-only connections: WAL lets readers run beside the writer and each other.
    readers: Arc<Mutex<Vec<rusqlite::Connection>>>,
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
            conn: Arc::new(Mutex::new(conn)),
            readers: Arc::new(Mutex::new(Vec::new())),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `other` is this same handle (one writer, one reader pool), not merely the same
    /// file opened again.
    pub fn is_same_handle(&self, other: &Database) -> bool {
        Arc::ptr_eq(&self.conn, &other.conn)
    }

    /// Applies the migrations of `namespace` not yet applied, each in its own transaction.
    /// Migration N (0-based) is applied once; never edit a released one, append a new one.
    pub fn migrate(&self, namespace: &str, migrations: &[&str]) -> Result<(), StoreError> {
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
        for (n, sql) in migrations.iter().enumerate().skip(current as usize) {
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

    /// The writer connection.
    pub(crate) fn conn(&self) -> MutexGuard<'_, rusqlite::Connection> {
        // A panic while holding the lock leaves SQLite consistent (an open transaction rolls
        // back when dropped), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `read` on a read-only connection from a small pool, so concurrent reads neither
    /// wait for each other nor for a writer (WAL). The connection returns to the pool after.
    pub(crate) fn read<T>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
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
        let mut idle = self.readers.lock().unwrap_or_else(|p| p.into_inner());
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

/// The data directory: `hearth.db` and `artifacts/`.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    db: Database,
}

impl Store {
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::io(data_dir, e))?;
        let db = Database::open(&data_dir.join("hearth.db"))?;
        Ok(Store {
            root: data_dir.to_owned(),
            db,
        })
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Versioned artifacts of one kind (e.g. `recs`).
    pub fn artifacts(&self, kind: &str) -> Artifacts {
        Artifacts::new(self.root.join("artifacts").join(kind))
    }
}
