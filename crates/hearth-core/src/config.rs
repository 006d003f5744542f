//! hearth's configuration: one documented struct. Layers, lowest first: these defaults <
//! `hearth.toml` < `HEARTH_*` environment variables < command-line flags (the binary applies
//! the last two).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A bearer API key. Never printed: `Debug` and `config show` redact it.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// The whole configuration (`hearth.toml`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where hearth keeps its model registry and data. Default: `$XDG_DATA_HOME/hearth` or
    /// `~/.local/share/hearth`.
    pub data_dir: PathBuf,
    /// Where durable state lives (`[store]`): the data directory, or PostgreSQL.
    pub store: StoreConfig,
    pub server: ServerConfig,
    pub models: ModelsConfig,
    pub llm: LlmConfig,
    pub embeddings: EmbeddingConfig,
    pub recs: RecsConfig,
    pub support: SupportConfig,
    /// The web console at `/console` (`[console]`).
    pub console: ConsoleConfig,
    /// Routes to local and upstream models, privacy, prices (`[gateway]`).
    pub gateway: hearth_gateway::GatewayConfig,
}

/// `[store]`: where keys, budgets, the ledger, recommendation data, support sessions, the
/// knowledge base and stored responses live, and where trained models are published.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// A PostgreSQL database holding all of it, shared by every replica:
    /// `postgres://user:password@host:5432/dbname` (`?sslmode=…` and libpq's other settings
    /// too). Unset (the default): the embedded SQLite file `$DATA_DIR/hearth.db`.
    /// `HEARTH_STORE_URL` overrides it; its password is never printed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<StoreUrl>,
    /// Where trained models (recommendations, intent routers) are published. Default:
    /// `$DATA_DIR/artifacts`. Replicas sharing a PostgreSQL database share this path too (a
    /// shared volume), so a model trained on one is served by all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifacts_dir: Option<PathBuf>,
}

/// A database URL. It holds a password: `Debug` and `config show` print it without one.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct StoreUrl(String);

impl StoreUrl {
    pub fn new(url: impl Into<String>) -> Self {
        StoreUrl(url.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password (`user:password@`, `password=` settings) replaced.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

/// `postgres://user:secret@host/db?password=x` → `postgres://user:<redacted>@host/db?password=<redacted>`;
/// a key=value connection string's `password=` too.
fn redact_url(url: &str) -> String {
    const HIDDEN: &str = "<redacted>";
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..].find(['/', '?']).map_or(out.len(), |e| rest + e);
        if let Some(at) = out[rest..authority_end].rfind('@') {
            let userinfo = &out[rest..rest + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest + colon + 1..rest + at, HIDDEN);
            }
        }
    }
    // `password=…` up to the next `&` or space (URL query or key=value form).
    let mut search = 0;
    while let Some(found) = out[search..].to_ascii_lowercase().find("password=") {
        let start = search + found + "password=".len();
        let end = out[start..]
            .find(['&', ' '])
            .map_or(out.len(), |e| start + e);
        out.replace_range(start..end, HIDDEN);
        search = start + HIDDEN.len();
    }
    out
}

/// `[server]`: the HTTP API.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on (default: loopback only). Port 0 picks a free port (printed at
    /// start). `0.0.0.0:8080` listens on every interface: set keys first.
    pub listen: String,
    /// Bearer keys accepted on every route but /health. Empty: no authentication.
    pub api_keys: Vec<ApiKey>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Seconds to let open streams finish on shutdown before closing them.
    pub shutdown_grace_seconds: u64,
    /// Host names requests may be addressed to (the `Host` header), besides localhost names
    /// and IP addresses, which always pass: e.g. `["hearth.corp.example", "*.svc.local"]`;
    /// `["*"]` turns the check off. A web page that rebinds its own domain to this machine
    /// is refused (403 `host_not_allowed`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// Web origins (`https://app.example.com`) whose pages may call this server: CORS is
    /// answered for them and their state-changing requests pass. Empty (the default): no
    /// CORS, and a POST/DELETE carrying a foreign `Origin` is refused (403
    /// `origin_not_allowed`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
}

/// `[models]`: which models run.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelsConfig {
    /// Models started with the server (names from `hearth models`); others start on first use.
    pub preload: Vec<String>,
    /// LoRA adapters served as models of their own (`[[models.adapters]]`), each on its
    /// base model's engine; `hearth models import FILE --base NAME` registers one without
    /// configuration.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub adapters: Vec<AdapterConfig>,
}

/// One `[[models.adapters]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterConfig {
    /// The model name requests use.
    pub name: String,
    /// The adapter's GGUF file (llama.cpp's LoRA layout); relative to this file's directory.
    pub path: PathBuf,
    /// The model it applies to: a GGUF chat model from `hearth models`.
    pub base: String,
}

/// `[recs]`: the recommendation engine.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecsConfig {
    /// Embedding model (a name from `hearth models`) that reads item texts: the content model
    /// and the off-the-shelf baseline use it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding_model: Option<String>,
    /// Chat model of the shopping assistant (POST /v1/assistant). Default: the first chat
    /// model registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assistant_model: Option<String>,
    /// While serving, retrain and publish the recommendation model this often (seconds) when
    /// events have changed since the last training. 0: never (use `hearth recs train`).
    pub train_interval_seconds: u64,
    /// Weight of each event type in training and serving, over the defaults (view, click,
    /// rating 1; save 2; cart 3; purchase 4; any other type 1), e.g. `purchase = 8.0`.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub event_weights: std::collections::BTreeMap<String, f32>,
    /// A second stage for catalogue search (`/v1/search`, the shopping assistant): the
    /// hybrid ranking's best `rerank_depth` items scored again with the shopper's words by
    /// this model (a cross-encoder, a chat model judging yes/no, or an embedding model).
    /// Default: none; measure one first with `hearth recs search-eval`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerank_model: Option<String>,
    /// Items the reranker reads per search.
    pub rerank_depth: usize,
    /// What relevance means, for a chat model reranker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerank_instruction: Option<String>,
    /// Fuse the reranker's order with the hybrid ranking's (reciprocal rank) instead of
    /// replacing it.
    pub rerank_fuse: bool,
}

impl RecsConfig {
    /// The default weights with this config's overrides.
    pub fn weights(&self) -> hearth_recs::EventWeights {
        let mut weights = hearth_recs::EventWeights::default();
        for (kind, &w) in &self.event_weights {
            weights.weights.insert(kind.to_ascii_lowercase(), w);
        }
        weights
    }
}

/// `[support]`: the customer-service agent.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupportConfig {
    /// Embedding model (a name from `hearth models`) for intent routing and the knowledge
    /// base. Default: the first embedding model registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding_model: Option<String>,
    /// Chat model of the agent. Default: the first chat model registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_model: Option<String>,
    /// The company's policy (Markdown) the agent follows, e.g. `policy.md`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PathBuf>,
    /// The company's tool config (`[[tools]]` tables, see examples/retail/tools.toml).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<PathBuf>,
    /// Values for `${NAME}` in the tool config that are not secrets (a base URL); the
    /// environment fills the rest (keep secrets there).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tool_variables: std::collections::BTreeMap<String, String>,
    /// Most tool calls per customer message before the agent hands over.
    pub max_tool_rounds: usize,
    /// Extra instructions per intent (the intent's playbook), added to the agent's prompt
    /// when the first message is routed to that intent.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub playbooks: std::collections::BTreeMap<String, String>,
    /// A second stage for knowledge-base search: the hybrid ranking's best `rerank_depth`
    /// passages scored again by this model (a cross-encoder, a chat model judging yes/no, or
    /// an embedding model). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerank_model: Option<String>,
    /// Passages the reranker reads per search.
    pub rerank_depth: usize,
    /// What relevance means, for a chat model reranker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerank_instruction: Option<String>,
    /// Fuse the reranker's order with the hybrid ranking's (reciprocal rank) instead of
    /// replacing it.
    pub rerank_fuse: bool,
}

impl Default for SupportConfig {
    fn default() -> Self {
        SupportConfig {
            embedding_model: None,
            chat_model: None,
            policy: None,
            tools: None,
            tool_variables: std::collections::BTreeMap::new(),
            max_tool_rounds: 6,
            playbooks: std::collections::BTreeMap::new(),
            rerank_model: None,
            rerank_depth: 20,
            rerank_instruction: None,
            rerank_fuse: false,
        }
    }
}

/// `[llm]`: the llama.cpp engine, per chat model.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// Compute threads. Default: the cores this process may use. More threads than free
    /// cores makes llama.cpp several times slower.
    pub threads: Option<usize>,
    /// KV cache size in tokens, shared by all concurrent sequences.
    pub context_length: u32,
    /// Requests decoded together (continuous batching).
    pub max_sequences: usize,
    /// Most tokens per llama.cpp decode call (prompt chunks + one token per sequence).
    pub batch_size: u32,
    /// Requests waiting for a sequence before new ones get 503 + Retry-After.
    pub queue_capacity: usize,
    /// How long a request may wait for a sequence before it gets 503 + Retry-After (before
    /// any answer starts, streamed or not), in milliseconds.
    pub max_queue_wait_ms: u64,
    /// llama.cpp's flash-attention kernel: auto (on for CPU builds, where only with it are
    /// greedy and seeded answers repeatable whatever the cache holds; llama.cpp's choice on
    /// GPU builds), on or off.
    pub flash_attention: hearth_infer::llm::FlashAttention,
    /// Chat template files that replace a model's own, by model name
    /// (`chat_templates = { qwen = "templates/qwen.jinja" }`), as llama-server's
    /// `--chat-template-file`: for a GGUF whose template is missing or wrong. A relative
    /// path is read from the configuration file's directory; each file is compiled when
    /// the configuration is read.
    pub chat_templates: std::collections::BTreeMap<String, PathBuf>,
}

/// `[embeddings]`: the embedding engine, per embedding model.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddingConfig {
    /// Compute threads. Default: the cores this process may use.
    pub threads: Option<usize>,
    /// Texts embedded together in one forward pass.
    pub max_batch: usize,
    /// Requests waiting before new ones get 503 + Retry-After.
    pub queue_capacity: usize,
    /// Inputs one embeddings request may carry; more get 400 naming `input`.
    pub max_inputs_per_request: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: default_data_dir(),
            store: StoreConfig::default(),
            server: ServerConfig::default(),
            models: ModelsConfig::default(),
            llm: LlmConfig::default(),
            embeddings: EmbeddingConfig::default(),
            recs: RecsConfig::default(),
            support: SupportConfig::default(),
            console: ConsoleConfig::default(),
            gateway: hearth_gateway::GatewayConfig::default(),
        }
    }
}

/// `[console]`: the web console's sign-in (accounts are made with `hearth users create`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve the console at `/console`.
    pub enabled: bool,
    /// Failed sign-ins one account may take within `login_window_minutes`; past it every
    /// sign-in of that account is refused (429, Retry-After) until the window moves on.
    pub login_failures_per_account: u32,
    /// The same for one client address (the connection's peer), over all accounts.
    pub login_failures_per_address: u32,
    pub login_window_minutes: u32,
    /// How long a sign-in lasts.
    pub session_hours: f64,
    /// The session cookie's `Secure` flag: `true` always, `false` never; unset (the default):
    /// when the request came over HTTPS as a proxy in front reports it
    /// (`X-Forwarded-Proto: https`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secure_cookies: Option<bool>,
    /// Addresses of the reverse proxies in front (e.g. `["10.0.0.5"]`): a sign-in that comes
    /// through one of them is counted against the client address the proxy appended to
    /// `X-Forwarded-For`, not against the proxy's. Empty (the default): the connection's peer,
    /// and the header is ignored (anyone can write it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: true,
            login_failures_per_account: 5,
            login_failures_per_address: 20,
            login_window_minutes: 15,
            session_hours: 12.0,
            secure_cookies: None,
            trusted_proxies: Vec::new(),
        }
    }
}

impl ConsoleConfig {
    pub fn login_limits(&self) -> crate::console::LoginLimits {
        crate::console::LoginLimits {
            per_account: self.login_failures_per_account.max(1),
            per_address: self.login_failures_per_address.max(1),
            window_seconds: f64::from(self.login_window_minutes.max(1)) * 60.0,
            session_seconds: (self.session_hours.clamp(0.01, 24.0 * 30.0)) * 3600.0,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            api_keys: Vec::new(),
            max_body_bytes: 4 * 1024 * 1024,
            shutdown_grace_seconds: 30,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
        }
    }
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            threads: None,
            context_length: 8192,
            max_sequences: 8,
            batch_size: 512,
            queue_capacity: 64,
            max_queue_wait_ms: 10_000,
            flash_attention: hearth_infer::llm::FlashAttention::Auto,
            chat_templates: std::collections::BTreeMap::new(),
        }
    }
}

impl Default for RecsConfig {
    fn default() -> Self {
        RecsConfig {
            embedding_model: None,
            assistant_model: None,
            train_interval_seconds: 3600,
            event_weights: std::collections::BTreeMap::new(),
            rerank_model: None,
            rerank_depth: 20,
            rerank_instruction: None,
            rerank_fuse: false,
        }
    }
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        EmbeddingConfig {
            threads: None,
            max_batch: 32,
            queue_capacity: 64,
            max_inputs_per_request: 2048,
        }
    }
}

fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("hearth");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| ".".into());
    home.join(".local/share/hearth")
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid hearth.toml: {message}")]
    Parse { path: PathBuf, message: String },
}

impl Config {
    /// Reads a `hearth.toml`; fields it leaves out keep their defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(dir) = config.store.artifacts_dir.as_mut() {
            if dir.is_relative() {
                *dir = base.join(&*dir);
            }
        }
        for adapter in config.models.adapters.iter_mut() {
            if adapter.path.is_relative() {
                adapter.path = base.join(&adapter.path);
            }
        }
        for (model, file) in config.llm.chat_templates.iter_mut() {
            if file.is_relative() {
                *file = base.join(&*file);
            }
            let problem = match std::fs::read_to_string(&*file) {
                Err(e) => Some(format!("cannot be read: {e}")),
                Ok(source) => hearth_infer::llm::ChatTemplate::new(Some(&source), "", "")
                    .err()
                    .map(|e| match e {
                        hearth_infer::InferError::InvalidModel { reason, .. } => reason,
                        other => other.to_string(),
                    }),
            };
            if let Some(problem) = problem {
                return Err(ConfigError::Parse {
                    path: path.to_owned(),
                    message: format!(
                        "[llm.chat_templates] {model} = {}: {problem}",
                        file.display()
                    ),
                });
            }
        }
        Ok(config)
    }

    pub fn from_toml(text: &str) -> Result<Self, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        for (kind, w) in &config.recs.event_weights {
            if !w.is_finite() || *w < 0.0 {
                return Err(format!(
                    "[recs.event_weights] {kind} = {w}: a weight must be a number ≥ 0"
                ));
            }
        }
        Ok(config)
    }

    /// The effective configuration as TOML, API keys redacted.
    pub fn to_toml_redacted(&self) -> String {
        let mut shown = self.clone();
        shown.server.api_keys = shown
            .server
            .api_keys
            .iter()
            .map(|_| ApiKey::new("<redacted>"))
            .collect();
        if let Some(url) = &shown.store.url {
            shown.store.url = Some(StoreUrl::new(url.redacted()));
        }
        toml::to_string_pretty(&shown).expect("config serializes")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_store_url_is_never_shown_with_its_password() {
        let cases = [
            (
                "postgres://hearth:s3cr%40t@db.internal:5432/hearth",
                "postgres://hearth:<redacted>@db.internal:5432/hearth",
            ),
            (
                "postgresql://u:p@a@h/db?sslmode=require&password=again",
                "postgresql://u:<redacted>@h/db?sslmode=require&password=<redacted>",
            ),
            ("postgres://h/db", "postgres://h/db"),
            ("postgres://user@h/db", "postgres://user@h/db"),
            (
                "host=h user=u Password=pw dbname=d",
                "host=h user=u Password=<redacted> dbname=d",
            ),
        ];
        for (url, shown) in cases {
            assert_eq!(super::StoreUrl::new(url).redacted(), shown, "{url}");
        }
        let config =
            super::Config::from_toml("[store]\nurl = \"postgres://hearth:hunter2@db/hearth\"\n")
                .unwrap();
        let toml = config.to_toml_redacted();
        assert!(!toml.contains("hunter2"), "{toml}");
        assert!(
            toml.contains("postgres://hearth:<redacted>@db/hearth"),
            "{toml}"
        );
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn event_weights_override_the_defaults() {
        let config =
            super::Config::from_toml("[recs.event_weights]\npurchase = 8.0\nWishlist = 2.5\n")
                .unwrap();
        let weights = config.recs.weights();
        assert_eq!(weights.weight("purchase"), 8.0);
        assert_eq!(weights.weight("wishlist"), 2.5);
        assert_eq!(weights.weight("cart"), 3.0);
        let err = super::Config::from_toml("[recs.event_weights]\nview = -1\n").unwrap_err();
        assert!(err.contains("view = -1"), "{err}");
    }

    use super::*;

    #[test]
    fn a_partial_file_keeps_the_other_defaults() {
        let config = Config::from_toml(
            "[server]\nlisten = \"0.0.0.0:9000\"\napi_keys = [\"sk-1\"]\n[llm]\nthreads = 1\n",
        )
        .unwrap();
        assert_eq!(config.server.listen, "0.0.0.0:9000");
        assert_eq!(config.llm.threads, Some(1));
        assert_eq!(config.llm.max_sequences, LlmConfig::default().max_sequences);
        assert_eq!(config.embeddings, EmbeddingConfig::default());
    }

    #[test]
    fn unknown_fields_are_errors_that_name_them() {
        let err = Config::from_toml("[server]\nlisten_addr = \"x\"\n").unwrap_err();
        assert!(err.contains("listen_addr"), "{err}");
    }

    #[test]
    fn api_keys_never_show() {
        let mut config = Config::default();
        config.server.api_keys = vec![ApiKey::new("sk-secret")];
        assert!(!format!("{config:?}").contains("sk-secret"));
        let shown = config.to_toml_redacted();
        assert!(
            !shown.contains("sk-secret") && shown.contains("<redacted>"),
            "{shown}"
        );
        // And what is shown parses back as a config.
        Config::from_toml(&shown).unwrap();
    }
}

#[cfg(test)]
mod documented_config {
    use super::*;

    #[test]
    fn chat_template_files_are_read_from_the_config_directory_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("templates")).unwrap();
        std::fs::write(
            dir.path().join("templates/good.jinja"),
            "{% for m in messages %}{{ m.content }}{% endfor %}",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("templates/bad.jinja"),
            "{% for m in messages %}\n{{ m.content }\n",
        )
        .unwrap();
        let file = dir.path().join("hearth.toml");
        let with_template = |name: &str| {
            let toml = format!("[llm]\nchat_templates = {{ qwen = \"templates/{name}\" }}\n");
            std::fs::write(&file, toml).unwrap();
            Config::from_file(&file)
        };
        let config = with_template("good.jinja").unwrap();
        assert_eq!(
            config.llm.chat_templates["qwen"],
            dir.path().join("templates/good.jinja")
        );

        let error = with_template("bad.jinja").unwrap_err().to_string();
        assert!(
            error.contains("[llm.chat_templates] qwen") && error.contains("bad.jinja"),
            "{error}"
        );
        assert!(
            error.contains("line 2"),
            "the error names the template's line: {error}"
        );

        let error = with_template("none.jinja").unwrap_err().to_string();
        assert!(
            error.contains("none.jinja") && error.contains("cannot be read"),
            "{error}"
        );
    }

    /// docs/hearth.toml documents every setting with its default: it must parse, and every
    /// value it sets must be the default, so the document cannot drift from the code.
    #[test]
    fn docs_hearth_toml_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/hearth.toml");
        let config = Config::from_file(&path).unwrap();
        assert_eq!(config, Config::default());
    }
}
