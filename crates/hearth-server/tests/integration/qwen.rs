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
    platform_with(dir, |_| {})
}

/// The platform with Qwen as `qwen`, after `change` to its configuration.
fn platform_with(dir: &std::path::Path, change: impl FnOnce(&mut Config)) -> Platform {
    let mut config = Config {
        data_dir: dir.to_owned(),
        ..Default::default()
    };
    config.llm.context_length = 2048;
    change(&mut config);
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

/// Calls from a streamed answer: (index, name, arguments) per call, its pieces joined.
fn streamed_calls(text: &str) -> Vec<(u64, String, String)> {
    let mut calls: Vec<(u64, String, String)> = Vec::new();
    for chunk in common::sse_events(text) {
        for d in chunk["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let index = d["index"].as_u64().unwrap();
            if calls.iter().all(|c| c.0 != index) {
                calls.push((index, String::new(), String::new()));
            }
            let call = calls.iter_mut().find(|c| c.0 == index).unwrap();
            call.1
                .push_str(d["function"]["name"].as_str().unwrap_or(""));
            call.2
                .push_str(d["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    calls
}

/// Several calls in one answer, whole and streamed, each its own `tool_calls` entry; one
/// when `parallel_tool_calls` is false (the call grammar then allows only one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qwen_makes_two_calls_in_one_answer_and_one_when_told_to() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path());
    // Qwen2.5-Coder makes one call per answer unless shown how to make several.
    let system = "When the user asks about several cities, call get_weather once per city, \
        all calls in one answer. Example: for Oslo and Lima you answer\n<tool_call>\n\
        {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>\n\
        <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lima\"}}\n</tool_call>";
    let ask = json!({"model": "qwen", "max_tokens": 120, "temperature": 0,
        "tools": weather_tool(),
        "messages": [{"role": "system", "content": system},
            {"role": "user", "content": "What is the weather in Paris and in Rome?"}]});
    let value = answer(&p, ask.clone()).await;
    let choice = &value["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{value}");
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    let cities: Vec<Value> = calls
        .iter()
        .map(|c| {
            assert_eq!(c["function"]["name"], "get_weather", "{value}");
            serde_json::from_str::<Value>(c["function"]["arguments"].as_str().unwrap()).unwrap()
                ["city"]
                .clone()
        })
        .collect();
    assert_eq!(cities, [json!("Paris"), json!("Rome")], "{value}");
    assert_ne!(calls[0]["id"], calls[1]["id"], "{value}");

    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    let (status, bytes) = chat(&p, streamed).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(bytes).unwrap();
    let calls = streamed_calls(&text);
    assert_eq!(calls.len(), 2, "{text}");
    for ((index, name, arguments), city) in calls.iter().zip(["Paris", "Rome"]) {
        assert_eq!(name, "get_weather", "{text}");
        let arguments: Value = serde_json::from_str(arguments).unwrap();
        assert_eq!(arguments["city"], city, "{text} (call {index})");
    }

    // A schema the grammar engine cannot enforce (a broken pattern): the request is still
    // served, the answer free; the call cannot pass a schema that does not compile, so it is
    // text.
    let mut broken = ask.clone();
    broken["tools"][0]["function"]["parameters"]["properties"]["city"]["pattern"] = json!("(a|b");
    let value = answer(&p, broken).await;
    let message = &value["choices"][0]["message"];
    assert!(message["tool_calls"].is_null(), "{value}");
    assert!(
        message["content"].as_str().unwrap().contains("Paris"),
        "{value}"
    );

    let mut one = ask;
    one["parallel_tool_calls"] = json!(false);
    let value = answer(&p, one).await;
    let calls = value["choices"][0]["message"]["tool_calls"]
        .as_array()
        .unwrap();
    assert_eq!(calls.len(), 1, "{value}");
    assert_eq!(
        calls[0]["function"]["arguments"], r#"{"city":"Paris"}"#,
        "{value}"
    );
}

/// A call the model chooses to make (`auto`) is held to its tool's schema once started.
/// The request: the retail domain's 14 tools and a customer's message of its task set on
/// which Qwen2.5-Coder-0.5B, writing freely, adds arguments the tool does not take; held
/// to the schema, the same call is valid. With `constrain_auto_tool_calls = false` the
/// same answer is the invalid call, as text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_mode_call_is_held_to_its_tools_schema() {
    let file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/retail/tools.toml");
    let declared: toml::Table = toml::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let tools: Vec<Value> = declared["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let t = serde_json::to_value(t).unwrap();
            json!({"type": "function", "function": {"name": t["name"],
                "description": t["description"], "parameters": t["parameters"]}})
        })
        .collect();
    let ask = json!({"model": "qwen", "max_tokens": 256, "temperature": 0, "tools": tools,
        "messages": [
            {"role": "system", "content": "You are the customer service agent of an online retail store. Use the tools to look things up and to act for the customer."},
            {"role": "user", "content": "My name is James Li and my email is james.li4495@example.com. I am rigid, confident, happy, curious, pessimistic. Return #W4435622 via gift_card_1725971: Water Bottle; "}]});
    let dir = tempfile::tempdir().unwrap();
    // 14 tool descriptions make a long prompt.
    let p = platform_with(dir.path(), |c| c.llm.context_length = 4096);
    let value = answer(&p, ask.clone()).await;
    let choice = &value["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{value}");
    let call = &choice["message"]["tool_calls"][0]["function"];
    let tool = tools
        .iter()
        .find(|t| t["function"]["name"] == call["name"])
        .unwrap_or_else(|| panic!("an unknown tool: {value}"));
    let arguments: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    let validator = jsonschema::validator_for(&tool["function"]["parameters"]).unwrap();
    assert!(validator.is_valid(&arguments), "{value}");
    drop(p);

    let dir = tempfile::tempdir().unwrap();
    let free = platform_with(dir.path(), |c| {
        c.llm.context_length = 4096;
        c.gateway.constrain_auto_tool_calls = false;
    });
    let value = answer(&free, ask).await;
    let choice = &value["choices"][0];
    assert_ne!(choice["finish_reason"], "tool_calls", "{value}");
    assert!(choice["message"]["tool_calls"].is_null(), "{value}");
    let text = choice["message"]["content"].as_str().unwrap();
    assert!(text.contains(r#""name": ""#), "{value}");
}

/// A reasoning template (Qwen's own, its generation prompt opening a `<think>` block, as
/// DeepSeek-R1's distills and QwQ do): the thought goes to `reasoning_content`, whole and
/// streamed, and is counted in `reasoning_tokens`; a `json_schema` answer is held to its
/// schema only after the thought; `max_tokens` spent thinking ends with `length` and an
/// empty answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reasoning_template_keeps_the_thought_out_of_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let suite = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../hearth-infer/tests/chat-templates/templates/Qwen-Qwen2.5-7B-Instruct.jinja");
    let source = std::fs::read_to_string(suite).unwrap();
    let opening = "{{- '<|im_start|>assistant\\n' }}\n{%- endif %}";
    assert!(source.contains(opening));
    let thinking = source.replace(
        opening,
        "{{- '<|im_start|>assistant\\n<think>\\n' }}\n{%- endif %}",
    );
    let template = dir.path().join("think.jinja");
    std::fs::write(&template, thinking).unwrap();
    let p = platform_with(dir.path(), |c| {
        c.llm.chat_templates.insert("qwen".into(), template.clone());
    });
    let system =
        "First think step by step, then close your thoughts with </think> and give the answer.";
    let ask = |question: &str, max_tokens: u32| {
        json!({"model": "qwen", "max_tokens": max_tokens, "temperature": 0,
            "messages": [{"role": "system", "content": system},
                {"role": "user", "content": question}]})
    };

    let value = answer(&p, ask("What is 17 + 25?", 100)).await;
    let message = &value["choices"][0]["message"];
    let thought = message["reasoning_content"].as_str().unwrap();
    assert!(thought.contains("42"), "{value}");
    let content = message["content"].as_str().unwrap();
    assert!(!content.contains(thought.trim()), "{value}");
    assert!(
        !content.contains("<think>") && !content.contains("</think>"),
        "{value}"
    );
    let usage = &value["usage"];
    let reasoning_tokens = usage["completion_tokens_details"]["reasoning_tokens"]
        .as_u64()
        .unwrap();
    assert!(reasoning_tokens > 0, "{value}");
    assert!(
        reasoning_tokens <= usage["completion_tokens"].as_u64().unwrap(),
        "{value}"
    );

    let mut streamed = ask("What is 17 + 25?", 100);
    streamed["stream"] = json!(true);
    let (status, bytes) = chat(&p, streamed).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(bytes).unwrap();
    let part = |field: &str| -> String {
        common::sse_events(&text)
            .iter()
            .filter_map(|c| c["choices"][0]["delta"][field].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(part("reasoning_content"), thought, "{text}");
    assert_eq!(part("content"), content, "{text}");

    // The answer's schema holds after the thought, not during it.
    let schema = json!({"type": "object", "properties": {"capital": {"type": "string"}},
        "required": ["capital"], "additionalProperties": false});
    let mut json_ask = ask("What is the capital of Italy? Answer as JSON.", 120);
    json_ask["response_format"] =
        json!({"type": "json_schema", "json_schema": {"name": "c", "schema": schema}});
    let value = answer(&p, json_ask).await;
    let message = &value["choices"][0]["message"];
    assert!(
        !message["reasoning_content"].as_str().unwrap().is_empty(),
        "{value}"
    );
    let content: Value = serde_json::from_str(message["content"].as_str().unwrap()).unwrap();
    assert_eq!(content, json!({"capital": "Rome"}), "{value}");

    // A schema that cannot be enforced is still the request's response_format's fault.
    let mut bad = ask("What is the capital of Italy?", 20);
    bad["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "c",
        "schema": {"type": "object", "properties": {"capital": {"type": "string", "pattern": "(a|b"}}}}});
    let (status, bytes) = chat(&p, bad).await;
    let error: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["error"]["param"], "response_format", "{error}");

    // Out of tokens while thinking: no answer, and the thought is not passed off as one.
    let value = answer(&p, ask("Explain why the sky is blue.", 8)).await;
    let choice = &value["choices"][0];
    assert_eq!(choice["finish_reason"], "length", "{value}");
    assert_eq!(choice["message"]["content"], "", "{value}");
    assert!(
        !choice["message"]["reasoning_content"]
            .as_str()
            .unwrap()
            .is_empty(),
        "{value}"
    );
    assert_eq!(
        value["usage"]["completion_tokens_details"]["reasoning_tokens"],
        value["usage"]["completion_tokens"],
        "{value}"
    );
}

/// A model that opens its thinking block itself (Qwen3's template names `<think>` but its
/// generation prompt does not open it): a `json_schema` answer may still be thought out
/// first, the thought going to `reasoning_content` and the answer held to the schema after
/// it; asked for no thought, the answer is the schema's from its first token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_opens_its_own_thought_may_think_before_a_schema_bound_answer() {
    let dir = tempfile::tempdir().unwrap();
    let suite = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../hearth-infer/tests/chat-templates/templates/Qwen-Qwen2.5-7B-Instruct.jinja");
    let source = std::fs::read_to_string(suite).unwrap();
    let template = dir.path().join("thinks.jinja");
    std::fs::write(
        &template,
        format!("{{#- The model reasons between <think> and </think>. #}}\n{source}"),
    )
    .unwrap();
    let p = platform_with(dir.path(), |c| {
        c.llm.chat_templates.insert("qwen".into(), template.clone());
    });
    let schema = json!({"type": "object", "properties": {"capital": {"type": "string"}},
        "required": ["capital"], "additionalProperties": false});
    let ask = |system: &str| {
        json!({"model": "qwen", "max_tokens": 160, "temperature": 0,
            "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
            "messages": [{"role": "system", "content": system},
                {"role": "user", "content": "What is the capital of Italy? Answer as JSON."}]})
    };
    let value = answer(
        &p,
        ask(
            "Reply in this form: <think>one short sentence of reasoning</think> then the \
             answer.",
        ),
    )
    .await;
    let message = &value["choices"][0]["message"];
    let thought = message["reasoning_content"].as_str().unwrap_or_default();
    assert!(!thought.trim().is_empty(), "{value}");
    let json_of = |message: &Value| -> Value {
        serde_json::from_str(message["content"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}: {message}"))
    };
    assert_eq!(json_of(message), json!({"capital": "Rome"}), "{value}");

    let value = answer(&p, ask("You are a helpful assistant.")).await;
    let message = &value["choices"][0]["message"];
    let content = json_of(message);
    assert_eq!(content, json!({"capital": "Rome"}), "{value}");
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
