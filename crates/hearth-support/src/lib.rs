//! hearth-support is the customer-service agent: it learns a company's intents from labelled
//! examples and routes conversations by them, answers from the company's documents, acts
//! through the company's APIs under its policy, and hands over to humans.
//!
//! It reaches models only through hearth-gateway and never speaks HTTP as a server (the
//! routes live in hearth-server); it never depends on hearth-recs.

pub mod agent;
pub mod demo_shop;
pub mod desk;
mod error;
pub mod eval;
pub mod intents;
pub mod kb;
mod linear;
pub mod pii;
pub mod sessions;
mod text_features;
pub mod tools;

pub use error::SupportError;
