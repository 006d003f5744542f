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
