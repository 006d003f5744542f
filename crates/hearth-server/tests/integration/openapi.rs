//! /openapi.json says what the server really answers: every operation of the document is
//! called on a server with the real small models, a catalogue, a trained model and a support
//! policy, and every answer (JSON bodies, and each event of a stream) is validated against
//! the document's schema for its status and content type. A status the document does not
//! list for an operation fails too, and so does an operation never answered with success.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use hearth_core::recs::bundle::{train_bundle, TrainOptions};
use hearth_core::recs::models::ModelKind;
use hearth_core::{Config, Platform};
use serde_json::{json, Value};

use crate::common;

/// The served document and the operations answered with success so far.
struct Checker {
    spec: Value,
    answered: BTreeSet<(String, String)>,
}

impl Checker {
    async fn new(platform: &Platform) -> Self {
        let request = Request::get("/openapi.json").body(Body::empty()).unwrap();
        let (status, _, bytes) = common::call(platform, request).await;
        assert_eq!(status, StatusCode::OK);
        let spec: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(spec["openapi"], "3.1.0");
        Checker {
            spec,
            answered: BTreeSet::new(),
        }
    }

    /// Sends `method path` (`template` is its path in the document) and validates the answer;
    /// returns the status and the JSON body (or, for a stream, the list of its events).
    async fn call(
        &mut self,
        platform: &Platform,
        method: &str,
        template: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        let body = match body {
            Some(b) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let (status, headers, bytes) = common::call(platform, request.body(body).unwrap()).await;
        let what = format!("{method} {path} answered {status}");
        let operation = &self.spec["paths"][template][method.to_lowercase()];
        assert!(
            operation.is_object(),
            "{template} {method} is not in the document"
        );
        let response = &operation["responses"][status.as_str()];
        assert!(
            response.is_object(),
            "{what}, a status the document does not list: {}",
            String::from_utf8_lossy(&bytes)
        );
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap()
            .trim()
            .to_owned();
        let media = &response["content"][&content_type];
        assert!(
            media.is_object(),
            "{what} as {content_type}, a content type the document does not list"
        );
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let value = match content_type.as_str() {
            "application/json" => {
                let value: Value = serde_json::from_slice(&bytes)
                    .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"));
                self.validate(&media["schema"], &value, &what);
                value
            }
            "text/event-stream" if media["schema"]["required"] == json!(["event", "data"]) => {
                // Named events (the Messages API): each `event:` line names its data's type.
                let events = common::sse_events(&text);
                assert!(!events.is_empty(), "{what}: an empty stream");
                assert!(!text.contains("[DONE]"), "{what}: {text}");
                let names: Vec<&str> = text
                    .lines()
                    .filter_map(|line| line.strip_prefix("event: "))
                    .collect();
                assert_eq!(names.len(), events.len(), "{what}: {text}");
                let payload = &media["schema"]["properties"]["data"]["contentSchema"];
                for (name, event) in names.iter().zip(&events) {
                    assert_eq!(event["type"], *name, "{what}: {event}");
                    assert_ne!(*name, "error", "{what}: {event}");
                    self.validate(payload, event, &what);
                }
                Value::Array(events)
            }
            "text/event-stream" => {
                let events = common::sse_events(&text);
                assert!(!events.is_empty(), "{what}: an empty stream");
                assert!(text.contains("data: [DONE]"), "{what}: no [DONE]: {text}");
                // Each event as SSE readers see it, then its JSON data as the document says.
                for data in text.lines().filter_map(|line| line.strip_prefix("data: ")) {
                    self.validate(&media["schema"], &json!({ "data": data }), &what);
                }
                let payload = &media["schema"]["properties"]["data"]["anyOf"][1]["contentSchema"];
                for event in &events {
                    assert!(event.get("error").is_none(), "{what}: {event}");
                    self.validate(payload, event, &what);
                }
                Value::Array(events)
            }
            _ => Value::String(text),
        };
        if status.is_success() {
            self.answered
                .insert((method.to_owned(), template.to_owned()));
        }
        (status, value)
    }

    fn validate(&self, schema: &Value, instance: &Value, what: &str) {
        assert!(schema.is_object(), "{what}: the document gives no schema");
        // The schema with the document's components beside it, so its `$ref`s resolve.
        let mut document = schema.clone();
        document["components"] = self.spec["components"].clone();
        let validator = jsonschema::validator_for(&document)
            .unwrap_or_else(|e| panic!("{what}: the document's schema does not compile: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what}, not as the document says:\n{}\n{instance:#}",
            errors.join("\n")
        );
    }

    /// Every operation of the document.
    fn operations(&self) -> BTreeSet<(String, String)> {
        let mut all = BTreeSet::new();
        for (path, operations) in self.spec["paths"].as_object().unwrap() {
            for method in operations.as_object().unwrap().keys() {
                all.insert((method.to_uppercase(), path.clone()));
            }
        }
        all
    }
}

fn platform(dir: &std::path::Path) -> Platform {
    let policy = dir.join("policy.md");
    std::fs::write(
        &policy,
        "Be brief and polite. Answer only questions about orders.",
    )
    .unwrap();
    let mut config = Config {
        data_dir: dir.to_owned(),
        ..Default::default()
    };
    config.support.policy = Some(policy);
    config.support.max_tool_rounds = 1;
    config.llm.context_length = 2048;
    config.recs.embedding_model = Some("minilm".into());
    let platform = Platform::open(config).unwrap();
    common::register_test_models(&platform);
    platform
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_of_every_route_is_as_the_document_says() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    let mut c = Checker::new(&p).await;

    // Operations.
    c.call(&p, "GET", "/health", "/health", None).await;
    c.call(&p, "GET", "/ready", "/ready", None).await;
    c.call(&p, "GET", "/openapi.json", "/openapi.json", None)
        .await;
    c.call(&p, "GET", "/metrics", "/metrics", None).await;

    // Inference.
    let (_, models) = c.call(&p, "GET", "/v1/models", "/v1/models", None).await;
    assert_eq!(models["data"].as_array().unwrap().len(), 2, "{models}");
    c.call(&p, "GET", "/v1/models/{id}", "/v1/models/smollm2", None)
        .await;
    let (status, _) = c
        .call(&p, "GET", "/v1/models/{id}", "/v1/models/nope", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let chat = json!({"model": "smollm2", "max_tokens": 4, "temperature": 0,
        "messages": [{"role": "user", "content": "Say hi"}]});
    let chat_path = "/v1/chat/completions";
    let (status, answer) = c
        .call(&p, "POST", chat_path, chat_path, Some(chat.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let mut streamed = chat.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let (_, events) = c
        .call(&p, "POST", chat_path, chat_path, Some(streamed))
        .await;
    assert!(events.as_array().unwrap().len() >= 3, "{events}");
    let mut bad = chat.clone();
    bad["temperature"] = json!(7);
    let (status, _) = c.call(&p, "POST", chat_path, chat_path, Some(bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The Responses API: whole, streamed, continued, read back, deleted, refused.
    let path = "/v1/responses";
    let ask = json!({"model": "smollm2", "input": "Say hi", "max_output_tokens": 4,
        "temperature": 0});
    let (status, first) = c.call(&p, "POST", path, path, Some(ask.clone())).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let id = first["id"].as_str().unwrap().to_owned();
    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    streamed["previous_response_id"] = json!(id);
    let (_, events) = c.call(&p, "POST", path, path, Some(streamed)).await;
    assert!(events.as_array().unwrap().len() >= 4, "{events}");
    let one = "/v1/responses/{id}";
    let at = format!("/v1/responses/{id}");
    let (status, _) = c.call(&p, "GET", one, &at, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = c.call(&p, "DELETE", one, &at, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = c.call(&p, "GET", one, &at, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = c.call(&p, "DELETE", one, &at, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let mut gone = ask.clone();
    gone["previous_response_id"] = json!(id);
    let (status, _) = c.call(&p, "POST", path, path, Some(gone)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The Messages API, whole, streamed, refused, counted.
    let message = json!({"model": "smollm2", "max_tokens": 4, "temperature": 0,
        "system": "Be brief.", "messages": [{"role": "user", "content": "Say hi"}]});
    let path = "/v1/messages";
    let (status, answer) = c.call(&p, "POST", path, path, Some(message.clone())).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let mut streamed = message.clone();
    streamed["stream"] = json!(true);
    let (_, events) = c.call(&p, "POST", path, path, Some(streamed)).await;
    assert!(events.as_array().unwrap().len() >= 6, "{events}");
    let mut bad = message.clone();
    bad["messages"][0]["content"] = json!([{"type": "image", "source": {}}]);
    let (status, _) = c.call(&p, "POST", path, path, Some(bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let count = "/v1/messages/count_tokens";
    let (status, counted) = c
        .call(
            &p,
            "POST",
            count,
            count,
            Some(json!({"model": "smollm2",
            "messages": [{"role": "user", "content": "Say hi"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{counted}");
    let completion = json!({"model": "smollm2", "prompt": "Once upon", "max_tokens": 3});
    c.call(
        &p,
        "POST",
        "/v1/completions",
        "/v1/completions",
        Some(completion.clone()),
    )
    .await;
    let mut streamed = completion;
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    c.call(
        &p,
        "POST",
        "/v1/completions",
        "/v1/completions",
        Some(streamed),
    )
    .await;
    for format in ["float", "base64"] {
        let (status, _) = c
            .call(
                &p,
                "POST",
                "/v1/embeddings",
                "/v1/embeddings",
                Some(json!({"model": "minilm", "input": ["a kettle", "a teapot"],
                    "encoding_format": format})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    for (path, body) in [
        (
            "/v1/rerank",
            json!({"model": "minilm", "query": "kettle", "documents": ["a kettle", {"text": "a teapot"}],
                "top_n": 1}),
        ),
        (
            "/rerank",
            json!({"model": "minilm", "query": "kettle", "texts": ["a kettle", "a teapot"],
                "return_text": true}),
        ),
        (
            "/v1/score",
            json!({"model": "minilm", "text_1": "kettle", "text_2": ["a kettle", "a teapot"]}),
        ),
    ] {
        let (status, _) = c.call(&p, "POST", path, path, Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }

    // The catalogue, written through the API, and a model trained on it.
    let (status, _) = c
        .call(
            &p,
            "GET",
            "/v1/recommendations/{user_id}",
            "/v1/recommendations/u1",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "no model yet");
    let items: Vec<Value> = (1..=8)
        .map(|i| {
            json!({"id": format!("i{i}"), "title": format!("Kettle model {i}"),
                "categories": [if i % 2 == 0 { "kitchen" } else { "garden" }],
                "price": i as f64 * 10.0, "attributes": {"colour": "red"}})
        })
        .collect();
    c.call(
        &p,
        "POST",
        "/v1/items",
        "/v1/items",
        Some(json!({"items": items})),
    )
    .await;
    let users: Vec<Value> = (1..=5)
        .map(|u| json!({"id": format!("u{u}"), "attributes": {"tier": u}}))
        .collect();
    c.call(
        &p,
        "POST",
        "/v1/users",
        "/v1/users",
        Some(json!({"users": users})),
    )
    .await;
    let events: Vec<Value> = (1..=5)
        .flat_map(|u| {
            (1..=8).filter(move |i| (u + i) % 3 != 0).map(move |i| {
                json!({"id": format!("e{u}-{i}"), "user": format!("u{u}"),
                    "item": format!("i{i}"), "type": "purchase", "timestamp": 1000 + u * 10 + i})
            })
        })
        .collect();
    let (status, stored) = c
        .call(
            &p,
            "POST",
            "/v1/events",
            "/v1/events",
            Some(json!({"events": events})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    let (status, _) = c
        .call(
            &p,
            "POST",
            "/v1/events",
            "/v1/events",
            Some(json!({"events": []})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let store = p.recs_store().unwrap();
    let data = store.dataset(&Default::default()).unwrap();
    let options = TrainOptions {
        models: vec![ModelKind::ItemKnn],
        ..Default::default()
    };
    let bundle = train_bundle(&data, None, &options, &()).unwrap();
    p.recs_artifacts().publish(|d| bundle.save(d)).unwrap();

    // Recommendations, search and the assistant.
    let (status, list) = c
        .call(
            &p,
            "GET",
            "/v1/recommendations/{user_id}",
            "/v1/recommendations/u1?n=3&in_stock=true",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert!(!list["data"].as_array().unwrap().is_empty(), "{list}");
    let (status, _) = c
        .call(
            &p,
            "GET",
            "/v1/recommendations/{user_id}",
            "/v1/recommendations/u1?n=0",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    c.call(
        &p,
        "GET",
        "/v1/items/{id}/similar",
        "/v1/items/i1/similar",
        None,
    )
    .await;
    let (status, _) = c
        .call(
            &p,
            "GET",
            "/v1/items/{id}/similar",
            "/v1/items/nope/similar",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    c.call(
        &p,
        "POST",
        "/v1/recommendations/session",
        "/v1/recommendations/session",
        Some(
            json!({"events": [{"item": "i2"}, {"item": "i4", "type": "cart"}], "n": 3,
            "category": "kitchen"}),
        ),
    )
    .await;
    c.call(
        &p,
        "POST",
        "/v1/search",
        "/v1/search",
        Some(json!({"query": "kettle", "user_id": "u2", "n": 4})),
    )
    .await;
    let wish = json!({"wish": "a red kettle under 50", "stream": false, "candidates": 3});
    let (status, answer) = c
        .call(
            &p,
            "POST",
            "/v1/assistant",
            "/v1/assistant",
            Some(wish.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let mut streamed = wish;
    streamed["stream"] = json!(true);
    c.call(&p, "POST", "/v1/assistant", "/v1/assistant", Some(streamed))
        .await;
    c.call(&p, "GET", "/v1/items/{id}", "/v1/items/i3", None)
        .await;
    c.call(&p, "GET", "/v1/users/{id}", "/v1/users/u3", None)
        .await;
    let (status, _) = c
        .call(&p, "GET", "/v1/users/{id}", "/v1/users/nope", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Support.
    let sessions = "/v1/support/sessions";
    let (status, session) = c
        .call(
            &p,
            "POST",
            sessions,
            sessions,
            Some(json!({"metadata": {"customer": 7}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let id = session["id"].as_str().unwrap().to_owned();
    let messages = format!("{sessions}/{id}/messages");
    let template = "/v1/support/sessions/{id}/messages";
    let (status, turn) = c
        .call(
            &p,
            "POST",
            template,
            &messages,
            Some(json!({"content": "Where is my order?", "stream": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{turn}");
    c.call(
        &p,
        "POST",
        template,
        &messages,
        Some(json!({"content": "It is order 42."})),
    )
    .await;
    let (status, _) = c
        .call(
            &p,
            "POST",
            template,
            &messages,
            Some(json!({"content": "hello", "role": "robot"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A fresh session (no body, or `null`: no metadata) is the agent's: a human may not
    // answer in it yet.
    let (status, _) = c
        .call(&p, "POST", sessions, sessions, Some(Value::Null))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, fresh) = c.call(&p, "POST", sessions, sessions, None).await;
    let fresh = format!("{sessions}/{}/messages", fresh["id"].as_str().unwrap());
    let (status, refused) = c
        .call(
            &p,
            "POST",
            template,
            &fresh,
            Some(json!({"content": "Staff here", "role": "human"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "the agent has the session");
    assert_eq!(refused["error"]["code"], "session_not_handed_over");
    let (_, transcript) = c
        .call(
            &p,
            "GET",
            "/v1/support/sessions/{id}",
            &format!("{sessions}/{id}"),
            None,
        )
        .await;
    assert!(
        transcript["conversation"]["entries"]
            .as_array()
            .unwrap()
            .len()
            >= 4,
        "{transcript}"
    );
    let (status, _) = c
        .call(
            &p,
            "GET",
            "/v1/support/sessions/{id}",
            &format!("{sessions}/nope"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Usage: the requests above, metered.
    let (_, usage) = c
        .call(&p, "GET", "/v1/usage", "/v1/usage?by=model&since=1d", None)
        .await;
    assert!(usage["total"]["requests"].as_u64().unwrap() > 0, "{usage}");
    let (status, _) = c
        .call(&p, "GET", "/v1/usage", "/v1/usage?by=colour", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Deletes last.
    c.call(
        &p,
        "DELETE",
        "/v1/items",
        "/v1/items",
        Some(json!({"ids": ["i8"]})),
    )
    .await;
    c.call(
        &p,
        "DELETE",
        "/v1/users",
        "/v1/users",
        Some(json!({"ids": ["u5"]})),
    )
    .await;

    let missing: Vec<_> = c.operations().difference(&c.answered).cloned().collect();
    assert!(
        missing.is_empty(),
        "operations never answered with success: {missing:?}"
    );
}

/// The refusals of the key check and of the door are described like the rest.
#[tokio::test]
async fn refusals_before_the_handler_are_as_the_document_says() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    config.server.api_keys = vec![hearth_core::ApiKey::new("operator-secret")];
    let p = Platform::open(config).unwrap();
    let mut c = Checker::new(&p).await;
    let (status, _) = c.call(&p, "GET", "/v1/models", "/v1/models", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let request = Request::post("/v1/chat/completions")
        .header(header::AUTHORIZATION, "Bearer operator-secret")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("hi"))
        .unwrap();
    let (status, headers, bytes) = common::call(&p, request).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        headers[header::CONTENT_TYPE].to_str().unwrap(),
        "application/json"
    );
    let schema = &c.spec["paths"]["/v1/chat/completions"]["post"]["responses"]["415"]["content"]
        ["application/json"]["schema"];
    c.validate(schema, &body, "415");
    // Every code the server can answer with is in the document's table and enum.
    let codes = &c.spec["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
        ["code"]["enum"];
    for code in hearth_types::ErrorCode::ALL {
        assert!(
            codes.as_array().unwrap().contains(&json!(code.as_str())),
            "{code:?}"
        );
        assert_eq!(
            c.spec["x-error-codes"][code.as_str()]["status"],
            json!(code.status())
        );
    }
}
