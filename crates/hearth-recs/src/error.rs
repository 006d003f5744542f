use std::path::{Path, PathBuf};

/// Every failure the recommendation engine reports; each has a stable public code
/// ([`RecsError::code`]).
#[derive(Debug, thiserror::Error)]
pub enum RecsError {
    #[error("invalid '{param}': {message}")]
    InvalidParameter { param: String, message: String },
    /// A file that cannot be read as a whole (no header, a mapped column missing).
    #[error("{}: {message}", file.display())]
    BadFile { file: PathBuf, message: String },
    /// `--strict` import: the first bad row rejects the file.
    #[error("{0}")]
    BadRow(crate::import::RowError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// There is nothing to train on or evaluate.
    #[error("not enough data: {0}")]
    NotEnoughData(String),
    #[error("model: {0}")]
    Embedding(#[from] hearth_gateway::GatewayError),
    #[error(transparent)]
    Store(#[from] hearth_store::StoreError),
    /// A trained-model artifact that cannot be written or read.
    #[error("model artifact: {0}")]
    Artifact(String),
    /// Nothing has been trained yet.
    #[error("no trained recommendation model: run `hearth recs train` (or wait for the scheduled training)")]
    NotTrained,
    #[error("unknown item '{0}'")]
    UnknownItem(String),
    #[error("unknown user '{0}'")]
    UnknownUser(String),
    /// A use that needs a chat model, and none is registered or configured.
    #[error("{0}")]
    NoChatModel(String),
    #[error("index: {0}")]
    Index(#[from] hearth_index::IndexError),
    /// The shopping assistant's model failed or answered outside its contract.
    #[error("assistant: {0}")]
    Assistant(String),
}

impl RecsError {
    pub fn code(&self) -> hearth_types::ErrorCode {
        match self {
            RecsError::InvalidParameter { .. } => hearth_types::ErrorCode::InvalidRequest,
            RecsError::BadFile { .. } => hearth_types::ErrorCode::BadFile,
            RecsError::BadRow(_) => hearth_types::ErrorCode::BadRow,
            RecsError::Io { .. } => hearth_types::ErrorCode::IoError,
            RecsError::NotEnoughData(_) => hearth_types::ErrorCode::NotEnoughData,
            RecsError::Embedding(e) => e.code(),
            RecsError::Store(e) => e.code(),
            RecsError::Artifact(_) => hearth_types::ErrorCode::ArtifactError,
            RecsError::NotTrained => hearth_types::ErrorCode::NotTrained,
            RecsError::UnknownItem(_) => hearth_types::ErrorCode::ItemNotFound,
            RecsError::UnknownUser(_) => hearth_types::ErrorCode::UserNotFound,
            RecsError::NoChatModel(_) => hearth_types::ErrorCode::NoChatModel,
            RecsError::Index(_) => hearth_types::ErrorCode::IndexError,
            RecsError::Assistant(_) => hearth_types::ErrorCode::AssistantError,
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        RecsError::Io {
            path: path.to_owned(),
            source,
        }
    }
}
