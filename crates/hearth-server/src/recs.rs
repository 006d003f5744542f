//! Recommendation routes: per user, per item ("similar"), per anonymous session.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::Json;
use hearth_core::recs::serve::ItemFilter;
use hearth_core::recs::RecsError;
use hearth_core::recs_service::{check_n, NewEvent, RecommendationList, SessionEvent};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::AppState;
use hearth_types::ErrorCode;

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
            RecsError::UnknownItem(_) | RecsError::UnknownUser(_) => Some("id".to_owned()),
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

/// `GET /v1/recommendations/{user_id}`: seen items excluded; a user with no history gets
/// popular items.
pub async fn for_user(
    State(state): State<AppState>,
    Path(user): Path<String>,
    ApiQuery(query): ApiQuery<HashMap<String, String>>,
) -> Result<Json<RecommendationList>, ApiError> {
    let (n, filter) = n_and_filter(&query)?;
    Ok(Json(state.platform.recommend(&user, n, filter).await?))
}

/// `GET /v1/items/{id}/similar`.
pub async fn similar(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<HashMap<String, String>>,
) -> Result<Json<RecommendationList>, ApiError> {
    let (n, filter) = n_and_filter(&query)?;
    Ok(Json(state.platform.similar(&id, n, filter).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// The visitor's recent events, oldest first.
    pub events: Vec<SessionEvent>,
    #[serde(default)]
    pub n: Option<usize>,
    #[serde(default, flatten)]
    pub filter: FilterFields,
}

/// The item filter as request bodies carry it.
#[derive(Debug, Default, Deserialize)]
pub struct FilterFields {
    pub category: Option<String>,
    pub min_price: Option<f64>,
    pub max_price: Option<f64>,
    #[serde(default)]
    pub in_stock: bool,
}

impl From<FilterFields> for ItemFilter {
    fn from(f: FilterFields) -> Self {
        ItemFilter {
            category: f.category,
            min_price: f.min_price,
            max_price: f.max_price,
            in_stock: f.in_stock,
        }
    }
}

/// `POST /v1/recommendations/session`: an anonymous visitor's recent events in, items out.
pub async fn for_session(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<SessionRequest>,
) -> Result<Json<RecommendationList>, ApiError> {
    let n = request.n.unwrap_or(10);
    let list = state
        .platform
        .recommend_session(request.events, n, request.filter.into())
        .await?;
    Ok(Json(list))
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
pub struct EventsBody {
    pub events: Vec<NewEvent>,
}

/// The answer to a write: records stored, and events skipped as already stored.
#[derive(Debug, Serialize)]
pub struct Stored {
    pub stored: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicates: Option<u64>,
}

/// The answer to a delete.
#[derive(Debug, Serialize)]
pub struct Deleted {
    pub deleted: u64,
}

/// `POST /v1/items`: inserts or replaces items by id (one transaction: all or nothing).
pub async fn upsert_items(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ItemsBody>,
) -> Result<Json<Stored>, ApiError> {
    let counts = state.platform.upsert_items(body.items).await?;
    Ok(Json(Stored {
        stored: counts.written,
        duplicates: None,
    }))
}

/// `POST /v1/users`: inserts or replaces users by id.
pub async fn upsert_users(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<UsersBody>,
) -> Result<Json<Stored>, ApiError> {
    let counts = state.platform.upsert_users(body.users).await?;
    Ok(Json(Stored {
        stored: counts.written,
        duplicates: None,
    }))
}

/// `POST /v1/events`: stores events; an id already stored is skipped (idempotent retries).
/// Acknowledged (200) only once committed.
pub async fn insert_events(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<EventsBody>,
) -> Result<Json<Stored>, ApiError> {
    let counts = state.platform.insert_events(body.events).await?;
    Ok(Json(Stored {
        stored: counts.written,
        duplicates: Some(counts.duplicates),
    }))
}

/// `DELETE /v1/items`: `{"ids": [...]}`.
pub async fn delete_items(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<IdsBody>,
) -> Result<Json<Deleted>, ApiError> {
    let deleted = state.platform.delete_items(body.ids).await?;
    Ok(Json(Deleted { deleted }))
}

/// `DELETE /v1/users`: `{"ids": [...]}`; their events go too.
pub async fn delete_users(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<IdsBody>,
) -> Result<Json<Deleted>, ApiError> {
    let deleted = state.platform.delete_users(body.ids).await?;
    Ok(Json(Deleted { deleted }))
}

/// `GET /v1/items/{id}`.
pub async fn get_item(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<hearth_core::recs::Item>, ApiError> {
    Ok(Json(state.platform.item(&id).await?))
}

/// `GET /v1/users/{id}`.
pub async fn get_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<hearth_core::recs::User>, ApiError> {
    Ok(Json(state.platform.user(&id).await?))
}
