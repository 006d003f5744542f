//! Intent routing learned from the company's own labelled messages.
//!
//! Features: TF-IDF of words and character n-grams (exact keywords, typos) next to the local
//! embedder's sentence vector (paraphrases), one linear SVM per intent over both. A message
//! whose best score falls below a threshold calibrated on held-out examples is out of scope
//! and goes to a human. The off-the-shelf baseline it is measured against classifies by
//! embedding similarity to the intent names alone (zero-shot).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use hearth_gateway::Gateway;
use serde::{Deserialize, Serialize};

use crate::linear::{self, SvmOptions};
use crate::text_features::{SparseRow, TfIdf};
use crate::SupportError;

/// One labelled message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledText {
    pub text: String,
    pub intent: String,
}

const TEXT_COLUMNS: [&str; 4] = ["text", "message", "utterance", "query"];
const LABEL_COLUMNS: [&str; 4] = ["intent", "label", "category", "class"];

/// Reads a CSV with a header naming a text column (`text`, `message`, `utterance` or
/// `query`) and a label column (`intent`, `label`, `category` or `class`). A row with an
/// empty text or label is an error naming the file and line.
pub fn read_labelled_csv(path: &Path) -> Result<Vec<LabelledText>, SupportError> {
    let bad = |message: String| SupportError::BadFile {
        file: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| SupportError::io(path, e))?;
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(file);
    let headers = reader
        .headers()
        .map_err(|e| bad(format!("cannot read the header: {e}")))?
        .clone();
    let find = |names: &[&str]| {
        headers
            .iter()
            .position(|h| names.contains(&h.trim().to_lowercase().as_str()))
    };
    let text_col = find(&TEXT_COLUMNS).ok_or_else(|| {
        bad(format!(
            "no text column: the header needs one of {}",
            TEXT_COLUMNS.join(", ")
        ))
    })?;
    let label_col = find(&LABEL_COLUMNS).ok_or_else(|| {
        bad(format!(
            "no label column: the header needs one of {}",
            LABEL_COLUMNS.join(", ")
        ))
    })?;
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            bad(format!("line {line}: {e}"))
        })?;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let text = record.get(text_col).unwrap_or("").trim();
        let intent = record.get(label_col).unwrap_or("").trim();
        if text.is_empty() || intent.is_empty() {
            return Err(bad(format!(
                "line {line}: empty {}",
                if text.is_empty() { "text" } else { "label" }
            )));
        }
        rows.push(LabelledText {
            text: text.to_string(),
            intent: intent.to_string(),
        });
    }
    if rows.is_empty() {
        return Err(bad("no rows".into()));
    }
    Ok(rows)
}

/// How to train an intent model.
#[derive(Debug, Clone)]
pub struct IntentTrainOptions {
    /// Embedding model (as registered) whose sentence vectors join the TF-IDF features.
    pub embedding_model: String,
    /// The SVM's inverse regularisation strength.
    pub c: f32,
    /// Scale of the (unit-length) sentence vector against the (unit-length) TF-IDF blocks.
    pub embedding_weight: f32,
    /// Share of correctly classified held-out in-scope messages allowed to fall below the
    /// out-of-scope threshold (the price of catching messages that fit no intent).
    pub handover_rate: f32,
    pub seed: u64,
}

impl IntentTrainOptions {
    pub fn new(embedding_model: impl Into<String>) -> Self {
        IntentTrainOptions {
            embedding_model: embedding_model.into(),
            c: 0.5,
            embedding_weight: 2.0,
            handover_rate: 0.02,
            seed: 7,
        }
    }
}

/// What long intent work reports as it goes.
pub trait IntentProgress: Sync {
    /// `done` of `total` messages embedded.
    fn embedded(&self, done: usize, total: usize);
    /// A named stage started ("calibrating", "training").
    fn stage(&self, name: &str);
}

/// Reports nothing.
pub struct NoProgress;

impl IntentProgress for NoProgress {
    fn embedded(&self, _: usize, _: usize) {}
    fn stage(&self, _: &str) {}
}

/// A message's routing decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IntentPrediction {
    /// The best intent (even when out of scope, for the human's summary).
    pub intent: String,
    /// Its SVM decision value; above about 0 means the model is confident.
    pub score: f32,
    /// False when the score is below the model's threshold: hand the message to a human.
    pub in_scope: bool,
    /// The next best intents with their scores, best first (at most 3): `[intent, score]`.
    #[schema(schema_with = alternatives)]
    pub alternatives: Vec<(String, f32)>,
}

fn alternatives() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    let pair = ArrayBuilder::new()
        .prefix_items([
            ObjectBuilder::new().schema_type(Type::String).build(),
            ObjectBuilder::new().schema_type(Type::Number).build(),
        ])
        .items(utoipa::openapi::schema::ArrayItems::False)
        .min_items(Some(2));
    ArrayBuilder::new().items(pair).max_items(Some(3)).into()
}

/// A trained intent classifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IntentModel {
    intents: Vec<String>,
    embedding_model: String,
    embedding_weight: f32,
    threshold: f32,
    tfidf: TfIdf,
    weights: Vec<Vec<f32>>,
    trained_examples: usize,
    train_seconds: f64,
}

const MODEL_FILE: &str = "intents.bin";
const EMBED_BATCH: usize = 128;

/// Embeds texts through the gateway in batches, reporting progress.
pub async fn embed_all(
    gateway: &Gateway,
    model: &str,
    texts: &[&str],
    progress: &dyn IntentProgress,
) -> Result<Vec<Vec<f32>>, SupportError> {
    let mut vectors = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(EMBED_BATCH) {
        let batch = chunk.iter().map(|t| t.to_string()).collect();
        vectors.extend(gateway.embed_texts(model, batch).await?);
        progress.embedded(vectors.len(), texts.len());
    }
    for v in &mut vectors {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
    }
    Ok(vectors)
}

struct Fitted {
    tfidf: TfIdf,
    weights: Vec<Vec<f32>>,
}

fn fit(
    texts: &[&str],
    vectors: &[Vec<f32>],
    labels: &[u32],
    classes: usize,
    options: &IntentTrainOptions,
) -> Fitted {
    let tfidf = TfIdf::fit(texts);
    let rows: Vec<SparseRow> = texts
        .iter()
        .zip(vectors)
        .map(|(t, v)| tfidf.row(t, v, options.embedding_weight))
        .collect();
    let dim = tfidf.sparse_width() as usize + vectors.first().map_or(0, Vec::len);
    let svm = SvmOptions {
        c: options.c,
        seed: options.seed,
        ..SvmOptions::default()
    };
    let weights = linear::train_one_vs_rest(&rows, labels, classes, dim, svm);
    Fitted { tfidf, weights }
}

fn argmax(scores: &[f32]) -> usize {
    (0..scores.len())
        .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
        .unwrap_or(0)
}

impl IntentModel {
    /// Learns the intents of `examples`. Every intent needs at least two examples. The
    /// out-of-scope threshold is calibrated on every tenth example of each intent, held out
    /// from a first model; the model kept is then trained on all examples.
    pub async fn train(
        gateway: &Gateway,
        examples: &[LabelledText],
        options: &IntentTrainOptions,
        progress: &dyn IntentProgress,
    ) -> Result<IntentModel, SupportError> {
        if !(options.c > 0.0 && options.c.is_finite()) {
            return Err(SupportError::invalid("c", "must be a positive number"));
        }
        if !(0.0..1.0).contains(&options.handover_rate) {
            return Err(SupportError::invalid("handover_rate", "must be in [0, 1)"));
        }
        let mut intents: Vec<String> = examples.iter().map(|e| e.intent.clone()).collect();
        intents.sort_unstable();
        intents.dedup();
        if intents.len() < 2 {
            return Err(SupportError::NotEnoughData(
                "intent routing needs at least two intents".into(),
            ));
        }
        let index: HashMap<&str, u32> = intents
            .iter()
            .enumerate()
            .map(|(i, s)| (s.as_str(), i as u32))
            .collect();
        let labels: Vec<u32> = examples.iter().map(|e| index[e.intent.as_str()]).collect();
        let mut per_intent = vec![0usize; intents.len()];
        labels.iter().for_each(|&l| per_intent[l as usize] += 1);
        if let Some(i) = per_intent.iter().position(|&n| n < 2) {
            return Err(SupportError::NotEnoughData(format!(
                "intent '{}' has {} example; every intent needs at least two",
                intents[i], per_intent[i]
            )));
        }
        let started = Instant::now();
        let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
        let vectors = embed_all(gateway, &options.embedding_model, &texts, progress).await?;

        progress.stage("training");
        let owned: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
        let (held_out, kept): (Vec<usize>, Vec<usize>) = {
            let mut seen = vec![0usize; intents.len()];
            (0..examples.len()).partition(|&i| {
                let n = &mut seen[labels[i] as usize];
                *n += 1;
                (*n).is_multiple_of(10)
            })
        };
        let classes = intents.len();
        let opts = options.clone();
        let job = tokio::task::spawn_blocking(move || {
            let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
            let pick = |ids: &[usize]| -> (Vec<&str>, Vec<Vec<f32>>, Vec<u32>) {
                (
                    ids.iter().map(|&i| texts[i]).collect(),
                    ids.iter().map(|&i| vectors[i].clone()).collect(),
                    ids.iter().map(|&i| labels[i]).collect(),
                )
            };
            let (t, v, l) = pick(&kept);
            let first = fit(&t, &v, &l, classes, &opts);
            let mut confident: Vec<f32> = held_out
                .iter()
                .filter_map(|&i| {
                    let row = first
                        .tfidf
                        .row(texts[i], &vectors[i], opts.embedding_weight);
                    let s = linear::scores(&first.weights, &row);
                    let best = argmax(&s);
                    (best as u32 == labels[i]).then_some(s[best])
                })
                .collect();
            confident.sort_unstable_by(f32::total_cmp);
            let threshold = if confident.is_empty() {
                f32::NEG_INFINITY
            } else {
                confident[((confident.len() as f32 * opts.handover_rate) as usize)
                    .min(confident.len() - 1)]
            };
            let fitted = fit(&texts, &vectors, &labels, classes, &opts);
            (threshold, fitted)
        });
        let (threshold, fitted) = job
            .await
            .map_err(|e| SupportError::Artifact(format!("training thread failed: {e}")))?;
        Ok(IntentModel {
            intents,
            embedding_model: options.embedding_model.clone(),
            embedding_weight: options.embedding_weight,
            threshold,
            tfidf: fitted.tfidf,
            weights: fitted.weights,
            trained_examples: examples.len(),
            train_seconds: started.elapsed().as_secs_f64(),
        })
    }

    pub fn intents(&self) -> &[String] {
        &self.intents
    }

    pub fn embedding_model(&self) -> &str {
        &self.embedding_model
    }

    /// The out-of-scope threshold on the best intent's score.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    pub fn trained_examples(&self) -> usize {
        self.trained_examples
    }

    /// Wall time of the last training, embedding included.
    pub fn train_seconds(&self) -> f64 {
        self.train_seconds
    }

    /// Classifies a message whose sentence vector (unit length, from
    /// [`IntentModel::embedding_model`]) is already known.
    pub fn classify_embedded(&self, text: &str, vector: &[f32]) -> IntentPrediction {
        let row = self.tfidf.row(text, vector, self.embedding_weight);
        let scores = linear::scores(&self.weights, &row);
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_unstable_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        let best = order[0];
        IntentPrediction {
            intent: self.intents[best].clone(),
            score: scores[best],
            in_scope: scores[best] >= self.threshold,
            alternatives: order[1..]
                .iter()
                .take(3)
                .map(|&i| (self.intents[i].clone(), scores[i]))
                .collect(),
        }
    }

    /// Classifies one message, embedding it through the gateway.
    pub async fn classify(
        &self,
        gateway: &Gateway,
        text: &str,
    ) -> Result<IntentPrediction, SupportError> {
        let vectors = embed_all(gateway, &self.embedding_model, &[text], &NoProgress).await?;
        Ok(self.classify_embedded(text, &vectors[0]))
    }

    /// Writes the model into `dir` (an artifact version directory).
    pub fn save(&self, dir: &Path) -> Result<(), SupportError> {
        let bytes = postcard::to_stdvec(self).map_err(|e| SupportError::Artifact(e.to_string()))?;
        let path = dir.join(MODEL_FILE);
        std::fs::write(&path, bytes).map_err(|e| SupportError::io(&path, e))
    }

    pub fn load(dir: &Path) -> Result<IntentModel, SupportError> {
        let path = dir.join(MODEL_FILE);
        let bytes = std::fs::read(&path).map_err(|e| SupportError::io(&path, e))?;
        postcard::from_bytes(&bytes).map_err(|e| {
            SupportError::Artifact(format!(
                "{}: {e} (written by another version? run `hearth support intents train`)",
                path.display()
            ))
        })
    }
}

/// Accuracy and macro-F1 of one classifier on a test set.
#[derive(Debug, Clone, Serialize)]
pub struct IntentScores {
    pub accuracy: f64,
    pub macro_f1: f64,
    /// Share of test messages judged out of scope (handed over); 0 for the baseline.
    pub handover_rate: f64,
    /// Accuracy over the messages it did route.
    pub routed_accuracy: f64,
}

/// An intent model against the zero-shot baseline on one test set.
#[derive(Debug, Clone, Serialize)]
pub struct IntentReport {
    pub test_examples: usize,
    pub intents: usize,
    pub trained: IntentScores,
    pub zero_shot: IntentScores,
    /// trained accuracy / zero-shot accuracy − 1.
    pub relative_gain: f64,
    pub embedding_model: String,
    pub train_examples: usize,
    pub train_seconds: f64,
}

fn score(truth: &[Option<usize>], predicted: &[(usize, bool)], classes: usize) -> IntentScores {
    let n = truth.len().max(1) as f64;
    let correct = |(t, p): (&Option<usize>, &(usize, bool))| *t == Some(p.0);
    let accuracy = truth.iter().zip(predicted).filter(|x| correct(*x)).count() as f64 / n;
    let routed: Vec<_> = truth.iter().zip(predicted).filter(|(_, p)| p.1).collect();
    let routed_accuracy = if routed.is_empty() {
        0.0
    } else {
        routed.iter().filter(|x| correct(**x)).count() as f64 / routed.len() as f64
    };
    let (mut tp, mut fp, mut fne) = (
        vec![0f64; classes],
        vec![0f64; classes],
        vec![0f64; classes],
    );
    for (t, p) in truth.iter().zip(predicted) {
        if *t == Some(p.0) {
            tp[p.0] += 1.0;
        } else {
            fp[p.0] += 1.0;
            if let Some(t) = t {
                fne[*t] += 1.0;
            }
        }
    }
    let present: Vec<usize> = (0..classes)
        .filter(|&c| tp[c] + fp[c] + fne[c] > 0.0)
        .collect();
    let macro_f1 = present
        .iter()
        .map(|&c| 2.0 * tp[c] / (2.0 * tp[c] + fp[c] + fne[c]))
        .sum::<f64>()
        / present.len().max(1) as f64;
    IntentScores {
        accuracy,
        macro_f1,
        handover_rate: predicted.iter().filter(|p| !p.1).count() as f64 / n,
        routed_accuracy,
    }
}

/// "card_not_working" → "card not working": what the zero-shot baseline embeds.
fn intent_phrase(intent: &str) -> String {
    intent.replace(['_', '-'], " ")
}

/// Scores `model` on `test` next to the zero-shot baseline (embedding similarity to the
/// intent names, with the same embedder). A test label the model never saw counts as an
/// error for both.
pub async fn evaluate(
    gateway: &Gateway,
    model: &IntentModel,
    test: &[LabelledText],
    progress: &dyn IntentProgress,
) -> Result<IntentReport, SupportError> {
    if test.is_empty() {
        return Err(SupportError::NotEnoughData("the test set is empty".into()));
    }
    let texts: Vec<&str> = test.iter().map(|e| e.text.as_str()).collect();
    let vectors = embed_all(gateway, &model.embedding_model, &texts, progress).await?;
    let phrases: Vec<String> = model.intents.iter().map(|i| intent_phrase(i)).collect();
    let phrase_refs: Vec<&str> = phrases.iter().map(String::as_str).collect();
    let names = embed_all(gateway, &model.embedding_model, &phrase_refs, &NoProgress).await?;
    let index: HashMap<&str, usize> = model
        .intents
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    let truth: Vec<Option<usize>> = test
        .iter()
        .map(|e| index.get(e.intent.as_str()).copied())
        .collect();
    let mut trained = Vec::with_capacity(test.len());
    let mut zero_shot = Vec::with_capacity(test.len());
    for (example, vector) in test.iter().zip(&vectors) {
        let p = model.classify_embedded(&example.text, vector);
        trained.push((index[p.intent.as_str()], p.in_scope));
        let similarity: Vec<f32> = names
            .iter()
            .map(|n| n.iter().zip(vector).map(|(a, b)| a * b).sum())
            .collect();
        zero_shot.push((argmax(&similarity), true));
    }
    let classes = model.intents.len();
    let trained = score(&truth, &trained, classes);
    let zero_shot = score(&truth, &zero_shot, classes);
    Ok(IntentReport {
        test_examples: test.len(),
        intents: classes,
        relative_gain: trained.accuracy / zero_shot.accuracy.max(f64::EPSILON) - 1.0,
        trained,
        zero_shot,
        embedding_model: model.embedding_model.clone(),
        train_examples: model.trained_examples,
        train_seconds: model.train_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_errors_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("intents.csv");
        std::fs::write(&path, "text,category\nhello,greet\n,greet\n").unwrap();
        let err = read_labelled_csv(&path).unwrap_err().to_string();
        assert!(
            err.contains("intents.csv") && err.contains("line 3"),
            "{err}"
        );
        std::fs::write(&path, "words,category\nhello,greet\n").unwrap();
        let err = read_labelled_csv(&path).unwrap_err().to_string();
        assert!(err.contains("no text column"), "{err}");
        std::fs::write(&path, "Text,Intent\n\"hi, there\",greet\n").unwrap();
        assert_eq!(
            read_labelled_csv(&path).unwrap(),
            vec![LabelledText {
                text: "hi, there".into(),
                intent: "greet".into()
            }]
        );
    }

    #[test]
    fn macro_f1_averages_classes_and_counts_unknown_labels_as_errors() {
        // Class 0: 2 right; class 1: 1 right, 1 predicted as 0; one unknown label.
        let truth = [Some(0), Some(0), Some(1), Some(1), None];
        let predicted = [(0, true), (0, true), (1, true), (0, false), (1, true)];
        let s = score(&truth, &predicted, 2);
        assert!((s.accuracy - 0.6).abs() < 1e-9);
        // F1(0) = 4/5, F1(1) = 2/(2+1+1) = 0.5.
        assert!((s.macro_f1 - 0.65).abs() < 1e-9, "{}", s.macro_f1);
        assert!((s.handover_rate - 0.2).abs() < 1e-9);
        assert!((s.routed_accuracy - 0.75).abs() < 1e-9);
    }
}
