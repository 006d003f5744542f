//! The OpenAI Responses API: `POST /v1/responses` (whole, or streamed as its named events),
//! `GET` and `DELETE /v1/responses/{id}`. The gateway translates each request into a chat
//! request (hearth_gateway::responses), so every local model and route serves it; a stored
//! response is kept in hearth's database, seen only by the key that made it, until it
//! expires (`[gateway] responses_ttl_hours`).

use axum::extract::{Path, State};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use hearth_gateway::responses::{answer_message, chat_request, conversation, ResponseBuilder};
use hearth_gateway::Caller;
use hearth_types::responses::{
    ResponseDeleted, ResponseObject, ResponseStreamEvent, ResponsesRequest,
};
use hearth_types::{ErrorCode, StreamError};

use crate::extract::ApiJson;
use crate::{ApiError, AppState};

/// Whose stored responses a caller sees: its key's own (the operator's without a key).
fn owner(caller: &Caller) -> String {
    caller
        .key
        .as_ref()
        .map(|k| format!("key:{}", k.id))
        .unwrap_or_default()
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ResponseNotFound,
        format!("no stored response '{id}' is visible to this key"),
    )
    .with_param("previous_response_id")
}

/// A response (streamed with `stream: true`): the OpenAI Responses API, served by the model
/// or route `model` names. `store` (the default) keeps it for `previous_response_id`.
#[utoipa::path(post, path = "/v1/responses", tag = "inference",
    request_body = ResponsesRequest,
    responses(
        (status = 200, description = "A response, or with `stream: true` server-sent events \
            named by their type: response.created, response.in_progress, \
            response.output_item.added, response.content_part.added, \
            response.output_text.delta, response.function_call_arguments.delta, their \
            ….done events, response.completed (or response.incomplete)",
            content((ResponseObject = "application/json"),
                (ResponseStreamEvent = "text/event-stream"))),
        (status = 400, description = "Invalid request; `error.param` names the field"),
        (status = 404, description = "Unknown model, or no such stored response"),
        (status = 502, description = "An upstream failed (upstream_error)"),
        (status = 503, description = "Engine queue full, or no deployment can take it (Retry-After)"),
    ),
    security(("bearer" = ["inference"])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<ResponsesRequest>,
) -> Result<Response, ApiError> {
    let owner = owner(&caller);
    let gateway = state.platform.gateway();
    let store = request.store.unwrap_or(true);
    let prior = match &request.previous_response_id {
        Some(id) => {
            let responses = gateway.responses()?;
            let stored = responses
                .load(&owner, id)
                .map_err(hearth_gateway::GatewayError::Store)?
                .ok_or_else(|| not_found(id))?;
            stored.conversation
        }
        None => Vec::new(),
    };
    // What a continuation of this response starts from: the earlier turns, this input, and
    // (once known) the answer; instructions are the request's own.
    let mut turns = prior.clone();
    turns.extend(conversation(&request)?);
    let chat = chat_request(&request, prior)?;
    let mut stream = gateway.chat_as(&chat, &caller).await?;
    let mut builder = ResponseBuilder::new(&request, &stream.model, stream.created);
    let keep = move |state: &AppState, response: &ResponseObject, mut turns: Vec<_>| {
        if !store {
            return Ok(());
        }
        turns.push(answer_message(response));
        let responses = state.platform.gateway().responses()?;
        responses
            .save(&owner, response, &turns)
            .map_err(hearth_gateway::GatewayError::Store)
    };
    let kept_state = state.clone();
    if !request.stream {
        let model = stream.model.clone();
        let (answer, summary) = stream.into_response().await?;
        state.metrics.record_generation(&model, &summary);
        let choice = answer
            .choices
            .first()
            .ok_or_else(|| ApiError::new(ErrorCode::UpstreamError, "the answer held no choice"))?;
        let finish = choice
            .finish_reason
            .clone()
            .unwrap_or_else(|| "stop".into());
        let response = builder.whole(&choice.message, &finish, answer.usage);
        keep(&state, &response, turns)?;
        return Ok(Json(response).into_response());
    }
    let mut translation = Translation {
        builder,
        kept: Some(Box::new(move |response: &ResponseObject| {
            keep(&kept_state, response, turns)
        })),
    };
    let sse = crate::sse::relay_named(move |out| async move {
        for event in translation.builder.start() {
            out.event(named(event)).await?;
        }
        crate::sse::relay_chat(&out, &state.metrics, &mut stream, &mut translation).await
    });
    Ok(sse.into_response())
}

/// A stream event as its named server-sent event.
fn named(event: serde_json::Value) -> Event {
    let name = event["type"].as_str().unwrap_or("message").to_owned();
    Event::default().event(name).data(event.to_string())
}

/// The event that ends a stream on `e`: the API's error body, named `error`.
fn error_event(e: &ApiError) -> Event {
    let body = StreamError {
        error: e.body().error,
        kind: "error".into(),
    };
    let data = serde_json::to_string(&body).expect("plain data serializes");
    Event::default().event("error").data(data)
}

/// Keeps a finished response (when the request asked to store it).
type Keep = Box<dyn FnOnce(&ResponseObject) -> Result<(), hearth_gateway::GatewayError> + Send>;

/// A chat answer told as the Responses API's events.
struct Translation {
    builder: ResponseBuilder,
    kept: Option<Keep>,
}

impl crate::sse::ChatTranslation for Translation {
    fn delta(&mut self, delta: hearth_types::ChunkDelta) -> Vec<Event> {
        self.builder.push(delta).into_iter().map(named).collect()
    }

    fn finish(
        &mut self,
        finish_reason: &str,
        usage: hearth_types::Usage,
        _summary: &hearth_infer::llm::GenerationSummary,
    ) -> Vec<Event> {
        let (events, response) = self.builder.finish(finish_reason, usage);
        // Stored before it is told complete: a client that continues it at once finds it.
        if let Some(keep) = self.kept.take() {
            if let Err(e) = keep(&response) {
                return vec![error_event(&ApiError::from(e))];
            }
        }
        events.into_iter().map(named).collect()
    }

    fn failure(&mut self, e: ApiError) -> Event {
        error_event(&e)
    }
}

/// A stored response, as it was answered.
#[utoipa::path(get, path = "/v1/responses/{id}", tag = "inference",
    params(("id" = String, Path, description = "The response's id (`resp_…`)")),
    responses(
        (status = 200, description = "The stored response", body = ResponseObject),
        (status = 404, description = "No stored response of that id for this key"),
    ),
    security(("bearer" = ["inference"])))]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<ResponseObject>, ApiError> {
    let stored = state
        .platform
        .gateway()
        .responses()?
        .load(&owner(&caller), &id)
        .map_err(hearth_gateway::GatewayError::Store)?
        .ok_or_else(|| not_found(&id).with_param("id"))?;
    Ok(Json(stored.response))
}

/// Deletes a stored response: it can no longer be read or continued.
#[utoipa::path(delete, path = "/v1/responses/{id}", tag = "inference",
    params(("id" = String, Path, description = "The response's id (`resp_…`)")),
    responses(
        (status = 200, description = "Deleted", body = ResponseDeleted),
        (status = 404, description = "No stored response of that id for this key"),
    ),
    security(("bearer" = ["inference"])))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<ResponseDeleted>, ApiError> {
    let deleted = state
        .platform
        .gateway()
        .responses()?
        .delete(&owner(&caller), &id)
        .map_err(hearth_gateway::GatewayError::Store)?;
    if !deleted {
        return Err(not_found(&id).with_param("id"));
    }
    Ok(Json(ResponseDeleted {
        id,
        object: "response.deleted".into(),
        deleted: true,
    }))
}
