//! hearth-gateway is the one door to models for the API and the apps: it takes
//! OpenAI-shaped requests, resolves the model, loads its engine on first use and turns the
//! engine's output back into OpenAI-shaped responses and stream events.
//!
//! Requests for a route alias go to its deployments (local engines or upstream
//! OpenAI-compatible endpoints) under the route's privacy policy; every request is metered
//! into the usage ledger and, with an API key, held to the key's limits and budget.
//!
//! It never speaks HTTP to clients (no axum, no status codes): hearth-server maps
//! [`GatewayError`] to statuses.

pub mod anthropic;
pub mod call_grammar;
mod chat;
pub mod config;
mod error;
mod gateway;
pub mod keys;
pub mod ledger;
mod meter;
pub mod metrics;
mod models;
pub mod prices;
pub mod privacy;
mod reasoning;
pub mod rerank;
pub mod responses;
mod routing;
pub mod tool_syntax;
pub mod tools;
mod upstream;

pub use chat::{ChatEvent, ChatStream};
pub use config::{DeploymentConfig, GatewayConfig, Privacy, ProviderConfig, RouteConfig, Strategy};
pub use error::GatewayError;
pub use gateway::{DeploymentState, Gateway, RouteState};
pub use hearth_infer::llm::Constraint;
pub use keys::Scope;
pub use models::{GatewayOptions, LoadedModel};
pub use routing::{completion_bound, prompt_bound, Caller};

pub(crate) use hearth_types::clock::{unix_now, unix_now_f64};
