//! The optional second stage of catalogue search: the first stage's best items read again,
//! with the shopper's words, by a reranker (`[recs] rerank_model`).

use hearth_gateway::rerank::RerankStage;
use hearth_gateway::Gateway;

use crate::serve::{Recommendation, Recommender};
use crate::RecsError;

/// What relevance means for the catalogue's reranker unless the config says otherwise.
pub const RERANK_INSTRUCTION: &str =
    "Given a shopper's request, retrieve the catalogue item that matches what they want";

/// `results` (best first) reordered by `stage` for `query`; each item read gets the
/// reranker's score. An item is read as its catalogue text (title, categories, tags,
/// description), or its title when the catalogue does not know it.
pub async fn rerank(
    gateway: &Gateway,
    recommender: &Recommender,
    stage: &RerankStage,
    query: &str,
    results: Vec<Recommendation>,
) -> Result<Vec<Recommendation>, RecsError> {
    let documents: Vec<String> = results
        .iter()
        .map(|r| {
            recommender
                .item(&r.item)
                .map(|i| i.text())
                .filter(|t| !t.trim().is_empty())
                .unwrap_or_else(|| r.title.clone())
        })
        .collect();
    let (order, scores) = gateway.rerank_stage(stage, query, &documents).await?;
    let mut slots: Vec<Option<Recommendation>> = results.into_iter().map(Some).collect();
    for (slot, score) in slots.iter_mut().zip(&scores) {
        if let Some(r) = slot {
            r.score = *score as f32;
        }
    }
    Ok(order.iter().filter_map(|&i| slots[i].take()).collect())
}
