//! Most-interacted items, optionally with recent interactions counting more.

use serde::{Deserialize, Serialize};

use super::{History, Scorer};
use crate::data::Interaction;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PopularityParams {
    /// An interaction this many days older than the newest one counts half. `None`: no decay.
    pub half_life_days: Option<f64>,
}

#[derive(Serialize, Deserialize)]
pub struct Popularity {
    scores: Vec<f32>,
}

impl Popularity {
    pub fn train(interactions: &[Interaction], n_items: usize, params: &PopularityParams) -> Self {
        let newest = interactions.iter().map(|i| i.timestamp).max().unwrap_or(0);
        let mut scores = vec![0f32; n_items];
        for i in interactions {
            let decay = match params.half_life_days {
                Some(h) if h > 0.0 => {
                    let age_days = (newest - i.timestamp) as f64 / 86_400.0;
                    (-(age_days / h) * std::f64::consts::LN_2).exp() as f32
                }
                _ => 1.0,
            };
            scores[i.item as usize] += i.weight * decay;
        }
        Popularity { scores }
    }

    pub fn scores(&self) -> &[f32] {
        &self.scores
    }
}

impl Scorer for Popularity {
    fn score(&self, _user: Option<u32>, _history: History<'_>, out: &mut [f32]) {
        out.copy_from_slice(&self.scores);
    }
}
