//! The Anthropic Messages API through `router()` on SmolLM2-135M: a whole answer and the same
//! answer streamed as Anthropic's named events, count_tokens against the billed prompt, a
//! stop sequence named in the answer, the key as `x-api-key`, and every refusal on these
//! paths (the key check's and the door's too) in Anthropic's error shape. The official
//! `anthropic` SDK is run against a live server by tests/anthropic_client.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use hearth_core::{ApiKey, Config, Platform};
use serde_json::{json, Value};

use crate::common;

const KEY: &str = "messages-key";

fn platform(dir: &tempfile::TempDir) -> Platform {
    let mut config = Config {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    config.server.api_keys = vec![ApiKey::new(KEY)];
    config.llm.context_length = 2048;
    let platform = Platform::open(config).unwrap();
    common::register_test_models(&platform);
    platform
}

async fn post(
    platform: &Platform,
    path: &str,
    body: &str,
    key: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut request = Request::post(path).header(header::CONTENT_TYPE, "application/json");
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    common::call(platform, request.body(Body::from(body.to_owned())).unwrap()).await
}

async fn message(platform: &Platform, body: Value) -> Value {
    let (status, _, bytes) = post(platform, "/v1/messages", &body.to_string(), Some(KEY)).await;
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status, StatusCode::OK, "{value}");
    value
}

/// An error body of Anthropic's shape, and its `error.type`.
fn anthropic_error(bytes: &[u8]) -> (String, String) {
    let value: Value = serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)));
    assert_eq!(value["type"], "error", "{value}");
    assert!(
        value.get("error").and_then(|e| e.get("param")).is_none(),
        "{value}"
    );
    (
        value["error"]["type"].as_str().unwrap().to_owned(),
        value["error"]["message"].as_str().unwrap().to_owned(),
    )
}

fn ask(extra: Value) -> Value {
    let mut body = json!({"model": "smollm2", "max_tokens": 24, "temperature": 0,
        "system": "You are brief.",
        "messages": [{"role": "user", "content": "Name three colours."}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whole_and_streamed_is_the_same_answer() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(&dir);
    let whole = message(&p, ask(json!({}))).await;
    assert_eq!(whole["type"], "message");
    assert_eq!(whole["role"], "assistant");
    assert!(whole["id"].as_str().unwrap().starts_with("msg_"), "{whole}");
    assert_eq!(whole["content"][0]["type"], "text");
    let text = whole["content"][0]["text"].as_str().unwrap();
    assert!(!text.trim().is_empty(), "{whole}");
    let input_tokens = whole["usage"]["input_tokens"].as_u64().unwrap();
    assert!(input_tokens > 0);

    let (status, headers, bytes) = post(
        &p,
        "/v1/messages",
        &ask(json!({"stream": true})).to_string(),
        Some(KEY),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let body = String::from_utf8(bytes).unwrap();
    assert!(!body.contains("[DONE]"), "{body}");
    // Each event is named by its type.
    let names: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    let events = common::sse_events(&body);
    assert_eq!(names.len(), events.len(), "{body}");
    for (name, event) in names.iter().zip(&events) {
        assert_eq!(event["type"], *name, "{body}");
    }
    assert_eq!(names[0], "message_start");
    assert_eq!(names[1], "ping");
    assert_eq!(names[2], "content_block_start");
    assert_eq!(names[names.len() - 3], "content_block_stop");
    assert_eq!(names[names.len() - 2], "message_delta");
    assert_eq!(names[names.len() - 1], "message_stop");
    let streamed: String = events
        .iter()
        .filter(|e| e["type"] == "content_block_delta")
        .map(|e| e["delta"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(streamed, text);
    let last = &events[events.len() - 2];
    assert_eq!(last["delta"]["stop_reason"], whole["stop_reason"], "{body}");
    assert_eq!(last["usage"], whole["usage"], "{body}");

    // count_tokens counts the prompt the answer was billed for.
    let counted = json!({"model": "smollm2", "system": "You are brief.",
        "messages": [{"role": "user", "content": "Name three colours."}]});
    let (status, _, bytes) = post(
        &p,
        "/v1/messages/count_tokens",
        &counted.to_string(),
        Some(KEY),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let counted: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(counted, json!({"input_tokens": input_tokens}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_sequence_that_ends_the_answer_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(&dir);
    let count = json!({"messages": [{"role": "user",
        "content": "Count from 1 to 10, separated by commas."}], "max_tokens": 48});
    let free = message(&p, ask(count.clone())).await;
    let text = free["content"][0]["text"].as_str().unwrap().to_owned();
    assert!(text.contains('5'), "{free}");
    let mut stopped = count;
    stopped["stop_sequences"] = json!(["5"]);
    let value = message(&p, ask(stopped)).await;
    assert_eq!(value["stop_reason"], "stop_sequence", "{value}");
    assert_eq!(value["stop_sequence"], "5", "{value}");
    let cut = value["content"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with(cut) && !cut.contains('5'),
        "{cut:?} vs {text:?}"
    );
    // The model's own end of turn is not a stop sequence.
    let value = message(
        &p,
        ask(json!({"stop_sequences": ["zzzz"], "max_tokens": 200})),
    )
    .await;
    assert_eq!(value["stop_reason"], "end_turn", "{value}");
    assert_eq!(value["stop_sequence"], Value::Null, "{value}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_on_the_messages_paths_have_anthropics_shape() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(&dir);
    let body = ask(json!({})).to_string();
    // The key check: no key, a wrong key (Authorization or x-api-key alike).
    let (status, _, bytes) = post(&p, "/v1/messages", &body, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (kind, message) = anthropic_error(&bytes);
    assert_eq!(kind, "authentication_error");
    assert!(message.contains("x-api-key"), "{message}");
    let (status, _, bytes) = post(&p, "/v1/messages", &body, Some("wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(anthropic_error(&bytes).0, "authentication_error");
    // Authorization wins over x-api-key when both are sent.
    let both = Request::post("/v1/messages")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, "Bearer wrong")
        .header("x-api-key", KEY)
        .body(Body::from(body.clone()))
        .unwrap();
    let (status, _, _) = common::call(&p, both).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The door: a body that is not JSON, one that does not parse.
    let request = Request::post("/v1/messages")
        .header("x-api-key", KEY)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(body.clone()))
        .unwrap();
    let (status, _, bytes) = common::call(&p, request).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(anthropic_error(&bytes).0, "invalid_request_error");
    let (status, _, bytes) = post(&p, "/v1/messages", "{oops", Some(KEY)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(anthropic_error(&bytes).0, "invalid_request_error");
    // A missing required field, named.
    let mut missing = ask(json!({}));
    missing.as_object_mut().unwrap().remove("max_tokens");
    let (status, _, bytes) = post(&p, "/v1/messages", &missing.to_string(), Some(KEY)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (kind, message) = anthropic_error(&bytes);
    assert_eq!(kind, "invalid_request_error");
    assert!(message.contains("max_tokens"), "{message}");
    // A block a text model cannot read, named by its place.
    let image = ask(json!({"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}]}]}));
    let (status, _, bytes) = post(&p, "/v1/messages", &image.to_string(), Some(KEY)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, message) = anthropic_error(&bytes);
    assert!(message.contains("messages[0].content[0].type"), "{message}");
    // An unknown model; hearth's own code rides along.
    let unknown = ask(json!({"model": "no-such-model"}));
    let (status, _, bytes) = post(&p, "/v1/messages", &unknown.to_string(), Some(KEY)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(anthropic_error(&bytes).0, "not_found_error");
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(value["error"]["code"], "model_not_found");
    // Other paths keep OpenAI's shape.
    let chat = json!({"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, bytes) = post(&p, "/v1/chat/completions", &chat.to_string(), Some(KEY)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(value["error"]["param"], "model", "{value}");
}
