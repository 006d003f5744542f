//! Every error hearth answers with, mapped exhaustively to an HTTP status and OpenAI's error
//! shape `{"error":{message,type,param,code}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hearth_gateway::GatewayError;
use hearth_infer::hub::HubError;
use hearth_infer::InferError;
use hearth_types::{OpenAiError, OpenAiErrorBody};

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: String,
    pub message: String,
    pub param: Option<String>,
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind: kind_for(status),
            code: code.to_owned(),
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn body(&self) -> OpenAiErrorBody {
        OpenAiErrorBody {
            error: OpenAiError {
                message: self.message.clone(),
                kind: self.kind.to_owned(),
                param: self.param.clone(),
                code: Some(self.code.clone()),
            },
        }
    }
}

fn kind_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 | 400 | 415 | 422 => "invalid_request_error",
        429 => "rate_limit_error",
        503 => "overloaded_error",
        _ => "server_error",
    }
}

fn infer_status(e: &InferError) -> (StatusCode, Option<u32>) {
    match e {
        InferError::ModelNotFound { .. } => (StatusCode::NOT_FOUND, None),
        InferError::InvalidModel { .. } => (StatusCode::INTERNAL_SERVER_ERROR, None),
        InferError::ContextOverflow { .. } => (StatusCode::BAD_REQUEST, None),
        InferError::InvalidParameter { .. } => (StatusCode::BAD_REQUEST, None),
        InferError::Overloaded { .. } => (StatusCode::SERVICE_UNAVAILABLE, Some(1)),
        InferError::QueueTimeout { .. } => (StatusCode::SERVICE_UNAVAILABLE, Some(2)),
        InferError::EngineStopped => (StatusCode::SERVICE_UNAVAILABLE, Some(5)),
        InferError::Engine(_) => (StatusCode::INTERNAL_SERVER_ERROR, None),
        InferError::Hub(hub) => (hub_status(hub), None),
        InferError::Embed(_) => (StatusCode::INTERNAL_SERVER_ERROR, None),
        InferError::Io { .. } => (StatusCode::INTERNAL_SERVER_ERROR, None),
    }
}

fn hub_status(_e: &HubError) -> StatusCode {
    // Pulls are not served over /v1; a hub failure reaching a client is an upstream failure.
    StatusCode::BAD_GATEWAY
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        let (status, retry_after) = match &e {
            GatewayError::InvalidRequest { .. } => (StatusCode::BAD_REQUEST, None),
            GatewayError::WrongModelKind { .. } => (StatusCode::BAD_REQUEST, None),
            GatewayError::Infer(inner) => infer_status(inner),
            GatewayError::Config(_) => (StatusCode::INTERNAL_SERVER_ERROR, None),
            GatewayError::Forbidden { .. } => (StatusCode::FORBIDDEN, None),
            GatewayError::RateLimited { retry_after, .. } => {
                (StatusCode::TOO_MANY_REQUESTS, Some(*retry_after as u32))
            }
            GatewayError::BudgetExceeded { retry_after, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                retry_after.map(|s| s.min(u32::MAX as u64) as u32),
            ),
            GatewayError::Upstream(_) => (StatusCode::BAD_GATEWAY, None),
            GatewayError::UpstreamRejected { .. } => (StatusCode::BAD_REQUEST, None),
            GatewayError::Unavailable { retry_after, .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, Some(*retry_after as u32))
            }
            GatewayError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, None),
            GatewayError::PiiRefused { .. } => (StatusCode::BAD_REQUEST, None),
        };
        if status.is_server_error() && retry_after.is_none() {
            tracing::error!(error = %e, "request failed");
        }
        ApiError {
            status,
            kind: kind_for(status),
            code: e.code().to_owned(),
            message: e.to_string(),
            param: e.param().map(str::to_owned),
            retry_after,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
