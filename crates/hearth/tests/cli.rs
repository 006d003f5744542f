//! The `hearth` binary as a user runs it, on the real test models.

use std::path::PathBuf;
use std::process::Command;

fn models_dir() -> PathBuf {
    let dir = std::env::var_os("HEARTH_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/hearth/test-models")
        });
    assert!(
        dir.join("SmolLM2-135M-Instruct.Q4_1.gguf").is_file(),
        "test models missing in {}: run scripts/fetch-test-models.sh",
        dir.display()
    );
    dir
}

fn hearth(data: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("HEARTH_LOG", "warn")
        .env_remove("HEARTH_API_KEYS")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
            "What is the capital of France?",
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
