//! The `hearth` binary as a user runs it, on the real test models.

use std::process::Command;

use hearth_testdata::{models_dir, movielens_dir};

fn hearth(data: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    hearth_env(data, &[], args)
}

#[test]
fn import_list_chat_and_embed_from_the_command_line() {
    let data = tempfile::tempdir().unwrap();
    let models = models_dir();
    let smol = models.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let (ok, out, err) = hearth(
        data.path(),
        &["models", "import", smol.to_str().unwrap(), "--name", "smol"],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("smol") && out.contains("llama") && out.contains("Q4_1"),
        "{out}"
    );
    let minilm = models.join("all-MiniLM-L6-v2");
    assert!(
        hearth(
            data.path(),
            &[
                "models",
                "import",
                minilm.to_str().unwrap(),
                "--name",
                "minilm"
            ]
        )
        .0
    );

    let (ok, out, _) = hearth(data.path(), &["models", "--json"]);
    assert!(ok);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        names.contains(&"smol".to_owned()) && names.contains(&"minilm".to_owned()),
        "{names:?}"
    );

    // The same name twice is refused with a message, and nothing changes.
    let (ok, _, err) = hearth(
        data.path(),
        &["models", "import", smol.to_str().unwrap(), "--name", "smol"],
    );
    assert!(!ok && err.contains("smol"), "{err}");

    let (ok, out, err) = hearth(
        data.path(),
        &[
            "chat",
            "smol",
            "--system",
            "You are a helpful assistant.",
            "--temperature",
            "0",
            "--max-tokens",
            "16",
            "--prompt",
            "What is the capital of France? Answer in one word.",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.to_lowercase().contains("paris"), "{out}");

    let (ok, out, err) = hearth(
        data.path(),
        &["embed", "minilm", "I lost my card", "Where is my refund?"],
    );
    assert!(ok, "{err}");
    let response: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(response["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        response["data"][1]["embedding"].as_array().unwrap().len(),
        384
    );

    let (ok, out, _) = hearth(data.path(), &["models", "remove", "smol"]);
    assert!(ok, "{out}");
    let (ok, _, err) = hearth(data.path(), &["chat", "smol", "--prompt", "hi"]);
    assert!(!ok && err.contains("not found"), "{err}");
    assert!(smol.is_file(), "remove must not delete the model file");
}

#[test]
fn config_show_layers_flags_over_the_file_and_hides_keys() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("custom.toml");
    std::fs::write(
        &file,
        "[server]\napi_keys = [\"sk-very-secret\"]\n[llm]\nmax_sequences = 3\n",
    )
    .unwrap();
    let (ok, out, err) = hearth(
        data.path(),
        &[
            "--config",
            file.to_str().unwrap(),
            "--threads",
            "1",
            "config",
            "show",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("max_sequences = 3"), "{out}");
    assert!(out.contains("threads = 1"), "{out}");
    assert!(
        !out.contains("sk-very-secret") && out.contains("<redacted>"),
        "{out}"
    );
    let (ok, _, err) = hearth(
        data.path(),
        &["--config", "/nonexistent/hearth.toml", "config", "show"],
    );
    assert!(!ok && err.contains("/nonexistent/hearth.toml"), "{err}");
}

#[test]
fn recs_eval_compares_trained_models_with_the_off_the_shelf_baseline() {
    let data = tempfile::tempdir().unwrap();
    let minilm = models_dir().join("all-MiniLM-L6-v2");
    let (ok, _, err) = hearth(
        data.path(),
        &[
            "models",
            "import",
            minilm.to_str().unwrap(),
            "--name",
            "minilm",
        ],
    );
    assert!(ok, "{err}");
    let ml = movielens_dir();
    let ml = ml.to_str().unwrap();

    // Without an embedding model the baseline cannot run: a clear error, not a crash.
    let (ok, _, err) = hearth(data.path(), &["recs", "eval", "--data", ml]);
    assert!(!ok);
    assert!(err.contains("--embedding-model"), "{err}");

    let plot = data.path().join("ndcg.svg");
    let (ok, out, err) = hearth(
        data.path(),
        &[
            "recs",
            "eval",
            "--data",
            ml,
            "--models",
            "popularity,ease,off-the-shelf",
            "--no-search",
            "--embedding-model",
            "minilm",
            "--json",
            "--plot",
            plot.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("ml-100k.inter: 100000 rows, 0 skipped"),
        "{err}"
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ndcg = |model: &str| {
        report["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["model"] == model)
            .unwrap_or_else(|| panic!("{model} missing from {out}"))["ndcg"]
            .as_f64()
            .unwrap()
    };
    let baseline = ndcg("off-the-shelf");
    assert!(
        baseline > 0.0,
        "the baseline ranks some held-out items: {out}"
    );
    assert!(ndcg("ease") > 1.3 * baseline, "{out}");
    assert!(ndcg("ease") > ndcg("popularity"), "{out}");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("off-the-shelf"),
        "{svg}"
    );
}

#[test]
fn an_import_killed_midway_keeps_every_committed_batch_and_resumes() {
    let data = tempfile::tempdir().unwrap();
    let events = movielens_dir().join("ml-100k.inter");
    let db_path = data.path().join("hearth.db");
    let count = || -> u64 {
        use rusqlite::{Connection, OpenFlags};
        // Read-only, and never creating the file before hearth does.
        let Ok(conn) = Connection::open_with_flags(&db_path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        else {
            return 0;
        };
        conn.query_row("SELECT COUNT(*) FROM recs_events", [], |r| r.get(0))
            .unwrap_or(0)
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--data-dir")
        .arg(data.path())
        .args(["recs", "import", "--batch-size", "1000", "--events"])
        .arg(&events)
        .env("HEARTH_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once some batches are committed but before it is done.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut seen = 0;
    while seen < 3000 && std::time::Instant::now() < deadline {
        seen = count();
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let after_kill = count();
    assert!(
        after_kill >= seen && after_kill >= 3000,
        "{after_kill} < {seen}"
    );
    assert_eq!(after_kill % 1000, 0, "only whole batches are committed");
    assert!(
        after_kill < 100_000,
        "the import finished before it was killed"
    );

    // Running it again stores the rest, each event once.
    let (ok, out, err) = hearth(
        data.path(),
        &[
            "recs",
            "import",
            "--events",
            events.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(ok, "{err}");
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary[0]["duplicates"], after_kill);
    assert_eq!(summary[0]["stored"], 100_000 - after_kill);
    assert_eq!(count(), 100_000);

    // And the stored events evaluate without --data.
    let (ok, out, err) = hearth(
        data.path(),
        &["recs", "eval", "--models", "popularity,ease", "--no-search"],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("| ease |") && out.contains("943 users"),
        "{out}"
    );
}

#[test]
fn import_row_errors_reach_stderr_and_the_errors_file_without_a_terminal() {
    let data = tempfile::tempdir().unwrap();
    let events = data.path().join("events.csv");
    std::fs::write(
        &events,
        "user_id,item_id,timestamp\nu1,i1,100\nu2,,110\nu3,i3,not-a-time\nu4,i4,130\n",
    )
    .unwrap();
    let report = data.path().join("errors.jsonl");
    // `output()` pipes stdout and stderr: no terminal, as under cron or CI.
    let (ok, out, err) = hearth(
        data.path(),
        &[
            "recs",
            "import",
            "--events",
            events.to_str().unwrap(),
            "--errors",
            report.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("2 stored") && out.contains("2 skipped"),
        "{out}"
    );
    for line in [3, 4] {
        assert!(
            err.contains(&format!("events.csv:{line}:")),
            "row {line} not on stderr: {err}"
        );
    }
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["line"], 3);
    assert_eq!(rows[1]["line"], 4);
    assert!(rows[0]["file"].as_str().unwrap().ends_with("events.csv"));
    assert!(!rows[1]["message"].as_str().unwrap().is_empty());
}

#[test]
fn keys_usage_and_routes_from_the_command_line() {
    let data = tempfile::tempdir().unwrap();
    let (ok, out, err) = hearth(
        data.path(),
        &[
            "keys", "create", "team-a", "--routes", "chat", "--rpm", "60", "--budget", "5",
            "--period", "day", "--json",
        ],
    );
    assert!(ok, "{err}");
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("hk-"), "{out}");
    assert_eq!(created["budget"], 5.0);
    assert_eq!(created["period"], "day");
    assert_eq!(created["scopes"], serde_json::json!(["inference"]));
    let (ok, out, err) = hearth(
        data.path(),
        &[
            "keys",
            "create",
            "shop-web",
            "--scope",
            "recs:read,recs.write",
            "--tenant",
            "shop",
            "--json",
        ],
    );
    assert!(ok, "{err}");
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        created["scopes"],
        serde_json::json!(["recs:read", "recs:write"])
    );
    assert_eq!(created["tenant"], "shop");
    let (ok, _, err) = hearth(data.path(), &["keys", "create", "c", "--scope", "root"]);
    assert!(
        !ok && err.contains("root") && err.contains("recs:read"),
        "{err}"
    );
    // Listed without its secret; names are never reused.
    let (ok, out, _) = hearth(data.path(), &["keys", "list"]);
    assert!(
        ok && out.contains("team-a") && out.contains("active"),
        "{out}"
    );
    assert!(
        out.contains("recs:read,recs:write") && out.contains("shop"),
        "{out}"
    );
    assert!(!out.contains(&secret), "{out}");
    let (ok, _, err) = hearth(data.path(), &["keys", "create", "team-a"]);
    assert!(!ok && err.contains("team-a"), "{err}");
    let (ok, _, err) = hearth(data.path(), &["keys", "create", "b", "--period", "week"]);
    assert!(!ok && err.contains("week"), "{err}");
    let (ok, out, err) = hearth(data.path(), &["keys", "revoke", "team-a"]);
    assert!(ok && out.contains("revoked"), "{err}");
    let (ok, out, _) = hearth(data.path(), &["keys", "list", "--json"]);
    assert!(ok);
    let keys: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(keys[0]["revoked"].is_number(), "{out}");

    // An empty ledger still prints its assumptions; a bad --by names itself.
    let (ok, out, err) = hearth(data.path(), &["usage", "report", "--since", "7d"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("gpt-4o") && out.contains("Local cost"),
        "{out}"
    );
    let (ok, _, err) = hearth(data.path(), &["usage", "report", "--by", "colour"]);
    assert!(!ok && err.contains("colour"), "{err}");
    let (ok, out, _) = hearth(data.path(), &["usage", "prices"]);
    assert!(
        ok && out.contains("gpt-4o-mini") && out.contains("2025-10"),
        "{out}"
    );
    let (ok, out, _) = hearth(data.path(), &["routes"]);
    assert!(ok && out.contains("no routes"), "{out}");
}

/// The CLI answers from the same service methods as the HTTP API: recommend, similar and
/// search on a model trained on MovieLens, with the same checks on what is asked.
#[test]
fn recommend_similar_and_search_from_the_command_line() {
    let data = tempfile::tempdir().unwrap();
    let ml = movielens_dir();
    let (items, events) = (ml.join("ml-100k.item"), ml.join("ml-100k.inter"));
    let (ok, _, err) = hearth(
        data.path(),
        &[
            "recs",
            "import",
            "--items",
            items.to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");

    // Before any training: the same error the API answers with, naming the fix.
    let (ok, _, err) = hearth(data.path(), &["recs", "recommend", "1"]);
    assert!(!ok);
    assert!(err.contains("hearth recs train"), "{err}");

    let (ok, _, err) = hearth(data.path(), &["recs", "train", "--models", "ease"]);
    assert!(ok, "{err}");

    let seen: std::collections::HashSet<String> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut cols = l.split('\t');
            (cols.next() == Some("1")).then(|| cols.next().unwrap().to_owned())
        })
        .collect();
    assert!(seen.len() > 200, "user 1 rated {} films", seen.len());
    let (ok, out, err) = hearth(
        data.path(),
        &["recs", "recommend", "1", "-n", "5", "--json"],
    );
    assert!(ok, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["object"], "list");
    assert_eq!(list["model_version"], 1);
    let picks: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["item"].as_str().unwrap())
        .collect();
    assert_eq!(picks.len(), 5, "{out}");
    assert!(
        picks.iter().all(|p| !seen.contains(*p)),
        "seen items: {out}"
    );

    // The table: a header and one line per item, ranked.
    let (ok, out, err) = hearth(data.path(), &["recs", "recommend", "1", "-n", "3"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[0].contains("rank") && lines[0].contains("title"),
        "{out}"
    );
    assert!(lines[1].trim_start().starts_with("1 "), "{out}");
    assert!(
        lines[1].contains(picks[0]),
        "the table and the JSON agree: {out}"
    );

    let (ok, out, err) = hearth(data.path(), &["recs", "similar", "50", "-n", "3", "--json"]);
    assert!(ok, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let similar = list["data"].as_array().unwrap();
    assert_eq!(similar.len(), 3, "{out}");
    assert!(similar.iter().all(|r| r["item"] != "50"), "{out}");

    let (ok, out, err) = hearth(data.path(), &["recs", "search", "star wars", "--json"]);
    assert!(ok, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["hybrid"], false, "no embedding model was trained with");
    assert_eq!(list["data"][0]["title"], "Star Wars", "{out}");

    // What the API refuses, the CLI refuses with the same message.
    let (ok, _, err) = hearth(data.path(), &["recs", "recommend", "1", "-n", "0"]);
    assert!(!ok);
    assert!(err.contains("'n' must be between 1 and 500"), "{err}");
    let (ok, _, err) = hearth(data.path(), &["recs", "similar", "no-such-film"]);
    assert!(!ok);
    assert!(err.contains("unknown item 'no-such-film'"), "{err}");
    let (ok, _, err) = hearth(data.path(), &["recs", "search", "  "]);
    assert!(!ok);
    assert!(err.contains("'query' must not be empty"), "{err}");

    // Catalogue search measured on labelled queries, with and without a second stage.
    let minilm = models_dir().join("all-MiniLM-L6-v2");
    let (ok, _, err) = hearth(
        data.path(),
        &[
            "models",
            "import",
            minilm.to_str().unwrap(),
            "--name",
            "minilm",
        ],
    );
    assert!(ok, "{err}");
    let labels = data.path().join("search-labels.jsonl");
    std::fs::write(
        &labels,
        concat!(
            r#"{"query": "star wars", "items": ["50"]}"#,
            "\n\n",
            r#"{"query": "toy story", "items": ["1", "no-such-item"]}"#,
            "\n",
        ),
    )
    .unwrap();
    let eval = |extra: &[&str]| {
        let mut args = vec!["recs", "search-eval", labels.to_str().unwrap(), "--json"];
        args.extend(extra);
        let (ok, out, err) = hearth(data.path(), &args);
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let words = eval(&[]);
    assert_eq!(words["queries"], 2, "{words}");
    assert!(words["rerank"].is_null());
    assert_eq!(words["hit_at_1"], 1.0, "{words}");
    let reranked = eval(&["--rerank", "minilm", "--rerank-fuse", "-k", "5"]);
    assert_eq!(reranked["rerank"], "minilm");
    assert_eq!(reranked["fused"], true);
    assert_eq!(reranked["k"], 5);
    assert_eq!(reranked["recall_at_k"], 1.0, "{reranked}");
    let (ok, out, err) = hearth(
        data.path(),
        &[
            "recs",
            "search-eval",
            labels.to_str().unwrap(),
            "--rerank",
            "minilm",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("2 queries, hybrid + rerank by minilm: hit@1"),
        "{out}"
    );
    // The stage runs: a reranker that does not exist fails the search.
    let (ok, _, err) = hearth(
        data.path(),
        &["recs", "search", "star wars", "--rerank", "no-such-model"],
    );
    assert!(!ok);
    assert!(err.contains("no-such-model"), "{err}");
    std::fs::write(
        &labels,
        "{\"query\": \"a\", \"items\": [\"1\"]}\n{\"query\": \"b\"}\n",
    )
    .unwrap();
    let (ok, _, err) = hearth(
        data.path(),
        &["recs", "search-eval", labels.to_str().unwrap()],
    );
    assert!(!ok);
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn kb_eval_measures_search_with_and_without_a_reranker() {
    let data = tempfile::tempdir().unwrap();
    let models = models_dir();
    let minilm = models.join("all-MiniLM-L6-v2");
    let ce = hearth_testdata::cross_encoder_dir("bert");
    for (path, name) in [(&minilm, "minilm"), (&ce, "tiny-ce")] {
        let (ok, out, err) = hearth(
            data.path(),
            &["models", "import", path.to_str().unwrap(), "--name", name],
        );
        assert!(ok, "{err}");
        if name == "tiny-ce" {
            assert!(out.contains("rerank"), "{out}");
        }
    }
    let policy = hearth_testdata::shared_data_dir().join("retail/policy.md");
    let (ok, _, err) = hearth(
        data.path(),
        &["support", "kb", "add", policy.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    let labels = data.path().join("labels.jsonl");
    std::fs::write(
        &labels,
        concat!(
            r#"{"query": "I want to exchange a delivered item for another colour", "titles": ["Retail agent policy › Exchange delivered order"]}"#,
            "\n",
            r#"{"query": "cancel my pending order please", "titles": ["Retail agent policy › Cancel pending order"]}"#,
            "\n",
        ),
    )
    .unwrap();
    let eval = |extra: &[&str]| {
        let mut args = vec!["support", "kb", "eval", labels.to_str().unwrap(), "--json"];
        args.extend(extra);
        let (ok, out, err) = hearth(data.path(), &args);
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let hybrid = eval(&[]);
    assert_eq!(hybrid["queries"], 2);
    assert!(hybrid["rerank"].is_null());
    assert_eq!(hybrid["recall_at_k"], 1.0, "{hybrid}");
    assert_eq!(hybrid["hit_at_1"], 1.0, "{hybrid}");
    // The random cross-encoder reorders the passages: whatever it finds, it is measured.
    let reranked = eval(&["--rerank", "tiny-ce", "--rerank-depth", "10"]);
    assert_eq!(reranked["rerank"], "tiny-ce");
    let mrr = reranked["mrr_at_k"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&mrr));
    // search prints the reranked passages too.
    let (ok, out, err) = hearth(
        data.path(),
        &[
            "support",
            "kb",
            "search",
            "exchange an item",
            "--k",
            "2",
            "--rerank",
            "tiny-ce",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out.matches("[kb:").count(), 2, "{out}");
    // The second stage runs: a reranker that does not exist fails the search.
    let (ok, _, err) = hearth(
        data.path(),
        &[
            "support",
            "kb",
            "search",
            "exchange an item",
            "--rerank",
            "no-such-model",
        ],
    );
    assert!(!ok);
    assert!(err.contains("no-such-model"), "{err}");
    // A bad line is named.
    std::fs::write(
        &labels,
        "{\"query\": \"a\", \"titles\": [\"x\"]}\n{\"query\": \"b\"}\n",
    )
    .unwrap();
    let (ok, _, err) = hearth(
        data.path(),
        &["support", "kb", "eval", labels.to_str().unwrap()],
    );
    assert!(!ok);
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn lora_adapters_are_imported_listed_and_chatted_with() {
    let data = tempfile::tempdir().unwrap();
    let models = models_dir();
    let smol = models.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let adapters = models.join("adapters");
    assert!(
        hearth(
            data.path(),
            &["models", "import", smol.to_str().unwrap(), "--name", "smol"]
        )
        .0
    );
    let a = adapters.join("smollm2-a.gguf");
    let (ok, out, err) = hearth(
        data.path(),
        &[
            "models",
            "import",
            a.to_str().unwrap(),
            "--base",
            "smol",
            "--name",
            "tuned",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("BASE") && out.contains("tuned") && out.contains("smol"),
        "{out}"
    );
    // Without --base, an adapter file is refused with the hint.
    let (ok, _, err) = hearth(data.path(), &["models", "import", a.to_str().unwrap()]);
    assert!(!ok && err.contains("--base"), "{err}");
    // An adapter of another size: both shapes in the message.
    let big = adapters.join("smollm2-360m-shape.gguf");
    let (ok, _, err) = hearth(
        data.path(),
        &["models", "import", big.to_str().unwrap(), "--base", "smol"],
    );
    assert!(
        !ok && err.contains("[576, 576]") && err.contains("[960, 32]"),
        "{err}"
    );

    // One declared in a config file, its path relative to the file.
    let etc = tempfile::tempdir().unwrap();
    let config = etc.path().join("hearth.toml");
    std::fs::copy(adapters.join("smollm2-b.gguf"), etc.path().join("b.gguf")).unwrap();
    std::fs::write(
        &config,
        "[[models.adapters]]\nname = \"tuned-b\"\npath = \"b.gguf\"\nbase = \"smol\"\n",
    )
    .unwrap();
    let (ok, out, err) = hearth(
        data.path(),
        &["--config", config.to_str().unwrap(), "models", "--json"],
    );
    assert!(ok, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let bases: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                m["base"].as_str().map(str::to_owned),
            )
        })
        .collect();
    assert!(
        bases.contains(&("tuned".into(), Some("smol".into()))),
        "{bases:?}"
    );
    assert!(
        bases.contains(&("tuned-b".into(), Some("smol".into()))),
        "{bases:?}"
    );

    let ask = |model: &str| {
        let (ok, out, err) = hearth(
            data.path(),
            &[
                "--config",
                config.to_str().unwrap(),
                "chat",
                model,
                "--temperature",
                "0",
                "--max-tokens",
                "12",
                "--prompt",
                "What is the capital of France?",
            ],
        );
        assert!(ok, "{model}: {err}");
        out
    };
    let base = ask("smol");
    let tuned = ask("tuned");
    let tuned_b = ask("tuned-b");
    assert_ne!(base, tuned);
    assert_ne!(base, tuned_b);
    assert_ne!(tuned, tuned_b);

    // The base stays while an adapter stands on it, imported or declared.
    let (ok, _, err) = hearth(data.path(), &["models", "remove", "smol"]);
    assert!(!ok && err.contains("tuned"), "{err}");
    let (ok, _, err) = hearth(
        data.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "models",
            "remove",
            "tuned-b",
        ],
    );
    assert!(!ok && err.contains("configuration"), "{err}");
    assert!(hearth(data.path(), &["models", "remove", "tuned"]).0);
    assert!(hearth(data.path(), &["models", "remove", "smol"]).0);
}

/// `hearth` as a user runs it on `data` (no keys or store URL from this environment), with
/// `env` set.
fn hearth_env(
    data: &std::path::Path,
    env: &[(&str, &str)],
    args: &[&str],
) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("HEARTH_LOG", "warn")
        .env_remove("HEARTH_API_KEYS")
        .env_remove("HEARTH_STORE_URL")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_embedded_install_moves_into_postgresql_and_is_served_from_there() {
    let (one_box, replica, shared) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (ok, _, err) = hearth(one_box.path(), &["keys", "create", "app", "--budget", "5"]);
    assert!(ok, "{err}");
    let events = one_box.path().join("events.csv");
    let mut csv = String::from("user_id,item_id,timestamp\n");
    for i in 0..300 {
        csv.push_str(&format!("u{},i{},{i}\n", i % 17, (i * 7) % 23));
    }
    std::fs::write(&events, csv).unwrap();
    let (ok, _, err) = hearth(
        one_box.path(),
        &["recs", "import", "--events", events.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = hearth(one_box.path(), &["recs", "train"]);
    assert!(ok, "{err}");
    let (ok, before, err) = hearth(one_box.path(), &["recs", "recommend", "u3", "-n", "5"]);
    assert!(ok, "{err}");

    let url = hearth_testdata::postgres_database();
    let shared_artifacts = shared.path().join("artifacts");
    let migrate = |extra: &[&str]| {
        let mut args = vec!["store", "migrate"];
        args.extend_from_slice(extra);
        hearth_env(
            one_box.path(),
            &[("HEARTH_MIGRATE_TO", url.as_str())],
            &args,
        )
    };
    let (ok, out, err) = migrate(&["--artifacts-dir", shared_artifacts.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("recs_events") && out.contains("300 rows"),
        "{out}"
    );

    // A replica with the URL and the shared path has the keys, the events and the model.
    std::fs::write(
        replica.path().join("hearth.toml"),
        format!(
            "[store]\nartifacts_dir = {:?}\n",
            shared_artifacts.to_str().unwrap()
        ),
    )
    .unwrap();
    let on_replica =
        |args: &[&str]| hearth_env(replica.path(), &[("HEARTH_STORE_URL", &url)], args);
    let (ok, keys, err) = on_replica(&["keys", "list"]);
    assert!(ok, "{err}");
    assert!(keys.contains("app") && keys.contains("5.00"), "{keys}");
    let (ok, after, err) = on_replica(&["recs", "recommend", "u3", "-n", "5"]);
    assert!(ok, "{err}");
    assert_eq!(after, before, "the replica recommends as the one box did");
    let db = hearth_store::Database::connect(&url).unwrap();
    let count = |table: &str| {
        db.query_one(&format!("SELECT COUNT(*) FROM {table}"), &[], |r| {
            r.get::<i64>(0)
        })
        .unwrap()
    };
    assert_eq!(count("recs_events"), Some(300));
    assert_eq!(count("gateway_keys"), Some(1));
    assert!(
        !replica.path().join("hearth.db").exists(),
        "the replica made no SQLite file"
    );

    // Again into the same database: refused, nothing doubled; a bad URL is named as such.
    let (ok, _, err) = migrate(&[]);
    assert!(!ok);
    assert!(err.contains("already holds rows"), "{err}");
    assert_eq!(count("recs_events"), Some(300));
    let (ok, _, err) = hearth(one_box.path(), &["store", "migrate", "--to", "mysql://x"]);
    assert!(!ok && err.contains("PostgreSQL URL"), "{err}");
}
