use hearth_infer::InferError;

/// Every failure the gateway reports; each has a stable public code ([`GatewayError::code`]).
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request is malformed; `param` names the field.
    #[error("invalid '{param}': {message}")]
    InvalidRequest { param: String, message: String },
    /// The model exists but cannot serve this kind of request.
    #[error("model '{model}' is {kind} model and cannot serve {route}")]
    WrongModelKind {
        model: String,
        kind: &'static str,
        route: &'static str,
    },
    #[error(transparent)]
    Infer(#[from] InferError),
}

impl GatewayError {
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::InvalidRequest { .. } => "invalid_request",
            GatewayError::WrongModelKind { .. } => "wrong_model_kind",
            GatewayError::Infer(e) => e.code(),
        }
    }

    /// The request field at fault, when there is one.
    pub fn param(&self) -> Option<&str> {
        match self {
            GatewayError::InvalidRequest { param, .. } => Some(param),
            GatewayError::WrongModelKind { .. } => Some("model"),
            GatewayError::Infer(InferError::InvalidParameter { param, .. }) => Some(param),
            GatewayError::Infer(InferError::ModelNotFound { .. }) => Some("model"),
            GatewayError::Infer(InferError::ContextOverflow { .. }) => Some("messages"),
            GatewayError::Infer(_) => None,
        }
    }

    pub(crate) fn invalid(param: &str, message: impl Into<String>) -> Self {
        GatewayError::InvalidRequest {
            param: param.to_owned(),
            message: message.into(),
        }
    }
}
