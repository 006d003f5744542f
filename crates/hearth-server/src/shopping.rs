//! Catalogue search and the shopping assistant.

use axum::extract::State;

use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_core::recs::serve::ItemFilter;
use hearth_core::recs_service::{AssistantAsk, AssistantTurn, RecommendationList, SearchQuery};
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    pub query: String,
    #[serde(default)]
    pub n: Option<usize>,
    /// Personalise: the user's history reorders the matches.
    #[serde(default)]
    pub user_id: Option<String>,
    pub category: Option<String>,
    pub min_price: Option<f64>,
    pub max_price: Option<f64>,
    #[serde(default)]
    pub in_stock: bool,
}

/// `POST /v1/search`: text query → items, BM25 and embedding similarity fused (the vector
/// half when the trained bundle has item embeddings), with the usual filters.
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssistantRequest {
    /// What the shopper wants, in their words.
    pub wish: String,
    #[serde(default)]
    pub user_id: Option<String>,
    /// A chat model; default `[recs] assistant_model`, else the first chat model registered.
    #[serde(default)]
    pub model: Option<String>,
    /// Server-sent events (default) or one JSON answer.
    #[serde(default = "yes")]
    pub stream: bool,
    /// Catalogue items offered to the model (it names up to three); 1–10, default 5.
    #[serde(default)]
    pub candidates: Option<usize>,
    pub category: Option<String>,
    pub min_price: Option<f64>,
    pub max_price: Option<f64>,
    #[serde(default)]
    pub in_stock: bool,
}

fn yes() -> bool {
    true
}

/// `POST /v1/assistant`: a wish in plain language (and optionally who asks) → constraints
/// read by the local model, matching catalogue items, and a short answer naming only them.
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
