use std::path::PathBuf;

use crate::embed::EmbedError;
use crate::hub::HubError;

/// Every failure the model layer reports. Each variant is a stable public code (see
/// [`InferError::code`]); hearth-server maps them to HTTP statuses exhaustively.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error("model '{name}' not found; `hearth models` lists the local models, `hearth pull` fetches one")]
    ModelNotFound { name: String },
    #[error("'{path}' is not a model hearth can load: {reason}")]
    InvalidModel { path: PathBuf, reason: String },
    #[error("the prompt has {prompt_tokens} tokens and asks for up to {max_tokens} more, but the context holds {context_length}; shorten the prompt or lower max_tokens")]
    ContextOverflow {
        prompt_tokens: usize,
        max_tokens: usize,
        context_length: usize,
    },
    #[error("invalid parameter '{param}': {message}")]
    InvalidParameter { param: String, message: String },
    #[error("the engine queue is full ({capacity} requests waiting); retry shortly")]
    Overloaded { capacity: usize },
    #[error("no sequence of the engine came free within {waited_ms} ms; retry shortly")]
    QueueTimeout { waited_ms: u64 },
    #[error("the engine has stopped")]
    EngineStopped,
    #[error("engine failure: {0}")]
    Engine(String),
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl InferError {
    /// The stable public code of this error.
    pub fn code(&self) -> hearth_types::ErrorCode {
        match self {
            InferError::ModelNotFound { .. } => hearth_types::ErrorCode::ModelNotFound,
            InferError::InvalidModel { .. } => hearth_types::ErrorCode::InvalidModel,
            InferError::ContextOverflow { .. } => hearth_types::ErrorCode::ContextLengthExceeded,
            InferError::InvalidParameter { .. } => hearth_types::ErrorCode::InvalidRequest,
            InferError::Overloaded { .. } | InferError::QueueTimeout { .. } => {
                hearth_types::ErrorCode::Overloaded
            }
            InferError::EngineStopped => hearth_types::ErrorCode::EngineStopped,
            InferError::Engine(_) => hearth_types::ErrorCode::EngineError,
            InferError::Hub(e) => e.code(),
            InferError::Embed(e) => e.code(),
            InferError::Io { .. } => hearth_types::ErrorCode::IoError,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        InferError::Io {
            context: context.into(),
            source,
        }
    }
}
