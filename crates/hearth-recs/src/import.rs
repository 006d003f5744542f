//! Reading items, users and events from files: JSON Lines, CSV and TSV, with column names
//! mapped to fields by common aliases (so MovieLens, RecBole and typical shop exports load as
//! they are) or by explicit `field=column` overrides. Rows stream one at a time; a bad row is
//! an error naming its file and line and the reader goes on with the next.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::data::{Event, Item, ItemId, User, UserId};
use crate::error::RecsError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Jsonl,
    Csv,
    Tsv,
}

impl FileFormat {
    /// From the extension (`.jsonl`/`.ndjson`/`.json`, `.csv`, `.tsv`/`.tab`, RecBole's
    /// `.inter`/`.item`/`.user` and MovieLens' `.data` are tab-separated), else from the
    /// first line.
    pub fn detect(path: &Path) -> Result<FileFormat, RecsError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match ext.as_str() {
            "jsonl" | "ndjson" | "json" => return Ok(FileFormat::Jsonl),
            "csv" => return Ok(FileFormat::Csv),
            "tsv" | "tab" | "inter" | "item" | "user" | "data" => return Ok(FileFormat::Tsv),
            _ => {}
        }
        let mut first = String::new();
        BufReader::new(File::open(path).map_err(|e| RecsError::io(path, e))?)
            .read_line(&mut first)
            .map_err(|e| RecsError::io(path, e))?;
        Ok(
            if first
                .trim_start_matches('\u{feff}')
                .trim_start()
                .starts_with('{')
            {
                FileFormat::Jsonl
            } else if first.contains('\t') {
                FileFormat::Tsv
            } else {
                FileFormat::Csv
            },
        )
    }
}

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Items,
    Users,
    Events,
}

impl RecordKind {
    fn name(self) -> &'static str {
        match self {
            RecordKind::Items => "items",
            RecordKind::Users => "users",
            RecordKind::Events => "events",
        }
    }

    /// Fields and the column names recognised for each, in order of preference.
    fn aliases(self) -> &'static [(&'static str, &'static [&'static str])] {
        match self {
            RecordKind::Items => &[
                (
                    "id",
                    &[
                        "id",
                        "item_id",
                        "itemid",
                        "item",
                        "movieid",
                        "product_id",
                        "sku",
                    ],
                ),
                ("title", &["title", "name", "movie_title", "product_name"]),
                (
                    "description",
                    &["description", "desc", "overview", "summary"],
                ),
                (
                    "categories",
                    &["categories", "category", "genres", "genre", "class"],
                ),
                ("tags", &["tags", "keywords"]),
                ("price", &["price"]),
                ("available", &["available", "in_stock", "availability"]),
                ("created_at", &["created_at", "created"]),
            ],
            RecordKind::Users => &[("id", &["id", "user_id", "userid", "user", "customer_id"])],
            RecordKind::Events => &[
                ("id", &["id", "event_id"]),
                ("user", &["user", "user_id", "userid", "customer_id"]),
                (
                    "item",
                    &["item", "item_id", "itemid", "movieid", "product_id", "sku"],
                ),
                ("type", &["type", "event_type", "event", "kind", "action"]),
                ("value", &["value", "rating", "score"]),
                (
                    "timestamp",
                    &["timestamp", "time", "ts", "created_at", "date"],
                ),
            ],
        }
    }
}

/// `field=column` overrides; a key may be qualified by the file kind (`events.user=customer`).
#[derive(Debug, Clone, Default)]
pub struct ColumnMapping {
    overrides: Vec<(Option<String>, String, String)>,
}

impl ColumnMapping {
    /// Parses `field=column` or `kind.field=column` (kind: items, users, events).
    pub fn add(&mut self, spec: &str) -> Result<(), RecsError> {
        let bad = || RecsError::InvalidParameter {
            param: "map".into(),
            message: format!("'{spec}' is not FIELD=COLUMN or KIND.FIELD=COLUMN"),
        };
        let (key, column) = spec.split_once('=').ok_or_else(bad)?;
        let (kind, field) = match key.split_once('.') {
            Some((k, f)) if ["items", "users", "events"].contains(&k) => (Some(k.to_owned()), f),
            Some(_) => return Err(bad()),
            None => (None, key),
        };
        if field.is_empty() || column.is_empty() {
            return Err(bad());
        }
        self.overrides
            .push((kind, field.to_owned(), column.to_owned()));
        Ok(())
    }

    fn column_for(&self, kind: RecordKind, field: &str) -> Option<&str> {
        self.overrides
            .iter()
            .rev()
            .find(|(k, f, _)| f == field && k.as_deref().is_none_or(|k| k == kind.name()))
            .map(|(_, _, c)| c.as_str())
    }
}

/// A row that could not be read.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RowError {
    pub file: PathBuf,
    pub line: u64,
    pub message: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// One row's values by (lower-cased, type-suffix-free) column name.
struct Row {
    line: u64,
    values: Map<String, Value>,
    /// Columns RecBole marks `:token_seq` (space-separated lists).
    token_seq: Vec<String>,
}

enum Source {
    Jsonl {
        reader: BufReader<CountingReader>,
        line: u64,
        buf: String,
    },
    Delimited {
        reader: csv::Reader<CountingReader>,
        headers: Vec<String>,
        token_seq: Vec<String>,
    },
}

struct CountingReader {
    inner: File,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// Streams the records of one file.
pub struct RecordReader<T> {
    path: PathBuf,
    kind: RecordKind,
    source: Source,
    columns: HashMap<&'static str, String>,
    bytes_read: std::sync::Arc<std::sync::atomic::AtomicU64>,
    total_bytes: u64,
    defaults: Defaults,
    _record: std::marker::PhantomData<T>,
}

/// What a record may take from where it was read: the file's full path, and how many rows
/// with the same content came before it in this file (for content-derived event ids).
pub struct Defaults {
    /// The file's canonical full path.
    pub full_path: String,
    seen: HashMap<[u8; 16], u32>,
}

impl Defaults {
    fn new(file: &Path) -> Defaults {
        Defaults {
            full_path: std::fs::canonicalize(file)
                .unwrap_or_else(|_| file.to_owned())
                .to_string_lossy()
                .into_owned(),
            seen: HashMap::new(),
        }
    }

    /// A stable id for a row from its content: the hash of `parts` and of how many earlier
    /// rows of this file had the same parts, so re-reading the same file gives the same ids
    /// and two equal rows in one file stay two records.
    pub fn content_id(&mut self, parts: &[&str]) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for part in parts {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part.as_bytes());
        }
        let digest = hash.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        let count = self.seen.entry(key).or_insert(0);
        let occurrence = *count;
        *count += 1;
        let mut hash = Sha256::new();
        hash.update(key);
        hash.update(occurrence.to_le_bytes());
        format!("row-{}", hex::encode(&hash.finalize()[..16]))
    }
}

/// Decodes a field: UTF-8, or Latin-1 when it is not valid UTF-8 (older datasets such as
/// MovieLens-100K are Latin-1).
fn decode(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => bytes.iter().map(|&b| b as char).collect(),
    }
}

fn normalise_header(raw: &str) -> (String, bool) {
    let raw = raw.trim().trim_start_matches('\u{feff}');
    match raw.rsplit_once(':') {
        Some((name, ty)) if ["token", "token_seq", "float", "float_seq"].contains(&ty) => {
            (name.to_ascii_lowercase(), ty == "token_seq")
        }
        _ => (raw.to_ascii_lowercase(), false),
    }
}

impl<T: FromRow> RecordReader<T> {
    pub fn open(path: &Path, mapping: &ColumnMapping) -> Result<Self, RecsError> {
        let kind = T::KIND;
        let format = FileFormat::detect(path)?;
        let mut file = File::open(path).map_err(|e| RecsError::io(path, e))?;
        let total_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut start = [0u8; 2];
        let n = file.read(&mut start).map_err(|e| RecsError::io(path, e))?;
        if n == 2 && (start == [0xff, 0xfe] || start == [0xfe, 0xff]) {
            return Err(RecsError::BadFile {
                file: path.to_owned(),
                message: "the file is UTF-16 text (it starts with a UTF-16 byte-order mark); \
                          save it as UTF-8"
                    .into(),
            });
        }
        std::io::Seek::rewind(&mut file).map_err(|e| RecsError::io(path, e))?;
        let bytes_read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counting = CountingReader {
            inner: file,
            read: bytes_read.clone(),
        };
        let (source, names): (Source, Option<Vec<String>>) = match format {
            FileFormat::Jsonl => (
                Source::Jsonl {
                    reader: BufReader::new(counting),
                    line: 0,
                    buf: String::new(),
                },
                None,
            ),
            FileFormat::Csv | FileFormat::Tsv => {
                let mut reader = csv::ReaderBuilder::new()
                    .delimiter(if format == FileFormat::Tsv {
                        b'\t'
                    } else {
                        b','
                    })
                    .quoting(format == FileFormat::Csv)
                    .flexible(true)
                    .from_reader(counting);
                let raw = reader
                    .byte_headers()
                    .map_err(|e| RecsError::BadFile {
                        file: path.to_owned(),
                        message: format!("cannot read the header row: {e}"),
                    })?
                    .clone();
                let mut headers = Vec::new();
                let mut token_seq = Vec::new();
                for h in raw.iter() {
                    let (name, seq) = normalise_header(&decode(h));
                    if seq {
                        token_seq.push(name.clone());
                    }
                    headers.push(name);
                }
                let names = headers.clone();
                (
                    Source::Delimited {
                        reader,
                        headers,
                        token_seq,
                    },
                    Some(names),
                )
            }
        };
        // Resolve each field's column now for delimited files (so a missing required column is
        // one clear error, not one per row); JSON objects resolve per row the same way.
        let mut columns = HashMap::new();
        for (field, aliases) in kind.aliases() {
            let chosen = match mapping.column_for(kind, field) {
                Some(c) => {
                    let c = c.to_ascii_lowercase();
                    if let Some(names) = &names {
                        if !names.contains(&c) {
                            return Err(RecsError::BadFile {
                                file: path.to_owned(),
                                message: format!(
                                    "column '{c}' mapped to {}.{field} is not in the header ({})",
                                    kind.name(),
                                    names.join(", ")
                                ),
                            });
                        }
                    }
                    Some(c)
                }
                None => match &names {
                    Some(names) => aliases
                        .iter()
                        .find(|a| names.iter().any(|n| n == *a))
                        .map(|a| a.to_string()),
                    None => None,
                },
            };
            if let Some(c) = chosen {
                columns.insert(*field, c);
            }
        }
        if let Some(names) = &names {
            for field in T::REQUIRED {
                if !columns.contains_key(field) {
                    let aliases = kind
                        .aliases()
                        .iter()
                        .find(|(f, _)| f == field)
                        .map(|(_, a)| a.join(", "))
                        .unwrap_or_default();
                    return Err(RecsError::BadFile {
                        file: path.to_owned(),
                        message: format!(
                            "no column for {}.{field}: the header has {}; name one of [{aliases}] \
                             or map it with --map {}.{field}=COLUMN",
                            kind.name(),
                            names.join(", "),
                            kind.name()
                        ),
                    });
                }
            }
        }
        Ok(RecordReader {
            path: path.to_owned(),
            kind,
            source,
            columns,
            bytes_read,
            total_bytes,
            defaults: Defaults::new(path),
            _record: std::marker::PhantomData,
        })
    }

    /// Bytes of the file consumed so far and the file's size, for progress bars.
    pub fn progress(&self) -> (u64, u64) {
        (
            self.bytes_read.load(std::sync::atomic::Ordering::Relaxed),
            self.total_bytes,
        )
    }

    fn next_row(&mut self) -> Option<Result<Row, RowError>> {
        let path = &self.path;
        match &mut self.source {
            Source::Jsonl { reader, line, buf } => loop {
                buf.clear();
                *line += 1;
                match reader.read_line(buf) {
                    Ok(0) => return None,
                    Ok(_) => {}
                    Err(e) => {
                        return Some(Err(RowError {
                            file: path.clone(),
                            line: *line,
                            message: format!("cannot read: {e}"),
                        }))
                    }
                }
                if *line == 1 && buf.starts_with('\u{feff}') {
                    buf.drain(..'\u{feff}'.len_utf8());
                }
                if buf.trim().is_empty() {
                    continue;
                }
                return Some(match serde_json::from_str::<Value>(buf) {
                    Ok(Value::Object(obj)) => Ok(Row {
                        line: *line,
                        values: obj
                            .into_iter()
                            .map(|(k, v)| (k.to_ascii_lowercase(), v))
                            .collect(),
                        token_seq: Vec::new(),
                    }),
                    Ok(_) => Err(RowError {
                        file: path.clone(),
                        line: *line,
                        message: "expected a JSON object".into(),
                    }),
                    Err(e) => Err(RowError {
                        file: path.clone(),
                        line: *line,
                        message: format!("invalid JSON: {e}"),
                    }),
                });
            },
            Source::Delimited {
                reader,
                headers,
                token_seq,
            } => {
                let mut record = csv::ByteRecord::new();
                match reader.read_byte_record(&mut record) {
                    Ok(false) => None,
                    Ok(true) => {
                        let line = record.position().map(|p| p.line()).unwrap_or(0);
                        if record.len() != headers.len() {
                            return Some(Err(RowError {
                                file: path.clone(),
                                line,
                                message: format!(
                                    "expected {} columns, found {}",
                                    headers.len(),
                                    record.len()
                                ),
                            }));
                        }
                        let values = headers
                            .iter()
                            .zip(record.iter())
                            .map(|(h, v)| (h.clone(), Value::String(decode(v))))
                            .collect();
                        Some(Ok(Row {
                            line,
                            values,
                            token_seq: token_seq.clone(),
                        }))
                    }
                    Err(e) => {
                        let line = e.position().map(|p| p.line()).unwrap_or(0);
                        Some(Err(RowError {
                            file: path.clone(),
                            line,
                            message: e.to_string(),
                        }))
                    }
                }
            }
        }
    }
}

impl<T: FromRow> Iterator for RecordReader<T> {
    type Item = Result<T, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut row = match self.next_row()? {
            Ok(row) => row,
            Err(e) => return Some(Err(e)),
        };
        let line = row.line;
        let mut fields = Fields {
            row: &mut row,
            columns: &self.columns,
            kind: self.kind,
        };
        Some(
            T::from_row(&mut fields)
                .map_err(|message| RowError {
                    file: self.path.clone(),
                    line,
                    message,
                })
                .map(|mut record| {
                    record.fill_defaults(&mut self.defaults);
                    record
                }),
        )
    }
}

/// Field access for one row, through the column mapping.
pub struct Fields<'a> {
    row: &'a mut Row,
    columns: &'a HashMap<&'static str, String>,
    kind: RecordKind,
}

impl Fields<'_> {
    /// Removes and returns the field's value; null and empty strings count as absent.
    fn take(&mut self, field: &str) -> Option<Value> {
        let column = match self.columns.get(field) {
            Some(c) => Some(c.clone()),
            None => self
                .kind
                .aliases()
                .iter()
                .find(|(f, _)| *f == field)
                .and_then(|(_, aliases)| {
                    aliases
                        .iter()
                        .find(|a| self.row.values.contains_key(**a))
                        .map(|a| a.to_string())
                }),
        }?;
        match self.row.values.remove(&column)? {
            Value::Null => None,
            Value::String(s) if s.trim().is_empty() => None,
            v => Some(v),
        }
    }

    fn is_token_seq(&self, field: &str) -> bool {
        self.columns
            .get(field)
            .is_some_and(|c| self.row.token_seq.contains(c))
    }

    fn string(&mut self, field: &str) -> Result<Option<String>, String> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(format!("'{field}' must be a string, found {other}")),
        }
    }

    fn required_string(&mut self, field: &str) -> Result<String, String> {
        self.string(field)?
            .ok_or_else(|| format!("'{field}' is missing"))
    }

    fn number(&mut self, field: &str) -> Result<Option<f64>, String> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(Value::String(s)) => s
                .trim()
                .parse::<f64>()
                .map(Some)
                .map_err(|_| format!("'{field}' must be a number, found '{s}'")),
            Some(other) => Err(format!("'{field}' must be a number, found {other}")),
        }
    }

    fn list(&mut self, field: &str) -> Result<Vec<String>, String> {
        let seq = self.is_token_seq(field);
        match self.take(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(values)) => values
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    other => Err(format!(
                        "'{field}' must be a list of strings, found {other}"
                    )),
                })
                .collect(),
            Some(Value::String(s)) => {
                let parts: Vec<String> = if seq {
                    s.split_whitespace().map(str::to_owned).collect()
                } else {
                    let sep = ['|', ';', ',']
                        .into_iter()
                        .find(|c| s.contains(*c))
                        .unwrap_or('|');
                    s.split(sep).map(|p| p.trim().to_owned()).collect()
                };
                Ok(parts.into_iter().filter(|p| !p.is_empty()).collect())
            }
            Some(other) => Err(format!("'{field}' must be a list, found {other}")),
        }
    }

    fn bool(&mut self, field: &str) -> Result<Option<bool>, String> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(Value::Number(n)) => Ok(Some(n.as_f64() != Some(0.0))),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" | "in_stock" | "in stock" | "available" => Ok(Some(true)),
                "false" | "no" | "0" | "out_of_stock" | "out of stock" | "unavailable" => {
                    Ok(Some(false))
                }
                other => Err(format!("'{field}' must be true or false, found '{other}'")),
            },
            Some(other) => Err(format!("'{field}' must be true or false, found {other}")),
        }
    }

    /// Unix seconds from a number (seconds, or milliseconds when it is that large) or an
    /// RFC 3339 date.
    fn timestamp(&mut self, field: &str) -> Result<Option<i64>, String> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64().map(seconds)),
            Some(Value::String(s)) => {
                let s = s.trim();
                if let Ok(x) = s.parse::<f64>() {
                    return Ok(Some(seconds(x)));
                }
                humantime::parse_rfc3339_weak(s)
                    .map(|t| {
                        Some(
                            t.duration_since(std::time::UNIX_EPOCH)
                                .map(|d| d.as_secs() as i64)
                                .unwrap_or(0),
                        )
                    })
                    .map_err(|_| {
                        format!("'{field}' must be unix seconds or an RFC 3339 date, found '{s}'")
                    })
            }
            Some(other) => Err(format!("'{field}' must be a time, found {other}")),
        }
    }

    /// Whatever columns no field took.
    fn rest(&mut self) -> Map<String, Value> {
        std::mem::take(&mut self.row.values)
    }
}

fn seconds(x: f64) -> i64 {
    if x.abs() > 1e11 {
        (x / 1000.0) as i64
    } else {
        x as i64
    }
}

/// The columns no field took: a JSON `attributes` object is merged in, other columns become
/// attributes by name.
fn attributes(mut rest: Map<String, Value>) -> Map<String, Value> {
    match rest.remove("attributes") {
        Some(Value::Object(map)) => {
            rest.extend(map);
            rest
        }
        Some(other) => {
            rest.insert("attributes".into(), other);
            rest
        }
        None => rest,
    }
}

/// A record that can be read from a row.
pub trait FromRow: Sized {
    const KIND: RecordKind;
    /// Fields a delimited file must have a column for.
    const REQUIRED: &'static [&'static str];
    fn from_row(fields: &mut Fields<'_>) -> Result<Self, String>;
    /// Fills what the row may leave out (an event's id) from where it was read.
    fn fill_defaults(&mut self, _defaults: &mut Defaults) {}
}

impl FromRow for Item {
    const KIND: RecordKind = RecordKind::Items;
    const REQUIRED: &'static [&'static str] = &["id"];

    fn from_row(f: &mut Fields<'_>) -> Result<Self, String> {
        let id = ItemId(f.required_string("id")?);
        let title = f.string("title")?.unwrap_or_default();
        let description = f.string("description")?.unwrap_or_default();
        let categories = f.list("categories")?;
        let tags = f.list("tags")?;
        let price = f.number("price")?;
        if price.is_some_and(|p| !p.is_finite() || p < 0.0) {
            return Err("'price' must be a non-negative number".into());
        }
        let available = f.bool("available")?.unwrap_or(true);
        let created_at = f.timestamp("created_at")?;
        let attributes = attributes(f.rest());
        Ok(Item {
            id,
            title,
            description,
            categories,
            tags,
            attributes,
            price,
            available,
            created_at,
        })
    }
}

impl FromRow for User {
    const KIND: RecordKind = RecordKind::Users;
    const REQUIRED: &'static [&'static str] = &["id"];

    fn from_row(f: &mut Fields<'_>) -> Result<Self, String> {
        let id = UserId(f.required_string("id")?);
        let attributes = attributes(f.rest());
        Ok(User { id, attributes })
    }
}

impl FromRow for Event {
    const KIND: RecordKind = RecordKind::Events;
    const REQUIRED: &'static [&'static str] = &["user", "item"];

    fn from_row(f: &mut Fields<'_>) -> Result<Self, String> {
        let id = f.string("id")?.unwrap_or_default();
        let user = UserId(f.required_string("user")?);
        let item = ItemId(f.required_string("item")?);
        let value = f.number("value")?;
        if value.is_some_and(|v| !v.is_finite()) {
            return Err("'value' must be a finite number".into());
        }
        // Without a type column a value means a rating (MovieLens-style files), else a view.
        let kind = match f.string("type")? {
            Some(k) => k.to_ascii_lowercase(),
            None if value.is_some() => "rating".into(),
            None => "view".into(),
        };
        let timestamp = f.timestamp("timestamp")?.unwrap_or(0);
        Ok(Event {
            id,
            user,
            item,
            kind,
            value,
            timestamp,
        })
    }

    /// An event without an id gets one from its content (user, item, type, value, time and
    /// how many equal rows came before it in the file), so importing the same file again
    /// stores nothing twice, and another file's different rows are never taken for
    /// duplicates whatever the file is called. A row without a timestamp also hashes the
    /// file's full path: without a time, equal rows of two files are two events.
    fn fill_defaults(&mut self, defaults: &mut Defaults) {
        if self.id.is_empty() {
            let value = self.value.map(|v| v.to_string()).unwrap_or_default();
            let time = self.timestamp.to_string();
            let place = if self.timestamp == 0 {
                defaults.full_path.clone()
            } else {
                String::new()
            };
            self.id = defaults.content_id(&[
                &self.user.0,
                &self.item.0,
                &self.kind,
                &value,
                &time,
                &place,
            ]);
        }
    }
}

/// The files of a data directory: `items`, `users` and `events` (or `ratings`,
/// `interactions`) with any supported extension, or RecBole's `*.item`, `*.user`, `*.inter`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataFiles {
    pub items: Option<PathBuf>,
    pub users: Option<PathBuf>,
    pub events: Option<PathBuf>,
}

impl DataFiles {
    pub fn discover(dir: &Path) -> Result<DataFiles, RecsError> {
        let mut files = DataFiles::default();
        let entries = std::fs::read_dir(dir).map_err(|e| RecsError::io(dir, e))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        for path in paths {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("")
                .to_ascii_lowercase();
            let ext = path
                .extension()
                .and_then(|s| s.to_str())
                .unwrap_or("")
                .to_ascii_lowercase();
            let known = ["jsonl", "ndjson", "json", "csv", "tsv", "tab"].contains(&ext.as_str());
            let slot = match (stem.as_str(), ext.as_str()) {
                ("items", _) if known => &mut files.items,
                ("users", _) if known => &mut files.users,
                ("events" | "ratings" | "interactions", _) if known => &mut files.events,
                (_, "item") => &mut files.items,
                (_, "user") => &mut files.users,
                (_, "inter") => &mut files.events,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(path);
            }
        }
        if files.events.is_none() {
            return Err(RecsError::BadFile {
                file: dir.to_owned(),
                message: "no events file: expected events.{jsonl,csv,tsv} (or ratings.*, \
                          interactions.*, *.inter) in this directory"
                    .into(),
            });
        }
        Ok(files)
    }
}

/// Counts of one file's rows.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct FileSummary {
    pub file: PathBuf,
    pub stored: u64,
    pub skipped: u64,
}

/// Reads every record of a file. A bad row is handed to `on_error` and skipped, or with
/// `strict` fails the whole read.
pub fn read_all<T: FromRow>(
    path: &Path,
    mapping: &ColumnMapping,
    strict: bool,
    on_error: &mut dyn FnMut(&RowError),
) -> Result<(Vec<T>, FileSummary), RecsError> {
    let mut records = Vec::new();
    let mut summary = FileSummary {
        file: path.to_owned(),
        ..Default::default()
    };
    for row in RecordReader::<T>::open(path, mapping)? {
        match row {
            Ok(record) => {
                records.push(record);
                summary.stored += 1;
            }
            Err(e) if strict => return Err(RecsError::BadRow(e)),
            Err(e) => {
                on_error(&e);
                summary.skipped += 1;
            }
        }
    }
    Ok((records, summary))
}
