//! Three `hearth serve` processes on one PostgreSQL database, as replicas behind a load
//! balancer run: shared work done once, shared state seen at once, a replica killed mid-write
//! losing nothing it acknowledged.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// The replicas' config: published models on one shared path, retraining every 2 s.
fn config_dir(artifacts: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hearth.toml"),
        format!(
            "[store]\nartifacts_dir = {:?}\n[recs]\ntrain_interval_seconds = 2\n",
            artifacts.to_str().unwrap()
        ),
    )
    .unwrap();
    dir
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
    let dirs: Vec<_> = (0..3).map(|_| config_dir(&artifacts)).collect();

    // The catalogue's events, imported once into the shared database.
    let events = shared.path().join("events.csv");
    let mut csv = String::from("user_id,item_id,timestamp\n");
    for i in 0..400 {
        csv.push_str(&format!("u{},i{},{i}\n", i % 19, (i * 7 + i / 19) % 29));
    }
    std::fs::write(&events, csv).unwrap();
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .arg("--data-dir")
            .arg(dirs[1].path())
            .args(args)
            .env("HEARTH_STORE_URL", &store)
            .env("HEARTH_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
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
    let stored = db
        .query_one(
            "SELECT COUNT(*) FROM recs_events WHERE id LIKE 'k%'",
            &[],
            |r| r.get::<i64>(0),
        )
        .unwrap()
        .unwrap() as usize;
    assert!(
        stored >= acknowledged.len() * 50,
        "{stored} stored of {} acknowledged",
        acknowledged.len() * 50
    );
    for batch in &acknowledged {
        let n = db
            .query_one(
                "SELECT COUNT(*) FROM recs_events WHERE id LIKE $1",
                hearth_store::params![format!("k{batch}-%")],
                |r| r.get::<i64>(0),
            )
            .unwrap();
        assert_eq!(n, Some(50), "batch {batch} acknowledged but not whole");
    }
    for replica in &replicas {
        assert!(version(&recommend(&http, replica, "u3").await).is_some());
    }
}
