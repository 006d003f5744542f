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
    /// `[gateway]` config that cannot run (checked at start).
    #[error("gateway config: {0}")]
    Config(String),
    /// The API key may not use this model.
    #[error("the API key '{key}' may not use model '{model}'")]
    Forbidden { key: String, model: String },
    /// The key was revoked (seen by the database when the request was admitted).
    #[error("the API key '{key}' is revoked")]
    KeyRevoked { key: String },
    /// A requests/min or tokens/min limit of the key.
    #[error("the API key '{key}' is over its {limit} limit; retry in {retry_after} s")]
    RateLimited {
        key: String,
        limit: &'static str,
        retry_after: u64,
    },
    /// The key's budget for the period would be exceeded.
    #[error("the API key '{key}' has spent ${spent:.4} of its ${budget:.4} budget (${reserved:.4} reserved by requests running); this request could take it over")]
    BudgetExceeded {
        key: String,
        budget: f64,
        spent: f64,
        reserved: f64,
        retry_after: Option<u64>,
    },
    /// An upstream failed (no answer, an error status, or a stream cut short).
    #[error("upstream: {0}")]
    Upstream(String),
    /// An upstream refused the request itself.
    #[error("upstream {deployment} refused the request (HTTP {status}): {message}")]
    UpstreamRejected {
        deployment: String,
        status: u16,
        message: String,
    },
    /// Every deployment of the route failed.
    #[error("no deployment of route '{route}' could answer: {errors}")]
    Unavailable {
        route: String,
        errors: String,
        retry_after: u64,
    },
    #[error(transparent)]
    Store(#[from] hearth_store::StoreError),
    /// The request carries personal data its route refuses (`refuse`).
    #[error("'{param}' contains {kind} data, which route '{route}' refuses; remove it or use another route")]
    PiiRefused {
        route: String,
        kind: &'static str,
        param: String,
    },
}

impl GatewayError {
    pub fn code(&self) -> hearth_types::ErrorCode {
        match self {
            GatewayError::InvalidRequest { .. } => hearth_types::ErrorCode::InvalidRequest,
            GatewayError::WrongModelKind { .. } => hearth_types::ErrorCode::WrongModelKind,
            GatewayError::Infer(e) => e.code(),
            GatewayError::Config(_) => hearth_types::ErrorCode::GatewayConfig,
            GatewayError::Forbidden { .. } => hearth_types::ErrorCode::ModelNotAllowed,
            GatewayError::KeyRevoked { .. } => hearth_types::ErrorCode::InvalidApiKey,
            GatewayError::RateLimited { .. } => hearth_types::ErrorCode::RateLimitExceeded,
            GatewayError::BudgetExceeded { .. } => hearth_types::ErrorCode::BudgetExceeded,
            GatewayError::Upstream(_) => hearth_types::ErrorCode::UpstreamError,
            GatewayError::UpstreamRejected { .. } => hearth_types::ErrorCode::UpstreamRejected,
            GatewayError::Unavailable { .. } => hearth_types::ErrorCode::NoDeploymentAvailable,
            GatewayError::Store(e) => e.code(),
            GatewayError::PiiRefused { .. } => hearth_types::ErrorCode::PiiRefused,
        }
    }

    /// Whether the request itself is at fault (another deployment would refuse it too).
    pub fn is_clients_fault(&self) -> bool {
        matches!(
            self,
            GatewayError::InvalidRequest { .. }
                | GatewayError::WrongModelKind { .. }
                | GatewayError::PiiRefused { .. }
                | GatewayError::Infer(InferError::ContextOverflow { .. })
                | GatewayError::Infer(InferError::InvalidParameter { .. })
        )
    }

    /// The request field at fault, when there is one.
    pub fn param(&self) -> Option<&str> {
        match self {
            GatewayError::InvalidRequest { param, .. } => Some(param),
            GatewayError::WrongModelKind { .. } => Some("model"),
            GatewayError::Infer(InferError::InvalidParameter { param, .. }) => Some(param),
            GatewayError::Infer(InferError::ModelNotFound { .. }) => Some("model"),
            GatewayError::Infer(InferError::ContextOverflow { .. }) => Some("messages"),
            GatewayError::Forbidden { .. } => Some("model"),
            GatewayError::PiiRefused { param, .. } => Some(param),
            _ => None,
        }
    }

    pub(crate) fn invalid(param: &str, message: impl Into<String>) -> Self {
        GatewayError::InvalidRequest {
            param: param.to_owned(),
            message: message.into(),
        }
    }
}
