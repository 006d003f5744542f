//! hearth-infer owns the models: pulling them from the Hugging Face Hub into the standard HF
//! cache, the local model registry, the LLM engine (llama.cpp through `llama-cpp-2`) and the
//! embedding engine (candle BERT).
//!
//! It must never speak HTTP to clients (no axum, no status codes): it takes paths and option
//! structs and returns domain types, so each engine can be benchmarked on its own. Compute-bound
//! engines run on their own threads behind cloneable handles with bounded queues.

pub mod adapter;
pub mod embed;
mod error;
mod gguf;
pub mod hub;
pub mod llm;
pub mod registry;
mod turns;

pub use error::InferError;

/// Cores this process may use for compute, as the OS reports them (cgroup- and
/// affinity-aware). Engines default their thread count to this.
pub fn available_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
