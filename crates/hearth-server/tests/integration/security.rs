//! The default server as a hostile web page and a careless client meet it: bodies that do
//! not say they are JSON, foreign Host and Origin headers (CSRF, DNS rebinding), trailing
//! bytes, oversize bodies on a real socket, the bearer scheme in any case, client errors
//! that are 4xx.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use hearth_core::{ApiKey, Config, Platform};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common;

fn platform(dir: &tempfile::TempDir, edit: impl FnOnce(&mut Config)) -> Platform {
    let mut config = Config {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    edit(&mut config);
    Platform::open(config).unwrap()
}

async fn call(p: &Platform, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let (status, headers, bytes) = common::call(p, request).await;
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, headers, value)
}

fn items_body() -> String {
    json!({"items": [{"id": "i1", "title": "Planted by a web page"}]}).to_string()
}

async fn stored_items(p: &Platform) -> usize {
    let (status, _, _) = call(p, Request::get("/v1/items/i1").body(Body::empty()).unwrap()).await;
    usize::from(status == StatusCode::OK)
}

#[tokio::test]
async fn a_body_that_is_not_declared_json_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(&dir, |_| {});
    for content_type in [
        None,
        Some("text/plain"),
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=----x"),
    ] {
        let mut request = Request::post("/v1/items");
        if let Some(ct) = content_type {
            request = request.header(header::CONTENT_TYPE, ct);
        }
        let (status, _, body) = call(&p, request.body(Body::from(items_body())).unwrap()).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}: {body}"
        );
        assert_eq!(body["error"]["code"], "unsupported_media_type");
    }
    // The same body for a support session (whose body is optional) and a chat.
    for path in ["/v1/support/sessions", "/v1/chat/completions", "/v1/events"] {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from("{\"metadata\": {}}"))
            .unwrap();
        let (status, _, _) = call(&p, request).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{path}");
    }
    assert_eq!(stored_items(&p).await, 0);
    let request = Request::post("/v1/items")
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(items_body()))
        .unwrap();
    let (status, _, body) = call(&p, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(stored_items(&p).await, 1);
}

#[tokio::test]
async fn foreign_hosts_and_origins_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(&dir, |_| {});
    let post = |host: &str, origin: Option<&str>| {
        let mut request = Request::post("/v1/items")
            .header(header::HOST, host)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        request.body(Body::from(items_body())).unwrap()
    };
    // DNS rebinding: the attacker's name now points at 127.0.0.1.
    let (status, _, body) = call(&p, post("rebind.attacker.example:8080", None)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "host_not_allowed");
    let (status, _, _) = call(
        &p,
        Request::get("/v1/models")
            .header(header::HOST, "rebind.attacker.example")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "reads too");
    // CSRF: a page elsewhere posts to the operator's local server.
    for origin in ["https://attacker.example", "null", "http://127.0.0.1:9999"] {
        let (status, _, body) = call(&p, post("127.0.0.1:8080", Some(origin))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin}: {body}");
        assert_eq!(body["error"]["code"], "origin_not_allowed");
    }
    assert_eq!(stored_items(&p).await, 0);
    // The server's own pages and non-browser clients pass.
    let (status, _, _) = call(&p, post("localhost:8080", Some("http://localhost:8080"))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call(&p, post("10.0.0.7:8080", None)).await;
    assert_eq!(status, StatusCode::OK);
    // No CORS unless configured: a foreign page may not read answers.
    let (_, headers, _) = call(
        &p,
        Request::get("/health")
            .header(header::ORIGIN, "https://attacker.example")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
}

#[tokio::test]
async fn configured_hosts_and_origins_pass_with_cors() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(&dir, |c| {
        c.server.allowed_hosts = vec!["hearth.corp.example".into()];
        c.server.allowed_origins = vec!["https://shop.corp.example".into()];
    });
    let request = Request::post("/v1/items")
        .header(header::HOST, "hearth.corp.example")
        .header(header::ORIGIN, "https://shop.corp.example")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(items_body()))
        .unwrap();
    let (status, headers, body) = call(&p, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://shop.corp.example"
    );
    let preflight = Request::options("/v1/items")
        .header(header::HOST, "hearth.corp.example")
        .header(header::ORIGIN, "https://shop.corp.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "content-type,authorization",
        )
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = call(&p, preflight).await;
    assert!(status.is_success(), "{status}");
    assert_eq!(
        headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://shop.corp.example"
    );
    let request = Request::post("/v1/items")
        .header(header::HOST, "other.corp.example")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(items_body()))
        .unwrap();
    let (status, _, _) = call(&p, request).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let request = Request::post("/v1/items")
        .header(header::ORIGIN, "https://attacker.example")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(items_body()))
        .unwrap();
    let (status, headers, _) = call(&p, request).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
}

#[tokio::test]
async fn trailing_bytes_after_the_json_body_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(&dir, |_| {});
    for body in [
        format!("{} {{\"items\": []}}", items_body()),
        format!("{}garbage", items_body()),
        format!("{}]", items_body()),
    ] {
        let request = Request::post("/v1/items")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap();
        let (status, _, value) = call(&p, request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{value}");
        assert_eq!(value["error"]["code"], "invalid_json");
    }
    assert_eq!(stored_items(&p).await, 0);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(&dir, |c| c.server.api_keys = vec![ApiKey::new("s3cret")]);
    for value in ["Bearer s3cret", "bearer s3cret", "BEARER   s3cret"] {
        let request = Request::get("/v1/models")
            .header(header::AUTHORIZATION, value)
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = call(&p, request).await;
        assert_eq!(status, StatusCode::OK, "{value}: {body}");
    }
    for value in ["Basic s3cret", "Bearer", "Bearer wrong", "s3cret"] {
        let request = Request::get("/v1/models")
            .header(header::AUTHORIZATION, value)
            .body(Body::empty())
            .unwrap();
        let (status, _, _) = call(&p, request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{value}");
    }
}

#[tokio::test]
async fn stored_fields_are_bounded_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(&dir, |_| {});
    let post = |path: &str, body: Value| {
        Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let long = "x".repeat(300);
    let cases = [
        (
            "/v1/items",
            json!({"items": [{"id": "ok"}, {"id": long}]}),
            "items[1].id",
        ),
        (
            "/v1/events",
            json!({"events": [{"user": "u", "item": "i", "type": "v".repeat(100)}]}),
            "events[0].type",
        ),
        (
            "/v1/events",
            json!({"events": [{"id": long, "user": "u", "item": "i", "type": "view"}]}),
            "events[0].id",
        ),
        (
            "/v1/users",
            json!({"users": [{"id": "u", "attributes": {"bio": "x".repeat(70_000)}}]}),
            "users[0].attributes",
        ),
        (
            "/v1/items",
            json!({"items": [{"id": "i", "price": -3.0}]}),
            "items[0].price",
        ),
    ];
    for (path, body, param) in cases {
        let (status, _, value) = call(&p, post(path, body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {value}");
        assert_eq!(value["error"]["param"], param, "{value}");
    }
    let request = Request::delete("/v1/items")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"ids": ["a", long]}).to_string()))
        .unwrap();
    let (status, _, value) = call(&p, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(value["error"]["param"], "ids[1]");
}

#[tokio::test]
async fn the_assistant_answers_a_bad_model_with_a_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(&dir, |_| {});
    common::register_test_models(&p);
    for (model, status, code) in [
        ("no-such-model", StatusCode::NOT_FOUND, "model_not_found"),
        ("minilm", StatusCode::BAD_REQUEST, "wrong_model_kind"),
    ] {
        for stream in [false, true] {
            let request = Request::post("/v1/assistant")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    json!({"wish": "a funny film", "model": model, "stream": stream}).to_string(),
                ))
                .unwrap();
            let (got, _, body) = call(&p, request).await;
            assert_eq!(got, status, "{model} stream={stream}: {body}");
            assert_eq!(body["error"]["code"], code);
            assert_eq!(body["error"]["param"], "model");
        }
    }
}

/// A client that sends a body far over the limit without `Expect: 100-continue` reads a 413,
/// not a reset connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_body_gets_a_413_the_client_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(&dir, |c| c.server.max_body_bytes = 64 * 1024);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(hearth_server::serve(listener, p, async move {
        let _ = stopped.await;
    }));
    for chunked in [false, true] {
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        let body = vec![b' '; 10 * 1024 * 1024];
        let head = if chunked {
            "POST /v1/items HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n"
                .to_owned()
        } else {
            format!(
                "POST /v1/items HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            )
        };
        socket.write_all(head.as_bytes()).await.unwrap();
        if chunked {
            for piece in body.chunks(256 * 1024) {
                let framed = format!("{:x}\r\n", piece.len());
                socket.write_all(framed.as_bytes()).await.unwrap();
                socket.write_all(piece).await.unwrap();
                socket.write_all(b"\r\n").await.unwrap();
            }
            socket.write_all(b"0\r\n\r\n").await.unwrap();
        } else {
            socket.write_all(&body).await.unwrap();
        }
        let mut answer = Vec::new();
        socket.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "chunked={chunked}: {answer}"
        );
        assert!(answer.contains("body_too_large"), "{answer}");
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
