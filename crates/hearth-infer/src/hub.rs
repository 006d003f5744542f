//! Pulling models from the Hugging Face Hub into the standard HF cache.
//!
//! The files land in the layout `huggingface_hub` defines, so vLLM, TGI, candle and the
//! Python tools share them with hearth (and hearth reuses what they already downloaded):
//!
//! ```text
//! {cache}/models--ORG--REPO/
//!     blobs/<etag>                      the content; <etag> is the sha256 for LFS files
//!     blobs/<etag>.incomplete           a download in progress (the only partial files)
//!     snapshots/<commit>/<file>         symlink to ../../blobs/<etag>
//!     refs/<revision>                   the commit the revision pointed at
//! {cache}/.locks/models--ORG--REPO/<etag>.lock
//! ```
//!
//! Unlike `huggingface_hub`, LFS files are verified against their sha256 before they become
//! visible, and interrupted downloads resume with a `Range` request.
//!
//! This module speaks HTTP to the Hub (it is a client), never to hearth's own clients.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use reqwest::header::{HeaderMap, CONTENT_LENGTH, CONTENT_RANGE, ETAG, LOCATION, RANGE};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where the Hub lives unless `HF_ENDPOINT` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Files a sentence-transformers repo needs (those present are downloaded). Module directories
/// such as `1_Pooling/` and `2_Dense/` are matched separately, see [`is_sentence_transformers_file`].
const SENTENCE_TRANSFORMERS_FILES: &[&str] = &[
    "config.json",
    "tokenizer.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "special_tokens_map.json",
    "tokenizer_config.json",
    "vocab.txt",
    "model.safetensors.index.json",
];

/// Any of these in a repo marks it as a sentence-transformers model.
const SENTENCE_TRANSFORMERS_MARKERS: &[&str] = &[
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
];

/// A failure while pulling from the Hub or resolving from its cache. Each variant has a stable
/// public code, see [`HubError::code`].
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("offline (HF_HUB_OFFLINE=1) and {what} of '{repo}' at revision '{revision}' is not in the cache {}; pull it once while online", .cache_dir.display())]
    Offline {
        repo: String,
        revision: String,
        /// What is missing: "the revision", "a file matching 'Q8_0'" …
        what: String,
        cache_dir: PathBuf,
    },
    #[error("invalid model spec '{spec}': {reason}; expected ORG/REPO, ORG/REPO:QUANT (e.g. ORG/REPO:Q4_K_M) or ORG/REPO:FILE.gguf")]
    InvalidSpec { spec: String, reason: String },
    #[error("the Hub refused access to '{repo}' (HTTP {status}): set HF_TOKEN to a token with read access; gated repos need accepting the licence on the hub first (the repo's page on the Hub). A private or misspelt repo answers the same way")]
    Unauthorized { repo: String, status: u16 },
    #[error("{} not found on {endpoint}", describe_missing(.repo, .revision, .file.as_deref()))]
    NotFound {
        repo: String,
        revision: String,
        /// `None` when the repo or the revision itself is missing.
        file: Option<String>,
        endpoint: String,
    },
    #[error("no file in '{repo}' matches '{selector}'; candidates: {}", list_or_none(.candidates))]
    NoMatchingFile {
        repo: String,
        selector: String,
        candidates: Vec<String>,
    },
    #[error("{} in '{repo}'; pick one with {repo}:QUANT or {repo}:FILE; candidates: {}", describe_ambiguity(.selector.as_deref()), .candidates.join(", "))]
    AmbiguousSelector {
        repo: String,
        selector: Option<String>,
        candidates: Vec<String>,
    },
    #[error("'{repo}' has neither a GGUF file nor a sentence-transformers model; hearth runs LLMs from GGUF (look for a -GGUF repo of the model) and embedders from sentence-transformers repos; files: {}", list_or_none(.files))]
    UnsupportedRepo { repo: String, files: Vec<String> },
    #[error("cannot reach the Hub at {endpoint}: {reason}; check the network, set HF_ENDPOINT to a reachable mirror, or HF_HUB_OFFLINE=1 to use the cache only")]
    Unreachable { endpoint: String, reason: String },
    #[error("download of '{file}' was interrupted after {downloaded} of {} bytes ({reason}); run the pull again to resume", .total.map_or_else(|| "?".to_string(), |t| t.to_string()))]
    Interrupted {
        file: String,
        downloaded: u64,
        total: Option<u64>,
        reason: String,
    },
    #[error("the Hub answered HTTP {status} for {url}{}", with_detail(.detail))]
    Http {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("unexpected answer from the Hub for {url}: {reason}")]
    BadResponse { url: String, reason: String },
    #[error("checksum mismatch for '{file}': expected sha256 {expected}, got {actual}; the partial download was deleted, run the pull again")]
    ChecksumMismatch {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("not enough disk space for the Hugging Face cache {}: {}; free some space or set HF_HUB_CACHE to another disk", .cache_dir.display(), describe_space(.needed_bytes, .available_bytes))]
    DiskFull {
        cache_dir: PathBuf,
        needed_bytes: Option<u64>,
        available_bytes: Option<u64>,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl HubError {
    /// The stable public code of this error.
    pub fn code(&self) -> hearth_types::ErrorCode {
        match self {
            HubError::Offline { .. } => hearth_types::ErrorCode::HubOffline,
            HubError::InvalidSpec { .. } => hearth_types::ErrorCode::InvalidModelSpec,
            HubError::Unauthorized { .. } => hearth_types::ErrorCode::HubUnauthorized,
            HubError::NotFound { .. } => hearth_types::ErrorCode::HubNotFound,
            HubError::NoMatchingFile { .. } => hearth_types::ErrorCode::HubFileNotFound,
            HubError::AmbiguousSelector { .. } => hearth_types::ErrorCode::AmbiguousModelFile,
            HubError::UnsupportedRepo { .. } => hearth_types::ErrorCode::UnsupportedModelRepo,
            HubError::Unreachable { .. } => hearth_types::ErrorCode::HubUnreachable,
            HubError::Interrupted { .. } => hearth_types::ErrorCode::HubDownloadInterrupted,
            HubError::Http { .. } => hearth_types::ErrorCode::HubError,
            HubError::BadResponse { .. } => hearth_types::ErrorCode::HubBadResponse,
            HubError::ChecksumMismatch { .. } => hearth_types::ErrorCode::ChecksumMismatch,
            HubError::DiskFull { .. } => hearth_types::ErrorCode::DiskFull,
            HubError::Io { .. } => hearth_types::ErrorCode::HubIoError,
        }
    }

    fn io(context: impl Into<String>, source: io::Error) -> Self {
        HubError::Io {
            context: context.into(),
            source,
        }
    }
}

fn describe_missing(repo: &str, revision: &str, file: Option<&str>) -> String {
    match file {
        Some(file) => format!("file '{file}' of '{repo}' at revision '{revision}'"),
        None => format!("repo '{repo}' (revision '{revision}')"),
    }
}

fn with_detail(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

fn describe_ambiguity(selector: Option<&str>) -> String {
    match selector {
        Some(selector) => format!("'{selector}' matches several models"),
        None => "several GGUF models".to_string(),
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

fn describe_space(needed: &Option<u64>, available: &Option<u64>) -> String {
    match (*needed, *available) {
        (Some(n), Some(a)) => format!(
            "the download needs {} ({n} bytes) and {} ({a} bytes) are free",
            human_bytes(n),
            human_bytes(a)
        ),
        (Some(n), None) => format!("the download needs {} ({n} bytes)", human_bytes(n)),
        _ => "the disk filled up during the download".to_string(),
    }
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Where and how to talk to the Hub.
#[derive(Clone)]
pub struct HubOptions {
    /// Base URL of the Hub (`HF_ENDPOINT`), e.g. `https://huggingface.co` or a mirror.
    pub endpoint: String,
    /// The HF hub cache directory (`HF_HUB_CACHE`, else `$HF_HOME/hub`).
    pub cache_dir: PathBuf,
    /// Access token for gated and private repos (`HF_TOKEN`), sent as a Bearer header.
    pub token: Option<String>,
    /// Never touch the network (`HF_HUB_OFFLINE=1`): resolve from the cache or fail.
    pub offline: bool,
}

impl fmt::Debug for HubOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubOptions")
            .field("endpoint", &self.endpoint)
            .field("cache_dir", &self.cache_dir)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("offline", &self.offline)
            .finish()
    }
}

impl HubOptions {
    /// Reads the variables `huggingface_hub` reads: `HF_ENDPOINT`, `HF_HUB_CACHE`, `HF_HOME`,
    /// `HF_TOKEN` (else the token file `huggingface-cli login` writes, `$HF_TOKEN_PATH` or
    /// `$HF_HOME/token`), `HF_HUB_OFFLINE`.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`HubOptions::from_env`] over any source of variables (`lookup` answers a variable's
    /// value); empty values count as unset.
    pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let hf_home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            let cache = var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".cache")))
                .unwrap_or_else(|| PathBuf::from(".cache"));
            cache.join("huggingface")
        });
        let cache_dir = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let token = var("HF_TOKEN")
            .or_else(|| var("HUGGING_FACE_HUB_TOKEN"))
            .or_else(|| {
                let path = var("HF_TOKEN_PATH")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| hf_home.join("token"));
                std::fs::read_to_string(path)
                    .ok()
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
            })
            .map(|t| t.trim().to_string());
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        });
        HubOptions {
            endpoint: var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string()),
            cache_dir,
            token,
            offline,
        }
    }
}

/// What to pull: `ORG/REPO[:FILE_OR_QUANT]` at a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSpec {
    /// `ORG/REPO`.
    pub repo: String,
    /// A file name in the repo, or a quantization tag such as `Q4_K_M`.
    pub selector: Option<String>,
    /// A branch, tag or commit; `main` unless set.
    pub revision: String,
}

impl PullSpec {
    /// A spec at a revision other than `main`; the revision is validated like the rest.
    pub fn with_revision(mut self, revision: &str) -> Result<Self, HubError> {
        validate_revision(revision).map_err(|reason| HubError::InvalidSpec {
            spec: format!("{self} --revision {revision}"),
            reason,
        })?;
        self.revision = revision.to_string();
        Ok(self)
    }
}

impl fmt::Display for PullSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repo)?;
        if let Some(selector) = &self.selector {
            write!(f, ":{selector}")?;
        }
        Ok(())
    }
}

impl FromStr for PullSpec {
    type Err = HubError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| HubError::InvalidSpec {
            spec: spec.to_string(),
            reason,
        };
        let trimmed = spec.trim();
        // Accept the forms people paste: a Hub URL, or Ollama's `hf.co/ORG/REPO:QUANT`.
        let mut rest = trimmed;
        for prefix in [
            "https://huggingface.co/",
            "http://huggingface.co/",
            "huggingface.co/",
            "hf.co/",
        ] {
            if let Some(stripped) = rest.strip_prefix(prefix) {
                rest = stripped;
                break;
            }
        }
        let (repo, selector) = match rest.split_once(':') {
            Some((repo, selector)) => (repo, Some(selector)),
            None => (rest, None),
        };
        validate_repo_id(repo).map_err(invalid)?;
        let selector = match selector {
            None => None,
            Some("") => return Err(invalid("nothing after ':'".to_string())),
            Some(selector) => {
                if !is_safe_relative_path(selector) {
                    return Err(invalid(format!(
                        "'{selector}' is not a file name or a quantization tag"
                    )));
                }
                Some(selector.to_string())
            }
        };
        Ok(PullSpec {
            repo: repo.to_string(),
            selector,
            revision: "main".to_string(),
        })
    }
}

fn validate_repo_id(repo: &str) -> Result<(), String> {
    let Some((org, name)) = repo.split_once('/') else {
        return Err(format!("'{repo}' is not ORG/REPO"));
    };
    if name.contains('/') {
        return Err(format!("'{repo}' has more than one '/'"));
    }
    for part in [org, name] {
        if part.is_empty() {
            return Err(format!("'{repo}' has an empty organisation or repo name"));
        }
        if let Some(c) = part
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(format!("'{repo}' contains '{c}'"));
        }
        if part.starts_with(['-', '.']) || part.ends_with(['-', '.']) || part.contains("..") {
            return Err(format!(
                "'{part}' may not start or end with '-' or '.', nor contain '..'"
            ));
        }
        if part.contains("--") {
            return Err(format!("'{part}' may not contain '--'"));
        }
    }
    Ok(())
}

fn validate_revision(revision: &str) -> Result<(), String> {
    if revision.is_empty() {
        return Err("the revision is empty".to_string());
    }
    if !is_safe_relative_path(revision) || revision.chars().any(char::is_whitespace) {
        return Err(format!("'{revision}' is not a branch, tag or commit"));
    }
    Ok(())
}

/// A relative path with no `..`, `.` or empty components: safe to join under a directory.
fn is_safe_relative_path(path: &str) -> bool {
    !path.is_empty()
        && !path.contains(['\\', '\0'])
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

/// Receives download progress; the CLI draws bars with it, the console shows it live.
pub trait PullProgress: Send {
    /// Every file of the pull is resolved, before any byte moves: each file's name and size
    /// (`None` when the Hub did not say).
    fn planned(&mut self, _files: &[(&str, Option<u64>)]) {}
    /// A file starts (or resumes: `resumed_from` bytes are already on disk). `total_bytes` is
    /// 0 when the Hub did not say.
    fn file_started(&mut self, file: &str, total_bytes: u64, resumed_from: u64);
    /// `bytes` more bytes of the current file arrived.
    fn advanced(&mut self, bytes: u64);
    /// The current file is verified and in place.
    fn file_finished(&mut self, file: &str);
}

/// Progress that goes nowhere.
pub struct NoProgress;

impl PullProgress for NoProgress {
    fn file_started(&mut self, _file: &str, _total_bytes: u64, _resumed_from: u64) {}
    fn advanced(&mut self, _bytes: u64) {}
    fn file_finished(&mut self, _file: &str) {}
}

/// A model that is in the cache, ready to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledModel {
    pub repo: String,
    pub revision: String,
    pub commit: String,
    pub snapshot_dir: PathBuf,
    /// The pulled files, as paths in the snapshot dir.
    pub files: Vec<PathBuf>,
    /// What to load: the GGUF (its first part when split), or the snapshot dir for a
    /// sentence-transformers repo.
    pub primary: PathBuf,
}

/// `{cache_dir}/models--ORG--REPO`.
pub fn hf_cache_repo_dir(cache_dir: &Path, repo: &str) -> PathBuf {
    cache_dir.join(format!("models--{}", repo.replace('/', "--")))
}

/// A model repo found in the HF cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedRepo {
    /// `ORG/REPO` (or `REPO` for the few legacy repos without an organisation).
    pub repo: String,
    pub repo_dir: PathBuf,
    /// Revision (branch, tag, `refs/pr/1` …) → commit, from `refs/`.
    pub refs: BTreeMap<String, String>,
    pub snapshots: Vec<CachedSnapshot>,
}

/// One `snapshots/<commit>` directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedSnapshot {
    pub commit: String,
    pub dir: PathBuf,
}

/// Every model repo in the HF cache (datasets and spaces are skipped), sorted by repo id.
/// Unreadable entries are skipped: the cache is shared with other tools.
pub fn cached_models(cache_dir: &Path) -> Vec<CachedRepo> {
    let Ok(entries) = std::fs::read_dir(cache_dir) else {
        return Vec::new();
    };
    let mut repos = Vec::new();
    for entry in entries.flatten() {
        let dir_name = entry.file_name();
        let Some(encoded) = dir_name.to_str().and_then(|n| n.strip_prefix("models--")) else {
            continue;
        };
        let repo_dir = entry.path();
        if !repo_dir.is_dir() {
            continue;
        }
        let repo = match encoded.split_once("--") {
            Some((org, name)) => format!("{org}/{name}"),
            None => encoded.to_string(),
        };
        let mut refs = BTreeMap::new();
        collect_refs(&repo_dir.join("refs"), "", &mut refs);
        let mut snapshots = Vec::new();
        if let Ok(snapshot_entries) = std::fs::read_dir(repo_dir.join("snapshots")) {
            for snapshot in snapshot_entries.flatten() {
                let dir = snapshot.path();
                if let (Some(commit), true) = (snapshot.file_name().to_str(), dir.is_dir()) {
                    snapshots.push(CachedSnapshot {
                        commit: commit.to_string(),
                        dir,
                    });
                }
            }
        }
        snapshots.sort_by(|a, b| a.commit.cmp(&b.commit));
        repos.push(CachedRepo {
            repo,
            repo_dir,
            refs,
            snapshots,
        });
    }
    repos.sort_by(|a, b| a.repo.cmp(&b.repo));
    repos
}

fn collect_refs(dir: &Path, prefix: &str, refs: &mut BTreeMap<String, String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let revision = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let path = entry.path();
        if path.is_dir() {
            collect_refs(&path, &revision, refs);
        } else if let Ok(commit) = std::fs::read_to_string(&path) {
            let commit = commit.trim();
            if !commit.is_empty() {
                refs.insert(revision, commit.to_string());
            }
        }
    }
}

/// Downloads what `spec` selects into the HF cache (or, offline, finds it there) and returns
/// where it is. Already-complete blobs are not downloaded again; partial ones resume.
pub async fn pull(
    opts: &HubOptions,
    spec: &PullSpec,
    progress: &mut dyn PullProgress,
) -> Result<PulledModel, HubError> {
    validate_repo_id(&spec.repo).map_err(|reason| HubError::InvalidSpec {
        spec: spec.to_string(),
        reason,
    })?;
    validate_revision(&spec.revision).map_err(|reason| HubError::InvalidSpec {
        spec: spec.to_string(),
        reason,
    })?;
    if opts.offline {
        return resolve_offline(opts, spec);
    }
    let client = HubClient::new(opts)?;
    let listing = client.repo_listing(&spec.repo, &spec.revision).await?;
    let names: Vec<String> = listing.files.keys().cloned().collect();
    let selection = select_files(&spec.repo, &names, spec.selector.as_deref())?;

    let repo_dir = hf_cache_repo_dir(&opts.cache_dir, &spec.repo);
    let blobs_dir = repo_dir.join("blobs");
    create_dir_all(&blobs_dir)?;

    // Resolve every file first so that free space is checked once, before any byte moves.
    // Files are fetched by commit, not by branch: a branch that moves mid-pull cannot mix
    // files of two commits in one snapshot.
    let mut commit = listing.commit.clone();
    let mut plans = Vec::with_capacity(selection.files.len());
    for file in &selection.files {
        let rev_for_url = commit.as_deref().unwrap_or(&spec.revision);
        let meta = client
            .file_metadata(&spec.repo, rev_for_url, file, listing.files.get(file))
            .await?;
        if commit.is_none() {
            commit = meta.commit.clone();
        }
        plans.push(meta);
    }
    let commit = commit.ok_or_else(|| HubError::BadResponse {
        url: client.api_url(&spec.repo, &spec.revision).to_string(),
        reason: "neither the listing ('sha') nor the file headers (X-Repo-Commit) name a commit"
            .to_string(),
    })?;
    if !is_safe_relative_path(&commit) || commit.contains('/') {
        return Err(HubError::BadResponse {
            url: client.api_url(&spec.repo, &spec.revision).to_string(),
            reason: format!("'{commit}' is not a commit id"),
        });
    }
    check_free_space(&opts.cache_dir, &blobs_dir, &plans)?;
    progress.planned(
        &plans
            .iter()
            .map(|m| (m.file.as_str(), m.size))
            .collect::<Vec<_>>(),
    );

    let snapshot_dir = repo_dir.join("snapshots").join(&commit);
    let locks_dir = opts
        .cache_dir
        .join(".locks")
        .join(repo_dir.file_name().unwrap_or_default());
    create_dir_all(&locks_dir)?;
    let mut files = Vec::with_capacity(plans.len());
    for meta in &plans {
        let _lock = lock_file(&locks_dir.join(format!("{}.lock", meta.etag))).await?;
        client
            .download_blob(&spec.repo, &commit, meta, &blobs_dir, progress)
            .await?;
        let link = snapshot_dir.join(&meta.file);
        link_snapshot_file(&link, &meta.file, &meta.etag)?;
        files.push(link);
    }
    if spec.revision != commit {
        write_ref(&repo_dir, &spec.revision, &commit)?;
    }
    let primary = match &selection.primary {
        Some(file) => snapshot_dir.join(file),
        None => snapshot_dir.clone(),
    };
    Ok(PulledModel {
        repo: spec.repo.clone(),
        revision: spec.revision.clone(),
        commit,
        snapshot_dir,
        files,
        primary,
    })
}

fn resolve_offline(opts: &HubOptions, spec: &PullSpec) -> Result<PulledModel, HubError> {
    let offline = |what: String| HubError::Offline {
        repo: spec.repo.clone(),
        revision: spec.revision.clone(),
        what,
        cache_dir: opts.cache_dir.clone(),
    };
    let repo_dir = hf_cache_repo_dir(&opts.cache_dir, &spec.repo);
    let snapshots = repo_dir.join("snapshots");
    let commit = if is_commit_hash(&spec.revision) && snapshots.join(&spec.revision).is_dir() {
        spec.revision.clone()
    } else {
        match std::fs::read_to_string(repo_dir.join("refs").join(&spec.revision)) {
            Ok(commit) if !commit.trim().is_empty() => commit.trim().to_string(),
            _ => return Err(offline("the revision".to_string())),
        }
    };
    let snapshot_dir = snapshots.join(&commit);
    if !is_safe_relative_path(&commit) || !snapshot_dir.is_dir() {
        return Err(offline(format!("the snapshot {commit}")));
    }
    let mut names = Vec::new();
    list_snapshot_files(&snapshot_dir, "", &mut names);
    let selection = match select_files(&spec.repo, &names, spec.selector.as_deref()) {
        Ok(selection) => selection,
        Err(HubError::NoMatchingFile { selector, .. }) => {
            return Err(offline(format!("a file matching '{selector}'")))
        }
        Err(HubError::UnsupportedRepo { .. }) => return Err(offline("a model file".to_string())),
        Err(other) => return Err(other),
    };
    Ok(PulledModel {
        repo: spec.repo.clone(),
        revision: spec.revision.clone(),
        commit,
        files: selection
            .files
            .iter()
            .map(|f| snapshot_dir.join(f))
            .collect(),
        primary: match &selection.primary {
            Some(file) => snapshot_dir.join(file),
            None => snapshot_dir.clone(),
        },
        snapshot_dir,
    })
}

/// Files (following symlinks; dangling links skipped) under `dir`, as `/`-separated paths.
pub(crate) fn list_snapshot_files(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let relative = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        match std::fs::metadata(entry.path()) {
            Ok(meta) if meta.is_dir() => list_snapshot_files(&entry.path(), &relative, out),
            Ok(_) => out.push(relative),
            Err(_) => {}
        }
    }
    out.sort();
}

fn is_commit_hash(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_sha256_hex(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

// ---------------------------------------------------------------------------------------------
// Choosing files

/// The files of a repo to fetch, and the one to load.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Selection {
    files: Vec<String>,
    /// `None`: load the snapshot directory (sentence-transformers).
    primary: Option<String>,
}

/// A GGUF model in a repo: one file, or the parts of a split (`-00001-of-00003.gguf`).
#[derive(Debug, Clone)]
pub(crate) struct GgufModel {
    /// The path without the part suffix and `.gguf`, e.g. `Q4_K_M/model-Q4_K_M`.
    pub(crate) key: String,
    /// Sorted; the first is what llama.cpp opens.
    pub(crate) parts: Vec<String>,
}

impl GgufModel {
    fn display(&self) -> String {
        if self.parts.len() == 1 {
            self.parts[0].clone()
        } else {
            format!("{} ({} parts)", self.parts[0], self.parts.len())
        }
    }

    /// A multimodal projector (`mmproj-*.gguf`), not a model of its own.
    pub(crate) fn is_projector(&self) -> bool {
        let base = self.key.rsplit('/').next().unwrap_or(&self.key);
        base.to_ascii_lowercase().starts_with("mmproj")
    }
}

/// `model-00001-of-00003.gguf` → (`model`, 1, 3).
pub(crate) fn split_gguf_part(file: &str) -> Option<(&str, u32, u32)> {
    let stem = file.strip_suffix(".gguf")?;
    let (rest, total) = stem.rsplit_once("-of-")?;
    let (key, index) = rest.rsplit_once('-')?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(index) || !digits(total) {
        return None;
    }
    Some((key, index.parse().ok()?, total.parse().ok()?))
}

pub(crate) fn gguf_models(files: &[String]) -> Vec<GgufModel> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in files
        .iter()
        .filter(|f| f.to_ascii_lowercase().ends_with(".gguf"))
    {
        let key = match split_gguf_part(file) {
            Some((key, _, _)) => key.to_string(),
            None => file[..file.len() - ".gguf".len()].to_string(),
        };
        groups.entry(key).or_default().push(file.clone());
    }
    groups
        .into_iter()
        .map(|(key, mut parts)| {
            parts.sort();
            GgufModel { key, parts }
        })
        .collect()
}

/// Whether `tag` occurs in `name` as a whole token: not glued to letters or digits, and not
/// followed by `_` (so `Q4_K` does not match `Q4_K_M`). Both lowercase.
pub(crate) fn contains_tag(name: &str, tag: &str) -> bool {
    name.match_indices(tag).any(|(at, _)| {
        let before = name[..at].chars().next_back();
        let after = name[at + tag.len()..].chars().next();
        before.is_none_or(|c| !c.is_ascii_alphanumeric())
            && after.is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_')
    })
}

fn is_sentence_transformers_file(file: &str) -> bool {
    if SENTENCE_TRANSFORMERS_FILES.contains(&file) {
        return true;
    }
    match file.split_once('/') {
        None => file.ends_with(".safetensors"),
        // Module directories: 1_Pooling/config.json, 2_Dense/{config.json,model.safetensors}.
        Some((dir, rest)) => {
            let module_dir = dir
                .split_once('_')
                .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            module_dir
                && !rest.contains('/')
                && (rest == "config.json" || rest.ends_with(".safetensors"))
        }
    }
}

fn select_files(
    repo: &str,
    files: &[String],
    selector: Option<&str>,
) -> Result<Selection, HubError> {
    let models = gguf_models(files);
    let whole_model = |model: &GgufModel| Selection {
        files: model.parts.clone(),
        primary: Some(model.parts[0].clone()),
    };
    let model_of = |file: &str| models.iter().find(|m| m.parts.iter().any(|p| p == file));
    let runnable: Vec<&GgufModel> = models.iter().filter(|m| !m.is_projector()).collect();
    let candidates = || runnable.iter().map(|m| m.display()).collect::<Vec<_>>();

    let Some(selector) = selector else {
        return match runnable.as_slice() {
            [one] => Ok(whole_model(one)),
            [] => sentence_transformers_selection(repo, files),
            _ => Err(HubError::AmbiguousSelector {
                repo: repo.to_string(),
                selector: None,
                candidates: candidates(),
            }),
        };
    };

    // A file name: exact, then case-insensitive, then by base name.
    let lower = selector.to_ascii_lowercase();
    let by_name = files
        .iter()
        .find(|f| f.as_str() == selector)
        .or_else(|| {
            let mut matches = files.iter().filter(|f| f.to_ascii_lowercase() == lower);
            matches.next().filter(|_| matches.next().is_none())
        })
        .or_else(|| {
            let mut matches = files.iter().filter(|f| {
                f.rsplit('/')
                    .next()
                    .is_some_and(|b| b.to_ascii_lowercase() == lower)
            });
            matches.next().filter(|_| matches.next().is_none())
        });
    if let Some(file) = by_name {
        return Ok(match model_of(file) {
            Some(model) => whole_model(model),
            None => Selection {
                files: vec![file.clone()],
                primary: Some(file.clone()),
            },
        });
    }
    if lower.ends_with(".gguf") || selector.contains('/') {
        return Err(HubError::NoMatchingFile {
            repo: repo.to_string(),
            selector: selector.to_string(),
            candidates: candidates(),
        });
    }

    // A quantization tag.
    let matched: Vec<&GgufModel> = runnable
        .iter()
        .copied()
        .filter(|m| contains_tag(&m.key.to_ascii_lowercase(), &lower))
        .collect();
    match matched.as_slice() {
        [one] => Ok(whole_model(one)),
        [] => Err(HubError::NoMatchingFile {
            repo: repo.to_string(),
            selector: selector.to_string(),
            candidates: candidates(),
        }),
        several => Err(HubError::AmbiguousSelector {
            repo: repo.to_string(),
            selector: Some(selector.to_string()),
            candidates: several.iter().map(|m| m.display()).collect(),
        }),
    }
}

fn sentence_transformers_selection(repo: &str, files: &[String]) -> Result<Selection, HubError> {
    let has = |name: &str| files.iter().any(|f| f == name);
    let has_weights = files
        .iter()
        .any(|f| !f.contains('/') && f.ends_with(".safetensors"));
    let is_sentence_transformers = SENTENCE_TRANSFORMERS_MARKERS.iter().any(|m| has(m));
    if !(has_weights && has("config.json") && is_sentence_transformers) {
        return Err(HubError::UnsupportedRepo {
            repo: repo.to_string(),
            files: files.to_vec(),
        });
    }
    Ok(Selection {
        files: files
            .iter()
            .filter(|f| is_sentence_transformers_file(f))
            .cloned()
            .collect(),
        primary: None,
    })
}

// ---------------------------------------------------------------------------------------------
// Talking to the Hub

#[derive(Debug, Deserialize)]
struct ApiModelInfo {
    sha: Option<String>,
    #[serde(default)]
    siblings: Vec<ApiSibling>,
}

#[derive(Debug, Clone, Deserialize)]
struct ApiSibling {
    rfilename: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    lfs: Option<ApiLfs>,
}

#[derive(Debug, Clone, Deserialize)]
struct ApiLfs {
    sha256: String,
    #[serde(default)]
    size: Option<u64>,
}

struct RepoListing {
    commit: Option<String>,
    files: BTreeMap<String, ApiSibling>,
}

/// What the Hub says about one file before we fetch it.
#[derive(Debug, Clone)]
struct FileMeta {
    file: String,
    /// The blob name: the sha256 for LFS files, the git sha1 for small ones.
    etag: String,
    commit: Option<String>,
    size: Option<u64>,
    /// Set for LFS files: what the content must hash to.
    sha256: Option<String>,
}

struct HubClient<'a> {
    opts: &'a HubOptions,
    endpoint: Url,
    /// Follows redirects (to the CDN); reqwest drops `Authorization` when the host changes.
    client: reqwest::Client,
    /// For HEAD: the Hub's own answer carries the metadata, the CDN's does not.
    no_redirect: reqwest::Client,
}

impl<'a> HubClient<'a> {
    fn new(opts: &'a HubOptions) -> Result<Self, HubError> {
        let unreachable = |reason: String| HubError::Unreachable {
            endpoint: opts.endpoint.clone(),
            reason,
        };
        let endpoint = Url::parse(opts.endpoint.trim())
            .map_err(|e| unreachable(format!("HF_ENDPOINT is not a URL ({e})")))?;
        if endpoint.cannot_be_a_base() {
            return Err(unreachable("HF_ENDPOINT is not an http(s) URL".to_string()));
        }
        let builder = || {
            reqwest::Client::builder()
                .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(30))
                .read_timeout(Duration::from_secs(120))
        };
        let client = builder()
            .build()
            .map_err(|e| unreachable(format!("cannot build an HTTP client: {e}")))?;
        let no_redirect = builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| unreachable(format!("cannot build an HTTP client: {e}")))?;
        Ok(HubClient {
            opts,
            endpoint,
            client,
            no_redirect,
        })
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.endpoint.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            for segment in segments {
                path.extend(segment.split('/'));
            }
        }
        url
    }

    fn api_url(&self, repo: &str, revision: &str) -> Url {
        let mut url = self.url(&["api/models", repo, "revision"]);
        if let Ok(mut path) = url.path_segments_mut() {
            // One segment: a revision like `refs/pr/1` is sent as `refs%2Fpr%2F1`.
            path.push(revision);
        }
        url.set_query(Some("blobs=true"));
        url
    }

    fn resolve_url(&self, repo: &str, revision: &str, file: &str) -> Url {
        let mut url = self.url(&[repo, "resolve"]);
        if let Ok(mut path) = url.path_segments_mut() {
            path.push(revision);
            path.extend(file.split('/'));
        }
        url
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.opts.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    fn network_error(&self, error: reqwest::Error) -> HubError {
        HubError::Unreachable {
            endpoint: self.opts.endpoint.clone(),
            reason: error_chain(&error),
        }
    }

    fn status_error(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        url: &Url,
        repo: &str,
        revision: &str,
        file: Option<&str>,
    ) -> HubError {
        let error_code = header_str(headers, "x-error-code").unwrap_or_default();
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => HubError::Unauthorized {
                repo: repo.to_string(),
                status: status.as_u16(),
            },
            StatusCode::NOT_FOUND => HubError::NotFound {
                repo: repo.to_string(),
                revision: revision.to_string(),
                file: if error_code == "RepoNotFound" || error_code == "RevisionNotFound" {
                    None
                } else {
                    file.map(str::to_string)
                },
                endpoint: self.opts.endpoint.clone(),
            },
            _ => HubError::Http {
                url: url.to_string(),
                status: status.as_u16(),
                detail: header_str(headers, "x-error-message").unwrap_or_default(),
            },
        }
    }

    async fn repo_listing(&self, repo: &str, revision: &str) -> Result<RepoListing, HubError> {
        let url = self.api_url(repo, revision);
        let response = self
            .authorized(self.client.get(url.clone()))
            .send()
            .await
            .map_err(|e| self.network_error(e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.status_error(status, response.headers(), &url, repo, revision, None));
        }
        let body = response.bytes().await.map_err(|e| self.network_error(e))?;
        let info: ApiModelInfo =
            serde_json::from_slice(&body).map_err(|e| HubError::BadResponse {
                url: url.to_string(),
                reason: format!("the model listing is not the JSON the Hub API returns ({e})"),
            })?;
        let mut files = BTreeMap::new();
        for sibling in info.siblings {
            // A malicious or broken server must not make us write outside the cache.
            if is_safe_relative_path(&sibling.rfilename) {
                files.insert(sibling.rfilename.clone(), sibling);
            } else {
                tracing::warn!(file = %sibling.rfilename, "skipping a file name that is not a safe relative path");
            }
        }
        Ok(RepoListing {
            commit: info.sha.filter(|s| !s.is_empty()),
            files,
        })
    }

    /// HEAD on the resolve URL without following the CDN redirect: the Hub's answer carries
    /// `X-Linked-Etag` (the LFS sha256), `X-Linked-Size` and `X-Repo-Commit`.
    async fn file_metadata(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
        listed: Option<&ApiSibling>,
    ) -> Result<FileMeta, HubError> {
        let mut url = self.resolve_url(repo, revision, file);
        let mut hops = 0;
        let response = loop {
            let response = self
                .authorized(self.no_redirect.head(url.clone()))
                .send()
                .await
                .map_err(|e| self.network_error(e))?;
            let status = response.status();
            if status.is_redirection() {
                let has_etag = response.headers().contains_key("x-linked-etag")
                    || response.headers().contains_key(ETAG);
                let next = header_str(response.headers(), LOCATION.as_str())
                    .and_then(|location| url.join(&location).ok());
                match next {
                    // Same host: a renamed repo or a relative redirect; keep asking the Hub.
                    Some(next) if same_origin(&next, &url) && hops < 5 => {
                        hops += 1;
                        url = next;
                        continue;
                    }
                    // Another host (the CDN): the metadata is on this answer.
                    _ if has_etag => break response,
                    _ => {
                        return Err(HubError::BadResponse {
                            url: url.to_string(),
                            reason: format!("redirect ({status}) without an ETag"),
                        })
                    }
                }
            }
            if !status.is_success() {
                return Err(self.status_error(
                    status,
                    response.headers(),
                    &url,
                    repo,
                    revision,
                    Some(file),
                ));
            }
            break response;
        };
        let headers = response.headers();
        let etag = header_str(headers, "x-linked-etag")
            .or_else(|| header_str(headers, ETAG.as_str()))
            .map(|raw| normalize_etag(&raw))
            .filter(|etag| !etag.is_empty())
            .ok_or_else(|| HubError::BadResponse {
                url: url.to_string(),
                reason: "no ETag header; is HF_ENDPOINT a Hugging Face Hub?".to_string(),
            })?;
        if !etag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(HubError::BadResponse {
                url: url.to_string(),
                reason: format!("ETag '{etag}' cannot name a blob file"),
            });
        }
        let listed_size = listed.and_then(|s| s.lfs.as_ref().and_then(|l| l.size).or(s.size));
        let size = header_u64(headers, "x-linked-size")
            .or(listed_size)
            .or_else(|| {
                response
                    .status()
                    .is_success()
                    .then(|| header_u64(headers, CONTENT_LENGTH.as_str()))
                    .flatten()
            });
        let listed_sha256 = listed
            .and_then(|s| s.lfs.as_ref())
            .map(|l| l.sha256.to_ascii_lowercase())
            .filter(|s| is_sha256_hex(s));
        // LFS files: the etag is the sha256 of the content. Small files carry the git sha1
        // of the blob instead, which we do not verify (neither does huggingface_hub): they
        // are configs and tokenizers a few KB long, and TLS already protects them in transit.
        let sha256 = if is_sha256_hex(&etag) {
            Some(etag.to_ascii_lowercase())
        } else {
            listed_sha256
        };
        Ok(FileMeta {
            file: file.to_string(),
            etag,
            commit: header_str(headers, "x-repo-commit"),
            size,
            sha256,
        })
    }

    async fn download_blob(
        &self,
        repo: &str,
        commit: &str,
        meta: &FileMeta,
        blobs_dir: &Path,
        progress: &mut dyn PullProgress,
    ) -> Result<(), HubError> {
        let blob = blobs_dir.join(&meta.etag);
        if blob.is_file() {
            let size = std::fs::metadata(&blob).map(|m| m.len()).unwrap_or(0);
            progress.file_started(&meta.file, size, size);
            progress.file_finished(&meta.file);
            return Ok(());
        }
        let incomplete = blobs_dir.join(format!("{}.incomplete", meta.etag));
        let url = self.resolve_url(repo, commit, &meta.file);
        let mut restarted = false;
        loop {
            let mut have = std::fs::metadata(&incomplete).map(|m| m.len()).unwrap_or(0);
            if meta.size.is_some_and(|total| have > total) {
                have = 0;
            }
            let mut hasher = Sha256::new();
            if have > 0 {
                hash_prefix(&incomplete, have, &mut hasher).await?;
            }
            let complete_on_disk = have > 0 && meta.size == Some(have);
            let (response, resumed) = if complete_on_disk {
                // A previous run got every byte but stopped before the rename.
                (None, true)
            } else {
                let mut request = self.authorized(self.client.get(url.clone()));
                if have > 0 {
                    request = request.header(RANGE, format!("bytes={have}-"));
                }
                let response = request.send().await.map_err(|e| self.network_error(e))?;
                let status = response.status();
                let resumed = status == StatusCode::PARTIAL_CONTENT
                    && have > 0
                    && header_str(response.headers(), CONTENT_RANGE.as_str())
                        .is_some_and(|range| range_starts_at(&range, have));
                // 416 (the partial file is longer than the content), or a 206 for another
                // range than the one asked: drop the partial file and ask for everything.
                let bad_range = status == StatusCode::RANGE_NOT_SATISFIABLE
                    || (status == StatusCode::PARTIAL_CONTENT && !resumed);
                if bad_range && !restarted {
                    remove_if_exists(&incomplete)?;
                    restarted = true;
                    continue;
                }
                if !status.is_success() {
                    return Err(self.status_error(
                        status,
                        response.headers(),
                        &url,
                        repo,
                        commit,
                        Some(&meta.file),
                    ));
                }
                (Some(response), resumed)
            };
            if !resumed {
                // 200 (or a Range answer we cannot trust): start over.
                have = 0;
                hasher = Sha256::new();
            }
            let total = meta.size.or_else(|| {
                response.as_ref().and_then(|r| {
                    header_u64(r.headers(), CONTENT_LENGTH.as_str()).map(|len| len + have)
                })
            });
            progress.file_started(&meta.file, total.unwrap_or(0), have);
            if let Some(response) = response {
                have = self
                    .stream_to_file(
                        response,
                        &incomplete,
                        resumed,
                        have,
                        total,
                        meta,
                        &mut hasher,
                        progress,
                    )
                    .await?;
            }
            if let Some(total) = total {
                if have < total {
                    return Err(HubError::Interrupted {
                        file: meta.file.clone(),
                        downloaded: have,
                        total: Some(total),
                        reason: "the body ended early".to_string(),
                    });
                }
                if have > total {
                    remove_if_exists(&incomplete)?;
                    return Err(HubError::BadResponse {
                        url: url.to_string(),
                        reason: format!(
                            "'{}' is {have} bytes long but the Hub announced {total}",
                            meta.file
                        ),
                    });
                }
            }
            let actual = hex::encode(hasher.finalize());
            if let Some(expected) = &meta.sha256 {
                if &actual != expected {
                    remove_if_exists(&incomplete)?;
                    return Err(HubError::ChecksumMismatch {
                        file: meta.file.clone(),
                        expected: expected.clone(),
                        actual,
                    });
                }
            }
            std::fs::rename(&incomplete, &blob).map_err(|e| {
                HubError::io(
                    format!("cannot move the download into {}", blob.display()),
                    e,
                )
            })?;
            progress.file_finished(&meta.file);
            return Ok(());
        }
    }

    /// Appends (or writes from scratch) the body to `incomplete`, hashing as it goes. Returns
    /// the bytes now on disk. Whatever arrived before an error stays on disk for the resume.
    #[allow(clippy::too_many_arguments)]
    async fn stream_to_file(
        &self,
        mut response: reqwest::Response,
        incomplete: &Path,
        append: bool,
        mut have: u64,
        total: Option<u64>,
        meta: &FileMeta,
        hasher: &mut Sha256,
        progress: &mut dyn PullProgress,
    ) -> Result<u64, HubError> {
        let cache_dir = &self.opts.cache_dir;
        let write_error = |e: io::Error, have: u64| {
            if e.kind() == io::ErrorKind::StorageFull {
                HubError::DiskFull {
                    cache_dir: cache_dir.to_path_buf(),
                    needed_bytes: total.map(|t| t.saturating_sub(have)),
                    available_bytes: None,
                }
            } else {
                HubError::io(format!("cannot write {}", incomplete.display()), e)
            }
        };
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(incomplete)
            .await
            .map_err(|e| write_error(e, have))?;
        let mut writer = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let outcome = loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if let Err(e) = writer.write_all(&chunk).await {
                        break Err(write_error(e, have));
                    }
                    hasher.update(&chunk);
                    have += chunk.len() as u64;
                    progress.advanced(chunk.len() as u64);
                }
                Ok(None) => break Ok(()),
                Err(e) => {
                    break Err(HubError::Interrupted {
                        file: meta.file.clone(),
                        downloaded: have,
                        total,
                        reason: error_chain(&e),
                    })
                }
            }
        };
        // Keep what arrived (even after an error) so the next pull resumes from it.
        let flushed = async {
            writer.flush().await?;
            writer.get_ref().sync_all().await
        }
        .await;
        outcome?;
        flushed.map_err(|e| write_error(e, have))?;
        Ok(have)
    }
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    header_str(headers, name).and_then(|v| v.parse().ok())
}

/// `W/"abc"` → `abc`.
fn normalize_etag(raw: &str) -> String {
    let raw = raw.trim();
    let raw = raw.strip_prefix("W/").unwrap_or(raw);
    raw.trim_matches('"').to_string()
}

/// `bytes 100-199/200` starts at 100.
fn range_starts_at(content_range: &str, offset: u64) -> bool {
    content_range
        .trim()
        .strip_prefix("bytes ")
        .and_then(|r| r.split_once('-'))
        .and_then(|(start, _)| start.trim().parse::<u64>().ok())
        == Some(offset)
}

/// The whole chain of a reqwest error ("error sending request: connection refused …").
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

async fn hash_prefix(path: &Path, len: u64, hasher: &mut Sha256) -> Result<(), HubError> {
    let read_error = |e| HubError::io(format!("cannot read {}", path.display()), e);
    let mut file = tokio::fs::File::open(path).await.map_err(read_error)?;
    let mut buffer = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let want = buffer
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = file.read(&mut buffer[..want]).await.map_err(read_error)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        left -= n as u64;
    }
    Ok(())
}

fn check_free_space(
    cache_dir: &Path,
    blobs_dir: &Path,
    plans: &[FileMeta],
) -> Result<(), HubError> {
    let needed: u64 = plans
        .iter()
        .filter(|meta| !blobs_dir.join(&meta.etag).is_file())
        .filter_map(|meta| {
            let partial = std::fs::metadata(blobs_dir.join(format!("{}.incomplete", meta.etag)))
                .map(|m| m.len())
                .unwrap_or(0);
            meta.size.map(|size| size.saturating_sub(partial))
        })
        .sum();
    if needed == 0 {
        return Ok(());
    }
    // Unknown free space (an exotic filesystem) is not a reason to refuse; ENOSPC during the
    // write is still reported as DiskFull.
    if let Ok(available) = fs4::available_space(blobs_dir) {
        if available < needed {
            return Err(HubError::DiskFull {
                cache_dir: cache_dir.to_path_buf(),
                needed_bytes: Some(needed),
                available_bytes: Some(available),
            });
        }
    }
    Ok(())
}

fn create_dir_all(dir: &Path) -> Result<(), HubError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| HubError::io(format!("cannot create {}", dir.display()), e))
}

fn remove_if_exists(path: &Path) -> Result<(), HubError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(HubError::io(format!("cannot remove {}", path.display()), e)),
    }
}

/// An exclusive lock on `path`, held until the returned file is dropped: two pulls of the same
/// blob (two terminals, or the server and the CLI) must not append to one `.incomplete`.
async fn lock_file(path: &Path) -> Result<std::fs::File, HubError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| HubError::io(format!("cannot open the lock {}", path.display()), e))?;
        <std::fs::File as fs4::FileExt>::lock(&file)
            .map_err(|e| HubError::io(format!("cannot lock {}", path.display()), e))?;
        Ok(file)
    })
    .await
    .map_err(|e| HubError::io("the lock task failed", io::Error::other(e)))?
}

/// `snapshots/<commit>/<file>` → `../../blobs/<etag>` (one more `..` per subdirectory).
/// Replaced atomically (a temporary link renamed over the old one).
fn link_snapshot_file(link: &Path, file: &str, etag: &str) -> Result<(), HubError> {
    let parent = link.parent().unwrap_or(link);
    create_dir_all(parent)?;
    let depth = file.split('/').count() + 1;
    let mut target = PathBuf::new();
    for _ in 0..depth {
        target.push("..");
    }
    target.push("blobs");
    target.push(etag);
    if std::fs::read_link(link).is_ok_and(|existing| existing == target) {
        return Ok(());
    }
    let temporary = parent.join(format!(
        ".{}.{}.tmp",
        link.file_name().and_then(|n| n.to_str()).unwrap_or("link"),
        std::process::id()
    ));
    remove_if_exists(&temporary)?;
    let link_error = |e| {
        HubError::io(
            format!("cannot create the snapshot link {}", link.display()),
            e,
        )
    };
    #[cfg(unix)]
    std::os::unix::fs::symlink(&target, &temporary).map_err(link_error)?;
    #[cfg(not(unix))]
    {
        // Without symlinks (Windows without developer mode) huggingface_hub copies the
        // blob into the snapshot; do the same.
        let blob = parent.join(&target);
        std::fs::copy(&blob, &temporary).map_err(link_error)?;
    }
    std::fs::rename(&temporary, link).map_err(link_error)?;
    Ok(())
}

/// `refs/<revision>` = commit, written atomically.
fn write_ref(repo_dir: &Path, revision: &str, commit: &str) -> Result<(), HubError> {
    let path = repo_dir.join("refs").join(revision);
    let parent = path.parent().unwrap_or(repo_dir);
    create_dir_all(parent)?;
    let temporary = parent.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("ref"),
        std::process::id()
    ));
    let write_error = |e| HubError::io(format!("cannot write {}", path.display()), e);
    std::fs::write(&temporary, commit).map_err(write_error)?;
    std::fs::rename(&temporary, &path).map_err(write_error)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_specs() {
        let spec: PullSpec = "org/repo".parse().unwrap();
        assert_eq!(spec.repo, "org/repo");
        assert_eq!(spec.selector, None);
        assert_eq!(spec.revision, "main");
        let spec: PullSpec = "Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M".parse().unwrap();
        assert_eq!(spec.repo, "Qwen/Qwen2.5-0.5B-Instruct-GGUF");
        assert_eq!(spec.selector.as_deref(), Some("Q4_K_M"));
        let spec: PullSpec = "hf.co/org/repo:sub/model.gguf".parse().unwrap();
        assert_eq!(spec.repo, "org/repo");
        assert_eq!(spec.selector.as_deref(), Some("sub/model.gguf"));
        let spec = spec.with_revision("refs/pr/1").unwrap();
        assert_eq!(spec.revision, "refs/pr/1");
        assert_eq!(spec.to_string(), "org/repo:sub/model.gguf");
    }

    #[test]
    fn rejects_bad_specs() {
        for bad in [
            "",
            "repo",
            "org/",
            "/repo",
            "a/b/c",
            "org/repo:",
            "org/re po",
            "org/repo:../x",
            "org/..",
            "org/-repo",
            "or--g/repo",
        ] {
            let err = bad.parse::<PullSpec>().unwrap_err();
            assert_eq!(err.code(), "invalid_model_spec", "{bad}");
            assert!(err.to_string().contains("ORG/REPO"), "{err}");
        }
        let spec: PullSpec = "org/repo".parse().unwrap();
        assert!(spec.clone().with_revision("../main").is_err());
        assert!(spec.with_revision("").is_err());
    }

    #[test]
    fn quant_tags_match_whole_tokens() {
        assert!(contains_tag("model-q4_k_m", "q4_k_m"));
        assert!(contains_tag("model.q4_k_m", "q4_k_m"));
        assert!(contains_tag("q4_k_m/model", "q4_k_m"));
        assert!(!contains_tag("model-q4_k_m", "q4_k"));
        assert!(!contains_tag("model-iq4_xs", "q4_xs"));
        assert!(contains_tag("model-q4_0", "q4_0"));
    }

    #[test]
    fn selects_by_quant_tag_file_name_and_parts() {
        let files = names(&[
            "README.md",
            "model-Q4_K_M.gguf",
            "model-Q4_K_S.gguf",
            "model-Q8_0-00001-of-00002.gguf",
            "model-Q8_0-00002-of-00002.gguf",
            "mmproj-model-f16.gguf",
        ]);
        let s = select_files("o/r", &files, Some("q4_k_m")).unwrap();
        assert_eq!(s.files, names(&["model-Q4_K_M.gguf"]));
        let s = select_files("o/r", &files, Some("Q8_0")).unwrap();
        assert_eq!(
            s.files,
            names(&[
                "model-Q8_0-00001-of-00002.gguf",
                "model-Q8_0-00002-of-00002.gguf"
            ])
        );
        assert_eq!(s.primary.as_deref(), Some("model-Q8_0-00001-of-00002.gguf"));
        // Naming one part brings the others.
        let s = select_files("o/r", &files, Some("model-Q8_0-00002-of-00002.gguf")).unwrap();
        assert_eq!(s.files.len(), 2);
        let s = select_files("o/r", &files, Some("MODEL-Q4_K_S.GGUF")).unwrap();
        assert_eq!(s.files, names(&["model-Q4_K_S.gguf"]));
        let err = select_files("o/r", &files, Some("Q4_K")).unwrap_err();
        assert_eq!(err.code(), "hub_file_not_found");
        let err = select_files("o/r", &files, None).unwrap_err();
        assert_eq!(err.code(), "ambiguous_model_file");
        let message = err.to_string();
        assert!(
            message.contains("model-Q4_K_M.gguf") && message.contains("(2 parts)"),
            "{message}"
        );
        assert!(!message.contains("mmproj"), "{message}");
    }

    #[test]
    fn single_gguf_and_sentence_transformers_repos() {
        let files = names(&["README.md", "smol-q4_0.gguf", "mmproj-f16.gguf"]);
        let s = select_files("o/r", &files, None).unwrap();
        assert_eq!(s.files, names(&["smol-q4_0.gguf"]));

        let files = names(&[
            ".gitattributes",
            "1_Pooling/config.json",
            "2_Dense/config.json",
            "2_Dense/model.safetensors",
            "README.md",
            "config.json",
            "model.safetensors",
            "modules.json",
            "onnx/model.onnx",
            "onnx/model.safetensors",
            "pytorch_model.bin",
            "sentence_bert_config.json",
            "tokenizer.json",
            "vocab.txt",
        ]);
        let s = select_files("o/r", &files, None).unwrap();
        assert_eq!(s.primary, None);
        assert_eq!(
            s.files,
            names(&[
                "1_Pooling/config.json",
                "2_Dense/config.json",
                "2_Dense/model.safetensors",
                "config.json",
                "model.safetensors",
                "modules.json",
                "sentence_bert_config.json",
                "tokenizer.json",
                "vocab.txt",
            ])
        );
        // A safetensors LLM is not something hearth can run.
        let files = names(&["config.json", "model.safetensors", "tokenizer.json"]);
        let err = select_files("o/r", &files, None).unwrap_err();
        assert_eq!(err.code(), "unsupported_model_repo");
    }

    #[test]
    fn etags_and_ranges() {
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        assert_eq!(normalize_etag("\"abc\""), "abc");
        assert!(range_starts_at("bytes 100-199/200", 100));
        assert!(!range_starts_at("bytes 0-199/200", 100));
        assert_eq!(
            split_gguf_part("a/m-00002-of-00003.gguf"),
            Some(("a/m", 2, 3))
        );
        assert_eq!(split_gguf_part("m.gguf"), None);
    }

    #[test]
    fn every_error_has_a_distinct_code() {
        let io = || io::Error::other("x");
        let errors = [
            HubError::Offline {
                repo: "o/r".into(),
                revision: "main".into(),
                what: "the revision".into(),
                cache_dir: PathBuf::from("/c"),
            },
            HubError::InvalidSpec {
                spec: "x".into(),
                reason: "y".into(),
            },
            HubError::Unauthorized {
                repo: "o/r".into(),
                status: 401,
            },
            HubError::NotFound {
                repo: "o/r".into(),
                revision: "main".into(),
                file: None,
                endpoint: "e".into(),
            },
            HubError::NoMatchingFile {
                repo: "o/r".into(),
                selector: "x".into(),
                candidates: vec![],
            },
            HubError::AmbiguousSelector {
                repo: "o/r".into(),
                selector: None,
                candidates: vec![],
            },
            HubError::UnsupportedRepo {
                repo: "o/r".into(),
                files: vec![],
            },
            HubError::Unreachable {
                endpoint: "e".into(),
                reason: "r".into(),
            },
            HubError::Interrupted {
                file: "f".into(),
                downloaded: 1,
                total: None,
                reason: "r".into(),
            },
            HubError::Http {
                url: "u".into(),
                status: 500,
                detail: String::new(),
            },
            HubError::BadResponse {
                url: "u".into(),
                reason: "r".into(),
            },
            HubError::ChecksumMismatch {
                file: "f".into(),
                expected: "a".into(),
                actual: "b".into(),
            },
            HubError::DiskFull {
                cache_dir: PathBuf::from("/c"),
                needed_bytes: Some(10),
                available_bytes: Some(1),
            },
            HubError::io("ctx", io()),
        ];
        let codes: BTreeSet<&str> = errors.iter().map(|e| e.code().as_str()).collect();
        assert_eq!(codes.len(), errors.len());
        assert!(codes
            .iter()
            .all(|c| c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
        assert!(errors[12].to_string().contains("/c"));
    }

    #[test]
    fn options_debug_redacts_the_token() {
        let opts = HubOptions {
            endpoint: DEFAULT_ENDPOINT.into(),
            cache_dir: PathBuf::from("/c"),
            token: Some("hf_secret".into()),
            offline: false,
        };
        let shown = format!("{opts:?}");
        assert!(
            !shown.contains("hf_secret") && shown.contains("redacted"),
            "{shown}"
        );
    }
}
