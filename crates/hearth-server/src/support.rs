//! Support conversations over HTTP: start a session, send messages (the customer's, streamed
//! back as server-sent events; or a human's after a handoff), read the transcript.

use axum::extract::{Path, State};
use axum::http::StatusCode;

use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use hearth_core::support::SupportError;
use hearth_core::support_platform::{SupportTurn, TurnEvent};
use hearth_gateway::Caller;
use serde::Deserialize;
use serde_json::Value;

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
    let turn = state.platform.support_customer_turn(&id, message.content)?;
    if message.stream {
        let SupportTurn { mut entries, done } = turn;
        return Ok(crate::sse::relay(move |out| async move {
            while let Some(entry) = entries.recv().await {
                out.json(&TurnEvent::Entry { entry }).await?;
            }
            match done.await {
                Ok(Ok(answer)) => out.json(&TurnEvent::Done(answer)).await,
                Ok(Err(e)) => out.error(&ApiError::from(e)).await,
                Err(e) => {
                    out.error(&ApiError::new(ErrorCode::InternalError, e.to_string()))
                        .await
                }
            }
        })
        .into_response());
    }
    let answer = turn.answer().await?;
    Ok(Json(answer).into_response())
}
