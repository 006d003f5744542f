//! Overload refuses honestly, on the real small models: a request that cannot be served in
//! time gets 503 + Retry-After before any 200, a request that can never fit gets 400 naming
//! the limit, and one key cannot hold the engine.

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::response::Response;
use hearth_core::{Config, Platform};
use hearth_gateway::keys::NewKey;
use hearth_gateway::Scope;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

#[allow(dead_code)]
use crate::common;

fn platform(edit: impl FnOnce(&mut Config)) -> (Platform, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    config.llm.context_length = 4096;
    edit(&mut config);
    let platform = Platform::open(config).unwrap();
    common::register_test_models(&platform);
    (platform, dir)
}

fn post(path: &str, body: &Value, key: Option<&str>) -> Request<Body> {
    let mut request = Request::post(path).header(header::CONTENT_TYPE, "application/json");
    if let Some(key) = key {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    request.body(Body::from(body.to_string())).unwrap()
}

/// The response as soon as the handler has answered (headers only; the body not read).
async fn respond(p: &Platform, request: Request<Body>) -> Response {
    hearth_server::router(p.clone())
        .oneshot(request)
        .await
        .unwrap()
}

async fn body_of(response: Response) -> Vec<u8> {
    response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec()
}

fn chat(stream: bool, max_tokens: u32) -> Value {
    json!({
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Count from one to ten."}],
        "max_tokens": max_tokens,
        "stream": stream,
    })
}

/// A stream that holds its sequence until it is dropped (it would generate for minutes).
async fn blocker(p: &Platform, key: Option<&str>) -> Response {
    let mut body = chat(true, 4000);
    body["ignore_eos"] = json!(true);
    let response = respond(p, post("/v1/chat/completions", &body, key)).await;
    assert_eq!(response.status(), StatusCode::OK);
    response
}

fn assert_refused(status: StatusCode, headers: &HeaderMap, bytes: &[u8], code: &str) {
    let value: Value = serde_json::from_slice(bytes)
        .unwrap_or_else(|_| panic!("{status}: {}", String::from_utf8_lossy(bytes)));
    assert_eq!(value["error"]["code"], code, "{value}");
    let retry: u64 = headers
        .get(header::RETRY_AFTER)
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_would_wait_too_long_gets_503_before_any_200() {
    let (p, _dir) = platform(|c| {
        c.llm.max_sequences = 1;
        c.llm.max_queue_wait_ms = 300;
    });
    let held = blocker(&p, None).await;
    for stream in [true, false] {
        let response = respond(&p, post("/v1/chat/completions", &chat(stream, 4), None)).await;
        let (status, headers) = (response.status(), response.headers().clone());
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "stream {stream}");
        assert_refused(status, &headers, &body_of(response).await, "overloaded");
    }
    let completion = json!({"model": "smollm2", "prompt": "Once upon a time", "max_tokens": 4});
    let response = respond(&p, post("/v1/completions", &completion, None)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    // The sequence comes free once the stream holding it is gone (at the engine's next
    // step): served again.
    drop(held);
    let mut text = String::new();
    for _ in 0..50 {
        let response = respond(&p, post("/v1/chat/completions", &chat(true, 4), None)).await;
        if response.status() == StatusCode::OK {
            text = String::from_utf8(body_of(response).await).unwrap();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_can_never_fit_get_400_naming_the_limit() {
    let (p, _dir) = platform(|c| {
        c.llm.queue_capacity = 4;
        c.embeddings.max_inputs_per_request = 3;
    });
    let prompts =
        |n: usize| json!({"model": "smollm2", "prompt": vec!["Hello"; n], "max_tokens": 2});
    let response = respond(&p, post("/v1/completions", &prompts(5), None)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let value: Value = serde_json::from_slice(&body_of(response).await).unwrap();
    assert_eq!(value["error"]["param"], "prompt", "{value}");
    assert!(
        value["error"]["message"]
            .as_str()
            .unwrap()
            .contains("queue_capacity"),
        "{value}"
    );
    let response = respond(&p, post("/v1/completions", &prompts(4), None)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let value: Value = serde_json::from_slice(&body_of(response).await).unwrap();
    assert_eq!(value["choices"].as_array().unwrap().len(), 4);

    let inputs = |n: usize| json!({"model": "minilm", "input": vec!["a kettle"; n]});
    let response = respond(&p, post("/v1/embeddings", &inputs(4), None)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let value: Value = serde_json::from_slice(&body_of(response).await).unwrap();
    assert_eq!(value["error"]["param"], "input", "{value}");
    let response = respond(&p, post("/v1/embeddings", &inputs(3), None)).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_cannot_hold_the_engine() {
    let (p, _dir) = platform(|c| c.gateway.max_concurrent_per_key = Some(1));
    let keys = p.gateway().keys().unwrap();
    let secret = |name: &str| {
        keys.create(NewKey {
            name: name.into(),
            scopes: vec![Scope::Inference],
            ..Default::default()
        })
        .unwrap()
        .0
    };
    let (greedy, other) = (secret("greedy"), secret("other"));
    let held = blocker(&p, Some(&greedy)).await;
    let response = respond(
        &p,
        post("/v1/chat/completions", &chat(false, 4), Some(&greedy)),
    )
    .await;
    let (status, headers) = (response.status(), response.headers().clone());
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let bytes = body_of(response).await;
    assert_refused(status, &headers, &bytes, "rate_limit_exceeded");
    assert!(String::from_utf8_lossy(&bytes).contains("max_concurrent_per_key"));
    // Another key is served meanwhile.
    let response = respond(
        &p,
        post("/v1/chat/completions", &chat(false, 4), Some(&other)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    // Once its stream is gone, the first key is served again.
    drop(held);
    let mut status = StatusCode::TOO_MANY_REQUESTS;
    for _ in 0..50 {
        let response = respond(
            &p,
            post("/v1/chat/completions", &chat(false, 4), Some(&greedy)),
        )
        .await;
        status = response.status();
        if status == StatusCode::OK {
            break;
        }
        // The dropped stream's reservation is settled when its relay notices.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, StatusCode::OK);
}

/// 64 and 200 concurrent streams: each one is either served whole (200, then every chunk and
/// `[DONE]`) or refused with 503 + Retry-After before any 200; none hangs or fails midway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_streams_are_served_or_refused_up_front() {
    let (p, _dir) = platform(|c| c.llm.max_queue_wait_ms = 2000);
    for n in [64, 200] {
        let calls = (0..n).map(|_| {
            let p = p.clone();
            tokio::spawn(async move {
                let response =
                    respond(&p, post("/v1/chat/completions", &chat(true, 4), None)).await;
                let (status, headers) = (response.status(), response.headers().clone());
                (status, headers, body_of(response).await)
            })
        });
        let (mut served, mut refused) = (0, 0);
        for result in futures::future::join_all(calls).await {
            let (status, headers, bytes) = result.unwrap();
            match status {
                StatusCode::OK => {
                    let text = String::from_utf8(bytes).unwrap();
                    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
                    assert!(!text.contains("\"error\""), "{text}");
                    served += 1;
                }
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert_refused(status, &headers, &bytes, "overloaded");
                    refused += 1;
                }
                other => panic!("{other}: {}", String::from_utf8_lossy(&bytes)),
            }
        }
        assert_eq!(served + refused, n);
        assert!(served >= 8, "{n} streams: only {served} served");
    }
}
