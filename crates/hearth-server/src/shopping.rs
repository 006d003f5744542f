//! Catalogue search and the shopping assistant.

use axum::extract::State;

use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_core::recs::assistant::{assist, AssistRequest, AssistantEvent};
use hearth_core::recs::serve::ItemFilter;
use hearth_core::recs::{Event, RecsError, UserId};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::recs::{check_n, invalid, user_history};
use crate::AppState;
use hearth_types::ErrorCode;

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

async fn history(state: &AppState, user: Option<String>) -> Result<Vec<Event>, ApiError> {
    match user {
        Some(user) => user_history(state, UserId(user)).await,
        None => Ok(Vec::new()),
    }
}

/// `POST /v1/search`: text query → items, BM25 and embedding similarity fused (the vector
/// half when the trained bundle has item embeddings), with the usual filters.
pub async fn search(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<SearchRequest>,
) -> Result<Json<Value>, ApiError> {
    if request.query.trim().is_empty() {
        return Err(invalid("query", "'query' must not be empty"));
    }
    let n = check_n(request.n.unwrap_or(10))?;
    let recommender = state.platform.recommender().await?;
    let vector = match recommender.search_model() {
        Some(model) => state
            .platform
            .gateway()
            .embed_texts(model, vec![request.query.clone()])
            .await
            .map_err(RecsError::from)?
            .pop(),
        None => None,
    };
    let history = history(&state, request.user_id).await?;
    let filter = ItemFilter {
        category: request.category,
        min_price: request.min_price,
        max_price: request.max_price,
        in_stock: request.in_stock,
    };
    let data = recommender.search(&request.query, vector.as_deref(), &history, n, &filter)?;
    Ok(Json(json!({
        "object": "list",
        "model_version": recommender.version(),
        "hybrid": vector.is_some(),
        "data": data,
    })))
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

fn assistant_model(state: &AppState, asked: Option<String>) -> Result<String, ApiError> {
    if let Some(model) = asked.or_else(|| state.platform.config().recs.assistant_model.clone()) {
        // Checked before anything starts: an unknown model is a 404 and an embedding model
        // a 400 naming `model`, never an error after a 200.
        let gateway = state.platform.gateway();
        if !gateway.routes().iter().any(|(alias, _, _)| *alias == model) {
            let info = gateway
                .registry()
                .resolve(&model)
                .map_err(|e| ApiError::from(hearth_gateway::GatewayError::from(e)))?;
            if info.kind != hearth_infer::registry::ModelKind::Chat {
                return Err(ApiError::from(
                    hearth_gateway::GatewayError::WrongModelKind {
                        model: info.name,
                        kind: "an embedding",
                        route: "the shopping assistant",
                    },
                ));
            }
        }
        return Ok(model);
    }
    let models = state.platform.gateway().models().map_err(ApiError::from)?;
    models
        .into_iter()
        .find(|m| m.kind == hearth_infer::registry::ModelKind::Chat)
        .map(|m| m.name)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NoChatModel,
                "the assistant needs a chat model: register one (`hearth models import PATH`) or set \
                 [recs] assistant_model",
            )
        })
}

/// `POST /v1/assistant`: a wish in plain language (and optionally who asks) → constraints
/// read by the local model, matching catalogue items, and a short answer naming only them.
pub async fn assistant(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<AssistantRequest>,
) -> Result<Response, ApiError> {
    if request.wish.trim().is_empty() {
        return Err(invalid("wish", "'wish' must not be empty"));
    }
    let candidates = request.candidates.unwrap_or(5);
    if !(1..=10).contains(&candidates) {
        return Err(invalid(
            "candidates",
            "'candidates' must be between 1 and 10",
        ));
    }
    let model = assistant_model(&state, request.model)?;
    let recommender = state.platform.recommender().await?;
    let history = history(&state, request.user_id).await?;
    let turn = AssistRequest {
        wish: request.wish,
        history,
        filter: ItemFilter {
            category: request.category,
            min_price: request.min_price,
            max_price: request.max_price,
            in_stock: request.in_stock,
        },
        candidates,
    };
    let (tx, mut rx) = mpsc::channel::<AssistantEvent>(64);
    let platform = state.platform.clone();
    let task =
        tokio::spawn(
            async move { assist(platform.gateway(), &model, recommender, turn, tx).await },
        );
    if request.stream {
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
    let mut answer = json!({"object": "assistant.answer", "answer": ""});
    let mut text = String::new();
    while let Some(event) = rx.recv().await {
        match event {
            AssistantEvent::Constraints { wish, relaxed } => {
                answer["constraints"] = json!(wish);
                answer["relaxed"] = json!(relaxed);
            }
            AssistantEvent::Items { items } => answer["candidates"] = json!(items),
            AssistantEvent::Delta { text: t } => text.push_str(&t),
            AssistantEvent::Done { items, usage } => {
                answer["items"] = json!(items);
                answer["usage"] = json!(usage);
            }
        }
    }
    task.await
        .map_err(|e| ApiError::new(ErrorCode::InternalError, e.to_string()))??;
    answer["answer"] = json!(text);
    Ok(Json(answer).into_response())
}
