//! Catalogue search and the shopping assistant through `router()`, on MovieLens-100K with the
//! real small models: all-MiniLM-L6-v2 embeds items and queries, SmolLM2-135M reads wishes and
//! writes answers.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use hearth_core::recs::bundle::{train_bundle, TrainOptions};
use hearth_core::recs::import::ColumnMapping;
use hearth_core::recs::models::{embed_items, ModelKind};
use hearth_core::recs::store::{import_file, ImportOptions};
use hearth_core::recs::{Event, Item, ItemId};
use hearth_core::{Config, Platform};
use hearth_testdata::movielens_dir;
use serde_json::{json, Value};

use crate::common;

async fn post(platform: &Platform, uri: &str, body: Value) -> (StatusCode, Vec<u8>) {
    let request = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (status, _, bytes) = common::call(platform, request).await;
    (status, bytes)
}

async fn post_json(platform: &Platform, uri: &str, body: Value) -> (StatusCode, Value) {
    let (status, bytes) = post(platform, uri, body).await;
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)));
    (status, value)
}

/// MovieLens imported, the models registered, a bundle with item embeddings published.
async fn shop(dir: &std::path::Path) -> Platform {
    let platform = Platform::open(Config {
        data_dir: dir.to_owned(),
        ..Default::default()
    })
    .unwrap();
    common::register_test_models(&platform);
    let ml = movielens_dir();
    let store = platform.recs_store().unwrap();
    let mapping = ColumnMapping::default();
    let options = ImportOptions::default();
    import_file::<Item>(
        &store,
        &ml.join("ml-100k.item"),
        &mapping,
        &options,
        &mut |_| {},
    )
    .unwrap();
    import_file::<Event>(
        &store,
        &ml.join("ml-100k.inter"),
        &mapping,
        &options,
        &mut |_| {},
    )
    .unwrap();
    let data = store.dataset(&Default::default()).unwrap();
    let vectors = embed_items(platform.gateway(), "minilm", &data.catalogue, &|_| {})
        .await
        .unwrap();
    let options = TrainOptions {
        models: vec![ModelKind::ItemKnn],
        embedding_model: Some("minilm".into()),
        ..Default::default()
    };
    let bundle = train_bundle(&data, Some(&vectors), &options, &()).unwrap();
    platform
        .recs_artifacts()
        .publish(|d| bundle.save(d))
        .unwrap();
    platform
}

fn titles(value: &Value) -> Vec<String> {
    value["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["title"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn search_and_assistant_answer_from_the_catalogue() {
    let dir = tempfile::tempdir().unwrap();
    let platform = shop(dir.path()).await;
    let store = platform.recs_store().unwrap();

    // Words: the title that has them comes first.
    let (status, value) = post_json(&platform, "/v1/search", json!({"query": "star wars"})).await;
    assert_eq!(status, StatusCode::OK, "{value}");
    assert_eq!(value["hybrid"], true);
    assert_eq!(titles(&value)[0], "Star Wars", "{value}");

    // Meaning: no title or genre has these words; the embedder still finds science fiction.
    let (_, value) = post_json(
        &platform,
        "/v1/search",
        json!({"query": "spaceship galaxy robot", "n": 10}),
    )
    .await;
    let data = value["data"].as_array().unwrap();
    assert_eq!(data.len(), 10, "{value}");
    assert!(data.iter().all(|r| r["reason"] == "close to what you mean"));
    let sci_fi = data
        .iter()
        .filter(|r| {
            let item = store
                .item(&ItemId(r["item"].as_str().unwrap().into()))
                .unwrap()
                .unwrap();
            item.categories.iter().any(|c| c == "Sci-Fi")
        })
        .count();
    assert!(
        sci_fi >= 3,
        "{sci_fi} of 10 are Sci-Fi: {:?}",
        titles(&value)
    );

    // Filters apply to search as to recommendations.
    let (_, value) = post_json(
        &platform,
        "/v1/search",
        json!({"query": "star", "category": "Comedy", "n": 20}),
    )
    .await;
    for r in value["data"].as_array().unwrap() {
        let item = store
            .item(&ItemId(r["item"].as_str().unwrap().into()))
            .unwrap()
            .unwrap();
        assert!(item.categories.iter().any(|c| c == "Comedy"), "{item:?}");
    }
    let (status, value) = post_json(&platform, "/v1/search", json!({"query": " "})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(value["error"]["param"], "query");
    let (status, value) = post_json(&platform, "/v1/search", json!({"q": "x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{value}");

    // The assistant, whole answer: everything it names is a candidate, and every candidate
    // is a real catalogue item of the requested category.
    let (status, answer) = post_json(
        &platform,
        "/v1/assistant",
        json!({"wish": "a funny movie with animals for the family", "user_id": "196",
               "category": "Comedy", "stream": false}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let candidates: Vec<String> = answer["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["item"].as_str().unwrap().to_owned())
        .collect();
    assert!(!candidates.is_empty(), "{answer}");
    for id in &candidates {
        let item = store
            .item(&ItemId(id.clone()))
            .unwrap()
            .expect("in the catalogue");
        assert!(item.categories.iter().any(|c| c == "Comedy"), "{item:?}");
    }
    let named: Vec<String> = answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert!(!named.is_empty(), "{answer}");
    assert!(named.iter().all(|id| candidates.contains(id)), "{answer}");
    let text = answer["answer"].as_str().unwrap();
    let listed: Vec<&str> = text.lines().filter(|l| l.starts_with("- [")).collect();
    assert_eq!(listed.len(), named.len(), "{text}");
    assert!(answer["constraints"].is_object());
    assert!(answer["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    // Streaming: constraints, items, text deltas, done, then [DONE].
    let (status, bytes) = post(
        &platform,
        "/v1/assistant",
        json!({"wish": "something scary for halloween", "candidates": 3}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let body = String::from_utf8(bytes).unwrap();
    let events: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{body}");
    let parsed: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let kinds: Vec<&str> = parsed.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds[0], "constraints", "{body}");
    assert_eq!(kinds[1], "items");
    assert_eq!(*kinds.last().unwrap(), "done", "{body}");
    assert!(kinds[2..kinds.len() - 1].iter().all(|k| *k == "delta"));
    assert!(kinds.len() > 3, "{body}");
    let offered: Vec<&str> = parsed[1]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["item"].as_str().unwrap())
        .collect();
    assert!(offered.len() <= 3);
    for id in parsed.last().unwrap()["items"].as_array().unwrap() {
        assert!(offered.contains(&id.as_str().unwrap()), "{body}");
    }

    // Bad input names the field.
    let (status, value) = post_json(&platform, "/v1/assistant", json!({"wish": ""})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(value["error"]["param"], "wish");
    let (status, value) = post_json(
        &platform,
        "/v1/assistant",
        json!({"wish": "x", "candidates": 50}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(value["error"]["param"], "candidates");
}

/// Item ids of a list, best first.
fn ids(list: &hearth_core::recs_service::RecommendationList) -> Vec<String> {
    list.data.iter().map(|r| r.item.0.clone()).collect()
}

/// MiniLM's cosine of `query` with each item's catalogue text, in the order of `items`.
async fn cosines(platform: &Platform, query: &str, items: &[String]) -> Vec<f64> {
    let store = platform.recs_store().unwrap();
    let pairs = items
        .iter()
        .map(|id| {
            let item = store.item(&ItemId(id.clone())).unwrap().unwrap();
            (query.to_owned(), item.text())
        })
        .collect();
    platform
        .gateway()
        .score_pairs("minilm", pairs, None)
        .await
        .unwrap()
        .scores
}

/// `items` by descending `scores`, ties in their own order.
fn by_score(items: &[String], scores: &[f64]) -> Vec<String> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order.into_iter().map(|i| items[i].clone()).collect()
}

#[tokio::test]
async fn a_rerank_stage_reorders_catalogue_search_and_the_assistants_candidates() {
    use hearth_core::recs_service::SearchQuery;
    use hearth_gateway::rerank::RerankStage;
    let dir = tempfile::tempdir().unwrap();
    let platform = shop(dir.path()).await;
    let query = "a robot lost in space";
    let search = |n| SearchQuery {
        query: query.into(),
        n,
        ..Default::default()
    };
    let first = ids(&platform.search_with(search(20), None).await.unwrap());
    assert_eq!(first.len(), 20);
    let scores = cosines(&platform, query, &first).await;

    // Replacing: the same 20 items, in the reranker's order, with its scores.
    let mut stage = RerankStage {
        model: "minilm".into(),
        depth: 20,
        instruction: hearth_core::recs::rerank::RERANK_INSTRUCTION.into(),
        fuse: false,
    };
    let reranked = platform
        .search_with(search(20), Some(&stage))
        .await
        .unwrap();
    let expected = by_score(&first, &scores);
    assert_ne!(
        expected, first,
        "the reranker disagrees with the first stage here"
    );
    assert_eq!(ids(&reranked), expected);
    for r in &reranked.data {
        let i = first.iter().position(|id| *id == r.item.0).unwrap();
        assert!((r.score as f64 - scores[i]).abs() < 1e-5, "{r:?}");
    }
    // Fewer items asked than the reranker reads: the best of what it read.
    let five = platform.search_with(search(5), Some(&stage)).await.unwrap();
    assert_eq!(ids(&five), expected[..5]);

    // Fused: reciprocal ranks of both orders summed, ties in the first stage's order.
    stage.fuse = true;
    let fused = platform
        .search_with(search(20), Some(&stage))
        .await
        .unwrap();
    let fused_scores: Vec<f64> = first
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let r = expected.iter().position(|e| e == id).unwrap();
            1.0 / (61 + i) as f64 + 1.0 / (61 + r) as f64
        })
        .collect();
    assert_eq!(ids(&fused), by_score(&first, &fused_scores));
    assert_eq!(fused.data[0].item.0, by_score(&first, &fused_scores)[0]);

    // From the config: `/v1/search` and the assistant both take the stage.
    let configured = Platform::open(Config {
        data_dir: dir.path().to_owned(),
        recs: hearth_core::RecsConfig {
            rerank_model: Some("minilm".into()),
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let (status, value) =
        post_json(&configured, "/v1/search", json!({"query": query, "n": 20})).await;
    assert_eq!(status, StatusCode::OK, "{value}");
    let http: Vec<String> = value["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["item"].as_str().unwrap().to_owned())
        .collect();
    // (Against this platform's own first stage: an approximate vector index loaded apart
    // may differ at the tail of the top 20.)
    let own = ids(&configured.search_with(search(20), None).await.unwrap());
    let own_scores = cosines(&configured, query, &own).await;
    assert_eq!(http, by_score(&own, &own_scores));
    let wish = "a film about a robot in space";
    let (status, answer) = post_json(
        &configured,
        "/v1/assistant",
        json!({"wish": wish, "candidates": 5, "stream": false}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let candidates: Vec<String> = answer["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["item"].as_str().unwrap().to_owned())
        .collect();
    assert!(candidates.len() >= 2, "{answer}");
    let scores = cosines(&configured, wish, &candidates).await;
    assert_eq!(
        by_score(&candidates, &scores),
        candidates,
        "offered in the reranker's order: {scores:?}"
    );

    // A reranker that is not registered is an error naming it, not a silent first stage.
    stage.model = "no-such-reranker".into();
    let err = platform
        .search_with(search(5), Some(&stage))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-such-reranker"), "{err}");
}
