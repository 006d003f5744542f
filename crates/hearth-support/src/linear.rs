//! One-vs-rest linear SVM (L2-regularised squared hinge loss) trained by dual coordinate
//! descent — the solver of LIBLINEAR and scikit-learn's `LinearSVC` (Hsieh et al., ICML 2008).
//! Written here because the Rust bindings to LIBLINEAR are unmaintained (last release 2019)
//! and the solver is short: one pass over the rows per epoch, no learning rate to tune.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;

use crate::text_features::SparseRow;

#[derive(Debug, Clone, Copy)]
pub(crate) struct SvmOptions {
    /// Inverse regularisation strength (LinearSVC's `C`).
    pub c: f32,
    /// Stop when the projected gradient's spread over an epoch falls below this.
    pub tolerance: f32,
    pub max_epochs: usize,
    pub seed: u64,
}

impl Default for SvmOptions {
    fn default() -> Self {
        SvmOptions {
            c: 0.5,
            tolerance: 0.1,
            max_epochs: 200,
            seed: 7,
        }
    }
}

/// Trains one weight vector (of `dim` + 1 numbers, the last a bias on a constant feature 1)
/// per class; `labels[i]` is row i's class. Classes train in parallel.
pub(crate) fn train_one_vs_rest(
    rows: &[SparseRow],
    labels: &[u32],
    classes: usize,
    dim: usize,
    options: SvmOptions,
) -> Vec<Vec<f32>> {
    // x·x (plus the bias feature's 1) is the same for every class.
    let norms: Vec<f32> = rows
        .iter()
        .map(|r| r.iter().map(|(_, v)| v * v).sum::<f32>() + 1.0)
        .collect();
    (0..classes)
        .into_par_iter()
        .map(|class| {
            let y: Vec<f32> = labels
                .iter()
                .map(|&l| if l as usize == class { 1.0 } else { -1.0 })
                .collect();
            train_binary(rows, &y, &norms, dim, options, class as u64)
        })
        .collect()
}

fn train_binary(
    rows: &[SparseRow],
    y: &[f32],
    norms: &[f32],
    dim: usize,
    options: SvmOptions,
    stream: u64,
) -> Vec<f32> {
    let diag = 0.5 / options.c;
    let mut w = vec![0f32; dim + 1];
    let mut alpha = vec![0f32; rows.len()];
    let mut order: Vec<usize> = (0..rows.len()).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(options.seed ^ (stream << 32));
    for _ in 0..options.max_epochs {
        order.shuffle(&mut rng);
        let (mut max_pg, mut min_pg) = (f32::NEG_INFINITY, f32::INFINITY);
        for &i in &order {
            let row = &rows[i];
            let margin = row.iter().map(|&(j, v)| w[j as usize] * v).sum::<f32>() + w[dim];
            let gradient = y[i] * margin - 1.0 + diag * alpha[i];
            let projected = if alpha[i] == 0.0 {
                gradient.min(0.0)
            } else {
                gradient
            };
            max_pg = max_pg.max(projected);
            min_pg = min_pg.min(projected);
            if projected.abs() > 1e-12 {
                let old = alpha[i];
                alpha[i] = (old - gradient / (norms[i] + diag)).max(0.0);
                let step = (alpha[i] - old) * y[i];
                for &(j, v) in row {
                    w[j as usize] += step * v;
                }
                w[dim] += step;
            }
        }
        if max_pg - min_pg < options.tolerance {
            break;
        }
    }
    w
}

/// The decision value of every class for one row.
pub(crate) fn scores(weights: &[Vec<f32>], row: &SparseRow) -> Vec<f32> {
    weights
        .iter()
        .map(|w| {
            let bias = w[w.len() - 1];
            row.iter()
                .filter(|(j, _)| (*j as usize) < w.len() - 1)
                .map(|&(j, v)| w[j as usize] * v)
                .sum::<f32>()
                + bias
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_three_classes_on_their_own_feature() {
        // Class k fires feature k (with noise on a shared feature 3).
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for i in 0..60u32 {
            let class = i % 3;
            rows.push(vec![(class, 1.0), (3, (i % 7) as f32 / 7.0)]);
            labels.push(class);
        }
        let weights = train_one_vs_rest(&rows, &labels, 3, 4, SvmOptions::default());
        for class in 0..3u32 {
            let s = scores(&weights, &vec![(class, 1.0), (3, 0.5)]);
            let best = (0..3).max_by(|&a, &b| s[a].total_cmp(&s[b])).unwrap();
            assert_eq!(best as u32, class, "{s:?}");
            assert!(s[class as usize] > 0.0 && s.iter().filter(|v| **v > 0.0).count() == 1);
        }
    }
}
