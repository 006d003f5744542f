//! The models. Each trains from the users × items matrix of weighed interactions and scores
//! every item for a user's history; ranking, filtering and excluding seen items happen above.

pub mod als;
pub mod ease;
pub mod embedding;
pub mod knn;
pub mod popularity;

use serde::{Deserialize, Serialize};

pub use als::{Als, AlsParams};
pub use ease::{Ease, EaseParams};
pub use embedding::{embed_items, ContentKnn, ContentKnnParams, ItemVectors, ProfileCosine};
pub use knn::{ItemKnn, ItemKnnParams};
pub use popularity::{Popularity, PopularityParams};

/// A user's training row: item indices (sorted) and their weights.
#[derive(Debug, Clone, Copy)]
pub struct History<'a> {
    pub items: &'a [u32],
    pub weights: &'a [f32],
}

/// A trained model.
pub trait Scorer: Send + Sync {
    /// Writes a score for every item into `out` (one per item; higher is better). `user` is
    /// the user's row in the training matrix when the model saw them, `None` for a visitor
    /// known only by `history`.
    fn score(&self, user: Option<u32>, history: History<'_>, out: &mut [f32]);
}

/// The model families `train` and `eval` know, by the names the CLI and config use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    Popularity,
    ItemKnn,
    Als,
    Ease,
    /// Items near the user's items by text embedding (the local embedding model).
    Content,
    /// The zero-shot baseline: a general-purpose embedding model, user profile = mean item
    /// embedding, items ranked by cosine. Nothing is trained.
    OffTheShelf,
}

impl ModelKind {
    pub const ALL: [ModelKind; 6] = [
        ModelKind::Popularity,
        ModelKind::ItemKnn,
        ModelKind::Als,
        ModelKind::Ease,
        ModelKind::Content,
        ModelKind::OffTheShelf,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Popularity => "popularity",
            ModelKind::ItemKnn => "item-knn",
            ModelKind::Als => "als",
            ModelKind::Ease => "ease",
            ModelKind::Content => "content",
            ModelKind::OffTheShelf => "off-the-shelf",
        }
    }

    /// Whether the model reads item text embeddings.
    pub fn needs_vectors(self) -> bool {
        matches!(self, ModelKind::Content | ModelKind::OffTheShelf)
    }
}

impl std::str::FromStr for ModelKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = ModelKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown model '{s}' (one of: {})", names.join(", "))
            })
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums let the compiler keep a full vector register busy.
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8 * 8;
    for (ca, cb) in a[..chunks].chunks_exact(8).zip(b[..chunks].chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += ca[k] * cb[k];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for k in chunks..a.len() {
        sum += a[k] * b[k];
    }
    sum
}

#[inline]
pub(crate) fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// Scores items by their summed (non-negative) similarity to the history's items, given each
/// item's neighbour list.
pub(crate) fn sum_neighbours(
    neighbours: &[Vec<(u32, f32)>],
    history: History<'_>,
    out: &mut [f32],
) {
    out.fill(0.0);
    for &j in history.items {
        for &(i, s) in &neighbours[j as usize] {
            out[i as usize] += s.max(0.0);
        }
    }
}

/// Keeps the `k` largest `(index, score)` pairs, best first.
pub fn top_k(scores: impl Iterator<Item = (u32, f32)>, k: usize) -> Vec<(u32, f32)> {
    let mut all: Vec<(u32, f32)> = scores.collect();
    if k == 0 {
        return Vec::new();
    }
    if all.len() > k {
        all.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(k);
    }
    all.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_best_first_with_ties_by_index() {
        let scores = [(0, 1.0), (1, 3.0), (2, 2.0), (3, 3.0), (4, -1.0)];
        assert_eq!(
            top_k(scores.into_iter(), 3),
            vec![(1, 3.0), (3, 3.0), (2, 2.0)]
        );
        assert_eq!(top_k(scores.into_iter(), 10).len(), 5);
    }

    #[test]
    fn dot_matches_naive_sum() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.1).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-3);
    }
}
