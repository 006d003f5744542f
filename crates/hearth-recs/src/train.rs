//! Training any model from one description of its parameters, and the grids the
//! hyper-parameter search walks.

use serde::{Deserialize, Serialize};

use crate::data::Interaction;
use crate::error::RecsError;
use crate::models::*;
use crate::sparse::Csr;

/// One model with its hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "kebab-case")]
pub enum ModelParams {
    Popularity(PopularityParams),
    ItemKnn(ItemKnnParams),
    Als(AlsParams),
    Ease(EaseParams),
    Content(ContentKnnParams),
    OffTheShelf,
}

impl ModelParams {
    pub fn kind(&self) -> ModelKind {
        match self {
            ModelParams::Popularity(_) => ModelKind::Popularity,
            ModelParams::ItemKnn(_) => ModelKind::ItemKnn,
            ModelParams::Als(_) => ModelKind::Als,
            ModelParams::Ease(_) => ModelKind::Ease,
            ModelParams::Content(_) => ModelKind::Content,
            ModelParams::OffTheShelf => ModelKind::OffTheShelf,
        }
    }

    pub fn defaults(kind: ModelKind, seed: u64) -> ModelParams {
        match kind {
            ModelKind::Popularity => ModelParams::Popularity(PopularityParams::default()),
            ModelKind::ItemKnn => ModelParams::ItemKnn(ItemKnnParams::default()),
            ModelKind::Als => ModelParams::Als(AlsParams {
                seed,
                ..AlsParams::default()
            }),
            ModelKind::Ease => ModelParams::Ease(EaseParams::default()),
            ModelKind::Content => ModelParams::Content(ContentKnnParams::default()),
            ModelKind::OffTheShelf => ModelParams::OffTheShelf,
        }
    }

    /// The candidates the hyper-parameter search tries, defaults included.
    pub fn grid(kind: ModelKind, seed: u64) -> Vec<ModelParams> {
        match kind {
            ModelKind::Popularity => [None, Some(30.0), Some(180.0), Some(365.0)]
                .into_iter()
                .map(|h| ModelParams::Popularity(PopularityParams { half_life_days: h }))
                .collect(),
            ModelKind::ItemKnn => {
                let mut grid = Vec::new();
                for neighbours in [50, 100, 200, 400] {
                    for shrink in [0.0, 10.0] {
                        grid.push(ModelParams::ItemKnn(ItemKnnParams { neighbours, shrink }));
                    }
                }
                grid
            }
            ModelKind::Als => {
                let mut grid = Vec::new();
                // Implicit feedback on small data wants strong regularisation (on
                // MovieLens-100K the best λ is around 50 with alpha 8).
                for factors in [64, 128] {
                    for regularization in [1.0, 10.0, 50.0, 200.0] {
                        for alpha in [2.0, 8.0, 32.0] {
                            grid.push(ModelParams::Als(AlsParams {
                                factors,
                                regularization,
                                alpha,
                                seed,
                                ..AlsParams::default()
                            }));
                        }
                    }
                }
                grid
            }
            ModelKind::Ease => [100.0, 250.0, 500.0, 1000.0, 2000.0]
                .into_iter()
                .map(|lambda| ModelParams::Ease(EaseParams { lambda }))
                .collect(),
            ModelKind::Content => [20, 50, 100, 200]
                .into_iter()
                .map(|neighbours| ModelParams::Content(ContentKnnParams { neighbours }))
                .collect(),
            ModelKind::OffTheShelf => vec![ModelParams::OffTheShelf],
        }
    }
}

/// What training reads.
pub struct TrainingData<'a> {
    /// Users × items.
    pub matrix: &'a Csr,
    /// The same interactions as a list (popularity reads their times).
    pub interactions: &'a [Interaction],
    /// Item text embeddings, for the content and off-the-shelf models.
    pub vectors: Option<&'a ItemVectors>,
}

/// A trained model of any kind. Externally tagged: artifacts use a positional binary format.
#[derive(Serialize, Deserialize)]
pub enum TrainedModel {
    Popularity(Popularity),
    ItemKnn(ItemKnn),
    Als(Als),
    Ease(Ease),
    Content(ContentKnn),
    OffTheShelf(ProfileCosine),
}

impl Scorer for TrainedModel {
    fn score(&self, user: Option<u32>, history: History<'_>, out: &mut [f32]) {
        match self {
            TrainedModel::Popularity(m) => m.score(user, history, out),
            TrainedModel::ItemKnn(m) => m.score(user, history, out),
            TrainedModel::Als(m) => m.score(user, history, out),
            TrainedModel::Ease(m) => m.score(user, history, out),
            TrainedModel::Content(m) => m.score(user, history, out),
            TrainedModel::OffTheShelf(m) => m.score(user, history, out),
        }
    }
}

pub fn train(params: &ModelParams, data: &TrainingData<'_>) -> Result<TrainedModel, RecsError> {
    let vectors = || {
        data.vectors.ok_or_else(|| RecsError::InvalidParameter {
            param: "model".into(),
            message: format!(
                "the {} model needs item embeddings: configure an embedding model",
                params.kind()
            ),
        })
    };
    Ok(match params {
        ModelParams::Popularity(p) => {
            TrainedModel::Popularity(Popularity::train(data.interactions, data.matrix.cols, p))
        }
        ModelParams::ItemKnn(p) => TrainedModel::ItemKnn(ItemKnn::train(data.matrix, p)),
        ModelParams::Als(p) => TrainedModel::Als(Als::train(data.matrix, p)),
        ModelParams::Ease(p) => TrainedModel::Ease(Ease::train(data.matrix, p)?),
        ModelParams::Content(p) => TrainedModel::Content(ContentKnn::train(vectors()?, p)),
        ModelParams::OffTheShelf => {
            TrainedModel::OffTheShelf(ProfileCosine::new(vectors()?.clone()))
        }
    })
}
