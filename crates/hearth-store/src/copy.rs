//! Moving an embedded store into PostgreSQL: every table of the SQLite database copied into a
//! PostgreSQL database whose schema is at the same versions, in one transaction (a copy that
//! fails leaves the target as it was), rows in their stored order, identity counters moved
//! past the copied ids.

use crate::sql::Value;
use crate::{Backend, Database, StoreError};

/// How many rows go in one `INSERT` (fewer for wide tables: PostgreSQL takes at most 65,535
/// parameters in a statement).
const BATCH_ROWS: usize = 500;

/// One table copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedTable {
    pub table: String,
    pub rows: u64,
}

fn refused(message: String) -> StoreError {
    StoreError::Refused(message)
}

/// Quotes a table or column name for SQL (names come from the source's own catalogue).
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Database {
    /// The tables of this SQLite database, but its migration table, in name order.
    fn sqlite_tables(&self) -> Result<Vec<String>, StoreError> {
        self.query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
             AND name <> 'schema_versions' ORDER BY name",
            &[],
            |r| r.get::<String>(0),
        )
    }

    /// Each namespace's schema version.
    fn schema_versions(&self) -> Result<Vec<(String, u32)>, StoreError> {
        self.query(
            "SELECT namespace, version FROM schema_versions ORDER BY namespace",
            &[],
            |r| Ok((r.get::<String>(0)?, r.get::<u32>(1)?)),
        )
    }

    /// Copies every table of this (SQLite) database into `target` (PostgreSQL), which must
    /// hold the same schema versions (its apps' migrations applied) and no rows yet. All in
    /// one transaction of the target: a failure leaves it empty. `progress` hears of each
    /// table's rows as they go.
    pub fn copy_into(
        &self,
        target: &Database,
        progress: &mut dyn FnMut(&str, u64),
    ) -> Result<Vec<CopiedTable>, StoreError> {
        if self.backend() != Backend::Sqlite || target.backend() != Backend::Postgres {
            return Err(refused(
                "a store is copied from SQLite into PostgreSQL".to_owned(),
            ));
        }
        let (ours, theirs) = (self.schema_versions()?, target.schema_versions()?);
        for (namespace, version) in &ours {
            let found = theirs.iter().find(|(n, _)| n == namespace).map(|(_, v)| *v);
            if found != Some(*version) {
                return Err(refused(format!(
                    "the target's {namespace} schema is at version {} where the source's is at \
                     {version}: migrate the target first",
                    found.unwrap_or(0)
                )));
            }
        }
        let tables = self.sqlite_tables()?;
        target.write(|tx| {
            let mut copied = Vec::with_capacity(tables.len());
            for table in &tables {
                let (columns, identities) = target_columns(tx, table)?;
                if columns.is_empty() {
                    return Err(refused(format!(
                        "table {table} is not in the target database: migrate it first"
                    )));
                }
                if tx
                    .query_one(
                        &format!("SELECT 1 FROM {} LIMIT 1", quoted(table)),
                        &[],
                        |r| r.get::<i64>(0),
                    )?
                    .is_some()
                {
                    return Err(refused(format!(
                        "table {table} of the target database already holds rows: copy into an \
                         empty database"
                    )));
                }
                let ours = self.query(
                    &format!(
                        "SELECT name FROM pragma_table_info('{}')",
                        table.replace('\'', "''")
                    ),
                    &[],
                    |r| r.get::<String>(0),
                )?;
                // Columns the target lacks are the source backend's own (none today); columns
                // only the target has fill themselves (PostgreSQL's stored order, `seq`).
                let shared: Vec<&String> = ours.iter().filter(|c| columns.contains(c)).collect();
                let rows = copy_table(self, tx, table, &shared, progress)?;
                for column in identities.iter().filter(|c| ours.contains(c)) {
                    tx.query_one(
                        &format!(
                            "SELECT setval(pg_get_serial_sequence($1, $2), \
                             COALESCE((SELECT MAX({col}) FROM {t}), 0) + 1, false)",
                            col = quoted(column),
                            t = quoted(table)
                        ),
                        crate::params![table.as_str(), column.as_str()],
                        |r| r.get::<i64>(0),
                    )?;
                }
                copied.push(CopiedTable {
                    table: table.clone(),
                    rows,
                });
            }
            Ok(copied)
        })
    }
}

/// The target table's columns and which of them are identities (PostgreSQL counts them).
fn target_columns(
    tx: &crate::Tx<'_>,
    table: &str,
) -> Result<(Vec<String>, Vec<String>), StoreError> {
    let rows = tx.query(
        "SELECT column_name::text, is_identity::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        crate::params![table],
        |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)),
    )?;
    let identities = rows
        .iter()
        .filter(|(_, identity)| identity == "YES")
        .map(|(c, _)| c.clone())
        .collect();
    Ok((rows.into_iter().map(|(c, _)| c).collect(), identities))
}

/// Copies `columns` of `table`'s rows in stored (rowid) order, a page at a time.
fn copy_table(
    source: &Database,
    tx: &crate::Tx<'_>,
    table: &str,
    columns: &[&String],
    progress: &mut dyn FnMut(&str, u64),
) -> Result<u64, StoreError> {
    if columns.is_empty() {
        return Ok(0);
    }
    let width = columns.len();
    let page = BATCH_ROWS.min(60_000 / width).max(1);
    let list = columns
        .iter()
        .map(|c| quoted(c))
        .collect::<Vec<_>>()
        .join(", ");
    let select = format!(
        "SELECT rowid, {list} FROM {} WHERE rowid > $1 ORDER BY rowid LIMIT {page}",
        quoted(table)
    );
    let mut after = i64::MIN;
    let mut copied = 0u64;
    loop {
        let rows: Vec<(i64, Vec<Value>)> = source.query(&select, crate::params![after], |r| {
            let values = (1..=width)
                .map(|i| r.get::<Value>(i))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((r.get::<i64>(0)?, values))
        })?;
        let Some((last, _)) = rows.last() else {
            break;
        };
        after = *last;
        let tuples = (0..rows.len())
            .map(|row| {
                let marks = (1..=width)
                    .map(|col| format!("${}", row * width + col))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("({marks})")
            })
            .collect::<Vec<_>>()
            .join(", ");
        let params: Vec<Value> = rows.into_iter().flat_map(|(_, values)| values).collect();
        let inserted = tx.execute(
            &format!("INSERT INTO {} ({list}) VALUES {tuples}", quoted(table)),
            &params,
        )?;
        copied += inserted;
        progress(table, copied);
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Migration;

    const SCHEMA: &[Migration<'_>] = &[
        Migration::Both(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, score REAL, raw BLOB);
             CREATE TABLE \"odd \"\"name\" (k TEXT PRIMARY KEY, n INTEGER NOT NULL)",
        ),
        // The stored order: SQLite's rowid, PostgreSQL's own counter.
        Migration::Each {
            sqlite: "CREATE TABLE log (at REAL NOT NULL)",
            postgres: "CREATE TABLE log (at DOUBLE PRECISION NOT NULL, \
                       seq BIGINT GENERATED ALWAYS AS IDENTITY)",
        },
    ];

    #[test]
    fn every_row_moves_once_in_order_and_the_counters_follow() {
        let dir = tempfile::tempdir().unwrap();
        let source = Database::open(&dir.path().join("hearth.db")).unwrap();
        source.migrate_each("t", SCHEMA).unwrap();
        source
            .write(|tx| {
                for i in 0..1234i64 {
                    let body = (i % 7 != 0).then(|| format!("note {i} 'quoted' \"too\""));
                    tx.execute(
                        "INSERT INTO notes (body, score, raw) VALUES ($1, $2, $3)",
                        &[
                            body.map(Value::Text).unwrap_or(Value::Null),
                            Value::Real(i as f64 / 3.0),
                            Value::Blob(vec![i as u8, 0, 255]),
                        ],
                    )?;
                    tx.execute(
                        "INSERT INTO log (at) VALUES ($1)",
                        crate::params![(1234 - i) as f64],
                    )?;
                }
                tx.execute(
                    "INSERT INTO \"odd \"\"name\" (k, n) VALUES ('a', 1), ('b', 2)",
                    &[],
                )
            })
            .unwrap();
        let target = Database::connect(&hearth_testdata::postgres_database()).unwrap();
        // A target whose schema is behind is refused, and so is the wrong direction.
        let err = source.copy_into(&target, &mut |_, _| {}).unwrap_err();
        assert!(
            err.to_string().contains("migrate the target first"),
            "{err}"
        );
        assert!(target.copy_into(&source, &mut |_, _| {}).is_err());
        target.migrate_each("t", SCHEMA).unwrap();

        let mut heard = Vec::new();
        let copied = source
            .copy_into(&target, &mut |table, rows| {
                heard.push((table.to_owned(), rows))
            })
            .unwrap();
        let rows = |t: &str| copied.iter().find(|c| c.table == t).unwrap().rows;
        assert_eq!(
            (rows("notes"), rows("log"), rows("odd \"name")),
            (1234, 1234, 2)
        );
        assert_eq!(heard.last().unwrap().1, 2);
        assert!(heard.contains(&("notes".to_owned(), 500)), "{heard:?}");

        let read = |db: &Database, sql: &str| {
            db.query(sql, &[], |r| {
                (0..4)
                    .map(|i| r.get::<Value>(i))
                    .collect::<Result<Vec<_>, _>>()
            })
            .unwrap()
        };
        let notes = "SELECT id, body, score, raw FROM notes ORDER BY id";
        assert_eq!(read(&source, notes), read(&target, notes));
        // The log keeps its stored order: PostgreSQL's counter follows SQLite's rowid.
        let order = |db: &Database, sql: &str| db.query(sql, &[], |r| r.get::<f64>(0)).unwrap();
        assert_eq!(
            order(&source, "SELECT at FROM log ORDER BY rowid"),
            order(&target, "SELECT at FROM log ORDER BY seq")
        );
        // New rows get ids after the copied ones.
        let id = target
            .query_one(
                "INSERT INTO notes (body) VALUES ('new') RETURNING id",
                &[],
                |r| r.get::<i64>(0),
            )
            .unwrap();
        assert_eq!(id, Some(1235));

        // Copying again is refused (the target holds rows) and changes nothing.
        let err = source.copy_into(&target, &mut |_, _| {}).unwrap_err();
        assert!(err.to_string().contains("already holds rows"), "{err}");
        let count = target
            .query_one("SELECT COUNT(*) FROM log", &[], |r| r.get::<i64>(0))
            .unwrap();
        assert_eq!(count, Some(1234));
    }
}
