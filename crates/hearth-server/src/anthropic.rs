//! The Anthropic Messages API: `POST /v1/messages` and `POST /v1/messages/count_tokens`, for
//! agents written against Claude. The gateway translates each request into a chat request
//! (hearth_gateway::anthropic), so every local model and route serves it. Errors on these
//! paths, the key check's and the door's included, have Anthropic's shape
//! ([`anthropic_errors`]); the key may come as `x-api-key`, as Anthropic's SDKs send it.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use hearth_gateway::anthropic::{chat_request, messages_response, MessagesEvents};
use hearth_gateway::Caller;
use hearth_types::anthropic::{
    CountTokensRequest, CountTokensResponse, ErrorResponse, MessagesRequest, MessagesResponse,
    StreamEvent,
};

use crate::extract::ApiJson;
use crate::{ApiError, AppState};

/// The largest error body rewritten into Anthropic's shape (hearth's are far smaller).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A message (streamed with `stream: true`): the Anthropic Messages API, served by the model
/// or route `model` names.
#[utoipa::path(post, path = "/v1/messages", tag = "inference",
    request_body = MessagesRequest,
    responses(
        (status = 200, description = "A message, or with `stream: true` server-sent events \
            named by their type: message_start, content_block_start, content_block_delta, \
            content_block_stop, message_delta, message_stop (ping between; error ends it)",
            content((MessagesResponse = "application/json"),
                (StreamEvent = "text/event-stream"))),
        (status = 400, description = "Invalid request; the message names the field"),
        (status = 404, description = "Unknown model"),
        (status = 502, description = "An upstream failed"),
        (status = 503, description = "Engine queue full, or no deployment can take it (Retry-After)"),
    ),
    security(("bearer" = ["inference"])))]
pub async fn messages(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<MessagesRequest>,
) -> Result<Response, ApiError> {
    let chat = chat_request(&request)?;
    let stops = request.stop_sequences.clone().unwrap_or_default();
    // Which of the request's stop sequences ended the answer (not a template's own).
    let matched = move |stop: Option<String>| stop.filter(|s| stops.contains(s));
    let mut stream = state.platform.gateway().chat_as(&chat, &caller).await?;
    if !request.stream {
        let model = stream.model.clone();
        let (response, summary) = stream.into_response().await?;
        state.metrics.record_generation(&model, &summary);
        let matched = matched(summary.stop_sequence.clone());
        return Ok(Json(messages_response(response, matched.as_deref())).into_response());
    }
    let mut translation = Translation {
        events: MessagesEvents::new(&stream.id, stream.model.clone()),
        matched: Box::new(matched),
    };
    let sse = crate::sse::relay_named(move |out| async move {
        for event in translation.events.start() {
            out.event(named(event)).await?;
        }
        crate::sse::relay_chat(&out, &state.metrics, &mut stream, &mut translation).await
    });
    Ok(sse.into_response())
}

/// A Messages stream event as its named server-sent event.
fn named(event: StreamEvent) -> Event {
    let data = serde_json::to_string(&event).expect("plain data serializes");
    Event::default().event(event.name()).data(data)
}

/// A chat answer told as the Messages API's events.
struct Translation {
    events: MessagesEvents,
    /// Which of the request's stop sequences a matched stop string is.
    matched: Box<dyn Fn(Option<String>) -> Option<String> + Send>,
}

impl crate::sse::ChatTranslation for Translation {
    fn delta(&mut self, delta: hearth_types::ChunkDelta) -> Vec<Event> {
        self.events.push(delta).into_iter().map(named).collect()
    }

    fn finish(
        &mut self,
        finish_reason: &str,
        usage: hearth_types::Usage,
        summary: &hearth_infer::llm::GenerationSummary,
    ) -> Vec<Event> {
        let matched = (self.matched)(summary.stop_sequence.clone());
        self.events
            .finish(finish_reason, usage, matched.as_deref())
            .into_iter()
            .map(named)
            .collect()
    }

    fn failure(&mut self, e: ApiError) -> Event {
        let mut body = ErrorResponse::for_status(e.status.as_u16(), e.message.clone());
        body.error.code = Some(e.code.as_str().to_owned());
        named(StreamEvent::Error { error: body.error })
    }
}

/// The prompt tokens a Messages request would take, counted with the model's own chat
/// template and tokenizer (a route counts with its first local deployment).
#[utoipa::path(post, path = "/v1/messages/count_tokens", tag = "inference",
    request_body = CountTokensRequest,
    responses(
        (status = 200, description = "The prompt's token count", body = CountTokensResponse),
        (status = 400, description = "Invalid request, or a route with no local model"),
        (status = 404, description = "Unknown model"),
    ),
    security(("bearer" = ["inference"])))]
pub async fn count_tokens(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<CountTokensRequest>,
) -> Result<Json<CountTokensResponse>, ApiError> {
    let chat = chat_request(&MessagesRequest::from(request))?;
    let input_tokens = state
        .platform
        .gateway()
        .count_prompt_tokens(&chat, &caller)
        .await?;
    Ok(Json(CountTokensResponse { input_tokens }))
}

/// Gives every error answered on the Messages API's paths Anthropic's shape
/// (`{"type": "error", "error": {"type", "message"}}`), keeping the status and its
/// `Retry-After`: the key check's, the door's and the handlers' alike.
pub async fn anthropic_errors(request: Request, next: Next) -> Response {
    let ours = request.uri().path().starts_with("/v1/messages");
    let response = next.run(request).await;
    let status = response.status();
    if !ours || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let error = &value["error"];
    let mut message = error["message"]
        .as_str()
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error"))
        .to_owned();
    if let Some(param) = error["param"].as_str() {
        if !message.contains(param) {
            message = format!("{param}: {message}");
        }
    }
    let mut body = ErrorResponse::for_status(status.as_u16(), message);
    body.error.code = error["code"].as_str().map(str::to_owned);
    let bytes = serde_json::to_vec(&body).expect("plain data serializes");
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(bytes))
}
