//! Rerank and score through `router()` with plain HTTP: `/v1/rerank` on a cross-encoder (the
//! random BERT fixture of hearth-infer), on Qwen2.5-Coder-0.5B judging yes/no (SmolLM2-135M
//! is too small to judge) and on MiniLM's cosine;
//! `/rerank` in TEI's shape (the one cross-encoder chosen when no model is named, raw scores
//! as the logits); `/v1/score` one against many and pair by pair; and every refusal naming
//! its field.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use hearth_core::{Config, Platform};
use serde_json::{json, Value};

use crate::common;

fn cross_encoder_dir() -> std::path::PathBuf {
    hearth_testdata::cross_encoder_dir("bert")
}

fn platform(dir: &tempfile::TempDir, with_cross_encoder: bool) -> Platform {
    let mut config = Config {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    config.llm.context_length = 2048;
    let platform = Platform::open(config).unwrap();
    common::register_test_models(&platform);
    platform
        .gateway()
        .registry()
        .import(
            &hearth_testdata::models_dir().join("Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf"),
            Some("qwen"),
        )
        .unwrap();
    if with_cross_encoder {
        platform
            .gateway()
            .registry()
            .import(&cross_encoder_dir(), Some("tiny-ce"))
            .unwrap();
    }
    platform
}

async fn post(platform: &Platform, path: &str, body: Value) -> (StatusCode, Value) {
    let request = Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (status, _, bytes) = common::call(platform, request).await;
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)));
    (status, value)
}

async fn ok(platform: &Platform, path: &str, body: Value) -> Value {
    let (status, value) = post(platform, path, body).await;
    assert_eq!(status, StatusCode::OK, "{value}");
    value
}

const DOCS: [&str; 4] = [
    "Bananas are a yellow fruit.",
    "Paris is the capital and largest city of France.",
    "The train leaves at nine.",
    "France's capital is Paris.",
];

fn scores_by_index(value: &Value) -> Vec<f64> {
    let results = value["results"].as_array().unwrap();
    let mut scores = vec![f64::NAN; results.len()];
    for r in results {
        scores[r["index"].as_u64().unwrap() as usize] = r["relevance_score"].as_f64().unwrap();
    }
    scores
}

fn assert_best_first(value: &Value) {
    let scores: Vec<f64> = value["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["relevance_score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
}

#[tokio::test]
async fn rerank_by_embedding_similarity_puts_the_answers_first() {
    let dir = tempfile::tempdir().unwrap();
    let platform = platform(&dir, false);
    let value = ok(
        &platform,
        "/v1/rerank",
        json!({"model": "minilm", "query": "What is the capital of France?", "documents": DOCS}),
    )
    .await;
    assert_eq!(value["model"], "minilm");
    assert_best_first(&value);
    let top: Vec<u64> = value["results"]
        .as_array()
        .unwrap()
        .iter()
        .take(2)
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert!(top.contains(&1) && top.contains(&3), "{value}");
    // Documents are echoed by default, each with its own text.
    for r in value["results"].as_array().unwrap() {
        assert_eq!(
            r["document"]["text"],
            DOCS[r["index"].as_u64().unwrap() as usize]
        );
    }
    assert!(value["usage"]["total_tokens"].as_u64().unwrap() > 0);

    // Objects, top_n and return_documents: false.
    let objects: Vec<Value> = DOCS.iter().map(|d| json!({"text": d})).collect();
    let top = ok(
        &platform,
        "/v1/rerank",
        json!({"model": "minilm", "query": "What is the capital of France?",
               "documents": objects, "top_n": 1, "return_documents": false}),
    )
    .await;
    let results = top["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["index"], value["results"][0]["index"]);
    assert!(results[0].get("document").is_none());

    // An empty document is ranked too, last: it has nothing to match.
    let with_empty = ok(
        &platform,
        "/v1/rerank",
        json!({"model": "minilm", "query": "What is the capital of France?",
               "documents": [DOCS[1], ""]}),
    )
    .await;
    assert_eq!(with_empty["results"][1]["index"], 1, "{with_empty}");
    assert_eq!(with_empty["results"][1]["relevance_score"], 0.0);
}

#[tokio::test]
async fn a_chat_model_judges_relevance_yes_or_no() {
    let dir = tempfile::tempdir().unwrap();
    let platform = platform(&dir, false);
    let query = "What is the capital of France?";
    let value = ok(
        &platform,
        "/v1/rerank",
        json!({"model": "qwen", "query": query, "documents": DOCS}),
    )
    .await;
    assert_best_first(&value);
    let scores = scores_by_index(&value);
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)), "{scores:?}");
    // Each pair is judged on its own: alone it scores what it scored among the others.
    let alone = ok(
        &platform,
        "/v1/score",
        json!({"model": "qwen", "text_1": query, "text_2": DOCS[1]}),
    )
    .await;
    let single = alone["data"][0]["score"].as_f64().unwrap();
    // llama.cpp's batched kernels round differently from a lone sequence's: a few
    // hundredths at most, never the order of an answer and an unrelated text.
    assert!(
        (single - scores[1]).abs() < 0.05,
        "{single} vs {}",
        scores[1]
    );
    let again = ok(
        &platform,
        "/v1/score",
        json!({"model": "qwen", "text_1": query, "text_2": DOCS[1]}),
    )
    .await;
    let repeated = again["data"][0]["score"].as_f64().unwrap();
    assert!((repeated - single).abs() < 1e-4, "{repeated} vs {single}");
    // The judgement reads the document: the answer scores above the unrelated text.
    assert!(scores[1] > scores[0], "{scores:?}");
    // TEI's raw score is the log-odds of "yes": its sigmoid is the score.
    let tei = ok(
        &platform,
        "/rerank",
        json!({"model": "qwen", "query": query, "texts": DOCS, "raw_scores": true}),
    )
    .await;
    for rank in tei.as_array().unwrap() {
        let i = rank["index"].as_u64().unwrap() as usize;
        let raw = rank["score"].as_f64().unwrap();
        let p = 1.0 / (1.0 + (-raw).exp());
        assert!((p - scores[i]).abs() < 0.05, "{p} vs {}", scores[i]);
        assert!(rank.get("text").is_none());
    }
}

#[tokio::test]
async fn a_cross_encoder_ranks_and_tei_finds_it_without_a_name() {
    let dir = tempfile::tempdir().unwrap();
    let platform = platform(&dir, true);
    let models = platform.gateway().models().unwrap();
    let ce = models.iter().find(|m| m.name == "tiny-ce").unwrap();
    assert_eq!(ce.kind.as_str(), "rerank");
    let value = ok(
        &platform,
        "/v1/rerank",
        json!({"model": "tiny-ce", "query": "refund", "documents": DOCS}),
    )
    .await;
    assert_best_first(&value);
    let scores = scores_by_index(&value);
    // TEI: no model named, the one cross-encoder ranks; raw scores are its logits.
    let tei = ok(
        &platform,
        "/rerank",
        json!({"query": "refund", "texts": DOCS, "raw_scores": true, "return_text": true}),
    )
    .await;
    let ranks = tei.as_array().unwrap();
    assert_eq!(ranks.len(), DOCS.len());
    for rank in ranks {
        let i = rank["index"].as_u64().unwrap() as usize;
        let logit = rank["score"].as_f64().unwrap();
        let p = 1.0 / (1.0 + (-logit).exp());
        assert!((p - scores[i]).abs() < 1e-5, "{p} vs {}", scores[i]);
        assert_eq!(rank["text"], DOCS[i]);
    }
    // A cross-encoder is no embedder.
    let (status, err) = post(
        &platform,
        "/v1/embeddings",
        json!({"model": "tiny-ce", "input": "refund"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["error"]["code"], "wrong_model_kind");
}

#[tokio::test]
async fn score_takes_one_against_many_and_lists_pair_by_pair() {
    let dir = tempfile::tempdir().unwrap();
    let platform = platform(&dir, false);
    let many = ok(
        &platform,
        "/v1/score",
        json!({"model": "minilm", "text_1": "capital of France", "text_2": DOCS}),
    )
    .await;
    assert_eq!(many["object"], "list");
    let data = many["data"].as_array().unwrap();
    assert_eq!(data.len(), DOCS.len());
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d["index"], i);
        assert_eq!(d["object"], "score");
    }
    let pairwise = ok(
        &platform,
        "/v1/score",
        json!({"model": "minilm", "text_1": ["capital of France", "fruit"],
               "text_2": [DOCS[3], DOCS[0]]}),
    )
    .await;
    let pair_scores: Vec<f64> = pairwise["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["score"].as_f64().unwrap())
        .collect();
    assert!((pair_scores[0] - data[3]["score"].as_f64().unwrap()).abs() < 1e-6);
    let (status, err) = post(
        &platform,
        "/v1/score",
        json!({"model": "minilm", "text_1": ["a", "b"], "text_2": ["c"]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["param"], "text_2", "{err}");
}

#[tokio::test]
async fn bad_rerank_requests_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let platform = platform(&dir, false);
    for (path, body, param) in [
        (
            "/v1/rerank",
            json!({"model": "minilm", "query": "q", "documents": []}),
            "documents",
        ),
        (
            "/v1/rerank",
            json!({"model": "minilm", "query": "  ", "documents": ["d"]}),
            "query",
        ),
        (
            "/v1/rerank",
            json!({"model": "minilm", "query": "q", "documents": ["d"], "top_n": 0}),
            "top_n",
        ),
        ("/rerank", json!({"query": "q", "texts": ["d"]}), "model"),
        (
            "/rerank",
            json!({"model": "minilm", "query": "q", "texts": ["d"], "truncation_direction": "left"}),
            "truncation_direction",
        ),
        (
            "/v1/score",
            json!({"model": "minilm", "text_1": ["a"], "text_2": "b"}),
            "text_1",
        ),
        (
            "/v1/score",
            json!({"model": "minilm", "text_1": "", "text_2": "b"}),
            "text_1",
        ),
    ] {
        let (status, err) = post(&platform, path, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert_eq!(err["error"]["param"], param, "{body}: {err}");
    }
    let (status, err) = post(
        &platform,
        "/v1/rerank",
        json!({"model": "no-such-model", "query": "q", "documents": ["d"]}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
    // More documents than a request may carry.
    let many: Vec<String> = (0..2049).map(|i| format!("d{i}")).collect();
    let (status, err) = post(
        &platform,
        "/v1/rerank",
        json!({"model": "minilm", "query": "q", "documents": many}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["param"], "documents", "{err}");
}
