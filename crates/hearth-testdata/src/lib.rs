//! Where tests find the real data they run on, fetched outside the repository by the
//! project's scripts. A missing directory fails the test with the command that fixes it; it
//! is never a silent skip. Dev-only: no shipped crate depends on this.

use std::path::PathBuf;

pub mod cross_encoders;
pub mod pii;
pub mod postgres;

pub use cross_encoders::cross_encoder_dir;
pub use postgres::{postgres_database, store_urls, test_store_url, PostgresServer, TLS_HOST};

fn cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache")
        })
        .join("hearth")
}

fn located(env: &str, default: PathBuf, marker: &str, fix: &str) -> PathBuf {
    let dir = std::env::var_os(env).map(PathBuf::from).unwrap_or(default);
    assert!(
        dir.join(marker).exists(),
        "{marker} missing in {}: {fix} (or point {env} at a directory holding it)",
        dir.display()
    );
    dir
}

/// The small real models (`scripts/fetch-test-models.sh`, `$HEARTH_TEST_MODELS`):
/// SmolLM2-135M-Instruct.Q4_1.gguf, gemma-3-270m-q4_k_m.gguf, all-MiniLM-L6-v2/,
/// Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf.
pub fn models_dir() -> PathBuf {
    located(
        "HEARTH_TEST_MODELS",
        cache().join("test-models"),
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "run scripts/fetch-test-models.sh",
    )
}

/// MovieLens-100K as RecBole files (`scripts/fetch-movielens.sh`, `$HEARTH_MOVIELENS`).
pub fn movielens_dir() -> PathBuf {
    located(
        "HEARTH_MOVIELENS",
        cache().join("data/ml-100k"),
        "ml-100k.inter",
        "run scripts/fetch-movielens.sh",
    )
}

/// The project's shared real data (`$HEARTH_SHARED_DATA`, default: the first `shared/data`
/// beside the workspace or one of its parents): banking77/, retail/.
pub fn shared_data_dir() -> PathBuf {
    let default = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("shared/data"))
        .find(|dir| dir.join("banking77").exists())
        .unwrap_or_else(|| PathBuf::from("/work/shared/data"));
    located(
        "HEARTH_SHARED_DATA",
        default,
        "banking77/train.csv",
        "the shared data sits beside the repository as shared/data",
    )
}
