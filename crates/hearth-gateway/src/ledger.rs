//! The usage and cost ledger and the upstream audit log, in the data directory's database.
//!
//! Requests hand their records to a writer thread that commits them in batches (one
//! transaction per 50 ms at most), so metering costs a request a channel send.
//! [`Ledger::flush`] waits until everything handed over is committed.

use std::collections::BTreeMap;
use std::sync::mpsc;

use hearth_store::{Database, Migration, StoreError};
use serde::Serialize;

use crate::prices::{PriceTable, SHIPPED_PRICES_AS_OF};

const MIGRATIONS: &[Migration<'static>] = &[
    Migration::Both(
        "
CREATE TABLE gateway_usage (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    api_key TEXT,
    route TEXT NOT NULL,
    deployment TEXT NOT NULL,
    model TEXT NOT NULL,
    local INTEGER NOT NULL,
    status TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    ttft_ms REAL,
    duration_ms REAL NOT NULL,
    busy_ms REAL NOT NULL,
    cost REAL NOT NULL,
    priced INTEGER NOT NULL,
    fallbacks INTEGER NOT NULL
);
CREATE INDEX gateway_usage_at ON gateway_usage(at);
CREATE INDEX gateway_usage_key ON gateway_usage(api_key, at);
CREATE TABLE gateway_audit (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    route TEXT NOT NULL,
    deployment TEXT NOT NULL,
    model TEXT NOT NULL,
    privacy TEXT NOT NULL,
    outcome TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    redactions TEXT NOT NULL,
    raw_request TEXT,
    raw_answer TEXT
);
CREATE INDEX gateway_audit_at ON gateway_audit(at);
CREATE TABLE gateway_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    hash TEXT NOT NULL UNIQUE,
    routes TEXT NOT NULL,
    requests_per_minute INTEGER,
    tokens_per_minute INTEGER,
    budget REAL,
    period TEXT NOT NULL,
    created REAL NOT NULL,
    revoked REAL
);
",
    ),
    Migration::Both(
        "
-- Keys made before scopes existed were meant for models: they keep inference only.
ALTER TABLE gateway_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT '[\"inference\"]';
ALTER TABLE gateway_keys ADD COLUMN tenant TEXT;
",
    ),
    Migration::Both(
        "
-- Stored responses (/v1/responses): the answer, and the conversation a continuation starts
-- from, seen only by the key (owner) that made them, until they expire.
CREATE TABLE gateway_responses (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    response TEXT NOT NULL,
    conversation TEXT NOT NULL
);
CREATE INDEX gateway_responses_expires ON gateway_responses(expires);
",
    ),
    Migration::Both(
        "
-- Limits shared by every replica of one database (PostgreSQL): a key's spend this period and
-- its requests/tokens buckets, and the reservations of requests running. A reservation whose
-- replica died expires and is charged what it reserved (charged = 1, kept a while so its late
-- settlement knows it was).
CREATE TABLE gateway_limits (
    key_id TEXT PRIMARY KEY,
    period_start REAL NOT NULL,
    spent REAL NOT NULL,
    requests_level REAL,
    requests_at REAL,
    tokens_level REAL,
    tokens_at REAL
);
CREATE TABLE gateway_reservations (
    id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    cost REAL NOT NULL,
    tokens REAL NOT NULL,
    expires REAL NOT NULL,
    charged INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX gateway_reservations_key ON gateway_reservations(key_id, expires);
",
    ),
    // Daily rollups of the ledger, kept in the same transaction as the rows they sum: one row
    // per UTC day and key, route, model and deployment (`dimension`, `grp`; requests without
    // a key under '(no key)', which no key name can be), so a report over a year reads a few
    // thousand rows whatever the traffic. Filled from the rows already there.
    Migration::Each {
        sqlite: "
CREATE TABLE gateway_usage_daily (
    dimension TEXT NOT NULL,
    day INTEGER NOT NULL,
    grp TEXT NOT NULL,
    requests INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    local_requests INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost REAL NOT NULL,
    unpriced INTEGER NOT NULL,
    ttft_ms_sum REAL NOT NULL,
    ttft_count INTEGER NOT NULL,
    duration_ms_sum REAL NOT NULL,
    PRIMARY KEY (dimension, day, grp)
);
CREATE INDEX gateway_usage_daily_group ON gateway_usage_daily(dimension, grp, day);
INSERT INTO gateway_usage_daily
SELECT 'key', CAST(at / 86400 AS INTEGER), COALESCE(api_key, '(no key)'), COUNT(*), SUM(CASE WHEN status <> 'ok' THEN 1 ELSE 0 END),
       SUM(local), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost), SUM(1 - priced),
       COALESCE(SUM(ttft_ms), 0), COUNT(ttft_ms), SUM(duration_ms)
FROM gateway_usage GROUP BY 2, 3;
INSERT INTO gateway_usage_daily
SELECT 'route', CAST(at / 86400 AS INTEGER), route, COUNT(*), SUM(CASE WHEN status <> 'ok' THEN 1 ELSE 0 END),
       SUM(local), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost), SUM(1 - priced),
       COALESCE(SUM(ttft_ms), 0), COUNT(ttft_ms), SUM(duration_ms)
FROM gateway_usage GROUP BY 2, 3;
INSERT INTO gateway_usage_daily
SELECT 'model', CAST(at / 86400 AS INTEGER), model, COUNT(*), SUM(CASE WHEN status <> 'ok' THEN 1 ELSE 0 END),
       SUM(local), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost), SUM(1 - priced),
       COALESCE(SUM(ttft_ms), 0), COUNT(ttft_ms), SUM(duration_ms)
FROM gateway_usage GROUP BY 2, 3;
INSERT INTO gateway_usage_daily
SELECT 'deployment', CAST(at / 86400 AS INTEGER), deployment, COUNT(*), SUM(CASE WHEN status <> 'ok' THEN 1 ELSE 0 END),
       SUM(local), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost), SUM(1 - priced),
       COALESCE(SUM(ttft_ms), 0), COUNT(ttft_ms), SUM(duration_ms)
FROM gateway_usage GROUP BY 2, 3;
",
        postgres: "
CREATE TABLE gateway_usage_daily (
    dimension TEXT NOT NULL,
    day BIGINT NOT NULL,
    grp TEXT NOT NULL,
    requests BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    local_requests BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost DOUBLE PRECISION NOT NULL,
    unpriced BIGINT NOT NULL,
    ttft_ms_sum DOUBLE PRECISION NOT NULL,
    ttft_count BIGINT NOT NULL,
    duration_ms_sum DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (dimension, day, grp)
);
CREATE INDEX gateway_usage_daily_group ON gateway_usage_daily(dimension, grp, day);
INSERT INTO gateway_usage_daily
SELECT 'key', FLOOR(at / 86400)::BIGINT, COALESCE(api_key, '(no key)'), COUNT(*), SUM(CASE WHEN status <> 'ok' THEN 1 ELSE 0 END),
       SUM(local), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost), SUM(1 - priced),
       COALESCE(SUM(ttft_ms), 0), COUNT(ttft_ms), SUM(duration_ms)
FROM gateway_usage GROUP BY 2, 3;
INSERT INTO gateway_usage_daily
SELECT 'route', FLOOR(at / 86400)::BIGINT, route, COUNT(*), SUM(CASE WHEN status <> 'ok' THEN 1 ELSE 0 END),
       SUM(local), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost), SUM(1 - priced),
       COALESCE(SUM(ttft_ms), 0), COUNT(ttft_ms), SUM(duration_ms)
FROM gateway_usage GROUP BY 2, 3;
INSERT INTO gateway_usage_daily
SELECT 'model', FLOOR(at / 86400)::BIGINT, model, COUNT(*), SUM(CASE WHEN status <> 'ok' THEN 1 ELSE 0 END),
       SUM(local), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost), SUM(1 - priced),
       COALESCE(SUM(ttft_ms), 0), COUNT(ttft_ms), SUM(duration_ms)
FROM gateway_usage GROUP BY 2, 3;
INSERT INTO gateway_usage_daily
SELECT 'deployment', FLOOR(at / 86400)::BIGINT, deployment, COUNT(*), SUM(CASE WHEN status <> 'ok' THEN 1 ELSE 0 END),
       SUM(local), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost), SUM(1 - priced),
       COALESCE(SUM(ttft_ms), 0), COUNT(ttft_ms), SUM(duration_ms)
FROM gateway_usage GROUP BY 2, 3;
",
    },
    // A call that left the machine points at its request's row, so the request log can show
    // its text (under `audit_raw_text`). Older audit rows point nowhere.
    Migration::Both(
        "
ALTER TABLE gateway_audit ADD COLUMN usage_id BIGINT;
CREATE INDEX gateway_audit_usage ON gateway_audit(usage_id);
",
    ),
];

/// Opens (migrating) the gateway's tables.
pub(crate) fn migrate(db: &Database) -> Result<(), StoreError> {
    db.migrate_each("gateway", MIGRATIONS)
}

/// One request, as metered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageRecord {
    /// Unix seconds at the start of the request.
    pub at: f64,
    /// The API key's name; `None` for the apps' own calls and unauthenticated servers.
    pub api_key: Option<String>,
    /// The model name the client asked for.
    pub route: String,
    /// `provider/model` that served it.
    pub deployment: String,
    pub model: String,
    pub local: bool,
    /// `ok`, `error` or `cancelled`.
    pub status: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub ttft_ms: Option<f64>,
    pub duration_ms: f64,
    /// Engine-busy milliseconds (local work); 0 upstream.
    pub busy_ms: f64,
    /// USD.
    pub cost: f64,
    /// False when no price applied (upstream model missing from the price table, or a
    /// machine cost of 0).
    pub priced: bool,
    /// Deployments that failed before this one answered.
    pub fallbacks: u32,
}

/// One call that left this machine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    pub at: f64,
    pub route: String,
    pub deployment: String,
    pub model: String,
    pub privacy: String,
    /// `ok`, or what went wrong.
    pub outcome: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Placeholders put in per kind of personal data.
    pub redactions: BTreeMap<String, usize>,
    /// Only with `[gateway] audit_raw_text = true`: the request body as it left (redacted on
    /// `redact` routes) and the answer's text as the client received it (placeholders put
    /// back).
    pub raw_request: Option<String>,
    pub raw_answer: Option<String>,
}

enum Message {
    Usage(UsageRecord),
    /// A request that left the machine: its row, and the audit record pointing at it.
    Call(UsageRecord, AuditRecord),
    Audit(AuditRecord),
    Flush(mpsc::Sender<()>),
}

/// The writer's end; cheap to share.
pub struct Ledger {
    db: Database,
    tx: mpsc::Sender<Message>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("db", &self.db).finish()
    }
}

impl Ledger {
    /// Starts the writer thread on `db` (already migrated).
    pub(crate) fn start(db: Database) -> Ledger {
        let (tx, rx) = mpsc::channel::<Message>();
        let writer_db = db.clone();
        std::thread::Builder::new()
            .name("hearth-ledger".into())
            .spawn(move || write_loop(writer_db, rx))
            .expect("spawning the ledger writer");
        Ledger { db, tx }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    fn send(&self, message: Message) {
        if self.tx.send(message).is_err() {
            tracing::error!("the ledger writer has stopped: a usage record is lost");
        }
    }

    pub(crate) fn record(&self, record: UsageRecord) {
        self.send(Message::Usage(record));
    }

    pub(crate) fn audit(&self, record: AuditRecord) {
        self.send(Message::Audit(record));
    }

    /// A request that left the machine: its row and its audit record, linked.
    pub(crate) fn call(&self, record: UsageRecord, audit: AuditRecord) {
        self.send(Message::Call(record, audit));
    }

    /// Blocks until every record handed over so far is committed.
    pub fn flush(&self) {
        let (done_tx, done_rx) = mpsc::channel();
        self.send(Message::Flush(done_tx));
        let _ = done_rx.recv();
    }
}

/// Longest a record waits for others to share its commit (each commit is synced to disk).
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(50);

fn write_loop(db: Database, rx: mpsc::Receiver<Message>) {
    while let Ok(first) = rx.recv() {
        let deadline = std::time::Instant::now() + BATCH_WINDOW;
        let mut flush = matches!(first, Message::Flush(_));
        let mut batch = vec![first];
        while batch.len() < 4096 && !flush {
            let wait = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(wait) {
                Ok(m) => {
                    flush = matches!(m, Message::Flush(_));
                    batch.push(m);
                }
                Err(_) => break,
            }
        }
        let mut waiting = Vec::new();
        if let Err(e) = write_batch(&db, batch, &mut waiting) {
            tracing::error!(error = %e, "cannot write usage records");
        }
        for done in waiting {
            let _ = done.send(());
        }
    }
}

/// One audit row, pointing at its request's row when it has one.
fn insert_audit(
    tx: &hearth_store::Tx<'_>,
    r: &AuditRecord,
    usage_id: Option<i64>,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO gateway_audit (at, route, deployment, model, privacy, outcome,
             prompt_tokens, completion_tokens, redactions, raw_request, raw_answer, usage_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        hearth_store::params![
            r.at,
            &r.route,
            &r.deployment,
            &r.model,
            &r.privacy,
            &r.outcome,
            r.prompt_tokens,
            r.completion_tokens,
            serde_json::to_string(&r.redactions).unwrap_or_default(),
            &r.raw_request,
            &r.raw_answer,
            usage_id,
        ],
    )?;
    Ok(())
}

const INSERT_USAGE: &str = "INSERT INTO gateway_usage (at, api_key, route, deployment, model,
         local, status, prompt_tokens, completion_tokens, ttft_ms, duration_ms, busy_ms, cost,
         priced, fallbacks)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";

/// One request row of the ledger (its rollups are written per batch); with `returning_id`
/// (a call whose audit row points at it) answers its id.
fn insert_usage(
    tx: &hearth_store::Tx<'_>,
    r: &UsageRecord,
    returning_id: bool,
) -> Result<Option<i64>, StoreError> {
    let params = hearth_store::params![
        r.at,
        &r.api_key,
        &r.route,
        &r.deployment,
        &r.model,
        r.local,
        &r.status,
        r.prompt_tokens,
        r.completion_tokens,
        r.ttft_ms,
        r.duration_ms,
        r.busy_ms,
        r.cost,
        r.priced,
        r.fallbacks,
    ];
    if !returning_id {
        // Most rows: the writer's hot path stays one plain INSERT.
        tx.execute(INSERT_USAGE, params)?;
        return Ok(None);
    }
    tx.query_one(&format!("{INSERT_USAGE} RETURNING id"), params, |row| {
        row.get(0)
    })
}

fn write_batch(
    db: &Database,
    batch: Vec<Message>,
    waiting: &mut Vec<mpsc::Sender<()>>,
) -> Result<(), StoreError> {
    let mut days: BTreeMap<DayKey, DayTotals> = BTreeMap::new();
    for message in &batch {
        if let Message::Usage(r) | Message::Call(r, _) = message {
            for key in DayKey::of(r) {
                days.entry(key).or_default().add(r);
            }
        }
    }
    db.write(|tx| {
        for message in &batch {
            match message {
                Message::Usage(r) => {
                    insert_usage(tx, r, false)?;
                }
                Message::Call(r, audit) => {
                    let id = insert_usage(tx, r, true)?;
                    insert_audit(tx, audit, id)?;
                }
                Message::Audit(r) => insert_audit(tx, r, None)?,
                Message::Flush(_) => {}
            }
        }
        for (key, t) in &days {
            tx.execute(
                "INSERT INTO gateway_usage_daily (dimension, day, grp, requests, errors,
                     local_requests, prompt_tokens, completion_tokens, cost, unpriced,
                     ttft_ms_sum, ttft_count, duration_ms_sum)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 ON CONFLICT (dimension, day, grp) DO UPDATE SET
                     requests = gateway_usage_daily.requests + excluded.requests,
                     errors = gateway_usage_daily.errors + excluded.errors,
                     local_requests = gateway_usage_daily.local_requests + excluded.local_requests,
                     prompt_tokens = gateway_usage_daily.prompt_tokens + excluded.prompt_tokens,
                     completion_tokens = gateway_usage_daily.completion_tokens + excluded.completion_tokens,
                     cost = gateway_usage_daily.cost + excluded.cost,
                     unpriced = gateway_usage_daily.unpriced + excluded.unpriced,
                     ttft_ms_sum = gateway_usage_daily.ttft_ms_sum + excluded.ttft_ms_sum,
                     ttft_count = gateway_usage_daily.ttft_count + excluded.ttft_count,
                     duration_ms_sum = gateway_usage_daily.duration_ms_sum + excluded.duration_ms_sum",
                hearth_store::params![
                    key.dimension.as_str(),
                    key.day,
                    &key.group,
                    t.requests,
                    t.errors,
                    t.local,
                    t.prompt,
                    t.completion,
                    t.cost,
                    t.unpriced,
                    t.ttft_sum,
                    t.ttft_count,
                    t.duration_sum,
                ],
            )?;
        }
        Ok(())
    })?;
    for message in batch {
        if let Message::Flush(done) = message {
            waiting.push(done);
        }
    }
    Ok(())
}

/// Writes `records` in one transaction, their daily rollups with them: what the ledger's
/// writer does with each batch (for tools that load a ledger, such as `hearth bench spend`).
pub fn write_records(db: &Database, records: Vec<UsageRecord>) -> Result<(), StoreError> {
    write_batch(
        db,
        records.into_iter().map(Message::Usage).collect(),
        &mut Vec::new(),
    )
}

/// The UTC day (days since 1970-01-01) unix time `at` falls in.
pub fn day_of(at: f64) -> i64 {
    (at / 86_400.0).floor() as i64
}

/// One row of the daily rollup: a day and a group of one dimension.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct DayKey {
    dimension: GroupBy,
    day: i64,
    group: String,
}

/// What requests without a key are grouped under (no key name has a space).
const NO_KEY: &str = "(no key)";

impl DayKey {
    /// The four rows a request counts in: its key's, route's, model's and deployment's.
    fn of(r: &UsageRecord) -> [DayKey; 4] {
        let day = day_of(r.at);
        let key = |dimension, group: &str| DayKey {
            dimension,
            day,
            group: group.to_owned(),
        };
        [
            key(GroupBy::Key, r.api_key.as_deref().unwrap_or(NO_KEY)),
            key(GroupBy::Route, &r.route),
            key(GroupBy::Model, &r.model),
            key(GroupBy::Deployment, &r.deployment),
        ]
    }
}

#[derive(Debug, Default)]
struct DayTotals {
    requests: u64,
    errors: u64,
    local: u64,
    prompt: u64,
    completion: u64,
    cost: f64,
    unpriced: u64,
    ttft_sum: f64,
    ttft_count: u64,
    duration_sum: f64,
}

impl DayTotals {
    fn add(&mut self, r: &UsageRecord) {
        self.requests += 1;
        self.errors += u64::from(r.status != "ok");
        self.local += u64::from(r.local);
        self.prompt += r.prompt_tokens;
        self.completion += r.completion_tokens;
        self.cost += r.cost;
        self.unpriced += u64::from(!r.priced);
        if let Some(t) = r.ttft_ms {
            self.ttft_sum += t;
            self.ttft_count += 1;
        }
        self.duration_sum += r.duration_ms;
    }
}

/// How `usage report` groups requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum GroupBy {
    Key,
    #[default]
    Route,
    Model,
    Deployment,
}

impl GroupBy {
    pub fn parse(text: &str) -> Option<GroupBy> {
        Some(match text {
            "key" => GroupBy::Key,
            "route" => GroupBy::Route,
            "model" => GroupBy::Model,
            "deployment" => GroupBy::Deployment,
            _ => return None,
        })
    }

    fn column(self) -> &'static str {
        match self {
            GroupBy::Key => "COALESCE(api_key, '(no key)')",
            GroupBy::Route => "route",
            GroupBy::Model => "model",
            GroupBy::Deployment => "deployment",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Key => "key",
            GroupBy::Route => "route",
            GroupBy::Model => "model",
            GroupBy::Deployment => "deployment",
        }
    }
}

/// Spend, tokens and savings of one group of requests.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct UsageRow {
    pub group: String,
    pub requests: u64,
    pub errors: u64,
    pub local_requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// USD actually spent (upstream prices + local machine time).
    pub cost: f64,
    /// USD the same tokens would have cost on the reference model.
    pub reference_cost: f64,
    pub savings: f64,
    /// `savings / reference_cost` in percent; `None` when nothing would have been spent.
    pub savings_percent: Option<f64>,
    /// Requests that had no price (their cost counts as 0).
    pub unpriced_requests: u64,
    pub mean_ttft_ms: Option<f64>,
    pub mean_duration_ms: f64,
}

/// What the savings figures assume, printed with them.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Assumptions {
    pub reference_model: String,
    /// USD per 1M input / output tokens.
    pub reference_input_price: f64,
    pub reference_output_price: f64,
    pub reference_price_source: String,
    pub machine_cost_per_hour: f64,
    pub local_cost_method: String,
    pub upstream_cost_method: String,
}

/// `GET /v1/usage`: spend, tokens and savings, by group and in total.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct UsageReport {
    /// Unix seconds the report starts at; `null`: all of the ledger.
    pub since: Option<f64>,
    /// `key`, `route`, `model` or `deployment`.
    pub by: String,
    pub rows: Vec<UsageRow>,
    pub total: UsageRow,
    pub assumptions: Assumptions,
}

/// Builds the report from the ledger.
pub fn report(
    db: &Database,
    since: Option<f64>,
    only_keys: Option<&[String]>,
    by: GroupBy,
    prices: &PriceTable,
    reference_model: &str,
    machine_cost_per_hour: f64,
) -> Result<UsageReport, crate::GatewayError> {
    reference_price(prices, reference_model)?;
    let sql = format!(
        "SELECT {group}, COUNT(*), SUM(CASE WHEN status <> 'ok' THEN 1 ELSE 0 END), SUM(local),
                SUM(prompt_tokens), SUM(completion_tokens), SUM(cost), SUM(1 - priced),
                AVG(ttft_ms), AVG(duration_ms)
         FROM gateway_usage
         WHERE at >= $1{keys}
         GROUP BY 1 ORDER BY SUM(cost) DESC, 1",
        group = by.column(),
        keys = keys_filter(only_keys, 2),
    );
    let raw = db.query(
        &sql,
        &with_keys(hearth_store::Value::from(since.unwrap_or(0.0)), only_keys),
        raw_row,
    )?;
    assemble(
        raw,
        since,
        by,
        prices,
        reference_model,
        machine_cost_per_hour,
    )
}

/// The same report from the daily rollups: whole UTC days from `from_day` (days since
/// 1970-01-01) on, one row read per day and group however many requests they hold.
pub fn daily_report(
    db: &Database,
    from_day: i64,
    by: GroupBy,
    prices: &PriceTable,
    reference_model: &str,
    machine_cost_per_hour: f64,
) -> Result<UsageReport, crate::GatewayError> {
    reference_price(prices, reference_model)?;
    let raw = db.query(
        "SELECT grp, SUM(requests), SUM(errors), SUM(local_requests), SUM(prompt_tokens),
                SUM(completion_tokens), SUM(cost), SUM(unpriced),
                CASE WHEN SUM(ttft_count) > 0 THEN SUM(ttft_ms_sum) / SUM(ttft_count) END,
                SUM(duration_ms_sum) / SUM(requests)
         FROM gateway_usage_daily
         WHERE dimension = $1 AND day >= $2
         GROUP BY grp ORDER BY SUM(cost) DESC, grp",
        hearth_store::params![by.as_str(), from_day],
        raw_row,
    )?;
    assemble(
        raw,
        Some(from_day as f64 * 86_400.0),
        by,
        prices,
        reference_model,
        machine_cost_per_hour,
    )
}

/// One day of one group, from the daily rollups.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayRow {
    /// Days since 1970-01-01 (UTC).
    #[serde(rename = "day_number")]
    pub day: i64,
    pub group: String,
    pub requests: u64,
    pub errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: f64,
    /// What the same tokens would have cost on the reference model.
    pub reference_cost: f64,
    pub savings: f64,
}

/// Spend per UTC day and group from `from_day` on, from the daily rollups.
pub fn daily_series(
    db: &Database,
    from_day: i64,
    by: GroupBy,
    prices: &PriceTable,
    reference_model: &str,
) -> Result<Vec<DayRow>, crate::GatewayError> {
    let reference = reference_price(prices, reference_model)?;
    Ok(db.query(
        "SELECT day, grp, requests, errors, prompt_tokens, completion_tokens, cost
         FROM gateway_usage_daily
         WHERE dimension = $1 AND day >= $2
         ORDER BY day, grp",
        hearth_store::params![by.as_str(), from_day],
        |r| day_row(r, &reference),
    )?)
}

fn day_row(
    r: &hearth_store::Row<'_>,
    reference: &crate::prices::Price,
) -> Result<DayRow, StoreError> {
    let (prompt, completion, cost): (u64, u64, f64) = (r.get(4)?, r.get(5)?, r.get(6)?);
    let reference_cost = reference.cost(prompt, completion);
    Ok(DayRow {
        day: r.get(0)?,
        group: r.get(1)?,
        requests: r.get(2)?,
        errors: r.get(3)?,
        prompt_tokens: prompt,
        completion_tokens: completion,
        cost,
        reference_cost,
        savings: reference_cost - cost,
    })
}

/// [`daily_series`] computed from every request row instead of the rollups: what the
/// rollups save a report from (benchmarks compare the two; tests check they agree).
pub fn daily_series_from_rows(
    db: &Database,
    from_day: i64,
    by: GroupBy,
    prices: &PriceTable,
    reference_model: &str,
) -> Result<Vec<DayRow>, crate::GatewayError> {
    let reference = reference_price(prices, reference_model)?;
    let day = match db.backend() {
        hearth_store::Backend::Sqlite => "CAST(at / 86400 AS INTEGER)",
        hearth_store::Backend::Postgres => "FLOOR(at / 86400)::BIGINT",
    };
    let sql = format!(
        "SELECT {day}, {group}, COUNT(*), SUM(CASE WHEN status <> 'ok' THEN 1 ELSE 0 END),
                SUM(prompt_tokens), SUM(completion_tokens), SUM(cost)
         FROM gateway_usage WHERE at >= $1
         GROUP BY 1, 2 ORDER BY 1, 2",
        group = by.column(),
    );
    Ok(db.query(
        &sql,
        hearth_store::params![from_day as f64 * 86_400.0],
        |r| day_row(r, &reference),
    )?)
}

/// USD spent by key `name` from UTC day `from_day` on, from the daily rollups.
pub fn spent_from_day(db: &Database, name: &str, from_day: i64) -> Result<f64, StoreError> {
    Ok(db
        .query_one(
            "SELECT COALESCE(SUM(cost), 0) FROM gateway_usage_daily
             WHERE dimension = 'key' AND grp = $1 AND day >= $2",
            hearth_store::params![name, from_day],
            |r| r.get(0),
        )?
        .unwrap_or(0.0))
}

/// One request of the request log (never its text: that is only in the audit log, and only
/// with `[gateway] audit_raw_text`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedRequest {
    pub id: i64,
    #[serde(flatten)]
    pub record: UsageRecord,
}

/// The newest requests, newest first: at most `limit`, older than id `before` when given,
/// only those keys' with `only_keys`.
pub fn request_log(
    db: &Database,
    limit: usize,
    before: Option<i64>,
    only_keys: Option<&[String]>,
) -> Result<Vec<LoggedRequest>, StoreError> {
    let sql = format!(
        "SELECT id, at, api_key, route, deployment, model, local, status, prompt_tokens,
                completion_tokens, ttft_ms, duration_ms, busy_ms, cost, priced, fallbacks
         FROM gateway_usage WHERE id < $1{keys} ORDER BY id DESC LIMIT {limit}",
        keys = keys_filter(only_keys, 2),
    );
    db.query(
        &sql,
        &with_keys(
            hearth_store::Value::from(before.unwrap_or(i64::MAX)),
            only_keys,
        ),
        |r| {
            Ok(LoggedRequest {
                id: r.get(0)?,
                record: UsageRecord {
                    at: r.get(1)?,
                    api_key: r.get(2)?,
                    route: r.get(3)?,
                    deployment: r.get(4)?,
                    model: r.get(5)?,
                    local: r.get(6)?,
                    status: r.get(7)?,
                    prompt_tokens: r.get(8)?,
                    completion_tokens: r.get(9)?,
                    ttft_ms: r.get(10)?,
                    duration_ms: r.get(11)?,
                    busy_ms: r.get(12)?,
                    cost: r.get(13)?,
                    priced: r.get(14)?,
                    fallbacks: r.get(15)?,
                },
            })
        },
    )
}

fn reference_price(
    prices: &PriceTable,
    reference_model: &str,
) -> Result<crate::prices::Price, crate::GatewayError> {
    prices.get(reference_model).ok_or_else(|| {
        let known: Vec<&str> = prices.names().collect();
        crate::GatewayError::invalid(
            "reference",
            format!(
                "'{reference_model}' is not in the price table; known: {}",
                known.join(", ")
            ),
        )
    })
}

/// ` AND api_key IN ($first, …)` for `only_keys`: the names are bound, never spliced in; no
/// names at all matches nothing.
fn keys_filter(only_keys: Option<&[String]>, first: usize) -> String {
    match only_keys {
        None => String::new(),
        Some([]) => " AND 1 = 0".to_owned(),
        Some(keys) => format!(
            " AND api_key IN ({})",
            (0..keys.len())
                .map(|i| format!("${}", i + first))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn with_keys(first: hearth_store::Value, only_keys: Option<&[String]>) -> Vec<hearth_store::Value> {
    let mut params = vec![first];
    params.extend(
        only_keys
            .unwrap_or_default()
            .iter()
            .map(hearth_store::Value::from),
    );
    params
}

fn raw_row(r: &hearth_store::Row<'_>) -> Result<RawRow, StoreError> {
    Ok(RawRow {
        group: r.get(0)?,
        requests: r.get(1)?,
        errors: r.get(2)?,
        local: r.get(3)?,
        prompt: r.get(4)?,
        completion: r.get(5)?,
        cost: r.get(6)?,
        unpriced: r.get(7)?,
        ttft: r.get(8)?,
        duration: r.get(9)?,
    })
}

fn assemble(
    raw: Vec<RawRow>,
    since: Option<f64>,
    by: GroupBy,
    prices: &PriceTable,
    reference_model: &str,
    machine_cost_per_hour: f64,
) -> Result<UsageReport, crate::GatewayError> {
    let reference = reference_price(prices, reference_model)?;
    let row = |r: &RawRow| {
        let reference_cost = reference.cost(r.prompt, r.completion);
        let savings = reference_cost - r.cost;
        UsageRow {
            group: r.group.clone(),
            requests: r.requests,
            errors: r.errors,
            local_requests: r.local,
            prompt_tokens: r.prompt,
            completion_tokens: r.completion,
            cost: r.cost,
            reference_cost,
            savings,
            savings_percent: (reference_cost > 0.0).then(|| 100.0 * savings / reference_cost),
            unpriced_requests: r.unpriced,
            mean_ttft_ms: r.ttft,
            mean_duration_ms: r.duration,
        }
    };
    let rows: Vec<UsageRow> = raw.iter().map(row).collect();
    let n = raw.iter().map(|r| r.requests).sum::<u64>().max(1) as f64;
    let ttft_n: u64 = raw
        .iter()
        .filter(|r| r.ttft.is_some())
        .map(|r| r.requests)
        .sum();
    let total = row(&RawRow {
        group: "total".into(),
        requests: raw.iter().map(|r| r.requests).sum(),
        errors: raw.iter().map(|r| r.errors).sum(),
        local: raw.iter().map(|r| r.local).sum(),
        prompt: raw.iter().map(|r| r.prompt).sum(),
        completion: raw.iter().map(|r| r.completion).sum(),
        // An empty sum of f64 is -0.0: + 0.0 makes it 0.
        cost: raw.iter().map(|r| r.cost).sum::<f64>() + 0.0,
        unpriced: raw.iter().map(|r| r.unpriced).sum(),
        ttft: (ttft_n > 0).then(|| {
            raw.iter()
                .filter_map(|r| r.ttft.map(|t| t * r.requests as f64))
                .sum::<f64>()
                / ttft_n as f64
        }),
        duration: raw
            .iter()
            .map(|r| r.duration * r.requests as f64)
            .sum::<f64>()
            / n
            + 0.0,
    });
    Ok(UsageReport {
        since,
        by: by.as_str().into(),
        rows,
        total,
        assumptions: Assumptions {
            reference_model: reference_model.to_owned(),
            reference_input_price: reference.input,
            reference_output_price: reference.output,
            reference_price_source: prices.source(reference_model),
            machine_cost_per_hour,
            local_cost_method: format!(
                "engine-busy seconds × ${machine_cost_per_hour}/hour of this machine; \
                 concurrent requests each count their own busy time, so local cost is an upper bound"
            ),
            upstream_cost_method: format!(
                "tokens reported by the upstream × the price table (shipped list prices as of \
                 {SHIPPED_PRICES_AS_OF}, overridable in [gateway.prices])"
            ),
        },
    })
}

struct RawRow {
    group: String,
    requests: u64,
    errors: u64,
    local: u64,
    prompt: u64,
    completion: u64,
    cost: f64,
    unpriced: u64,
    ttft: Option<f64>,
    duration: f64,
}

/// USD spent by `key` since `since` (unix seconds).
pub(crate) fn spent_since(db: &Database, key: &str, since: f64) -> Result<f64, StoreError> {
    let spent = db.query_one(
        "SELECT COALESCE(SUM(cost), 0) FROM gateway_usage WHERE api_key = $1 AND at >= $2",
        hearth_store::params![key, since],
        |r| r.get(0),
    )?;
    Ok(spent.unwrap_or(0.0))
}

/// What a request that left the machine carried, as the audit log kept it (only with
/// `[gateway] audit_raw_text`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestText {
    /// The request body as it was sent upstream (redacted on `redact` routes).
    pub request: Option<String>,
    /// The answer's text as the client received it.
    pub answer: Option<String>,
    pub redactions: BTreeMap<String, usize>,
}

/// The audit log's text of the requests `ids` (rows of [`request_log`]) that left the machine
/// with their text kept; ids without any are left out.
pub fn request_texts(db: &Database, ids: &[i64]) -> Result<BTreeMap<i64, RequestText>, StoreError> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let list = ids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let rows = db.query(
        &format!(
            "SELECT usage_id, raw_request, raw_answer, redactions FROM gateway_audit
             WHERE usage_id IN ({list})
               AND (raw_request IS NOT NULL OR raw_answer IS NOT NULL)"
        ),
        &[],
        |r| {
            let redactions: String = r.get(3)?;
            Ok((
                r.get::<i64>(0)?,
                RequestText {
                    request: r.get(1)?,
                    answer: r.get(2)?,
                    redactions: serde_json::from_str(&redactions).unwrap_or_default(),
                },
            ))
        },
    )?;
    Ok(rows.into_iter().collect())
}

/// The newest audit records, newest first.
pub fn audit_log(db: &Database, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
    db.query(
        "SELECT at, route, deployment, model, privacy, outcome, prompt_tokens,
                completion_tokens, redactions, raw_request, raw_answer
         FROM gateway_audit ORDER BY id DESC LIMIT $1",
        hearth_store::params![limit],
        |r| {
            let redactions: String = r.get(8)?;
            Ok(AuditRecord {
                at: r.get(0)?,
                route: r.get(1)?,
                deployment: r.get(2)?,
                model: r.get(3)?,
                privacy: r.get(4)?,
                outcome: r.get(5)?,
                prompt_tokens: r.get(6)?,
                completion_tokens: r.get(7)?,
                redactions: serde_json::from_str(&redactions).unwrap_or_default(),
                raw_request: r.get(9)?,
                raw_answer: r.get(10)?,
            })
        },
    )
}

/// A `since` duration back from now: a decimal number of minutes, hours or days.
pub const SINCE_DURATION: &str = "^[0-9]+(\\.[0-9]+)?[mhd]$";
/// A `since` in unix seconds: a decimal number.
pub const SINCE_SECONDS: &str = "^[0-9]+(\\.[0-9]+)?$";

/// A decimal number as [`SINCE_DURATION`] and [`SINCE_SECONDS`] write it; one too large for an
/// f64 is the largest one.
fn decimal(text: &str) -> Option<f64> {
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|f| !digits(f)) {
        return None;
    }
    text.parse::<f64>().ok().map(|n| n.min(f64::MAX))
}

/// Reads a `--since` value: a duration back from `now` (`30m`, `24h`, `7d`), a UTC date
/// (`2026-11-01`) or unix seconds; nothing else (the API description states the same).
pub fn parse_since(text: &str, now: f64) -> Result<f64, String> {
    let bad = || {
        format!("'{text}' is not a time: use a duration back from now (30m, 24h, 7d), a date (2026-11-01) or unix seconds")
    };
    if let Some((unit, secs)) = [("m", 60.0), ("h", 3600.0), ("d", 86_400.0)]
        .iter()
        .find(|(u, _)| text.ends_with(u))
    {
        let n = decimal(&text[..text.len() - unit.len()]).ok_or_else(bad)?;
        return Ok((now - n * secs).max(0.0));
    }
    let parts: Vec<&str> = text.split('-').collect();
    if parts.len() == 3 {
        let widths = [4, 2, 2];
        let well_formed = parts
            .iter()
            .zip(widths)
            .all(|(p, w)| p.len() == w && p.bytes().all(|b| b.is_ascii_digit()));
        if !well_formed {
            return Err(bad());
        }
        let (y, m, d) = (
            parts[0].parse::<i32>().map_err(|_| bad())?,
            parts[1].parse::<u8>().map_err(|_| bad())?,
            parts[2].parse::<u8>().map_err(|_| bad())?,
        );
        let midnight = hearth_types::clock::utc_midnight(y, m, d).ok_or_else(bad)?;
        return Ok(midnight as f64);
    }
    decimal(text).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(at: f64, key: Option<&str>, route: &str, status: &str, cost: f64) -> UsageRecord {
        UsageRecord {
            at,
            api_key: key.map(str::to_owned),
            route: route.into(),
            deployment: format!("local/{route}"),
            model: route.into(),
            local: true,
            status: status.into(),
            prompt_tokens: 100,
            completion_tokens: 20,
            ttft_ms: (status == "ok").then_some(50.0),
            duration_ms: 200.0,
            busy_ms: 150.0,
            cost,
            priced: cost > 0.0,
            fallbacks: 0,
        }
    }

    #[test]
    fn daily_rollups_match_the_ledger_and_are_filled_from_older_rows() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("hearth.db")).unwrap();
        // A ledger from before the rollups: its rows are summed by the migration.
        db.migrate_each("gateway", &MIGRATIONS[..4]).unwrap();
        let day = 20_000.0 * 86_400.0;
        let before = [
            usage(day + 10.0, Some("shop"), "chat", "ok", 0.5),
            usage(day + 20.0, None, "chat", "error", 0.0),
        ];
        // The rows alone, as the writer stored them before it kept rollups.
        db.write(|tx| {
            before
                .iter()
                .try_for_each(|r| insert_usage(tx, r, false).map(drop))
        })
        .unwrap();
        migrate(&db).unwrap();
        // New records: the same day and the next, another route, in one batch.
        let after = [
            usage(day + 30.0, Some("shop"), "chat", "ok", 0.25),
            usage(day + 86_400.0 + 5.0, Some("shop"), "embed", "ok", 0.125),
            usage(day + 86_400.0 + 6.0, Some("crm"), "chat", "ok", 1.0),
        ];
        write_batch(
            &db,
            after.iter().cloned().map(Message::Usage).collect(),
            &mut Vec::new(),
        )
        .unwrap();
        let prices = PriceTable::new(&Default::default());
        for by in [
            GroupBy::Key,
            GroupBy::Route,
            GroupBy::Model,
            GroupBy::Deployment,
        ] {
            let raw = report(&db, Some(day), None, by, &prices, "gpt-4o", 1.0).unwrap();
            let rolled = daily_report(&db, day_of(day), by, &prices, "gpt-4o", 1.0).unwrap();
            assert_eq!(raw.rows.len(), rolled.rows.len(), "{by:?}");
            for (a, b) in raw.rows.iter().zip(&rolled.rows) {
                assert_eq!(a.group, b.group);
                assert_eq!(
                    (a.requests, a.errors, a.local_requests, a.unpriced_requests),
                    (b.requests, b.errors, b.local_requests, b.unpriced_requests)
                );
                assert_eq!(
                    (a.prompt_tokens, a.completion_tokens),
                    (b.prompt_tokens, b.completion_tokens)
                );
                assert!((a.cost - b.cost).abs() < 1e-12, "{by:?} {a:?} {b:?}");
                assert_eq!(a.mean_ttft_ms, b.mean_ttft_ms);
                assert!((a.mean_duration_ms - b.mean_duration_ms).abs() < 1e-9);
            }
            assert!((raw.total.savings - rolled.total.savings).abs() < 1e-12);
        }
        let series = daily_series(&db, day_of(day), GroupBy::Key, &prices, "gpt-4o").unwrap();
        let from_rows =
            daily_series_from_rows(&db, day_of(day), GroupBy::Key, &prices, "gpt-4o").unwrap();
        assert_eq!(series.len(), from_rows.len());
        for (a, b) in series.iter().zip(&from_rows) {
            assert_eq!(
                (a.day, &a.group, a.requests, a.errors),
                (b.day, &b.group, b.requests, b.errors)
            );
            assert!((a.cost - b.cost).abs() < 1e-12);
        }
        let cells: Vec<(i64, &str, u64)> = series
            .iter()
            .map(|p| (p.day, p.group.as_str(), p.requests))
            .collect();
        let d = day_of(day);
        assert_eq!(
            cells,
            [
                (d, "(no key)", 1),
                (d, "shop", 2),
                (d + 1, "crm", 1),
                (d + 1, "shop", 1)
            ]
        );
        assert_eq!(spent_from_day(&db, "shop", d).unwrap(), 0.875);
        assert_eq!(spent_from_day(&db, "shop", d + 1).unwrap(), 0.125);
        let log = request_log(&db, 2, None, None).unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].record, after[2]);
        let older = request_log(&db, 10, Some(log[1].id), Some(&["shop".to_owned()])).unwrap();
        assert_eq!(
            older.iter().map(|r| r.record.at).collect::<Vec<_>>(),
            [day + 30.0, day + 10.0]
        );
    }

    #[test]
    fn since_takes_durations_dates_and_unix_seconds() {
        let now = 1_800_000_000.0;
        assert_eq!(parse_since("7d", now).unwrap(), now - 7.0 * 86_400.0);
        assert_eq!(parse_since("30m", now).unwrap(), now - 1800.0);
        assert_eq!(parse_since("2026-11-01", now).unwrap(), 1_793_491_200.0);
        assert_eq!(parse_since("1700000000", now).unwrap(), 1_700_000_000.0);
        let err = parse_since("yesterday", now).unwrap_err();
        assert!(err.contains("yesterday"), "{err}");
        // Exactly the forms the API description gives: no exponents, signs, spaces or
        // impossible dates.
        for bad in [
            "1e3",
            "+5",
            "-5",
            " 7d",
            "7 d",
            ".5h",
            "5.h",
            "2026-02-30",
            "26-11-01",
            "inf",
        ] {
            assert!(parse_since(bad, now).is_err(), "{bad} was taken");
        }
        assert_eq!(parse_since("1.5h", now).unwrap(), now - 5400.0);
        assert_eq!(parse_since(&"9".repeat(400), now).unwrap(), f64::MAX);
    }

    fn record(
        key: Option<&str>,
        route: &str,
        local: bool,
        p: u64,
        c: u64,
        cost: f64,
    ) -> UsageRecord {
        UsageRecord {
            at: 1000.0,
            api_key: key.map(str::to_owned),
            route: route.into(),
            deployment: format!("x/{route}"),
            model: route.into(),
            local,
            status: "ok".into(),
            prompt_tokens: p,
            completion_tokens: c,
            ttft_ms: Some(10.0),
            duration_ms: 20.0,
            busy_ms: 0.0,
            cost,
            priced: true,
            fallbacks: 0,
        }
    }

    #[test]
    fn the_report_groups_spend_and_prices_savings_from_the_same_tokens() {
        for url in hearth_testdata::store_urls() {
            let dir = tempfile::tempdir().unwrap();
            let db = match url {
                None => Database::open(&dir.path().join("hearth.db")).unwrap(),
                Some(url) => Database::connect(&url).unwrap(),
            };
            report_on(&db);
        }
    }

    fn report_on(db: &Database) {
        migrate(db).unwrap();
        let ledger = Ledger::start(db.clone());
        ledger.record(record(Some("a"), "chat", true, 1_000_000, 0, 0.10));
        ledger.record(record(Some("a"), "chat", true, 0, 1_000_000, 0.20));
        ledger.record(record(Some("b"), "big", false, 1_000_000, 1_000_000, 3.0));
        let mut failed = record(Some("c"), "big", false, 10, 0, 0.0);
        failed.status = "upstream_error".into();
        failed.priced = false;
        ledger.record(failed);
        ledger.flush();
        let prices = PriceTable::new(&BTreeMap::new());
        let report = report(db, None, None, GroupBy::Route, &prices, "gpt-4o", 1.0).unwrap();
        assert_eq!(report.rows.len(), 2);
        let chat = report.rows.iter().find(|r| r.group == "chat").unwrap();
        // gpt-4o: $2.50 per 1M in, $10 per 1M out.
        assert!((chat.reference_cost - 12.5).abs() < 1e-9);
        assert!((chat.cost - 0.30).abs() < 1e-9);
        assert!((chat.savings_percent.unwrap() - 100.0 * 12.2 / 12.5).abs() < 1e-9);
        assert_eq!(chat.local_requests, 2);
        assert_eq!((chat.errors, chat.unpriced_requests), (0, 0));
        let big = report.rows.iter().find(|r| r.group == "big").unwrap();
        assert_eq!((big.requests, big.errors, big.unpriced_requests), (2, 1, 1));
        assert_eq!(report.total.requests, 4);
        assert!((report.total.cost - 3.30).abs() < 1e-9);
        let by_key =
            super::report(db, Some(2000.0), None, GroupBy::Key, &prices, "gpt-4o", 1.0).unwrap();
        assert!(by_key.rows.is_empty());
        let only_b = super::report(
            db,
            None,
            Some(&["b".to_owned()]),
            GroupBy::Key,
            &prices,
            "gpt-4o",
            1.0,
        )
        .unwrap();
        assert_eq!(only_b.total.requests, 1);
        assert_eq!(only_b.rows[0].group, "b");
        let two = ["a".to_owned(), "c".to_owned()];
        let a_and_c =
            super::report(db, None, Some(&two), GroupBy::Key, &prices, "gpt-4o", 1.0).unwrap();
        assert_eq!(a_and_c.total.requests, 3);
        let none =
            super::report(db, None, Some(&[]), GroupBy::Key, &prices, "gpt-4o", 1.0).unwrap();
        assert_eq!(none.total.requests, 0);
        assert!(super::report(
            db,
            None,
            Some(&["a".to_owned()]),
            GroupBy::Key,
            &prices,
            "no-such-model",
            1.0
        )
        .is_err());
    }
}
