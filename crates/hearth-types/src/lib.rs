//! Wire types shared by the server, the CLI and the engines: OpenAI-compatible request and
//! response structs, the Anthropic Messages API's ([`anthropic`]), rerank and score
//! ([`rerank`]), the error body shapes,
//! and the one clock ([`clock`]: unix time, UTC dates).
//!
//! No IO and no web framework here: these are plain serde structs, each describing itself for
//! the OpenAPI document (utoipa's `ToSchema`). Unknown fields sent by
//! clients are ignored (OpenAI adds fields often); fields hearth does not implement are
//! accepted and documented as ignored where that is harmless.

pub mod anthropic;
pub mod clock;
pub mod errors;
pub mod openai;
pub mod rerank;
pub mod responses;
pub mod schema;
pub mod whole;

pub use errors::{ErrorCode, Retry};
pub use openai::*;
