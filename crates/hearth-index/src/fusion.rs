/// Reciprocal rank fusion (Cormack et al., 2009): each list votes `1 / (k + rank)` for its
/// entries (rank from 1), so lists whose scores are on different scales (BM25, cosine) can be
/// merged. Returns every id that appears anywhere, best first. `k = 60` is the usual choice.
pub fn reciprocal_rank_fusion(lists: &[&[(usize, f32)]], k: f32) -> Vec<(usize, f32)> {
    let mut fused: std::collections::HashMap<usize, f32> = std::collections::HashMap::new();
    for list in lists {
        for (rank, &(id, _)) in list.iter().enumerate() {
            *fused.entry(id).or_default() += 1.0 / (k + rank as f32 + 1.0);
        }
    }
    let mut out: Vec<(usize, f32)> = fused.into_iter().collect();
    out.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_ranked_well_by_both_lists_wins() {
        let text = [(1, 12.0), (2, 11.0)];
        let vector = [(3, 0.9), (2, 0.8), (4, 0.7)];
        let fused = reciprocal_rank_fusion(&[&text, &vector], 60.0);
        let order: Vec<usize> = fused.iter().map(|&(id, _)| id).collect();
        // 2 is second in both lists; 1 and 3 are first in one list only (a tie, by id).
        assert_eq!(order, [2, 1, 3, 4]);
        let expected = 2.0 / 62.0;
        assert!((fused[0].1 - expected).abs() < 1e-6);
    }
}
