//! In-process HTTP tests through `router()` (no sockets): routing, auth, error shapes.
//! The full model path is exercised by tests/openai_client against a live server.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use hearth_core::{ApiKey, Config, Platform};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::common;

fn platform(keys: &[&str]) -> (Platform, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    config.server.api_keys = keys.iter().map(|k| ApiKey::new(*k)).collect();
    config.server.max_body_bytes = 1024;
    (Platform::open(config).unwrap(), dir)
}

async fn call(
    platform: &Platform,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let (status, headers, bytes) = common::call(platform, request).await;
    let value = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, headers, value)
}

fn post(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap()
}

#[tokio::test]
async fn unknown_model_is_a_404_in_openai_shape() {
    let (p, _dir) = platform(&[]);
    let body =
        json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let (status, _, value) = call(&p, post("/v1/chat/completions", body)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(value["error"]["code"], "model_not_found");
    assert_eq!(value["error"]["param"], "model");
    assert_eq!(value["error"]["type"], "not_found_error");
    assert!(value["error"]["message"]
        .as_str()
        .unwrap()
        .contains("hearth models"));
}

#[tokio::test]
async fn malformed_requests_name_the_problem() {
    let (p, _dir) = platform(&[]);
    let (status, _, value) = call(&p, post("/v1/chat/completions", "{oops")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(value["error"]["code"], "invalid_json");
    let (status, _, value) = call(
        &p,
        post("/v1/chat/completions", json!({"messages": []}).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(value["error"]["param"], "model");
    let (status, _, value) = call(
        &p,
        post(
            "/v1/embeddings",
            json!({"model": "m", "input": {"x": 1}}).to_string(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(value["error"]["param"], "input");
    let (status, _, value) = call(
        &p,
        post(
            "/v1/chat/completions",
            json!({"model": "m", "messages": []}).to_string(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(value["error"]["param"], "messages");
}

#[tokio::test]
async fn bad_query_strings_and_non_object_bodies_are_errors_in_the_api_shape() {
    let (p, _dir) = platform(&[]);
    for uri in [
        "/v1/usage?unknown=1",
        "/v1/usage?by=%FF",
        "/v1/recommendations/u1?n=%FF%FE",
    ] {
        let (status, headers, value) =
            call(&p, Request::get(uri).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {value}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{uri}");
        assert_eq!(value["error"]["code"], "invalid_request", "{uri}: {value}");
    }
    // serde would read a struct from an array of its fields: the API takes objects only.
    let (status, _, value) = call(
        &p,
        post(
            "/v1/chat/completions",
            r#"["smollm2", [{"role": "user", "content": "hi"}]]"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(value["error"]["code"], "invalid_json");
}

#[tokio::test]
async fn oversize_bodies_get_413() {
    let (p, _dir) = platform(&[]);
    let big = json!({"model": "m", "input": "x".repeat(4096)}).to_string();
    let (status, _, value) = call(&p, post("/v1/embeddings", big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(value["error"]["code"], "body_too_large");
}

#[tokio::test]
async fn api_keys_guard_everything_but_health_and_openapi() {
    let (p, _dir) = platform(&["sk-test"]);
    let (status, _, value) =
        call(&p, Request::get("/v1/models").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(value["error"]["code"], "missing_api_key");
    let wrong = Request::get("/v1/models")
        .header(header::AUTHORIZATION, "Bearer sk-nope")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&p, wrong).await.2["error"]["code"], "invalid_api_key");
    let right = Request::get("/v1/models")
        .header(header::AUTHORIZATION, "Bearer sk-test")
        .body(Body::empty())
        .unwrap();
    let (status, _, value) = call(&p, right).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(value["object"], "list");
    let (status, _, _) = call(&p, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, value) = call(&p, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(
        (status, value["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, _, value) = call(
        &p,
        Request::get("/openapi.json").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(value["paths"]["/v1/embeddings"]["post"].is_object());
}

#[tokio::test]
async fn unknown_routes_are_openai_shaped_404s_and_are_counted() {
    let (p, _dir) = platform(&[]);
    let (status, _, value) =
        call(&p, Request::get("/v2/nothing").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(value["error"]["code"], "route_not_found");
    let router = hearth_server::router(p.clone());
    let _ = router
        .clone()
        .oneshot(Request::get("/health").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let metrics = router
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(
        metrics
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains("hearth_http_requests_total{route=\"/health\",status=\"200\"} 1"),
        "{text}"
    );
}

/// `chat_template_kwargs` and `reasoning_effort` reach the model's chat template (here a
/// per-model override from `[llm] chat_templates`, with real SmolLM2 behind it): the
/// prompt grows by what the template writes for them. Names hearth sets itself and unknown
/// efforts are 400s naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_keyword_arguments_and_reasoning_effort_reach_the_template() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("smollm2.jinja");
    std::fs::write(
        &template,
        "{%- for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}\
         {%- if enable_thinking is defined and enable_thinking is false %}<|im_start|>system\n\
         Answer at once, without thinking first, in one short sentence please.<|im_end|>\n{% endif %}\
         {%- if reasoning_effort is defined %}<|im_start|>system\nEffort: {{ reasoning_effort }} \
         {{ reasoning_effort }} {{ reasoning_effort }}<|im_end|>\n{% endif %}\
         {%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    )
    .unwrap();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Default::default()
    };
    config
        .llm
        .chat_templates
        .insert("smollm2".into(), template.clone());
    let p = Platform::open(config).unwrap();
    common::register_test_models(&p);
    let prompt_tokens = |extra: Value| {
        let p = p.clone();
        async move {
            let mut body = json!({"model": "smollm2", "max_tokens": 1, "temperature": 0,
                "messages": [{"role": "user", "content": "Hi"}]});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let (status, _, value) = call(&p, post("/v1/chat/completions", body.to_string())).await;
            (status, value)
        }
    };
    let (status, plain) = prompt_tokens(json!({})).await;
    assert_eq!(status, StatusCode::OK, "{plain}");
    let plain = plain["usage"]["prompt_tokens"].as_u64().unwrap();
    let (_, value) =
        prompt_tokens(json!({"chat_template_kwargs": {"enable_thinking": false}})).await;
    let no_thinking = value["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(no_thinking > plain + 10, "{plain} vs {no_thinking}");
    let (_, value) =
        prompt_tokens(json!({"chat_template_kwargs": {"enable_thinking": true}})).await;
    assert_eq!(value["usage"]["prompt_tokens"].as_u64().unwrap(), plain);
    let (_, value) = prompt_tokens(json!({"reasoning_effort": "high"})).await;
    let effort = value["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(effort > plain + 5, "{plain} vs {effort}");
    // A kwarg of the same name wins over the request's field.
    let (_, value) = prompt_tokens(json!({"reasoning_effort": "high",
        "chat_template_kwargs": {"reasoning_effort": "lowest of the low, really"}}))
    .await;
    assert!(value["usage"]["prompt_tokens"].as_u64().unwrap() > effort);

    let (status, value) = prompt_tokens(json!({"reasoning_effort": "extreme"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{value}");
    assert_eq!(value["error"]["param"], "reasoning_effort");
    let (status, value) = prompt_tokens(json!({"chat_template_kwargs": {"messages": []}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{value}");
    assert_eq!(value["error"]["param"], "chat_template_kwargs.messages");
    let (status, value) = prompt_tokens(json!({"chat_template_kwargs": [1]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{value}");
}
