//! API keys per app or team: stored hashed (SHA-256 of a 256-bit random key), each with the
//! API families it may call (its [`Scope`]s), the routes it may use, requests/min and
//! tokens/min limits and a spend budget per period. What a key creates (support sessions) and
//! what it spends belongs to its owner: its tenant when it has one, else the key itself.
//!
//! Budgets hold under concurrency: a request reserves its estimated cost (the most expensive
//! deployment of its route, its prompt at 3 bytes per token and its max_tokens) before it is
//! dispatched, and settles the real cost when it ends; a request that would take spent +
//! reserved past the budget is refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_store::{Database, StoreError};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::metrics::GatewayMetrics;
use crate::{unix_now_f64, GatewayError};

/// The period a budget covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// A UTC calendar day.
    Day,
    /// A UTC calendar month.
    Month,
    /// The key's whole life.
    Total,
}

impl Period {
    pub fn parse(text: &str) -> Option<Period> {
        Some(match text {
            "day" => Period::Day,
            "month" => Period::Month,
            "total" => Period::Total,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
            Period::Total => "total",
        }
    }

    /// The period containing unix time `now`: (start, end) in unix seconds.
    pub fn bounds(self, now: f64) -> (f64, f64) {
        const DAY: i64 = 86_400;
        let secs = now.floor() as i64;
        match self {
            Period::Total => (0.0, f64::INFINITY),
            Period::Day => {
                let start = secs - secs.rem_euclid(DAY);
                (start as f64, (start + DAY) as f64)
            }
            Period::Month => {
                let (start, end) = hearth_types::clock::utc_month_bounds(secs);
                (start as f64, end as f64)
            }
        }
    }
}

/// An API family a key may call. `admin` includes every other scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Models: chat, completions, embeddings, the model list.
    Inference,
    /// Recommendations, similar items, search, the shopping assistant, reading items/users.
    RecsRead,
    /// Writing and deleting items and users, recording events.
    RecsWrite,
    /// Support sessions: start, message, read (its owner's only).
    Support,
    /// The usage ledger (its owner's only).
    Usage,
    /// Everything, every owner's data included, and the operator routes (`/metrics`).
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 6] = [
        Scope::Inference,
        Scope::RecsRead,
        Scope::RecsWrite,
        Scope::Support,
        Scope::Usage,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Inference => "inference",
            Scope::RecsRead => "recs:read",
            Scope::RecsWrite => "recs:write",
            Scope::Support => "support",
            Scope::Usage => "usage",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        let text = text.trim().to_ascii_lowercase().replace(['.', '_'], ":");
        Scope::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// What `hearth keys create` gives a key when no `--scope` is named.
    pub const DEFAULT: [Scope; 1] = [Scope::Inference];
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Scope::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("unknown scope '{text}'; {}", Scope::list()))
        })
    }
}

impl Scope {
    /// "use inference, recs:read, …" for error messages.
    pub fn list() -> String {
        let names: Vec<_> = Scope::ALL.iter().map(|s| s.as_str()).collect();
        format!("use {}", names.join(", "))
    }
}

/// What a key may do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    /// The API families it may call.
    pub scopes: Vec<Scope>,
    /// Keys of one tenant share what they create (support sessions) and see each other's
    /// usage; a key without a tenant is its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Model names (route aliases or local models) it may use; empty: all.
    pub routes: Vec<String>,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u64>,
    /// USD per period.
    pub budget: Option<f64>,
    pub period: Period,
    pub created: f64,
    pub revoked: Option<f64>,
}

impl KeyInfo {
    pub fn allows(&self, model: &str) -> bool {
        self.routes.is_empty() || self.routes.iter().any(|r| r == model)
    }

    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }

    /// Who owns what this key creates: `tenant:NAME`, or `key:ID`.
    pub fn owner(&self) -> String {
        match &self.tenant {
            Some(tenant) => format!("tenant:{tenant}"),
            None => format!("key:{}", self.id),
        }
    }
}

impl crate::Caller {
    /// Whether the caller may use `scope`. The operator (a `[server] api_keys` key, an open
    /// server, the apps' own calls) may use every scope.
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.key.as_ref().is_none_or(|k| k.has_scope(scope))
    }

    /// The owner of what this caller creates; `None` for the operator, who sees everything.
    /// A key with the admin scope creates as its owner but sees every owner's data.
    pub fn owner(&self) -> Option<String> {
        self.key.as_ref().map(|k| k.owner())
    }

    /// Whether the caller may see data owned by `owner` (`None`: the operator's).
    pub fn may_see(&self, owner: Option<&str>) -> bool {
        match &self.key {
            None => true,
            Some(k) if k.has_scope(Scope::Admin) => true,
            Some(k) => owner == Some(k.owner().as_str()),
        }
    }
}

/// Limits for a new key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewKey {
    pub name: String,
    /// Empty: [`Scope::DEFAULT`].
    pub scopes: Vec<Scope>,
    pub tenant: Option<String>,
    pub routes: Vec<String>,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u64>,
    pub budget: Option<f64>,
    pub period: Option<Period>,
}

fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A token bucket refilled at `capacity` per minute.
#[derive(Debug)]
struct Bucket {
    capacity: f64,
    level: f64,
    at: Instant,
}

impl Bucket {
    fn new(capacity: f64) -> Self {
        Bucket {
            capacity,
            level: capacity,
            at: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let add = now.duration_since(self.at).as_secs_f64() * self.capacity / 60.0;
        self.level = (self.level + add).min(self.capacity);
        self.at = now;
    }

    /// Takes `amount` or says how long until it could.
    fn take(&mut self, amount: f64) -> Result<(), Duration> {
        self.refill();
        // A single request bigger than the whole bucket waits for a full bucket.
        let need = amount.min(self.capacity);
        if self.level >= need {
            self.level -= amount;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (need - self.level) * 60.0 / self.capacity,
            ))
        }
    }

    /// Corrects an earlier take (negative: give back).
    fn adjust(&mut self, amount: f64) {
        self.refill();
        self.level = (self.level - amount).min(self.capacity);
    }
}

/// A key's running state in this process.
#[derive(Debug)]
struct KeyState {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
    period_start: f64,
    period_end: f64,
    spent: f64,
    reserved: f64,
    /// Requests admitted and not yet settled.
    in_flight: u32,
}

/// What a request holds while it runs; settles (or gives back) when it ends.
#[derive(Debug)]
pub struct Reservation {
    hold: Hold,
    pub key: Arc<KeyInfo>,
    tokens: f64,
    cost: f64,
    settled: bool,
    metrics: Option<Arc<GatewayMetrics>>,
}

#[derive(Debug)]
enum Hold {
    /// This process's state of the key (SQLite: one process serves the database).
    Local(Arc<Mutex<KeyState>>),
    /// A row of `gateway_reservations`, shared by every replica of the database.
    Shared { db: Database, id: String },
}

impl Reservation {
    /// The request's real tokens and cost.
    pub fn settle(mut self, tokens: u64, cost: f64) {
        self.finish(tokens as f64, cost);
    }

    fn finish(&mut self, tokens: f64, cost: f64) {
        if self.settled {
            return;
        }
        self.settled = true;
        let spent = match &self.hold {
            Hold::Local(state) => {
                let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
                state.reserved -= self.cost;
                state.spent += cost;
                state.in_flight = state.in_flight.saturating_sub(1);
                if let Some(bucket) = state.tokens.as_mut() {
                    bucket.adjust(tokens - self.tokens);
                }
                Some(state.spent)
            }
            Hold::Shared { db, id } => {
                match settle_shared(db, &self.key, id, tokens - self.tokens, cost) {
                    Ok(spent) => spent,
                    Err(e) => {
                        // The reservation stays and expires: charged what it reserved.
                        tracing::warn!(key = %self.key.name, error = %e,
                            "a request's cost could not be settled; its reservation will be charged when it expires");
                        None
                    }
                }
            }
        };
        if let (Some(budget), Some(metrics), Some(spent)) = (self.key.budget, &self.metrics, spent)
        {
            metrics.set_budget_left(&self.key.name, budget - spent);
        }
    }
}

impl Drop for Reservation {
    /// A request that ended without settling (cancelled, or failed before it knew its
    /// tokens) is charged what it reserved: a budget errs on the side of holding.
    fn drop(&mut self) {
        let (tokens, cost) = (self.tokens, self.cost);
        self.finish(tokens, cost);
    }
}

/// Shared limit decisions commit without waiting for the disk: a key's decisions queue on
/// its row, and a flush per decision would cap a key at a few hundred requests/s. They stay
/// atomic and exact across replicas; a crash of PostgreSQL itself may forget the last
/// fraction of a second of them (its `wal_writer_delay`), never a replica's crash.
///
/// Locks the key's limits row for the transaction, which so commits.
const LOCK_KEY_ROW: &str = "SELECT set_config('synchronous_commit', 'off', true)
     FROM gateway_limits WHERE key_id = $1 FOR UPDATE";

/// How long a shared reservation holds before it counts as its replica's loss (charged what
/// it reserved): longer than any request runs.
const RESERVATION_LEASE: f64 = 600.0;

/// A token bucket kept in a row: its level at `at` (Unix seconds), refilled at `capacity` a
/// minute. `None` (a limit the key did not have before) starts full.
fn refilled(level: Option<f64>, at: Option<f64>, capacity: f64, now: f64) -> f64 {
    match (level, at) {
        (Some(level), Some(at)) => (level + (now - at).max(0.0) * capacity / 60.0).min(capacity),
        _ => capacity,
    }
}

/// Takes `amount` from a bucket at `level` (a request bigger than the whole bucket waits for
/// a full one): the new level, or how long until it could.
fn take_from(level: f64, capacity: f64, amount: f64) -> Result<f64, Duration> {
    let need = amount.min(capacity);
    if level >= need {
        Ok(level - amount)
    } else {
        Err(Duration::from_secs_f64((need - level) * 60.0 / capacity))
    }
}

/// A key's shared limits row, as read under its lock.
struct LimitsRow {
    period_start: f64,
    spent: f64,
    requests: (Option<f64>, Option<f64>),
    tokens: (Option<f64>, Option<f64>),
    revoked: bool,
}

/// Settles a shared reservation: its real cost joins the period's spend, its tokens estimate
/// is corrected by `token_delta`. Returns the spend after, or `None` when the reservation
/// had expired (and was charged what it reserved). A reservation the database lost (it
/// crashed after the admission) is charged the real cost: a budget errs on holding. The
/// key's row is locked first, as an admission locks it, so the two never wait on each other.
fn settle_shared(
    db: &Database,
    key: &KeyInfo,
    id: &str,
    token_delta: f64,
    cost: f64,
) -> Result<Option<f64>, StoreError> {
    let now = unix_now_f64();
    let (start, _) = key.period.bounds(now);
    db.write(|tx| {
        // Four round trips: begin, the key's row locked (and this commit made not to wait
        // for the disk), the reservation gone and its cost added, commit.
        tx.execute(LOCK_KEY_ROW, hearth_store::params![&key.id])?;
        tx.query_one(
            "WITH gone AS (DELETE FROM gateway_reservations WHERE id = $6 RETURNING charged)
             UPDATE gateway_limits SET
                 spent = CASE WHEN period_start = $2 THEN spent + $3 ELSE $3 END,
                 period_start = $2,
                 tokens_level = CASE WHEN tokens_level IS NULL THEN NULL
                                     ELSE LEAST($5, tokens_level - $4) END
             WHERE key_id = $1 AND NOT EXISTS (SELECT 1 FROM gone WHERE charged = 1)
             RETURNING spent",
            hearth_store::params![
                &key.id,
                start,
                cost,
                token_delta,
                key.tokens_per_minute.map_or(f64::MAX, |t| t as f64),
                id
            ],
            |r| r.get::<f64>(0),
        )
    })
}

/// The keys table, cached, with each key's limits and spend.
pub struct KeyStore {
    db: Database,
    cache: Mutex<KeyCache>,
    states: Mutex<HashMap<String, Arc<Mutex<KeyState>>>>,
    metrics: Option<Arc<GatewayMetrics>>,
    /// `[gateway] max_concurrent_per_key`.
    max_concurrent: Option<u32>,
    /// Limits decided in the database, for every replica at once (PostgreSQL).
    shared: bool,
    /// Keys whose shared limits row this process has made sure of.
    limit_rows: Mutex<std::collections::HashSet<String>>,
}

#[derive(Default)]
struct KeyCache {
    by_hash: HashMap<String, Arc<KeyInfo>>,
    loaded: Option<Instant>,
    any: bool,
}

/// How long a server trusts its cached copy of the keys table (its limits and scopes;
/// revocation is asked of the database on every request).
const KEY_CACHE: Duration = Duration::from_secs(2);

impl KeyStore {
    pub(crate) fn new(db: Database, metrics: Option<Arc<GatewayMetrics>>) -> Self {
        KeyStore {
            shared: db.backend() == hearth_store::Backend::Postgres,
            db,
            cache: Mutex::new(KeyCache::default()),
            states: Mutex::new(HashMap::new()),
            metrics,
            max_concurrent: None,
            limit_rows: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// At most `limit` requests of one key in flight at once (`None`: no limit).
    pub(crate) fn with_max_concurrent(mut self, limit: Option<u32>) -> Self {
        self.max_concurrent = limit;
        self
    }

    /// Creates a key; returns the secret (shown once, never stored) and its record.
    pub fn create(&self, new: NewKey) -> Result<(String, KeyInfo), GatewayError> {
        let name = new.name.trim();
        if name.is_empty() || name.len() > 64 || name.contains(char::is_whitespace) {
            return Err(GatewayError::invalid(
                "name",
                "a key name is 1–64 characters without spaces",
            ));
        }
        let tenant = new.tenant.as_deref().map(str::trim);
        if let Some(t) = tenant {
            if t.is_empty() || t.len() > 64 || t.contains(char::is_whitespace) {
                return Err(GatewayError::invalid(
                    "tenant",
                    "a tenant name is 1–64 characters without spaces",
                ));
            }
        }
        let mut scopes = if new.scopes.is_empty() {
            Scope::DEFAULT.to_vec()
        } else {
            new.scopes
        };
        scopes.sort();
        scopes.dedup();
        if let Some(b) = new.budget {
            if !(b.is_finite() && b >= 0.0) {
                return Err(GatewayError::invalid(
                    "budget",
                    "must be a number ≥ 0 (USD)",
                ));
            }
        }
        let secret = format!(
            "hk-{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let info = KeyInfo {
            id: uuid::Uuid::new_v4().simple().to_string(),
            name: name.to_owned(),
            scopes,
            tenant: tenant.map(str::to_owned),
            routes: new.routes,
            requests_per_minute: new.requests_per_minute,
            tokens_per_minute: new.tokens_per_minute,
            budget: new.budget,
            period: new.period.unwrap_or(Period::Month),
            created: unix_now_f64(),
            revoked: None,
        };
        let inserted = self.db.execute(
            "INSERT INTO gateway_keys (id, name, hash, routes, requests_per_minute,
                 tokens_per_minute, budget, period, created, scopes, tenant)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            hearth_store::params![
                &info.id,
                &info.name,
                hash(&secret),
                serde_json::to_string(&info.routes).expect("strings serialize"),
                info.requests_per_minute,
                info.tokens_per_minute,
                info.budget,
                info.period.as_str(),
                info.created,
                serde_json::to_string(&info.scopes).expect("scopes serialize"),
                &info.tenant,
            ],
        );
        match inserted {
            Ok(_) => {}
            Err(e) if e.is_unique_violation() => {
                return Err(GatewayError::invalid(
                    "name",
                    format!("a key named '{name}' exists already (names are never reused)"),
                ))
            }
            Err(e) => return Err(GatewayError::Store(e)),
        }
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).loaded = None;
        Ok((secret, info))
    }

    /// Every key, revoked ones included.
    pub fn list(&self) -> Result<Vec<KeyInfo>, StoreError> {
        Ok(self.load()?.into_iter().map(|(_, k)| k).collect())
    }

    /// Revokes the key named `name`; false if there is none.
    pub fn revoke(&self, name: &str) -> Result<bool, StoreError> {
        let n = self.db.execute(
            "UPDATE gateway_keys SET revoked = $2 WHERE name = $1 AND revoked IS NULL",
            hearth_store::params![name, unix_now_f64()],
        )?;
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).loaded = None;
        Ok(n > 0)
    }

    fn load(&self) -> Result<Vec<(String, KeyInfo)>, StoreError> {
        self.db.query(
            "SELECT id, name, hash, routes, requests_per_minute, tokens_per_minute, budget,
                    period, created, revoked, scopes, tenant
             FROM gateway_keys ORDER BY created",
            hearth_store::params![],
            |r| {
                let routes: String = r.get(3)?;
                let period: String = r.get(7)?;
                let scopes: String = r.get(10)?;
                Ok((
                    r.get::<String>(2)?,
                    KeyInfo {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        // A scope list this version cannot read grants nothing.
                        scopes: serde_json::from_str(&scopes).unwrap_or_default(),
                        tenant: r.get(11)?,
                        routes: serde_json::from_str(&routes).unwrap_or_default(),
                        requests_per_minute: r.get(4)?,
                        tokens_per_minute: r.get(5)?,
                        budget: r.get(6)?,
                        period: Period::parse(&period).unwrap_or(Period::Month),
                        created: r.get(8)?,
                        revoked: r.get(9)?,
                    },
                ))
            },
        )
    }

    /// Whether any key was ever created (a server with keys requires one). Once true it stays
    /// true (revoked keys are kept); until then the table is asked every time, so the first
    /// key made by another process or replica closes the open door from the next request.
    pub fn any(&self) -> Result<bool, StoreError> {
        self.refresh()?;
        if self.cache.lock().unwrap_or_else(|p| p.into_inner()).any {
            return Ok(true);
        }
        let exists = self
            .db
            .query_one(
                "SELECT 1 FROM gateway_keys LIMIT 1",
                hearth_store::params![],
                |r| r.get::<i64>(0),
            )?
            .is_some();
        if exists {
            self.cache.lock().unwrap_or_else(|p| p.into_inner()).loaded = None;
            self.refresh()?;
        }
        Ok(exists)
    }

    fn refresh(&self) -> Result<(), StoreError> {
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.loaded.is_some_and(|at| at.elapsed() < KEY_CACHE) {
                return Ok(());
            }
        }
        let rows = self.load()?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.any = !rows.is_empty();
        cache.by_hash = rows
            .into_iter()
            .filter(|(_, k)| k.revoked.is_none())
            .map(|(h, k)| (h, Arc::new(k)))
            .collect();
        cache.loaded = Some(Instant::now());
        Ok(())
    }

    /// The live key whose secret is `presented`. The cache gives its scopes and limits;
    /// whether it exists and is live is the database's word, asked each time (one read by
    /// the unique hash): a key just created by another process or replica works there at
    /// once, and a key revoked anywhere admits nothing from the next request on, whatever
    /// its limits. An unknown secret costs that one read, never a reload of the table.
    pub fn authenticate(&self, presented: &str) -> Result<Option<Arc<KeyInfo>>, StoreError> {
        self.refresh()?;
        let digest = hash(presented);
        let live = self
            .db
            .query_one(
                "SELECT revoked FROM gateway_keys WHERE hash = $1",
                hearth_store::params![&digest],
                |r| r.get::<Option<f64>>(0),
            )?
            .is_some_and(|revoked| revoked.is_none());
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if !live {
            cache.by_hash.remove(&digest);
            return Ok(None);
        }
        if let Some(found) = cache.by_hash.get(&digest) {
            return Ok(Some(found.clone()));
        }
        // Made since this cache was loaded.
        cache.loaded = None;
        drop(cache);
        self.refresh()?;
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        Ok(cache.by_hash.get(&digest).cloned())
    }

    fn state(&self, key: &KeyInfo) -> Result<Arc<Mutex<KeyState>>, StoreError> {
        if let Some(state) = self
            .states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key.id)
        {
            return Ok(state.clone());
        }
        let now = unix_now_f64();
        let (start, end) = key.period.bounds(now);
        let spent = crate::ledger::spent_since(&self.db, &key.name, start)?;
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        Ok(states
            .entry(key.id.clone())
            .or_insert_with(|| {
                Arc::new(Mutex::new(KeyState {
                    requests: key.requests_per_minute.map(|r| Bucket::new(r as f64)),
                    tokens: key.tokens_per_minute.map(|t| Bucket::new(t as f64)),
                    period_start: start,
                    period_end: end,
                    spent,
                    reserved: 0.0,
                    in_flight: 0,
                }))
            })
            .clone())
    }

    /// Admits a request of `key` estimated at `tokens` and `cost` USD, or says why not.
    /// On PostgreSQL the decision is the database's (one transaction holding the key's row),
    /// so every replica enforces one budget and one set of rate limits, and a key revoked on
    /// any of them admits nothing more.
    pub fn admit(
        &self,
        key: &Arc<KeyInfo>,
        tokens: u64,
        cost: f64,
    ) -> Result<Reservation, GatewayError> {
        let limited = key.budget.is_some()
            || key.requests_per_minute.is_some()
            || key.tokens_per_minute.is_some()
            || self.max_concurrent.is_some();
        if self.shared && limited {
            return self.admit_shared(key, tokens, cost);
        }
        let state = self.state(key).map_err(GatewayError::Store)?;
        {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            let now = unix_now_f64();
            if now >= s.period_end {
                let (start, end) = key.period.bounds(now);
                s.period_start = start;
                s.period_end = end;
                s.spent = 0.0;
            }
            if let Some(budget) = key.budget {
                if s.spent + s.reserved + cost > budget {
                    let retry_after = if s.period_end.is_finite() {
                        Some((s.period_end - now).ceil().max(1.0) as u64)
                    } else {
                        None
                    };
                    return Err(GatewayError::BudgetExceeded {
                        key: key.name.clone(),
                        budget,
                        spent: s.spent,
                        reserved: s.reserved,
                        retry_after,
                    });
                }
            }
            if self.max_concurrent.is_some_and(|most| s.in_flight >= most) {
                return Err(GatewayError::RateLimited {
                    key: key.name.clone(),
                    limit: "max_concurrent_per_key",
                    retry_after: 1,
                });
            }
            if let Some(bucket) = s.requests.as_mut() {
                bucket.take(1.0).map_err(|wait| GatewayError::RateLimited {
                    key: key.name.clone(),
                    limit: "requests_per_minute",
                    retry_after: wait.as_secs().max(1),
                })?;
            }
            if let Some(bucket) = s.tokens.as_mut() {
                if let Err(wait) = bucket.take(tokens as f64) {
                    // Give the request back its slot: it was not admitted.
                    if let Some(r) = s.requests.as_mut() {
                        r.adjust(-1.0);
                    }
                    return Err(GatewayError::RateLimited {
                        key: key.name.clone(),
                        limit: "tokens_per_minute",
                        retry_after: wait.as_secs().max(1),
                    });
                }
            }
            s.reserved += cost;
            s.in_flight += 1;
        }
        Ok(Reservation {
            hold: Hold::Local(state),
            key: key.clone(),
            tokens: tokens as f64,
            cost,
            settled: false,
            metrics: self.metrics.clone(),
        })
    }
}

impl KeyStore {
    /// Makes sure `key` has its shared limits row, its spend this period taken from the
    /// ledger when the row is new.
    fn limits_row(&self, key: &KeyInfo, start: f64) -> Result<(), StoreError> {
        if self
            .limit_rows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key.id)
        {
            return Ok(());
        }
        let spent = crate::ledger::spent_since(&self.db, &key.name, start)?;
        self.db.execute(
            "INSERT INTO gateway_limits (key_id, period_start, spent) VALUES ($1, $2, $3)
             ON CONFLICT (key_id) DO NOTHING",
            hearth_store::params![&key.id, start, spent],
        )?;
        self.limit_rows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.id.clone());
        Ok(())
    }

    /// [`KeyStore::admit`] in the database: the key's row is locked, reservations whose
    /// replica died are charged, and the budget, concurrency and bucket checks see every
    /// replica's requests. A refusal still records what it charged and refilled.
    fn admit_shared(
        &self,
        key: &Arc<KeyInfo>,
        tokens: u64,
        cost: f64,
    ) -> Result<Reservation, GatewayError> {
        let now = unix_now_f64();
        let (start, end) = key.period.bounds(now);
        self.limits_row(key, start)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let max_concurrent = self.max_concurrent;
        let decision = self.db.write(|tx| {
            // Five round trips: begin, the key's row locked and read, what running requests
            // hold, the decision written, commit.
            let row = tx.query_one(
                "SELECT l.period_start, l.spent, l.requests_level, l.requests_at,
                        l.tokens_level, l.tokens_at, k.revoked,
                        set_config('synchronous_commit', 'off', true)
                 FROM gateway_limits l JOIN gateway_keys k ON k.id = l.key_id
                 WHERE l.key_id = $1 FOR UPDATE OF l",
                hearth_store::params![&key.id],
                |r| {
                    Ok(LimitsRow {
                        period_start: r.get(0)?,
                        spent: r.get(1)?,
                        requests: (r.get(2)?, r.get(3)?),
                        tokens: (r.get(4)?, r.get(5)?),
                        revoked: r.get::<Option<f64>>(6)?.is_some(),
                    })
                },
            )?;
            let Some(row) = row.filter(|r| !r.revoked) else {
                return Ok(Err(GatewayError::KeyRevoked {
                    key: key.name.clone(),
                }));
            };
            // Reservations whose replica died are charged what they reserved; long after,
            // they go. (One statement sees the rows as they were before it: the lost ones
            // are taken off what is held.)
            let (expired, lost, held, holding): (f64, i64, f64, i64) = tx
                .query_one(
                    "WITH lost AS (UPDATE gateway_reservations SET charged = 1
                                   WHERE key_id = $1 AND charged = 0 AND expires <= $2
                                   RETURNING cost),
                          purged AS (DELETE FROM gateway_reservations
                                     WHERE key_id = $1 AND charged = 1 AND expires <= $3)
                     SELECT (SELECT COALESCE(SUM(cost), 0) FROM lost),
                            (SELECT COUNT(*) FROM lost),
                            COALESCE(SUM(cost), 0), COUNT(*)
                     FROM gateway_reservations WHERE key_id = $1 AND charged = 0",
                    hearth_store::params![&key.id, now, now - RESERVATION_LEASE],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )?
                .unwrap_or((0.0, 0, 0.0, 0));
            let mut spent = if row.period_start == start {
                row.spent
            } else {
                0.0
            };
            spent += expired;
            let (reserved, in_flight) = ((held - expired).max(0.0), holding - lost);
            let mut requests = key
                .requests_per_minute
                .map(|c| refilled(row.requests.0, row.requests.1, c as f64, now));
            let mut tokens_level = key
                .tokens_per_minute
                .map(|c| refilled(row.tokens.0, row.tokens.1, c as f64, now));
            let decision = (|| {
                if let Some(budget) = key.budget {
                    if spent + reserved + cost > budget {
                        return Err(GatewayError::BudgetExceeded {
                            key: key.name.clone(),
                            budget,
                            spent,
                            reserved,
                            retry_after: end
                                .is_finite()
                                .then(|| (end - now).ceil().max(1.0) as u64),
                        });
                    }
                }
                if max_concurrent.is_some_and(|most| in_flight >= most as i64) {
                    return Err(GatewayError::RateLimited {
                        key: key.name.clone(),
                        limit: "max_concurrent_per_key",
                        retry_after: 1,
                    });
                }
                let rate_limited = |limit, wait: Duration| GatewayError::RateLimited {
                    key: key.name.clone(),
                    limit,
                    retry_after: wait.as_secs().max(1),
                };
                let requests_after = match (requests, key.requests_per_minute) {
                    (Some(level), Some(c)) => Some(
                        take_from(level, c as f64, 1.0)
                            .map_err(|w| rate_limited("requests_per_minute", w))?,
                    ),
                    _ => None,
                };
                let tokens_after = match (tokens_level, key.tokens_per_minute) {
                    (Some(level), Some(c)) => Some(
                        take_from(level, c as f64, tokens as f64)
                            .map_err(|w| rate_limited("tokens_per_minute", w))?,
                    ),
                    _ => None,
                };
                requests = requests_after.or(requests);
                tokens_level = tokens_after.or(tokens_level);
                Ok(())
            })();
            // The reservation (when admitted) and the row's new state, in one statement.
            tx.execute(
                "WITH held AS (INSERT INTO gateway_reservations (id, key_id, cost, tokens, expires)
                               SELECT $7, $1, $8, $9, $10 WHERE $11 = 1)
                 UPDATE gateway_limits SET period_start = $2, spent = $3,
                     requests_level = $4, requests_at = $5, tokens_level = $6, tokens_at = $5
                 WHERE key_id = $1",
                hearth_store::params![
                    &key.id,
                    start,
                    spent,
                    requests,
                    now,
                    tokens_level,
                    &id,
                    cost,
                    tokens as f64,
                    now + RESERVATION_LEASE,
                    decision.is_ok() as i64
                ],
            )?;
            Ok(decision.map(|()| spent))
        })?;
        let spent = decision?;
        if let (Some(budget), Some(metrics)) = (key.budget, &self.metrics) {
            metrics.set_budget_left(&key.name, budget - spent);
        }
        Ok(Reservation {
            hold: Hold::Shared {
                db: self.db.clone(),
                id,
            },
            key: key.clone(),
            tokens: tokens as f64,
            cost,
            settled: false,
            metrics: self.metrics.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key store on each backend: SQLite (limits kept by this process) and PostgreSQL
    /// (limits decided in the database).
    fn stores() -> Vec<(tempfile::TempDir, KeyStore)> {
        hearth_testdata::store_urls()
            .into_iter()
            .map(|url| {
                let dir = tempfile::tempdir().unwrap();
                let db = match url {
                    None => Database::open(&dir.path().join("hearth.db")).unwrap(),
                    Some(url) => Database::connect(&url).unwrap(),
                };
                crate::ledger::migrate(&db).unwrap();
                (dir, KeyStore::new(db, None))
            })
            .collect()
    }

    /// A key's spend this period and what running requests reserve, as the store decides
    /// with them.
    fn spent_and_reserved(keys: &KeyStore, key: &KeyInfo) -> (f64, f64) {
        if !keys.shared {
            let state = keys.state(key).unwrap();
            let s = state.lock().unwrap();
            return (s.spent, s.reserved);
        }
        let spent = keys
            .db
            .query_one(
                "SELECT spent FROM gateway_limits WHERE key_id = $1",
                hearth_store::params![&key.id],
                |r| r.get(0),
            )
            .unwrap()
            .unwrap();
        let reserved = keys
            .db
            .query_one(
                "SELECT COALESCE(SUM(cost), 0) FROM gateway_reservations
                 WHERE key_id = $1 AND charged = 0",
                hearth_store::params![&key.id],
                |r| r.get(0),
            )
            .unwrap()
            .unwrap();
        (spent, reserved)
    }

    #[test]
    fn periods_are_utc_calendar_days_and_months() {
        // 2026-02-14T10:00:00Z
        let t = 1_771_063_200.0;
        let (start, end) = Period::Month.bounds(t);
        assert_eq!(start, 1_769_904_000.0); // 2026-02-01
        assert_eq!(end, 1_772_323_200.0); // 2026-03-01
        let (start, end) = Period::Day.bounds(t);
        assert_eq!((start, end), (1_771_027_200.0, 1_771_113_600.0));
        let (_, end) = Period::Month.bounds(1_796_083_200.0); // 2026-12-01
        assert_eq!(end, 1_798_761_600.0); // 2027-01-01
    }

    #[test]
    fn keys_are_stored_hashed_and_revocable() {
        for (_dir, keys) in stores() {
            let (secret, info) = keys
                .create(NewKey {
                    name: "team-a".into(),
                    routes: vec!["chat".into()],
                    ..Default::default()
                })
                .unwrap();
            assert!(secret.starts_with("hk-") && secret.len() > 60);
            let stored: String = keys
                .db
                .query_one(
                    "SELECT hash FROM gateway_keys",
                    hearth_store::params![],
                    |r| r.get(0),
                )
                .unwrap()
                .unwrap();
            assert_ne!(stored, secret);
            assert_eq!(stored, hash(&secret));
            let found = keys.authenticate(&secret).unwrap().unwrap();
            assert_eq!(found.name, info.name);
            assert!(found.allows("chat") && !found.allows("other"));
            assert!(keys.authenticate("hk-wrong").unwrap().is_none());
            assert!(keys
                .create(NewKey {
                    name: "team-a".into(),
                    ..Default::default()
                })
                .is_err());
            assert!(keys.revoke("team-a").unwrap());
            assert!(keys.authenticate(&secret).unwrap().is_none());
            assert!(keys.any().unwrap());
        }
    }

    #[test]
    fn a_budget_holds_under_many_concurrent_reservations() {
        for (_dir, keys) in stores() {
            let (secret, _) = keys
                .create(NewKey {
                    name: "app".into(),
                    budget: Some(1.0),
                    ..Default::default()
                })
                .unwrap();
            let key = keys.authenticate(&secret).unwrap().unwrap();
            let keys = Arc::new(keys);
            let admitted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            // 16 threads × 50 requests reserving 0.03 each, settling 0.02: at most 1.0 spent.
            let threads: Vec<_> = (0..16)
                .map(|_| {
                    let (keys, key, admitted) = (keys.clone(), key.clone(), admitted.clone());
                    std::thread::spawn(move || {
                        for _ in 0..50 {
                            if let Ok(r) = keys.admit(&key, 10, 0.03) {
                                admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                std::thread::yield_now();
                                r.settle(10, 0.02);
                            }
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let (spent, reserved) = spent_and_reserved(&keys, &key);
            assert!(spent <= 1.0 + 1e-9, "spent {spent}");
            assert!(reserved.abs() < 1e-9, "reserved {reserved}");
            let n = admitted.load(std::sync::atomic::Ordering::Relaxed);
            // Every admitted request settled at 0.02; the last ones are refused once
            // spent + 0.03 would pass 1.0, so 49 or 50 fit.
            assert!((49..=50).contains(&n), "admitted {n}");
            assert!(
                (spent - 0.02 * n as f64).abs() < 1e-9,
                "spent {spent}, {n} admitted"
            );
        }
    }

    #[test]
    fn requests_per_minute_are_limited_with_a_wait() {
        for (_dir, keys) in stores() {
            let (secret, _) = keys
                .create(NewKey {
                    name: "slow".into(),
                    requests_per_minute: Some(3),
                    ..Default::default()
                })
                .unwrap();
            let key = keys.authenticate(&secret).unwrap().unwrap();
            for _ in 0..3 {
                keys.admit(&key, 1, 0.0).unwrap().settle(1, 0.0);
            }
            match keys.admit(&key, 1, 0.0) {
                Err(GatewayError::RateLimited {
                    limit, retry_after, ..
                }) => {
                    assert_eq!(limit, "requests_per_minute");
                    assert!((1..=20).contains(&retry_after), "{retry_after}");
                }
                other => panic!("expected a rate limit, got {other:?}"),
            }
        }
    }

    #[test]
    fn an_unsettled_reservation_is_charged_what_it_reserved() {
        for (_dir, keys) in stores() {
            let (secret, _) = keys
                .create(NewKey {
                    name: "c".into(),
                    budget: Some(0.05),
                    ..Default::default()
                })
                .unwrap();
            let key = keys.authenticate(&secret).unwrap().unwrap();
            drop(keys.admit(&key, 10, 0.04).unwrap());
            assert!(matches!(
                keys.admit(&key, 10, 0.02),
                Err(GatewayError::BudgetExceeded { .. })
            ));
        }
    }

    /// Three key stores on one PostgreSQL database stand for three replicas.
    fn replicas(n: usize) -> Vec<Arc<KeyStore>> {
        let url = hearth_testdata::postgres_database();
        (0..n)
            .map(|_| {
                let db = Database::connect(&url).unwrap();
                crate::ledger::migrate(&db).unwrap();
                Arc::new(KeyStore::new(db, None))
            })
            .collect()
    }

    /// The key `secret` as a replica knows it (one created on another replica is known at
    /// once).
    fn known(keys: &KeyStore, secret: &str) -> Arc<KeyInfo> {
        keys.authenticate(secret)
            .unwrap()
            .expect("a key made on another replica is known at once")
    }

    /// 100 requests at once spread over the replicas: exactly as many are admitted as the
    /// limit allows, whichever replica each reaches.
    fn admitted_across(replicas: &[Arc<KeyStore>], secret: &str, cost: f64) -> usize {
        let admitted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let held = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..100)
            .map(|i| {
                let keys = replicas[i % replicas.len()].clone();
                let key = known(&keys, secret);
                let (admitted, held) = (admitted.clone(), held.clone());
                std::thread::spawn(move || {
                    if let Ok(r) = keys.admit(&key, 10, cost) {
                        admitted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        // Held until every request was decided: none settles early.
                        held.lock().unwrap().push(r);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        admitted.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[test]
    fn replicas_on_one_database_enforce_one_budget_and_one_rate_limit_exactly() {
        let replicas = replicas(3);
        let (secret, budget_key) = replicas[0]
            .create(NewKey {
                name: "shop".into(),
                budget: Some(1.0),
                ..Default::default()
            })
            .unwrap();
        // 0.1 each: 10 fit in 1.0 (0.1 is not exact in binary: 10 × 0.1 sums to 0.999…).
        assert_eq!(admitted_across(&replicas, &secret, 0.1), 10);
        let (spent, reserved) = spent_and_reserved(&replicas[1], &budget_key);
        assert!(spent <= 1.0 + 1e-9, "spent {spent}");
        assert!(
            reserved.abs() < 1e-9,
            "every reservation settled: {reserved}"
        );
        assert!(
            (spent - 1.0).abs() < 1e-9,
            "ten charged what they reserved: {spent}"
        );
        // Spent is spent on every replica.
        let key = known(&replicas[2], &secret);
        assert!(matches!(
            replicas[2].admit(&key, 1, 0.01),
            Err(GatewayError::BudgetExceeded { .. })
        ));

        let (secret, _) = replicas[1]
            .create(NewKey {
                name: "bursty".into(),
                requests_per_minute: Some(10),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(admitted_across(&replicas, &secret, 0.0), 10);
    }

    #[test]
    fn a_key_revoked_on_one_replica_admits_nothing_on_another() {
        let replicas = replicas(2);
        let (secret, _) = replicas[0]
            .create(NewKey {
                name: "leaked".into(),
                budget: Some(10.0),
                ..Default::default()
            })
            .unwrap();
        // Replica 1 has the key cached as live.
        let key = known(&replicas[1], &secret);
        replicas[1].admit(&key, 1, 0.01).unwrap().settle(1, 0.01);
        assert!(replicas[0].revoke("leaked").unwrap());
        assert!(matches!(
            replicas[1].admit(&key, 1, 0.01),
            Err(GatewayError::KeyRevoked { .. })
        ));
    }

    /// Two processes on one store (a server and the CLI beside it, or two replicas): the
    /// first key made by one closes the other's open door at once, a key made by one works on
    /// the other at once, and a key revoked by one, even without limits, admits nothing on
    /// the other from the next request (no cache lets it through).
    #[test]
    fn keys_made_and_revoked_by_one_process_count_at_once_in_another() {
        for url in hearth_testdata::store_urls() {
            let dir = tempfile::tempdir().unwrap();
            let open = || {
                let db = match &url {
                    None => Database::open(&dir.path().join("hearth.db")).unwrap(),
                    Some(url) => Database::connect(url).unwrap(),
                };
                crate::ledger::migrate(&db).unwrap();
                KeyStore::new(db, None)
            };
            let (server, cli) = (open(), open());
            assert!(!server.any().unwrap());
            let (secret, _) = cli
                .create(NewKey {
                    name: "open".into(),
                    ..Default::default()
                })
                .unwrap();
            assert!(server.any().unwrap(), "{url:?}: the server stays open");
            assert_eq!(known(&server, &secret).name, "open");
            let (other, _) = cli
                .create(NewKey {
                    name: "second".into(),
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(known(&server, &other).name, "second");
            assert!(cli.revoke("open").unwrap());
            assert!(
                server.authenticate(&secret).unwrap().is_none(),
                "{url:?}: a revoked key still admitted"
            );
            assert!(server.authenticate("hk-not-a-key").unwrap().is_none());
            assert!(server.authenticate(&other).unwrap().is_some());
        }
    }

    #[test]
    fn a_dead_replicas_reservation_expires_charged_what_it_reserved() {
        let keys = replicas(1).pop().unwrap();
        let keys = Arc::try_unwrap(keys)
            .ok()
            .unwrap()
            .with_max_concurrent(Some(1));
        let (secret, info) = keys
            .create(NewKey {
                name: "k".into(),
                budget: Some(1.0),
                ..Default::default()
            })
            .unwrap();
        let key = keys.authenticate(&secret).unwrap().unwrap();
        let running = keys.admit(&key, 10, 0.3).unwrap();
        // Its replica dies: the reservation is never settled nor dropped.
        std::mem::forget(running);
        assert!(matches!(
            keys.admit(&key, 10, 0.3),
            Err(GatewayError::RateLimited {
                limit: "max_concurrent_per_key",
                ..
            })
        ));
        // Its lease runs out.
        keys.db
            .execute(
                "UPDATE gateway_reservations SET expires = 0 WHERE key_id = $1",
                hearth_store::params![&info.id],
            )
            .unwrap();
        keys.admit(&key, 10, 0.3).unwrap().settle(10, 0.1);
        let (spent, reserved) = spent_and_reserved(&keys, &info);
        assert!(
            (spent - 0.4).abs() < 1e-9,
            "0.3 charged for the lost one + 0.1: {spent}"
        );
        assert!(reserved.abs() < 1e-9);

        // A request that outlives its lease is charged its reservation once, not again when
        // it settles late.
        let slow = keys.admit(&key, 10, 0.2).unwrap();
        let expire = || {
            keys.db
                .execute(
                    "UPDATE gateway_reservations SET expires = $2 WHERE key_id = $1",
                    hearth_store::params![&info.id, unix_now_f64() - 1.0],
                )
                .unwrap()
        };
        expire();
        keys.admit(&key, 10, 0.1).unwrap().settle(10, 0.1);
        slow.settle(10, 0.05);
        let (spent, _) = spent_and_reserved(&keys, &info);
        assert!((spent - 0.7).abs() < 1e-9, "0.4 + 0.2 + 0.1: {spent}");
        // A reservation the database lost (it crashed after admitting) is charged what the
        // request cost.
        let lost = keys.admit(&key, 10, 0.1).unwrap();
        keys.db
            .execute(
                "DELETE FROM gateway_reservations WHERE key_id = $1 AND charged = 0",
                hearth_store::params![&info.id],
            )
            .unwrap();
        lost.settle(10, 0.05);
        let (spent, _) = spent_and_reserved(&keys, &info);
        assert!((spent - 0.75).abs() < 1e-9, "0.7 + 0.05: {spent}");
    }
}
