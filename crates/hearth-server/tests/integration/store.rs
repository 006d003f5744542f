//! hearth on PostgreSQL when the database goes away and comes back: what needs the database
//! gets 503 with Retry-After (and is not half done), /ready says so, and service resumes by
//! itself once the database is back, with nothing acknowledged lost.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use hearth_core::{Config, Platform, StoreUrl};
use hearth_gateway::keys::NewKey;
use hearth_gateway::Scope;
use hearth_testdata::PostgresServer;
use serde_json::{json, Value};

use crate::common;

async fn send(
    p: &Platform,
    method: &str,
    uri: &str,
    key: &str,
    body: Option<Value>,
) -> (StatusCode, Option<String>, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let (status, headers, bytes) = common::call(p, request).await;
    let retry_after = headers
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        retry_after,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn events(ids: &[&str]) -> Value {
    json!({"events": ids.iter().map(|id| json!({
        "id": id, "user": "u1", "item": "sku-1", "type": "view", "timestamp": 1_700_000_000
    })).collect::<Vec<_>>()})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_gives_503_and_service_resumes_by_itself() {
    let server = PostgresServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    config.store.url = Some(StoreUrl::new(server.database()));
    let p = Platform::open(config).unwrap();
    let (key, _) = p
        .gateway()
        .keys()
        .unwrap()
        .create(NewKey {
            name: "shop".into(),
            scopes: vec![Scope::RecsRead, Scope::RecsWrite],
            ..Default::default()
        })
        .unwrap();
    let (status, _, value) = send(&p, "POST", "/v1/events", &key, Some(events(&["e1"]))).await;
    assert_eq!(
        (status, value["stored"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    let (status, _, _) = send(&p, "GET", "/ready", &key, None).await;
    assert_eq!(status, StatusCode::OK);

    server.stop();
    // Past the keys' cache, so the key itself is looked up in the database too.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, retry, value) =
        send(&p, "POST", "/v1/events", &key, Some(events(&["e2", "e3"]))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{value}");
    assert_eq!(value["error"]["code"], "database_unavailable", "{value}");
    assert!(retry.is_some_and(|r| r.parse::<u64>().unwrap() >= 1));
    // Nothing of the database's address or error reaches an unauthenticated caller.
    let (status, retry, value) = send(&p, "GET", "/ready", "", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(retry.is_some());
    assert_eq!(
        value,
        json!({"status": "not_ready", "store": "unavailable", "models": "loaded"})
    );
    // /health is liveness: the process is alive, nothing needs restarting.
    let (status, _, _) = send(&p, "GET", "/health", "", None).await;
    assert_eq!(status, StatusCode::OK);

    server.resume();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, _, value) =
            send(&p, "POST", "/v1/events", &key, Some(events(&["e2", "e3"]))).await;
        if status == StatusCode::OK {
            assert_eq!(value["stored"].as_u64(), Some(2), "{value}");
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{value}");
        assert!(
            std::time::Instant::now() < deadline,
            "the database came back but hearth did not: {value}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (status, _, value) = send(&p, "GET", "/ready", "", None).await;
    assert_eq!(status, StatusCode::OK, "{value}");
    // Every acknowledged event is there, the refused ones exactly once (retried).
    assert_eq!(p.recs_store().unwrap().counts().unwrap().2, 3);
}
