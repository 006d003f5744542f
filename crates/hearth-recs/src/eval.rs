//! Offline evaluation: hold out part of every user's interactions, train each model on the
//! rest (with a hyper-parameter search on a validation split carved from the training part)
//! and rank all unseen items.

use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

use crate::data::{Dataset, Interaction};
use crate::error::RecsError;
use crate::metrics::{evaluate as score_ranking, Metrics};
use crate::models::{ItemVectors, ModelKind};
use crate::train::{train, ModelParams, TrainingData};

/// How the held-out part is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// A random 20 % of each user's interactions.
    Random,
    /// Each user's most recent 20 %.
    Temporal,
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "random" => Ok(Protocol::Random),
            "temporal" => Ok(Protocol::Temporal),
            other => Err(format!("unknown protocol '{other}' (random or temporal)")),
        }
    }
}

/// Splits interactions (sorted by user, then time, as [`Dataset::build`] leaves them) into
/// training and held-out parts. Users with too few interactions to hold one out stay whole
/// in training.
pub fn split(
    interactions: &[Interaction],
    protocol: Protocol,
    test_fraction: f64,
    seed: u64,
) -> (Vec<Interaction>, Vec<Interaction>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut train = Vec::with_capacity(interactions.len());
    let mut test = Vec::new();
    for group in interactions.chunk_by(|a, b| a.user == b.user) {
        let mut group = group.to_vec();
        let n_test = (group.len() as f64 * test_fraction).round() as usize;
        let n_test = n_test.min(group.len().saturating_sub(1));
        match protocol {
            Protocol::Random => group.shuffle(&mut rng),
            Protocol::Temporal => group.sort_by_key(|i| (i.timestamp, i.item)),
        }
        let cut = group.len() - n_test;
        test.extend_from_slice(&group[cut..]);
        train.extend_from_slice(&group[..cut]);
    }
    (train, test)
}

fn save_split(
    data: &Dataset,
    dir: &std::path::Path,
    train: &[Interaction],
    test: &[Interaction],
) -> Result<(), RecsError> {
    use std::io::Write;
    std::fs::create_dir_all(dir).map_err(|e| RecsError::io(dir, e))?;
    for (name, part) in [("train.tsv", train), ("test.tsv", test)] {
        let path = dir.join(name);
        let file = std::fs::File::create(&path).map_err(|e| RecsError::io(&path, e))?;
        let mut out = std::io::BufWriter::new(file);
        let mut write = || -> std::io::Result<()> {
            writeln!(out, "user_id\titem_id\tweight\ttimestamp")?;
            for i in part {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}",
                    data.users.id(i.user),
                    data.items.id(i.item),
                    i.weight,
                    i.timestamp
                )?;
            }
            out.flush()
        };
        write().map_err(|e| RecsError::io(&path, e))?;
    }
    Ok(())
}

/// Which parameters to try for one model.
#[derive(Debug, Clone)]
pub struct ModelPlan {
    pub kind: ModelKind,
    /// One candidate: trained as is. Several: the best on the validation split is kept.
    pub candidates: Vec<ModelParams>,
}

impl ModelPlan {
    /// The model's search grid.
    pub fn search(kind: ModelKind, seed: u64) -> Self {
        ModelPlan {
            kind,
            candidates: ModelParams::grid(kind, seed),
        }
    }

    /// The model's default parameters.
    pub fn defaults(kind: ModelKind, seed: u64) -> Self {
        ModelPlan {
            kind,
            candidates: vec![ModelParams::defaults(kind, seed)],
        }
    }

    /// Exactly these parameters.
    pub fn fixed(params: ModelParams) -> Self {
        ModelPlan {
            kind: params.kind(),
            candidates: vec![params],
        }
    }
}

#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub protocol: Protocol,
    pub k: usize,
    pub seed: u64,
    pub test_fraction: f64,
    pub models: Vec<ModelPlan>,
    /// Write the split here as `train.tsv` and `test.tsv` (user, item), so that other tools
    /// can be measured on exactly the same interactions.
    pub save_split: Option<std::path::PathBuf>,
}

impl EvalOptions {
    /// Every model, each with its search grid.
    pub fn search_all(protocol: Protocol, k: usize, seed: u64) -> Self {
        EvalOptions {
            protocol,
            k,
            seed,
            test_fraction: 0.2,
            models: ModelKind::ALL
                .iter()
                .map(|&kind| ModelPlan::search(kind, seed))
                .collect(),
            save_split: None,
        }
    }
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions::search_all(Protocol::Random, 10, 42)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelResult {
    pub model: ModelKind,
    /// The parameters kept (the search's best, or the defaults).
    pub params: ModelParams,
    #[serde(flatten)]
    pub metrics: Metrics,
    /// Training the kept parameters on the whole training part.
    pub train_seconds: f64,
    /// Candidates tried on the validation split, with their NDCG@K there.
    pub search: Vec<(ModelParams, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub protocol: Protocol,
    pub k: usize,
    pub seed: u64,
    pub users: usize,
    pub items: usize,
    pub train_interactions: usize,
    pub test_interactions: usize,
    pub results: Vec<ModelResult>,
}

/// Progress of a long evaluation, for a progress display.
pub trait EvalProgress {
    fn model_started(&self, _model: ModelKind, _candidates: usize) {}
    fn candidate_done(&self) {}
}

impl EvalProgress for () {}

pub fn evaluate(
    data: &Dataset,
    vectors: Option<&ItemVectors>,
    options: &EvalOptions,
    progress: &dyn EvalProgress,
) -> Result<EvalReport, RecsError> {
    if options.k == 0 {
        return Err(RecsError::InvalidParameter {
            param: "k".into(),
            message: "must be at least 1".into(),
        });
    }
    if !(0.0..1.0).contains(&options.test_fraction) || options.test_fraction == 0.0 {
        return Err(RecsError::InvalidParameter {
            param: "test_fraction".into(),
            message: "must be between 0 and 1".into(),
        });
    }
    let (train_part, test_part) = split(
        &data.interactions,
        options.protocol,
        options.test_fraction,
        options.seed,
    );
    if test_part.is_empty() {
        return Err(RecsError::NotEnoughData(
            "no user has enough interactions to hold any out".into(),
        ));
    }
    if let Some(dir) = &options.save_split {
        save_split(data, dir, &train_part, &test_part)?;
    }
    let train_matrix = data.matrix(&train_part);
    let test_matrix = data.matrix(&test_part);
    // The validation split comes out of the training part only.
    let (fit_part, valid_part) = split(
        &train_part,
        options.protocol,
        options.test_fraction,
        options.seed ^ 0x5EED,
    );
    let fit_matrix = data.matrix(&fit_part);
    let valid_matrix = data.matrix(&valid_part);

    let mut results = Vec::new();
    for plan in &options.models {
        let kind = plan.kind;
        if plan.candidates.is_empty() || plan.candidates.iter().any(|p| p.kind() != kind) {
            return Err(RecsError::InvalidParameter {
                param: "models".into(),
                message: format!("the plan for {kind} must list {kind} parameters"),
            });
        }
        progress.model_started(kind, plan.candidates.len());
        let mut search = Vec::new();
        let best = if plan.candidates.len() == 1 {
            progress.candidate_done();
            plan.candidates[0].clone()
        } else {
            let fit = TrainingData {
                matrix: &fit_matrix,
                interactions: &fit_part,
                vectors,
            };
            for params in &plan.candidates {
                let model = train(params, &fit)?;
                let m = score_ranking(&model, &fit_matrix, &valid_matrix, options.k);
                search.push((params.clone(), m.ndcg));
                progress.candidate_done();
            }
            search
                .iter()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(p, _)| p.clone())
                .expect("plans are never empty")
        };
        let started = Instant::now();
        let model = train(
            &best,
            &TrainingData {
                matrix: &train_matrix,
                interactions: &train_part,
                vectors,
            },
        )?;
        let train_seconds = started.elapsed().as_secs_f64();
        let metrics = score_ranking(&model, &train_matrix, &test_matrix, options.k);
        results.push(ModelResult {
            model: kind,
            params: best,
            metrics,
            train_seconds,
            search,
        });
    }
    Ok(EvalReport {
        protocol: options.protocol,
        k: options.k,
        seed: options.seed,
        users: data.n_users(),
        items: data.n_items(),
        train_interactions: train_part.len(),
        test_interactions: test_part.len(),
        results,
    })
}

impl EvalReport {
    /// The report as a Markdown table, best NDCG first.
    pub fn markdown(&self) -> String {
        let k = self.k;
        let mut out = format!(
            "protocol {:?}, seed {}, {} users, {} items, {} training / {} held-out interactions\n\n",
            self.protocol,
            self.seed,
            self.users,
            self.items,
            self.train_interactions,
            self.test_interactions
        );
        out.push_str(&format!(
            "| model | NDCG@{k} | Precision@{k} | Recall@{k} | HR@{k} | MAP@{k} | coverage | train s | parameters |\n"
        ));
        out.push_str("|---|---|---|---|---|---|---|---|---|\n");
        let mut rows: Vec<&ModelResult> = self.results.iter().collect();
        rows.sort_by(|a, b| b.metrics.ndcg.total_cmp(&a.metrics.ndcg));
        for r in rows {
            let params = serde_json::to_value(&r.params)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .map(|mut o| {
                    o.remove("model");
                    o.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            let m = &r.metrics;
            out.push_str(&format!(
                "| {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.3} | {:.2} | {} |\n",
                r.model,
                m.ndcg,
                m.precision,
                m.recall,
                m.hit_rate,
                m.map,
                m.coverage,
                r.train_seconds,
                params
            ));
        }
        if let (Some(best), Some(baseline)) = (
            self.results
                .iter()
                .filter(|r| r.model != ModelKind::OffTheShelf)
                .max_by(|a, b| a.metrics.ndcg.total_cmp(&b.metrics.ndcg)),
            self.results
                .iter()
                .find(|r| r.model == ModelKind::OffTheShelf),
        ) {
            if baseline.metrics.ndcg > 0.0 {
                out.push_str(&format!(
                    "\n{} trained on this data: NDCG@{k} {:.4} vs off-the-shelf {:.4} ({:+.0} %)\n",
                    best.model,
                    best.metrics.ndcg,
                    baseline.metrics.ndcg,
                    (best.metrics.ndcg / baseline.metrics.ndcg - 1.0) * 100.0
                ));
            }
        }
        out
    }

    /// An SVG bar chart of NDCG@K per model.
    pub fn svg(&self) -> String {
        let mut rows: Vec<&ModelResult> = self.results.iter().collect();
        rows.sort_by(|a, b| b.metrics.ndcg.total_cmp(&a.metrics.ndcg));
        let (bar_h, gap, left, width) = (26.0, 10.0, 120.0, 420.0);
        let max = rows
            .iter()
            .map(|r| r.metrics.ndcg)
            .fold(0.0f64, f64::max)
            .max(1e-9);
        let height = 50.0 + rows.len() as f64 * (bar_h + gap);
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"13\">\n\
             <text x=\"10\" y=\"22\" font-weight=\"bold\">NDCG@{} ({:?} split, seed {})</text>\n",
            left + width + 80.0,
            self.k,
            self.protocol,
            self.seed
        );
        for (n, r) in rows.iter().enumerate() {
            let y = 40.0 + n as f64 * (bar_h + gap);
            let w = width * r.metrics.ndcg / max;
            let colour = if r.model == ModelKind::OffTheShelf || r.model == ModelKind::Popularity {
                "#9aa5b1"
            } else {
                "#d9653b"
            };
            svg.push_str(&format!(
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
                 <rect x=\"{left}\" y=\"{y}\" width=\"{w:.1}\" height=\"{bar_h}\" fill=\"{colour}\"/>\
                 <text x=\"{:.1}\" y=\"{}\">{:.4}</text>\n",
                left - 8.0,
                y + bar_h * 0.68,
                r.model,
                left + w + 6.0,
                y + bar_h * 0.68,
                r.metrics.ndcg
            ));
        }
        svg.push_str("</svg>\n");
        svg
    }
}
