//! A training run's output, served as one unit: the best collaborative model (chosen on a
//! validation split), popularity for users with no history, item neighbours for "similar
//! items" and for explaining results, and text neighbours for items nobody has touched.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::data::{Dataset, ItemId, UserId};
use crate::error::RecsError;
use crate::eval::{split, Protocol};
use crate::metrics::{evaluate as score_ranking, Metrics};
use crate::models::{ContentKnn, ContentKnnParams, PopularityParams};
use crate::models::{ItemKnn, ItemKnnParams, ItemVectors, ModelKind, Popularity};
use crate::train::{train, ModelParams, TrainedModel, TrainingData};

#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Collaborative models competing for the main slot.
    pub models: Vec<ModelKind>,
    pub k: usize,
    pub seed: u64,
    /// The embedding model that made the item vectors (kept with them: search embeds queries
    /// with the same model).
    pub embedding_model: Option<String>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            models: vec![ModelKind::Als, ModelKind::Ease, ModelKind::ItemKnn],
            k: 10,
            seed: 42,
            embedding_model: None,
        }
    }
}

/// Item text vectors and the model that made them.
#[derive(Clone, Serialize, Deserialize)]
pub struct Embeddings {
    pub model: String,
    pub vectors: ItemVectors,
}

/// What a training run chose and why (also written as `meta.json` beside the bundle).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    pub trained_at: u64,
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
    pub chosen: ModelParams,
    /// Every candidate with its NDCG@K on the validation split.
    pub candidates: Vec<(ModelParams, f64)>,
    /// Every candidate's full figures on the validation split (NDCG, precision, recall, hit
    /// rate, MAP and coverage at K), in the order of `candidates`. Empty in reports written
    /// before these were kept.
    #[serde(default)]
    pub validation: Vec<CandidateMetrics>,
    pub k: usize,
    pub seconds: f64,
}

/// One candidate's figures on the validation split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateMetrics {
    pub params: ModelParams,
    #[serde(flatten)]
    pub metrics: Metrics,
}

pub struct RecsBundle {
    pub users: Vec<UserId>,
    pub items: Vec<ItemId>,
    pub model: TrainedModel,
    pub popularity: Popularity,
    pub neighbours: ItemKnn,
    pub content: Option<ContentKnn>,
    pub embeddings: Option<Embeddings>,
    pub report: TrainReport,
}

/// Progress of a training run.
pub trait TrainProgress {
    fn candidate(&self, _params: &ModelParams, _ndcg: f64) {}
}

impl TrainProgress for () {}

/// Searches the models' grids on a random validation split of all interactions, then trains
/// the winner (and the helpers) on everything.
pub fn train_bundle(
    data: &Dataset,
    vectors: Option<&ItemVectors>,
    options: &TrainOptions,
    progress: &dyn TrainProgress,
) -> Result<RecsBundle, RecsError> {
    let started = Instant::now();
    if data.interactions.is_empty() {
        return Err(RecsError::NotEnoughData(
            "no events: import some first".into(),
        ));
    }
    let (fit, valid) = split(&data.interactions, Protocol::Random, 0.2, options.seed);
    let fit_matrix = data.matrix(&fit);
    let valid_matrix = data.matrix(&valid);
    let mut candidates = Vec::new();
    let mut validation = Vec::new();
    if !valid.is_empty() {
        for &kind in &options.models {
            if kind.needs_vectors() && vectors.is_none() {
                continue;
            }
            for params in ModelParams::grid(kind, options.seed) {
                let model = train(
                    &params,
                    &TrainingData {
                        matrix: &fit_matrix,
                        interactions: &fit,
                        vectors,
                    },
                )?;
                let m = score_ranking(&model, &fit_matrix, &valid_matrix, options.k);
                progress.candidate(&params, m.ndcg);
                candidates.push((params.clone(), m.ndcg));
                validation.push(CandidateMetrics { params, metrics: m });
            }
        }
    }
    let chosen = candidates
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(p, _)| p.clone())
        // Too little data to validate: item-kNN needs no tuning to be sensible.
        .unwrap_or(ModelParams::ItemKnn(ItemKnnParams::default()));
    let matrix = data.matrix(&data.interactions);
    let all = TrainingData {
        matrix: &matrix,
        interactions: &data.interactions,
        vectors,
    };
    let model = train(&chosen, &all)?;
    // Neighbours for "similar items" and reasons: the chosen model itself when it is item-kNN.
    let neighbours = match model {
        TrainedModel::ItemKnn(ref knn) => knn.clone(),
        _ => ItemKnn::train(&matrix, &ItemKnnParams::default()),
    };
    let popularity = Popularity::train(
        &data.interactions,
        data.n_items(),
        &PopularityParams::default(),
    );
    let content = vectors.map(|v| ContentKnn::train(v, &ContentKnnParams::default()));
    let report = TrainReport {
        trained_at: hearth_types::clock::unix_now(),
        users: data.n_users(),
        items: data.n_items(),
        interactions: data.interactions.len(),
        chosen,
        candidates,
        validation,
        k: options.k,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok(RecsBundle {
        users: data.users.iter().cloned().collect(),
        items: data.items.iter().cloned().collect(),
        model,
        popularity,
        neighbours,
        content,
        embeddings: options
            .embedding_model
            .clone()
            .zip(vectors.cloned())
            .map(|(model, vectors)| Embeddings { model, vectors }),
        report,
    })
}

const BUNDLE_FILE: &str = "bundle.postcard";
const REPORT_FILE: &str = "meta.json";

/// The bundle's binary part (postcard is positional: these two structs must list the same
/// fields in the same order). The report is stored as JSON beside it.
#[derive(Serialize)]
struct PartsRef<'a> {
    users: &'a [UserId],
    items: &'a [ItemId],
    model: &'a TrainedModel,
    popularity: &'a Popularity,
    neighbours: &'a ItemKnn,
    content: &'a Option<ContentKnn>,
    embeddings: &'a Option<Embeddings>,
}

#[derive(Deserialize)]
struct Parts {
    users: Vec<UserId>,
    items: Vec<ItemId>,
    model: TrainedModel,
    popularity: Popularity,
    neighbours: ItemKnn,
    content: Option<ContentKnn>,
    embeddings: Option<Embeddings>,
}

impl RecsBundle {
    /// Writes the bundle into an (empty) artifact directory.
    pub fn save(&self, dir: &Path) -> Result<(), RecsError> {
        let parts = PartsRef {
            users: &self.users,
            items: &self.items,
            model: &self.model,
            popularity: &self.popularity,
            neighbours: &self.neighbours,
            content: &self.content,
            embeddings: &self.embeddings,
        };
        let bytes = postcard::to_stdvec(&parts).map_err(|e| RecsError::Artifact(e.to_string()))?;
        let path = dir.join(BUNDLE_FILE);
        std::fs::write(&path, bytes).map_err(|e| RecsError::io(&path, e))?;
        let path = dir.join(REPORT_FILE);
        let report = serde_json::to_vec_pretty(&self.report).expect("plain data");
        std::fs::write(&path, report).map_err(|e| RecsError::io(&path, e))?;
        Ok(())
    }

    pub fn load(dir: &Path) -> Result<RecsBundle, RecsError> {
        let path = dir.join(BUNDLE_FILE);
        let bytes = std::fs::read(&path).map_err(|e| RecsError::io(&path, e))?;
        let parts: Parts = postcard::from_bytes(&bytes).map_err(|e| {
            RecsError::Artifact(format!(
                "{}: {e} (written by another hearth version? run `hearth recs train`)",
                path.display()
            ))
        })?;
        let path = dir.join(REPORT_FILE);
        let text = std::fs::read(&path).map_err(|e| RecsError::io(&path, e))?;
        let report = serde_json::from_slice(&text)
            .map_err(|e| RecsError::Artifact(format!("{}: {e}", path.display())))?;
        Ok(RecsBundle {
            users: parts.users,
            items: parts.items,
            model: parts.model,
            popularity: parts.popularity,
            neighbours: parts.neighbours,
            content: parts.content,
            embeddings: parts.embeddings,
            report,
        })
    }
}
