//! Items, users and events in the embedded database. Writes are batched in transactions;
//! a batch is acknowledged only once committed (durable), and events are idempotent by id.

use hearth_store::{params, Database, Row, StoreError, Value};

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

fn event_from_row(row: &Row<'_>) -> Result<Event, StoreError> {
    Ok(Event {
        id: row.get(0)?,
        user: UserId(row.get(1)?),
        item: ItemId(row.get(2)?),
        kind: row.get(3)?,
        value: row.get(4)?,
        timestamp: row.get(5)?,
    })
}

fn user_from_row(row: &Row<'_>) -> Result<User, StoreError> {
    Ok(User {
        id: UserId(row.get(0)?),
        attributes: from_json(&row.get::<String>(1)?),
    })
}

fn item_from_row(row: &Row<'_>) -> Result<Item, StoreError> {
    Ok(Item {
        id: ItemId(row.get(0)?),
        title: row.get(1)?,
        description: row.get(2)?,
        categories: from_json(&row.get::<String>(3)?),
        tags: from_json(&row.get::<String>(4)?),
        attributes: from_json(&row.get::<String>(5)?),
        price: row.get(6)?,
        available: row.get(7)?,
        created_at: row.get(8)?,
    })
}

const ITEM_COLUMNS: &str =
    "id, title, description, categories, tags, attributes, price, available, created_at";

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

    /// Runs `sql` once per row in one transaction: a row that changes nothing (an insert
    /// whose id is stored, `ON CONFLICT DO NOTHING`) counts as a duplicate.
    fn write_batch<T>(
        &self,
        sql: &str,
        rows: &[T],
        params: impl Fn(&T) -> Vec<Value>,
    ) -> Result<WriteCounts, StoreError> {
        self.db.write(|tx| {
            let mut counts = WriteCounts::default();
            for row in rows {
                if tx.execute(sql, &params(row))? == 0 {
                    counts.duplicates += 1;
                } else {
                    counts.written += 1;
                }
            }
            Ok(counts)
        })
    }

    /// Inserts or replaces items, in one transaction.
    pub fn upsert_items(&self, items: &[Item]) -> Result<WriteCounts, StoreError> {
        self.write_batch(
            "INSERT INTO recs_items
             (id, title, description, categories, tags, attributes, price, available, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT(id) DO UPDATE SET title = excluded.title,
                 description = excluded.description, categories = excluded.categories,
                 tags = excluded.tags, attributes = excluded.attributes, price = excluded.price,
                 available = excluded.available, created_at = excluded.created_at",
            items,
            |item| {
                params![
                    &item.id.0,
                    &item.title,
                    &item.description,
                    json(&item.categories),
                    json(&item.tags),
                    json(&item.attributes),
                    item.price,
                    item.available,
                    item.created_at
                ]
                .to_vec()
            },
        )
    }

    /// Inserts or replaces users, in one transaction.
    pub fn upsert_users(&self, users: &[User]) -> Result<WriteCounts, StoreError> {
        self.write_batch(
            "INSERT INTO recs_users (id, attributes) VALUES ($1, $2)
             ON CONFLICT(id) DO UPDATE SET attributes = excluded.attributes",
            users,
            |user| params![&user.id.0, json(&user.attributes)].to_vec(),
        )
    }

    /// Inserts events, in one transaction; an event whose id is already stored is skipped
    /// (sending a batch twice stores it once).
    pub fn insert_events(&self, events: &[Event]) -> Result<WriteCounts, StoreError> {
        self.write_batch(
            "INSERT INTO recs_events (id, user_id, item_id, type, value, timestamp)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT(id) DO NOTHING",
            events,
            |event| {
                params![
                    &event.id,
                    &event.user.0,
                    &event.item.0,
                    &event.kind,
                    event.value,
                    event.timestamp
                ]
                .to_vec()
            },
        )
    }

    /// Deletes items (their events stay: they still say something about the users).
    pub fn delete_items(&self, ids: &[ItemId]) -> Result<u64, StoreError> {
        self.db.write(|tx| {
            let mut deleted = 0;
            for id in ids {
                deleted += tx.execute("DELETE FROM recs_items WHERE id = $1", params![&id.0])?;
            }
            Ok(deleted)
        })
    }

    /// Deletes users and their events.
    pub fn delete_users(&self, ids: &[UserId]) -> Result<u64, StoreError> {
        self.db.write(|tx| {
            let mut deleted = 0;
            for id in ids {
                deleted += tx.execute("DELETE FROM recs_users WHERE id = $1", params![&id.0])?;
                tx.execute("DELETE FROM recs_events WHERE user_id = $1", params![&id.0])?;
            }
            Ok(deleted)
        })
    }

    pub fn item(&self, id: &ItemId) -> Result<Option<Item>, StoreError> {
        self.db.query_one(
            &format!("SELECT {ITEM_COLUMNS} FROM recs_items WHERE id = $1"),
            params![&id.0],
            item_from_row,
        )
    }

    pub fn user(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        self.db.query_one(
            "SELECT id, attributes FROM recs_users WHERE id = $1",
            params![&id.0],
            user_from_row,
        )
    }

    /// The whole catalogue, in the order it was first stored.
    pub fn items(&self) -> Result<Vec<Item>, StoreError> {
        self.db.query(
            &format!("SELECT {ITEM_COLUMNS} FROM recs_items ORDER BY rowid"),
            params![],
            item_from_row,
        )
    }

    /// A user's most recent events (at most `limit`), oldest first.
    pub fn user_events(&self, user: &UserId, limit: usize) -> Result<Vec<Event>, StoreError> {
        let mut events = self.db.query(
            "SELECT id, user_id, item_id, type, value, timestamp FROM recs_events
             WHERE user_id = $1 ORDER BY timestamp DESC, rowid DESC LIMIT $2",
            params![&user.0, limit],
            event_from_row,
        )?;
        events.reverse();
        Ok(events)
    }

    /// Row counts: items, users, events.
    pub fn counts(&self) -> Result<(u64, u64, u64), StoreError> {
        let count = |table: &str| -> Result<u64, StoreError> {
            let n =
                self.db
                    .query_one(&format!("SELECT COUNT(*) FROM {table}"), params![], |r| {
                        r.get(0)
                    })?;
            Ok(n.unwrap_or(0))
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
        let users = self.db.query(
            "SELECT id, attributes FROM recs_users ORDER BY rowid",
            params![],
            user_from_row,
        )?;
        let events = self.db.query(
            "SELECT id, user_id, item_id, type, value, timestamp FROM recs_events ORDER BY rowid",
            params![],
            event_from_row,
        )?;
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
