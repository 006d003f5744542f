//! Retrieval primitives: a vector index (exact below a size, HNSW above it), a BM25
//! full-text index (tantivy), and rank fusion to combine them. Knows nothing of items or
//! documents: callers index rows by position and map positions back themselves.

mod fusion;
mod text;
mod vector;

pub use fusion::reciprocal_rank_fusion;
pub use text::{TextDoc, TextIndex};
pub use vector::{HnswOptions, Metric, VectorIndex, VectorOptions};

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("vectors of {got} numbers do not divide into rows of dimension {dim}")]
    Shape { dim: usize, got: usize },
    #[error("the query has {got} dimensions; the index has {dim}")]
    QueryDimension { dim: usize, got: usize },
    #[error("vector graph: {0}")]
    Graph(String),
    #[error("full-text index: {0}")]
    Text(#[from] tantivy::TantivyError),
}
