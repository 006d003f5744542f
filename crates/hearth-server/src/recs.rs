//! Recommendation routes: per user, per item ("similar"), per anonymous session.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use hearth_core::recs::serve::{ItemFilter, Recommendation};
use hearth_core::recs::{Event, ItemId, RecsError, UserId};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::AppState;

/// Most items one request may ask for.
const MAX_N: usize = 500;
/// Most recent events of a user that shape their recommendations.
const HISTORY: usize = 500;

impl From<RecsError> for ApiError {
    fn from(e: RecsError) -> Self {
        let (status, param) = match &e {
            RecsError::InvalidParameter { param, .. } => {
                (StatusCode::BAD_REQUEST, Some(param.clone()))
            }
            RecsError::NotTrained => (StatusCode::SERVICE_UNAVAILABLE, None),
            RecsError::UnknownItem(_) => (StatusCode::NOT_FOUND, Some("id".to_owned())),
            RecsError::NotEnoughData(_) => (StatusCode::BAD_REQUEST, None),
            RecsError::BadFile { .. } | RecsError::BadRow(_) => (StatusCode::BAD_REQUEST, None),
            RecsError::Io { .. }
            | RecsError::Store(_)
            | RecsError::Artifact(_)
            | RecsError::Embedding(_) => (StatusCode::INTERNAL_SERVER_ERROR, None),
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "recommendation request failed");
        }
        let mut error = ApiError::new(status, e.code(), e.to_string());
        error.param = param;
        if matches!(e, RecsError::NotTrained) {
            error.retry_after = Some(30);
        }
        error
    }
}

fn number<T: std::str::FromStr>(
    query: &HashMap<String, String>,
    name: &str,
) -> Result<Option<T>, ApiError> {
    query
        .get(name)
        .map(|v| {
            v.parse::<T>().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    format!("'{name}' must be a number, got '{v}'"),
                )
                .with_param(name)
            })
        })
        .transpose()
}

/// `n` and the item filter from a query string.
fn n_and_filter(query: &HashMap<String, String>) -> Result<(usize, ItemFilter), ApiError> {
    const KNOWN: [&str; 5] = ["n", "category", "min_price", "max_price", "in_stock"];
    if let Some(unknown) = query.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!(
                "unknown parameter '{unknown}' (known: {})",
                KNOWN.join(", ")
            ),
        )
        .with_param(unknown.clone()));
    }
    let n = check_n(number::<usize>(query, "n")?.unwrap_or(10))?;
    let in_stock = match query.get("in_stock").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("'in_stock' must be true or false, got '{other}'"),
            )
            .with_param("in_stock"))
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

fn check_n(n: usize) -> Result<usize, ApiError> {
    if n == 0 || n > MAX_N {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("'n' must be between 1 and {MAX_N}"),
        )
        .with_param("n"));
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
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let (n, filter) = n_and_filter(&query)?;
    let recommender = state.platform.recommender().await?;
    let store = state.platform.recs_store()?;
    let user = UserId(user);
    let history = tokio::task::spawn_blocking(move || store.user_events(&user, HISTORY))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                e.to_string(),
            )
        })?
        .map_err(RecsError::from)?;
    let data = recommender.recommend(&history, n, &filter);
    Ok(list(data, recommender.version()))
}

/// `GET /v1/items/{id}/similar`.
pub async fn similar(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
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
