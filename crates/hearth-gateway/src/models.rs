use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hearth_infer::embed::{EmbedHandle, EmbedOptions};
use hearth_infer::llm::{LlmHandle, LlmOptions};
use hearth_infer::registry::{ModelInfo, ModelKind, ModelRegistry};
use hearth_infer::InferError;
use tokio::sync::OnceCell;

use crate::config::GatewayConfig;
use crate::keys::KeyStore;
use crate::ledger::{GroupBy, Ledger, UsageReport};
use crate::metrics::GatewayMetrics;
use crate::prices::PriceTable;
use crate::routing::Routing;
use crate::GatewayError;
use hearth_store::Database;

/// Engine options for the models the gateway loads.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub llm: LlmOptions,
    pub embed: EmbedOptions,
    /// Inputs one embeddings request may carry (more: 400 naming `input`).
    pub max_embedding_inputs: usize,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            llm: LlmOptions::default(),
            embed: EmbedOptions::default(),
            max_embedding_inputs: 2048,
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
}

impl LoadedModel {
    pub fn info(&self) -> &ModelInfo {
        match self {
            LoadedModel::Chat { info, .. } | LoadedModel::Embedding { info, .. } => info,
        }
    }
}

/// Resolves model names and routes, owns the engines (each loaded once, on first use or at
/// start-up), and meters every request.
pub struct Gateway {
    registry: Arc<ModelRegistry>,
    pub(crate) options: GatewayOptions,
    loaded: Mutex<HashMap<String, Arc<OnceCell<LoadedModel>>>>,
    pub(crate) routing: Routing,
    pub(crate) settings: GatewayConfig,
    pub(crate) prices: PriceTable,
    pub(crate) ledger: Option<Arc<Ledger>>,
    pub(crate) keys: Option<Arc<KeyStore>>,
    pub(crate) metrics: Arc<GatewayMetrics>,
}

impl Gateway {
    /// Local engines only, no ledger (tools and tests).
    pub fn new(registry: ModelRegistry, options: GatewayOptions) -> Self {
        let settings = GatewayConfig::default();
        Gateway {
            registry: Arc::new(registry),
            options,
            loaded: Mutex::new(HashMap::new()),
            routing: Routing::default(),
            prices: PriceTable::new(&settings.prices),
            settings,
            ledger: None,
            keys: None,
            metrics: Arc::default(),
        }
    }

    /// The gateway of a server: `config`'s routes (checked: a bad route or a `local_only`
    /// route that could leave the machine is an error), and with `db`, the usage ledger,
    /// the audit log and API keys.
    pub fn with_config(
        registry: ModelRegistry,
        options: GatewayOptions,
        config: &GatewayConfig,
        db: Option<Database>,
    ) -> Result<Self, GatewayError> {
        let prices = PriceTable::new(&config.prices);
        let routing = Routing::new(config, &prices)?;
        let metrics = Arc::new(GatewayMetrics::default());
        let (ledger, keys) = match db {
            Some(db) => {
                crate::ledger::migrate(&db)?;
                (
                    Some(Arc::new(Ledger::start(db.clone()))),
                    Some(Arc::new(
                        KeyStore::new(db, Some(metrics.clone()))
                            .with_max_concurrent(config.max_concurrent_per_key),
                    )),
                )
            }
            None => (None, None),
        };
        Ok(Gateway {
            registry: Arc::new(registry),
            options,
            loaded: Mutex::new(HashMap::new()),
            routing,
            settings: config.clone(),
            prices,
            ledger,
            keys,
            metrics,
        })
    }

    /// The gateway's Prometheus metrics.
    pub fn metrics(&self) -> &GatewayMetrics {
        &self.metrics
    }

    /// The API keys (with a database).
    pub fn keys(&self) -> Option<&KeyStore> {
        self.keys.as_deref()
    }

    /// The usage ledger (with a database).
    pub fn ledger(&self) -> Option<&Ledger> {
        self.ledger.as_deref()
    }

    pub fn settings(&self) -> &GatewayConfig {
        &self.settings
    }

    pub fn prices(&self) -> &PriceTable {
        &self.prices
    }

    /// The usage report since `since` (unix seconds), grouped `by`, with savings against
    /// `reference` (default: the configured reference model). Waits for pending records.
    /// With `only_keys`, those keys' requests only (by key name).
    pub fn usage_report(
        &self,
        since: Option<f64>,
        only_keys: Option<&[String]>,
        by: GroupBy,
        reference: Option<&str>,
    ) -> Result<UsageReport, GatewayError> {
        let ledger = self.ledger.as_ref().ok_or_else(|| {
            GatewayError::Config("this gateway keeps no ledger (no database)".into())
        })?;
        ledger.flush();
        crate::ledger::report(
            ledger.database(),
            since,
            only_keys,
            by,
            &self.prices,
            reference.unwrap_or(&self.settings.reference_model),
            self.settings.machine_cost_per_hour,
        )
    }

    /// The routes declared in config: alias, privacy and deployments (`provider/model`).
    pub fn routes(&self) -> Vec<(String, &'static str, Vec<String>)> {
        let mut routes: Vec<_> = self
            .routing
            .routes
            .values()
            .map(|r| {
                (
                    r.alias.clone(),
                    r.privacy.as_str(),
                    r.deployments.iter().map(|d| d.label.clone()).collect(),
                )
            })
            .collect();
        routes.sort();
        routes
    }

    pub fn registry(&self) -> &ModelRegistry {
        &self.registry
    }

    /// Every model this machine has, loaded or not.
    pub fn models(&self) -> Result<Vec<ModelInfo>, GatewayError> {
        Ok(self.registry.list()?)
    }

    /// [`Self::models`] for async callers: from the registry's memory, or scanned again on a
    /// blocking thread when its last scan is stale, never on the async workers.
    pub async fn models_now(&self) -> Result<Arc<Vec<ModelInfo>>, GatewayError> {
        if self.registry.is_fresh() {
            return Ok(self.registry.models()?);
        }
        let registry = self.registry.clone();
        tokio::task::spawn_blocking(move || registry.models())
            .await
            .map_err(|e| InferError::Engine(format!("the model scan panicked: {e}")))?
            .map_err(GatewayError::from)
    }

    /// Resolves a model name (see [`ModelRegistry::resolve`]) without scanning on the async
    /// workers.
    pub async fn resolve(&self, name: &str) -> Result<ModelInfo, GatewayError> {
        self.models_now().await?;
        Ok(self.registry.resolve(name)?)
    }

    /// The engines running now.
    pub fn loaded(&self) -> Vec<LoadedModel> {
        let loaded = self.loaded.lock().expect("gateway lock");
        loaded
            .values()
            .filter_map(|cell| cell.get().cloned())
            .collect()
    }

    /// Resolves `name` and starts its engine if it is not running yet. Concurrent callers
    /// share one load.
    pub async fn load(&self, name: &str) -> Result<LoadedModel, GatewayError> {
        let info = self.resolve(name).await?;
        let cell = {
            let mut loaded = self.loaded.lock().expect("gateway lock");
            loaded.entry(info.name.clone()).or_default().clone()
        };
        let options = self.options.clone();
        let model = cell
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || start_engine(info, &options))
                    .await
                    .map_err(|e| InferError::Engine(format!("model loading panicked: {e}")))?
            })
            .await?;
        Ok(model.clone())
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
        }
    }
}

fn start_engine(info: ModelInfo, options: &GatewayOptions) -> Result<LoadedModel, InferError> {
    tracing::info!(model = %info.name, path = %info.path.display(), "loading model");
    let started = std::time::Instant::now();
    let model = match info.kind {
        ModelKind::Chat => {
            let engine = LlmHandle::spawn(&info.name, &info.path, options.llm.clone())?;
            LoadedModel::Chat { info, engine }
        }
        ModelKind::Embedding => {
            let engine = EmbedHandle::spawn(&info.path, options.embed.clone())?;
            LoadedModel::Embedding { info, engine }
        }
    };
    tracing::info!(model = %model.info().name, seconds = started.elapsed().as_secs_f32(), "model loaded");
    Ok(model)
}
