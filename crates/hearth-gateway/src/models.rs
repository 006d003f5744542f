//! The engines: each model's engine started once (on first use or at start-up) and shared.

use hearth_infer::embed::{EmbedHandle, EmbedOptions};
use hearth_infer::llm::{LlmHandle, LlmOptions};
use hearth_infer::registry::{ModelInfo, ModelKind};
use hearth_infer::InferError;

use crate::{Gateway, GatewayError};

/// Engine options for the models the gateway loads.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub llm: LlmOptions,
    pub embed: EmbedOptions,
    /// Inputs one embeddings request may carry (more: 400 naming `input`).
    pub max_embedding_inputs: usize,
    /// Chat template files that replace a model's own, by model name.
    pub chat_templates: std::collections::BTreeMap<String, std::path::PathBuf>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            llm: LlmOptions::default(),
            embed: EmbedOptions::default(),
            max_embedding_inputs: 2048,
            chat_templates: Default::default(),
        }
    }
}

/// A model with its running engine.
#[derive(Clone, Debug)]
pub enum LoadedModel {
    Chat {
        info: ModelInfo,
        engine: LlmHandle,
    },
    Embedding {
        info: ModelInfo,
        engine: EmbedHandle,
    },
    /// A cross-encoder: the encoder engine, scoring pairs.
    Rerank {
        info: ModelInfo,
        engine: EmbedHandle,
    },
}

impl LoadedModel {
    pub fn info(&self) -> &ModelInfo {
        match self {
            LoadedModel::Chat { info, .. }
            | LoadedModel::Embedding { info, .. }
            | LoadedModel::Rerank { info, .. } => info,
        }
    }
}

impl Gateway {
    /// The engines running now.
    pub fn loaded(&self) -> Vec<LoadedModel> {
        let loaded = self.loaded.lock().expect("gateway lock");
        loaded
            .values()
            .filter_map(|cell| cell.get().cloned())
            .collect()
    }

    /// Resolves `name` and starts its engine if it is not running yet. Concurrent callers
    /// share one load. A LoRA adapter starts its base model's engine (shared with the base
    /// and its other adapters) and loads itself into it.
    pub async fn load(&self, name: &str) -> Result<LoadedModel, GatewayError> {
        let models = self.models_now().await?;
        self.sweep(&models);
        let info = hearth_infer::registry::ModelRegistry::resolve_in(&models, name)?;
        let cell = {
            let mut loaded = self.loaded.lock().expect("gateway lock");
            loaded.entry(info.name.clone()).or_default().clone()
        };
        let model = match info.base.clone() {
            None => {
                let options = self.options.clone();
                cell.get_or_try_init(|| async move {
                    tokio::task::spawn_blocking(move || start_engine(info, &options))
                        .await
                        .map_err(|e| InferError::Engine(format!("model loading panicked: {e}")))?
                })
                .await?
            }
            Some(base) => {
                cell.get_or_try_init(|| async move {
                    // The base resolves to a plain model (the registry refuses an adapter
                    // as a base), so this recursion is one level deep.
                    let (_, engine) =
                        Box::pin(self.chat_engine(&base, "adapters (as the base)")).await?;
                    tokio::task::spawn_blocking(move || {
                        tracing::info!(adapter = %info.name, base = %base, path = %info.path.display(), "loading adapter");
                        let engine = engine.load_adapter(&info.name, &info.path, 1.0)?;
                        Ok::<_, GatewayError>(LoadedModel::Chat { info, engine })
                    })
                    .await
                    .map_err(|e| InferError::Engine(format!("adapter loading panicked: {e}")))?
                })
                .await?
            }
        };
        Ok(model.clone())
    }

    /// Drops the engines of models no longer in the registry, or whose file changed, so that
    /// a removed adapter is freed and a re-imported one is loaded afresh. A request still
    /// running on one finishes first: its handle keeps the engine (or adapter) alive.
    fn sweep(&self, models: &[ModelInfo]) {
        let current = |name: &str, path: &std::path::Path| {
            models.iter().any(|m| m.name == name && m.path == path)
        };
        let mut loaded = self.loaded.lock().expect("gateway lock");
        loaded.retain(|name, cell| match cell.get() {
            None => true,
            Some(model) => {
                let info = model.info();
                current(name, &info.path)
                    && match (&info.base, model) {
                        // An adapter also goes when its base was re-imported from another file.
                        (Some(base), LoadedModel::Chat { engine, .. }) => {
                            current(base, &engine.info().path)
                        }
                        _ => true,
                    }
            }
        });
    }

    pub(crate) async fn chat_engine(
        &self,
        name: &str,
        route: &'static str,
    ) -> Result<(ModelInfo, LlmHandle), GatewayError> {
        match self.load(name).await? {
            LoadedModel::Chat { info, engine } => Ok((info, engine)),
            LoadedModel::Embedding { info, .. } => Err(GatewayError::WrongModelKind {
                model: info.name,
                kind: "an embedding",
                route,
            }),
            LoadedModel::Rerank { info, .. } => Err(GatewayError::WrongModelKind {
                model: info.name,
                kind: "a rerank",
                route,
            }),
        }
    }

    pub(crate) async fn embedding_engine(
        &self,
        name: &str,
    ) -> Result<(ModelInfo, EmbedHandle), GatewayError> {
        match self.load(name).await? {
            LoadedModel::Embedding { info, engine } => Ok((info, engine)),
            LoadedModel::Chat { info, .. } => Err(GatewayError::WrongModelKind {
                model: info.name,
                kind: "a chat",
                route: "embeddings",
            }),
            LoadedModel::Rerank { info, .. } => Err(GatewayError::WrongModelKind {
                model: info.name,
                kind: "a rerank",
                route: "embeddings (it scores pairs: use /v1/rerank)",
            }),
        }
    }
}

fn start_engine(info: ModelInfo, options: &GatewayOptions) -> Result<LoadedModel, InferError> {
    tracing::info!(model = %info.name, path = %info.path.display(), "loading model");
    let started = std::time::Instant::now();
    let model = match info.kind {
        ModelKind::Chat => {
            let mut llm = options.llm.clone();
            if let Some(file) = options.chat_templates.get(&info.name) {
                let source =
                    std::fs::read_to_string(file).map_err(|e| InferError::InvalidModel {
                        path: info.path.clone(),
                        reason: format!(
                            "its chat template file {} (llm.chat_templates) cannot be read: {e}",
                            file.display()
                        ),
                    })?;
                llm.chat_template = Some(source);
            }
            let engine = LlmHandle::spawn(&info.name, &info.path, llm)?;
            LoadedModel::Chat { info, engine }
        }
        ModelKind::Embedding => {
            let engine = EmbedHandle::spawn(&info.path, options.embed.clone())?;
            LoadedModel::Embedding { info, engine }
        }
        ModelKind::Rerank => {
            let engine = EmbedHandle::spawn(&info.path, options.embed.clone())?;
            LoadedModel::Rerank { info, engine }
        }
    };
    tracing::info!(model = %model.info().name, seconds = started.elapsed().as_secs_f32(), "model loaded");
    Ok(model)
}
