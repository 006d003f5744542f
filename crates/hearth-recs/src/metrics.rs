//! Top-K ranking metrics, averaged over the users who have held-out items.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::models::{top_k, History, Scorer};
use crate::sparse::Csr;

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Metrics {
    pub precision: f64,
    pub recall: f64,
    pub ndcg: f64,
    pub hit_rate: f64,
    pub map: f64,
    /// Share of the catalogue that appears in at least one user's top K.
    pub coverage: f64,
    /// Users evaluated (those with held-out items).
    pub users: usize,
}

/// One user's figures, before averaging.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct UserMetrics {
    pub precision: f64,
    pub recall: f64,
    pub ndcg: f64,
    pub hit: f64,
    pub average_precision: f64,
}

/// Metrics of one user's ranked list against their held-out items.
pub fn user_metrics(ranked: &[u32], held_out: &[u32]) -> UserMetrics {
    let k = ranked.len();
    if k == 0 || held_out.is_empty() {
        return UserMetrics::default();
    }
    let mut hits = 0usize;
    let mut dcg = 0.0;
    let mut ap = 0.0;
    for (rank, item) in ranked.iter().enumerate() {
        if held_out.contains(item) {
            hits += 1;
            dcg += 1.0 / ((rank + 2) as f64).log2();
            ap += hits as f64 / (rank + 1) as f64;
        }
    }
    let ideal = held_out.len().min(k);
    let idcg: f64 = (0..ideal).map(|r| 1.0 / ((r + 2) as f64).log2()).sum();
    UserMetrics {
        precision: hits as f64 / k as f64,
        recall: hits as f64 / held_out.len() as f64,
        ndcg: dcg / idcg,
        hit: if hits > 0 { 1.0 } else { 0.0 },
        average_precision: ap / ideal as f64,
    }
}

/// Ranks every item the user has not interacted with in `train` and scores the top `k`
/// against the user's row of `test`.
pub fn evaluate(scorer: &dyn Scorer, train: &Csr, test: &Csr, k: usize) -> Metrics {
    let n_items = train.cols;
    let users: Vec<usize> = (0..test.rows).filter(|&u| test.row_len(u) > 0).collect();
    let per_user: Vec<(UserMetrics, Vec<u32>)> = users
        .par_iter()
        .map_init(
            || vec![0f32; n_items],
            |scores, &u| {
                let (items, weights) = train.row(u);
                scorer.score(Some(u as u32), History { items, weights }, scores);
                for &i in items {
                    scores[i as usize] = f32::NEG_INFINITY;
                }
                let ranked: Vec<u32> = top_k(
                    scores
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| s.is_finite())
                        .map(|(i, &s)| (i as u32, s)),
                    k,
                )
                .into_iter()
                .map(|(i, _)| i)
                .collect();
                (user_metrics(&ranked, test.row(u).0), ranked)
            },
        )
        .collect();
    let n = users.len().max(1) as f64;
    let mut m = Metrics {
        users: users.len(),
        ..Default::default()
    };
    let mut seen = vec![false; n_items];
    for (u, ranked) in &per_user {
        m.precision += u.precision / n;
        m.recall += u.recall / n;
        m.ndcg += u.ndcg / n;
        m.hit_rate += u.hit / n;
        m.map += u.average_precision / n;
        for &i in ranked {
            seen[i as usize] = true;
        }
    }
    m.coverage = seen.iter().filter(|&&s| s).count() as f64 / n_items.max(1) as f64;
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_empty_rankings() {
        let m = user_metrics(&[1, 2], &[1, 2]);
        assert_eq!(
            (m.precision, m.recall, m.hit, m.average_precision),
            (1.0, 1.0, 1.0, 1.0)
        );
        assert!((m.ndcg - 1.0).abs() < 1e-12);
        assert_eq!(user_metrics(&[3, 4], &[1, 2]), UserMetrics::default());
    }

    #[test]
    fn one_hit_at_rank_two() {
        // One held-out item found second of three.
        let m = user_metrics(&[7, 1, 8], &[1]);
        assert!((m.precision - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(m.recall, 1.0);
        assert!((m.ndcg - 1.0 / 3f64.log2()).abs() < 1e-12);
        assert_eq!(m.hit, 1.0);
        assert!((m.average_precision - 0.5).abs() < 1e-12);
    }
}
