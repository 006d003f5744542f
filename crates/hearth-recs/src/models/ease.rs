//! EASE (Steck 2019): a closed-form item-to-item linear model, `B = I − P·diag(1/diag(P))`
//! with `P = (XᵀX + λI)⁻¹`, the diagonal of B forced to zero. Memory and time grow with the
//! square and cube of the catalogue: meant for catalogues up to some tens of thousands of items.

use faer::linalg::solvers::DenseSolveCore;
use faer::{Mat, Side};
use serde::{Deserialize, Serialize};

use super::{axpy, History, Scorer};
use crate::error::RecsError;
use crate::sparse::Csr;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EaseParams {
    /// L2 regularisation λ added to the Gram matrix's diagonal.
    pub lambda: f32,
}

impl Default for EaseParams {
    fn default() -> Self {
        EaseParams { lambda: 250.0 }
    }
}

/// Catalogues above this size are refused (the dense n×n matrices would not fit comfortably).
pub const MAX_ITEMS: usize = 50_000;

#[derive(Serialize, Deserialize)]
pub struct Ease {
    n: usize,
    /// Row-major n×n; row j holds item j's contribution to every item's score.
    weights: Vec<f32>,
}

impl Ease {
    /// `matrix` is users × items; interactions count as present/absent.
    pub fn train(matrix: &Csr, params: &EaseParams) -> Result<Self, RecsError> {
        let n = matrix.cols;
        if n > MAX_ITEMS {
            return Err(RecsError::InvalidParameter {
                param: "model".into(),
                message: format!(
                    "EASE handles catalogues up to {MAX_ITEMS} items; this one has {n}"
                ),
            });
        }
        let mut gram = vec![0f32; n * n];
        for u in 0..matrix.rows {
            let (items, _) = matrix.row(u);
            for &i in items {
                let row = &mut gram[i as usize * n..(i as usize + 1) * n];
                for &j in items {
                    row[j as usize] += 1.0;
                }
            }
        }
        let g = Mat::<f32>::from_fn(n, n, |i, j| {
            gram[i * n + j] + if i == j { params.lambda } else { 0.0 }
        });
        drop(gram);
        let p = g
            .llt(Side::Lower)
            .map_err(|e| RecsError::InvalidParameter {
                param: "lambda".into(),
                message: format!(
                    "the regularised Gram matrix is not positive definite ({e:?}); raise lambda"
                ),
            })?
            .inverse();
        let mut weights = vec![0f32; n * n];
        for j in 0..n {
            for i in 0..n {
                // B[j][i] = −P[j][i] / P[i][i]
                weights[j * n + i] = if i == j { 0.0 } else { -p[(j, i)] / p[(i, i)] };
            }
        }
        Ok(Ease { n, weights })
    }
}

impl Scorer for Ease {
    fn score(&self, _user: Option<u32>, history: History<'_>, out: &mut [f32]) {
        out.fill(0.0);
        for &j in history.items {
            axpy(
                1.0,
                &self.weights[j as usize * self.n..(j as usize + 1) * self.n],
                out,
            );
        }
    }
}
