//! hearth-core holds the [`Platform`]: the one handle the server and the CLI talk to. It owns
//! the effective [`Config`], the model registry and the gateway with its engines.
//!
//! It never parses command lines or speaks HTTP; the binary reads config files and flags,
//! hearth-server serves the platform.

mod config;
pub mod console;
pub mod console_views;
pub mod inbox_service;
pub mod pulls;
pub mod recs_service;
pub mod support_platform;
pub mod usage_service;

use std::sync::Arc;

use recs_service::blocking;

use hearth_gateway::{Gateway, GatewayError, GatewayOptions};
use hearth_infer::embed::EmbedOptions;
use hearth_infer::llm::LlmOptions;
use hearth_infer::registry::{DeclaredAdapter, ModelRegistry, RegistryOptions};

pub use config::{
    AdapterConfig, ApiKey, Config, ConfigError, ConsoleConfig, EmbeddingConfig, LlmConfig,
    ModelsConfig, RecsConfig, ServerConfig, StoreConfig, StoreUrl, SupportConfig,
};
pub use hearth_recs as recs;
pub use hearth_store::StoreError;
pub use hearth_support as support;

/// Everything hearth runs, behind one cheap-to-clone handle.
#[derive(Clone)]
pub struct Platform {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    /// The data directory's one database and artifact directories, opened once per process:
    /// every app's typed store sits over this one writer and its reader pool.
    store: hearth_store::Store,
    gateway: Gateway,
    /// The console's accounts, opened (and migrated) on first use.
    accounts: std::sync::Mutex<Option<console::Accounts>>,
    /// The recommendation tables, opened (and migrated) on first use.
    recs: std::sync::Mutex<Option<recs::store::RecsStore>>,
    /// The live recommender and when the artifact pointer was last checked.
    recommender: std::sync::Mutex<LiveRecommender>,
    /// Held while a newly published recommender loads.
    loading: tokio::sync::Mutex<()>,
    support: support_platform::SupportState,
    /// Whether `[models] preload` has loaded (true when it names none).
    preloaded: std::sync::atomic::AtomicBool,
    /// Model pulls started from the console, and the Hub they come from.
    pulls: pulls::Pulls,
}

/// What a readiness check found ([`Platform::readiness`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// The database answered a query.
    pub store: bool,
    /// Every `[models] preload` model is loaded.
    pub models: bool,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.store && self.models
    }
}

#[derive(Clone, Default)]
struct LiveRecommender {
    model: Option<Arc<recs::serve::Recommender>>,
    checked: Option<std::time::Instant>,
}

/// The lease a scheduled training holds, and for how long at a time (renewed while it runs).
const SCHEDULE_LEASE: &str = "recs.schedule";
const SCHEDULE_LEASE_LENGTH: std::time::Duration = std::time::Duration::from_secs(600);

/// What a training ran on, as the schedule's lease keeps it: the store's row counts.
fn schedule_state((items, users, events): (u64, u64, u64)) -> String {
    format!("items={items} users={users} events={events}")
}

/// How often a serving process looks for a newly published recommendation model.
const RECOMMENDER_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

impl Platform {
    /// Opens the data directory and the model registry. Loads no model yet. Models are
    /// pulled from the Hub the environment names (`HF_ENDPOINT`, `HF_HUB_CACHE`, `HF_TOKEN`,
    /// `HF_HUB_OFFLINE`).
    pub fn open(config: Config) -> Result<Self, GatewayError> {
        Self::open_with_hub(config, hearth_infer::hub::HubOptions::from_env())
    }

    /// [`Platform::open`] with the Hub and the cache given: the registry lists the models in
    /// `hub.cache_dir`, and the console pulls from `hub.endpoint` into it.
    pub fn open_with_hub(
        config: Config,
        hub: hearth_infer::hub::HubOptions,
    ) -> Result<Self, GatewayError> {
        let registry = ModelRegistry::open(RegistryOptions {
            data_dir: config.data_dir.clone(),
            hub_cache: hub.cache_dir.clone(),
        })?
        .with_adapters(
            &config
                .models
                .adapters
                .iter()
                .map(|a| DeclaredAdapter {
                    name: a.name.clone(),
                    path: a.path.clone(),
                    base: a.base.clone(),
                })
                .collect::<Vec<_>>(),
        )?;
        let store = hearth_store::Store::open_with(
            &config.data_dir,
            &hearth_store::StoreOptions {
                url: config.store.url.as_ref().map(|u| u.expose().to_owned()),
                artifacts_dir: config.store.artifacts_dir.clone(),
            },
        )?;
        let gateway = Gateway::with_config(
            registry,
            gateway_options(&config),
            &config.gateway,
            Some(store.db().clone()),
        )?;
        let preloaded = std::sync::atomic::AtomicBool::new(config.models.preload.is_empty());
        Ok(Platform {
            inner: Arc::new(Inner {
                preloaded,
                config,
                store,
                gateway,
                accounts: std::sync::Mutex::new(None),
                recs: std::sync::Mutex::new(None),
                recommender: std::sync::Mutex::new(LiveRecommender::default()),
                loading: tokio::sync::Mutex::new(()),
                support: Default::default(),
                pulls: pulls::Pulls::new(hub),
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn gateway(&self) -> &Gateway {
        &self.inner.gateway
    }

    /// The data directory's store, opened once by [`Platform::open`].
    pub fn store(&self) -> &hearth_store::Store {
        &self.inner.store
    }

    /// Brings every app's tables to this hearth's schema (each app's migrations otherwise
    /// run on its first use): what `hearth store migrate` does to both ends before copying.
    /// The gateway's ran when the platform opened.
    pub fn migrate_store(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.recs_store()?;
        self.accounts()?;
        self.support_sessions()?;
        self.knowledge_base()?;
        hearth_store::Leases::open(self.store().db())?;
        Ok(())
    }

    /// The console's accounts and sessions in the data directory's database.
    pub fn accounts(&self) -> Result<console::Accounts, console::ConsoleError> {
        let mut slot = self
            .inner
            .accounts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(accounts) = slot.as_ref() {
            return Ok(accounts.clone());
        }
        let accounts = console::Accounts::open(
            self.inner.store.db().clone(),
            self.inner.config.console.login_limits(),
        )?;
        *slot = Some(accounts.clone());
        Ok(accounts)
    }

    /// The recommendation engine's tables in the data directory's database.
    pub fn recs_store(&self) -> Result<recs::store::RecsStore, recs::RecsError> {
        let mut slot = self.inner.recs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = slot.as_ref() {
            return Ok(store.clone());
        }
        let recs = recs::store::RecsStore::open(self.inner.store.db().clone())?;
        *slot = Some(recs.clone());
        Ok(recs)
    }

    /// Published recommendation models (`$DATA_DIR/artifacts/recs`).
    pub fn recs_artifacts(&self) -> hearth_store::Artifacts {
        self.inner.store.artifacts("recs")
    }

    /// The live recommender: the newest published model with the store's current catalogue.
    /// A newly published version is picked up within a couple of seconds; until it has loaded,
    /// the previous one keeps answering.
    pub async fn recommender(&self) -> Result<Arc<recs::serve::Recommender>, recs::RecsError> {
        let live = || {
            self.inner
                .recommender
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        };
        let state = live();
        if let (Some(model), Some(at)) = (&state.model, state.checked) {
            if at.elapsed() < RECOMMENDER_CHECK {
                return Ok(model.clone());
            }
        }
        // One load at a time; while it runs, everyone else keeps the live model.
        let _loading = match self.inner.loading.try_lock() {
            Ok(guard) => guard,
            Err(_) => match state.model {
                Some(model) => return Ok(model),
                None => self.inner.loading.lock().await,
            },
        };
        let current = self.recs_artifacts().current()?;
        let state = {
            let mut state = self
                .inner
                .recommender
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            state.checked = Some(std::time::Instant::now());
            state.clone()
        };
        let Some(current) = current else {
            return Err(recs::RecsError::NotTrained);
        };
        if let Some(model) = &state.model {
            if model.version() == current.version {
                return Ok(model.clone());
            }
        }
        let store = self.recs_store()?;
        let weights = self.inner.config.recs.weights();
        let loaded = tokio::task::spawn_blocking(move || -> Result<_, recs::RecsError> {
            let bundle = recs::bundle::RecsBundle::load(&current.dir)?;
            let catalogue = store.items()?;
            recs::serve::Recommender::new(bundle, current.version, catalogue, weights)
        })
        .await
        .map_err(|e| recs::RecsError::Artifact(e.to_string()))??;
        tracing::info!(version = loaded.version(), "recommendation model loaded");
        let loaded = Arc::new(loaded);
        self.inner
            .recommender
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .model = Some(loaded.clone());
        Ok(loaded)
    }

    /// Trains on everything in the store and publishes the bundle as a new version; returns
    /// the report and the version. Blocks on CPU work off the async workers.
    pub async fn train_recs(
        &self,
        mut options: recs::bundle::TrainOptions,
        progress: Box<dyn recs::bundle::TrainProgress + Send>,
    ) -> Result<(recs::bundle::TrainReport, u64), recs::RecsError> {
        let store = self.recs_store()?;
        let weights = self.inner.config.recs.weights();
        // What it trains on, counted first (an event arriving meanwhile makes the count
        // differ, so the schedule retrains: it errs on training again).
        let (trained_on, data) = tokio::task::spawn_blocking(move || {
            Ok::<_, recs::RecsError>((schedule_state(store.counts()?), store.dataset(&weights)?))
        })
        .await
        .map_err(|e| recs::RecsError::Artifact(e.to_string()))??;
        if data.interactions.is_empty() {
            return Err(recs::RecsError::NotEnoughData(
                "no events to train on: import some with `hearth recs import --events FILE`".into(),
            ));
        }
        let vectors = match &self.inner.config.recs.embedding_model {
            Some(model) => Some(
                recs::models::embed_items(self.gateway(), model, &data.catalogue, &|_| {}).await?,
            ),
            None => None,
        };
        options.embedding_model = self.inner.config.recs.embedding_model.clone();
        let artifacts = self.recs_artifacts();
        let db = self.inner.store.db().clone();
        tokio::task::spawn_blocking(move || {
            let bundle =
                recs::bundle::train_bundle(&data, vectors.as_ref(), &options, progress.as_ref())?;
            let published = artifacts.publish(|dir| bundle.save(dir))?;
            artifacts.prune(3)?;
            // The schedule (on any replica) need not train on these events again.
            let recorded = hearth_store::Leases::open(&db)
                .and_then(|leases| leases.record_state(SCHEDULE_LEASE, &trained_on));
            if let Err(e) = recorded {
                tracing::warn!(error = %e, "recording what the training used for the schedule");
            }
            Ok((bundle.report, published.version))
        })
        .await
        .map_err(|e| recs::RecsError::Artifact(e.to_string()))?
    }

    /// While the returned task runs, retrains every `[recs] train_interval_seconds` when the
    /// stored events changed since the last training (or nothing is published yet). Replicas
    /// on one database take turns: each run holds the store's `recs.schedule` lease, and the
    /// lease keeps what the last run trained on, so a schedule firing on every replica trains
    /// once.
    pub fn spawn_recs_schedule(&self) -> Option<tokio::task::JoinHandle<()>> {
        let every = self.inner.config.recs.train_interval_seconds;
        if every == 0 {
            return None;
        }
        let platform = self.clone();
        Some(tokio::spawn(async move {
            let mut leases = None;
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(every));
            tick.tick().await; // the first tick is immediate: wait one interval after start
            loop {
                tick.tick().await;
                if leases.is_none() {
                    let db = platform.inner.store.db().clone();
                    match blocking(move || Ok(hearth_store::Leases::open(&db)?)).await {
                        Ok(opened) => leases = Some(opened),
                        Err(e) => {
                            tracing::warn!(error = %e, "scheduled training: no lease table");
                            continue;
                        }
                    }
                }
                if let Some(leases) = &leases {
                    platform.scheduled_training(leases).await;
                }
            }
        }))
    }

    /// One firing of the schedule: trains if this replica takes the lease and the stored
    /// events differ from what the last run (on any replica) trained on.
    async fn scheduled_training(&self, leases: &hearth_store::Leases) {
        let taken = {
            let leases = leases.clone();
            blocking(move || Ok(leases.try_take(SCHEDULE_LEASE, SCHEDULE_LEASE_LENGTH)?)).await
        };
        let last = match taken {
            Ok(Some(last)) => last,
            Ok(None) => return, // another replica is training
            Err(e) => {
                tracing::warn!(error = %e, "scheduled training: the lease is unavailable");
                return;
            }
        };
        let release = |state: Option<String>| {
            let leases = leases.clone();
            async move {
                if let Err(e) =
                    blocking(move || Ok(leases.release(SCHEDULE_LEASE, state.as_deref())?)).await
                {
                    tracing::warn!(error = %e, "scheduled training: releasing the lease");
                }
            }
        };
        let counts = match self.recs_store() {
            Ok(store) => blocking(move || Ok(store.counts()?)).await,
            Err(e) => Err(e),
        };
        let counts = match counts {
            Ok(counts) => counts,
            Err(e) => {
                tracing::warn!(error = %e, "scheduled training: counting the events");
                return release(None).await;
            }
        };
        let now = schedule_state(counts);
        let published = matches!(self.recs_artifacts().current(), Ok(Some(_)));
        if counts.2 == 0 || (published && last == now) {
            return release(None).await;
        }
        // Training may outlast the lease: renew it while training runs.
        let train = self.train_recs(Default::default(), Box::new(()));
        tokio::pin!(train);
        let mut renew = tokio::time::interval(SCHEDULE_LEASE_LENGTH / 3);
        renew.tick().await;
        let result = loop {
            tokio::select! {
                result = &mut train => break result,
                _ = renew.tick() => {
                    let leases = leases.clone();
                    match blocking(move || Ok(leases.renew(SCHEDULE_LEASE, SCHEDULE_LEASE_LENGTH)?)).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!("scheduled training outlasted its lease"),
                        Err(e) => tracing::warn!(error = %e, "scheduled training: renewing the lease"),
                    }
                }
            }
        };
        match result {
            Ok((report, version)) => {
                tracing::info!(version, model = %report.chosen.kind(), "scheduled training published");
                release(Some(now)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "scheduled training failed");
                release(None).await;
            }
        }
    }

    /// Starts the engines of the configured `models.preload` list.
    pub async fn preload(&self) -> Result<(), GatewayError> {
        for name in &self.inner.config.models.preload {
            self.inner.gateway.load(name).await?;
        }
        self.inner
            .preloaded
            .store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Whether this process can serve: its database answers (one round trip, off the async
    /// threads) and its preloaded models are loaded. A database that went away makes it
    /// unready until it is back; nothing needs restarting.
    pub async fn readiness(&self) -> Readiness {
        let db = self.inner.store.db().clone();
        let store = match tokio::task::spawn_blocking(move || db.ping()).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: the database does not answer");
                false
            }
            Err(_) => false,
        };
        Readiness {
            store,
            models: self
                .inner
                .preloaded
                .load(std::sync::atomic::Ordering::SeqCst),
        }
    }
}

fn gateway_options(config: &Config) -> GatewayOptions {
    let cores = hearth_infer::available_cores();
    GatewayOptions {
        llm: LlmOptions {
            threads: config.llm.threads.unwrap_or(cores),
            context_length: config.llm.context_length,
            max_sequences: config.llm.max_sequences,
            batch_size: config.llm.batch_size,
            queue_capacity: config.llm.queue_capacity,
            max_queue_wait: std::time::Duration::from_millis(config.llm.max_queue_wait_ms),
            flash_attention: config.llm.flash_attention,
            chat_template: None,
        },
        chat_templates: config.llm.chat_templates.clone(),
        embed: EmbedOptions {
            threads: config.embeddings.threads.unwrap_or(cores),
            max_batch: config.embeddings.max_batch,
            queue_capacity: config.embeddings.queue_capacity,
        },
        max_embedding_inputs: config.embeddings.max_inputs_per_request,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The database is opened once per process: every app's tables sit on the one handle.
    #[test]
    fn every_app_shares_the_one_store() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        let platform = Platform::open(config).unwrap();
        let db = platform.store().db();
        let ledger = platform
            .gateway()
            .ledger()
            .expect("the gateway keeps a ledger");
        assert!(ledger.database().is_same_handle(db));
        assert!(platform.recs_store().unwrap().database().is_same_handle(db));
        assert!(platform
            .support_sessions()
            .unwrap()
            .database()
            .is_same_handle(db));
        assert!(platform
            .knowledge_base()
            .unwrap()
            .database()
            .is_same_handle(db));
        // A second open of the same file is another handle, and the check tells them apart.
        let other = hearth_store::Store::open(dir.path()).unwrap();
        assert!(!other.db().is_same_handle(db));
    }
}
