//! Support conversations over HTTP: start a session, send messages (the customer's, streamed
//! back as server-sent events; or a human's after a handoff), read the transcript.

use axum::extract::{Path, State};
use axum::http::StatusCode;

use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use hearth_core::support::sessions::Session;
use hearth_core::support::SupportError;
use hearth_core::support_platform::{SupportTurn, TurnAnswer, TurnEvent};
use hearth_gateway::Caller;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

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
            SupportError::NotHandedOver(_) => Some("role".to_owned()),
            _ => None,
        };
        ApiError::of(e.code(), &e, param, None)
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    /// Anything the company wants kept with the session (its own customer id, channel …).
    #[serde(default)]
    metadata: Value,
}

/// Start a support conversation (the body is optional).
#[utoipa::path(post, path = "/v1/support/sessions", tag = "support",
    request_body(content = Option<NewSession>, content_type = "application/json",
        description = "Optional: no body, or `null`, starts a session without metadata"),
    responses(
        (status = 201, description = "The new session", body = Session),
        (status = 400, description = "Malformed body"),
        (status = 503, description = "The agent is not configured, or the store is busy (Retry-After)"),
    ),
    security(("bearer" = ["support"])))]
pub async fn create_session(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // The body is optional: no body (or `null`) starts a session without metadata.
    let request: NewSession = match body.trim_ascii() {
        b"" => NewSession::default(),
        json => {
            crate::extract::require_json_content_type(&headers)?;
            if json == b"null" {
                NewSession::default()
            } else {
                crate::extract::parse_json(&body)?
            }
        }
    };
    let session = state
        .platform
        .start_support_session(request.metadata, caller.owner())?;
    Ok((StatusCode::CREATED, Json(session)).into_response())
}

/// A session: status (active or handoff), intent routing, handoff summary, and the
/// transcript with tool calls and citations.
#[utoipa::path(get, path = "/v1/support/sessions/{id}", tag = "support",
    params(("id" = String, Path, description = "The session's id")),
    responses(
        (status = 200, description = "The session", body = Session),
        (status = 404, description = "Unknown session (or another owner's)"),
        (status = 503, description = "The store is busy (Retry-After)"),
    ),
    security(("bearer" = ["support"])))]
pub async fn get_session(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.platform.support_session_for(&id, &caller)?).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// The message; not only spaces.
    #[schema(pattern = "\\S")]
    content: String,
    /// `customer` (default) or `human` (a human agent, after a handoff).
    #[serde(default = "customer")]
    #[schema(schema_with = message_role)]
    role: String,
    /// With `role: human`: give the session back to the agent after this message.
    #[serde(default)]
    hand_back: bool,
    /// Server-sent events (default) or one JSON answer.
    #[serde(default = "yes")]
    #[schema(default = true)]
    stream: bool,
}

/// The JSON answer to a message: how the customer's turn ended, or (a human's message) the
/// session.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum MessageAnswer {
    Turn(TurnAnswer),
    Session(Box<Session>),
}

fn message_role() -> utoipa::openapi::schema::ObjectBuilder {
    hearth_types::schema::one_of_strings(&["customer", "human"]).default(Some("customer".into()))
}

fn customer() -> String {
    "customer".into()
}

fn yes() -> bool {
    true
}

/// A message in a session: the customer's (answered by the agent unless handed over;
/// server-sent events by default) or a human agent's after a handoff.
#[utoipa::path(post, path = "/v1/support/sessions/{id}/messages", tag = "support",
    params(("id" = String, Path, description = "The session's id")),
    request_body = NewMessage,
    responses(
        (status = 200, description = "A customer's message: server-sent events (each transcript \
            entry as it is added, then the turn's end, or an error; then `data: [DONE]`), or with \
            `stream: false` how the turn ended. A human's message: the session.",
            content((MessageAnswer = "application/json"), (TurnEvent = "text/event-stream"))),
        (status = 400, description = "Empty content or an unknown role (param names the field)"),
        (status = 404, description = "Unknown session"),
        (status = 409, description = "A human's message while the agent has the session \
            (session_not_handed_over), or another message's turn held the session too long, \
            here or on another replica (session_busy)"),
        (status = 503, description = "The agent is not configured ([support] policy), no chat model \
            is registered, or the model is busy (Retry-After)"),
    ),
    security(("bearer" = ["support"])))]
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
                .support_human_message(&id, &message.content, message.hand_back, None)
                .await?;
            return Ok(Json(MessageAnswer::Session(Box::new(session))).into_response());
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
    Ok(Json(MessageAnswer::Turn(answer)).into_response())
}
