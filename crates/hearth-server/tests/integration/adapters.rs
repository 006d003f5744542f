//! LoRA adapters as models of their own through `router()`: listed in /v1/models with their
//! base, chosen by name on every generating endpoint and in a gateway route, declared in
//! configuration or imported and removed while serving. The adapters are the ones
//! scripts/make-lora-adapters.sh writes for SmolLM2-135M.

use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use hearth_core::AdapterConfig;
use hearth_core::{Config, Platform};
use hearth_gateway::config::{DeploymentConfig, RouteConfig};
use hearth_gateway::LoadedModel;
use serde_json::{json, Value};

use crate::common;

fn adapter(name: &str) -> std::path::PathBuf {
    hearth_testdata::models_dir()
        .join("adapters")
        .join(format!("{name}.gguf"))
}

fn platform(dir: &tempfile::TempDir) -> Platform {
    let mut config = Config {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    config.llm.context_length = 1024;
    config.models.adapters = vec![AdapterConfig {
        name: "tuned-b".into(),
        path: adapter("smollm2-b"),
        base: "smollm2".into(),
    }];
    config.gateway.routes = vec![RouteConfig {
        alias: "support".into(),
        deployments: vec![DeploymentConfig {
            provider: "local".into(),
            model: "tuned-a".into(),
            price: None,
        }],
        privacy: Default::default(),
        refuse: Vec::new(),
        strategy: Default::default(),
    }];
    // The declared adapter's base must be registered before the platform opens.
    {
        let bare = Platform::open(Config {
            data_dir: dir.path().to_owned(),
            ..Default::default()
        })
        .unwrap();
        common::register_test_models(&bare);
    }
    let platform = Platform::open(config).unwrap();
    platform
        .gateway()
        .registry()
        .import_adapter(&adapter("smollm2-a"), "smollm2", Some("tuned-a"))
        .unwrap();
    platform
}

async fn call(
    platform: &Platform,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let builder = Request::builder().method(method).uri(path);
    let request = match body {
        Some(body) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string())),
        None => builder.body(Body::empty()),
    }
    .unwrap();
    let (status, _, bytes) = common::call(platform, request).await;
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)));
    (status, value)
}

async fn chat(platform: &Platform, model: &str) -> (StatusCode, Value) {
    call(
        platform,
        "POST",
        "/v1/chat/completions",
        Some(json!({
            "model": model,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 16,
            "temperature": 0,
        })),
    )
    .await
}

async fn chat_text(platform: &Platform, model: &str) -> String {
    let (status, value) = chat(platform, model).await;
    assert_eq!(status, StatusCode::OK, "{value}");
    assert_eq!(value["model"], model);
    value["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn loaded_adapters(platform: &Platform) -> usize {
    platform
        .gateway()
        .loaded()
        .iter()
        .find_map(|m| match m {
            LoadedModel::Chat { info, engine } if info.name == "smollm2" => {
                Some(engine.gauges().loaded_adapters.load(Ordering::Relaxed))
            }
            _ => None,
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn adapters_are_listed_with_their_base_and_answer_by_name_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let platform = platform(&dir);
    let (status, list) = call(&platform, "GET", "/v1/models", None).await;
    assert_eq!(status, StatusCode::OK);
    let find = |id: &str| {
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("{id} missing from {list}"))
            .clone()
    };
    assert_eq!(find("tuned-a")["parent"], "smollm2");
    assert_eq!(find("tuned-b")["parent"], "smollm2");
    assert_eq!(find("tuned-a")["meta"]["kind"], "chat");
    assert!(find("smollm2").get("parent").is_none());
    let (status, one) = call(&platform, "GET", "/v1/models/tuned-a", None).await;
    assert_eq!(
        (status, &one["parent"]),
        (StatusCode::OK, &json!("smollm2"))
    );

    let base = chat_text(&platform, "smollm2").await;
    let a = chat_text(&platform, "tuned-a").await;
    let b = chat_text(&platform, "tuned-b").await;
    assert_ne!(a, base);
    assert_ne!(b, base);
    assert_ne!(a, b);
    // One engine: the base's, with both adapters loaded into it.
    let chat_engines = platform
        .gateway()
        .loaded()
        .iter()
        .filter(|m| matches!(m, LoadedModel::Chat { .. }))
        .count();
    assert_eq!(chat_engines, 3, "base + two adapter handles");
    assert_eq!(loaded_adapters(&platform), 2);
    // A route to the adapter answers as the adapter.
    let (status, routed) = chat(&platform, "support").await;
    assert_eq!(status, StatusCode::OK, "{routed}");
    assert_eq!(routed["choices"][0]["message"]["content"], a.as_str());

    // The other generating endpoints take the adapter's name too.
    let (status, text) = call(
        &platform,
        "POST",
        "/v1/completions",
        Some(json!({"model": "tuned-a", "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let (_, base_text) = call(
        &platform,
        "POST",
        "/v1/completions",
        Some(json!({"model": "smollm2", "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0})),
    )
    .await;
    assert_ne!(text["choices"][0]["text"], base_text["choices"][0]["text"]);
    let (status, response) = call(
        &platform,
        "POST",
        "/v1/responses",
        Some(json!({"model": "tuned-a", "input": "What is the capital of France?", "max_output_tokens": 16, "temperature": 0, "store": false})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(response["model"], "tuned-a");
    assert_eq!(response["output"][0]["content"][0]["text"], a.as_str());
    let (status, message) = call(
        &platform,
        "POST",
        "/v1/messages",
        Some(
            json!({"model": "tuned-b", "max_tokens": 16, "temperature": 0,
            "messages": [{"role": "user", "content": "What is the capital of France?"}]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert_eq!(message["content"][0]["text"], b.as_str());
    // An adapter is not an embedding model.
    let (status, err) = call(
        &platform,
        "POST",
        "/v1/embeddings",
        Some(json!({"model": "tuned-a", "input": "hi"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
}

#[tokio::test]
async fn adapters_are_imported_and_removed_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let platform = platform(&dir);
    let base = chat_text(&platform, "smollm2").await;
    let a = chat_text(&platform, "tuned-a").await;
    assert_eq!(loaded_adapters(&platform), 1);

    // Another process (the CLI) imports one into the same data directory.
    let cli = Platform::open(Config {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    })
    .unwrap();
    cli.gateway()
        .registry()
        .import_adapter(&adapter("smollm2-zero"), "smollm2", Some("tuned-zero"))
        .unwrap();
    assert_eq!(
        chat_text(&platform, "tuned-zero").await,
        base,
        "a zero adapter changed the answer"
    );
    assert_eq!(loaded_adapters(&platform), 2);

    // A wrong one is refused at import, naming both shapes.
    let err = cli
        .gateway()
        .registry()
        .import_adapter(&adapter("smollm2-360m-shape"), "smollm2", Some("big"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[576, 576]") && err.contains("[960, 32]"),
        "{err}"
    );
    // The base cannot go while adapters stand on it; a declared adapter is not removable.
    let err = cli
        .gateway()
        .registry()
        .remove("smollm2")
        .unwrap_err()
        .to_string();
    assert!(err.contains("tuned-a"), "{err}");
    assert!(cli.gateway().registry().remove("tuned-b").is_err());

    // Removed while serving: its name is gone and, at the next request, its memory too.
    cli.gateway().registry().remove("tuned-a").unwrap();
    let (status, err) = chat(&platform, "tuned-a").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
    assert_eq!(chat_text(&platform, "tuned-zero").await, base);
    for _ in 0..200 {
        if loaded_adapters(&platform) == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        loaded_adapters(&platform),
        1,
        "the removed adapter is still loaded"
    );
    // Imported again under its name: it answers as before.
    cli.gateway()
        .registry()
        .import_adapter(&adapter("smollm2-a"), "smollm2", Some("tuned-a"))
        .unwrap();
    assert_eq!(chat_text(&platform, "tuned-a").await, a);
}
