//! Support conversations over HTTP: start a session, send messages (the customer's, streamed
//! back as server-sent events; or a human's after a handoff), read the transcript.

use axum::extract::{Path, State};
use axum::http::StatusCode;

use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use hearth_core::support::SupportError;
use hearth_gateway::Caller;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::recs::invalid;
use crate::AppState;
use hearth_types::ErrorCode;

impl From<SupportError> for ApiError {
    fn from(e: SupportError) -> Self {
        let e = match e {
            SupportError::Model(inner) => return ApiError::from(inner),
            other => other,
        };
        let param = match &e {
            SupportError::InvalidParameter { param, .. } => Some(param.clone()),
            SupportError::UnknownSession(_) => Some("id".to_owned()),
            _ => None,
        };
        ApiError::of(e.code(), &e, param, None)
    }
}

/// The longest message a session takes (customer or human), in bytes.
const MAX_MESSAGE_BYTES: usize = 32 * 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    /// Anything the company wants kept with the session (its own customer id, channel …).
    #[serde(default)]
    metadata: Value,
}

/// `POST /v1/support/sessions`
pub async fn create_session(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // The body is optional: no body starts a session without metadata.
    let request: NewSession = if body.iter().all(u8::is_ascii_whitespace) {
        NewSession::default()
    } else {
        crate::extract::require_json_content_type(&headers)?;
        crate::extract::parse_json(&body)?
    };
    let session = state
        .platform
        .start_support_session(request.metadata, caller.owner())?;
    Ok((StatusCode::CREATED, Json(session)).into_response())
}

/// `GET /v1/support/sessions/{id}`: status, routing, handoff summary and the transcript with
/// tool calls.
pub async fn get_session(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.platform.support_session_for(&id, &caller)?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    content: String,
    /// `customer` (default) or `human` (a human agent, after a handoff).
    #[serde(default = "customer")]
    role: String,
    /// With `role: human`: give the session back to the agent after this message.
    #[serde(default)]
    hand_back: bool,
    /// Server-sent events (default) or one JSON answer.
    #[serde(default = "yes")]
    stream: bool,
}

fn customer() -> String {
    "customer".into()
}

fn yes() -> bool {
    true
}

/// `POST /v1/support/sessions/{id}/messages`
pub async fn post_message(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(message): ApiJson<NewMessage>,
) -> Result<Response, ApiError> {
    // Another owner's session is a 404, whatever the message.
    state.platform.support_session_for(&id, &caller)?;
    if message.content.len() > MAX_MESSAGE_BYTES {
        return Err(invalid(
            "content",
            format!("a message is at most {MAX_MESSAGE_BYTES} bytes"),
        ));
    }
    match message.role.as_str() {
        "customer" => {}
        "human" => {
            let session = state
                .platform
                .support_human_message(&id, &message.content, message.hand_back)
                .await?;
            return Ok(Json(session).into_response());
        }
        other => {
            return Err(invalid(
                "role",
                format!("unknown role '{other}'; use customer or human"),
            ))
        }
    }
    if message.content.trim().is_empty() {
        return Err(invalid("content", "'content' must not be empty"));
    }
    // Fails fast (503) before a stream starts.
    state.platform.support_desk()?;
    // A turn adds a bounded number of entries (the customer's message, at most
    // `max_tool_rounds` calls with their results, the reply or handoff), so this channel never
    // fills; the relay behind it is bounded too.
    let rounds = state.platform.config().support.max_tool_rounds;
    let entries = rounds.saturating_mul(4).saturating_add(8).min(4096);
    let (tx, mut rx) = mpsc::channel::<Value>(entries);
    let platform = state.platform.clone();
    let turn = tokio::spawn(async move {
        let send = |entry: &hearth_core::support::agent::Entry| {
            if tx
                .try_send(json!({"type": "entry", "entry": entry}))
                .is_err()
            {
                tracing::warn!("a support turn produced more entries than its stream holds");
            }
        };
        platform
            .support_customer_message(&id, &message.content, &send)
            .await
    });
    let done = |session: hearth_core::support::sessions::Session,
                outcome: hearth_core::support::agent::TurnOutcome| {
        json!({
            "type": "done",
            "status": session.status,
            "reply": outcome.reply,
            "handed_over": outcome.handed_over,
            "tool_calls": outcome.tool_calls,
            "valid_tool_calls": outcome.valid_tool_calls,
            "usage": outcome.usage,
            "citations": outcome.citations,
            "intent": session.intent,
        })
    };
    let joined = |r: Result<_, tokio::task::JoinError>| {
        r.map_err(|e| ApiError::new(ErrorCode::InternalError, e.to_string()))
    };
    if message.stream {
        return Ok(crate::sse::relay(move |out| async move {
            while let Some(event) = rx.recv().await {
                out.json(&event).await?;
            }
            match joined(turn.await) {
                Ok(Ok((session, outcome))) => out.json(&done(session, outcome)).await,
                Ok(Err(e)) => out.error(&ApiError::from(e)).await,
                Err(e) => out.error(&e).await,
            }
        })
        .into_response());
    }
    let (session, outcome) = joined(turn.await)??;
    let mut answer = done(session, outcome);
    answer.as_object_mut().map(|m| m.remove("type"));
    Ok(Json(answer).into_response())
}
