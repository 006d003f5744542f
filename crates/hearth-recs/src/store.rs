//! Items, users and events in the embedded database. Writes are batched in transactions;
//! a batch is acknowledged only once committed (durable), and events are idempotent by id.

use hearth_store::rusqlite::{self, params, OptionalExtension};
use hearth_store::{Database, StoreError};

use crate::data::{Event, EventWeights, Item, ItemId, User, UserId};
use crate::Dataset;

const MIGRATIONS: &[&str] = &["
    CREATE TABLE recs_items (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        description TEXT NOT NULL,
        categories TEXT NOT NULL,   -- JSON array
        tags TEXT NOT NULL,         -- JSON array
        attributes TEXT NOT NULL,   -- JSON object
        price REAL,
        available INTEGER NOT NULL,
        created_at INTEGER
    );
    CREATE TABLE recs_users (
        id TEXT PRIMARY KEY,
        attributes TEXT NOT NULL
    );
    CREATE TABLE recs_events (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        item_id TEXT NOT NULL,
        type TEXT NOT NULL,
        value REAL,
        timestamp INTEGER NOT NULL
    );
    CREATE INDEX recs_events_user ON recs_events (user_id, timestamp);
    CREATE INDEX recs_events_item ON recs_events (item_id);
"];

fn event_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        id: row.get(0)?,
        user: UserId(row.get(1)?),
        item: ItemId(row.get(2)?),
        kind: row.get(3)?,
        value: row.get(4)?,
        timestamp: row.get(5)?,
    })
}

/// The recommendation engine's tables.
#[derive(Debug, Clone)]
pub struct RecsStore {
    db: Database,
}

/// What a batch write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WriteCounts {
    /// Rows written (inserted or replaced).
    pub written: u64,
    /// Events already stored under the same id (left as they were).
    pub duplicates: u64,
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("serialising plain data cannot fail")
}

fn from_json<T: serde::de::DeserializeOwned + Default>(text: &str) -> T {
    serde_json::from_str(text).unwrap_or_default()
}

impl RecsStore {
    /// The database these tables live in.
    pub fn database(&self) -> &hearth_store::Database {
        &self.db
    }

    pub fn open(db: Database) -> Result<Self, StoreError> {
        db.migrate("recs", MIGRATIONS)?;
        Ok(RecsStore { db })
    }

    /// Runs `sql` once per row in one transaction: a row that changes nothing (an `INSERT OR
    /// IGNORE` whose id is stored) counts as a duplicate.
    fn write_batch<T>(
        &self,
        sql: &str,
        rows: &[T],
        execute: impl Fn(&mut rusqlite::CachedStatement<'_>, &T) -> rusqlite::Result<usize>,
    ) -> Result<WriteCounts, StoreError> {
        let mut conn = self.db.conn();
        let tx = conn.transaction().map_err(|e| self.db.error(e))?;
        let mut counts = WriteCounts::default();
        {
            let mut stmt = tx.prepare_cached(sql).map_err(|e| self.db.error(e))?;
            for row in rows {
                if execute(&mut stmt, row).map_err(|e| self.db.error(e))? == 0 {
                    counts.duplicates += 1;
                } else {
                    counts.written += 1;
                }
            }
        }
        tx.commit().map_err(|e| self.db.error(e))?;
        Ok(counts)
    }

    /// Inserts or replaces items, in one transaction.
    pub fn upsert_items(&self, items: &[Item]) -> Result<WriteCounts, StoreError> {
        self.write_batch(
            "INSERT OR REPLACE INTO recs_items
             (id, title, description, categories, tags, attributes, price, available, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            items,
            |stmt, item| {
                stmt.execute(params![
                    item.id.0,
                    item.title,
                    item.description,
                    json(&item.categories),
                    json(&item.tags),
                    json(&item.attributes),
                    item.price,
                    item.available,
                    item.created_at
                ])
            },
        )
    }

    /// Inserts or replaces users, in one transaction.
    pub fn upsert_users(&self, users: &[User]) -> Result<WriteCounts, StoreError> {
        self.write_batch(
            "INSERT OR REPLACE INTO recs_users (id, attributes) VALUES (?1, ?2)",
            users,
            |stmt, user| stmt.execute(params![user.id.0, json(&user.attributes)]),
        )
    }

    /// Inserts events, in one transaction; an event whose id is already stored is skipped
    /// (sending a batch twice stores it once).
    pub fn insert_events(&self, events: &[Event]) -> Result<WriteCounts, StoreError> {
        self.write_batch(
            "INSERT OR IGNORE INTO recs_events (id, user_id, item_id, type, value, timestamp)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            events,
            |stmt, event| {
                stmt.execute(params![
                    event.id,
                    event.user.0,
                    event.item.0,
                    event.kind,
                    event.value,
                    event.timestamp
                ])
            },
        )
    }

    /// Deletes items (their events stay: they still say something about the users).
    pub fn delete_items(&self, ids: &[ItemId]) -> Result<u64, StoreError> {
        self.delete("recs_items", ids.iter().map(|i| i.0.as_str()))
    }

    /// Deletes users and their events.
    pub fn delete_users(&self, ids: &[UserId]) -> Result<u64, StoreError> {
        let mut conn = self.db.conn();
        let tx = conn.transaction().map_err(|e| self.db.error(e))?;
        let mut deleted = 0;
        for id in ids {
            deleted += tx
                .execute("DELETE FROM recs_users WHERE id = ?1", [&id.0])
                .map_err(|e| self.db.error(e))? as u64;
            tx.execute("DELETE FROM recs_events WHERE user_id = ?1", [&id.0])
                .map_err(|e| self.db.error(e))?;
        }
        tx.commit().map_err(|e| self.db.error(e))?;
        Ok(deleted)
    }

    fn delete<'a>(
        &self,
        table: &str,
        ids: impl Iterator<Item = &'a str>,
    ) -> Result<u64, StoreError> {
        let mut conn = self.db.conn();
        let tx = conn.transaction().map_err(|e| self.db.error(e))?;
        let mut deleted = 0;
        for id in ids {
            deleted += tx
                .execute(&format!("DELETE FROM {table} WHERE id = ?1"), [id])
                .map_err(|e| self.db.error(e))? as u64;
        }
        tx.commit().map_err(|e| self.db.error(e))?;
        Ok(deleted)
    }

    fn item_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
        Ok(Item {
            id: ItemId(row.get(0)?),
            title: row.get(1)?,
            description: row.get(2)?,
            categories: from_json(&row.get::<_, String>(3)?),
            tags: from_json(&row.get::<_, String>(4)?),
            attributes: from_json(&row.get::<_, String>(5)?),
            price: row.get(6)?,
            available: row.get(7)?,
            created_at: row.get(8)?,
        })
    }

    pub fn item(&self, id: &ItemId) -> Result<Option<Item>, StoreError> {
        self.db.read(|conn| {
            conn.prepare_cached(
                "SELECT id, title, description, categories, tags, attributes, price, available, created_at
                 FROM recs_items WHERE id = ?1",
            )?
            .query_row([&id.0], Self::item_from_row)
            .optional()
        })
    }

    pub fn user(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        self.db.read(|conn| {
            conn.prepare_cached("SELECT id, attributes FROM recs_users WHERE id = ?1")?
                .query_row([&id.0], |row| {
                    Ok(User {
                        id: UserId(row.get(0)?),
                        attributes: from_json(&row.get::<_, String>(1)?),
                    })
                })
                .optional()
        })
    }

    /// The whole catalogue.
    pub fn items(&self) -> Result<Vec<Item>, StoreError> {
        let conn = self.db.conn();
        let err = |e| self.db.error(e);
        let items = conn
            .prepare(
                "SELECT id, title, description, categories, tags, attributes, price, available, created_at
                 FROM recs_items ORDER BY rowid",
            )
            .map_err(err)?
            .query_map([], Self::item_from_row)
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        Ok(items)
    }

    /// A user's most recent events (at most `limit`), oldest first.
    pub fn user_events(&self, user: &UserId, limit: usize) -> Result<Vec<Event>, StoreError> {
        let mut events = self.db.read(|conn| {
            conn.prepare_cached(
                "SELECT id, user_id, item_id, type, value, timestamp FROM recs_events
                 WHERE user_id = ?1 ORDER BY timestamp DESC, rowid DESC LIMIT ?2",
            )?
            .query_map(params![user.0, limit as i64], event_from_row)?
            .collect::<Result<Vec<_>, _>>()
        })?;
        events.reverse();
        Ok(events)
    }

    /// Row counts: items, users, events.
    pub fn counts(&self) -> Result<(u64, u64, u64), StoreError> {
        let conn = self.db.conn();
        let count = |table: &str| -> Result<u64, StoreError> {
            conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                .map_err(|e| self.db.error(e))
        };
        Ok((
            count("recs_items")?,
            count("recs_users")?,
            count("recs_events")?,
        ))
    }

    /// Everything, as the models train on it.
    pub fn dataset(&self, weights: &EventWeights) -> Result<Dataset, StoreError> {
        let items = self.items()?;
        let conn = self.db.conn();
        let err = |e| self.db.error(e);
        let users = conn
            .prepare("SELECT id, attributes FROM recs_users ORDER BY rowid")
            .map_err(err)?
            .query_map([], |row| {
                Ok(User {
                    id: UserId(row.get(0)?),
                    attributes: from_json(&row.get::<_, String>(1)?),
                })
            })
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        let events = conn
            .prepare("SELECT id, user_id, item_id, type, value, timestamp FROM recs_events ORDER BY rowid")
            .map_err(err)?
            .query_map([], event_from_row)
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        Ok(Dataset::build(items, users, &events, weights))
    }
}

/// Records that the store keeps.
pub trait StoredRecord: crate::import::FromRow {
    fn write(store: &RecsStore, batch: &[Self]) -> Result<WriteCounts, StoreError>;
}

impl StoredRecord for Item {
    fn write(store: &RecsStore, batch: &[Self]) -> Result<WriteCounts, StoreError> {
        store.upsert_items(batch)
    }
}

impl StoredRecord for User {
    fn write(store: &RecsStore, batch: &[Self]) -> Result<WriteCounts, StoreError> {
        store.upsert_users(batch)
    }
}

impl StoredRecord for Event {
    fn write(store: &RecsStore, batch: &[Self]) -> Result<WriteCounts, StoreError> {
        store.insert_events(batch)
    }
}

#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Any bad row rejects the whole file (checked before anything is written).
    pub strict: bool,
    /// Rows per transaction: each committed batch is durable.
    pub batch_size: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            strict: false,
            batch_size: 5_000,
        }
    }
}

/// What importing one file did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ImportSummary {
    pub file: std::path::PathBuf,
    pub stored: u64,
    /// Events whose id was already stored.
    pub duplicates: u64,
    pub skipped: u64,
}

/// Progress of an import, for a progress display.
pub enum ImportProgress<'a> {
    /// Bytes of the file read so far, and its size.
    Read { done: u64, total: u64 },
    /// A row that was skipped.
    BadRow(&'a crate::import::RowError),
    /// Rows committed so far (durable from here on).
    Committed(u64),
}

/// Streams a file into the store in batches. Without `strict` a bad row is reported and
/// skipped; with it, the file is checked first and nothing is stored if any row is bad.
pub fn import_file<T: StoredRecord>(
    store: &RecsStore,
    path: &std::path::Path,
    mapping: &crate::import::ColumnMapping,
    options: &ImportOptions,
    progress: &mut dyn FnMut(ImportProgress<'_>),
) -> Result<ImportSummary, crate::RecsError> {
    use crate::import::RecordReader;
    if options.strict {
        for row in RecordReader::<T>::open(path, mapping)? {
            row.map_err(crate::RecsError::BadRow)?;
        }
    }
    let mut reader = RecordReader::<T>::open(path, mapping)?;
    let mut summary = ImportSummary {
        file: path.to_owned(),
        ..Default::default()
    };
    let batch_size = options.batch_size.max(1);
    let mut batch = Vec::with_capacity(batch_size);
    let flush = |batch: &mut Vec<T>,
                 summary: &mut ImportSummary,
                 progress: &mut dyn FnMut(ImportProgress<'_>)| {
        if batch.is_empty() {
            return Ok::<(), crate::RecsError>(());
        }
        let counts = T::write(store, batch)?;
        summary.stored += counts.written;
        summary.duplicates += counts.duplicates;
        batch.clear();
        progress(ImportProgress::Committed(
            summary.stored + summary.duplicates,
        ));
        Ok(())
    };
    while let Some(row) = reader.next() {
        match row {
            Ok(record) => batch.push(record),
            Err(e) => {
                summary.skipped += 1;
                progress(ImportProgress::BadRow(&e));
            }
        }
        if batch.len() >= batch_size {
            flush(&mut batch, &mut summary, progress)?;
            let (done, total) = reader.progress();
            progress(ImportProgress::Read { done, total });
        }
    }
    flush(&mut batch, &mut summary, progress)?;
    let (done, total) = reader.progress();
    progress(ImportProgress::Read { done, total });
    Ok(summary)
}
