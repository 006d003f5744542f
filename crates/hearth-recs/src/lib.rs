//! hearth-recs is the recommendation engine: it reads a company's items, users and events,
//! trains models on them (popularity, item-kNN, implicit ALS, EASE, text-content neighbours)
//! and ranks items for a user, with an offline evaluation that compares every model against
//! popularity and an off-the-shelf embedding baseline.
//!
//! It never speaks HTTP and never loads a model itself: item texts are embedded through
//! hearth-gateway, like every other model call.

pub mod assistant;
pub mod bundle;
pub mod data;
mod error;
pub mod eval;
pub mod import;
pub mod limits;
pub mod metrics;
pub mod models;
pub mod rerank;
pub mod serve;
pub mod sparse;
pub mod store;
pub mod train;

pub use data::{Dataset, Event, EventWeights, Item, ItemId, User, UserId};
pub use error::RecsError;
