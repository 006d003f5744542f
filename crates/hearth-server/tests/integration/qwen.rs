//! Qwen2.5-Coder-0.5B-Instruct (Q4_K_M, the qwen2 architecture and Qwen's own chat template)
//! through `router()`, end to end: a plain answer, a stream, a `json_schema` answer, tool
//! calls forced by name and by `required`, a call the model chooses to make (`auto`), and the
//! shopping assistant's grammar-bound answer under Qwen's 151k-token vocabulary.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use hearth_core::recs::bundle::{train_bundle, TrainOptions};
use hearth_core::recs::models::ModelKind;
use hearth_core::recs_service::NewEvent;
use hearth_core::{Config, Platform};
use serde_json::{json, Value};

use crate::common;

const QWEN: &str = "Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf";

fn platform(dir: &std::path::Path) -> Platform {
    let mut config = Config {
        data_dir: dir.to_owned(),
        ..Default::default()
    };
    config.llm.context_length = 2048;
    let platform = Platform::open(config).unwrap();
    platform
        .gateway()
        .registry()
        .import(&hearth_testdata::models_dir().join(QWEN), Some("qwen"))
        .unwrap();
    platform
}

async fn chat(platform: &Platform, body: Value) -> (StatusCode, Vec<u8>) {
    let request = Request::post("/v1/chat/completions")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (status, _, bytes) = common::call(platform, request).await;
    (status, bytes)
}

async fn answer(platform: &Platform, body: Value) -> Value {
    let (status, bytes) = chat(platform, body).await;
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status, StatusCode::OK, "{value}");
    value
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
            "required": ["city"], "additionalProperties": false}}}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qwen_answers_streams_fills_a_schema_and_calls_tools() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());

    let models = common::call(
        &p,
        Request::get("/v1/models/qwen").body(Body::empty()).unwrap(),
    )
    .await
    .2;
    let model: Value = serde_json::from_slice(&models).unwrap();
    assert_eq!(model["meta"]["architecture"], "qwen2", "{model}");

    let value = answer(
        &p,
        json!({"model": "qwen", "max_tokens": 16, "temperature": 0,
            "messages": [{"role": "system", "content": "Answer in one word."},
                {"role": "user", "content": "What is the capital of France?"}]}),
    )
    .await;
    let text = value["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.contains("Paris"), "{value}");
    assert_eq!(value["choices"][0]["finish_reason"], "stop");
    // The prompt went through Qwen's template: its system and user turns, then the
    // assistant's opening, count more tokens than the two texts alone.
    assert!(
        value["usage"]["prompt_tokens"].as_u64().unwrap() > 15,
        "{value}"
    );

    let (status, bytes) = chat(
        &p,
        json!({"model": "qwen", "max_tokens": 12, "temperature": 0, "stream": true,
            "messages": [{"role": "user", "content": "Count from 1 to 5, digits only."}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(bytes).unwrap();
    let streamed: String = common::sse_events(&text)
        .into_iter()
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    for digit in ["1", "2", "3"] {
        assert!(streamed.contains(digit), "{streamed:?}");
    }
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");

    let schema = json!({"type": "object", "properties": {
        "country": {"type": "string"}, "capital": {"type": "string"}},
        "required": ["country", "capital"], "additionalProperties": false});
    let value = answer(
        &p,
        json!({"model": "qwen", "max_tokens": 60, "temperature": 0,
            "response_format": {"type": "json_schema",
                "json_schema": {"name": "capital", "schema": schema, "strict": true}},
            "messages": [{"role": "user", "content": "Give the capital of Italy as JSON."}]}),
    )
    .await;
    let content: Value =
        serde_json::from_str(value["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    assert!(validator.is_valid(&content), "{content}");
    assert_eq!(content["capital"], "Rome", "{content}");

    for tool_choice in [
        json!({"type": "function", "function": {"name": "get_weather"}}),
        json!("required"),
    ] {
        let value = answer(
            &p,
            json!({"model": "qwen", "max_tokens": 60, "temperature": 0,
                "tools": weather_tool(), "tool_choice": tool_choice,
                "messages": [{"role": "user", "content": "What is the weather in Rome?"}]}),
        )
        .await;
        let choice = &value["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls", "{value}");
        let call = &choice["message"]["tool_calls"][0]["function"];
        assert_eq!(call["name"], "get_weather", "{value}");
        let arguments: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(arguments, json!({"city": "Rome"}), "{value}");
    }

    // `auto`: the model answers with a call in its own way (Qwen2.5-Coder writes a fenced
    // JSON block); it comes back as a tool call, not as text, whole and streamed.
    let ask = json!({"model": "qwen", "max_tokens": 120, "temperature": 0,
        "tools": weather_tool(),
        "messages": [{"role": "user", "content": "What is the weather in Paris and in Rome?"}]});
    let value = answer(&p, ask.clone()).await;
    let choice = &value["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{value}");
    assert!(choice["message"]["content"].is_null(), "{value}");
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert!(!calls.is_empty(), "{value}");
    for call in calls {
        assert_eq!(call["function"]["name"], "get_weather", "{value}");
        let arguments: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert!(arguments["city"].is_string(), "{value}");
    }
    let mut streamed = ask;
    streamed["stream"] = json!(true);
    let (status, bytes) = chat(&p, streamed).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(bytes).unwrap();
    let chunks = common::sse_events(&text);
    let names: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .filter_map(|d| d["function"]["name"].as_str())
        .collect();
    assert_eq!(names.len(), calls.len(), "{text}");
    assert!(names.iter().all(|n| *n == "get_weather"), "{text}");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "tool_calls", "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shopping_assistant_answers_with_qwen() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    let titles = [
        "Electric kettle",
        "Glass teapot",
        "Garden hose",
        "Cast iron pan",
        "Chef knife",
        "Rain boots",
    ];
    let items = titles
        .iter()
        .enumerate()
        .map(|(i, t)| {
            serde_json::from_value(json!({"id": format!("i{i}"), "title": t,
                "categories": [if i == 2 || i == 5 { "garden" } else { "kitchen" }],
                "price": 10.0 + i as f64}))
            .unwrap()
        })
        .collect();
    p.upsert_items(items).await.unwrap();
    let events = (0..4)
        .flat_map(|u| {
            (0..titles.len())
                .filter(move |i| (u + i) % 2 == 0)
                .map(move |i| NewEvent {
                    id: None,
                    user: format!("u{u}"),
                    item: format!("i{i}"),
                    kind: "purchase".into(),
                    value: None,
                    timestamp: Some(1000 + i as i64),
                })
        })
        .collect();
    p.insert_events(events).await.unwrap();
    let data = p
        .recs_store()
        .unwrap()
        .dataset(&Default::default())
        .unwrap();
    let options = TrainOptions {
        models: vec![ModelKind::ItemKnn],
        ..Default::default()
    };
    let bundle = train_bundle(&data, None, &options, &()).unwrap();
    p.recs_artifacts().publish(|d| bundle.save(d)).unwrap();

    let request = Request::post("/v1/assistant")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"wish": "something to boil water for tea", "model": "qwen",
                "stream": false, "candidates": 5})
            .to_string(),
        ))
        .unwrap();
    let (status, _, bytes) = common::call(&p, request).await;
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status, StatusCode::OK, "{answer}");
    // The answer names one to three offered candidates, each on a line of its own.
    let offered: Vec<&str> = answer["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["item"].as_str().unwrap())
        .collect();
    let named: Vec<&str> = answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    assert!((1..=3).contains(&named.len()), "{answer}");
    assert!(named.iter().all(|i| offered.contains(i)), "{answer}");
    let text = answer["answer"].as_str().unwrap();
    assert!(
        !text.starts_with('-'),
        "the introduction is no list line: {text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("- [")).count(),
        named.len(),
        "{text}"
    );
}
