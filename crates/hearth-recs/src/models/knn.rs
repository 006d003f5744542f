//! Item-based nearest neighbours: cosine similarity between items' user sets, the `k` most
//! similar kept per item; a user's score for an item sums its similarity to their items.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{sum_neighbours, top_k, History, Scorer};
use crate::sparse::Csr;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemKnnParams {
    /// Neighbours kept per item.
    pub neighbours: usize,
    /// Added to the cosine's denominator: damps similarities resting on few common users.
    pub shrink: f32,
}

impl Default for ItemKnnParams {
    fn default() -> Self {
        ItemKnnParams {
            neighbours: 100,
            shrink: 0.0,
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
pub struct ItemKnn {
    /// Per item, its neighbours and their similarity.
    neighbours: Vec<Vec<(u32, f32)>>,
}

impl ItemKnn {
    /// `matrix` is users × items; interactions count as present/absent.
    pub fn train(matrix: &Csr, params: &ItemKnnParams) -> Self {
        let by_item = matrix.transpose();
        let counts: Vec<f32> = (0..matrix.cols)
            .map(|i| by_item.row_len(i) as f32)
            .collect();
        let n_items = matrix.cols;
        let neighbours = (0..n_items)
            .into_par_iter()
            .map_init(
                || (vec![0f32; n_items], Vec::<u32>::new()),
                |(acc, touched), i| {
                    let (users, _) = by_item.row(i);
                    for &u in users {
                        for &j in matrix.row(u as usize).0 {
                            if j as usize != i {
                                if acc[j as usize] == 0.0 {
                                    touched.push(j);
                                }
                                acc[j as usize] += 1.0;
                            }
                        }
                    }
                    let ni = counts[i];
                    let sims = touched.iter().map(|&j| {
                        let c = acc[j as usize];
                        (j, c / ((ni * counts[j as usize]).sqrt() + params.shrink))
                    });
                    let best = top_k(sims, params.neighbours);
                    for &j in touched.iter() {
                        acc[j as usize] = 0.0;
                    }
                    touched.clear();
                    best
                },
            )
            .collect();
        ItemKnn { neighbours }
    }

    /// The items most similar to `item`, best first.
    pub fn similar(&self, item: u32) -> &[(u32, f32)] {
        &self.neighbours[item as usize]
    }
}

impl Scorer for ItemKnn {
    fn score(&self, _user: Option<u32>, history: History<'_>, out: &mut [f32]) {
        sum_neighbours(&self.neighbours, history, out);
    }
}
