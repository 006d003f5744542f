use std::path::{Path, PathBuf};

/// Every failure the support agent reports; each has a stable public code
/// ([`SupportError::code`]).
#[derive(Debug, thiserror::Error)]
pub enum SupportError {
    #[error("invalid '{param}': {message}")]
    InvalidParameter { param: String, message: String },
    /// A data file that cannot be used: a missing column, a malformed row (with its line).
    #[error("{}: {message}", file.display())]
    BadFile { file: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// There is nothing to train on or evaluate.
    #[error("not enough data: {0}")]
    NotEnoughData(String),
    #[error("model: {0}")]
    Model(#[from] hearth_gateway::GatewayError),
    #[error(transparent)]
    Store(#[from] hearth_store::StoreError),
    /// A trained-model artifact that cannot be written or read.
    #[error("model artifact: {0}")]
    Artifact(String),
    #[error("no support session '{0}'")]
    UnknownSession(String),
    /// A human's message while the agent has the session.
    #[error("a human replies only after a handoff; session '{0}' is with the agent")]
    NotHandedOver(String),
    /// Another message's turn held the session for longer than a message waits.
    #[error("session '{0}' is answering another message; retry shortly")]
    SessionBusy(String),
    /// The agent is not set up: no policy or tool config where the config points.
    #[error("support agent not configured: {0}")]
    NotConfigured(String),
    /// No intent model has been trained yet.
    #[error("no trained intent model: run `hearth support intents train --data CSV`")]
    NotTrained,
}

impl SupportError {
    pub fn code(&self) -> hearth_types::ErrorCode {
        match self {
            SupportError::InvalidParameter { .. } => hearth_types::ErrorCode::InvalidRequest,
            SupportError::BadFile { .. } => hearth_types::ErrorCode::BadFile,
            SupportError::Io { .. } => hearth_types::ErrorCode::IoError,
            SupportError::NotEnoughData(_) => hearth_types::ErrorCode::NotEnoughData,
            SupportError::Model(e) => e.code(),
            SupportError::Store(e) => e.code(),
            SupportError::Artifact(_) => hearth_types::ErrorCode::ArtifactError,
            SupportError::NotTrained => hearth_types::ErrorCode::NotTrained,
            SupportError::UnknownSession(_) => hearth_types::ErrorCode::SessionNotFound,
            SupportError::NotHandedOver(_) => hearth_types::ErrorCode::SessionNotHandedOver,
            SupportError::SessionBusy(_) => hearth_types::ErrorCode::SessionBusy,
            SupportError::NotConfigured(_) => hearth_types::ErrorCode::NotConfigured,
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        SupportError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A parameter that cannot be used, with what to do instead.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        SupportError::InvalidParameter {
            param: param.to_string(),
            message: message.into(),
        }
    }
}
