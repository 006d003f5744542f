//! The OpenAI Responses API through `router()` on SmolLM2-135M: a stored response is seen
//! only by the key that made it (read, continued, deleted), `store: false` keeps nothing, a
//! stored response expires after its time to live, and a continuation carries the earlier
//! turn into the prompt. The official `openai` SDK runs against a live server in
//! tests/openai_client.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use hearth_core::{Config, Platform, StoreUrl};
use hearth_gateway::keys::NewKey;
use hearth_gateway::Scope;
use serde_json::{json, Value};

use crate::common;

fn platform(dir: &tempfile::TempDir, ttl_hours: f64) -> Platform {
    let mut config = Config {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    config.store.url = hearth_testdata::test_store_url(dir.path()).map(StoreUrl::new);
    config.llm.context_length = 2048;
    config.gateway.responses_ttl_hours = ttl_hours;
    let platform = Platform::open(config).unwrap();
    common::register_test_models(&platform);
    platform
}

fn key(platform: &Platform, name: &str) -> String {
    let keys = platform.gateway().keys().unwrap();
    keys.create(NewKey {
        name: name.into(),
        scopes: vec![Scope::Inference],
        ..Default::default()
    })
    .unwrap()
    .0
}

async fn send(
    platform: &Platform,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "application/json");
    let body = body.map(|b| Body::from(b.to_string())).unwrap_or_default();
    let (status, _, bytes) = common::call(platform, request.body(body).unwrap()).await;
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

fn ask(input: &str) -> Value {
    json!({"model": "smollm2", "input": input, "max_output_tokens": 8, "temperature": 0})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_response_is_its_keys_alone() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(&dir, 720.0);
    let (mine, theirs) = (key(&p, "mine"), key(&p, "theirs"));
    let (status, first) = send(
        &p,
        "POST",
        "/v1/responses",
        &mine,
        Some(ask("My name is Ada.")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let id = first["id"].as_str().unwrap();
    let path = format!("/v1/responses/{id}");
    let (status, read) = send(&p, "GET", &path, &mine, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, first);
    // Another key sees nothing: not to read, continue or delete.
    let (status, value) = send(&p, "GET", &path, &theirs, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(value["error"]["code"], "response_not_found");
    let mut next = ask("What is my name?");
    next["previous_response_id"] = json!(id);
    let (status, value) = send(&p, "POST", "/v1/responses", &theirs, Some(next.clone())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(value["error"]["param"], "previous_response_id");
    let (status, _) = send(&p, "DELETE", &path, &theirs, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The owner continues it: the earlier turn is in the prompt.
    let (status, alone) = send(
        &p,
        "POST",
        "/v1/responses",
        &mine,
        Some(ask("What is my name?")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, continued) = send(&p, "POST", "/v1/responses", &mine, Some(next)).await;
    assert_eq!(status, StatusCode::OK, "{continued}");
    assert_eq!(continued["previous_response_id"], id);
    let earlier = first["usage"]["input_tokens"].as_u64().unwrap()
        + first["usage"]["output_tokens"].as_u64().unwrap();
    assert!(
        continued["usage"]["input_tokens"].as_u64().unwrap()
            >= alone["usage"]["input_tokens"].as_u64().unwrap() + earlier / 2,
        "{continued} vs {alone}"
    );
    let (status, deleted) = send(&p, "DELETE", &path, &mine, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        deleted,
        json!({"id": id, "object": "response.deleted", "deleted": true})
    );
    let (status, _) = send(&p, "GET", &path, &mine, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_kept_without_store_and_nothing_outlives_its_time() {
    let dir = tempfile::tempdir().unwrap();
    // 36 ms to live.
    let p = platform(&dir, 1e-5);
    let mine = key(&p, "mine");
    let mut unstored = ask("Hello");
    unstored["store"] = json!(false);
    let (status, value) = send(&p, "POST", "/v1/responses", &mine, Some(unstored)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(value["store"], false);
    let path = format!("/v1/responses/{}", value["id"].as_str().unwrap());
    let (status, _) = send(&p, "GET", &path, &mine, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, value) = send(&p, "POST", "/v1/responses", &mine, Some(ask("Hello"))).await;
    assert_eq!(status, StatusCode::OK);
    let path = format!("/v1/responses/{}", value["id"].as_str().unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (status, value) = send(&p, "GET", &path, &mine, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{value}");
    // A time to live that is not a positive number is refused at start.
    let mut config = Config {
        data_dir: dir.path().join("other"),
        ..Default::default()
    };
    config.gateway.responses_ttl_hours = 0.0;
    let refused = Platform::open(config)
        .err()
        .expect("a zero time to live is refused");
    assert!(
        refused.to_string().contains("responses_ttl_hours"),
        "{refused}"
    );
}
