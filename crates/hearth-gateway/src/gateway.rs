//! The gateway, read top to bottom: what it holds (this file), then what a request goes
//! through, each step once and in this order:
//! 1. the door (`chat.rs` `check_chat`, `sampling_params`): every field of the request checked,
//!    for local and upstream routes alike; an error names the field;
//! 2. routing (`routing.rs` `chat_as`, `Routing::route`): the alias or model's route, the
//!    privacy rule's refusals, the key's routes, limits and budget (`KeyStore::admit`
//!    reserves);
//! 3. dispatch (`routing.rs` `dispatch`, `attempt`): the route's deployments in order, with
//!    retries, cool-down and failover; a local engine (`chat.rs` `local_chat`, engines loaded
//!    by `models.rs`) or an upstream (`upstream.rs`, redacted by `privacy.rs`);
//! 4. metering (`meter.rs`): when the answer ends, the reservation settled and the usage
//!    record written to the ledger (`ledger.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hearth_infer::registry::{ModelInfo, ModelRegistry};
use hearth_infer::InferError;
use hearth_store::Database;
use tokio::sync::OnceCell;

use crate::config::GatewayConfig;
use crate::keys::KeyStore;
use crate::ledger::{GroupBy, Ledger, UsageReport};
use crate::metrics::GatewayMetrics;
use crate::models::{GatewayOptions, LoadedModel};
use crate::prices::PriceTable;
use crate::routing::Routing;

/// A declared route as [`Gateway::route_states`] reports it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RouteState {
    pub alias: String,
    /// `local_only`, `redact` or `allow`.
    pub privacy: &'static str,
    /// `failover` or `balance`.
    pub strategy: &'static str,
    pub deployments: Vec<DeploymentState>,
}

/// One deployment of a route and its health.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeploymentState {
    /// `provider/model`.
    pub deployment: String,
    pub model: String,
    pub local: bool,
    /// Failed attempts since its last success (reset when a cool-down starts).
    pub failures: u32,
    /// Seconds it stays out of rotation; `None`: in rotation.
    pub cooling_seconds: Option<f64>,
}
use crate::GatewayError;

/// Resolves model names and routes, owns the engines (each loaded once, on first use or at
/// start-up), and meters every request.
pub struct Gateway {
    pub(crate) registry: Arc<ModelRegistry>,
    pub(crate) options: GatewayOptions,
    pub(crate) loaded: Mutex<HashMap<String, Arc<OnceCell<LoadedModel>>>>,
    pub(crate) routing: Routing,
    pub(crate) settings: GatewayConfig,
    pub(crate) prices: PriceTable,
    pub(crate) ledger: Option<Arc<Ledger>>,
    pub(crate) keys: Option<Arc<KeyStore>>,
    responses: Option<crate::responses::ResponseStore>,
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
            responses: None,
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
        if !(config.responses_ttl_hours > 0.0 && config.responses_ttl_hours.is_finite()) {
            return Err(GatewayError::Config(
                "responses_ttl_hours must be a positive number of hours".into(),
            ));
        }
        let responses = db.as_ref().map(|db| {
            crate::responses::ResponseStore::new(db.clone(), config.responses_ttl_hours * 3600.0)
        });
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
            responses,
        })
    }

    /// Where stored responses are kept (with a database).
    pub fn responses(&self) -> Result<&crate::responses::ResponseStore, GatewayError> {
        self.responses.as_ref().ok_or_else(|| {
            GatewayError::Config("this gateway keeps no responses (no database)".into())
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

    /// Each declared route with its deployments' health as this process sees it (failures
    /// since the last success, the cool-down left).
    pub fn route_states(&self) -> Vec<RouteState> {
        let mut routes: Vec<RouteState> = self
            .routing
            .routes
            .values()
            .map(|r| RouteState {
                alias: r.alias.clone(),
                privacy: r.privacy.as_str(),
                strategy: match r.strategy {
                    crate::Strategy::Failover => "failover",
                    crate::Strategy::Balance => "balance",
                },
                deployments: r
                    .deployments
                    .iter()
                    .map(|d| {
                        let (failures, left) = d.health();
                        DeploymentState {
                            deployment: d.label.clone(),
                            model: d.model.clone(),
                            local: d.local(),
                            failures,
                            cooling_seconds: left.map(|l| l.as_secs_f64()),
                        }
                    })
                    .collect(),
            })
            .collect();
        routes.sort_by(|a, b| a.alias.cmp(&b.alias));
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
        if let Some(models) = self.registry.fresh_models() {
            return Ok(models);
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
        let models = self.models_now().await?;
        Ok(ModelRegistry::resolve_in(&models, name)?)
    }
}
