//! Rerank and score: `/v1/rerank` (Jina, Cohere, vLLM), `/rerank` (Text Embeddings Inference)
//! and `/v1/score` (vLLM), all through the gateway's pair scoring.

use axum::extract::State;
use axum::{Extension, Json};
use hearth_gateway::Caller;
use hearth_types::rerank::{
    RerankRequest, RerankResponse, ScoreRequest, ScoreResponse, TeiRank, TeiRerankRequest,
};

use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::AppState;

/// Documents ordered by relevance to a query, by a cross-encoder, a chat model judging yes or
/// no, or an embedding model's cosine similarity.
#[utoipa::path(post, path = "/v1/rerank", tag = "inference",
    request_body = RerankRequest,
    responses(
        (status = 200, description = "The documents, best first", body = RerankResponse),
        (status = 400, description = "Invalid request; `error.param` names the field"),
        (status = 404, description = "Unknown model"),
        (status = 502, description = "An upstream failed (upstream_error)"),
        (status = 503, description = "Engine busy, or no deployment of the route answered (Retry-After)"),
    ),
    security(("bearer" = ["inference"])))]
pub async fn rerank(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<RerankRequest>,
) -> Result<Json<RerankResponse>, ApiError> {
    Ok(Json(
        state
            .platform
            .gateway()
            .rerank_as(&request, &caller)
            .await?,
    ))
}

/// Text Embeddings Inference's rerank: a list of `{index, score}`, best first.
#[utoipa::path(post, path = "/rerank", tag = "inference",
    request_body = TeiRerankRequest,
    responses(
        (status = 200, description = "The texts, best first", body = Vec<TeiRank>),
        (status = 400, description = "Invalid request; `error.param` names the field"),
        (status = 404, description = "Unknown model"),
        (status = 502, description = "An upstream failed (upstream_error)"),
        (status = 503, description = "Engine busy, or no deployment of the route answered (Retry-After)"),
    ),
    security(("bearer" = ["inference"])))]
pub async fn tei_rerank(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<TeiRerankRequest>,
) -> Result<Json<Vec<TeiRank>>, ApiError> {
    Ok(Json(
        state
            .platform
            .gateway()
            .tei_rerank_as(&request, &caller)
            .await?,
    ))
}

/// vLLM's score: `text_1` against each `text_2` (or two lists pair by pair), in order.
#[utoipa::path(post, path = "/v1/score", tag = "inference",
    request_body = ScoreRequest,
    responses(
        (status = 200, description = "One score per pair, in order", body = ScoreResponse),
        (status = 400, description = "Invalid request; `error.param` names the field"),
        (status = 404, description = "Unknown model"),
        (status = 502, description = "An upstream failed (upstream_error)"),
        (status = 503, description = "Engine busy, or no deployment of the route answered (Retry-After)"),
    ),
    security(("bearer" = ["inference"])))]
pub async fn score(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<ScoreRequest>,
) -> Result<Json<ScoreResponse>, ApiError> {
    Ok(Json(
        state
            .platform
            .gateway()
            .score_texts_as(&request, &caller)
            .await?,
    ))
}
