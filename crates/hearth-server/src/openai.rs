//! The OpenAI-compatible routes.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use hearth_gateway::Caller;
use hearth_gateway::{ChatEvent, ChatStream};
use hearth_infer::registry::ModelInfo;
use hearth_types::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, ChunkChoice, ChunkDelta,
    CompletionChoice, CompletionRequest, CompletionResponse, EmbeddingRequest, EmbeddingResponse,
    ModelList, ModelMeta, ModelObject, Usage,
};

use crate::extract::ApiJson;
use crate::{ApiError, AppState};

/// Chat completion (streamed with `stream: true`; tools and structured output are enforced
/// by constrained decoding).
#[utoipa::path(post, path = "/v1/chat/completions", tag = "inference",
    request_body = ChatCompletionRequest,
    responses(
        (status = 200, description = "A chat.completion, or with `stream: true` server-sent \
            events: chat.completion.chunk objects as `data:` lines, then `data: [DONE]`",
            content((ChatCompletionResponse = "application/json"),
                (ChatCompletionChunk = "text/event-stream"))),
        (status = 400, description = "Invalid request; `error.param` names the field"),
        (status = 404, description = "Unknown model"),
        (status = 502, description = "An upstream failed (upstream_error)"),
        (status = 503, description = "Engine queue full, or no deployment can take it (Retry-After)"),
    ),
    security(("bearer" = ["inference"])))]
pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let stream = state.platform.gateway().chat_as(&request, &caller).await?;
    if request.stream {
        let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
        return Ok(sse(state, stream, include_usage, ChunkKind::Chat).into_response());
    }
    let model = stream.model.clone();
    let (response, summary) = stream.into_response().await?;
    state.metrics.record_generation(&model, &summary);
    Ok(Json(response).into_response())
}

/// Text completion.
#[utoipa::path(post, path = "/v1/completions", tag = "inference",
    request_body = CompletionRequest,
    responses(
        (status = 200, description = "A text_completion, or with `stream: true` server-sent \
            events: text_completion chunks as `data:` lines, then `data: [DONE]`",
            content((CompletionResponse = "application/json"),
                (CompletionResponse = "text/event-stream"))),
        (status = 400, description = "Invalid request; `error.param` names the field"),
        (status = 404, description = "Unknown model"),
        (status = 502, description = "An upstream failed (upstream_error)"),
        (status = 503, description = "Engine queue full (Retry-After)"),
    ),
    security(("bearer" = ["inference"])))]
pub async fn completions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    let mut streams = state
        .platform
        .gateway()
        .completion_as(&request, &caller)
        .await?;
    if request.stream {
        let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
        let stream = streams
            .pop()
            .expect("the gateway returns one stream when streaming");
        return Ok(sse(state, stream, include_usage, ChunkKind::Text).into_response());
    }
    let mut choices = Vec::with_capacity(streams.len());
    let mut usage = Usage::default();
    let (id, model, created) = (
        streams[0].id.clone(),
        streams[0].model.clone(),
        streams[0].created,
    );
    // Submitted together above, so the engine batches them; collected in order here.
    for (index, stream) in streams.into_iter().enumerate() {
        let (message, finish_reason, u, summary) = stream.collect().await?;
        state.metrics.record_generation(&model, &summary);
        usage = Usage::new(
            usage.prompt_tokens + u.prompt_tokens,
            usage.completion_tokens + u.completion_tokens,
        );
        choices.push(CompletionChoice {
            index: index as u32,
            text: message.content.unwrap_or_default(),
            finish_reason: Some(finish_reason),
            logprobs: None,
        });
    }
    Ok(Json(CompletionResponse {
        id,
        object: "text_completion".into(),
        created,
        model,
        choices,
        usage: Some(usage),
    })
    .into_response())
}

/// Embeddings of strings or token arrays.
#[utoipa::path(post, path = "/v1/embeddings", tag = "inference",
    request_body = EmbeddingRequest,
    responses(
        (status = 200, description = "A list of embeddings", body = EmbeddingResponse),
        (status = 400, description = "Invalid request; `error.param` names the field"),
        (status = 404, description = "Unknown model"),
        (status = 502, description = "An upstream failed (upstream_error)"),
        (status = 503, description = "Embedder busy (Retry-After)"),
    ),
    security(("bearer" = ["inference"])))]
pub async fn embeddings(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<EmbeddingRequest>,
) -> Result<Response, ApiError> {
    let response = state.platform.gateway().embed_as(&request, &caller).await?;
    Ok(Json(response).into_response())
}

fn model_object(info: &ModelInfo) -> ModelObject {
    ModelObject {
        id: info.name.clone(),
        object: "model".into(),
        created: 0,
        owned_by: "hearth".into(),
        parent: info.base.clone(),
        meta: Some(ModelMeta {
            kind: info.kind.as_str().into(),
            architecture: info.architecture.clone(),
            parameters: info.parameters,
            quantization: info.quantization.clone(),
            context_length: info.context_length,
            embedding_dim: info.embedding_dim,
            size_bytes: info.size_bytes,
        }),
    }
}

/// The models this server can answer with.
#[utoipa::path(get, path = "/v1/models", tag = "inference",
    responses((status = 200, description = "A list of models", body = ModelList)),
    security(("bearer" = ["inference"])))]
pub async fn list_models(State(state): State<AppState>) -> Result<Json<ModelList>, ApiError> {
    let models = state.platform.gateway().models_now().await?;
    Ok(Json(ModelList {
        object: "list".into(),
        data: models.iter().map(model_object).collect(),
    }))
}

/// One model.
#[utoipa::path(get, path = "/v1/models/{id}", tag = "inference",
    params(("id" = String, Path, description = "The model's name (it may contain `/`)")),
    responses(
        (status = 200, description = "The model", body = ModelObject),
        (status = 404, description = "Unknown model"),
    ),
    security(("bearer" = ["inference"])))]
pub async fn get_model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ModelObject>, ApiError> {
    let info = state.platform.gateway().resolve(&id).await?;
    Ok(Json(model_object(&info)))
}

#[derive(Clone, Copy)]
enum ChunkKind {
    Chat,
    Text,
}

fn chunk(
    kind: ChunkKind,
    stream: &ChatStream,
    delta: ChunkDelta,
    finish_reason: Option<String>,
    usage: Option<Option<Usage>>,
) -> serde_json::Value {
    match kind {
        ChunkKind::Chat => serde_json::to_value(ChatCompletionChunk {
            id: stream.id.clone(),
            object: "chat.completion.chunk".into(),
            created: stream.created,
            model: stream.model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason,
                logprobs: None,
            }],
            usage,
        }),
        ChunkKind::Text => serde_json::to_value(CompletionResponse {
            id: stream.id.clone(),
            object: "text_completion".into(),
            created: stream.created,
            model: stream.model.clone(),
            choices: vec![CompletionChoice {
                index: 0,
                text: delta.content.unwrap_or_default(),
                finish_reason,
                logprobs: None,
            }],
            usage: None,
        }),
    }
    .expect("chunks serialize")
}

fn usage_chunk(kind: ChunkKind, stream: &ChatStream, usage: Usage) -> serde_json::Value {
    let (id, created, model) = (stream.id.clone(), stream.created, stream.model.clone());
    match kind {
        ChunkKind::Chat => serde_json::to_value(ChatCompletionChunk {
            id,
            object: "chat.completion.chunk".into(),
            created,
            model,
            choices: vec![],
            usage: Some(Some(usage)),
        }),
        ChunkKind::Text => serde_json::to_value(CompletionResponse {
            id,
            object: "text_completion".into(),
            created,
            model,
            choices: vec![],
            usage: Some(usage),
        }),
    }
    .expect("chunks serialize")
}

/// Streams a generation as server-sent events. A client that disconnects ends the relay's
/// producer, which drops the generation's stream and so cancels it.
fn sse(
    state: AppState,
    mut stream: ChatStream,
    include_usage: bool,
    kind: ChunkKind,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    crate::sse::relay(move |out| async move {
        let usage_field = include_usage.then_some(None);
        if let ChunkKind::Chat = kind {
            let first = ChunkDelta {
                role: Some("assistant".into()),
                content: Some(String::new()),
                ..Default::default()
            };
            out.json(&chunk(kind, &stream, first, None, usage_field))
                .await?;
        }
        while let Some(event) = stream.next().await {
            match event {
                ChatEvent::Delta(delta) => {
                    out.json(&chunk(kind, &stream, delta, None, usage_field))
                        .await?
                }
                ChatEvent::Finished {
                    finish_reason,
                    usage,
                    summary,
                } => {
                    state.metrics.record_generation(&stream.model, &summary);
                    let last = chunk(
                        kind,
                        &stream,
                        ChunkDelta::default(),
                        Some(finish_reason),
                        usage_field,
                    );
                    out.json(&last).await?;
                    if include_usage {
                        out.json(&usage_chunk(kind, &stream, usage)).await?;
                    }
                    break;
                }
                ChatEvent::Failed(e) => {
                    out.error(&ApiError::from(e)).await?;
                    break;
                }
            }
        }
        Ok(())
    })
}
