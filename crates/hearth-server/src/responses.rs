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
use hearth_gateway::{Caller, ChatEvent};
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
    let sse = crate::sse::relay_named(move |out| async move {
        let send = |event: serde_json::Value| {
            let name = event["type"].as_str().unwrap_or("message").to_owned();
            Event::default().event(name).data(event.to_string())
        };
        for event in builder.start() {
            out.event(send(event)).await?;
        }
        while let Some(event) = stream.next().await {
            match event {
                ChatEvent::Delta(delta) => {
                    for event in builder.push(delta) {
                        out.event(send(event)).await?;
                    }
                }
                ChatEvent::Finished {
                    finish_reason,
                    usage,
                    summary,
                } => {
                    state.metrics.record_generation(&stream.model, &summary);
                    let (events, response) = builder.finish(&finish_reason, usage);
                    let kept = keep(&state, &response, turns);
                    if let Err(e) = kept {
                        out.error(&ApiError::from(e)).await?;
                        break;
                    }
                    for event in events {
                        out.event(send(event)).await?;
                    }
                    break;
                }
                ChatEvent::Failed(e) => {
                    let e = ApiError::from(e);
                    let body = StreamError {
                        error: e.body().error,
                        kind: "error".into(),
                    };
                    let data = serde_json::to_string(&body).expect("plain data serializes");
                    out.event(Event::default().event("error").data(data))
                        .await?;
                    break;
                }
            }
        }
        Ok(())
    });
    Ok(sse.into_response())
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
