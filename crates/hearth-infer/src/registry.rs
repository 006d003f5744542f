//! The local model registry: what is on this machine and how to load it.
//!
//! Two sources, merged by [`ModelRegistry::list`]:
//! - models imported by path (`hearth models import PATH`), recorded in `{data_dir}/models.json`;
//! - everything in the Hugging Face cache that hearth can run: GGUF files (named
//!   `ORG/REPO:<file stem>`) and sentence-transformers snapshots (named `ORG/REPO`).
//!
//! Metadata comes from file headers only (GGUF header, safetensors header, config.json): weights
//! are never read, so listing a cache of many gigabytes takes milliseconds.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::gguf;
use crate::hub;
use crate::InferError;

/// What a model does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// A GGUF LLM, run by llama.cpp.
    Chat,
    /// A sentence embedder: a sentence-transformers directory (config.json + tokenizer.json +
    /// *.safetensors), or an encoder GGUF (BERT family, or any GGUF declaring a pooling type).
    Embedding,
    /// A cross-encoder that scores (query, document) pairs: a sequence-classification
    /// checkpoint (`*ForSequenceClassification` in config.json) in the sentence-transformers
    /// CrossEncoder layout, run by the encoder engine.
    Rerank,
}

impl ModelKind {
    /// The name `hearth models list` and `/v1/models` show.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Chat => "chat",
            ModelKind::Embedding => "embedding",
            ModelKind::Rerank => "rerank",
        }
    }
}

/// Where a model came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ModelSource {
    /// `hearth models import PATH`.
    Imported,
    /// A snapshot in the Hugging Face cache (pulled by hearth or by any other HF tool).
    HubCache { repo: String, revision: String },
    /// Declared in hearth's configuration (`[[models.adapters]]`).
    Config,
}

/// A model hearth can load, with what its headers say about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub kind: ModelKind,
    /// The GGUF file (the first part of a split), or the sentence-transformers directory.
    pub path: PathBuf,
    /// `general.architecture` of a GGUF (`llama`, `gemma3` …), `model_type` of a config.json.
    pub architecture: Option<String>,
    pub parameters: Option<u64>,
    /// `Q4_K_M`, `Q8_0`, `F16` … (for safetensors: the dominant dtype, `F32`, `BF16` …).
    pub quantization: Option<String>,
    /// The context the model was trained for (`{arch}.context_length`,
    /// `max_position_embeddings`).
    pub context_length: Option<u64>,
    /// Hidden size of an LLM; output dimension of an embedder.
    pub embedding_dim: Option<u64>,
    /// Bytes on disk (all parts / all files of the directory).
    pub size_bytes: u64,
    pub source: ModelSource,
    /// For a LoRA adapter: the model it applies to (a name of this registry). The adapter is
    /// served as a model of its own, on its base's engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
}

/// A LoRA adapter declared in configuration (`[[models.adapters]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredAdapter {
    pub name: String,
    pub path: PathBuf,
    pub base: String,
}

/// Where the registry keeps its record and where it finds the HF cache.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// hearth's data directory; the registry writes `models.json` there.
    pub data_dir: PathBuf,
    /// The Hugging Face hub cache (see [`crate::hub::HubOptions::cache_dir`]).
    pub hub_cache: PathBuf,
}

/// The models on this machine. Cheap to query: the list is kept in memory and scanned again
/// only when `models.json` changed (an import from the CLI shows up in a running server at
/// once) or, for the Hugging Face cache, when the last scan is [`RESCAN_AFTER`] old; header
/// metadata of cached files is memoised by (path, size, mtime). Safe to share between threads;
/// `models.json` is written under a file lock.
pub struct ModelRegistry {
    opts: RegistryOptions,
    inspected: Mutex<HashMap<PathBuf, Inspected>>,
    listed: Mutex<Option<Listed>>,
    /// Adapters from configuration, checked against their bases when declared.
    declared: Vec<ModelInfo>,
}

/// How long a scan of the Hugging Face cache answers before the next call scans it again (a
/// model pulled by another process shows up within this).
pub const RESCAN_AFTER: Duration = Duration::from_secs(2);

/// The last scan: when, the `models.json` it read, and what it found.
struct Listed {
    at: Instant,
    record: Option<(u64, Option<SystemTime>)>,
    models: Arc<Vec<ModelInfo>>,
}

/// `inspect`'s answer for a path, valid while the file's size and mtime are unchanged.
struct Inspected {
    len: u64,
    modified: Option<SystemTime>,
    info: ModelInfo,
}

const RECORD_FILE: &str = "models.json";
const RECORD_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    version: u32,
    models: Vec<ModelInfo>,
}

impl ModelRegistry {
    /// Opens (creating the data directory if needed) and checks that `models.json`, when
    /// present, is readable.
    pub fn open(opts: RegistryOptions) -> Result<Self, InferError> {
        std::fs::create_dir_all(&opts.data_dir)
            .map_err(|e| InferError::io(format!("cannot create {}", opts.data_dir.display()), e))?;
        let registry = ModelRegistry {
            opts,
            inspected: Mutex::new(HashMap::new()),
            listed: Mutex::new(None),
            declared: Vec::new(),
        };
        registry.load_record()?;
        Ok(registry)
    }

    /// Adds the adapters declared in configuration, each checked against its base (which
    /// must be a model of this registry) as `hearth models import --base` checks one. An
    /// error names the adapter.
    pub fn with_adapters(mut self, adapters: &[DeclaredAdapter]) -> Result<Self, InferError> {
        let models = self.models()?;
        for declared in adapters {
            let mut info = self.adapter_info(&declared.path, &declared.base)?;
            info.name = declared.name.trim().to_owned();
            info.source = ModelSource::Config;
            validate_name(&info.name)?;
            if let Some(existing) = models
                .iter()
                .chain(self.declared.iter())
                .find(|m| m.name.eq_ignore_ascii_case(&info.name))
            {
                return Err(InferError::InvalidParameter {
                    param: "models.adapters".into(),
                    message: format!(
                        "the adapter '{}' has the name of the model {} ({}); give it another name",
                        info.name,
                        existing.name,
                        existing.path.display()
                    ),
                });
            }
            self.declared.push(info);
        }
        self.refresh();
        Ok(self)
    }

    /// Imported models first (in import order), then the HF cache (by repo).
    pub fn list(&self) -> Result<Vec<ModelInfo>, InferError> {
        Ok(self.models()?.as_ref().clone())
    }

    /// [`Self::list`], shared: from memory while the last scan is fresh, else scanned again.
    pub fn models(&self) -> Result<Arc<Vec<ModelInfo>>, InferError> {
        if let Some(models) = self.fresh_models() {
            return Ok(models);
        }
        let record = self.record_stamp();
        let mut models = self.load_record()?.models;
        models.extend(self.declared.iter().cloned());
        models.extend(self.hub_models());
        let models = Arc::new(models);
        *self.listed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Listed {
            at: Instant::now(),
            record,
            models: models.clone(),
        });
        Ok(models)
    }

    /// The list from memory when the last scan is still fresh; None when [`Self::models`]
    /// would scan (async callers then scan on a blocking thread).
    pub fn fresh_models(&self) -> Option<Arc<Vec<ModelInfo>>> {
        let record = self.record_stamp();
        self.listed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|l| l.record == record && l.at.elapsed() < RESCAN_AFTER)
            .map(|l| l.models.clone())
    }

    /// Forgets the last scan: the next call scans again (after this process changed the
    /// Hugging Face cache, e.g. a pull).
    pub fn refresh(&self) {
        *self.listed.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Size and modification time of `models.json` (None while there is none).
    fn record_stamp(&self) -> Option<(u64, Option<SystemTime>)> {
        std::fs::metadata(self.record_path())
            .ok()
            .map(|m| (m.len(), m.modified().ok()))
    }

    /// Validates `path` (a GGUF file or a sentence-transformers directory), and records it
    /// under `name` (default: the file stem lowercased, or the directory name).
    pub fn import(&self, path: &Path, name: Option<&str>) -> Result<ModelInfo, InferError> {
        let absolute = std::path::absolute(path)
            .map_err(|e| InferError::io(format!("cannot resolve {}", path.display()), e))?;
        let info = inspect(&absolute)?;
        self.record_import(info, name)
    }

    /// Validates the LoRA adapter at `path` against the model `base` (a name of this
    /// registry: same architecture, every weight it changes of the shape it expects) and
    /// records it under `name` (default: the file stem lowercased), served on `base`'s engine.
    pub fn import_adapter(
        &self,
        path: &Path,
        base: &str,
        name: Option<&str>,
    ) -> Result<ModelInfo, InferError> {
        let info = self.adapter_info(path, base)?;
        self.record_import(info, name)
    }

    /// The registry entry of the adapter at `path` on the model named `base`, checked.
    fn adapter_info(&self, path: &Path, base: &str) -> Result<ModelInfo, InferError> {
        let absolute = std::path::absolute(path)
            .map_err(|e| InferError::io(format!("cannot resolve {}", path.display()), e))?;
        if !absolute.is_file() {
            return Err(InferError::InvalidModel {
                path: absolute,
                reason: "no such file (an adapter is one GGUF file)".into(),
            });
        }
        let base = self.resolve(base).map_err(|e| match e {
            InferError::ModelNotFound { name } => InferError::InvalidParameter {
                param: "base".into(),
                message: format!(
                    "no model named '{name}' to apply the adapter to; `hearth models` lists them"
                ),
            },
            other => other,
        })?;
        if base.kind != ModelKind::Chat || base.base.is_some() || base.path.is_dir() {
            return Err(InferError::InvalidParameter {
                param: "base".into(),
                message: format!(
                    "'{}' is {}; an adapter applies to a GGUF chat model",
                    base.name,
                    if base.base.is_some() {
                        "itself an adapter".to_owned()
                    } else {
                        let kind = base.kind.as_str();
                        let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
                            "an"
                        } else {
                            "a"
                        };
                        format!("{article} {kind} model")
                    }
                ),
            });
        }
        let header = crate::adapter::check_fits(&absolute, &base.path, &base.name)?;
        Ok(ModelInfo {
            name: default_name(&absolute, true),
            kind: ModelKind::Chat,
            path: absolute,
            architecture: Some(header.architecture),
            parameters: None,
            quantization: None,
            context_length: base.context_length,
            embedding_dim: base.embedding_dim,
            size_bytes: header.size_bytes,
            source: ModelSource::Imported,
            base: Some(base.name),
        })
    }

    fn record_import(
        &self,
        mut info: ModelInfo,
        name: Option<&str>,
    ) -> Result<ModelInfo, InferError> {
        if let Some(name) = name {
            info.name = name.trim().to_string();
        }
        validate_name(&info.name)?;
        let hub_models = self.hub_models();
        let _lock = self.lock_record()?;
        let mut record = self.load_record()?;
        if let Some(existing) = record
            .models
            .iter()
            .chain(self.declared.iter())
            .chain(hub_models.iter())
            .find(|m| m.name.eq_ignore_ascii_case(&info.name))
        {
            return Err(InferError::InvalidParameter {
                param: "name".to_string(),
                message: format!(
                    "a model named '{}' already exists ({}); choose another name with --name, or `hearth models remove {}` first",
                    existing.name,
                    existing.path.display(),
                    existing.name
                ),
            });
        }
        info.source = ModelSource::Imported;
        record.models.push(info.clone());
        self.save_record(&record)?;
        self.refresh();
        Ok(info)
    }

    /// Forgets an imported model (the file stays where it is).
    pub fn remove(&self, name: &str) -> Result<(), InferError> {
        let _lock = self.lock_record()?;
        let mut record = self.load_record()?;
        let position = record
            .models
            .iter()
            .position(|m| m.name == name)
            .or_else(|| unique_position(&record.models, |m| m.name.eq_ignore_ascii_case(name)));
        match position {
            Some(position) => {
                let removed = &record.models[position].name;
                let adapters: Vec<&str> = record
                    .models
                    .iter()
                    .chain(self.declared.iter())
                    .filter(|m| m.base.as_deref() == Some(removed))
                    .map(|m| m.name.as_str())
                    .collect();
                if !adapters.is_empty() {
                    return Err(InferError::InvalidParameter {
                        param: "name".to_string(),
                        message: format!(
                            "'{removed}' is the base of the adapters {}; remove them first",
                            adapters.join(", ")
                        ),
                    });
                }
                record.models.remove(position);
                self.save_record(&record)?;
                self.refresh();
                Ok(())
            }
            None if self.hub_models().iter().any(|m| m.name.eq_ignore_ascii_case(name)) => {
                Err(InferError::InvalidParameter {
                    param: "name".to_string(),
                    message: format!(
                        "'{name}' is in the Hugging Face cache {}, not imported; delete it there (e.g. `huggingface-cli delete-cache`)",
                        self.opts.hub_cache.display()
                    ),
                })
            }
            None if self.declared.iter().any(|m| m.name.eq_ignore_ascii_case(name)) => {
                Err(InferError::InvalidParameter {
                    param: "name".to_string(),
                    message: format!(
                        "'{name}' is declared in the configuration ([[models.adapters]]); remove it there"
                    ),
                })
            }
            None => Err(InferError::ModelNotFound {
                name: name.to_string(),
            }),
        }
    }

    /// Finds a model by its exact name, else by a unique case-insensitive match, else (for Hub
    /// models) by `ORG/REPO` when the repo holds one model, or `ORG/REPO:QUANT`.
    pub fn resolve(&self, name: &str) -> Result<ModelInfo, InferError> {
        Self::resolve_in(&self.models()?, name)
    }

    /// [`Self::resolve`] in a list already at hand (from [`Self::models`]).
    pub fn resolve_in(models: &[ModelInfo], name: &str) -> Result<ModelInfo, InferError> {
        let found = match models.iter().find(|m| m.name == name) {
            Some(model) => model.clone(),
            None => {
                let matches: Vec<&ModelInfo> = models
                    .iter()
                    .filter(|m| m.name.eq_ignore_ascii_case(name))
                    .collect();
                let matches = if matches.is_empty() {
                    hub_shorthand_matches(models, name)
                } else {
                    matches
                };
                match matches.as_slice() {
                    [one] => (*one).clone(),
                    [] => {
                        return Err(InferError::ModelNotFound {
                            name: name.to_string(),
                        })
                    }
                    several => {
                        return Err(InferError::InvalidParameter {
                            param: "model".to_string(),
                            message: format!(
                                "'{name}' matches several models: {}; use the full name",
                                several
                                    .iter()
                                    .map(|m| m.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        })
                    }
                }
            }
        };
        if !found.path.exists() {
            return Err(InferError::InvalidModel {
                path: found.path.clone(),
                reason: format!(
                    "the model '{}' is gone (moved or deleted since it was imported); `hearth models remove {}` forgets it",
                    found.name, found.name
                ),
            });
        }
        Ok(found)
    }

    fn record_path(&self) -> PathBuf {
        self.opts.data_dir.join(RECORD_FILE)
    }

    fn load_record(&self) -> Result<Record, InferError> {
        let path = self.record_path();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Record {
                    version: RECORD_VERSION,
                    models: Vec::new(),
                })
            }
            Err(e) => return Err(InferError::io(format!("cannot read {}", path.display()), e)),
        };
        let record: Record = serde_json::from_slice(&bytes).map_err(|e| {
            InferError::io(
                format!(
                    "{} is corrupt; fix or delete it (imported models are re-added with `hearth models import`)",
                    path.display()
                ),
                io::Error::new(io::ErrorKind::InvalidData, e),
            )
        })?;
        if record.version > RECORD_VERSION {
            return Err(InferError::io(
                format!("{} was written by a newer hearth", path.display()),
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("version {}", record.version),
                ),
            ));
        }
        Ok(record)
    }

    /// Temp file + fsync + rename: a crash leaves the old record or the new one, never half.
    fn save_record(&self, record: &Record) -> Result<(), InferError> {
        let path = self.record_path();
        let temporary = self
            .opts
            .data_dir
            .join(format!(".{RECORD_FILE}.{}.tmp", std::process::id()));
        let write_error = |e| InferError::io(format!("cannot write {}", path.display()), e);
        let json = serde_json::to_vec_pretty(record)
            .map_err(|e| write_error(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        let write = || -> io::Result<()> {
            let mut file = File::create(&temporary)?;
            io::Write::write_all(&mut file, &json)?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&temporary);
            write_error(e)
        })
    }

    /// Serialises read-modify-write of `models.json` between processes (the CLI and a server).
    fn lock_record(&self) -> Result<File, InferError> {
        let path = self.opts.data_dir.join(format!("{RECORD_FILE}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| InferError::io(format!("cannot open {}", path.display()), e))?;
        <File as fs4::FileExt>::lock(&file)
            .map_err(|e| InferError::io(format!("cannot lock {}", path.display()), e))?;
        Ok(file)
    }

    /// `inspect`, memoised by (path, size, mtime).
    fn inspect_cached(&self, path: &Path) -> Result<ModelInfo, InferError> {
        let stamp = std::fs::metadata(path)
            .ok()
            .map(|m| (m.len(), m.modified().ok()));
        if let Some((len, modified)) = stamp {
            let cache = self.inspected.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(cached) = cache.get(path) {
                if cached.len == len && cached.modified == modified {
                    return Ok(cached.info.clone());
                }
            }
        }
        let info = inspect(path)?;
        if let Some((len, modified)) = stamp {
            self.inspected
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    path.to_path_buf(),
                    Inspected {
                        len,
                        modified,
                        info: info.clone(),
                    },
                );
        }
        Ok(info)
    }

    /// Every runnable model in the HF cache. A snapshot that `main` points at wins over older
    /// ones when both hold a model of the same name.
    fn hub_models(&self) -> Vec<ModelInfo> {
        let mut models: Vec<ModelInfo> = Vec::new();
        for cached in hub::cached_models(&self.opts.hub_cache) {
            let mut ordered: Vec<(String, &hub::CachedSnapshot)> = Vec::new();
            let mut refs: Vec<(&String, &String)> = cached.refs.iter().collect();
            refs.sort_by_key(|(revision, _)| revision.as_str() != "main");
            for (revision, commit) in refs {
                if let Some(snapshot) = cached.snapshots.iter().find(|s| &s.commit == commit) {
                    ordered.push((revision.clone(), snapshot));
                }
            }
            for snapshot in &cached.snapshots {
                if !ordered.iter().any(|(_, s)| s.commit == snapshot.commit) {
                    ordered.push((snapshot.commit.clone(), snapshot));
                }
            }
            for (revision, snapshot) in ordered {
                for model in self.snapshot_models(&cached.repo, &revision, &snapshot.dir) {
                    if !models.iter().any(|m| m.name == model.name) {
                        models.push(model);
                    }
                }
            }
        }
        models
    }

    fn snapshot_models(&self, repo: &str, revision: &str, dir: &Path) -> Vec<ModelInfo> {
        let source = ModelSource::HubCache {
            repo: repo.to_string(),
            revision: revision.to_string(),
        };
        let mut models = Vec::new();
        if is_sentence_transformers_dir(dir) {
            match self.inspect_cached(dir) {
                Ok(mut info) => {
                    info.name = repo.to_string();
                    info.source = source.clone();
                    models.push(info);
                }
                Err(e) => {
                    tracing::debug!(dir = %dir.display(), error = %e, "skipping a cached snapshot")
                }
            }
        }
        let mut files = Vec::new();
        hub::list_snapshot_files(dir, "", &mut files);
        for gguf in hub::gguf_models(&files) {
            if gguf.is_projector() {
                continue;
            }
            let primary = dir.join(&gguf.parts[0]);
            let mut info = match self.inspect_cached(&primary) {
                Ok(info) => info,
                Err(e) => {
                    tracing::debug!(file = %primary.display(), error = %e, "skipping a cached GGUF");
                    continue;
                }
            };
            // The other parts of a split model hold the rest of its tensors and bytes.
            for part in &gguf.parts[1..] {
                if let Ok(part_info) = self.inspect_cached(&dir.join(part)) {
                    info.size_bytes += part_info.size_bytes;
                    info.parameters = match (info.parameters, part_info.parameters) {
                        (Some(a), Some(b)) => Some(a + b),
                        (a, _) => a,
                    };
                }
            }
            let stem = gguf.key.rsplit('/').next().unwrap_or(&gguf.key);
            info.name = format!("{repo}:{stem}");
            info.source = source.clone();
            models.push(info);
        }
        models
    }
}

fn unique_position(models: &[ModelInfo], matches: impl Fn(&ModelInfo) -> bool) -> Option<usize> {
    let mut positions = models
        .iter()
        .enumerate()
        .filter(|(_, m)| matches(m))
        .map(|(i, _)| i);
    let first = positions.next()?;
    positions.next().is_none().then_some(first)
}

/// `ORG/REPO` → the repo's models; `ORG/REPO:Q4_K_M` → those whose name carries the tag.
fn hub_shorthand_matches<'a>(models: &'a [ModelInfo], name: &str) -> Vec<&'a ModelInfo> {
    let (repo, tag) = match name.split_once(':') {
        Some((repo, tag)) => (repo, Some(tag.to_ascii_lowercase())),
        None => (name, None),
    };
    models
        .iter()
        .filter(|m| match &m.source {
            ModelSource::HubCache { repo: r, .. } => r.eq_ignore_ascii_case(repo),
            ModelSource::Imported | ModelSource::Config => false,
        })
        .filter(|m| match &tag {
            None => true,
            Some(tag) => {
                let stem = m.name.rsplit(':').next().unwrap_or(&m.name);
                hub::contains_tag(&stem.to_ascii_lowercase(), tag)
            }
        })
        .collect()
}

fn validate_name(name: &str) -> Result<(), InferError> {
    let problem = if name.is_empty() {
        Some("the name is empty")
    } else if name.chars().count() > 200 {
        Some("the name is longer than 200 characters")
    } else if name.chars().any(|c| c.is_control()) {
        Some("the name contains control characters")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(InferError::InvalidParameter {
            param: "name".to_string(),
            message: problem.to_string(),
        }),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Inspecting files

/// Reads a model's metadata from its headers (never its weights). `path` is a GGUF file or a
/// sentence-transformers directory. The returned name is the default import name (file stem
/// lowercased, or the directory name) and the source is [`ModelSource::Imported`]; the
/// registry overrides both for Hub models.
pub fn inspect(path: &Path) -> Result<ModelInfo, InferError> {
    let invalid = |reason: String| InferError::InvalidModel {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| {
        invalid(match e.kind() {
            io::ErrorKind::NotFound => "no such file or directory".to_string(),
            _ => format!("cannot read it ({e})"),
        })
    })?;
    if meta.is_dir() {
        inspect_sentence_transformers(path)
    } else {
        inspect_gguf(path, meta.len())
    }
}

fn default_name(path: &Path, lowercase: bool) -> String {
    let name = if lowercase {
        path.file_stem()
    } else {
        path.file_name()
    };
    let name = name
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    if lowercase {
        name.to_lowercase()
    } else {
        name
    }
}

/// Architectures that are encoders (sentence embedders), not chat models.
const ENCODER_ARCHITECTURES: &[&str] = &[
    "bert",
    "nomic-bert",
    "nomic-bert-moe",
    "jina-bert-v2",
    "jina-bert-v3",
    "neo-bert",
    "modern-bert",
    "t5encoder",
];

fn inspect_gguf(path: &Path, size: u64) -> Result<ModelInfo, InferError> {
    let invalid = |reason: String| InferError::InvalidModel {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(|e| invalid(format!("cannot open it ({e})")))?;
    let header = gguf::read_header(BufReader::with_capacity(1 << 16, file), size)
        .map_err(|reason| invalid(reason.0))?;
    let architecture = header.string("general.architecture");
    if crate::adapter::is_adapter(&header) {
        return Err(invalid(format!(
            "a LoRA adapter (for the '{}' architecture), not a model; import it onto its base with `hearth models import {} --base MODEL`",
            architecture.as_deref().unwrap_or("unknown"),
            path.display()
        )));
    }
    let arch_key = |key: &str| {
        architecture
            .as_deref()
            .and_then(|arch| header.unsigned(&format!("{arch}.{key}")))
    };
    let is_encoder = architecture
        .as_deref()
        .is_some_and(|arch| ENCODER_ARCHITECTURES.contains(&arch))
        || arch_key("pooling_type").is_some();
    let quantization = header
        .unsigned("general.file_type")
        // llama.cpp sets bit 10 when it guessed the type.
        .and_then(|ftype| gguf::file_type_name(ftype & !1024))
        .map(str::to_string)
        .or_else(|| header.dominant_tensor_type().map(str::to_string));
    Ok(ModelInfo {
        name: default_name(path, true),
        kind: if is_encoder {
            ModelKind::Embedding
        } else {
            ModelKind::Chat
        },
        path: path.to_path_buf(),
        context_length: arch_key("context_length"),
        embedding_dim: arch_key("embedding_length"),
        architecture,
        parameters: Some(header.parameters),
        quantization,
        size_bytes: size,
        source: ModelSource::Imported,
        base: None,
    })
}

/// A directory with config.json, tokenizer.json and top-level *.safetensors that says it is a
/// sentence embedder (sentence-transformers files, or an encoder `model_type`).
fn is_sentence_transformers_dir(dir: &Path) -> bool {
    dir.join("config.json").is_file()
        && dir.join("tokenizer.json").is_file()
        && !safetensors_files(dir).is_empty()
}

fn safetensors_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "safetensors") && p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

const ENCODER_MODEL_TYPES: &[&str] = &[
    "bert",
    "roberta",
    "xlm-roberta",
    "distilbert",
    "mpnet",
    "camembert",
    "electra",
    "deberta-v2",
    "modernbert",
    "nomic_bert",
    "new",
    "jina_bert",
];

fn inspect_sentence_transformers(dir: &Path) -> Result<ModelInfo, InferError> {
    let invalid = |reason: String| InferError::InvalidModel {
        path: dir.to_path_buf(),
        reason,
    };
    let read_json = |name: &str| -> Result<Option<serde_json::Value>, InferError> {
        let path = dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| invalid(format!("{name} is not valid JSON ({e})"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(invalid(format!("cannot read {name} ({e})"))),
        }
    };
    let expected = "hearth loads GGUF files (LLMs) and sentence-transformers directories (config.json + tokenizer.json + *.safetensors)";
    let config = read_json("config.json")?
        .ok_or_else(|| invalid(format!("a directory without config.json; {expected}")))?;
    if !dir.join("tokenizer.json").is_file() {
        return Err(invalid(format!(
            "no tokenizer.json (a tokenizer.json exported with `tokenizers` is needed); {expected}"
        )));
    }
    let weights = safetensors_files(dir);
    if weights.is_empty() {
        return Err(invalid(format!(
            "no *.safetensors weights (pytorch_model.bin is not supported: convert it with `safetensors`); {expected}"
        )));
    }
    let model_type = config
        .get("model_type")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let architecture = model_type.clone().or_else(|| {
        config
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(|a| a.as_str())
            .map(str::to_string)
    });
    let modules = read_json("modules.json")?;
    let is_sentence_transformers = modules.is_some()
        || dir.join("sentence_bert_config.json").is_file()
        || dir.join("config_sentence_transformers.json").is_file();
    let is_encoder = model_type
        .as_deref()
        .is_some_and(|t| ENCODER_MODEL_TYPES.contains(&t));
    let is_cross_encoder = config
        .get("architectures")
        .and_then(|a| a.as_array())
        .is_some_and(|a| {
            a.iter()
                .filter_map(|a| a.as_str())
                .any(|a| a.ends_with("ForSequenceClassification"))
        });
    if !(is_sentence_transformers || is_encoder) {
        return Err(invalid(format!(
            "a safetensors model of type '{}' without sentence-transformers files (modules.json); hearth runs LLMs from GGUF files (pull a -GGUF repo of it) and embedders from sentence-transformers directories",
            architecture.as_deref().unwrap_or("unknown")
        )));
    }

    let mut parameters = 0u64;
    let mut dtype_elements: HashMap<String, u64> = HashMap::new();
    for file in &weights {
        let header = safetensors_header(file)
            .map_err(|reason| invalid(format!("{}: {reason}", file.display())))?;
        parameters += header.parameters;
        for (dtype, n) in header.dtype_elements {
            *dtype_elements.entry(dtype).or_default() += n;
        }
    }
    let quantization = dtype_elements
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(dtype, _)| dtype);

    let config_u64 = |value: &serde_json::Value, key: &str| value.get(key).and_then(|v| v.as_u64());
    let mut embedding_dim = read_json("1_Pooling/config.json")?
        .and_then(|pooling| config_u64(&pooling, "word_embedding_dimension"))
        .or_else(|| config_u64(&config, "hidden_size"));
    // A Dense module after pooling changes the output dimension.
    if let Some(modules) = modules.as_ref().and_then(|m| m.as_array()) {
        for module in modules {
            let is_dense = module
                .get("type")
                .and_then(|t| t.as_str())
                .is_some_and(|t| t.ends_with("Dense"));
            let module_path = module.get("path").and_then(|p| p.as_str());
            if let (true, Some(module_path)) = (is_dense, module_path) {
                if let Some(out) = read_json(&format!("{module_path}/config.json"))?
                    .and_then(|c| config_u64(&c, "out_features"))
                {
                    embedding_dim = Some(out);
                }
            }
        }
    }
    if is_cross_encoder {
        // Its output is a score, not a vector.
        embedding_dim = None;
    }
    Ok(ModelInfo {
        name: default_name(dir, false),
        kind: if is_cross_encoder {
            ModelKind::Rerank
        } else {
            ModelKind::Embedding
        },
        path: dir.to_path_buf(),
        architecture,
        parameters: Some(parameters),
        quantization,
        context_length: config_u64(&config, "max_position_embeddings"),
        embedding_dim,
        size_bytes: dir_size(dir, 3),
        source: ModelSource::Imported,
        base: None,
    })
}

/// Bytes of the files under `dir` (symlinks followed, as in an HF snapshot).
fn dir_size(dir: &Path, depth: usize) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match std::fs::metadata(entry.path()) {
            Ok(meta) if meta.is_dir() && depth > 0 => dir_size(&entry.path(), depth - 1),
            Ok(meta) if meta.is_file() => meta.len(),
            _ => 0,
        })
        .sum()
}

struct SafetensorsHeader {
    parameters: u64,
    dtype_elements: HashMap<String, u64>,
}

/// The safetensors header: 8 bytes little-endian length, then JSON
/// `{name: {dtype, shape, data_offsets}, "__metadata__": …}`. Weights are not read.
fn safetensors_header(path: &Path) -> Result<SafetensorsHeader, String> {
    const MAX_HEADER: u64 = 100 << 20;
    let mut file = File::open(path).map_err(|e| format!("cannot open it ({e})"))?;
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|_| "shorter than a safetensors header".to_string())?;
    let len = u64::from_le_bytes(len);
    if len > MAX_HEADER || len > size.saturating_sub(8) {
        return Err(format!(
            "not a safetensors file (header length {len} for a {size}-byte file)"
        ));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header)
        .map_err(|e| format!("cannot read the header ({e})"))?;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| format!("the safetensors header is not JSON ({e})"))?;
    let data_len = size - 8 - len;
    let mut parameters = 0u64;
    let mut dtype_elements = HashMap::new();
    for (name, tensor) in header.iter().filter(|(name, _)| *name != "__metadata__") {
        let dtype = tensor
            .get("dtype")
            .and_then(|d| d.as_str())
            .ok_or_else(|| format!("tensor '{name}' has no dtype"))?;
        let shape = tensor
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(|| format!("tensor '{name}' has no shape"))?;
        let elements = shape.iter().try_fold(1u64, |acc, dim| {
            dim.as_u64().and_then(|dim| acc.checked_mul(dim))
        });
        let elements = elements.ok_or_else(|| format!("tensor '{name}' has a bad shape"))?;
        let end = tensor
            .get("data_offsets")
            .and_then(|o| o.get(1))
            .and_then(|o| o.as_u64())
            .ok_or_else(|| format!("tensor '{name}' has no data_offsets"))?;
        if end > data_len {
            return Err(format!(
                "truncated: tensor '{name}' ends at byte {end} of the data but the file holds {data_len} (an interrupted copy or download?)"
            ));
        }
        parameters += elements;
        *dtype_elements.entry(dtype.to_string()).or_default() += elements;
    }
    Ok(SafetensorsHeader {
        parameters,
        dtype_elements,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gguf_bytes(kvs: &[(&str, u32, Vec<u8>)], tensors: &[(&str, &[u64], u32)]) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend((tensors.len() as u64).to_le_bytes());
        out.extend((kvs.len() as u64).to_le_bytes());
        let string = |s: &str| {
            let mut v = (s.len() as u64).to_le_bytes().to_vec();
            v.extend(s.as_bytes());
            v
        };
        for (key, ty, value) in kvs {
            out.extend(string(key));
            out.extend(ty.to_le_bytes());
            out.extend(value);
        }
        let mut offset = 0u64;
        let mut data = 0u64;
        for (name, dims, ty) in tensors {
            out.extend(string(name));
            out.extend((dims.len() as u32).to_le_bytes());
            for d in *dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(ty.to_le_bytes());
            out.extend(offset.to_le_bytes());
            let bytes = dims.iter().product::<u64>() * 4; // F32
            offset += bytes.div_ceil(32) * 32;
            data = offset;
        }
        let aligned = (out.len() as u64).div_ceil(32) * 32;
        out.resize((aligned + data) as usize, 0);
        out
    }

    fn text(s: &str) -> Vec<u8> {
        let mut v = (s.len() as u64).to_le_bytes().to_vec();
        v.extend(s.as_bytes());
        v
    }

    #[test]
    fn reads_a_synthetic_gguf_and_skips_arrays() {
        let mut tokens = 8u32.to_le_bytes().to_vec(); // array of strings
        tokens.extend(3u64.to_le_bytes());
        for t in ["a", "bb", "ccc"] {
            tokens.extend(text(t));
        }
        let kvs = vec![
            ("general.architecture", 8, text("qwen3")),
            ("qwen3.context_length", 4, 40960u32.to_le_bytes().to_vec()),
            ("qwen3.embedding_length", 4, 1024u32.to_le_bytes().to_vec()),
            ("tokenizer.ggml.tokens", 9, tokens),
        ];
        let bytes = gguf_bytes(&kvs, &[("w", &[16, 4], 0), ("b", &[16], 0)]);
        let dir = std::env::temp_dir().join(format!("hearth-registry-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("Tiny-Qwen3.gguf");
        std::fs::write(&path, &bytes).unwrap();
        let info = inspect(&path).unwrap();
        assert_eq!(info.name, "tiny-qwen3");
        assert_eq!(info.kind, ModelKind::Chat);
        assert_eq!(info.architecture.as_deref(), Some("qwen3"));
        assert_eq!(info.context_length, Some(40960));
        assert_eq!(info.embedding_dim, Some(1024));
        assert_eq!(info.parameters, Some(80));
        assert_eq!(info.quantization.as_deref(), Some("F32"));

        // Cut into the tensor data: the header still parses, the size check catches it.
        std::fs::write(&path, &bytes[..bytes.len() - 8]).unwrap();
        let err = inspect(&path).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        // Cut into the header.
        std::fs::write(&path, &bytes[..60]).unwrap();
        let err = inspect(&path).unwrap_err();
        assert_eq!(err.code(), "invalid_model", "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hub_shorthand() {
        let model = |name: &str, repo: &str| ModelInfo {
            name: name.to_string(),
            kind: ModelKind::Chat,
            path: PathBuf::from("/x"),
            architecture: None,
            parameters: None,
            quantization: None,
            context_length: None,
            embedding_dim: None,
            size_bytes: 0,
            source: ModelSource::HubCache {
                repo: repo.to_string(),
                revision: "main".to_string(),
            },
            base: None,
        };
        let models = vec![
            model("o/r:m-q4_k_m", "o/r"),
            model("o/r:m-q8_0", "o/r"),
            model("o/s:m", "o/s"),
        ];
        assert_eq!(hub_shorthand_matches(&models, "o/r:Q8_0").len(), 1);
        assert_eq!(hub_shorthand_matches(&models, "o/r").len(), 2);
        assert_eq!(hub_shorthand_matches(&models, "O/S").len(), 1);
        assert!(hub_shorthand_matches(&models, "o/r:q4_k").is_empty());
    }
}
