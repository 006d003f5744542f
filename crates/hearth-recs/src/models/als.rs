//! Implicit-feedback matrix factorisation (Hu, Koren and Volinsky 2008), each least-squares
//! step solved by a few conjugate-gradient iterations (Takács et al. 2011) as the `implicit`
//! library does. Confidence is `alpha × weight`, preference 1 for every observed pair.

use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{axpy, dot, History, Scorer};
use crate::sparse::Csr;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlsParams {
    pub factors: usize,
    pub regularization: f32,
    pub alpha: f32,
    pub iterations: usize,
    /// Conjugate-gradient steps per least-squares solve.
    pub cg_steps: usize,
    pub seed: u64,
}

impl Default for AlsParams {
    fn default() -> Self {
        AlsParams {
            factors: 64,
            regularization: 0.01,
            alpha: 1.0,
            iterations: 15,
            cg_steps: 3,
            seed: 42,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub struct Als {
    factors: usize,
    user_factors: Vec<f32>,
    item_factors: Vec<f32>,
    alpha: f32,
    cg_steps: usize,
    /// `item_factorsᵀ item_factors + λI`, kept to fold in visitors.
    item_gram: Vec<f32>,
}

/// `Yᵀ Y + λ I` for row-major `y` with `f` columns.
fn gram(y: &[f32], f: usize, regularization: f32) -> Vec<f32> {
    let rows = y.len() / f;
    let partial = (0..rows)
        .into_par_iter()
        .fold(
            || vec![0f32; f * f],
            |mut g, r| {
                let row = &y[r * f..(r + 1) * f];
                for a in 0..f {
                    axpy(row[a], row, &mut g[a * f..(a + 1) * f]);
                }
                g
            },
        )
        .reduce(
            || vec![0f32; f * f],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(&b) {
                    *x += y;
                }
                a
            },
        );
    let mut g = partial;
    for a in 0..f {
        g[a * f + a] += regularization;
    }
    g
}

/// Updates `x` (one user's or item's factors) towards the least-squares solution of
/// `(YᵀY + λI + Yᵀ(C−I)Y) x = Yᵀ C p` by conjugate gradient, never forming the matrix.
fn solve_cg(
    x: &mut [f32],
    y: &[f32],
    gram: &[f32],
    row: (&[u32], &[f32]),
    alpha: f32,
    steps: usize,
    scratch: &mut [Vec<f32>; 3],
) {
    let f = x.len();
    let [r, p, ap] = scratch;
    r.resize(f, 0.0);
    p.resize(f, 0.0);
    ap.resize(f, 0.0);
    // r = YᵀCp − (YᵀY + λI + Yᵀ(C−I)Y) x
    for a in 0..f {
        r[a] = -dot(&gram[a * f..(a + 1) * f], x);
    }
    let (items, weights) = row;
    for (&i, &w) in items.iter().zip(weights) {
        let c = alpha * w;
        if c <= 0.0 {
            continue;
        }
        let yi = &y[i as usize * f..(i as usize + 1) * f];
        axpy(c - (c - 1.0) * dot(yi, x), yi, r);
    }
    p.copy_from_slice(r);
    let mut rs_old = dot(r, r);
    if rs_old < 1e-20 {
        return;
    }
    for _ in 0..steps {
        for a in 0..f {
            ap[a] = dot(&gram[a * f..(a + 1) * f], p);
        }
        for (&i, &w) in items.iter().zip(weights) {
            let c = alpha * w;
            if c <= 0.0 {
                continue;
            }
            let yi = &y[i as usize * f..(i as usize + 1) * f];
            axpy((c - 1.0) * dot(yi, p), yi, ap);
        }
        let step = rs_old / dot(p, ap);
        axpy(step, p, x);
        axpy(-step, ap, r);
        let rs_new = dot(r, r);
        if rs_new < 1e-20 {
            break;
        }
        let beta = rs_new / rs_old;
        for (pi, ri) in p.iter_mut().zip(r.iter()) {
            *pi = ri + beta * *pi;
        }
        rs_old = rs_new;
    }
}

fn solve_all(x: &mut [f32], y: &[f32], matrix: &Csr, params: &AlsParams) {
    let f = params.factors;
    let g = gram(y, f, params.regularization);
    x.par_chunks_mut(f).enumerate().for_each_init(
        || [Vec::new(), Vec::new(), Vec::new()],
        |scratch, (u, xu)| {
            solve_cg(
                xu,
                y,
                &g,
                matrix.row(u),
                params.alpha,
                params.cg_steps,
                scratch,
            );
        },
    );
}

impl Als {
    /// `matrix` is users × items with interaction weights.
    pub fn train(matrix: &Csr, params: &AlsParams) -> Self {
        let f = params.factors.max(1);
        let mut rng = rand::rngs::StdRng::seed_from_u64(params.seed);
        let mut init =
            |n: usize| -> Vec<f32> { (0..n * f).map(|_| rng.random::<f32>() * 0.01).collect() };
        let mut users = init(matrix.rows);
        let mut items = init(matrix.cols);
        let by_item = matrix.transpose();
        let params = AlsParams {
            factors: f,
            ..params.clone()
        };
        for _ in 0..params.iterations {
            solve_all(&mut users, &items, matrix, &params);
            solve_all(&mut items, &users, &by_item, &params);
        }
        let item_gram = gram(&items, f, params.regularization);
        Als {
            factors: f,
            user_factors: users,
            item_factors: items,
            alpha: params.alpha,
            cg_steps: params.cg_steps,
            item_gram,
        }
    }

    pub fn factors(&self) -> usize {
        self.factors
    }

    /// Every item's factors, row-major.
    pub fn all_item_factors(&self) -> &[f32] {
        &self.item_factors
    }

    pub fn item_factors(&self, item: u32) -> &[f32] {
        &self.item_factors[item as usize * self.factors..(item as usize + 1) * self.factors]
    }

    /// Factors for a history the model never saw, solved against the trained item factors.
    pub fn fold_in(&self, history: History<'_>) -> Vec<f32> {
        let mut x = vec![0f32; self.factors];
        let mut scratch = [Vec::new(), Vec::new(), Vec::new()];
        // More steps than training: this solve starts from zero, not from last iteration's.
        solve_cg(
            &mut x,
            &self.item_factors,
            &self.item_gram,
            (history.items, history.weights),
            self.alpha,
            self.cg_steps.max(self.factors.min(16)),
            &mut scratch,
        );
        x
    }
}

impl Scorer for Als {
    fn score(&self, user: Option<u32>, history: History<'_>, out: &mut [f32]) {
        let f = self.factors;
        let folded;
        let x = match user {
            Some(u) => &self.user_factors[u as usize * f..(u as usize + 1) * f],
            None => {
                folded = self.fold_in(history);
                &folded
            }
        };
        for (i, o) in out.iter_mut().enumerate() {
            *o = dot(x, &self.item_factors[i * f..(i + 1) * f]);
        }
    }
}
