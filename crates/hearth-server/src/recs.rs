//! Recommendation routes: per user, per item ("similar"), per anonymous session.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::Json;
use hearth_core::recs::serve::ItemFilter;
use hearth_core::recs::RecsError;
use hearth_core::recs_service::{check_n, NewEvent, RecommendationList, SessionEvent};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

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

/// The query of a list of items: how many, and which.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// How many items.
    #[param(minimum = 1, maximum = 500, default = 10)]
    pub n: Option<usize>,
    /// Only items in this category (case-insensitive).
    pub category: Option<String>,
    pub min_price: Option<f64>,
    pub max_price: Option<f64>,
    /// Only available items.
    #[param(default = false)]
    pub in_stock: Option<bool>,
}

/// `n` and the item filter from a query string ([`ListParams`], read by hand so that each
/// bad value is named with what it should be).
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
    let in_stock = match query.get("in_stock").map(String::as_str) {
        None => None,
        Some("false") | Some("0") => Some(false),
        Some("true") | Some("1") => Some(true),
        Some(other) => {
            return Err(invalid(
                "in_stock",
                format!("'in_stock' must be true or false, got '{other}'"),
            ))
        }
    };
    let params = ListParams {
        n: number(query, "n")?,
        category: query.get("category").cloned(),
        min_price: number(query, "min_price")?,
        max_price: number(query, "max_price")?,
        in_stock,
    };
    Ok((
        check_n(params.n.unwrap_or(10))?,
        ItemFilter {
            category: params.category,
            min_price: params.min_price,
            max_price: params.max_price,
            in_stock: params.in_stock.unwrap_or(false),
        },
    ))
}

/// Recommendations for a user (seen items excluded; a user without history gets popular
/// items).
#[utoipa::path(get, path = "/v1/recommendations/{user_id}", tag = "recommendations",
    params(("user_id" = String, Path, description = "The user's id"), ListParams),
    responses(
        (status = 200, description = "Items, best first", body = RecommendationList),
        (status = 400, description = "Bad parameter (param names it)"),
        (status = 503, description = "No model trained yet (Retry-After)"),
    ),
    security(("bearer" = ["recs:read"])))]
pub async fn for_user(
    State(state): State<AppState>,
    Path(user): Path<String>,
    ApiQuery(query): ApiQuery<HashMap<String, String>>,
) -> Result<Json<RecommendationList>, ApiError> {
    let (n, filter) = n_and_filter(&query)?;
    Ok(Json(state.platform.recommend(&user, n, filter).await?))
}

/// Items chosen by the same people (or, for untouched items, described alike).
#[utoipa::path(get, path = "/v1/items/{id}/similar", tag = "recommendations",
    params(("id" = String, Path, description = "The item's id"), ListParams),
    responses(
        (status = 200, description = "Items, best first", body = RecommendationList),
        (status = 400, description = "Bad parameter (param names it)"),
        (status = 404, description = "Unknown item"),
        (status = 503, description = "No model trained yet (Retry-After)"),
    ),
    security(("bearer" = ["recs:read"])))]
pub async fn similar(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<HashMap<String, String>>,
) -> Result<Json<RecommendationList>, ApiError> {
    let (n, filter) = n_and_filter(&query)?;
    Ok(Json(state.platform.similar(&id, n, filter).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// The visitor's recent events, oldest first.
    #[schema(max_items = 1000)]
    pub events: Vec<SessionEvent>,
    /// How many items.
    #[serde(default, deserialize_with = "hearth_types::whole::opt")]
    #[schema(minimum = 1, maximum = 500, default = 10)]
    pub n: Option<usize>,
    /// Only items in this category (case-insensitive).
    pub category: Option<String>,
    pub min_price: Option<f64>,
    pub max_price: Option<f64>,
    /// Only available items.
    #[serde(default)]
    pub in_stock: bool,
}

/// Recommendations for an anonymous visitor's recent events.
#[utoipa::path(post, path = "/v1/recommendations/session", tag = "recommendations",
    request_body = SessionRequest,
    responses(
        (status = 200, description = "Items, best first", body = RecommendationList),
        (status = 400, description = "Malformed request (param names the field)"),
        (status = 503, description = "No model trained yet (Retry-After)"),
    ),
    security(("bearer" = ["recs:read"])))]
pub async fn for_session(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<SessionRequest>,
) -> Result<Json<RecommendationList>, ApiError> {
    let n = request.n.unwrap_or(10);
    let filter = ItemFilter {
        category: request.category,
        min_price: request.min_price,
        max_price: request.max_price,
        in_stock: request.in_stock,
    };
    let list = state
        .platform
        .recommend_session(request.events, n, filter)
        .await?;
    Ok(Json(list))
}

/// Items to insert or replace.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemsBody {
    #[schema(min_items = 1, max_items = 10000)]
    pub items: Vec<hearth_core::recs::Item>,
}

/// Users to insert or replace.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsersBody {
    #[schema(min_items = 1, max_items = 10000)]
    pub users: Vec<hearth_core::recs::User>,
}

/// The ids of the records to delete.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdsBody {
    #[schema(min_items = 1, max_items = 10000, value_type = Vec<hearth_core::recs::ItemId>)]
    pub ids: Vec<String>,
}

/// Events to store.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsBody {
    #[schema(min_items = 1, max_items = 10000)]
    pub events: Vec<NewEvent>,
}

/// The answer to a write: records stored, and (for events) those skipped as already stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stored {
    pub stored: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicates: Option<u64>,
}

/// The answer to a delete.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    pub deleted: u64,
}

/// Insert or replace items by id (one transaction: all or nothing).
#[utoipa::path(post, path = "/v1/items", tag = "catalogue", request_body = ItemsBody,
    responses(
        (status = 200, description = "Stored", body = Stored),
        (status = 400, description = "Malformed (param names the field)"),
        (status = 503, description = "Overloaded (Retry-After)"),
    ),
    security(("bearer" = ["recs:write"])))]
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

/// Insert or replace users by id.
#[utoipa::path(post, path = "/v1/users", tag = "catalogue", request_body = UsersBody,
    responses(
        (status = 200, description = "Stored", body = Stored),
        (status = 400, description = "Malformed (param names the field)"),
        (status = 503, description = "Overloaded (Retry-After)"),
    ),
    security(("bearer" = ["recs:write"])))]
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

/// Store events (idempotent by id: an id already stored is skipped); 200 only once committed.
#[utoipa::path(post, path = "/v1/events", tag = "catalogue", request_body = EventsBody,
    responses(
        (status = 200, description = "Stored, and how many were already stored", body = Stored),
        (status = 400, description = "Malformed (param names the field)"),
        (status = 503, description = "Overloaded (Retry-After)"),
    ),
    security(("bearer" = ["recs:write"])))]
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

/// Delete items.
#[utoipa::path(delete, path = "/v1/items", tag = "catalogue", request_body = IdsBody,
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 400, description = "Malformed (param names the field)"),
        (status = 503, description = "Overloaded (Retry-After)"),
    ),
    security(("bearer" = ["recs:write"])))]
pub async fn delete_items(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<IdsBody>,
) -> Result<Json<Deleted>, ApiError> {
    let deleted = state.platform.delete_items(body.ids).await?;
    Ok(Json(Deleted { deleted }))
}

/// Delete users and their events.
#[utoipa::path(delete, path = "/v1/users", tag = "catalogue", request_body = IdsBody,
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 400, description = "Malformed (param names the field)"),
        (status = 503, description = "Overloaded (Retry-After)"),
    ),
    security(("bearer" = ["recs:write"])))]
pub async fn delete_users(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<IdsBody>,
) -> Result<Json<Deleted>, ApiError> {
    let deleted = state.platform.delete_users(body.ids).await?;
    Ok(Json(Deleted { deleted }))
}

/// One item.
#[utoipa::path(get, path = "/v1/items/{id}", tag = "catalogue",
    params(("id" = String, Path, description = "The item's id")),
    responses(
        (status = 200, description = "The item", body = hearth_core::recs::Item),
        (status = 404, description = "Unknown item"),
        (status = 503, description = "Overloaded (Retry-After)"),
    ),
    security(("bearer" = ["recs:read"])))]
pub async fn get_item(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<hearth_core::recs::Item>, ApiError> {
    Ok(Json(state.platform.item(&id).await?))
}

/// One user.
#[utoipa::path(get, path = "/v1/users/{id}", tag = "catalogue",
    params(("id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user", body = hearth_core::recs::User),
        (status = 404, description = "Unknown user"),
        (status = 503, description = "Overloaded (Retry-After)"),
    ),
    security(("bearer" = ["recs:read"])))]
pub async fn get_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<hearth_core::recs::User>, ApiError> {
    Ok(Json(state.platform.user(&id).await?))
}
