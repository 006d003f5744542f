//! The model registry on the real test models (`scripts/fetch-test-models.sh`): header
//! metadata, import/list/resolve/remove, and models found in a Hugging Face cache.

use std::path::{Path, PathBuf};

use hearth_infer::registry::{
    inspect, ModelInfo, ModelKind, ModelRegistry, ModelSource, RegistryOptions,
};
use hearth_infer::InferError;

const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";
const MINILM: &str = "all-MiniLM-L6-v2";

/// The test-model cache. Missing models fail the test (they are part of the test setup).
fn test_models() -> PathBuf {
    let dir = std::env::var_os("HEARTH_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").expect("HOME is not set")).join(".cache")
                });
            cache.join("hearth/test-models")
        });
    for model in [SMOLLM2, GEMMA3, MINILM] {
        assert!(
            dir.join(model).exists(),
            "test model {} is missing: run scripts/fetch-test-models.sh (or set HEARTH_TEST_MODELS to where the models are)",
            dir.join(model).display()
        );
    }
    dir
}

fn registry(hub_cache: &Path) -> (tempfile::TempDir, ModelRegistry) {
    let data = tempfile::tempdir().unwrap();
    let registry = ModelRegistry::open(RegistryOptions {
        data_dir: data.path().join("data"),
        hub_cache: hub_cache.to_path_buf(),
    })
    .unwrap();
    (data, registry)
}

/// A valid safetensors file with one F32 tensor of two elements.
fn tiny_safetensors(path: &Path) {
    let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0u8; 8]);
    std::fs::write(path, bytes).unwrap();
}

fn names(models: &[ModelInfo]) -> Vec<&str> {
    models.iter().map(|m| m.name.as_str()).collect()
}

#[test]
fn inspects_smollm2() {
    let path = test_models().join(SMOLLM2);
    let info = inspect(&path).unwrap();
    assert_eq!(info.name, "smollm2-135m-instruct.q4_1");
    assert_eq!(info.kind, ModelKind::Chat);
    assert_eq!(info.architecture.as_deref(), Some("llama"));
    assert_eq!(info.quantization.as_deref(), Some("Q4_1"));
    assert_eq!(info.context_length, Some(8192));
    assert_eq!(info.embedding_dim, Some(576));
    let parameters = info.parameters.unwrap();
    assert!(
        (130_000_000..140_000_000).contains(&parameters),
        "{parameters}"
    );
    assert_eq!(info.size_bytes, std::fs::metadata(&path).unwrap().len());
    assert_eq!(info.path, path);
}

#[test]
fn inspects_gemma3() {
    let info = inspect(&test_models().join(GEMMA3)).unwrap();
    assert_eq!(info.kind, ModelKind::Chat);
    assert_eq!(info.architecture.as_deref(), Some("gemma3"));
    assert_eq!(info.quantization.as_deref(), Some("Q4_K_M"));
    assert_eq!(info.context_length, Some(32768));
    assert_eq!(info.embedding_dim, Some(640));
    let parameters = info.parameters.unwrap();
    assert!(
        (250_000_000..290_000_000).contains(&parameters),
        "{parameters}"
    );
}

#[test]
fn inspects_a_sentence_transformers_dir() {
    let dir = test_models().join(MINILM);
    let info = inspect(&dir).unwrap();
    assert_eq!(info.name, "all-MiniLM-L6-v2");
    assert_eq!(info.kind, ModelKind::Embedding);
    assert_eq!(info.architecture.as_deref(), Some("bert"));
    assert_eq!(info.embedding_dim, Some(384));
    assert_eq!(info.context_length, Some(512));
    assert_eq!(info.quantization.as_deref(), Some("F32"));
    let parameters = info.parameters.unwrap();
    assert!(
        (22_000_000..23_500_000).contains(&parameters),
        "{parameters}"
    );
    let weights = std::fs::metadata(dir.join("model.safetensors"))
        .unwrap()
        .len();
    assert!(info.size_bytes > weights);
}

#[test]
fn invalid_models_are_rejected_with_a_reason() {
    let models = test_models();
    let scratch = tempfile::tempdir().unwrap();
    let reason = |path: &Path| match inspect(path) {
        Err(InferError::InvalidModel { path: p, reason }) => {
            assert_eq!(p, path);
            reason
        }
        other => panic!(
            "expected InvalidModel for {}, got {other:?}",
            path.display()
        ),
    };

    let text = scratch.path().join("notes.gguf");
    std::fs::write(&text, "not a model at all, just some text").unwrap();
    assert!(reason(&text).contains("not a GGUF file"));

    // The first MiB of a real GGUF: its header is fine, its tensors are missing.
    let bytes = std::fs::read(models.join(SMOLLM2)).unwrap();
    let cut = scratch.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..1 << 20]).unwrap();
    assert!(reason(&cut).contains("truncated"));
    // All of it but the last KiB: the header parses, the last tensor's data is missing.
    std::fs::write(&cut, &bytes[..bytes.len() - 1024]).unwrap();
    let why = reason(&cut);
    assert!(why.contains("truncated: the tensors end at byte"), "{why}");

    assert!(reason(&scratch.path().join("absent.gguf")).contains("no such file"));

    // A sentence-transformers dir without its tokenizer, and one with cut weights.
    let copy = |name: &str, to: &Path| {
        std::fs::create_dir_all(to).unwrap();
        for file in ["config.json", "modules.json", "tokenizer.json"] {
            if file != name {
                std::fs::copy(models.join(MINILM).join(file), to.join(file)).unwrap();
            }
        }
    };
    let no_tokenizer = scratch.path().join("no-tokenizer");
    copy("tokenizer.json", &no_tokenizer);
    std::fs::copy(
        models.join(MINILM).join("config.json"),
        no_tokenizer.join("model.safetensors"),
    )
    .unwrap();
    assert!(reason(&no_tokenizer).contains("tokenizer.json"));

    let cut_weights = scratch.path().join("cut-weights");
    copy("", &cut_weights);
    let weights = std::fs::read(models.join(MINILM).join("model.safetensors")).unwrap();
    std::fs::write(cut_weights.join("model.safetensors"), &weights[..1 << 20]).unwrap();
    assert!(reason(&cut_weights).contains("truncated"));

    // A safetensors LLM is not something hearth runs.
    let llm = scratch.path().join("llm");
    std::fs::create_dir_all(&llm).unwrap();
    std::fs::write(llm.join("config.json"), r#"{"model_type": "qwen2"}"#).unwrap();
    std::fs::copy(
        models.join(MINILM).join("tokenizer.json"),
        llm.join("tokenizer.json"),
    )
    .unwrap();
    tiny_safetensors(&llm.join("model.safetensors"));
    assert!(reason(&llm).contains("GGUF"));

    // Import refuses them and records nothing.
    let (data, registry) = registry(scratch.path());
    let err = registry.import(&text, None).unwrap_err();
    assert_eq!(err.code(), "invalid_model");
    assert!(registry.list().unwrap().is_empty());
    assert!(!data.path().join("data/models.json").exists());
}

#[test]
fn import_list_resolve_remove_round_trip() {
    let models = test_models();
    let empty_cache = tempfile::tempdir().unwrap();
    let (data, registry) = registry(empty_cache.path());
    assert!(registry.list().unwrap().is_empty());

    let smol = registry.import(&models.join(SMOLLM2), None).unwrap();
    assert_eq!(smol.name, "smollm2-135m-instruct.q4_1");
    assert_eq!(smol.source, ModelSource::Imported);
    let minilm = registry
        .import(&models.join(MINILM), Some("minilm"))
        .unwrap();
    assert_eq!(minilm.kind, ModelKind::Embedding);
    let gemma = registry
        .import(&models.join(GEMMA3), Some("Gemma"))
        .unwrap();
    assert_eq!(gemma.architecture.as_deref(), Some("gemma3"));

    // Recorded atomically: models.json (and its lock), no temporary left behind.
    let mut files: Vec<String> = std::fs::read_dir(data.path().join("data"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, vec!["models.json", "models.json.lock"]);

    // A second registry on the same data dir (another process) sees the same list.
    let reopened = ModelRegistry::open(RegistryOptions {
        data_dir: data.path().join("data"),
        hub_cache: empty_cache.path().to_path_buf(),
    })
    .unwrap();
    let listed = reopened.list().unwrap();
    assert_eq!(
        names(&listed),
        vec!["smollm2-135m-instruct.q4_1", "minilm", "Gemma"]
    );
    assert_eq!(listed[0], smol);

    // Exact, then case-insensitive.
    assert_eq!(
        registry.resolve("minilm").unwrap().path,
        models.join(MINILM)
    );
    assert_eq!(registry.resolve("gemma").unwrap().name, "Gemma");
    assert_eq!(
        registry.resolve("SmolLM2-135M-Instruct.Q4_1").unwrap().name,
        smol.name
    );
    let err = registry.resolve("llama-3").unwrap_err();
    assert!(matches!(err, InferError::ModelNotFound { .. }), "{err:?}");

    // Duplicate names (any case) are refused.
    let err = registry
        .import(&models.join(GEMMA3), Some("MINILM"))
        .unwrap_err();
    assert!(
        matches!(&err, InferError::InvalidParameter { param, .. } if param == "name"),
        "{err:?}"
    );

    registry.remove("MiniLM").unwrap();
    assert_eq!(
        names(&registry.list().unwrap()),
        vec!["smollm2-135m-instruct.q4_1", "Gemma"]
    );
    assert!(models.join(MINILM).join("model.safetensors").exists());
    let err = registry.remove("minilm").unwrap_err();
    assert_eq!(err.code(), "model_not_found");
    // The name is free again.
    registry
        .import(&models.join(MINILM), Some("minilm"))
        .unwrap();
}

#[cfg(unix)]
fn link(target: &Path, at: &Path) {
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, at).unwrap();
}

#[cfg(unix)]
#[test]
fn hub_cache_models_are_listed_under_their_hub_names() {
    let models = test_models();
    let cache = tempfile::tempdir().unwrap();
    let commit = "a".repeat(40);
    let old_commit = "b".repeat(40);

    // A GGUF repo as `hearth pull` / huggingface_hub leave it (the blob links to the real file
    // so nothing big is copied), plus an older snapshot holding the same file.
    let smol_repo = cache
        .path()
        .join("models--HuggingFaceTB--SmolLM2-135M-Instruct-GGUF");
    let etag = "c".repeat(64);
    link(&models.join(SMOLLM2), &smol_repo.join("blobs").join(&etag));
    for snapshot in [&commit, &old_commit] {
        link(
            &PathBuf::from(format!("../../blobs/{etag}")),
            &smol_repo
                .join("snapshots")
                .join(snapshot)
                .join("smollm2-135m-instruct-q4_1.gguf"),
        );
    }
    // A file whose blob is still downloading: a dangling link, not a model.
    link(
        &PathBuf::from("../../blobs/missing"),
        &smol_repo
            .join("snapshots")
            .join(&commit)
            .join("smollm2-135m-instruct-q8_0.gguf"),
    );
    std::fs::create_dir_all(smol_repo.join("refs")).unwrap();
    std::fs::write(smol_repo.join("refs/main"), &commit).unwrap();

    // A sentence-transformers repo.
    let minilm_repo = cache
        .path()
        .join("models--sentence-transformers--all-MiniLM-L6-v2");
    let snapshot = minilm_repo.join("snapshots").join(&commit);
    for file in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "modules.json",
        "1_Pooling/config.json",
    ] {
        link(&models.join(MINILM).join(file), &snapshot.join(file));
    }
    std::fs::create_dir_all(minilm_repo.join("refs")).unwrap();
    std::fs::write(minilm_repo.join("refs/main"), &commit).unwrap();

    // Things hearth cannot run: a dataset, a safetensors LLM.
    std::fs::create_dir_all(cache.path().join("datasets--acme--data/snapshots")).unwrap();
    let llm = cache
        .path()
        .join("models--acme--llm/snapshots")
        .join(&commit);
    std::fs::create_dir_all(&llm).unwrap();
    std::fs::write(llm.join("config.json"), r#"{"model_type":"qwen2"}"#).unwrap();
    link(
        &models.join(MINILM).join("tokenizer.json"),
        &llm.join("tokenizer.json"),
    );
    tiny_safetensors(&llm.join("model.safetensors"));

    let (_data, registry) = registry(cache.path());
    registry.import(&models.join(GEMMA3), None).unwrap();
    let listed = registry.list().unwrap();
    assert_eq!(
        names(&listed),
        vec![
            "gemma-3-270m-q4_k_m",
            "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:smollm2-135m-instruct-q4_1",
            "sentence-transformers/all-MiniLM-L6-v2",
        ]
    );
    let smol = &listed[1];
    assert_eq!(smol.kind, ModelKind::Chat);
    assert_eq!(smol.architecture.as_deref(), Some("llama"));
    assert_eq!(smol.quantization.as_deref(), Some("Q4_1"));
    assert_eq!(
        smol.source,
        ModelSource::HubCache {
            repo: "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF".into(),
            revision: "main".into(),
        }
    );
    assert_eq!(
        smol.path,
        smol_repo
            .join("snapshots")
            .join(&commit)
            .join("smollm2-135m-instruct-q4_1.gguf")
    );
    let minilm = &listed[2];
    assert_eq!(minilm.kind, ModelKind::Embedding);
    assert_eq!(minilm.embedding_dim, Some(384));
    assert_eq!(minilm.path, snapshot);

    // Resolve: full name, a unique case-insensitive match, the repo alone, repo:QUANT.
    for name in [
        "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:smollm2-135m-instruct-q4_1",
        "huggingfacetb/smollm2-135m-instruct-gguf:SMOLLM2-135M-INSTRUCT-Q4_1",
        "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
        "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:Q4_1",
    ] {
        assert_eq!(registry.resolve(name).unwrap().path, smol.path, "{name}");
    }
    let err = registry
        .resolve("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:Q8_0")
        .unwrap_err();
    assert_eq!(err.code(), "model_not_found");

    // Hub models cannot be removed from the registry, and their names are taken.
    let err = registry
        .remove("sentence-transformers/all-MiniLM-L6-v2")
        .unwrap_err();
    assert!(err.to_string().contains("Hugging Face cache"), "{err}");
    let err = registry
        .import(
            &models.join(MINILM),
            Some("sentence-transformers/all-minilm-l6-v2"),
        )
        .unwrap_err();
    assert_eq!(err.code(), "invalid_request");
}

/// The list is scanned once and kept: calls answer from memory, an import by another process
/// (the CLI beside a server) shows up at once, and a pull into the cache after `refresh`.
#[cfg(unix)]
#[test]
fn the_list_is_kept_and_refreshed_when_models_change() {
    let models = test_models();
    let cache = tempfile::tempdir().unwrap();
    let (data, server) = registry(cache.path());
    assert!(server.list().unwrap().is_empty());

    // Two calls in a row share one scan (retried, in case this machine stalls for longer
    // than a scan is kept between the two).
    let shared = (0..5).any(|_| {
        let (a, b) = (server.models().unwrap(), server.models().unwrap());
        std::sync::Arc::ptr_eq(&a, &b)
    });
    assert!(shared, "every call scanned again");

    // Another process imports: its write to models.json is seen on the next call.
    let cli = ModelRegistry::open(RegistryOptions {
        data_dir: data.path().join("data"),
        hub_cache: cache.path().to_path_buf(),
    })
    .unwrap();
    cli.import(&models.join(MINILM), Some("minilm")).unwrap();
    assert_eq!(names(&server.list().unwrap()), ["minilm"]);
    assert_eq!(server.resolve("minilm").unwrap().kind, ModelKind::Embedding);

    // A model pulled into the cache is listed once the registry is told (or the scan ages).
    let commit = "a".repeat(40);
    let repo = cache
        .path()
        .join("models--HuggingFaceTB--SmolLM2-135M-Instruct-GGUF");
    link(
        &models.join(SMOLLM2),
        &repo.join("snapshots").join(&commit).join("smol.gguf"),
    );
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), &commit).unwrap();
    server.refresh();
    assert!(server.fresh_models().is_none());
    assert_eq!(
        names(&server.list().unwrap()),
        ["minilm", "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:smol"]
    );

    // Removed elsewhere: gone here on the next call.
    cli.remove("minilm").unwrap();
    assert_eq!(
        names(&server.list().unwrap()),
        ["HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:smol"]
    );
}

fn adapter_file(name: &str) -> PathBuf {
    test_models().join("adapters").join(format!("{name}.gguf"))
}

#[test]
fn an_adapter_is_imported_onto_its_base_and_checked_against_it() {
    let hub = tempfile::tempdir().unwrap();
    let (_data, registry) = registry(hub.path());
    registry
        .import(&test_models().join(SMOLLM2), Some("smol"))
        .unwrap();
    registry
        .import(&test_models().join(GEMMA3), Some("gemma"))
        .unwrap();
    registry
        .import(&test_models().join(MINILM), Some("minilm"))
        .unwrap();

    let info = registry
        .import_adapter(&adapter_file("smollm2-a"), "SMOL", None)
        .unwrap();
    assert_eq!(info.name, "smollm2-a", "named after the file");
    assert_eq!(
        info.base.as_deref(),
        Some("smol"),
        "the base's registry name"
    );
    assert_eq!(info.kind, ModelKind::Chat);
    assert_eq!(info.architecture.as_deref(), Some("llama"));
    assert_eq!(info.source, ModelSource::Imported);
    assert_eq!(
        registry.resolve("smollm2-a").unwrap().base.as_deref(),
        Some("smol")
    );
    // It survives reopening (the record keeps the base).
    let listed = registry.list().unwrap();
    assert!(listed
        .iter()
        .any(|m| m.name == "smollm2-a" && m.base.is_some()));

    // A model file given as an adapter, and an adapter given as a model.
    let err = registry
        .import_adapter(&test_models().join(SMOLLM2), "smol", Some("x"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not an adapter"), "{err}");
    let err = registry
        .import(&adapter_file("smollm2-b"), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--base"), "{err}");
    // The wrong architecture names both; the wrong size names both shapes.
    let err = registry
        .import_adapter(&adapter_file("qwen05-a"), "smol", None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("'qwen2'") && err.contains("'llama'") && err.contains("'smol'"),
        "{err}"
    );
    let err = registry
        .import_adapter(&adapter_file("smollm2-360m-shape"), "smol", None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[576, 576]") && err.contains("[960, 32]"),
        "{err}"
    );
    // Bases that cannot take one.
    for (base, why) in [
        ("minilm", "an embedding model"),
        ("smollm2-a", "itself an adapter"),
        ("nothing-here", "no model named 'nothing-here'"),
    ] {
        let err = registry
            .import_adapter(&adapter_file("smollm2-b"), base, Some("y"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(why), "{base}: {err}");
    }
    let err = registry
        .import_adapter(&adapter_file("smollm2-b"), "gemma", Some("y"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("'gemma3'"), "{err}");
    // A name in use is refused; the base cannot be removed under its adapter.
    assert!(registry
        .import_adapter(&adapter_file("smollm2-b"), "smol", Some("gemma"))
        .is_err());
    let err = registry.remove("smol").unwrap_err().to_string();
    assert!(err.contains("smollm2-a"), "{err}");
    registry.remove("smollm2-a").unwrap();
    registry.remove("smol").unwrap();
    assert!(registry.list().unwrap().iter().all(|m| m.base.is_none()));
}

#[test]
fn adapters_declared_in_configuration_are_checked_at_start() {
    use hearth_infer::registry::DeclaredAdapter;
    let hub = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let open = || {
        ModelRegistry::open(RegistryOptions {
            data_dir: data.path().join("data"),
            hub_cache: hub.path().to_owned(),
        })
        .unwrap()
    };
    open()
        .import(&test_models().join(SMOLLM2), Some("smol"))
        .unwrap();
    let declared = |name: &str, file: &str, base: &str| DeclaredAdapter {
        name: name.into(),
        path: adapter_file(file),
        base: base.into(),
    };
    let registry = open()
        .with_adapters(&[declared("tuned", "smollm2-a", "smol")])
        .unwrap();
    let tuned = registry.resolve("tuned").unwrap();
    assert_eq!(
        (tuned.base.as_deref(), &tuned.source),
        (Some("smol"), &ModelSource::Config)
    );
    let err = registry.remove("tuned").unwrap_err().to_string();
    assert!(err.contains("configuration"), "{err}");
    let err = registry.remove("smol").unwrap_err().to_string();
    assert!(err.contains("tuned"), "{err}");
    // An import may not take a declared name.
    assert!(registry
        .import_adapter(&adapter_file("smollm2-b"), "smol", Some("TUNED"))
        .is_err());
    // Refusals name the adapter's problem at start.
    for (adapters, why) in [
        (
            vec![declared("smol", "smollm2-a", "smol")],
            "the name of the model smol",
        ),
        (
            vec![declared("t", "smollm2-a", "missing")],
            "no model named 'missing'",
        ),
        (
            vec![declared("t", "smollm2-360m-shape", "smol")],
            "[960, 32]",
        ),
        (vec![declared("t", "no-such-file", "smol")], "no such file"),
        (
            vec![
                declared("t", "smollm2-a", "smol"),
                declared("T", "smollm2-b", "smol"),
            ],
            "the name of the model t",
        ),
    ] {
        let Err(err) = open().with_adapters(&adapters) else {
            panic!("{why}: accepted");
        };
        let err = err.to_string();
        assert!(err.contains(why), "{why}: {err}");
    }
}
