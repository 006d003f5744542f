//! Recommendation routes: per user, per item ("similar"), per anonymous session.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::Json;
use hearth_core::recs::serve::{ItemFilter, Recommendation};
use hearth_core::recs::{limits, Event, ItemId, RecsError, UserId};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::AppState;
use hearth_types::ErrorCode;

/// Most items one request may ask for.
const MAX_N: usize = 500;
/// Most recent events of a user that shape their recommendations.
const HISTORY: usize = 500;

impl From<RecsError> for ApiError {
    fn from(e: RecsError) -> Self {
        // A model failure keeps the gateway's status (an unknown model is a 404, a busy
        // one a 503), not a blanket 500.
        let e = match e {
            RecsError::Embedding(inner) => return ApiError::from(inner),
            other => other,
        };
        let param = match &e {
            RecsError::InvalidParameter { param, .. } => Some(param.clone()),
            RecsError::UnknownItem(_) => Some("id".to_owned()),
            _ => None,
        };
        ApiError::of(e.code(), &e, param, None)
    }
}

/// A 400 naming the field at fault.
pub(crate) fn invalid(param: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message).with_param(param)
}

fn number<T: std::str::FromStr>(
    query: &HashMap<String, String>,
    name: &str,
) -> Result<Option<T>, ApiError> {
    query
        .get(name)
        .map(|v| {
            v.parse::<T>()
                .map_err(|_| invalid(name, format!("'{name}' must be a number, got '{v}'")))
        })
        .transpose()
}

/// `n` and the item filter from a query string.
fn n_and_filter(query: &HashMap<String, String>) -> Result<(usize, ItemFilter), ApiError> {
    const KNOWN: [&str; 5] = ["n", "category", "min_price", "max_price", "in_stock"];
    if let Some(unknown) = query.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(invalid(
            unknown.clone(),
            format!(
                "unknown parameter '{unknown}' (known: {})",
                KNOWN.join(", ")
            ),
        ));
    }
    let n = check_n(number::<usize>(query, "n")?.unwrap_or(10))?;
    let in_stock = match query.get("in_stock").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => {
            return Err(invalid(
                "in_stock",
                format!("'in_stock' must be true or false, got '{other}'"),
            ))
        }
    };
    Ok((
        n,
        ItemFilter {
            category: query.get("category").cloned(),
            min_price: number(query, "min_price")?,
            max_price: number(query, "max_price")?,
            in_stock,
        },
    ))
}

pub(crate) fn check_n(n: usize) -> Result<usize, ApiError> {
    if n == 0 || n > MAX_N {
        return Err(invalid("n", format!("'n' must be between 1 and {MAX_N}")));
    }
    Ok(n)
}

fn list(data: Vec<Recommendation>, version: u64) -> Json<Value> {
    Json(json!({"object": "list", "model_version": version, "data": data}))
}

/// `GET /v1/recommendations/{user_id}`: seen items excluded; a user with no history gets
/// popular items.
pub async fn for_user(
    State(state): State<AppState>,
    Path(user): Path<String>,
    ApiQuery(query): ApiQuery<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let (n, filter) = n_and_filter(&query)?;
    let recommender = state.platform.recommender().await?;
    let history = user_history(&state, UserId(user)).await?;
    let data = recommender.recommend(&history, n, &filter);
    Ok(list(data, recommender.version()))
}

/// A user's most recent stored events.
pub(crate) async fn user_history(state: &AppState, user: UserId) -> Result<Vec<Event>, ApiError> {
    let store = state.platform.recs_store()?;
    blocking(move || Ok(store.user_events(&user, HISTORY)?)).await
}

/// `GET /v1/items/{id}/similar`.
pub async fn similar(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let (n, filter) = n_and_filter(&query)?;
    let recommender = state.platform.recommender().await?;
    let data = recommender.similar(&ItemId(id), n, &filter)?;
    Ok(list(data, recommender.version()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionEvent {
    pub item: String,
    #[serde(default = "view", rename = "type")]
    pub kind: String,
}

fn view() -> String {
    "view".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// The visitor's recent events, oldest first.
    pub events: Vec<SessionEvent>,
    #[serde(default)]
    pub n: Option<usize>,
    #[serde(default, flatten)]
    pub filter: SessionFilter,
}

#[derive(Debug, Default, Deserialize)]
pub struct SessionFilter {
    pub category: Option<String>,
    pub min_price: Option<f64>,
    pub max_price: Option<f64>,
    #[serde(default)]
    pub in_stock: bool,
}

/// `POST /v1/recommendations/session`: an anonymous visitor's recent events in, items out.
pub async fn for_session(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<SessionRequest>,
) -> Result<Json<Value>, ApiError> {
    let n = check_n(request.n.unwrap_or(10))?;
    if request.events.len() > MAX_SESSION_EVENTS {
        return Err(invalid(
            "events",
            format!("a session carries at most {MAX_SESSION_EVENTS} events"),
        ));
    }
    for (k, e) in request.events.iter().enumerate() {
        limits::check_id("item", &e.item)
            .and_then(|()| limits::check_event_type(&e.kind))
            .map_err(|e| invalid(format!("events[{k}].{}", e.field), e.message))?;
    }
    let recommender = state.platform.recommender().await?;
    let history: Vec<Event> = request
        .events
        .into_iter()
        .enumerate()
        .map(|(k, e)| Event {
            id: format!("session:{k}"),
            user: UserId(String::new()),
            item: ItemId(e.item),
            kind: e.kind.to_ascii_lowercase(),
            value: None,
            timestamp: k as i64,
        })
        .collect();
    let filter = ItemFilter {
        category: request.filter.category,
        min_price: request.filter.min_price,
        max_price: request.filter.max_price,
        in_stock: request.filter.in_stock,
    };
    let data = recommender.recommend(&history, n, &filter);
    Ok(list(data, recommender.version()))
}

/// Most events an anonymous session's request may carry (the newest count most).
const MAX_SESSION_EVENTS: usize = 1_000;

/// Most records one write request may carry.
const MAX_BATCH: usize = 10_000;

fn check_batch(len: usize, field: &str) -> Result<(), ApiError> {
    if len == 0 || len > MAX_BATCH {
        return Err(invalid(
            field,
            format!("'{field}' must hold 1 to {MAX_BATCH} records"),
        ));
    }
    Ok(())
}

/// A batch of records to write: its size, and every field within its limit
/// ([`hearth_core::recs::limits`]).
fn check_records<T>(
    field: &str,
    records: &[T],
    check: impl Fn(&T) -> Result<(), limits::FieldError>,
) -> Result<(), ApiError> {
    check_batch(records.len(), field)?;
    for (k, record) in records.iter().enumerate() {
        check(record).map_err(|e| {
            let path = if e.field.is_empty() {
                format!("{field}[{k}]")
            } else {
                format!("{field}[{k}].{}", e.field)
            };
            invalid(path, e.message)
        })?;
    }
    Ok(())
}

/// Runs a store call off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RecsError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(ErrorCode::InternalError, e.to_string()))?
        .map_err(ApiError::from)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemsBody {
    pub items: Vec<hearth_core::recs::Item>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersBody {
    pub users: Vec<hearth_core::recs::User>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdsBody {
    pub ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    /// Makes retries safe: an id already stored is not stored again. Default: a new id.
    #[serde(default)]
    pub id: Option<String>,
    pub user: String,
    pub item: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub value: Option<f64>,
    /// Unix seconds. Default: now.
    #[serde(default)]
    pub timestamp: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsBody {
    pub events: Vec<EventInput>,
}

/// `POST /v1/items`: inserts or replaces items by id (one transaction: all or nothing).
pub async fn upsert_items(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ItemsBody>,
) -> Result<Json<Value>, ApiError> {
    check_records("items", &body.items, limits::check_item)?;
    let store = state.platform.recs_store()?;
    let counts = blocking(move || Ok(store.upsert_items(&body.items)?)).await?;
    Ok(Json(json!({"stored": counts.written})))
}

/// `POST /v1/users`: inserts or replaces users by id.
pub async fn upsert_users(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<UsersBody>,
) -> Result<Json<Value>, ApiError> {
    check_records("users", &body.users, limits::check_user)?;
    let store = state.platform.recs_store()?;
    let counts = blocking(move || Ok(store.upsert_users(&body.users)?)).await?;
    Ok(Json(json!({"stored": counts.written})))
}

/// `POST /v1/events`: stores events; an id already stored is skipped (idempotent retries).
/// Acknowledged (200) only once committed.
pub async fn insert_events(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<EventsBody>,
) -> Result<Json<Value>, ApiError> {
    check_batch(body.events.len(), "events")?;
    let now = hearth_types::clock::unix_now() as i64;
    let mut events = Vec::with_capacity(body.events.len());
    for e in body.events {
        events.push(Event {
            id: e
                .id
                .unwrap_or_else(|| format!("api:{}", uuid::Uuid::new_v4())),
            user: UserId(e.user),
            item: ItemId(e.item),
            kind: e.kind.to_ascii_lowercase(),
            value: e.value,
            timestamp: e.timestamp.unwrap_or(now),
        });
    }
    check_records("events", &events, limits::check_event)?;
    let store = state.platform.recs_store()?;
    let counts = blocking(move || Ok(store.insert_events(&events)?)).await?;
    Ok(Json(
        json!({"stored": counts.written, "duplicates": counts.duplicates}),
    ))
}

/// `DELETE /v1/items`: `{"ids": [...]}`.
pub async fn delete_items(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<IdsBody>,
) -> Result<Json<Value>, ApiError> {
    check_records("ids", &body.ids, |id| limits::check_id("", id))?;
    let store = state.platform.recs_store()?;
    let ids: Vec<ItemId> = body.ids.into_iter().map(ItemId).collect();
    let deleted = blocking(move || Ok(store.delete_items(&ids)?)).await?;
    Ok(Json(json!({"deleted": deleted})))
}

/// `DELETE /v1/users`: `{"ids": [...]}`; their events go too.
pub async fn delete_users(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<IdsBody>,
) -> Result<Json<Value>, ApiError> {
    check_records("ids", &body.ids, |id| limits::check_id("", id))?;
    let store = state.platform.recs_store()?;
    let ids: Vec<UserId> = body.ids.into_iter().map(UserId).collect();
    let deleted = blocking(move || Ok(store.delete_users(&ids)?)).await?;
    Ok(Json(json!({"deleted": deleted})))
}

fn not_found(kind: &str, id: &str) -> ApiError {
    let code = if kind == "user" {
        ErrorCode::UserNotFound
    } else {
        ErrorCode::ItemNotFound
    };
    ApiError::new(code, format!("no {kind} '{id}'")).with_param("id")
}

/// `GET /v1/items/{id}`.
pub async fn get_item(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = state.platform.recs_store()?;
    let key = ItemId(id.clone());
    match blocking(move || Ok(store.item(&key)?)).await? {
        Some(item) => Ok(Json(serde_json::to_value(item).expect("plain data"))),
        None => Err(not_found("item", &id)),
    }
}

/// `GET /v1/users/{id}`.
pub async fn get_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = state.platform.recs_store()?;
    let key = UserId(id.clone());
    match blocking(move || Ok(store.user(&key)?)).await? {
        Some(user) => Ok(Json(serde_json::to_value(user).expect("plain data"))),
        None => Err(not_found("user", &id)),
    }
}
