//! hearth-gateway is the one door to models for the API and the apps: it takes
//! OpenAI-shaped requests, resolves the model, loads its engine on first use and turns the
//! engine's output back into OpenAI-shaped responses and stream events.
//!
//! It never speaks HTTP (no axum, no status codes): hearth-server maps [`GatewayError`] to
//! statuses. Routing to upstream endpoints, privacy rules and the cost ledger belong here too.

mod chat;
mod error;
mod models;
pub mod tools;

pub use chat::{ChatEvent, ChatStream};
pub use error::GatewayError;
pub use hearth_infer::llm::Constraint;
pub use models::{Gateway, GatewayOptions, LoadedModel};

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
