//! Helpers shared by the in-process HTTP tests.

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use hearth_core::Platform;
use http_body_util::BodyExt;
use tower::ServiceExt;

/// Sends one request through `router()` (no sockets) and reads the whole body.
pub async fn call(platform: &Platform, request: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let response = hearth_server::router(platform.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, bytes.to_vec())
}

/// Registers the real small test models as `minilm` (all-MiniLM-L6-v2) and `smollm2`
/// (SmolLM2-135M-Instruct). Not every test binary uses it.
#[allow(dead_code)]
pub fn register_test_models(platform: &Platform) {
    let registry = platform.gateway().registry();
    let models = hearth_testdata::models_dir();
    registry
        .import(&models.join("all-MiniLM-L6-v2"), Some("minilm"))
        .unwrap();
    registry
        .import(
            &models.join("SmolLM2-135M-Instruct.Q4_1.gguf"),
            Some("smollm2"),
        )
        .unwrap();
}

/// The JSON events of a server-sent-events body, `[DONE]` left out.
#[allow(dead_code)]
pub fn sse_events(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).unwrap_or_else(|e| panic!("event {data:?}: {e}")))
        .collect()
}
