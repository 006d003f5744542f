//! Cross-encoders on the encoder engine, against transformers' own logits: small randomly
//! initialised checkpoints in the sentence-transformers CrossEncoder layout (a BERT and an
//! XLM-RoBERTa, with random norms and biases so a loader that skips one fails), written with
//! their reference scores by scripts/make-cross-encoder-fixture.py into
//! tests/fixtures/cross-encoders/ (the weights as a recipe hearth-testdata makes them from). Token ids (pair framing, token types, truncation of the
//! longer text first) and logits must match, alone and in one batch.

use std::path::PathBuf;

use hearth_infer::embed::{EmbedInput, EmbedOptions, EmbeddingModel, ScoreActivation};
use hearth_infer::registry::{inspect, ModelKind};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    max_length: usize,
    pairs: Vec<Pair>,
}

#[derive(Deserialize)]
struct Pair {
    query: String,
    document: String,
    input_ids: Vec<u32>,
    logit: f32,
    score: f32,
}

/// The fixture's folder with model.safetensors written from its recipe (weights.json).
fn dir(name: &str) -> PathBuf {
    hearth_testdata::cross_encoder_dir(name)
}

fn reference(name: &str) -> Reference {
    let path = dir(name).join("reference.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("read reference"))
        .expect("parse reference")
}

fn load(name: &str, threads: usize, max_batch: usize) -> EmbeddingModel {
    EmbeddingModel::load_with_options(
        &dir(name),
        &EmbedOptions {
            threads,
            max_batch,
            queue_capacity: 1,
        },
    )
    .expect("load the cross-encoder")
}

fn pairs(reference: &Reference) -> Vec<EmbedInput> {
    reference
        .pairs
        .iter()
        .map(|p| EmbedInput::Pair(p.query.clone(), p.document.clone()))
        .collect()
}

fn check_parity(name: &str) {
    let reference = reference(name);
    let model = load(name, 1, 1);
    assert!(model.is_cross_encoder());
    assert_eq!(model.dims(), 1, "one logit per pair");
    assert_eq!(model.max_tokens(), reference.max_length);
    assert_eq!(model.score_activation(), Some(ScoreActivation::Sigmoid));
    assert!(
        reference
            .pairs
            .iter()
            .any(|p| p.input_ids.len() == reference.max_length),
        "the fixture has a pair that is truncated"
    );
    for pair in &reference.pairs {
        let out = model
            .embed(&[EmbedInput::Pair(pair.query.clone(), pair.document.clone())])
            .expect("score");
        assert_eq!(
            out.prompt_tokens,
            pair.input_ids.len(),
            "token count of {:?} / {:?}",
            pair.query,
            pair.document
        );
        let logit = out.vectors[0][0];
        assert!(
            (logit - pair.logit).abs() < 1e-4,
            "{name}: logit {logit} for {:?} / {:?}, transformers says {}",
            pair.query,
            pair.document,
            pair.logit
        );
        let score = ScoreActivation::Sigmoid.apply(logit);
        assert!(
            (score - pair.score).abs() < 1e-5,
            "{score} vs {}",
            pair.score
        );
    }
    // The same pairs in packed batches on two threads: the same logits.
    let batched = load(name, 2, 4).embed(&pairs(&reference)).expect("score");
    for (pair, logits) in reference.pairs.iter().zip(&batched.vectors) {
        assert!(
            (logits[0] - pair.logit).abs() < 1e-4,
            "{name} batched: {} vs {}",
            logits[0],
            pair.logit
        );
    }
    let total: usize = reference.pairs.iter().map(|p| p.input_ids.len()).sum();
    assert_eq!(batched.prompt_tokens, total);
}

#[test]
fn bert_cross_encoder_matches_transformers() {
    check_parity("bert");
}

#[test]
fn xlm_roberta_cross_encoder_matches_transformers() {
    check_parity("xlm-roberta");
}

#[test]
fn the_registry_lists_a_cross_encoder_as_a_reranker() {
    for name in ["bert", "xlm-roberta"] {
        let info = inspect(&dir(name)).expect("inspect");
        assert_eq!(info.kind, ModelKind::Rerank, "{name}");
        assert_eq!(info.embedding_dim, None);
    }
    let embedder = inspect(&hearth_testdata::models_dir().join("all-MiniLM-L6-v2")).unwrap();
    assert_eq!(embedder.kind, ModelKind::Embedding);
}

#[test]
fn pairs_are_refused_by_embedders_and_empty_queries_by_cross_encoders() {
    let embedder = EmbeddingModel::load(&hearth_testdata::models_dir().join("all-MiniLM-L6-v2"))
        .expect("load");
    let err = embedder
        .embed(&[EmbedInput::Pair("q".into(), "d".into())])
        .unwrap_err();
    assert!(err.to_string().contains("only a cross-encoder"), "{err}");
    let model = load("bert", 1, 1);
    let err = model
        .embed(&[EmbedInput::Pair(String::new(), "d".into())])
        .unwrap_err();
    assert!(err.to_string().contains("empty query"), "{err}");
    // An empty document is a pair still: [CLS] query [SEP] [SEP].
    let out = model
        .embed(&[EmbedInput::Pair("refund".into(), String::new())])
        .expect("score");
    assert_eq!(out.vectors[0].len(), 1);
}

#[test]
fn the_activation_sentence_transformers_names_is_used() {
    // sentence-transformers v5+ writes it in config_sentence_transformers.json, over the
    // config.json entry of v4.
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir("bert")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
    }
    let st = copy.path().join("config_sentence_transformers.json");
    let mut settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&st).unwrap()).unwrap();
    settings["activation_fn"] = "torch.nn.modules.linear.Identity".into();
    std::fs::write(&st, settings.to_string()).unwrap();
    let model = EmbeddingModel::load(copy.path()).unwrap();
    assert_eq!(model.score_activation(), Some(ScoreActivation::Identity));
    settings["activation_fn"] = "torch.nn.modules.activation.Tanh".into();
    std::fs::write(&st, settings.to_string()).unwrap();
    let err = EmbeddingModel::load(copy.path()).unwrap_err();
    assert!(err.to_string().contains("Tanh"), "{err}");
}
