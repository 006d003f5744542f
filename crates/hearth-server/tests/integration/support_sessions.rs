//! Support sessions through `router()`: the real SmolLM2-135M behind the agent, the demo
//! shop behind the retail tool config, an intent model trained on part of BANKING77 routing
//! the first message. Sessions survive a restart (a new Platform on the same data directory).

use std::path::PathBuf;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use hearth_core::support::demo_shop::RetailStore;
use hearth_core::support::intents::{read_labelled_csv, IntentTrainOptions, NoProgress};
use hearth_core::support::sessions::TurnStart;
use hearth_core::{Config, Platform, StoreUrl};
use hearth_testdata::shared_data_dir;
use serde_json::{json, Value};

use crate::common;

async fn send(platform: &Platform, method: &str, uri: &str, body: Value) -> (StatusCode, Vec<u8>) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(if body.is_null() {
            Body::empty()
        } else {
            Body::from(body.to_string())
        })
        .unwrap();
    let (status, _, bytes) = common::call(platform, request).await;
    (status, bytes)
}

async fn json_call(
    platform: &Platform,
    method: &str,
    uri: &str,
    body: Value,
) -> (StatusCode, Value) {
    let (status, bytes) = send(platform, method, uri, body).await;
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)));
    (status, value)
}

fn config(dir: &std::path::Path, shop_url: &str) -> Config {
    let mut config = Config {
        data_dir: dir.to_owned(),
        ..Default::default()
    };
    config.store.url = hearth_testdata::test_store_url(dir).map(StoreUrl::new);
    config.support.policy = Some(shared_data_dir().join("retail/policy.md"));
    config.support.tools =
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/retail/tools.toml"));
    config
        .support
        .tool_variables
        .insert("SHOP_URL".into(), shop_url.into());
    config.support.max_tool_rounds = 2;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_route_hand_over_stream_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shop_url = format!("http://{}", listener.local_addr().unwrap());
    hearth_server::spawn_demo_shop(
        listener,
        RetailStore::load(&shared_data_dir().join("retail")).unwrap(),
    );
    let platform = Platform::open(config(dir.path(), &shop_url)).unwrap();
    common::register_test_models(&platform);

    // Unknown sessions and bad messages are refused by name.
    let (status, body) =
        json_call(&platform, "GET", "/v1/support/sessions/nope", Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "session_not_found");

    // Intent routing trained on BANKING77 (40 examples of each of its 77 intents).
    let banking = read_labelled_csv(&shared_data_dir().join("banking77/train.csv")).unwrap();
    let mut seen = std::collections::HashMap::<String, usize>::new();
    let sample: Vec<_> = banking
        .into_iter()
        .filter(|e| {
            let n = seen.entry(e.intent.clone()).or_default();
            *n += 1;
            *n <= 40
        })
        .collect();
    platform
        .train_intents(&sample, &IntentTrainOptions::new("minilm"), &NoProgress)
        .await
        .unwrap();

    // 1. Out of scope: straight to a human, with a summary naming why.
    let (status, session) = json_call(
        &platform,
        "POST",
        "/v1/support/sessions",
        json!({"metadata": {"channel": "web"}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let id = session["id"].as_str().unwrap().to_string();
    let messages = format!("/v1/support/sessions/{id}/messages");
    let (status, body) = json_call(
        &platform,
        "POST",
        &messages,
        json!({"content": "  ", "stream": false}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("content"))
    );
    let (status, body) = json_call(
        &platform,
        "POST",
        &messages,
        json!({"content": "hi", "role": "boss"}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("role"))
    );

    let (status, done) = json_call(
        &platform,
        "POST",
        &messages,
        json!({"content": "What's the weather like in Paris tomorrow?", "stream": false}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["handed_over"], true, "{done}");
    assert_eq!(done["status"], "handoff");
    assert_eq!(done["intent"]["in_scope"], false);

    // The agent stays silent while a human has the session; the human answers, then hands back.
    let (_, done) = json_call(
        &platform,
        "POST",
        &messages,
        json!({"content": "Hello?", "stream": false}),
    )
    .await;
    assert_eq!(done["reply"], "", "{done}");
    let (status, session) = json_call(
        &platform,
        "POST",
        &messages,
        json!({"content": "Hi, I'm Sam from the support team.", "role": "human", "hand_back": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{session}");
    assert_eq!(session["status"], "active");

    // 2. Streaming: the agent's turn arrives as entry events, then done, then [DONE].
    let (status, bytes) = send(
        &platform,
        "POST",
        &messages,
        json!({"content": "What is the status of my order #W2611340?"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(bytes).unwrap();
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert_eq!(events[0]["entry"]["kind"], "customer", "{text}");
    let done = events.last().unwrap();
    assert_eq!(done["type"], "done", "{text}");
    assert_eq!(done["tool_calls"], done["valid_tool_calls"], "{text}");
    assert!(
        events.iter().any(|e| e["entry"]["kind"] == "agent"),
        "{text}"
    );

    // 3. Asking for a person hands over, whatever the routing says.
    let (_, session) = json_call(&platform, "POST", "/v1/support/sessions", Value::Null).await;
    let other = session["id"].as_str().unwrap().to_string();
    let (_, done) = json_call(
        &platform,
        "POST",
        &format!("/v1/support/sessions/{other}/messages"),
        json!({"content": "My card hasn't arrived, can I talk to a real person?", "stream": false}),
    )
    .await;
    assert_eq!(done["handed_over"], true, "{done}");
    assert!(done["intent"]["intent"].is_string(), "{done}");
    let (_, session) = json_call(
        &platform,
        "GET",
        &format!("/v1/support/sessions/{other}"),
        Value::Null,
    )
    .await;
    assert!(session["handoff_summary"]
        .as_str()
        .unwrap()
        .starts_with("The customer asked for a person"));

    // 4. A restart keeps everything.
    drop(platform);
    let platform = Platform::open(config(dir.path(), &shop_url)).unwrap();
    let (status, session) = json_call(
        &platform,
        "GET",
        &format!("/v1/support/sessions/{id}"),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(session["metadata"]["channel"], "web");
    let kinds: Vec<&str> = session["conversation"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        &kinds[..5],
        ["customer", "handoff", "agent", "customer", "human"],
        "{session}"
    );
    assert!(kinds[5..].contains(&"agent"), "{kinds:?}");
    assert!(session["conversation"]["entries"][1]["summary"]
        .as_str()
        .unwrap()
        .contains("Out of the agent's scope"));
}

/// Two replicas on one PostgreSQL database: a conversation whose messages alternate between
/// them keeps one transcript, and two messages sent at once to one session on the two
/// replicas are answered one after the other (none lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_keep_one_transcript_and_take_turns_on_a_session() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shop_url = format!("http://{}", listener.local_addr().unwrap());
    hearth_server::spawn_demo_shop(
        listener,
        RetailStore::load(&shared_data_dir().join("retail")).unwrap(),
    );
    let url = hearth_testdata::postgres_database();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let replica = |dir: &std::path::Path| {
        let mut config = config(dir, &shop_url);
        config.store.url = Some(StoreUrl::new(url.clone()));
        config.support.max_tool_rounds = 1;
        let platform = Platform::open(config).unwrap();
        common::register_test_models(&platform);
        platform
    };
    let (a, b) = (replica(dir_a.path()), replica(dir_b.path()));

    let (status, session) = json_call(&a, "POST", "/v1/support/sessions", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let id = session["id"].as_str().unwrap().to_string();
    let messages = format!("/v1/support/sessions/{id}/messages");
    let say = |text: &str| json!({"content": text, "stream": false});

    // Alternating: the first on A, the second on B.
    let (status, body) = json_call(&a, "POST", &messages, say("Hello, I have a question.")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = json_call(&b, "POST", &messages, say("It is about shipping.")).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A turn running on A holds the session: B's message waits for it, then is answered.
    let sessions = a.support_sessions().unwrap();
    let until = hearth_types::clock::unix_now_f64() + 60.0;
    assert_eq!(sessions.begin_turn(&id, until).unwrap(), TurnStart::Begun);
    let waiting = {
        let (b, messages) = (b.clone(), messages.clone());
        tokio::spawn(async move {
            json_call(
                &b,
                "POST",
                &messages,
                json!({"content": "Are you there?", "stream": false}),
            )
            .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert!(
        !waiting.is_finished(),
        "B answered while a turn on A held the session"
    );
    sessions.end_turn(&id).unwrap();
    let (status, body) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    // A message to a session that does not exist does not wait for a turn.
    let (status, body) = json_call(
        &b,
        "POST",
        "/v1/support/sessions/sess_none/messages",
        say("Hello?"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // At once, one on each replica.
    let (first, second) = tokio::join!(
        json_call(&a, "POST", &messages, say("Do you ship to Canada?")),
        json_call(&b, "POST", &messages, say("And how long does it take?")),
    );
    assert_eq!(first.0, StatusCode::OK, "{}", first.1);
    assert_eq!(second.0, StatusCode::OK, "{}", second.1);

    // Either replica shows the one transcript, every message in it.
    for replica in [&a, &b] {
        let (status, session) = json_call(
            replica,
            "GET",
            &format!("/v1/support/sessions/{id}"),
            Value::Null,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let entries = session["conversation"]["entries"].as_array().unwrap();
        let customers: Vec<&str> = entries
            .iter()
            .filter(|e| e["kind"] == "customer")
            .map(|e| e["text"].as_str().unwrap_or_default())
            .collect();
        // Two turns read and saved at once would keep only one of the last two messages.
        assert_eq!(customers.len(), 5, "a message was lost: {session}");
        assert_eq!(
            customers[..3],
            [
                "Hello, I have a question.",
                "It is about shipping.",
                "Are you there?"
            ]
        );
        let mut last_two = customers[3..].to_vec();
        last_two.sort();
        assert_eq!(
            last_two,
            ["And how long does it take?", "Do you ship to Canada?"]
        );
    }
}
