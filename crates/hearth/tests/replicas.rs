//! Three `hearth serve` processes on one PostgreSQL database, as replicas behind a load
//! balancer run: shared work done once, shared state seen at once, a replica killed mid-write
//! losing nothing it acknowledged.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

struct Replica {
    child: Child,
    url: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hearth serve` on a free loopback port with `dir`'s hearth.toml and the store at `store`.
fn replica(dir: &Path, store: &str) -> Replica {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--data-dir")
        .arg(dir)
        .args(["--threads", "1", "serve", "--listen", "127.0.0.1:0"])
        .env("HEARTH_STORE_URL", store)
        .env("HEARTH_LOG", "warn")
        .env_remove("HEARTH_API_KEYS")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("not started: {line:?}"))
        .to_owned();
    Replica { child, url }
}

/// The one number `sql` (a `SELECT COUNT(*) …`) answers on `db`.
fn count(db: &hearth_store::Database, sql: &str, params: &[hearth_store::Value]) -> i64 {
    db.query_one(sql, params, |r| r.get::<i64>(0))
        .unwrap()
        .unwrap()
}

/// 400 events of 19 users on 29 items, as a CSV file in `dir`.
fn events_file(dir: &Path) -> std::path::PathBuf {
    let events = dir.join("events.csv");
    let mut csv = String::from("user_id,item_id,timestamp\n");
    for i in 0..400 {
        csv.push_str(&format!("u{},i{},{i}\n", i % 19, (i * 7 + i / 19) % 29));
    }
    std::fs::write(&events, csv).unwrap();
    events
}

/// A replica's data directory with `toml` as its hearth.toml.
fn config_dir(toml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hearth.toml"), toml).unwrap();
    dir
}

/// The recommendation replicas' config: published models on one shared path, retraining
/// every 2 s.
fn recs_config(artifacts: &Path) -> String {
    format!(
        "[store]\nartifacts_dir = {:?}\n[recs]\ntrain_interval_seconds = 2\n",
        artifacts.to_str().unwrap()
    )
}

async fn recommend(http: &reqwest::Client, replica: &Replica, user: &str) -> Value {
    let response = http
        .get(format!("{}/v1/recommendations/{user}?n=5", replica.url))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        body
    } else {
        json!({"status": status.as_u16(), "body": body})
    }
}

fn version(body: &Value) -> Option<u64> {
    body["model_version"].as_u64()
}

fn items(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["item"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn published_versions(artifacts: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(artifacts.join("recs"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| n.starts_with('v'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_events_and_models_and_train_on_schedule_once() {
    let store = hearth_testdata::postgres_database();
    let shared = tempfile::tempdir().unwrap();
    let artifacts = shared.path().join("artifacts");
    let dirs: Vec<_> = (0..3)
        .map(|_| config_dir(&recs_config(&artifacts)))
        .collect();

    // The catalogue's events, imported once into the shared database.
    let events = events_file(shared.path());
    let cli = |args: &[&str]| hearth_cli(dirs[1].path(), &store, args);

    cli(&["recs", "import", "--events", events.to_str().unwrap()]);

    let replicas: Vec<Replica> = dirs.iter().map(|d| replica(d.path(), &store)).collect();
    let http = reqwest::Client::new();

    // Every replica's schedule fires on the same events: one of them trains.
    let deadline = Instant::now() + Duration::from_secs(60);
    while version(&recommend(&http, &replicas[0], "u3").await).is_none() {
        assert!(Instant::now() < deadline, "no scheduled training published");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Three more firings of each schedule, with nothing new to train on.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(published_versions(&artifacts), ["v000001"]);
    for replica in &replicas {
        assert_eq!(version(&recommend(&http, replica, "u3").await), Some(1));
    }

    // An event posted to A counts on B at once: the item B ranked first is now seen.
    let first = items(&recommend(&http, &replicas[1], "u3").await)[0].clone();
    let response = http
        .post(format!("{}/v1/events", replicas[0].url))
        .json(&json!({"events": [{"id": "late-1", "user": "u3", "item": first, "type": "view"}]}))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    let after = items(&recommend(&http, &replicas[1], "u3").await);
    assert!(
        !after.contains(&first),
        "B still recommends {first}: {after:?}"
    );

    // A training run beside the replicas (here the CLI on B's config) reaches A and C.
    let out = cli(&["recs", "train"]);
    let published: u64 = out
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .and_then(|v| v.trim_end_matches(':').parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(published >= 2, "{out}");
    for replica in [&replicas[0], &replicas[2]] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while version(&recommend(&http, replica, "u3").await).unwrap_or(0) < published {
            assert!(
                Instant::now() < deadline,
                "{} did not load version {published}",
                replica.url
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // C killed while it stores batches of events: every batch it acknowledged is stored,
    // and A and B go on answering.
    let mut replicas = replicas;
    let c = replicas.pop().unwrap();
    let c_url = c.url.clone();
    let writer = tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut acknowledged = Vec::new();
        for batch in 0..10_000 {
            let events: Vec<Value> = (0..50)
                .map(|i| json!({"id": format!("k{batch}-{i}"), "user": format!("w{i}"), "item": "i1", "type": "view"}))
                .collect();
            match http
                .post(format!("{c_url}/v1/events"))
                .json(&json!({ "events": events }))
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => acknowledged.push(batch),
                _ => break,
            }
        }
        acknowledged
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(c); // SIGKILL
    let acknowledged = writer.await.unwrap();
    assert!(!acknowledged.is_empty() && acknowledged.len() < 10_000);
    let db = hearth_store::Database::connect(&store).unwrap();
    let stored = count(
        &db,
        "SELECT COUNT(*) FROM recs_events WHERE id LIKE 'k%'",
        &[],
    ) as usize;
    assert!(
        stored >= acknowledged.len() * 50,
        "{stored} stored of {} acknowledged",
        acknowledged.len() * 50
    );
    for batch in &acknowledged {
        let n = count(
            &db,
            "SELECT COUNT(*) FROM recs_events WHERE id LIKE $1",
            hearth_store::params![format!("k{batch}-%")],
        );
        assert_eq!(n, 50, "batch {batch} acknowledged but not whole");
    }
    for replica in &replicas {
        assert!(version(&recommend(&http, replica, "u3").await).is_some());
    }
}

/// `hearth ARGS` on `dir`'s config and the store at `store`: its stdout (it must succeed).
fn hearth_cli(dir: &Path, store: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env("HEARTH_STORE_URL", store)
        .env("HEARTH_LOG", "warn")
        .env_remove("HEARTH_API_KEYS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hearth {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A key's secret, made with `hearth keys create NAME FLAGS --json`.
fn create_key(dir: &Path, store: &str, name: &str, flags: &[&str]) -> String {
    let mut args = vec!["keys", "create", name, "--json"];
    args.extend_from_slice(flags);
    let out: Value = serde_json::from_str(&hearth_cli(dir, store, &args)).unwrap();
    out["secret"].as_str().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------------
// A fake OpenAI-compatible upstream the replicas' gateway routes to

/// Answers every chat after `delay` with the last user message, claiming far more tokens than
/// any request can use (so each answer is charged at its request's bounds: what it reserved),
/// and streams in pieces 100 ms apart. Counts calls.
#[derive(Clone)]
struct Upstream {
    /// Base URL including `/v1`.
    url: String,
    hits: Arc<AtomicUsize>,
    delay: Duration,
}

impl Upstream {
    async fn start(delay: Duration) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = Upstream {
            url: format!("http://{}/v1", listener.local_addr().unwrap()),
            hits: Arc::default(),
            delay,
        };
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(upstream_chat))
            .with_state(upstream.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        upstream
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// The gateway's config: route "a" to this upstream at $10 per 1M tokens either way.
    fn routes(&self) -> String {
        format!(
            "[gateway]\nattempts = 1\nfailures_before_cooldown = 1000\n\
             [gateway.prices]\nten = {{ input = 10.0, output = 10.0 }}\n\
             [[gateway.providers]]\nname = \"fake\"\nbase_url = \"{}\"\ntimeout_seconds = 30.0\n\
             [[gateway.routes]]\nalias = \"a\"\nprivacy = \"allow\"\n\
             deployments = [{{ provider = \"fake\", model = \"m\", price = \"ten\" }}]\n",
            self.url
        )
    }
}

/// The usage every answer claims, each way.
const CLAIMED_TOKENS: u64 = 1_000_000;

fn upstream_chunk(delta: Value, finish: Option<&str>, usage: Option<Value>) -> String {
    let mut chunk = json!({
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    });
    if let Some(usage) = usage {
        chunk["usage"] = usage;
    }
    format!("data: {chunk}\n\n")
}

async fn upstream_chat(
    axum::extract::State(upstream): axum::extract::State<Upstream>,
    axum::Json(body): axum::Json<Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    upstream.hits.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(upstream.delay).await;
    let text = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("hello")
        .to_owned();
    let usage = json!({"prompt_tokens": CLAIMED_TOKENS, "completion_tokens": CLAIMED_TOKENS,
                       "total_tokens": 2 * CLAIMED_TOKENS});
    if body["stream"] != true {
        return axum::Json(json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": usage,
        }))
        .into_response();
    }
    // The role, then the text a word at a time 100 ms apart, then the end.
    let mut chunks = vec![upstream_chunk(
        json!({"role": "assistant", "content": ""}),
        None,
        None,
    )];
    for word in text.split_inclusive(' ') {
        chunks.push(upstream_chunk(json!({"content": word}), None, None));
    }
    chunks.push(upstream_chunk(json!({}), Some("stop"), Some(usage)));
    chunks.push("data: [DONE]\n\n".to_owned());
    let stream = futures::stream::iter(chunks.into_iter().enumerate()).then(|(i, c)| async move {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok::<_, std::convert::Infallible>(c)
    });
    (
        [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

fn chat_body(text: &str, stream: bool) -> Value {
    json!({"model": "a", "messages": [{"role": "user", "content": text}], "max_tokens": 16,
           "stream": stream})
}

/// POST /v1/chat/completions with `secret`: the status, the error code if any.
async fn chat(
    http: &reqwest::Client,
    replica: &str,
    secret: &str,
    body: &Value,
) -> (u16, Option<String>) {
    let response = http
        .post(format!("{replica}/v1/chat/completions"))
        .bearer_auth(secret)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["error"]["code"].as_str().map(str::to_owned))
}

/// What the ledger holds for key `name` once it holds `rows` rows (its writer commits every
/// 50 ms): their cost.
async fn ledger(store: &str, name: &str, rows: i64) -> f64 {
    let db = hearth_store::Database::connect(store).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (n, cost) = db
            .query_one(
                "SELECT COUNT(*), COALESCE(SUM(cost), 0.0) FROM gateway_usage WHERE api_key = $1",
                hearth_store::params![name],
                |r| Ok((r.get::<i64>(0)?, r.get::<f64>(1)?)),
            )
            .unwrap()
            .unwrap();
        assert!(n <= rows, "{n} rows for {name}, not {rows}");
        if n == rows {
            return cost;
        }
        if Instant::now() > deadline {
            let all = db
                .query(
                    "SELECT COALESCE(api_key, '-'), route, status FROM gateway_usage",
                    &[],
                    |r| {
                        Ok(format!(
                            "{} {} {}",
                            r.get::<String>(0)?,
                            r.get::<String>(1)?,
                            r.get::<String>(2)?
                        ))
                    },
                )
                .unwrap();
            panic!("{n} rows for {name}, not {rows}: {all:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 100 requests at once, spread over the replicas in turn: how many were answered, and the
/// error codes of the others.
async fn hundred_at_once(
    http: &reqwest::Client,
    replicas: &[Replica],
    secret: &str,
) -> (usize, Vec<String>) {
    let calls = (0..100).map(|i| {
        let (http, url, secret) = (
            http.clone(),
            replicas[i % replicas.len()].url.clone(),
            secret.to_owned(),
        );
        tokio::spawn(async move { chat(&http, &url, &secret, &chat_body("hi", i % 2 == 0)).await })
    });
    let (mut answered, mut refused) = (0, Vec::new());
    for call in futures::future::join_all(calls).await {
        match call.unwrap() {
            (200, _) => answered += 1,
            (429, Some(code)) => refused.push(code),
            other => panic!("{other:?}"),
        }
    }
    (answered, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_enforce_one_budget_one_rate_limit_and_one_revocation_exactly() {
    let store = hearth_testdata::postgres_database();
    let upstream = Upstream::start(Duration::from_millis(50)).await;
    let dirs: Vec<_> = (0..3).map(|_| config_dir(&upstream.routes())).collect();
    let replicas: Vec<Replica> = dirs.iter().map(|d| replica(d.path(), &store)).collect();
    let http = reqwest::Client::new();

    // What one request costs: a key without limits asks once.
    let probe = create_key(dirs[0].path(), &store, "probe", &[]);
    assert_eq!(
        chat(&http, &replicas[0].url, &probe, &chat_body("hi", false))
            .await
            .0,
        200
    );
    let cost = ledger(&store, "probe", 1).await;
    assert!(cost > 0.0);

    // A budget that holds ten of them, and 100 requests at once over three replicas.
    let budget = format!("{}", 10.5 * cost);
    let secret = create_key(
        dirs[1].path(),
        &store,
        "app",
        &["--budget", &budget, "--period", "total"],
    );
    let (answered, refused) = hundred_at_once(&http, &replicas, &secret).await;
    assert_eq!(answered, 10, "refused: {refused:?}");
    assert!(
        refused.iter().all(|c| c == "budget_exceeded"),
        "{refused:?}"
    );
    assert_eq!(upstream.hits(), 1 + 10);
    let spent = ledger(&store, "app", 10).await;
    assert!(spent <= 10.5 * cost, "spent {spent} of {}", 10.5 * cost);

    // Ten requests a minute, the same way.
    let secret = create_key(dirs[2].path(), &store, "rpm", &["--rpm", "10"]);
    let (answered, refused) = hundred_at_once(&http, &replicas, &secret).await;
    assert_eq!(answered, 10, "refused: {refused:?}");
    assert!(
        refused.iter().all(|c| c == "rate_limit_exceeded"),
        "{refused:?}"
    );
    assert_eq!(upstream.hits(), 1 + 10 + 10);

    // A key revoked beside the replicas admits nothing on any of them from the next request.
    for replica in &replicas {
        assert_eq!(
            chat(&http, &replica.url, &probe, &chat_body("hi", false))
                .await
                .0,
            200
        );
    }
    hearth_cli(dirs[0].path(), &store, &["keys", "revoke", "probe"]);
    for replica in &replicas {
        assert_eq!(
            chat(&http, &replica.url, &probe, &chat_body("hi", false))
                .await
                .0,
            401
        );
    }
    assert_eq!(upstream.hits(), 1 + 10 + 10 + 3);
}

/// A replica's data directory for the support agent: the retail policy and tools, and the
/// small real chat model SmolLM2 imported as "smol", its chat model.
fn support_dir(store: &str) -> tempfile::TempDir {
    let data = hearth_testdata::shared_data_dir();
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/retail/tools.toml");
    let dir = config_dir(&format!(
        "[support]\npolicy = {:?}\ntools = {:?}\nchat_model = \"smol\"\nmax_tool_rounds = 1\n\
         [support.tool_variables]\nSHOP_URL = \"http://127.0.0.1:9\"\n",
        data.join("retail/policy.md").to_str().unwrap(),
        tools.to_str().unwrap()
    ));
    let smol = hearth_testdata::models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let smol = smol.to_str().unwrap();
    hearth_cli(
        dir.path(),
        store,
        &["models", "import", smol, "--name", "smol"],
    );
    dir
}

async fn say(http: &reqwest::Client, replica: &Replica, session: &str, text: &str) -> Value {
    let response = http
        .post(format!(
            "{}/v1/support/sessions/{session}/messages",
            replica.url
        ))
        .json(&json!({"content": text, "stream": false}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{} {status}: {body}", replica.url);
    body
}

/// The customer's messages in the session's transcript, as `replica` shows it.
async fn customer_messages(
    http: &reqwest::Client,
    replica: &Replica,
    session: &str,
) -> Vec<String> {
    let session: Value = http
        .get(format!("{}/v1/support/sessions/{session}", replica.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    session["conversation"]["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("{session}"))
        .iter()
        .filter(|e| e["kind"] == "customer")
        .map(|e| e["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_support_conversation_over_three_replicas_keeps_one_transcript() {
    let store = hearth_testdata::postgres_database();
    let dirs: Vec<_> = (0..3).map(|_| support_dir(&store)).collect();
    let replicas: Vec<Replica> = dirs.iter().map(|d| replica(d.path(), &store)).collect();
    let http = reqwest::Client::new();

    let response = http
        .post(format!("{}/v1/support/sessions", replicas[0].url))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let session: Value = response.json().await.unwrap();
    let id = session["id"].as_str().unwrap().to_owned();

    // One message on each replica in turn.
    let said = [
        "Hello, I have a question.",
        "It is about shipping.",
        "Do you ship to Canada?",
    ];
    for (replica, text) in replicas.iter().zip(said) {
        say(&http, replica, &id, text).await;
    }
    // Two messages at once on A and B: both answered, one turn after the other (two turns
    // reading and saving the transcript at once would keep only one of them).
    tokio::join!(
        say(&http, &replicas[0], &id, "And how long does it take?"),
        say(&http, &replicas[1], &id, "Is it free?"),
    );
    // Every replica shows the one transcript, every message in it.
    for replica in &replicas {
        let customers = customer_messages(&http, replica, &id).await;
        assert_eq!(customers.len(), 5, "{}: {customers:?}", replica.url);
        assert_eq!(customers[..3], said);
        let mut last_two = customers[3..].to_vec();
        last_two.sort();
        assert_eq!(last_two, ["And how long does it take?", "Is it free?"]);
    }
}

/// A streamed chat on `replica`: its lines as they come, on a channel.
fn stream_chat(
    http: &reqwest::Client,
    replica: &str,
    text: &str,
) -> tokio::sync::mpsc::UnboundedReceiver<Result<String, String>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let request = http
        .post(format!("{replica}/v1/chat/completions"))
        .json(&chat_body(text, true));
    tokio::spawn(async move {
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return drop(tx.send(Err(e.to_string()))),
        };
        let mut body = response.bytes_stream();
        while let Some(piece) = body.next().await {
            let sent = match piece {
                Ok(bytes) => tx.send(Ok(String::from_utf8_lossy(&bytes).into_owned())),
                Err(e) => tx.send(Err(e.to_string())),
            };
            if sent.is_err() {
                return;
            }
        }
    });
    rx
}

/// Everything a stream still sends, and whether it ended in an error.
async fn rest_of(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Result<String, String>>,
) -> (String, bool) {
    let (mut text, mut failed) = (String::new(), false);
    while let Some(piece) = rx.recv().await {
        match piece {
            Ok(piece) => text.push_str(&piece),
            Err(_) => failed = true,
        }
    }
    (text, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_stream_breaks_only_its_own_stream() {
    let store = hearth_testdata::postgres_database();
    let upstream = Upstream::start(Duration::ZERO).await;
    let dirs: Vec<_> = (0..3).map(|_| config_dir(&upstream.routes())).collect();
    let mut replicas: Vec<Replica> = dirs.iter().map(|d| replica(d.path(), &store)).collect();
    let http = reqwest::Client::new();

    // Two streams of 30 words, 100 ms apart: one on A, one on C.
    let words = (0..30)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let on_a = stream_chat(&http, &replicas[0].url, &words);
    let mut on_c = stream_chat(&http, &replicas[2].url, &words);
    let mut seen = String::new();
    while !seen.contains("w1") {
        seen.push_str(&on_c.recv().await.expect("C's stream started").unwrap());
    }
    drop(replicas.pop()); // SIGKILL of C, mid-stream
    let (rest, _) = rest_of(on_c).await;
    assert!(
        !(seen + &rest).contains("[DONE]"),
        "C's stream ended as if whole"
    );

    // A's stream goes on to its end, and B answers.
    let (a_text, a_failed) = rest_of(on_a).await;
    assert!(
        !a_failed && a_text.contains("w29") && a_text.trim_end().ends_with("data: [DONE]"),
        "{a_text}"
    );
    let response = http
        .post(format!("{}/v1/chat/completions", replicas[1].url))
        .json(&chat_body("still there?", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Both whole answers are in the ledger; the broken one is not counted as answered.
    let db = hearth_store::Database::connect(&store).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = count(
            &db,
            "SELECT COUNT(*) FROM gateway_usage WHERE status = 'ok'",
            &[],
        );
        assert!(ok <= 2, "{ok} answers recorded");
        if ok == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{ok} answers recorded, not 2");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What one request of the load got: its status, and whether a 503 said when to retry.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    status: u16,
    retry_after: bool,
    at: Instant,
}

async fn outcome(response: Result<reqwest::Response, reqwest::Error>) -> Outcome {
    let at = Instant::now();
    match response {
        Ok(r) => Outcome {
            status: r.status().as_u16(),
            retry_after: r.headers().contains_key("retry-after"),
            at,
        },
        Err(e) => panic!("no answer: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_restarted_under_load_gives_503_then_service_resumes_without_restarting_hearth()
{
    let server = Arc::new(hearth_testdata::PostgresServer::start());
    let store = server.database();
    let upstream = Upstream::start(Duration::from_millis(10)).await;
    let dirs: Vec<_> = (0..3).map(|_| config_dir(&upstream.routes())).collect();
    let replicas: Vec<Replica> = dirs.iter().map(|d| replica(d.path(), &store)).collect();
    let secret = create_key(
        dirs[0].path(),
        &store,
        "app",
        &[
            "--scope",
            "inference,recs:write",
            "--budget",
            "1000",
            "--period",
            "total",
        ],
    );
    let http = reqwest::Client::new();

    // On each replica, batches of 20 events and budgeted chats, one after the other, until
    // told to stop.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = replicas
        .iter()
        .enumerate()
        .map(|(r, replica)| {
            let (http, url, secret, stop) =
                (http.clone(), replica.url.clone(), secret.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut batches, mut chats) = (Vec::new(), Vec::new());
                for n in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let events: Vec<Value> = (0..20)
                        .map(|i| json!({"id": format!("r{r}-{n}-{i}"), "user": format!("u{i}"), "item": "i1", "type": "view"}))
                        .collect();
                    let sent = http
                        .post(format!("{url}/v1/events"))
                        .bearer_auth(&secret)
                        .timeout(Duration::from_secs(30))
                        .json(&json!({ "events": events }))
                        .send()
                        .await;
                    batches.push((format!("r{r}-{n}-"), outcome(sent).await));
                    let sent = http
                        .post(format!("{url}/v1/chat/completions"))
                        .bearer_auth(&secret)
                        .timeout(Duration::from_secs(30))
                        .json(&chat_body("hi", n % 2 == 0))
                        .send()
                        .await;
                    chats.push(outcome(sent).await);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (batches, chats)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(2)).await;
    let down = {
        let server = server.clone();
        tokio::task::spawn_blocking(move || server.stop())
            .await
            .unwrap();
        Instant::now()
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    for replica in &replicas {
        let ready = http
            .get(format!("{}/ready", replica.url))
            .send()
            .await
            .unwrap();
        assert_eq!(
            ready.status(),
            503,
            "{} ready without its database",
            replica.url
        );
        let health = http
            .get(format!("{}/health", replica.url))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200, "{} not alive", replica.url);
    }
    let up = {
        let server = server.clone();
        tokio::task::spawn_blocking(move || server.resume())
            .await
            .unwrap();
        Instant::now()
    };
    // Service resumes on every replica by itself.
    for replica in &replicas {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http
                .get(format!("{}/ready", replica.url))
                .send()
                .await
                .unwrap();
            if ready.status() == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "{} not ready again", replica.url);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);

    let db = hearth_store::Database::connect(&store).unwrap();
    for (r, task) in load.into_iter().enumerate() {
        let (batches, chats) = task.await.unwrap();
        for o in batches.iter().map(|(_, o)| o).chain(&chats) {
            assert!(
                o.status == 200 || (o.status == 503 && o.retry_after),
                "replica {r}: {o:?}"
            );
        }
        // Refused while the database was down, answered before and after.
        for outcomes in [
            batches.iter().map(|(_, o)| *o).collect::<Vec<_>>(),
            chats.clone(),
        ] {
            assert!(
                outcomes
                    .iter()
                    .any(|o| o.status == 503 && o.at > down && o.at < up),
                "replica {r}: nothing refused while down"
            );
            assert!(
                outcomes.iter().any(|o| o.status == 200 && o.at < down),
                "replica {r}: nothing answered before"
            );
            assert!(
                outcomes.iter().any(|o| o.status == 200 && o.at > up),
                "replica {r}: nothing answered after"
            );
        }
        // A batch is stored whole or not at all, and whole when it was acknowledged.
        for (prefix, o) in &batches {
            let stored = count(
                &db,
                "SELECT COUNT(*) FROM recs_events WHERE id LIKE $1",
                hearth_store::params![format!("{prefix}%")],
            );
            assert!(
                stored == 0 || stored == 20,
                "{prefix}: {stored} of 20 stored"
            );
            if o.status == 200 {
                assert_eq!(stored, 20, "{prefix} acknowledged, not stored");
            }
        }
    }
}

/// `hearth bench events` against a replica that requires keys: every batch it counts is
/// stored (plus its one opening batch), and a key without recs:write is refused up front.
#[test]
fn bench_events_counts_what_the_replica_stored() {
    let store = hearth_testdata::postgres_database();
    let dir = config_dir("");
    let server = replica(dir.path(), &store);
    let writer = create_key(dir.path(), &store, "writer", &["--scope", "recs:write"]);
    let reader = create_key(dir.path(), &store, "reader", &["--scope", "recs:read"]);
    let bench = |key: &str| {
        Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(["bench", "events", "--url", &server.url, "--batch", "7"])
            .args(["--concurrency", "2", "--seconds", "1"])
            .env("HEARTH_BENCH_KEY", key)
            .env("HEARTH_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = bench(&writer);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let batches = report["batches"].as_u64().unwrap();
    assert!(batches > 0 && report["errors"] == 0, "{report}");
    let db = hearth_store::Database::connect(&store).unwrap();
    let stored = count(&db, "SELECT COUNT(*) FROM recs_events", &[]);
    assert_eq!(stored as u64, (batches + 1) * 7);
    let rate = report["events_per_second"].as_f64().unwrap();
    let seconds = report["seconds"].as_f64().unwrap();
    assert!(
        (rate * seconds - (batches * 7) as f64).abs() < 1e-6,
        "{report}"
    );

    let out = bench(&reader);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not take events") && err.contains("403"),
        "{err}"
    );
}

/// A training run by hand beside the servers counts for the schedule: a replica retraining
/// every 2 s does not train the same events again, and trains new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_training_by_hand_is_not_repeated_by_the_schedule() {
    let store = hearth_testdata::postgres_database();
    let shared = tempfile::tempdir().unwrap();
    let artifacts = shared.path().join("artifacts");
    let dir = config_dir(&recs_config(&artifacts));
    let events = events_file(shared.path());
    hearth_cli(
        dir.path(),
        &store,
        &["recs", "import", "--events", events.to_str().unwrap()],
    );
    hearth_cli(dir.path(), &store, &["recs", "train"]);
    assert_eq!(published_versions(&artifacts), ["v000001"]);

    let server = replica(dir.path(), &store);
    // Two firings and more.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(published_versions(&artifacts), ["v000001"]);

    let http = reqwest::Client::new();
    let response = http
        .post(format!("{}/v1/events", server.url))
        .json(&json!({"events": [{"id": "new-1", "user": "u1", "item": "i2", "type": "view"}]}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while published_versions(&artifacts).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the new event was never trained on"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
