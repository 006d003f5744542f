//! The gateway end to end over HTTP: routes to upstream OpenAI-compatible endpoints (fake,
//! fault-injecting ones on real sockets, and a second hearth serving the real SmolLM2),
//! failover, retries, cool-downs, timeouts, streams cut short, the privacy policies
//! (local_only, redact with placeholders restored in the answer, allow), API keys with their
//! routes, rate limits and budgets, the usage report and the gateway's metrics.
//!
//! The front hearth is driven in-process through `router()`; every upstream listens on
//! 127.0.0.1 at a port the OS picks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures::StreamExt;
use hearth_core::{Config, Platform, StoreUrl};
use hearth_gateway::keys::NewKey;
use hearth_gateway::Scope;
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::common;

// ---------------------------------------------------------------------------------------------
// A fake, fault-injecting OpenAI-compatible upstream

/// What the fake upstream does with a chat request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Answers [`OK_TEXT`].
    Ok,
    /// Answers with the last user message's content.
    Echo,
    /// HTTP 500 with an OpenAI-shaped error.
    Fail500,
    /// HTTP 400: the request itself is refused.
    Reject400,
    /// Sleeps [`SLOW_SECONDS`] before answering (longer than the providers' timeouts).
    Slow,
    /// Streams the role chunk and two pieces of [`OK_TEXT`], then ends the body cleanly
    /// without a finish chunk or `[DONE]`.
    DropMidStream,
    /// Streams the same, then breaks the connection (the body fails).
    AbortMidStream,
    /// Streams the same, then goes quiet for [`SLOW_SECONDS`] before ending the body.
    StallMidStream,
    /// Answers [`OK_TEXT`] as one JSON body even when asked to stream.
    NeverStreams,
    /// Answers [`OK_TEXT`], reporting [`OVERREPORTED_TOKENS`] prompt and completion tokens.
    Overreport,
    /// Embeddings: one vector fewer than the inputs.
    ShortAnswer,
}

const OK_TEXT: &str = "The fake upstream says hello.";
/// The usage every answer of the fake reports.
const PROMPT_TOKENS: u64 = 100;
const COMPLETION_TOKENS: u64 = 50;
const SLOW_SECONDS: u64 = 5;
/// The usage [`Mode::Overreport`] claims, each way.
const OVERREPORTED_TOKENS: u64 = 1_000_000;

#[derive(Clone)]
struct Fake {
    /// Base URL including `/v1`.
    url: String,
    mode: Arc<Mutex<Mode>>,
    hits: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<Value>>>,
    /// The `Authorization` header of every request.
    auth: Arc<Mutex<Vec<Option<String>>>>,
}

impl Fake {
    async fn start(mode: Mode) -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = Fake {
            url: format!("http://{}/v1", listener.local_addr().unwrap()),
            mode: Arc::new(Mutex::new(mode)),
            hits: Arc::default(),
            bodies: Arc::default(),
            auth: Arc::default(),
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(fake_chat))
            .route("/v1/completions", post(fake_completions))
            .route("/v1/embeddings", post(fake_embeddings))
            .route("/v1/rerank", post(fake_rerank))
            .route("/v1/score", post(fake_score))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }

    fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

fn last_user_text(body: &Value) -> String {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let Some(last) = messages.iter().rev().find(|m| m["role"] == "user") else {
        return String::new();
    };
    match &last["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// `text` in pieces of three characters, so that placeholders arrive split across chunks.
fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(3).map(|c| c.iter().collect()).collect()
}

fn usage_json(mode: Mode) -> Value {
    let (p, c) = if mode == Mode::Overreport {
        (OVERREPORTED_TOKENS, OVERREPORTED_TOKENS)
    } else {
        (PROMPT_TOKENS, COMPLETION_TOKENS)
    };
    json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})
}

fn chunk(model: &str, delta: Value, finish: Option<&str>, usage: Option<Value>) -> String {
    let mut c = json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}],
    });
    if let Some(u) = usage {
        c["usage"] = u;
    }
    c.to_string()
}

async fn fake_chat(State(fake): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    fake.hits.fetch_add(1, Ordering::SeqCst);
    fake.auth.lock().unwrap().push(
        headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap().to_owned()),
    );
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    fake.bodies.lock().unwrap().push(body.clone());
    let mode = *fake.mode.lock().unwrap();
    let model = body["model"].as_str().unwrap_or("fake").to_owned();
    let text = match mode {
        Mode::Echo => last_user_text(&body),
        _ => OK_TEXT.to_owned(),
    };
    match mode {
        Mode::Fail500 => return (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(
                json!({"error": {"message": "the fake upstream failed", "type": "server_error"}}),
            ),
        )
            .into_response(),
        Mode::Reject400 => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": {"message": "the fake upstream refuses this", "type": "invalid_request_error"}})),
            )
                .into_response()
        }
        Mode::Slow => tokio::time::sleep(Duration::from_secs(SLOW_SECONDS)).await,
        _ => {}
    }
    if body["stream"] != true || mode == Mode::NeverStreams {
        return axum::Json(json!({
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "logprobs": null,
            }],
            "usage": usage_json(mode),
        }))
        .into_response();
    }
    let include_usage = body["stream_options"]["include_usage"] == true;
    let null_usage = include_usage.then_some(Value::Null);
    let mut events = vec![chunk(
        &model,
        json!({"role": "assistant", "content": ""}),
        None,
        null_usage.clone(),
    )];
    let cut = matches!(
        mode,
        Mode::DropMidStream | Mode::AbortMidStream | Mode::StallMidStream
    );
    let parts = pieces(&text);
    let parts = if cut { parts[..2].to_vec() } else { parts };
    for piece in parts {
        events.push(chunk(
            &model,
            json!({ "content": piece }),
            None,
            null_usage.clone(),
        ));
    }
    if !cut {
        events.push(chunk(&model, json!({}), Some("stop"), null_usage.clone()));
        if include_usage {
            events.push(
                json!({
                    "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0,
                    "model": model, "choices": [], "usage": usage_json(mode),
                })
                .to_string(),
            );
        }
        events.push("[DONE]".to_owned());
    }
    let mut items: Vec<Result<Bytes, std::io::Error>> = events
        .into_iter()
        .map(|e| Ok(Bytes::from(format!("data: {e}\n\n"))))
        .collect();
    if mode == Mode::AbortMidStream {
        items.push(Err(std::io::Error::other(
            "the fake upstream cut the stream",
        )));
    }
    // A stalling stream goes quiet before a last, empty piece.
    let stall_at = (mode == Mode::StallMidStream).then(|| {
        items.push(Ok(Bytes::new()));
        items.len() - 1
    });
    let stream =
        futures::stream::iter(items.into_iter().enumerate()).then(move |(i, item)| async move {
            if item.is_err() {
                // Let the chunks before it reach the client before the connection breaks.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if stall_at == Some(i) {
                tokio::time::sleep(Duration::from_secs(SLOW_SECONDS)).await;
            }
            item
        });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// Records a JSON endpoint's request; answers its failure modes. `None`: go on and answer.
fn fake_json_call(fake: &Fake, body: &Bytes) -> (Value, Option<Response>) {
    fake.hits.fetch_add(1, Ordering::SeqCst);
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    fake.bodies.lock().unwrap().push(body.clone());
    let failure = match *fake.mode.lock().unwrap() {
        Mode::Fail500 => Some(StatusCode::INTERNAL_SERVER_ERROR),
        Mode::Reject400 => Some(StatusCode::BAD_REQUEST),
        _ => None,
    };
    let failure = failure.map(|status| {
        (
            status,
            axum::Json(
                json!({"error": {"message": "the fake upstream fails this", "type": "error"}}),
            ),
        )
            .into_response()
    });
    (body, failure)
}

/// OpenAI's text completion: each prompt echoed back in [`Mode::Echo`], else [`OK_TEXT`]; a
/// stream of three-character pieces with usage last when asked.
async fn fake_completions(State(fake): State<Fake>, body: Bytes) -> Response {
    let (body, failure) = fake_json_call(&fake, &body);
    if let Some(failure) = failure {
        return failure;
    }
    let mode = *fake.mode.lock().unwrap();
    let prompts: Vec<String> = match &body["prompt"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().map(|p| p.to_string()).collect(),
        _ => Vec::new(),
    };
    let text_of = |prompt: &String| match mode {
        Mode::Echo => prompt.trim_matches('"').to_owned(),
        _ => OK_TEXT.to_owned(),
    };
    let model = body["model"].clone();
    if body["stream"] != true {
        return axum::Json(json!({
            "id": "cmpl-fake", "object": "text_completion", "created": 0, "model": model,
            "choices": prompts.iter().enumerate().map(|(i, p)| json!({
                "index": i, "text": text_of(p), "finish_reason": "length", "logprobs": null,
            })).collect::<Vec<_>>(),
            "usage": usage_json(mode),
        }))
        .into_response();
    }
    let text = text_of(&prompts[0]);
    let mut events: Vec<String> = pieces(&text)
        .into_iter()
        .map(|piece| {
            json!({"id": "cmpl-fake", "object": "text_completion", "created": 0, "model": model,
                "choices": [{"index": 0, "text": piece, "finish_reason": null, "logprobs": null}]})
            .to_string()
        })
        .collect();
    events.push(
        json!({"id": "cmpl-fake", "object": "text_completion", "created": 0, "model": model,
            "choices": [{"index": 0, "text": "", "finish_reason": "stop", "logprobs": null}]})
        .to_string(),
    );
    if body["stream_options"]["include_usage"] == true {
        events.push(
            json!({"id": "cmpl-fake", "object": "text_completion", "created": 0, "model": model,
                "choices": [], "usage": usage_json(mode)})
            .to_string(),
        );
    }
    events.push("[DONE]".to_owned());
    let items: Vec<Result<Bytes, std::io::Error>> = events
        .into_iter()
        .map(|e| Ok(Bytes::from(format!("data: {e}\n\n"))))
        .collect();
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(futures::stream::iter(items)))
        .unwrap()
}

/// OpenAI's embeddings answer: for each input text, [its length in characters, 1, 0].
async fn fake_embeddings(State(fake): State<Fake>, body: Bytes) -> Response {
    let (body, failure) = fake_json_call(&fake, &body);
    if let Some(failure) = failure {
        return failure;
    }
    let texts: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|t| t.as_str().unwrap_or("").to_owned())
            .collect(),
        _ => Vec::new(),
    };
    let texts = if *fake.mode.lock().unwrap() == Mode::ShortAnswer {
        texts[1..].to_vec()
    } else {
        texts
    };
    axum::Json(json!({
        "object": "list",
        "model": body["model"],
        "data": texts.iter().enumerate().map(|(i, t)| json!({
            "object": "embedding", "index": i, "embedding": [t.chars().count() as f64, 1.0, 0.0],
        })).collect::<Vec<_>>(),
        "usage": {"prompt_tokens": PROMPT_TOKENS, "total_tokens": PROMPT_TOKENS},
    }))
    .into_response()
}

/// Jina's rerank answer: a document's score is the share of the query's words it holds; the
/// results best first, only `top_n` of them when asked.
async fn fake_rerank(State(fake): State<Fake>, body: Bytes) -> Response {
    let (body, failure) = fake_json_call(&fake, &body);
    if let Some(failure) = failure {
        return failure;
    }
    let query: Vec<String> = body["query"]
        .as_str()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_lowercase)
        .collect();
    let mut results: Vec<(usize, f64)> = body["documents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let text = d
                .as_str()
                .or(d["text"].as_str())
                .unwrap_or("")
                .to_lowercase();
            let shared = query.iter().filter(|w| text.contains(w.as_str())).count();
            (i, shared as f64 / query.len().max(1) as f64)
        })
        .collect();
    results.sort_by(|a, b| b.1.total_cmp(&a.1));
    if let Some(n) = body["top_n"].as_u64() {
        results.truncate(n as usize);
    }
    axum::Json(json!({
        "model": body["model"],
        "results": results.iter().map(|(i, s)| json!({"index": i, "relevance_score": s})).collect::<Vec<_>>(),
        "usage": {"total_tokens": PROMPT_TOKENS},
    }))
    .into_response()
}

/// The share of `query`'s words that `text` holds (the fake's relevance).
fn shared_words(query: &str, text: &str) -> f64 {
    let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    let text = text.to_lowercase();
    let shared = words.iter().filter(|w| text.contains(w.as_str())).count();
    shared as f64 / words.len().max(1) as f64
}

/// vLLM's `/score` answer: pair by pair, the share of `text_1[i]`'s words in `text_2[i]`.
async fn fake_score(State(fake): State<Fake>, body: Bytes) -> Response {
    let (body, failure) = fake_json_call(&fake, &body);
    if let Some(failure) = failure {
        return failure;
    }
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|t| t.as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_else(|| vec![v.as_str().unwrap_or("").to_owned()])
    };
    let (queries, texts) = (list(&body["text_1"]), list(&body["text_2"]));
    axum::Json(json!({
        "object": "list", "model": body["model"],
        "data": queries.iter().zip(&texts).enumerate().map(|(i, (q, t))| json!({
            "index": i, "object": "score", "score": shared_words(q, t),
        })).collect::<Vec<_>>(),
        "usage": {"prompt_tokens": PROMPT_TOKENS, "total_tokens": PROMPT_TOKENS},
    }))
    .into_response()
}

// ---------------------------------------------------------------------------------------------
// The front hearth

/// A platform on a fresh data directory with `toml` as its hearth.toml.
fn open(toml: &str) -> (Platform, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::from_toml(toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    config.data_dir = dir.path().to_owned();
    config.store.url = hearth_testdata::test_store_url(dir.path()).map(StoreUrl::new);
    match Platform::open(config) {
        Ok(platform) => (platform, dir),
        Err(e) => panic!("Platform::open: {e}\n{toml}"),
    }
}

fn provider(name: &str, url: &str, timeout_seconds: f64) -> String {
    format!(
        "[[gateway.providers]]\nname = \"{name}\"\nbase_url = \"{url}\"\ntimeout_seconds = {timeout_seconds:?}\n"
    )
}

/// A route; `deployments` as TOML inline tables, e.g. `{ provider = "a", model = "m" }`.
fn route(alias: &str, privacy: &str, deployments: &[&str]) -> String {
    format!(
        "[[gateway.routes]]\nalias = \"{alias}\"\nprivacy = \"{privacy}\"\ndeployments = [{}]\n",
        deployments.join(", ")
    )
}

fn chat_body(model: &str, content: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "stream": stream,
    })
}

fn post_json(path: &str, body: &Value, key: Option<&str>) -> Request<Body> {
    let mut request = Request::post(path).header(header::CONTENT_TYPE, "application/json");
    if let Some(key) = key {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    request.body(Body::from(body.to_string())).unwrap()
}

async fn chat(
    platform: &Platform,
    body: &Value,
    key: Option<&str>,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    common::call(platform, post_json("/v1/chat/completions", body, key)).await
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(bytes)))
}

/// The answer of a non-streaming chat that must have succeeded.
async fn answer(platform: &Platform, body: &Value) -> String {
    let (status, _, bytes) = chat(platform, body, None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    json_of(&bytes)["choices"][0]["message"]["content"]
        .as_str()
        .expect("a text answer")
        .to_owned()
}

/// The `data:` payloads of an SSE body, in order.
fn sse_data(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

/// The streamed text: every chunk's `delta.content`, concatenated.
fn sse_text(data: &[String]) -> String {
    data.iter()
        .filter(|d| d.as_str() != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// The answer of a streaming chat that must have succeeded and ended properly.
async fn streamed(platform: &Platform, body: &Value) -> String {
    let (status, headers, bytes) = chat(platform, body, None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let data = sse_data(&bytes);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    assert!(
        !data.iter().any(|d| d.contains("\"error\"")),
        "an error event in {data:?}"
    );
    assert!(
        data.iter()
            .any(|d| d.contains("\"finish_reason\":\"stop\"")),
        "no finish chunk in {data:?}"
    );
    sse_text(&data)
}

async fn get(platform: &Platform, path: &str, key: Option<&str>) -> (StatusCode, Vec<u8>) {
    let mut request = Request::get(path);
    if let Some(key) = key {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let (status, _, bytes) = common::call(platform, request.body(Body::empty()).unwrap()).await;
    (status, bytes)
}

async fn usage(platform: &Platform, query: &str) -> Value {
    usage_as(platform, query, None).await
}

async fn usage_as(platform: &Platform, query: &str, key: Option<&str>) -> Value {
    let (status, bytes) = get(platform, &format!("/v1/usage?{query}"), key).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    json_of(&bytes)
}

fn row<'a>(report: &'a Value, group: &str) -> &'a Value {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == group)
        .unwrap_or_else(|| panic!("no row '{group}' in {report:#}"))
}

async fn metrics_text(platform: &Platform, key: Option<&str>) -> String {
    let (status, bytes) = get(platform, "/metrics", key).await;
    assert_eq!(status, StatusCode::OK);
    String::from_utf8(bytes).unwrap()
}

/// The value of the sample `series` (name and labels exactly as exposed), if present.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

fn assert_close(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= 1e-12 + 1e-9 * expected.abs(),
        "{what}: {actual} != {expected}"
    );
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn audit(platform: &Platform) -> Vec<hearth_gateway::ledger::AuditRecord> {
    let ledger = platform.gateway().ledger().unwrap();
    ledger.flush();
    hearth_gateway::ledger::audit_log(ledger.database(), 1000).unwrap()
}

/// An integer from the usage ledger's table.
fn ledger_sum(platform: &Platform, sql: &str) -> i64 {
    let ledger = platform.gateway().ledger().unwrap();
    ledger.flush();
    ledger
        .database()
        .query_one(sql, hearth_store::params![], |r| r.get(0))
        .unwrap()
        .expect("an aggregate answers one row")
}

fn retry_after(headers: &HeaderMap) -> u64 {
    headers
        .get(header::RETRY_AFTER)
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

fn alnum_upper(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A real upstream: a second hearth serving SmolLM2

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_hearth_serves_a_remote_route_with_real_text_metered_and_audited() {
    // The upstream: a second hearth on a socket with the real model.
    let second_dir = tempfile::tempdir().unwrap();
    let mut second_config = Config {
        data_dir: second_dir.path().to_owned(),
        ..Default::default()
    };
    second_config.llm.threads = Some(1);
    let second = Platform::open(second_config).unwrap_or_else(|e| panic!("{e}"));
    common::register_test_models(&second);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let second_url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(hearth_server::serve(
        listener,
        second.clone(),
        std::future::pending(),
    ));
    // A fake upstream that only another route uses: the local_only route must never reach it.
    let fake = Fake::start(Mode::Ok).await;

    let toml = format!(
        "[llm]\nthreads = 1\n[gateway]\n{}{}{}{}{}",
        provider("second", &second_url, 120.0),
        provider("fake", &fake.url, 10.0),
        route(
            "remote",
            "redact",
            &[r#"{ provider = "second", model = "smollm2", price = "gpt-4o-mini" }"#]
        ),
        route(
            "elsewhere",
            "allow",
            &[r#"{ provider = "fake", model = "m" }"#]
        ),
        route(
            "private",
            "local_only",
            &[r#"{ provider = "local", model = "smollm2" }"#]
        ),
    );
    let (front, _dir) = open(&toml);
    common::register_test_models(&front);

    let question = |model: &str, stream: bool| {
        let mut body = chat_body(model, "Say hello in one short sentence.", stream);
        body["max_tokens"] = json!(16);
        body["temperature"] = json!(0.0);
        if stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        body
    };

    // Non-streaming through the front: real text, named by the route.
    let (status, _, bytes) = chat(&front, &question("remote", false), None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let value = json_of(&bytes);
    assert_eq!(value["model"], "remote");
    let text = value["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!text.trim().is_empty(), "empty answer: {value}");
    let completion = value["usage"]["completion_tokens"].as_u64().unwrap();
    assert!((1..=16).contains(&completion), "{value}");
    assert!(value["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    // Streaming through the front: real text in chunks, the usage chunk, [DONE].
    let (status, _, bytes) = chat(&front, &question("remote", true), None).await;
    assert_eq!(status, StatusCode::OK);
    let data = sse_data(&bytes);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    assert!(!data.iter().any(|d| d.contains("\"error\"")), "{data:?}");
    let streamed_text = sse_text(&data);
    assert!(!streamed_text.trim().is_empty(), "{data:?}");
    let chunks_with_text = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        })
        .count();
    assert!(chunks_with_text > 1, "not streamed in pieces: {data:?}");
    let usage_chunk = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|v| {
            v["usage"]["completion_tokens"]
                .as_u64()
                .is_some_and(|n| n > 0)
        })
        .unwrap_or_else(|| panic!("no usage chunk in {data:?}"));
    assert_eq!(usage_chunk["model"], "remote");

    // The local_only route runs on this machine's engine and never reaches an upstream.
    let local = answer(&front, &question("private", false)).await;
    assert!(!local.trim().is_empty());
    assert_eq!(fake.hits(), 0, "a local_only request left the machine");

    // The usage report prices the upstream tokens from the table.
    let report = usage(&front, "by=route").await;
    let remote = row(&report, "remote");
    assert_eq!(remote["requests"], 2, "{report:#}");
    assert_eq!(remote["errors"], 0);
    assert_eq!(remote["local_requests"], 0);
    assert_eq!(remote["unpriced_requests"], 0);
    assert!(remote["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(remote["completion_tokens"].as_u64().unwrap() > 0);
    let (p, c) = (
        remote["prompt_tokens"].as_u64().unwrap() as f64,
        remote["completion_tokens"].as_u64().unwrap() as f64,
    );
    // gpt-4o-mini: $0.15 in, $0.60 out per 1M tokens.
    assert!(f(&remote["cost"]) > 0.0);
    assert_close(
        f(&remote["cost"]),
        (p * 0.15 + c * 0.60) / 1e6,
        "remote cost",
    );
    let private = row(&report, "private");
    assert_eq!(
        (
            private["requests"].as_u64(),
            private["local_requests"].as_u64()
        ),
        (Some(1), Some(1))
    );
    // The second hearth saw the calls under the model's own name.
    let seen = usage(&second, "by=route").await;
    assert_eq!(row(&seen, "smollm2")["requests"], 2, "{seen:#}");

    // The audit log has both upstream calls, counts only; the local one is not audited.
    let records = audit(&front);
    assert_eq!(records.len(), 2, "{records:#?}");
    for r in &records {
        assert_eq!(r.route, "remote");
        assert_eq!(r.deployment, "second/smollm2");
        assert_eq!(r.model, "smollm2");
        assert_eq!(r.privacy, "redact");
        assert_eq!(r.outcome, "ok");
        assert!(r.prompt_tokens > 0 && r.completion_tokens > 0, "{r:?}");
        assert!(r.raw_request.is_none() && r.raw_answer.is_none());
    }
}

// ---------------------------------------------------------------------------------------------
// Failover, cool-down, timeouts, retries, streams cut short

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_answers_from_the_next_deployment_and_counts_the_fallback() {
    let bad = Fake::start(Mode::Fail500).await;
    let ok = Fake::start(Mode::Ok).await;
    let toml = format!(
        "[gateway]\nattempts = 1\nfailures_before_cooldown = 100\n{}{}{}",
        provider("bad", &bad.url, 10.0),
        provider("ok", &ok.url, 10.0),
        route(
            "fo",
            "allow",
            &[
                r#"{ provider = "bad", model = "m" }"#,
                r#"{ provider = "ok", model = "m" }"#
            ]
        ),
    );
    let (p, _dir) = open(&toml);
    assert_eq!(answer(&p, &chat_body("fo", "hi", false)).await, OK_TEXT);
    assert_eq!((bad.hits(), ok.hits()), (1, 1));
    // Streaming fails over too (the failure comes before the stream starts).
    assert_eq!(streamed(&p, &chat_body("fo", "hi", true)).await, OK_TEXT);
    assert_eq!((bad.hits(), ok.hits()), (2, 2));

    let text = metrics_text(&p, None).await;
    let labels = r#"{route="fo",deployment="bad/m"}"#;
    assert_eq!(
        metric(&text, &format!("hearth_gateway_fallbacks_total{labels}")),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            &format!("hearth_gateway_deployment_errors_total{labels}")
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &text,
            r#"hearth_gateway_requests_total{route="fo",deployment="ok/m",outcome="ok"}"#
        ),
        Some(2.0)
    );
    // The ledger row of each request says one deployment failed before the one that answered.
    assert_eq!(
        ledger_sum(
            &p,
            "SELECT SUM(fallbacks) FROM gateway_usage WHERE deployment = 'ok/m'"
        ),
        2
    );
    let report = usage(&p, "by=deployment").await;
    assert_eq!(row(&report, "ok/m")["requests"], 2);
    assert!(!report.to_string().contains("bad/m"), "{report:#}");
    // The failed calls are in the audit log.
    let failed: Vec<_> = audit(&p)
        .into_iter()
        .filter(|r| r.deployment == "bad/m")
        .collect();
    assert_eq!(failed.len(), 2);
    assert!(failed[0].outcome.starts_with("failed:") && failed[0].outcome.contains("500"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_deployment_cools_down_and_is_not_called_again() {
    let bad = Fake::start(Mode::Fail500).await;
    let ok = Fake::start(Mode::Ok).await;
    let toml = format!(
        "[gateway]\nattempts = 1\nfailures_before_cooldown = 1\ncooldown_seconds = 60\n{}{}{}",
        provider("bad", &bad.url, 10.0),
        provider("ok", &ok.url, 10.0),
        route(
            "cool",
            "allow",
            &[
                r#"{ provider = "bad", model = "m" }"#,
                r#"{ provider = "ok", model = "m" }"#
            ]
        ),
    );
    let (p, _dir) = open(&toml);
    assert_eq!(answer(&p, &chat_body("cool", "one", false)).await, OK_TEXT);
    assert_eq!((bad.hits(), ok.hits()), (1, 1));
    for n in 2..=4 {
        assert_eq!(
            answer(&p, &chat_body("cool", "again", false)).await,
            OK_TEXT
        );
        assert_eq!(
            (bad.hits(), ok.hits()),
            (1, n),
            "the cooling deployment was called"
        );
    }
    // Only the first request needed a fallback.
    let text = metrics_text(&p, None).await;
    assert_eq!(
        metric(
            &text,
            r#"hearth_gateway_fallbacks_total{route="cool",deployment="bad/m"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_times_out_and_the_route_fails_over() {
    let slow = Fake::start(Mode::Slow).await;
    let ok = Fake::start(Mode::Ok).await;
    let toml = format!(
        "[gateway]\nattempts = 1\nfailures_before_cooldown = 100\n{}{}{}",
        provider("slow", &slow.url, 0.3),
        provider("ok", &ok.url, 10.0),
        route(
            "t",
            "allow",
            &[
                r#"{ provider = "slow", model = "m" }"#,
                r#"{ provider = "ok", model = "m" }"#
            ]
        ),
    );
    let (p, _dir) = open(&toml);
    let started = std::time::Instant::now();
    assert_eq!(answer(&p, &chat_body("t", "hi", false)).await, OK_TEXT);
    assert_eq!(streamed(&p, &chat_body("t", "hi", true)).await, OK_TEXT);
    // Both requests reached the slow upstream and were given up on: the answers came
    // before it would have answered even once.
    assert!(started.elapsed() < Duration::from_secs(SLOW_SECONDS));
    assert_eq!((slow.hits(), ok.hits()), (2, 2));
    let timed_out: Vec<_> = audit(&p)
        .into_iter()
        .filter(|r| r.deployment == "slow/m")
        .collect();
    assert_eq!(timed_out.len(), 2);
    assert!(
        timed_out
            .iter()
            .all(|r| r.outcome.contains("no answer within")),
        "{timed_out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_back_off_then_the_client_gets_503_with_retry_after() {
    let bad = Fake::start(Mode::Fail500).await;
    let toml = format!(
        "[gateway]\nattempts = 3\nretry_backoff_ms = 50\nfailures_before_cooldown = 100\n{}{}",
        provider("bad", &bad.url, 10.0),
        route("r", "allow", &[r#"{ provider = "bad", model = "m" }"#]),
    );
    let (p, _dir) = open(&toml);
    let started = std::time::Instant::now();
    let (status, headers, bytes) = chat(&p, &chat_body("r", "hi", false), None).await;
    // Two pauses: 50 ms, then twice that.
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(bad.hits(), 3);
    let value = json_of(&bytes);
    assert_eq!(value["error"]["code"], "no_deployment_available");
    assert!(value["error"]["message"]
        .as_str()
        .unwrap()
        .contains("bad/m"));
    assert!(retry_after(&headers) >= 1);
    assert_eq!(
        metric(
            &metrics_text(&p, None).await,
            r#"hearth_gateway_deployment_errors_total{route="r",deployment="bad/m"}"#
        ),
        Some(3.0)
    );
    // The failed request is in the ledger too: an error, nothing spent.
    let report = serde_json::to_value(
        p.gateway()
            .usage_report(None, None, hearth_gateway::ledger::GroupBy::Route, None)
            .unwrap(),
    )
    .unwrap();
    let r = row(&report, "r");
    assert_eq!(
        (r["requests"].as_u64(), r["errors"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(r["cost"].as_f64(), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooling_route_says_when_to_retry() {
    let bad = Fake::start(Mode::Fail500).await;
    let toml = format!(
        "[gateway]\nattempts = 3\nretry_backoff_ms = 1\nfailures_before_cooldown = 3\ncooldown_seconds = 60\n{}{}",
        provider("bad", &bad.url, 10.0),
        route("r", "allow", &[r#"{ provider = "bad", model = "m" }"#]),
    );
    let (p, _dir) = open(&toml);
    let (status, headers, _) = chat(&p, &chat_body("r", "hi", false), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(bad.hits(), 3);
    // The third failure took the deployment out for 60 s: that is the wait.
    assert!((50..=60).contains(&retry_after(&headers)), "{headers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_refusing_the_request_is_not_retried_anywhere() {
    let rejecting = Fake::start(Mode::Reject400).await;
    let ok = Fake::start(Mode::Ok).await;
    let toml = format!(
        "[gateway]\nattempts = 3\nretry_backoff_ms = 1\n{}{}{}",
        provider("rejecting", &rejecting.url, 10.0),
        provider("ok", &ok.url, 10.0),
        route(
            "r",
            "allow",
            &[
                r#"{ provider = "rejecting", model = "m" }"#,
                r#"{ provider = "ok", model = "m" }"#
            ]
        ),
    );
    let (p, _dir) = open(&toml);
    let (status, _, bytes) = chat(&p, &chat_body("r", "hi", false), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let value = json_of(&bytes);
    assert_eq!(value["error"]["code"], "upstream_rejected");
    let message = value["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("rejecting/m") && message.contains("the fake upstream refuses this"),
        "{message}"
    );
    // Another deployment would refuse it too: no retry, no failover.
    assert_eq!((rejecting.hits(), ok.hits()), (1, 0));
}

/// The door checks every request the same way, wherever its route goes: a parameter out of
/// range is refused before anything is sent upstream, with the field named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_upstream_routes_are_checked_at_the_door() {
    let upstream = Fake::start(Mode::Ok).await;
    let toml = format!(
        "[gateway]\n{}{}",
        provider("up", &upstream.url, 10.0),
        route("r", "allow", &[r#"{ provider = "up", model = "m" }"#]),
    );
    let (p, _dir) = open(&toml);
    let cases = [
        ("temperature", json!(5.0)),
        ("top_p", json!(0.0)),
        ("presence_penalty", json!(-3.0)),
        ("frequency_penalty", json!(2.5)),
        ("max_tokens", json!(0)),
        ("stop", json!(["a", "b", "c", "d", "e"])),
        ("n", json!(2)),
        ("tool_choice", json!("required")),
        ("response_format", json!({"type": "yaml"})),
    ];
    for (field, value) in cases {
        let mut body = chat_body("r", "hi", false);
        body[field] = value;
        let (status, _, bytes) = chat(&p, &body, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}");
        let error = &json_of(&bytes)["error"];
        assert_eq!(error["code"], "invalid_request", "{field}: {error}");
        let param = error["param"].as_str().unwrap_or_default();
        assert!(
            param.starts_with(field) || (field == "tool_choice" && param == "tools"),
            "{field}: {error}"
        );
    }
    let mut body = chat_body("r", "hi", false);
    body["messages"][0]["role"] = json!("wizard");
    let (status, _, bytes) = chat(&p, &body, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json_of(&bytes)["error"]["param"], "messages[0].role");
    assert_eq!(upstream.hits(), 0, "nothing invalid went upstream");

    // In range, the same request goes through.
    let mut body = chat_body("r", "hi", false);
    body["temperature"] = json!(0.7);
    assert_eq!(answer(&p, &body).await, OK_TEXT);
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balance_takes_the_deployments_in_turn() {
    let one = Fake::start(Mode::Ok).await;
    let two = Fake::start(Mode::Ok).await;
    let toml = format!(
        "[gateway]\n{}{}{}strategy = \"balance\"\n",
        provider("one", &one.url, 10.0),
        provider("two", &two.url, 10.0),
        route(
            "b",
            "allow",
            &[
                r#"{ provider = "one", model = "m" }"#,
                r#"{ provider = "two", model = "m" }"#
            ]
        ),
    );
    let (p, _dir) = open(&toml);
    for n in 1..=3 {
        assert_eq!(answer(&p, &chat_body("b", "hi", false)).await, OK_TEXT);
        assert_eq!(answer(&p, &chat_body("b", "hi", false)).await, OK_TEXT);
        assert_eq!((one.hits(), two.hits()), (n, n));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_providers_key_goes_upstream_and_the_clients_key_does_not() {
    let fake = Fake::start(Mode::Ok).await;
    let var = format!("HEARTH_GATEWAY_TEST_KEY_{}", std::process::id());
    let toml = format!(
        "[gateway]\n{}api_key_env = \"{var}\"\n{}",
        provider("keyed", &fake.url, 10.0),
        route("k", "allow", &[r#"{ provider = "keyed", model = "m" }"#]),
    );
    // Checked at start: a missing variable is a config error that names it.
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::from_toml(&toml).unwrap();
    config.data_dir = dir.path().to_owned();
    config.store.url = hearth_testdata::test_store_url(dir.path()).map(StoreUrl::new);
    match Platform::open(config) {
        Ok(_) => panic!("a provider without its key was accepted"),
        Err(e) => assert!(e.to_string().contains(&var), "{e}"),
    }
    std::env::set_var(&var, "sk-upstream-secret");
    let (p, _dir) = open(&toml);
    let client_key = create_key(
        &p,
        NewKey {
            name: "client".into(),
            ..Default::default()
        },
    );
    let (status, _, _) = chat(&p, &chat_body("k", "hi", false), Some(&client_key)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        fake.auth.lock().unwrap().clone(),
        vec![Some("Bearer sk-upstream-secret".to_owned())]
    );
    assert!(!fake.bodies()[0].to_string().contains(&client_key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_midway_ends_with_an_error_event_then_done() {
    let dropping = Fake::start(Mode::DropMidStream).await;
    let aborting = Fake::start(Mode::AbortMidStream).await;
    let stalling = Fake::start(Mode::StallMidStream).await;
    let toml = format!(
        "[gateway]\nattempts = 1\n{}{}{}{}{}{}",
        provider("dropping", &dropping.url, 10.0),
        provider("aborting", &aborting.url, 10.0),
        provider("stalling", &stalling.url, 0.3),
        route("d", "allow", &[r#"{ provider = "dropping", model = "m" }"#]),
        route("a", "allow", &[r#"{ provider = "aborting", model = "m" }"#]),
        route("s", "allow", &[r#"{ provider = "stalling", model = "m" }"#]),
    );
    let (p, _dir) = open(&toml);
    let sent: String = pieces(OK_TEXT)[..2].concat();
    let started = std::time::Instant::now();
    for (alias, exact) in [("d", true), ("a", false), ("s", true)] {
        let (status, _, bytes) = chat(&p, &chat_body(alias, "hi", true), None).await;
        assert_eq!(status, StatusCode::OK);
        let data = sse_data(&bytes);
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
        let error: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
        assert_eq!(error["error"]["code"], "upstream_error", "{data:?}");
        assert!(
            !data
                .iter()
                .any(|d| d.contains("\"finish_reason\":\"stop\"")),
            "{data:?}"
        );
        let text = sse_text(&data);
        if exact {
            // Every chunk the upstream sent reached the client before the error.
            assert_eq!(text, sent, "{data:?}");
        } else {
            assert!(sent.starts_with(&text), "{text:?} is not what was sent");
        }
    }
    // The stalled stream was given up on after the provider's timeout, not waited out.
    assert!(started.elapsed() < Duration::from_secs(SLOW_SECONDS));
    // Both are in the ledger as errors.
    let report = usage(&p, "by=route").await;
    assert_eq!(row(&report, "d")["errors"], 1);
    assert_eq!(row(&report, "a")["errors"], 1);
    assert_eq!(row(&report, "s")["errors"], 1);
    let text = metrics_text(&p, None).await;
    assert_eq!(
        metric(
            &text,
            r#"hearth_gateway_requests_total{route="d",deployment="dropping/m",outcome="error"}"#
        ),
        Some(1.0)
    );
}

// ---------------------------------------------------------------------------------------------
// Privacy

#[test]
fn a_local_only_route_with_an_upstream_deployment_is_refused_at_start() {
    let toml = format!(
        "[gateway]\n{}{}",
        provider("cloud", "http://127.0.0.1:9/v1", 10.0),
        route(
            "secret",
            "local_only",
            &[
                r#"{ provider = "local", model = "smollm2" }"#,
                r#"{ provider = "cloud", model = "gpt-4o" }"#
            ]
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::from_toml(&toml).unwrap();
    config.data_dir = dir.path().to_owned();
    let message = match Platform::open(config) {
        Ok(_) => panic!("a local_only route with an upstream deployment was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(message.contains("local_only"), "{message}");
    assert!(message.contains("'secret'"), "{message}");
    assert!(message.contains("cloud"), "{message}");
}

const EMAILS: [&str; 2] = ["jane.doe@example.com", "J.Smith+orders@Mail.Example.co.uk"];
const PHONES: [&str; 3] = ["+44 20 7946 0958", "(415) 555-2671", "+1-212-555-0147"];
const CARDS: [&str; 3] = [
    "4111 1111 1111 1111",
    "5500-0000-0000-0004",
    "378282246310005",
];
const IBANS: [&str; 2] = ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432"];
const IPS: [&str; 3] = [
    "192.168.1.10",
    "2001:db8::8a2e:370:7334",
    "fe80::1ff:fe23:4567:890a",
];
const NAME: &str = "Alice Johnson";
const ADDRESS: &str = "221B Baker Street, London";

fn corpus() -> Vec<String> {
    vec![
        format!(
            "Hi, I'm {NAME}. Mail me at {} or {}, call {} or {}.",
            EMAILS[0], EMAILS[1], PHONES[0], PHONES[1]
        ),
        format!(
            "Charge my card {} (backup {}, Amex {}) and refund to {} or {}.",
            CARDS[0], CARDS[1], CARDS[2], IBANS[0], IBANS[1]
        ),
        format!(
            "Ship to {ADDRESS}. The login came from {} and [{}], later {}; my phone is {}.",
            IPS[0], IPS[1], IPS[2], PHONES[2]
        ),
        format!(
            "Everything at once: {NAME}, {ADDRESS}, {}, {}, {}, {}, {}. Thanks!",
            EMAILS[0], PHONES[0], CARDS[0], IBANS[0], IPS[0]
        ),
    ]
}

/// Every original of the corpus, with the forms it must not leave in either.
fn originals() -> Vec<String> {
    let mut out: Vec<String> = EMAILS
        .iter()
        .chain(&PHONES)
        .chain(&CARDS)
        .chain(&IBANS)
        .chain(&IPS)
        .map(|s| s.to_string())
        .collect();
    out.extend([
        NAME.to_owned(),
        ADDRESS.to_owned(),
        "Alice".into(),
        "Baker Street".into(),
    ]);
    out.extend(PHONES.iter().chain(&CARDS).map(|s| digits(s)));
    out.extend(IBANS.iter().map(|s| alnum_upper(s)));
    out.push(EMAILS[1].to_lowercase());
    out
}

fn with_known_pii(mut body: Value) -> Value {
    body["known_pii"] = json!({"names": [NAME], "addresses": [ADDRESS]});
    body
}

/// No recorded upstream body holds any of `originals`, raw or in compact form.
fn assert_nothing_left(bodies: &[Value], originals: &[String]) {
    for body in bodies {
        let text = body.to_string();
        let upper = text.to_uppercase();
        for original in originals {
            assert!(
                !upper.contains(&original.to_uppercase()),
                "{original:?} left the machine in {text}"
            );
        }
        assert!(
            body.get("known_pii").is_none(),
            "known_pii forwarded: {text}"
        );
    }
}

/// The fields vLLM and llama-server take beyond OpenAI's reach a provider unless its config
/// says `extensions = false` (OpenAI refuses them with a 400, which would end a failover).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extension_fields_are_left_out_for_a_provider_that_refuses_them() {
    let (open_ended, strict) = (Fake::start(Mode::Echo).await, Fake::start(Mode::Echo).await);
    let toml = format!(
        "[gateway]\n{}{}extensions = false\n{}{}",
        provider("vllm", &open_ended.url, 10.0),
        provider("strict", &strict.url, 10.0),
        route("pool", "allow", &[r#"{ provider = "vllm", model = "m" }"#]),
        route(
            "openai",
            "allow",
            &[r#"{ provider = "strict", model = "m" }"#]
        ),
    );
    let (p, _dir) = open(&toml);
    for alias in ["pool", "openai"] {
        let mut body = chat_body(alias, "hello", false);
        body["top_k"] = json!(20);
        body["min_p"] = json!(0.05);
        body["ignore_eos"] = json!(false);
        body["chat_template_kwargs"] = json!({"enable_thinking": false});
        body["temperature"] = json!(0.5);
        assert_eq!(answer(&p, &body).await, "hello");
    }
    let (sent, trimmed) = (&open_ended.bodies()[0], &strict.bodies()[0]);
    for field in ["top_k", "min_p", "ignore_eos", "chat_template_kwargs"] {
        assert!(sent.get(field).is_some(), "{field} not forwarded: {sent}");
        assert!(trimmed.get(field).is_none(), "{field} forwarded: {trimmed}");
    }
    assert_eq!(
        sent["chat_template_kwargs"],
        json!({"enable_thinking": false})
    );
    assert_eq!(trimmed["temperature"], json!(0.5));
    assert_eq!(trimmed["messages"], sent["messages"]);
}

/// A Messages request to a route whose upstream speaks only Chat Completions is served by
/// translation, under the route's privacy policy: the upstream gets a chat request with the
/// personal data replaced, the client an Anthropic message with it restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_messages_api_reaches_a_chat_upstream_by_translation_and_is_redacted() {
    let (echo, p, _dir) = redact_route().await;
    let text = format!("Please write to {} about it.", EMAILS[0]);
    let body = json!({"model": "private", "max_tokens": 32, "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]});
    let (status, _, bytes) = common::call(&p, post_json("/v1/messages", &body, None)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let message = json_of(&bytes);
    assert_eq!(message["type"], "message");
    assert_eq!(message["content"][0]["text"], text.as_str(), "{message}");
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let (status, _, bytes) = common::call(&p, post_json("/v1/messages", &streamed, None)).await;
    assert_eq!(status, StatusCode::OK);
    let events = common::sse_events(&String::from_utf8(bytes).unwrap());
    let deltas: String = events
        .iter()
        .filter(|e| e["type"] == "content_block_delta")
        .map(|e| e["delta"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(deltas, text);
    assert_eq!(events.last().unwrap()["type"], "message_stop");
    let bodies = echo.bodies();
    assert_eq!(bodies.len(), 2);
    assert_nothing_left(&bodies, &[EMAILS[0].to_owned()]);
    assert_eq!(bodies[0]["messages"][0]["role"], "system");
    assert_eq!(bodies[0]["max_tokens"], 32);
}

/// The Responses API on a route whose upstream speaks only Chat Completions: served by
/// translation under the route's privacy policy, stored, and continued by
/// `previous_response_id` (the upstream gets the earlier turn).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_responses_api_reaches_a_chat_upstream_by_translation_and_is_redacted() {
    let (echo, p, _dir) = redact_route().await;
    let text = format!("Please write to {} about it.", EMAILS[0]);
    let body = json!({"model": "private", "instructions": "Be brief.", "input": text});
    let (status, _, bytes) = common::call(&p, post_json("/v1/responses", &body, None)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let first = json_of(&bytes);
    assert_eq!(
        first["output"][0]["content"][0]["text"],
        text.as_str(),
        "{first}"
    );
    let next = json!({"model": "private", "input": "And again.",
        "previous_response_id": first["id"], "stream": true});
    let (status, _, bytes) = common::call(&p, post_json("/v1/responses", &next, None)).await;
    assert_eq!(status, StatusCode::OK);
    let events = common::sse_events(&String::from_utf8(bytes).unwrap());
    assert_eq!(events.last().unwrap()["type"], "response.completed");
    let bodies = echo.bodies();
    assert_eq!(bodies.len(), 2);
    assert_nothing_left(&bodies, &[EMAILS[0].to_owned()]);
    // The continuation carries the first turn (its answer too), not its instructions.
    let roles: Vec<&str> = bodies[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user"], "{}", bodies[1]);
}

/// A platform whose route `private` redacts on its way to an echoing upstream.
async fn redact_route() -> (Fake, Platform, tempfile::TempDir) {
    let echo = Fake::start(Mode::Echo).await;
    let toml = format!(
        "[gateway]\n{}{}",
        provider("echo", &echo.url, 10.0),
        route(
            "private",
            "redact",
            &[r#"{ provider = "echo", model = "m" }"#]
        ),
    );
    let (p, dir) = open(&toml);
    (echo, p, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redact_routes_send_placeholders_and_restore_the_originals_in_the_answer() {
    let (echo, p, _dir) = redact_route().await;
    for message in corpus() {
        let whole = answer(&p, &with_known_pii(chat_body("private", &message, false))).await;
        assert_eq!(whole, message);
        let stream = streamed(&p, &with_known_pii(chat_body("private", &message, true))).await;
        assert_eq!(stream, message);
    }
    // A conversation: every message is redacted, not only the last one.
    let corpus = corpus();
    let conversation = with_known_pii(json!({
        "model": "private",
        "user": EMAILS[0],
        "messages": [
            {"role": "system", "content": format!("The customer is {NAME}, {}.", EMAILS[0])},
            {"role": "user", "content": corpus[0]},
            {"role": "assistant", "content": format!("Noted: {}.", PHONES[0])},
            {"role": "user", "content": [{"type": "text", "text": corpus[1]}]},
        ],
    }));
    assert_eq!(answer(&p, &conversation).await, corpus[1]);

    let bodies = echo.bodies();
    assert_eq!(bodies.len(), 2 * corpus.len() + 1);
    assert_nothing_left(&bodies, &originals());
    // What went instead: numbered placeholders.
    let first = bodies[0].to_string();
    for placeholder in [
        "[NAME_1]",
        "[EMAIL_1]",
        "[EMAIL_2]",
        "[PHONE_1]",
        "[PHONE_2]",
    ] {
        assert!(first.contains(placeholder), "{placeholder} not in {first}");
    }
    let third = bodies[4].to_string();
    for placeholder in ["[ADDRESS_1]", "[IP_1]", "[IP_2]", "[IP_3]", "[PHONE_1]"] {
        assert!(third.contains(placeholder), "{placeholder} not in {third}");
    }
    // The conversation keeps one placeholder per value across its messages.
    let last = bodies.last().unwrap();
    assert_eq!(
        last["messages"][0]["content"],
        "The customer is [NAME_1], [EMAIL_1]."
    );
    assert_eq!(last["messages"][2]["content"], "Noted: [PHONE_1].");
    // The end-user id is personal data too when it is an e-mail address.
    assert_eq!(last["user"], "[EMAIL_1]");
}

/// Every field that carries text upstream is redacted, not only message contents: names,
/// tool descriptions, parameter schemas with their enum values, response-format schemas,
/// stop strings, tool call ids and arguments, the end-user id. Names of functions stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_of_a_request_is_redacted_on_a_redact_route() {
    let (echo, p, _dir) = redact_route().await;
    let call_id = format!("call_{}", IBANS[1]);
    let request = |stream: bool| {
        with_known_pii(json!({
            "model": "private",
            "stream": stream,
            "user": EMAILS[1],
            "stop": [EMAILS[0], CARDS[1]],
            "messages": [
                {"role": "system", "content": "Help the customer."},
                {"role": "user", "name": NAME, "content": "Where is my parcel?"},
                {"role": "assistant", "content": null, "tool_calls": [{
                    "id": call_id,
                    "type": "function",
                    "function": {"name": "track", "arguments": json!({"email": EMAILS[0], "phone": PHONES[1]}).to_string()},
                }]},
                {"role": "tool", "tool_call_id": call_id, "content": format!("Sent to {ADDRESS}")},
                {"role": "user", "content": "Thanks"},
            ],
            "tools": [{
                "type": "function",
                "function": {
                    "name": "track",
                    "description": format!("Track parcels; escalate to {}", EMAILS[1]),
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "email": {"type": "string", "enum": [EMAILS[0], "other"]},
                            "phone": {"type": "string", "description": format!("like {}", PHONES[0])},
                        },
                    },
                },
            }],
            "response_format": {"type": "json_schema", "json_schema": {
                "name": "answer",
                "description": format!("Never mention {}", CARDS[0]),
                "schema": {"type": "object", "properties": {"iban": {"const": IBANS[0]}}},
            }},
        }))
    };
    assert_eq!(answer(&p, &request(false)).await, "Thanks");
    assert_eq!(streamed(&p, &request(true)).await, "Thanks");
    let bodies = echo.bodies();
    assert_eq!(bodies.len(), 2);
    assert_nothing_left(&bodies, &originals());
    for body in &bodies {
        assert_eq!(body["messages"][1]["name"], "[NAME_1]", "{body}");
        // One placeholder per value, so the call and its result still pair up.
        assert_eq!(
            body["messages"][2]["tool_calls"][0]["id"],
            body["messages"][3]["tool_call_id"]
        );
        assert_eq!(
            body["messages"][2]["tool_calls"][0]["function"]["name"],
            "track"
        );
        assert_eq!(body["tools"][0]["function"]["name"], "track");
        assert_eq!(
            body["tools"][0]["function"]["parameters"]["properties"]["email"]["type"],
            "string"
        );
        assert_eq!(body["response_format"]["type"], "json_schema");
    }
}

/// The whole tuning corpus of personal data (hearth_testdata::pii: 500+ values in many
/// languages and styles) through the HTTP path, each value in another field of the request in
/// turn, streamed and whole: none reaches the upstream, in any form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_corpus_value_reaches_the_upstream_in_any_field() {
    let (echo, p, _dir) = redact_route().await;
    let (record, cases) = hearth_testdata::pii::tuning_corpus();
    assert!(cases.len() >= 500);
    for (i, case) in cases.iter().enumerate() {
        let mut body = json!({
            "model": "private",
            "stream": i % 2 == 1,
            "messages": [{"role": "user", "content": "Hello"}],
            "known_pii": {"names": record.names, "addresses": record.addresses},
        });
        let function = |description: &str, choices: Value| {
            json!([{"type": "function", "function": {
                "name": "lookup",
                "description": description,
                "parameters": {"type": "object", "properties": {"who": {"type": "string", "enum": choices}}},
            }}])
        };
        match i % 7 {
            0 => body["messages"][0]["content"] = json!(case.text),
            1 => body["messages"][0]["name"] = json!(case.value),
            2 => body["tools"] = function(&case.text, json!(["x"])),
            3 => body["tools"] = function("Look someone up", json!([case.value])),
            4 => body["stop"] = json!([case.text]),
            5 => {
                body["messages"] = json!([
                    {"role": "user", "content": "Look it up"},
                    {"role": "assistant", "content": null, "tool_calls": [{
                        "id": case.value, "type": "function",
                        "function": {"name": "lookup", "arguments": json!({"who": case.text}).to_string()},
                    }]},
                    {"role": "tool", "tool_call_id": case.value, "content": case.text},
                    {"role": "user", "content": "Hello"},
                ])
            }
            _ => {
                body["response_format"] = json!({"type": "json_schema", "json_schema": {
                    "name": "answer", "description": case.text, "schema": {"type": "object"},
                }})
            }
        }
        let (status, _, bytes) = chat(&p, &body, None).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&bytes)
        );
    }
    let bodies = echo.bodies();
    assert_eq!(bodies.len(), cases.len());
    let mut sent: Vec<String> = Vec::new();
    fn strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.to_lowercase()),
            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            Value::Object(m) => m.values().for_each(|x| strings(x, out)),
            _ => {}
        }
    }
    for body in &bodies {
        assert!(body.get("known_pii").is_none());
        strings(body, &mut sent);
    }
    let sent = sent.join("\u{1}");
    for case in &cases {
        assert!(
            !sent.contains(&case.value.to_lowercase()),
            "{} {:?} reached the upstream",
            case.kind,
            case.value
        );
        if matches!(case.kind, "card" | "iban") {
            // Nor its digits and letters run together (fullwidth digits read as digits).
            let compact: String = case
                .value
                .chars()
                .filter_map(|c| match c {
                    '０'..='９' => char::from_u32(c as u32 - 0xFF10 + u32::from(b'0')),
                    c if c.is_ascii_alphanumeric() => Some(c.to_ascii_lowercase()),
                    _ => None,
                })
                .collect();
            assert!(
                !sent.contains(&compact),
                "{} {:?} reached the upstream as {compact}",
                case.kind,
                case.value
            );
        }
    }
}

/// A route that refuses a kind of PII refuses the whole request, naming the field, before
/// anything is sent or charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_refuses_requests_carrying_the_kinds_it_forbids() {
    let echo = Fake::start(Mode::Echo).await;
    let toml = format!(
        "[gateway]\n{}[[gateway.routes]]\nalias = \"strict\"\nprivacy = \"redact\"\nrefuse = [\"card\", \"iban\"]\ndeployments = [{{ provider = \"echo\", model = \"m\" }}]\n",
        provider("echo", &echo.url, 10.0),
    );
    let (p, _dir) = open(&toml);
    for (body, param) in [
        (
            chat_body("strict", &format!("Charge {}", CARDS[0]), false),
            "messages[0].content",
        ),
        (
            chat_body("strict", &format!("Refund to {}", IBANS[0]), true),
            "messages[0].content",
        ),
        (
            {
                let mut b = chat_body("strict", "hi", false);
                b["stop"] = json!([CARDS[2]]);
                b
            },
            "stop[0]",
        ),
    ] {
        let (status, _, bytes) = chat(&p, &body, None).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(&bytes)
        );
        let error = &json_of(&bytes)["error"];
        assert_eq!(error["code"], "pii_refused");
        assert_eq!(error["param"], param);
        assert!(!error["message"].as_str().unwrap().contains(CARDS[0]));
    }
    assert_eq!(echo.hits(), 0);
    assert_eq!(
        ledger_sum(&p, "SELECT COUNT(*) FROM gateway_usage"),
        0,
        "nothing was charged"
    );
    // Other kinds are redacted as usual.
    let message = format!("Mail {}", EMAILS[0]);
    assert_eq!(
        answer(&p, &chat_body("strict", &message, false)).await,
        message
    );
    assert_nothing_left(&echo.bodies(), &[EMAILS[0].to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_routes_send_the_text_as_it_is() {
    let echo = Fake::start(Mode::Echo).await;
    let toml = format!(
        "[gateway]\n{}{}",
        provider("echo", &echo.url, 10.0),
        route("open", "allow", &[r#"{ provider = "echo", model = "m" }"#]),
    );
    let (p, _dir) = open(&toml);
    let message = corpus()[0].clone();
    assert_eq!(
        answer(&p, &with_known_pii(chat_body("open", &message, false))).await,
        message
    );
    let bodies = echo.bodies();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["messages"][0]["content"], message.as_str());
    assert!(bodies[0].to_string().contains(EMAILS[0]));
    // The hearth extension itself stays home on every route.
    assert!(bodies[0].get("known_pii").is_none());
    let record = &audit(&p)[0];
    assert_eq!(record.privacy, "allow");
    assert!(record.redactions.is_empty(), "{record:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_keeps_redaction_counts_and_no_raw_text_by_default() {
    let echo = Fake::start(Mode::Echo).await;
    let upstreams = format!(
        "{}{}",
        provider("echo", &echo.url, 10.0),
        route(
            "private",
            "redact",
            &[r#"{ provider = "echo", model = "m" }"#]
        ),
    );
    let message = corpus()[0].clone();
    let (p0, _dir) = open(&format!("[gateway]\n{upstreams}"));
    let p = &p0;
    answer(p, &with_known_pii(chat_body("private", &message, false))).await;
    let records = audit(p);
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (r.route.as_str(), r.deployment.as_str()),
        ("private", "echo/m")
    );
    assert_eq!((r.privacy.as_str(), r.outcome.as_str()), ("redact", "ok"));
    assert_eq!(
        (r.prompt_tokens, r.completion_tokens),
        (PROMPT_TOKENS, COMPLETION_TOKENS)
    );
    let expected: BTreeMap<String, usize> = [
        ("email".to_owned(), 2),
        ("phone".to_owned(), 2),
        ("name".to_owned(), 1),
    ]
    .into();
    assert_eq!(r.redactions, expected);
    assert!(r.raw_request.is_none() && r.raw_answer.is_none(), "{r:?}");

    // With audit_raw_text the request is kept as it left: placeholders, no originals.
    let (p, _dir2) = open(&format!("[gateway]\naudit_raw_text = true\n{upstreams}"));
    answer(&p, &with_known_pii(chat_body("private", &message, false))).await;
    let r = &audit(&p)[0];
    let raw = r.raw_request.as_deref().expect("the raw request");
    assert!(raw.contains("[EMAIL_1]"), "{raw}");
    assert!(!raw.contains(EMAILS[0]) && !raw.contains(NAME), "{raw}");
    assert!(r.raw_answer.is_some());

    // The console's request log shows that text on the request's own row, to an admin only.
    let accounts = p.accounts().unwrap();
    accounts
        .create("ana", hearth_core::console::Role::Admin, "correct horse")
        .unwrap();
    accounts
        .create("vic", hearth_core::console::Role::Viewer, "correct horse")
        .unwrap();
    let admin = crate::console::sign_in(&p, "ana").await;
    let log = crate::console::get(&p, "/console/api/requests", &admin).await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.raw);
    assert_eq!(
        (
            log.body["raw_text"].as_bool(),
            log.body["text_shown"].as_bool()
        ),
        (Some(true), Some(true))
    );
    let rows = log.body["requests"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{}", log.raw);
    assert_eq!(rows[0]["route"], "private");
    assert_eq!(rows[0]["text"]["request"].as_str(), Some(raw));
    assert_eq!(rows[0]["text"]["answer"].as_str(), r.raw_answer.as_deref());
    assert_eq!(rows[0]["text"]["redactions"]["email"], 2);
    let viewer = crate::console::sign_in(&p, "vic").await;
    let log = crate::console::get(&p, "/console/api/requests", &viewer).await;
    assert_eq!(
        (
            log.body["raw_text"].as_bool(),
            log.body["text_shown"].as_bool()
        ),
        (Some(true), Some(false))
    );
    assert_eq!(log.body["requests"].as_array().unwrap().len(), 1);
    assert!(
        !log.raw.contains("[EMAIL_1]"),
        "a viewer sees no text: {}",
        log.raw
    );

    // Without audit_raw_text (the first platform) an admin sees rows and no text.
    p0.accounts()
        .unwrap()
        .create("ana", hearth_core::console::Role::Admin, "correct horse")
        .unwrap();
    let admin = crate::console::sign_in(&p0, "ana").await;
    let log = crate::console::get(&p0, "/console/api/requests", &admin).await;
    assert_eq!(
        (
            log.body["raw_text"].as_bool(),
            log.body["text_shown"].as_bool()
        ),
        (Some(false), Some(false))
    );
    let rows = log.body["requests"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].get("text").is_none(), "{}", log.raw);
}

// The same property as the redactor's own tests, through the whole HTTP path: generated
// e-mails, phones, Luhn-valid cards, mod-97-valid IBANs and IPs never reach the upstream, and
// the answer (whole and streamed) gives them back exactly.

use hearth_testdata::pii::{iban as iban_with_check, luhn as luhn_complete};

fn grouped(s: &str, size: usize, sep: &str) -> String {
    s.as_bytes()
        .chunks(size)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect::<Vec<_>>()
        .join(sep)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Email,
    Phone,
    Card,
    Iban,
    Ip,
}

fn email() -> impl Strategy<Value = String> {
    (
        "[a-z][a-z0-9]{1,8}",
        proptest::option::of("[a-z0-9]{1,5}"),
        "[a-z][a-z0-9]{1,8}",
        prop::sample::select(vec!["com", "org", "de", "co.uk", "io"]),
    )
        .prop_map(|(local, extra, domain, tld)| match extra {
            Some(x) => format!("{local}.{x}@{domain}.{tld}"),
            None => format!("{local}@{domain}.{tld}"),
        })
}

fn phone() -> impl Strategy<Value = String> {
    prop_oneof![
        ("[1-9][0-9]{0,2}", "[1-9][0-9]{0,2}", "[0-9]{4}", "[0-9]{4}")
            .prop_map(|(c, a, b, d)| format!("+{c} {a} {b} {d}")),
        ("[2-9][0-9]{2}", "[2-9][0-9]{2}", "[0-9]{4}")
            .prop_map(|(a, b, c)| format!("+1 ({a}) {b}-{c}")),
        ("[2-9][0-9]{2}", "[2-9][0-9]{2}", "[0-9]{4}")
            .prop_map(|(a, b, c)| format!("({a}) {b}-{c}")),
        ("[2-9][0-9]{2}", "[2-9][0-9]{2}", "[0-9]{4}").prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
        ("[2-9][0-9]{2}", "[2-9][0-9]{2}", "[0-9]{4}").prop_map(|(a, b, c)| format!("{a}-{b}-{c}")),
        ("[1-9]", "[0-9]{2}", "[0-9]{2}", "[0-9]{2}", "[0-9]{2}")
            .prop_map(|(a, b, c, d, e)| format!("+33 {a} {b} {c} {d} {e}")),
        ("[1-9][0-9]", "[1-9][0-9]", "[0-9]{4}", "[0-9]{4}")
            .prop_map(|(c, a, b, d)| format!("00{c} {a} {b} {d}")),
        "[1-9][0-9]{10}".prop_map(|d| format!("+{d}")),
    ]
}

fn card() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["4", "51", "37", "6011"]),
        prop::sample::select(vec![13usize, 15, 16, 19]),
        "[0-9]{18}",
        prop::sample::select(vec!["", " ", "-"]),
    )
        .prop_map(|(prefix, len, body, sep)| {
            let body = format!("{prefix}{body}");
            let number = luhn_complete(&body[..len - 1]);
            if sep.is_empty() || len % 4 == 1 {
                number
            } else {
                grouped(&number, 4, sep)
            }
        })
}

fn iban() -> impl Strategy<Value = String> {
    let bban = prop_oneof![
        "[0-9]{18}".prop_map(|b| ("DE", b)),
        "[A-Z]{4}[0-9]{14}".prop_map(|b| ("GB", b)),
        "[0-9]{10}[0-9A-Z]{11}[0-9]{2}".prop_map(|b| ("FR", b)),
        "[A-Z]{4}[0-9]{10}".prop_map(|b| ("NL", b)),
    ];
    (bban, any::<bool>()).prop_map(|((country, bban), spaced)| {
        let iban = iban_with_check(country, &bban);
        if spaced {
            grouped(&iban, 4, " ")
        } else {
            iban
        }
    })
}

fn ip() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string()),
        (0x2000u16..0x3000, 1u16..0xffff).prop_map(|(a, b)| format!("{a:x}:db8::{b:x}")),
    ]
}

fn item() -> impl Strategy<Value = (Kind, String)> {
    prop_oneof![
        email().prop_map(|v| (Kind::Email, v)),
        phone().prop_map(|v| (Kind::Phone, v)),
        card().prop_map(|v| (Kind::Card, v)),
        iban().prop_map(|v| (Kind::Iban, v)),
        ip().prop_map(|v| (Kind::Ip, v)),
    ]
}

const FILLER: [&str; 5] = [
    "Thanks for your help.",
    "Order #W2611340 costs $1,234.56.",
    "It shipped on 2024-05-01 at 10:30.",
    "We run version 1.2.3 since 2023.",
    "About 10 000 000 units were sold.",
];

/// Items in filler sentences; the first appears a second time at the end.
fn document() -> impl Strategy<Value = (Vec<(Kind, String)>, String)> {
    (
        prop::collection::vec(item(), 1..6),
        prop::collection::vec(prop::sample::select(FILLER.to_vec()), 6),
    )
        .prop_map(|(items, filler)| {
            let mut parts = Vec::new();
            for (k, (kind, value)) in items.iter().enumerate() {
                parts.push(filler[k].to_owned());
                parts.push(format!("My {kind:?} is {value}."));
            }
            parts.push(filler[5].to_owned());
            parts.push(format!("Again: {}.", items[0].1));
            (items, parts.join(" "))
        })
}

#[test]
fn generated_personal_data_never_leaves_and_comes_back_exactly() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let echo = runtime.block_on(Fake::start(Mode::Echo));
    let (p, _dir) = open(&format!(
        "[gateway]\n{}{}",
        provider("echo", &echo.url, 10.0),
        route(
            "private",
            "redact",
            &[r#"{ provider = "echo", model = "m" }"#]
        ),
    ));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&document(), |(items, text)| {
            let before = echo.bodies().len();
            let (whole, stream) = runtime.block_on(async {
                (
                    answer(&p, &chat_body("private", &text, false)).await,
                    streamed(&p, &chat_body("private", &text, true)).await,
                )
            });
            prop_assert_eq!(&whole, &text);
            prop_assert_eq!(&stream, &text);
            let bodies = echo.bodies();
            prop_assert_eq!(bodies.len(), before + 2);
            for body in &bodies[before..] {
                let sent = last_user_text(body);
                for (kind, value) in &items {
                    prop_assert!(
                        !sent.contains(value.as_str()),
                        "{:?} {:?} in {:?}",
                        kind,
                        value,
                        sent
                    );
                    let compact = match kind {
                        Kind::Phone | Kind::Card => digits(value),
                        Kind::Iban => alnum_upper(value),
                        _ => continue,
                    };
                    prop_assert!(
                        !alnum_upper(&sent).contains(&compact),
                        "{:?} (as {:?}) in {:?}",
                        value,
                        compact,
                        sent
                    );
                }
            }
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// API keys, limits and budgets

/// $10 per 1M tokens either way: an answer of the fake (100 + 50 tokens) costs $0.0015.
const COST_PER_REQUEST: f64 = 150.0 * 10.0 / 1e6;

fn priced(fake: &Fake, extra: &str) -> String {
    format!(
        "[gateway]\nattempts = 1\nfailures_before_cooldown = 1000\n{extra}\n\
         [gateway.prices]\nten = {{ input = 10.0, output = 10.0 }}\n{}{}{}",
        provider("fake", &fake.url, 10.0),
        route(
            "a",
            "allow",
            &[r#"{ provider = "fake", model = "m", price = "ten" }"#]
        ),
        route(
            "b",
            "allow",
            &[r#"{ provider = "fake", model = "m", price = "ten" }"#]
        ),
    )
}

/// A request of 292 bytes of text and max_tokens 50: the fake bills it 100 + 50 tokens.
fn exact_request(model: &str) -> Value {
    let mut body = chat_body(model, &"x".repeat(292), false);
    body["max_tokens"] = json!(50);
    body
}

/// What the gateway reserves for `body` at the "ten" price: its prompt's upper bound plus
/// its completion limit, in tokens and USD.
fn reserved(body: &Value) -> (u64, f64) {
    let request: hearth_types::ChatCompletionRequest =
        serde_json::from_value(body.clone()).unwrap();
    let tokens =
        hearth_gateway::prompt_bound(&request) + hearth_gateway::completion_bound(&request, 1024);
    (tokens, tokens as f64 * 10.0 / 1e6)
}

/// Key "app" with `budget` USD (models, and its own usage).
fn budget_key(p: &Platform, budget: f64) -> String {
    create_key(
        p,
        NewKey {
            name: "app".into(),
            budget: Some(budget),
            ..Default::default()
        },
    )
}

/// Key "ops" with the admin scope (reads /metrics).
fn ops_key(p: &Platform) -> String {
    create_key(
        p,
        NewKey {
            name: "ops".into(),
            scopes: vec![Scope::Admin],
            ..Default::default()
        },
    )
}

/// A key for these tests: models, and its own usage to check what it spent.
fn create_key(p: &Platform, mut new: NewKey) -> String {
    if new.scopes.is_empty() {
        new.scopes = vec![Scope::Inference, Scope::Usage];
    }
    p.gateway().keys().unwrap().create(new).unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_holds_under_many_concurrent_requests() {
    let fake = Fake::start(Mode::Ok).await;
    let (p, _dir) = open(&priced(&fake, ""));
    let (_, reserve) = reserved(&exact_request("a"));
    assert!(
        reserve > COST_PER_REQUEST,
        "the reservation bounds the bill"
    );
    // Room for 10.5 answers, of which the last few cannot be reserved.
    let budget = 10.5 * COST_PER_REQUEST;
    let secret = budget_key(&p, budget);
    let calls = (0..40).map(|_| {
        let (p, secret) = (p.clone(), secret.clone());
        tokio::spawn(async move { chat(&p, &exact_request("a"), Some(&secret)).await })
    });
    let results = futures::future::join_all(calls).await;
    let mut ok = 0;
    let mut refused = 0;
    for result in results {
        let (status, headers, bytes) = result.unwrap();
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                refused += 1;
                assert_eq!(json_of(&bytes)["error"]["code"], "budget_exceeded");
                // A monthly budget: retry when the month ends.
                assert!(retry_after(&headers) >= 1);
            }
            other => panic!("{other}: {}", String::from_utf8_lossy(&bytes)),
        }
    }
    assert!(
        ok >= 1 && ok + refused == 40,
        "{ok} answered, {refused} refused"
    );
    assert_eq!(fake.hits(), ok);
    // Then one at a time until the budget cannot hold another reservation.
    for _ in 0..20 {
        if chat(&p, &exact_request("a"), Some(&secret)).await.0 != StatusCode::OK {
            break;
        }
        ok += 1;
    }
    let spent = ok as f64 * COST_PER_REQUEST;
    assert!(spent <= budget + 1e-12, "{spent} > {budget}");
    assert!(
        budget - spent < reserve,
        "refused although {} was left for a reservation of {reserve}",
        budget - spent
    );
    assert_eq!(fake.hits(), ok);
    let report = usage_as(&p, "by=key", Some(&secret)).await;
    let app = row(&report, "app");
    assert_eq!(app["requests"], ok);
    assert!(f(&app["cost"]) <= budget);
    assert_close(f(&app["cost"]), spent, "the key's spend");
    // The budgets gauge is the operator's to read (admin scope).
    let ops = ops_key(&p);
    let left = metric(
        &metrics_text(&p, Some(&ops)).await,
        r#"hearth_gateway_budget_left_usd{key="app"}"#,
    )
    .expect("the budget gauge");
    assert_close(left, budget - spent, "budget left");
}

/// An upstream that says it used far more tokens than the request can: the spend still stays
/// within the budget under 60 concurrent requests, the ledger counts each answer at the
/// request's bounds, and the audit log keeps what the upstream said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_overreports_cannot_spend_past_the_budget() {
    let fake = Fake::start(Mode::Overreport).await;
    let (p, _dir) = open(&priced(&fake, ""));
    let mut hi = chat_body("a", "hi", false);
    hi["max_tokens"] = json!(16);
    let (bound, reserve) = reserved(&hi);
    let budget = 7.5 * reserve;
    let secret = budget_key(&p, budget);
    let calls = (0..60).map(|i| {
        let (p, secret) = (p.clone(), secret.clone());
        let mut body = hi.clone();
        body["stream"] = json!(i % 2 == 0);
        tokio::spawn(async move { chat(&p, &body, Some(&secret)).await })
    });
    let mut ok = 0;
    for result in futures::future::join_all(calls).await {
        let (status, _, bytes) = result.unwrap();
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(json_of(&bytes)["error"]["code"], "budget_exceeded")
            }
            other => panic!("{other}: {}", String::from_utf8_lossy(&bytes)),
        }
    }
    assert_eq!(ok, 7, "each answer is charged its whole reservation");
    let report = usage_as(&p, "by=key", Some(&secret)).await;
    let app = row(&report, "app");
    assert_eq!(app["requests"], 7);
    assert!(f(&app["cost"]) <= budget, "{} > {budget}", f(&app["cost"]));
    assert_close(f(&app["cost"]), 7.0 * reserve, "spend at the bounds");
    let tokens = ledger_sum(
        &p,
        "SELECT SUM(prompt_tokens + completion_tokens) FROM gateway_usage WHERE api_key = 'app'",
    );
    assert_eq!(tokens as u64, 7 * bound);
    let said: Vec<u64> = audit(&p).iter().map(|a| a.prompt_tokens).collect();
    assert!(
        said.iter().filter(|&&t| t == OVERREPORTED_TOKENS).count() == 7,
        "{said:?}"
    );
    let ops = ops_key(&p);
    let text = metrics_text(&p, Some(&ops)).await;
    assert_eq!(
        metric(
            &text,
            r#"hearth_gateway_overreported_total{route="a",deployment="fake/m"}"#
        ),
        Some(7.0),
        "{text}"
    );
}

/// A request without max_tokens goes upstream with the limit its reservation assumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reserved_completion_limit_travels_upstream() {
    let fake = Fake::start(Mode::Ok).await;
    let (p, _dir) = open(&priced(&fake, "max_tokens_estimate = 300"));
    assert_eq!(
        chat(&p, &chat_body("a", "hi", false), None).await.0,
        StatusCode::OK
    );
    let mut own = chat_body("a", "hi", false);
    own["max_completion_tokens"] = json!(20);
    assert_eq!(chat(&p, &own, None).await.0, StatusCode::OK);
    let bodies = fake.bodies();
    assert_eq!(bodies[0]["max_tokens"], 300);
    assert_eq!(bodies[1]["max_completion_tokens"], 20);
    assert!(bodies[1].get("max_tokens").is_none(), "{}", bodies[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_no_deployment_answered_do_not_spend_the_budget() {
    let fake = Fake::start(Mode::Fail500).await;
    let (p, _dir) = open(&priced(&fake, ""));
    let secret = create_key(
        &p,
        NewKey {
            name: "app".into(),
            // Two answers' worth once the second's reservation is held.
            budget: Some(reserved(&exact_request("a")).1 + 1.5 * COST_PER_REQUEST),
            ..Default::default()
        },
    );
    // The upstream is down: every request fails, none is answered, nothing is spent.
    for _ in 0..4 {
        let (status, _, bytes) = chat(&p, &exact_request("a"), Some(&secret)).await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            String::from_utf8_lossy(&bytes)
        );
    }
    assert_eq!(fake.hits(), 4);
    // It is back: the whole budget is still there (two requests' worth).
    fake.set_mode(Mode::Ok);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(chat(&p, &exact_request("a"), Some(&secret)).await.0);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    let report = usage_as(&p, "by=key", Some(&secret)).await;
    assert_close(
        f(&row(&report, "app")["cost"]),
        2.0 * COST_PER_REQUEST,
        "spend",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_required_once_one_exists_and_hold_their_routes_and_rates() {
    let fake = Fake::start(Mode::Ok).await;
    let (p, _dir) = open(&priced(&fake, ""));
    // No key yet: the API is open.
    assert_eq!(chat(&p, &exact_request("b"), None).await.0, StatusCode::OK);

    let only_a = create_key(
        &p,
        NewKey {
            name: "team-a".into(),
            routes: vec!["a".into()],
            ..Default::default()
        },
    );
    // Now a key is required, and it must be a live one.
    let (status, _, bytes) = chat(&p, &exact_request("a"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(&bytes)["error"]["code"], "missing_api_key");
    let (status, _, bytes) = chat(&p, &exact_request("a"), Some("hk-not-a-key")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(&bytes)["error"]["code"], "invalid_api_key");
    assert_eq!(get(&p, "/v1/usage", None).await.0, StatusCode::UNAUTHORIZED);

    // Its own route only.
    assert_eq!(
        chat(&p, &exact_request("a"), Some(&only_a)).await.0,
        StatusCode::OK
    );
    let hits = fake.hits();
    let (status, _, bytes) = chat(&p, &exact_request("b"), Some(&only_a)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let value = json_of(&bytes);
    assert_eq!(value["error"]["code"], "model_not_allowed");
    assert_eq!(value["error"]["param"], "model");
    assert_eq!(fake.hits(), hits, "a forbidden request went upstream");

    // Two requests a minute: the third waits.
    let slow = create_key(
        &p,
        NewKey {
            name: "slow".into(),
            requests_per_minute: Some(2),
            ..Default::default()
        },
    );
    for _ in 0..2 {
        assert_eq!(
            chat(&p, &exact_request("b"), Some(&slow)).await.0,
            StatusCode::OK
        );
    }
    let hits = fake.hits();
    let (status, headers, bytes) = chat(&p, &exact_request("b"), Some(&slow)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let value = json_of(&bytes);
    assert_eq!(value["error"]["code"], "rate_limit_exceeded");
    assert!(value["error"]["message"]
        .as_str()
        .unwrap()
        .contains("requests_per_minute"));
    // One slot refills every 30 s.
    assert!((1..=30).contains(&retry_after(&headers)), "{headers:?}");
    assert_eq!(fake.hits(), hits);

    // One request's reservation and 100 tokens a minute: one request fits; once it has used
    // its 150 tokens, the next reservation does not.
    let tokens = create_key(
        &p,
        NewKey {
            name: "tokens".into(),
            tokens_per_minute: Some(reserved(&exact_request("b")).0 + 100),
            ..Default::default()
        },
    );
    assert_eq!(
        chat(&p, &exact_request("b"), Some(&tokens)).await.0,
        StatusCode::OK
    );
    let (status, headers, bytes) = chat(&p, &exact_request("b"), Some(&tokens)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(json_of(&bytes)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("tokens_per_minute"));
    assert!(retry_after(&headers) >= 1);

    // A revoked key stops working (this process's key cache is dropped on revocation;
    // other processes pick it up within the cache's 2 s).
    assert!(p.gateway().keys().unwrap().revoke("team-a").unwrap());
    let (status, _, bytes) = chat(&p, &exact_request("a"), Some(&only_a)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(&bytes)["error"]["code"], "invalid_api_key");
    // The other keys are still accepted (this one is still over its token limit: 429, not 401).
    assert_eq!(
        chat(&p, &exact_request("a"), Some(&tokens)).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // A key sees its own usage only; the operator (the ledger itself) sees every key's.
    let (status, bytes) = get(&p, "/v1/usage?by=key", Some(&slow)).await;
    assert_eq!(status, StatusCode::OK);
    let report = json_of(&bytes);
    assert_eq!(report["rows"].as_array().unwrap().len(), 1, "{report:#}");
    assert_eq!(row(&report, "slow")["requests"], 2);
    let all = serde_json::to_value(
        p.gateway()
            .usage_report(None, None, hearth_gateway::ledger::GroupBy::Key, None)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(row(&all, "team-a")["requests"], 1);
    assert_eq!(row(&all, "slow")["requests"], 2);
    assert_eq!(row(&all, "tokens")["requests"], 1);
    assert_eq!(row(&all, "(no key)")["requests"], 1);
}

// ---------------------------------------------------------------------------------------------
// The usage report and metrics

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_report_and_metrics_follow_the_requests() {
    let ok = Fake::start(Mode::Ok).await;
    let bad = Fake::start(Mode::Fail500).await;
    let toml = format!(
        "[gateway]\nattempts = 1\nfailures_before_cooldown = 1000\n\
         [gateway.prices]\ncheap = {{ input = 1.0, output = 2.0 }}\n{}{}{}{}",
        provider("ok", &ok.url, 10.0),
        provider("bad", &bad.url, 10.0),
        route(
            "r1",
            "allow",
            &[r#"{ provider = "ok", model = "m", price = "cheap" }"#]
        ),
        route(
            "r2",
            "allow",
            &[
                r#"{ provider = "bad", model = "m", price = "cheap" }"#,
                r#"{ provider = "ok", model = "m", price = "cheap" }"#
            ]
        ),
    );
    let (p, _dir) = open(&toml);
    for _ in 0..2 {
        assert_eq!(answer(&p, &chat_body("r1", "hi", false)).await, OK_TEXT);
    }
    // A streamed request is metered from the usage the upstream reports at its end (asked
    // for upstream even though this client did not ask for it).
    let (status, _, bytes) = chat(&p, &chat_body("r1", "hi", true), None).await;
    assert_eq!(status, StatusCode::OK);
    let data = sse_data(&bytes);
    assert_eq!(sse_text(&data), OK_TEXT);
    assert!(!data.iter().any(|d| d.contains("\"usage\"")), "{data:?}");
    assert_eq!(ok.bodies()[2]["stream_options"]["include_usage"], true);
    for _ in 0..2 {
        assert_eq!(answer(&p, &chat_body("r2", "hi", false)).await, OK_TEXT);
    }

    let report = usage(&p, "by=route").await;
    assert_eq!(report["by"], "route");
    assert_eq!(report["assumptions"]["reference_model"], "gpt-4o");
    let r1 = row(&report, "r1");
    assert_eq!(r1["requests"], 3);
    assert_eq!(r1["errors"], 0);
    assert_eq!(r1["prompt_tokens"], 3 * PROMPT_TOKENS);
    assert_eq!(r1["completion_tokens"], 3 * COMPLETION_TOKENS);
    // cheap: $1 in, $2 out per 1M; gpt-4o: $2.50 in, $10 out.
    let cost = 3.0 * (100.0 * 1.0 + 50.0 * 2.0) / 1e6;
    let reference = 3.0 * (100.0 * 2.5 + 50.0 * 10.0) / 1e6;
    assert_close(f(&r1["cost"]), cost, "r1 cost");
    assert_close(f(&r1["reference_cost"]), reference, "r1 reference cost");
    assert_close(f(&r1["savings"]), reference - cost, "r1 savings");
    assert_close(
        f(&r1["savings_percent"]),
        100.0 * (reference - cost) / reference,
        "r1 savings %",
    );
    assert!(r1["mean_ttft_ms"].as_f64().is_some());
    let r2 = row(&report, "r2");
    assert_eq!(r2["requests"], 2);
    assert_close(f(&r2["cost"]), 2.0 * (100.0 + 100.0) / 1e6, "r2 cost");
    assert_eq!(report["total"]["requests"], 5);
    assert_close(f(&report["total"]["cost"]), 5.0 * 200.0 / 1e6, "total cost");

    // Other groupings, another reference, a window.
    assert_eq!(
        row(&usage(&p, "by=deployment").await, "ok/m")["requests"],
        5
    );
    assert_eq!(row(&usage(&p, "by=model").await, "m")["requests"], 5);
    let mini = usage(&p, "by=route&reference=gpt-4o-mini").await;
    assert_eq!(mini["assumptions"]["reference_model"], "gpt-4o-mini");
    assert_close(
        f(&row(&mini, "r1")["reference_cost"]),
        3.0 * (100.0 * 0.15 + 50.0 * 0.60) / 1e6,
        "gpt-4o-mini reference",
    );
    assert_eq!(usage(&p, "since=1h").await["total"]["requests"], 5);
    let future = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let later = usage(&p, &format!("since={future}")).await;
    assert_eq!(later["rows"].as_array().unwrap().len(), 0);
    assert_eq!(later["total"]["requests"], 0);
    for bad_query in ["by=colour", "reference=no-such-model", "since=yesterday"] {
        let (status, bytes) = get(&p, &format!("/v1/usage?{bad_query}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad_query}");
        assert_eq!(json_of(&bytes)["error"]["code"], "invalid_request");
    }

    let text = metrics_text(&p, None).await;
    let r1_ok = r#"{route="r1",deployment="ok/m""#;
    assert_eq!(
        metric(
            &text,
            &format!("hearth_gateway_requests_total{r1_ok},outcome=\"ok\"}}")
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            &format!("hearth_gateway_tokens_total{r1_ok},direction=\"input\"}}")
        ),
        Some(300.0)
    );
    assert_eq!(
        metric(
            &text,
            &format!("hearth_gateway_tokens_total{r1_ok},direction=\"output\"}}")
        ),
        Some(150.0)
    );
    assert_close(
        metric(&text, &format!("hearth_gateway_cost_usd_total{r1_ok}}}")).unwrap(),
        cost,
        "cost metric",
    );
    assert_eq!(
        metric(
            &text,
            &format!("hearth_gateway_request_duration_seconds_count{r1_ok}}}")
        ),
        Some(3.0)
    );
    assert_eq!(
        metric(
            &text,
            &format!("hearth_gateway_time_to_first_token_seconds_count{r1_ok}}}")
        ),
        Some(3.0)
    );
    assert_eq!(
        metric(
            &text,
            r#"hearth_gateway_fallbacks_total{route="r2",deployment="bad/m"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &text,
            r#"hearth_gateway_requests_total{route="r2",deployment="ok/m",outcome="ok"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        ledger_sum(
            &p,
            "SELECT SUM(fallbacks) FROM gateway_usage WHERE route = 'r2'"
        ),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_model_is_a_404_that_leaves_no_ledger_row_or_metric() {
    let (p, _dir) = open("");
    let (status, _, bytes) = chat(&p, &chat_body("no-such-model-x1", "hi", false), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json_of(&bytes)["error"]["code"], "model_not_found");
    // Client-chosen names must not become ledger rows or metric labels.
    let report = p
        .gateway()
        .usage_report(None, None, hearth_gateway::ledger::GroupBy::Route, None)
        .unwrap();
    assert!(report.rows.is_empty(), "{:?}", report.rows);
    assert!(!metrics_text(&p, None).await.contains("no-such-model-x1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_never_streams_still_answers_a_streaming_client() {
    let fake = Fake::start(Mode::NeverStreams).await;
    let toml = format!(
        "{}{}",
        provider("plain", &fake.url, 10.0),
        route("r", "allow", &[r#"{ provider = "plain", model = "m" }"#]),
    );
    let (p, _dir) = open(&toml);
    assert_eq!(streamed(&p, &chat_body("r", "hi", true)).await, OK_TEXT);
    assert_eq!(fake.hits(), 1);
}

/// POSTs `body` to `path` without a key: the status and the body.
async fn post_anon(platform: &Platform, path: &str, body: &Value) -> (StatusCode, Vec<u8>) {
    let (status, _, bytes) = common::call(platform, post_json(path, body, None)).await;
    (status, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_and_rerank_go_upstream_with_failover_privacy_and_the_ledger() {
    let bad = Fake::start(Mode::Fail500).await;
    let ok = Fake::start(Mode::Ok).await;
    let toml = format!(
        "[embeddings]\nmax_inputs_per_request = 4\n[gateway]\nattempts = 1\nfailures_before_cooldown = 100\n{}{}{}{}{}",
        provider("bad", &bad.url, 10.0),
        provider("ok", &ok.url, 10.0),
        route(
            "emb",
            "redact",
            &[
                r#"{ provider = "bad", model = "e" }"#,
                r#"{ provider = "ok", model = "e-remote" }"#
            ]
        ),
        route("rank", "redact", &[r#"{ provider = "ok", model = "r-remote" }"#]),
        "[[gateway.routes]]\nalias = \"strict\"\nprivacy = \"allow\"\nrefuse = [\"card\"]\ndeployments = [{ provider = \"ok\", model = \"e\" }]\n",
    );
    let (p, _dir) = open(&toml);
    let secret = EMAILS[0];
    let texts = [format!("write to {secret} today"), "hello".to_owned()];
    let (status, bytes) = post_anon(
        &p,
        "/v1/embeddings",
        &json!({"model": "emb", "input": texts}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let answer = json_of(&bytes);
    assert_eq!(answer["model"], "emb", "answered under the route's name");
    assert_eq!(answer["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        answer["data"][1]["embedding"][0], 5.0,
        "the upstream's vectors"
    );
    assert_eq!((bad.hits(), ok.hits()), (1, 1), "failed over");
    // What left the machine: the deployment's model name, the personal data redacted.
    let sent = ok.bodies().pop().unwrap();
    assert_eq!(sent["model"], "e-remote");
    assert!(!sent.to_string().contains(secret), "{sent}");
    assert_nothing_left(&ok.bodies(), &[secret.to_string()]);

    let documents = [
        "Refunds take five days.".to_owned(),
        format!("Mail {secret} for refunds of damaged parcels."),
        "Parcels ship on Monday.".to_owned(),
    ];
    let (status, bytes) = post_anon(&p, "/v1/rerank", &json!({"model": "rank", "query": "refunds damaged parcels", "documents": documents, "top_n": 2})).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let ranked = json_of(&bytes);
    assert_eq!(ranked["model"], "rank");
    let results = ranked["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "top_n applied");
    assert_eq!(results[0]["index"], 1);
    assert_eq!(results[0]["relevance_score"], 1.0);
    // The document comes back as the client wrote it, personal data included.
    assert_eq!(results[0]["document"]["text"], documents[1].as_str());
    assert_eq!(
        ranked["usage"]["prompt_tokens"], PROMPT_TOKENS,
        "as the upstream said"
    );
    assert_nothing_left(&ok.bodies(), &[secret.to_string()]);
    let sent = ok.bodies().pop().unwrap();
    assert_eq!(sent["model"], "r-remote");
    assert!(
        sent.get("top_n").is_none(),
        "every document is scored upstream: {sent}"
    );

    // A refused kind never leaves, and nothing is charged for it; nor does a request over
    // the local limits.
    let before = ok.hits();
    let (status, bytes) = post_anon(
        &p,
        "/v1/embeddings",
        &json!({"model": "emb", "input": ["a", "b", "c", "d", "e"]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json_of(&bytes)["error"]["param"], "input");
    assert!(String::from_utf8_lossy(&bytes).contains("at most 4"));
    let (status, bytes) = post_anon(
        &p,
        "/v1/embeddings",
        &json!({"model": "strict", "input": format!("card {}", CARDS[0])}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json_of(&bytes)["error"]["code"], "pii_refused");
    assert_eq!(ok.hits(), before);

    // The ledger and the audit log have both, under their routes and deployments.
    let report = usage(&p, "by=deployment").await;
    assert_eq!(row(&report, "ok/e-remote")["requests"], 1);
    assert_eq!(row(&report, "ok/r-remote")["requests"], 1);
    // Each call is billed what the upstream reports, at most one token per byte of the
    // texts sent (these texts are shorter than the 100 tokens the fake claims).
    for (route, texts) in [
        ("emb", json!({"input": texts}).to_string()),
        (
            "rank",
            json!({"query": "refunds damaged parcels", "documents": documents}).to_string(),
        ),
    ] {
        let billed = ledger_sum(
            &p,
            &format!("SELECT SUM(prompt_tokens) FROM gateway_usage WHERE route = '{route}'"),
        );
        assert!(
            billed > 0 && billed <= texts.len() as i64,
            "{route}: {billed}"
        );
    }
    let records = audit(&p);
    let emb = records
        .iter()
        .find(|r| r.deployment == "ok/e-remote")
        .expect("an audit record of the embeddings call");
    assert_eq!(emb.redactions.get("email"), Some(&1));
    assert!(records
        .iter()
        .any(|r| r.deployment == "bad/e" && r.outcome.contains("500")));

    // An answer with a vector missing is the upstream's failure, not an answer.
    ok.set_mode(Mode::ShortAnswer);
    let (status, bytes) = post_anon(
        &p,
        "/v1/embeddings",
        &json!({"model": "emb", "input": ["a", "b"]}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(String::from_utf8_lossy(&bytes).contains("1 vectors for 2 inputs"));

    // An upstream refusing the request is answered as such, not failed over.
    ok.set_mode(Mode::Reject400);
    let (status, bytes) = post_anon(
        &p,
        "/v1/rerank",
        &json!({"model": "rank", "query": "q", "documents": ["d"]}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(json_of(&bytes)["error"]["code"], "upstream_rejected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_completions_go_upstream_with_failover_privacy_and_the_ledger() {
    let bad = Fake::start(Mode::Fail500).await;
    let ok = Fake::start(Mode::Echo).await;
    let toml = format!(
        "[llm]\nqueue_capacity = 4\n[gateway]\nattempts = 1\nfailures_before_cooldown = 100\n{}{}{}{}",
        provider("bad", &bad.url, 10.0),
        provider("ok", &ok.url, 10.0),
        route(
            "txt",
            "redact",
            &[
                r#"{ provider = "bad", model = "t" }"#,
                r#"{ provider = "ok", model = "t-remote" }"#
            ]
        ),
        "[[gateway.routes]]\nalias = \"strict\"\nprivacy = \"allow\"\nrefuse = [\"card\"]\ndeployments = [{ provider = \"ok\", model = \"t\" }]\n",
    );
    let (p, _dir) = open(&toml);
    let secret = EMAILS[0];
    let prompts = [
        format!("Dear {secret}, your parcel"),
        "Once upon".to_owned(),
    ];
    let (status, bytes) = post_anon(
        &p,
        "/v1/completions",
        &json!({"model": "txt", "prompt": prompts, "max_tokens": 16}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let answer = json_of(&bytes);
    assert_eq!(answer["object"], "text_completion");
    assert_eq!(answer["model"], "txt", "answered under the route's name");
    // Each prompt's own answer, in order; the placeholder the upstream echoed restored.
    assert_eq!(answer["choices"][0]["text"], prompts[0].as_str());
    assert_eq!(answer["choices"][1]["text"], prompts[1].as_str());
    assert_eq!(answer["choices"][1]["index"], 1);
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
    assert_eq!(answer["usage"]["prompt_tokens"], PROMPT_TOKENS);
    assert_eq!(answer["usage"]["completion_tokens"], COMPLETION_TOKENS);
    assert_eq!((bad.hits(), ok.hits()), (1, 1), "failed over");
    let sent = ok.bodies().pop().unwrap();
    assert_eq!(sent["model"], "t-remote");
    assert_eq!(sent["max_tokens"], 16);
    assert_nothing_left(&ok.bodies(), &[secret.to_string()]);

    // Streaming: text_completion chunks, the placeholder restored across pieces, usage last.
    let (status, _, bytes) = common::call(
        &p,
        post_json(
            "/v1/completions",
            &json!({"model": "txt", "prompt": prompts[0], "stream": true,
                "stream_options": {"include_usage": true}}),
            None,
        ),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let body = String::from_utf8(bytes).unwrap();
    let chunks: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, prompts[0]);
    assert!(
        chunks.iter().all(|c| c["object"] == "text_completion"),
        "{body}"
    );
    let last = chunks.last().unwrap();
    assert_eq!(
        last["usage"]["completion_tokens"], COMPLETION_TOKENS,
        "{body}"
    );
    let sent = ok.bodies().pop().unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    assert!(
        sent["max_tokens"].as_u64().is_some(),
        "a limit always travels: {sent}"
    );
    assert_nothing_left(&ok.bodies(), &[secret.to_string()]);

    // What cannot be checked or is refused never leaves.
    let before = ok.hits();
    for (body, code) in [
        (
            json!({"model": "txt", "prompt": [1, 2, 3]}),
            "invalid_request_error",
        ),
        (
            json!({"model": "txt", "prompt": ["a", "b"], "stream": true}),
            "invalid_request_error",
        ),
        (
            json!({"model": "txt", "prompt": vec!["a"; 5]}),
            "invalid_request_error",
        ),
        (
            json!({"model": "strict", "prompt": format!("card {}", CARDS[0])}),
            "pii_refused",
        ),
    ] {
        let (status, bytes) = post_anon(&p, "/v1/completions", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let error = json_of(&bytes);
        assert!(
            error["error"]["code"] == code || error["error"]["type"] == code,
            "{body}: {error}"
        );
        assert_eq!(error["error"]["param"], "prompt", "{error}");
    }
    assert_eq!(ok.hits(), before);

    // The ledger has each call under the deployment that answered, the audit the redaction.
    let report = usage(&p, "by=deployment").await;
    assert_eq!(row(&report, "ok/t-remote")["requests"], 2);
    // The first call may generate at most 2 prompts x 16 tokens and is billed no more than
    // that, whatever the upstream reports; the stream what it reports.
    assert_eq!(
        row(&report, "ok/t-remote")["completion_tokens"],
        2 * 16 + COMPLETION_TOKENS
    );
    let records = audit(&p);
    assert!(records
        .iter()
        .any(|r| r.deployment == "ok/t-remote" && r.redactions.get("email") == Some(&1)));

    // An upstream refusing the request is answered as such, not failed over; no upstream
    // answering is a 503.
    ok.set_mode(Mode::Reject400);
    let (status, bytes) = post_anon(
        &p,
        "/v1/completions",
        &json!({"model": "txt", "prompt": "x"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json_of(&bytes)["error"]["code"], "upstream_rejected");
    ok.set_mode(Mode::Fail500);
    let (status, _) = post_anon(
        &p,
        "/v1/completions",
        &json!({"model": "txt", "prompt": "x"}),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tei_rerank_and_score_go_upstream_redacted_and_metered() {
    let ok = Fake::start(Mode::Ok).await;
    let toml = format!(
        "[gateway]\nattempts = 1\n{}{}",
        provider("ok", &ok.url, 10.0),
        route(
            "rank",
            "redact",
            &[r#"{ provider = "ok", model = "r-remote" }"#]
        ),
    );
    let (p, _dir) = open(&toml);
    let secret = EMAILS[1];
    let texts = [
        "Parcels ship on Monday.".to_owned(),
        format!("Write to {secret} about damaged parcels."),
    ];
    // TEI's shape: one query against every text, sent upstream as a rerank.
    let (status, bytes) = post_anon(
        &p,
        "/rerank",
        &json!({"model": "rank", "query": "damaged parcels", "texts": texts, "return_text": true}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let ranks = json_of(&bytes);
    assert_eq!(ranks[0]["index"], 1, "{ranks}");
    assert_eq!(ranks[0]["score"], 1.0);
    assert_eq!(ranks[1]["score"], 0.5);
    assert_eq!(
        ranks[0]["text"],
        texts[1].as_str(),
        "the client's own text comes back"
    );
    let sent = ok.bodies().pop().unwrap();
    assert_eq!(sent["model"], "r-remote");
    assert_eq!(sent["documents"].as_array().unwrap().len(), 2, "{sent}");

    // vLLM's score: one text against many is a rerank upstream; two lists go to /score.
    let (status, bytes) = post_anon(
        &p,
        "/v1/score",
        &json!({"model": "rank", "text_1": "damaged parcels", "text_2": texts}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let scored = json_of(&bytes);
    assert_eq!(scored["model"], "rank");
    assert_eq!(scored["data"][1]["score"], 1.0);
    assert!(ok.bodies().last().unwrap().get("query").is_some());
    let (status, bytes) = post_anon(
        &p,
        "/v1/score",
        &json!({"model": "rank", "text_1": ["monday", format!("refund {secret}")], "text_2": texts}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let scored = json_of(&bytes);
    assert_eq!(scored["data"][0]["score"], 1.0, "{scored}");
    // Half the words: the address, redacted alike in both texts, but not "refund".
    assert_eq!(scored["data"][1]["score"], 0.5, "{scored}");
    assert_eq!(scored["usage"]["prompt_tokens"], PROMPT_TOKENS);
    let sent = ok.bodies().pop().unwrap();
    assert_eq!(sent["text_1"].as_array().unwrap().len(), 2, "{sent}");
    assert_nothing_left(&ok.bodies(), &[secret.to_string()]);
    assert_eq!(ok.hits(), 3);
    let report = usage(&p, "by=deployment").await;
    assert_eq!(row(&report, "ok/r-remote")["requests"], 3);
}
