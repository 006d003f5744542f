//! Catalogue search and the shopping assistant.

use axum::extract::State;

use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_core::recs::assistant::AssistantEvent;
use hearth_core::recs::serve::ItemFilter;
use hearth_core::recs_service::AssistantAnswer;
use hearth_core::recs_service::{AssistantAsk, AssistantTurn, RecommendationList, SearchQuery};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    #[schema(min_length = 1)]
    pub query: String,
    /// How many items.
    #[serde(default, deserialize_with = "hearth_types::whole::opt")]
    #[schema(minimum = 1, maximum = 500, default = 10)]
    pub n: Option<usize>,
    /// Personalise: the user's history reorders the matches.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Only items in this category (case-insensitive).
    pub category: Option<String>,
    pub min_price: Option<f64>,
    pub max_price: Option<f64>,
    /// Only available items.
    #[serde(default)]
    pub in_stock: bool,
}

/// Catalogue items for a text query: BM25 and embedding similarity fused by reciprocal rank
/// (the vector half when the trained bundle has item embeddings).
#[utoipa::path(post, path = "/v1/search", tag = "recommendations", request_body = SearchRequest,
    responses(
        (status = 200, description = "Items, best first; `hybrid` says whether the vector half ran",
            body = RecommendationList),
        (status = 400, description = "A field is invalid (named in error.param)"),
        (status = 503, description = "No trained model yet, or the embedder is busy (Retry-After)"),
    ),
    security(("bearer" = ["recs:read"])))]
pub async fn search(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<SearchRequest>,
) -> Result<Json<RecommendationList>, ApiError> {
    let query = SearchQuery {
        query: request.query,
        n: request.n.unwrap_or(10),
        user: request.user_id,
        filter: ItemFilter {
            category: request.category,
            min_price: request.min_price,
            max_price: request.max_price,
            in_stock: request.in_stock,
        },
    };
    Ok(Json(state.platform.search(query).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssistantRequest {
    /// What the shopper wants, in their words.
    #[schema(min_length = 1)]
    pub wish: String,
    #[serde(default)]
    pub user_id: Option<String>,
    /// A chat model; default `[recs] assistant_model`, else the first chat model registered.
    #[serde(default)]
    pub model: Option<String>,
    /// Server-sent events (default) or one JSON answer.
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub stream: bool,
    /// Catalogue items offered to the model (it names up to three).
    #[serde(default, deserialize_with = "hearth_types::whole::opt")]
    #[schema(minimum = 1, maximum = 10, default = 5)]
    pub candidates: Option<usize>,
    /// Only items in this category (case-insensitive).
    pub category: Option<String>,
    pub min_price: Option<f64>,
    pub max_price: Option<f64>,
    #[serde(default)]
    pub in_stock: bool,
}

fn yes() -> bool {
    true
}

/// Shopping assistant: a wish in plain language (and optionally who asks) to constraints read
/// by the local model, matching catalogue items, and a short answer naming only them.
#[utoipa::path(post, path = "/v1/assistant", tag = "recommendations", request_body = AssistantRequest,
    responses(
        (status = 200, description = "With `stream` (the default): server-sent events, each `data:` \
            one event (constraints, items, delta, done, or an error), then `data: [DONE]`. \
            Without: the whole answer.",
            content((AssistantAnswer = "application/json"), (AssistantEvent = "text/event-stream"))),
        (status = 400, description = "A field is invalid (named in error.param)"),
        (status = 404, description = "The chat model named in `model` is not registered"),
        (status = 503, description = "No trained model or no chat model, or the model is busy (Retry-After)"),
    ),
    security(("bearer" = ["recs:read"])))]
pub async fn assistant(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<AssistantRequest>,
) -> Result<Response, ApiError> {
    let ask = AssistantAsk {
        wish: request.wish,
        user: request.user_id,
        model: request.model,
        candidates: request.candidates.unwrap_or(5),
        filter: ItemFilter {
            category: request.category,
            min_price: request.min_price,
            max_price: request.max_price,
            in_stock: request.in_stock,
        },
    };
    let turn = state.platform.assist(ask).await?;
    if request.stream {
        let AssistantTurn {
            events: mut rx,
            done: task,
        } = turn;
        return Ok(crate::sse::relay(move |out| async move {
            while let Some(event) = rx.recv().await {
                out.json(&event).await?;
            }
            if let Ok(Err(e)) = task.await {
                out.error(&ApiError::from(e)).await?;
            }
            Ok(())
        })
        .into_response());
    }
    Ok(Json(turn.answer().await?).into_response())
}
