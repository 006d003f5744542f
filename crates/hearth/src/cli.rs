use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// hearth runs open-weight models (Qwen, Llama, Gemma, SmolLM …) on your own machines behind
/// OpenAI's API.
///
/// Configuration layers, lowest first: built-in defaults < hearth.toml < HEARTH_* environment
/// variables < flags. `hearth config show` prints the effective configuration.
///
/// State lives in $DATA_DIR/hearth.db (SQLite) unless HEARTH_STORE_URL (or [store] url) names
/// a PostgreSQL database (postgres://user:password@host:5432/db), which any number of
/// `hearth serve` replicas share; `GET /ready` tells a load balancer when one can serve.
#[derive(Debug, Parser)]
#[command(name = "hearth", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Configuration file. Default: ./hearth.toml if present, else $DATA_DIR/hearth.toml.
    #[arg(long, global = true, env = "HEARTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where hearth keeps its model registry and data.
    #[arg(long, global = true, env = "HEARTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Compute threads per engine (default: the cores this process may use).
    #[arg(long, global = true, env = "HEARTH_THREADS")]
    pub threads: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the OpenAI-compatible API (/v1/chat/completions, /v1/completions,
    /// /v1/embeddings, /v1/models) plus /health, /metrics and /openapi.json.
    Serve(ServeArgs),
    /// Chat with a model in the terminal, streaming its answers. Ctrl-D ends.
    Chat(ChatArgs),
    /// Print embeddings of the given texts as JSON.
    Embed(EmbedArgs),
    /// Download a model from the Hugging Face Hub into the standard HF cache.
    ///
    /// Honours HF_HOME / HF_HUB_CACHE (where), HF_ENDPOINT (a mirror), HF_TOKEN (gated
    /// repos) and HF_HUB_OFFLINE=1 (never touch the network). Interrupted downloads resume;
    /// every LFS file is checked against its sha256.
    Pull(PullArgs),
    /// List local models, or import / remove one.
    Models(ModelsArgs),
    /// The recommendation engine: import your catalogue and events, train, evaluate.
    Recs {
        #[command(subcommand)]
        command: RecsCommand,
    },
    /// The customer-service agent: intent routing, knowledge base, tools, evaluation.
    ///
    /// Conversations are served by `hearth serve` (POST /v1/support/sessions, …/{id}/messages,
    /// GET …/{id}) once [support] policy (and tools, for actions) are configured; see
    /// docs/hearth.toml and examples/retail/.
    Support {
        #[command(subcommand)]
        command: SupportCommand,
    },
    /// Serve the demo company's back-office API (the retail store of shared/data/retail)
    /// on its own in-memory copy of the data: the tools of examples/retail/tools.toml.
    DemoShop(DemoShopArgs),
    /// API keys for apps and teams: the API families they may call (scopes), allowed
    /// models, requests/min, tokens/min and a spend budget per period. Stored hashed; the
    /// secret is printed once, at creation.
    ///
    /// Once a key exists, `hearth serve` requires one (or a [server] api_keys entry) on every
    /// route but /health and /openapi.json. Scopes: inference, recs:read, recs:write,
    /// support, usage, admin (docs/security.md has the table of routes).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Console accounts: the people who sign in to the web console at /console (the
    /// support team, the platform owner, viewers). Not API keys: a browser never needs one.
    ///
    /// Roles: admin (everything: keys, every page, the inbox), support (the support inbox:
    /// reply, private notes, assign, hand back, resolve; and every read-only page), viewer
    /// (read-only pages: spend, models and routes, recommendations, knowledge base).
    /// Passwords are read from the terminal without echo (twice), or as the first line of
    /// standard input when it is not a terminal; they are stored only as Argon2id hashes.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Spend, tokens and savings from the usage ledger (also GET /v1/usage).
    ///
    /// Savings are the same token counts priced at the reference model's list price, minus
    /// what was spent: upstream tokens at the price table, local work at engine-busy seconds
    /// × [gateway] machine_cost_per_hour. The report prints these assumptions with the figures.
    Usage {
        #[command(subcommand)]
        command: UsageCommand,
    },
    /// The gateway's routes: alias, privacy policy and deployments ([[gateway.routes]]).
    Routes {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Measure speed (figures for docs/benchmarks.md; see scripts/bench/).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// The store: where durable state lives (the data directory's SQLite file, or the
    /// PostgreSQL database of [store] url / HEARTH_STORE_URL).
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "HEARTH_LISTEN")]
    pub listen: Option<String>,
    /// Require this bearer API key (repeat for several). /health stays public.
    #[arg(
        long = "api-key",
        env = "HEARTH_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,
    /// Start these models with the server (others start on first request).
    #[arg(long = "model", env = "HEARTH_PRELOAD", value_delimiter = ',')]
    pub models: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Model name, as `hearth models` lists it.
    pub model: String,
    /// System prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f64,
    /// Most tokens per answer.
    #[arg(long, default_value_t = 512)]
    pub max_tokens: u32,
    /// Ask one question, print the answer and exit (instead of the interactive loop).
    #[arg(long)]
    pub prompt: Option<String>,
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Embedding model name, as `hearth models` lists it.
    pub model: String,
    /// Texts to embed.
    #[arg(required = true)]
    pub texts: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// ORG/REPO, optionally :FILE or :QUANT (e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M).
    pub spec: String,
    /// Branch, tag or commit.
    #[arg(long, default_value = "main")]
    pub revision: String,
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: Option<ModelsCommand>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List local models (the default).
    List,
    /// Register a local GGUF file or sentence-transformers directory, or (with --base) a
    /// LoRA adapter in llama.cpp's GGUF layout.
    Import {
        path: PathBuf,
        /// Name to serve it under (default: from the file name).
        #[arg(long)]
        name: Option<String>,
        /// PATH is a LoRA adapter for this model (a GGUF chat model from `hearth models`): it
        /// is checked against it (architecture, every weight's shape) and served as a model of
        /// its own on the base's engine. A running server picks it up without a restart.
        #[arg(long, value_name = "MODEL")]
        base: Option<String>,
    },
    /// Forget an imported model (its file stays).
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its secret (shown this once).
    Create {
        /// A name for the app or team (unique, never reused).
        name: String,
        /// API families it may call, comma-separated: inference (models: chat, completions,
        /// embeddings), recs:read (recommendations, search, assistant, reading items and
        /// users), recs:write (writing items, users, events), support (support sessions),
        /// usage (its own usage), admin (everything, every owner's data, /metrics).
        #[arg(long = "scope", value_delimiter = ',', default_value = "inference")]
        scopes: Vec<String>,
        /// Keys of one tenant share the support sessions they start and see each other's
        /// usage. Default: the key is its own tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Models (route aliases or local model names) it may use, comma-separated.
        /// Default: all.
        #[arg(long, value_delimiter = ',')]
        routes: Vec<String>,
        /// Most requests per minute.
        #[arg(long)]
        rpm: Option<u32>,
        /// Most tokens (prompt + completion) per minute.
        #[arg(long)]
        tpm: Option<u64>,
        /// Most USD spent per --period.
        #[arg(long)]
        budget: Option<f64>,
        /// The budget's period: day, month (UTC calendar) or total.
        #[arg(long, default_value = "month")]
        period: String,
        #[arg(long)]
        json: bool,
    },
    /// List keys (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key; servers refuse it within 2 seconds.
    Revoke { name: String },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a console account (prompts for its password).
    ///
    /// e.g. `hearth users create ana --role support`, or from a script:
    /// `printf '%s\n' "$PASSWORD" | hearth users create ana --role support`.
    Create {
        /// The name it signs in with: 1–64 letters, digits and . _ - @.
        name: String,
        /// admin, support (the support agents' role) or viewer.
        #[arg(long)]
        role: String,
        /// The password on the command line (others on this machine can read it in the
        /// process list while it runs: prefer the prompt or standard input).
        #[arg(long)]
        password: Option<String>,
    },
    /// List accounts and their roles (never passwords).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Set an account's password (prompts for it); signs it out everywhere.
    SetPassword {
        name: String,
        /// As for `create` (prefer the prompt or standard input).
        #[arg(long)]
        password: Option<String>,
    },
    /// Change an account's role; open sessions take it on their next request.
    SetRole {
        name: String,
        /// admin, support or viewer.
        role: String,
    },
    /// Delete an account and end its sessions.
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub enum UsageCommand {
    /// Spend, tokens and savings against a reference proprietary model.
    Report {
        /// From when: a duration back from now (24h, 7d), a date (2026-11-01) or unix seconds.
        /// Default: everything.
        #[arg(long)]
        since: Option<String>,
        /// Group by key, route, model or deployment.
        #[arg(long, default_value = "route")]
        by: String,
        /// The model savings are measured against (default: [gateway] reference_model).
        #[arg(long)]
        reference: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The price table: shipped list prices and [gateway.prices] overrides, per 1M tokens.
    Prices {
        #[arg(long)]
        json: bool,
    },
    /// The newest upstream calls in the audit log.
    Audit {
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy this data directory's embedded store (hearth.db: keys, budgets, ledger, audit,
    /// stored responses, recommendation data, support sessions, knowledge base) into an empty
    /// PostgreSQL database, for replicas that then run with HEARTH_STORE_URL set to it.
    ///
    /// Stop `hearth serve` first: writes made while copying are not moved. Both ends are
    /// brought to this hearth's schema, then every table is copied in one transaction, so a
    /// failed copy leaves the target empty. A target that already holds rows is refused.
    /// Published models (DATA_DIR/artifacts) are copied to --artifacts-dir (the replicas'
    /// [store] artifacts_dir) when given. The SQLite file is left as it was.
    Migrate(StoreMigrateArgs),
}

#[derive(Debug, Args)]
pub struct StoreMigrateArgs {
    /// The PostgreSQL database to fill: postgres://user:password@host:port/dbname. Set
    /// HEARTH_MIGRATE_TO instead to keep the password off the command line.
    #[arg(long, env = "HEARTH_MIGRATE_TO", hide_env_values = true)]
    pub to: String,
    /// Copy published models (DATA_DIR/artifacts) to this directory: the path every replica
    /// names as [store] artifacts_dir.
    #[arg(long)]
    pub artifacts_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration as TOML (API keys redacted).
    Show,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Single-stream prompt processing and generation speed (as llama-bench's pp and tg).
    Llm(BenchLlmArgs),
    /// Time to first token with a cached long system prompt against cold.
    Prefix(BenchPrefixArgs),
    /// Aggregate tokens/s of concurrent streaming clients against an OpenAI-compatible server.
    Serve(BenchServeArgs),
    /// Latency of GET requests at a fixed request rate (open loop: requests are sent on
    /// schedule whether or not earlier ones have answered), e.g. recommendations:
    /// --path '/v1/recommendations/{user}?n=10' --users 943.
    Http(BenchHttpArgs),
    /// Event ingestion: N clients POSTing batches of events to /v1/events back to back for a
    /// while (closed loop); events stored per second and each batch's latency. Every event
    /// has a fresh id, so each one is a new row. The events are stored for real (and count
    /// for recommendations): point it at a server whose store is for measuring.
    Events(BenchEventsArgs),
    /// What the gateway hop costs: the same chat requests at a fixed rate straight to a fast
    /// OpenAI-compatible upstream and through hearth (a route to it), interleaved rounds in
    /// one run; then the most requests/s each sustains with N concurrent clients. Without
    /// --upstream, a built-in upstream on loopback answers at once. --peer adds another
    /// proxy in front of the same upstream (e.g. LiteLLM's). With HEARTH_STORE_URL naming a
    /// PostgreSQL database, a second hearth on it (keys read and usage metered there, as a
    /// replica does) runs beside the embedded one, both with a key.
    Gateway(BenchGatewayArgs),
    /// Serve the fast upstream of `bench gateway` on its own (a fixed chat completion,
    /// answered at once), to put other proxies in front of it.
    Upstream {
        /// Address to listen on (port 0 picks a free one; the address is printed).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// HNSW recall@k and query time against exact search on synthetic vectors: i.i.d.
    /// Gaussian (the hardest case for a graph index: nothing to exploit) or clustered like a
    /// catalogue (--clusters).
    Index(BenchIndexArgs),
    /// The console's spend view on a large ledger: fills a data directory with N synthetic
    /// requests spread over --days (through the ledger's own writer, daily rollups included),
    /// then times the view from the rollups beside the same figures computed from every
    /// request row, for several windows and groupings. Keep the directory (--data-dir) to
    /// serve it and time the page (scripts/bench/console.sh).
    Spend(BenchSpendArgs),
}

#[derive(Debug, Args)]
pub struct BenchSpendArgs {
    /// Synthetic requests in the ledger.
    #[arg(long, default_value_t = 10_000_000)]
    pub rows: u64,
    /// Days back from now they are spread over (evenly, at random).
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Where to build the ledger (a fresh, empty directory; kept). Default: a temporary one,
    /// removed at the end.
    #[arg(long)]
    pub into: Option<PathBuf>,
    /// Timed repetitions of each rollup query (the row scans run a third as many, at least 3).
    #[arg(long, default_value_t = 30)]
    pub repeat: usize,
    /// Skip filling (the directory of --into already holds a ledger).
    #[arg(long)]
    pub no_fill: bool,
}

#[derive(Debug, Args)]
pub struct BenchIndexArgs {
    /// Vectors in the collection.
    #[arg(long, default_value_t = 1_000_000)]
    pub n: usize,
    #[arg(long, default_value_t = 64)]
    pub dim: usize,
    /// Query vectors (drawn like the collection, not from it).
    #[arg(long, default_value_t = 1000)]
    pub queries: usize,
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Links per node (hnswlib's M).
    #[arg(long, default_value_t = 16)]
    pub m: usize,
    #[arg(long, default_value_t = 200)]
    pub ef_construction: usize,
    /// Search breadths to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "32,64,96,128,256")]
    pub ef: Vec<usize>,
    /// Draw vectors around this many Gaussian centres (noise 0.5 per dimension around
    /// unit-variance centres) instead of i.i.d.; 0 = i.i.d.
    #[arg(long, default_value_t = 0)]
    pub clusters: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct BenchGatewayArgs {
    /// Requests per second of the fixed-rate rounds.
    #[arg(long, default_value_t = 1000)]
    pub rps: u32,
    /// Seconds per round.
    #[arg(long, default_value_t = 5)]
    pub seconds: u32,
    /// Rounds per path (interleaved: direct, hearth, peer, direct, …).
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Concurrent clients of the throughput rounds (0: skip them).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// An upstream base URL (with /v1) instead of the built-in one.
    #[arg(long)]
    pub upstream: Option<String>,
    /// Model name to send the upstream.
    #[arg(long, default_value = "fast")]
    pub upstream_model: String,
    /// Another proxy in front of the same upstream, base URL with /v1.
    #[arg(long)]
    pub peer: Option<String>,
    /// Model name to send the peer.
    #[arg(long, default_value = "fast")]
    pub peer_model: String,
    /// Privacy of hearth's route: allow, or redact (scans every message for personal data).
    #[arg(long, default_value = "allow")]
    pub privacy: String,
    /// Also send hearth's requests with a key that has a budget, so each takes the exact
    /// budget decision (reserve, then settle): on the embedded store, and, when
    /// HEARTH_STORE_URL names a PostgreSQL database, on it (a second hearth, in the database).
    #[arg(long)]
    pub budgets: bool,
}

#[derive(Debug, Args)]
pub struct BenchHttpArgs {
    /// Base URL of the server (without /v1).
    #[arg(long)]
    pub url: String,
    /// Request path; `{user}` is replaced by a user id drawn from 1..=--users.
    #[arg(long, default_value = "/v1/recommendations/{user}?n=10")]
    pub path: String,
    #[arg(long, default_value_t = 943)]
    pub users: u32,
    /// Requests per second.
    #[arg(long, default_value_t = 500)]
    pub rps: u32,
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
}

#[derive(Debug, Args)]
pub struct BenchEventsArgs {
    /// Base URL of the server (without /v1).
    #[arg(long)]
    pub url: String,
    /// A key with the recs:write scope, when the server requires keys.
    #[arg(long, env = "HEARTH_BENCH_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Events per request.
    #[arg(long, default_value_t = 100)]
    pub batch: u32,
    /// Clients sending at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: u32,
    /// How long the clients send, in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
    /// Users the events are spread over (ids 1..=N, as MovieLens numbers them).
    #[arg(long, default_value_t = 943)]
    pub users: u32,
    /// Items the events are spread over (ids 1..=N).
    #[arg(long, default_value_t = 1682)]
    pub items: u32,
}

#[derive(Debug, Args)]
pub struct BenchLlmArgs {
    /// GGUF file.
    pub model: PathBuf,
    #[arg(long, default_value_t = 512)]
    pub prompt_tokens: usize,
    #[arg(long, default_value_t = 128)]
    pub gen_tokens: usize,
    #[arg(long, default_value_t = 3)]
    pub repetitions: usize,
    /// Sequence slots of the engine (as `[llm] max_sequences`).
    #[arg(long, default_value_t = 8)]
    pub max_sequences: usize,
    /// Tokens per decode call (as `[llm] batch_size`).
    #[arg(long, default_value_t = 512)]
    pub batch_size: u32,
}

#[derive(Debug, Args)]
pub struct BenchPrefixArgs {
    /// GGUF file.
    pub model: PathBuf,
    #[arg(long, default_value_t = 500)]
    pub system_tokens: usize,
    /// Use this file (e.g. a support policy) as the system prompt instead of generated prose
    /// (--system-tokens is then its length).
    #[arg(long)]
    pub system_file: Option<PathBuf>,
    #[arg(long, default_value_t = 5)]
    pub repetitions: usize,
}

#[derive(Debug, Args)]
pub struct BenchServeArgs {
    /// Base URL of the server (without /v1).
    #[arg(long)]
    pub url: String,
    /// Model name the server knows.
    #[arg(long)]
    pub model: String,
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    #[arg(long, default_value_t = 128)]
    pub max_tokens: u32,
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    #[arg(long, env = "HEARTH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RecsCommand {
    /// Train every model on part of each user's interactions and measure how well it ranks
    /// the held-out rest (full ranking over unseen items).
    ///
    /// DIR holds events.{jsonl,csv,tsv} (or ratings.*, interactions.*, RecBole's *.inter) and
    /// optionally items.* / users.* (*.item, *.user). Columns are recognised by common names
    /// (user_id, item_id, movieId, rating, timestamp, title, genres, price …; RecBole's
    /// `name:type` headers too); map others with --map. Every event counts as implicit
    /// feedback, weighed by type (view/click/rating 1, save 2, cart 3, purchase 4).
    ///
    /// Reports Precision, Recall, NDCG, hit rate and MAP at K, catalogue coverage and training
    /// time per model, against two baselines: popularity and the off-the-shelf embedding model
    /// used zero-shot.
    Eval(RecsEvalArgs),
    /// Load items, users and events from files into hearth's database.
    ///
    /// JSONL, CSV or TSV, columns recognised as for `recs eval` (or mapped with --map). Rows
    /// are committed in batches; a committed batch is durable, so an interrupted import keeps
    /// everything it reported and can simply be run again (events are stored once per id;
    /// items and users are replaced). A bad row is reported with its file and line and
    /// skipped; --strict rejects the whole file instead.
    Import(RecsImportArgs),
    /// Train on the imported events and publish the model for `hearth serve`.
    ///
    /// Each collaborative model's grid is searched on a validation split of all events; the
    /// best (by NDCG@10) is retrained on everything and published as a new version under
    /// $DATA_DIR/artifacts/recs. A running server switches to it within seconds; the previous
    /// version keeps answering until the new one has loaded.
    Train(RecsTrainArgs),
    /// Recommend items for a user from the published model (as `GET
    /// /v1/recommendations/{user_id}` answers): items they have not chosen yet, ranked; a user
    /// with no history gets popular items.
    Recommend(RecsRecommendArgs),
    /// Items like an item (as `GET /v1/items/{id}/similar` answers).
    Similar(RecsSimilarArgs),
    /// Search the catalogue with a text query (as `POST /v1/search` answers): words and, when
    /// the model was trained with an embedding model, meaning; then the rerank stage when
    /// `[recs] rerank_model` (or --rerank) names one.
    Search(RecsSearchArgs),
    /// Measure catalogue search on labelled queries: hit@1, recall@k and MRR@k of the items
    /// that answer them.
    ///
    /// LABELS is JSONL, one `{"query": "…", "items": ["ITEM_ID", …]}` per line (optionally
    /// `"user"`: search as that user): a result answers when its id is listed. Run it with and
    /// without --rerank to see what a second stage buys before setting `[recs]
    /// rerank_model`.
    SearchEval(RecsSearchEvalArgs),
}

#[derive(Debug, Args)]
pub struct RecsSearchEvalArgs {
    /// Labelled queries (JSONL, see above).
    pub labels: PathBuf,
    /// Results per query.
    #[arg(short = 'k', long, default_value_t = 10)]
    pub k: usize,
    #[command(flatten)]
    pub rerank: RerankArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How many items and which ones, for `recs recommend`, `similar` and `search`.
#[derive(Debug, Args)]
pub struct RecsListArgs {
    /// Items to list (1 to 500).
    #[arg(short = 'n', long, default_value_t = 10)]
    pub n: usize,
    /// Only items in this category (case-insensitive).
    #[arg(long)]
    pub category: Option<String>,
    #[arg(long)]
    pub min_price: Option<f64>,
    #[arg(long)]
    pub max_price: Option<f64>,
    /// Only items marked available.
    #[arg(long)]
    pub in_stock: bool,
    /// Print the answer as JSON (the HTTP API's body).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RecsRecommendArgs {
    /// The user's id, as in the imported events.
    pub user: String,
    #[command(flatten)]
    pub list: RecsListArgs,
}

#[derive(Debug, Args)]
pub struct RecsSimilarArgs {
    /// The item's id.
    pub item: String,
    #[command(flatten)]
    pub list: RecsListArgs,
}

#[derive(Debug, Args)]
pub struct RecsSearchArgs {
    /// What to look for, in words.
    pub query: String,
    /// Personalise: this user's history reorders the matches.
    #[arg(long)]
    pub user: Option<String>,
    #[command(flatten)]
    pub list: RecsListArgs,
    #[command(flatten)]
    pub rerank: RerankArgs,
}

#[derive(Debug, Args)]
pub struct RecsTrainArgs {
    /// Models competing for the main slot (comma-separated): als, ease, item-knn.
    #[arg(long, value_delimiter = ',', default_value = "als,ease,item-knn")]
    pub models: Vec<hearth_core::recs::models::ModelKind>,
    /// Embedding model for text neighbours of items nobody has chosen yet (a name from
    /// `hearth models`). Default: [recs] embedding_model; none: no text neighbours.
    #[arg(long, env = "HEARTH_RECS_EMBEDDING_MODEL")]
    pub embedding_model: Option<String>,
    /// Print the training report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RecsImportArgs {
    /// Items file (id, title, description, categories, tags, price, available …).
    #[arg(long)]
    pub items: Option<PathBuf>,
    /// Users file (id and any attributes).
    #[arg(long)]
    pub users: Option<PathBuf>,
    /// Events file (id, user, item, type, value, timestamp). An event without an id gets one
    /// from its content, so importing the same file again stores nothing twice.
    #[arg(long)]
    pub events: Option<PathBuf>,
    /// Column mapping, FIELD=COLUMN or KIND.FIELD=COLUMN. Repeatable.
    #[arg(long = "map")]
    pub map: Vec<String>,
    /// Reject a file that has any bad row (nothing from it is stored).
    #[arg(long)]
    pub strict: bool,
    /// Also write every skipped row to this file, one JSON object per line
    /// ({"file", "line", "message"}). Skipped rows always go to stderr as well.
    #[arg(long, value_name = "FILE")]
    pub errors: Option<PathBuf>,
    /// Rows per committed batch.
    #[arg(long, default_value_t = 5000)]
    pub batch_size: usize,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RecsEvalArgs {
    /// Directory with the events (and items, users) files. Default: the data imported into
    /// hearth's database with `hearth recs import`.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// random: a random 20 % of each user's interactions is held out; temporal: each user's
    /// most recent 20 %.
    #[arg(long, default_value = "random")]
    pub protocol: hearth_core::recs::eval::Protocol,
    /// Length of the ranked lists.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Seed of the split and of model initialisation.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Models to evaluate (comma-separated): popularity, item-knn, als, ease, content,
    /// off-the-shelf. Default: all.
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<hearth_core::recs::models::ModelKind>,
    /// Train each model with its default parameters instead of searching a grid on a
    /// validation split.
    #[arg(long)]
    pub no_search: bool,
    /// Evaluate exactly these parameters (JSON, repeatable) instead of --models, e.g.
    /// '{"model":"als","factors":128,"regularization":50,"alpha":8,"iterations":15,
    /// "cg_steps":3,"seed":42}' or '{"model":"ease","lambda":500}'. `--json` output shows
    /// every model's parameters in this form.
    #[arg(long = "params", conflicts_with_all = ["models", "no_search"])]
    pub params: Vec<String>,
    /// Embedding model for the content model and the off-the-shelf baseline (a name from
    /// `hearth models`). Default: [recs] embedding_model.
    #[arg(long, env = "HEARTH_RECS_EMBEDDING_MODEL")]
    pub embedding_model: Option<String>,
    /// Column mapping, FIELD=COLUMN or KIND.FIELD=COLUMN (kind: items, users, events), e.g.
    /// --map events.user=customer. Repeatable.
    #[arg(long = "map")]
    pub map: Vec<String>,
    /// Reject a file at its first bad row (default: report the row and skip it).
    #[arg(long)]
    pub strict: bool,
    /// Print the report as JSON instead of a Markdown table.
    #[arg(long)]
    pub json: bool,
    /// Write the split to this directory (train.tsv, test.tsv) to measure other tools on the
    /// same interactions.
    #[arg(long)]
    pub save_split: Option<PathBuf>,
    /// Also write an SVG bar chart of NDCG@K per model to this file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SupportCommand {
    /// The knowledge base the agent answers from: your Markdown, HTML and text documents.
    Kb {
        #[command(subcommand)]
        command: KbCommand,
    },
    /// Intent routing learned from your own labelled messages.
    Intents {
        #[command(subcommand)]
        command: IntentsCommand,
    },
    /// Run each task's conversation against an agent on a fresh copy of the company's test
    /// system and score it: the final state must equal the gold actions' (replayed on
    /// another fresh copy) and every required output must appear in the replies. Reports
    /// pass^1, pass^k, tool-call validity, turns and tokens per task.
    ///
    /// When domain.toml says `backend = "demo-shop"`, the harness serves the domain's data
    /// with the built-in demo shop on a free loopback port and sets SHOP_URL; otherwise the
    /// variables in its URLs come from the environment.
    Eval(SupportEvalArgs),
}

#[derive(Debug, Args)]
pub struct DemoShopArgs {
    /// Directory with users.json, orders.json and products.json.
    #[arg(long)]
    pub data: PathBuf,
    /// Address to listen on (port 0 picks a free one, printed at start).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: String,
}

#[derive(Debug, Args)]
pub struct SupportEvalArgs {
    /// Domain directory: domain.toml naming the data, the policy, the tool config and the
    /// sandbox calls (reset, state) of the company's test system.
    #[arg(long)]
    pub domain: PathBuf,
    /// Tasks (JSON list of {user_id, instruction, actions, outputs}).
    #[arg(long)]
    pub tasks: PathBuf,
    /// Runs per task: pass^k counts a task only if all k runs pass.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Who plays the agent: model (hearth's agent on --model, talking with a customer
    /// played by --customer-model), oracle (replays the gold actions; must score 100 %) or
    /// idle (does nothing; the floor).
    #[arg(long, value_enum, default_value = "model")]
    pub agent: EvalAgent,
    /// The agent's chat model (a name from `hearth models`). Default: the first chat model
    /// registered.
    #[arg(long)]
    pub model: Option<String>,
    /// The simulated customer's chat model. Default: the agent's.
    #[arg(long)]
    pub customer_model: Option<String>,
    /// Most customer messages per conversation.
    #[arg(long, default_value_t = 10)]
    pub max_turns: usize,
    /// Most tool calls per customer message before the agent hands over.
    #[arg(long, default_value_t = 6)]
    pub max_tool_rounds: usize,
    /// Only the first N tasks.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Data directory instead of the one domain.toml names.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Print the report as JSON: every run, with its transcript (what the customer said, the
    /// agent's tool calls and their results, its replies), to see why a task failed.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum EvalAgent {
    Model,
    Oracle,
    Idle,
}

#[derive(Debug, Subcommand)]
pub enum KbCommand {
    /// Add documents (files, or directories recursively: .md, .markdown, .html, .htm, .txt).
    ///
    /// Each is split into passages under its headings, embedded with the support embedding
    /// model and indexed for hybrid search (BM25 + vectors). Re-adding a changed file
    /// replaces its passages; unchanged files are skipped.
    Add {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Embedding model (default: [support] embedding_model, else the first registered).
        #[arg(long)]
        embedding_model: Option<String>,
    },
    /// List the documents with their passage counts.
    List,
    /// Drop documents (as `list` shows them), or with --missing every document no longer on
    /// disk.
    Remove {
        paths: Vec<String>,
        #[arg(long)]
        missing: bool,
    },
    /// Search the knowledge base as the agent does: the best passages with their ids.
    Search {
        query: String,
        #[arg(long, default_value_t = 5)]
        k: usize,
        #[command(flatten)]
        rerank: RerankArgs,
    },
    /// Measure search on labelled queries: hit@1, recall@k and MRR@k of the passages that
    /// answer them.
    ///
    /// LABELS is JSONL, one `{"query": "…", "titles": ["Section › Subsection", …]}` per line: a
    /// passage answers when its title (as `search` prints it) is listed. Run it with and
    /// without --rerank to see what the second stage buys.
    Eval {
        labels: PathBuf,
        #[arg(long, default_value_t = 5)]
        k: usize,
        #[command(flatten)]
        rerank: RerankArgs,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A search's second stage, overriding the config's `rerank_model` (`[support]` for the
/// knowledge base, `[recs]` for the catalogue).
#[derive(Debug, clap::Args)]
pub struct RerankArgs {
    /// Rerank the hybrid ranking's best results with this model (a cross-encoder, a chat
    /// model judging yes/no, or an embedding model).
    #[arg(long, conflicts_with = "no_rerank")]
    pub rerank: Option<String>,
    /// Results the reranker reads (default: the config's rerank_depth, 20).
    #[arg(long)]
    pub rerank_depth: Option<usize>,
    /// Fuse the reranker's order with the hybrid ranking's (reciprocal rank) instead of
    /// replacing it (default: the config's rerank_fuse).
    #[arg(long)]
    pub rerank_fuse: bool,
    /// The hybrid ranking alone, even when the config sets rerank_model.
    #[arg(long)]
    pub no_rerank: bool,
}

impl RerankArgs {
    /// The stage these flags ask for, over `configured` (the config's stage, or one for the
    /// model named by --rerank): theirs, none, or the config's.
    pub fn apply(
        &self,
        configured: Option<hearth_gateway::rerank::RerankStage>,
    ) -> Option<hearth_gateway::rerank::RerankStage> {
        if self.no_rerank {
            return None;
        }
        let mut stage = configured?;
        if let Some(depth) = self.rerank_depth {
            stage.depth = depth.max(1);
        }
        stage.fuse |= self.rerank_fuse;
        Some(stage)
    }
}

#[derive(Debug, Subcommand)]
pub enum IntentsCommand {
    /// Learn the intents in a labelled CSV and publish the model (under
    /// $DATA_DIR/artifacts/support/intents) for routing conversations.
    ///
    /// The CSV's header names a text column (text, message, utterance or query) and a label
    /// column (intent, label, category or class); every intent needs at least two examples.
    /// Features: TF-IDF of words and character n-grams plus the embedding model's sentence
    /// vector; one linear SVM per intent. Messages scoring below a threshold calibrated on
    /// held-out examples are out of scope and handed to a human.
    Train(IntentsTrainArgs),
    /// Score the published model on a labelled test CSV: accuracy and macro-F1 against the
    /// off-the-shelf zero-shot baseline (embedding similarity to the intent names).
    Eval(IntentsEvalArgs),
    /// Route messages with the published model: intent, score, in scope or not.
    Classify(IntentsClassifyArgs),
}

#[derive(Debug, Args)]
pub struct IntentsTrainArgs {
    /// Labelled messages (CSV with a header).
    #[arg(long)]
    pub data: PathBuf,
    /// Embedding model (a name from `hearth models`). Default: [support] embedding_model,
    /// else the first embedding model registered.
    #[arg(long)]
    pub embedding_model: Option<String>,
    /// Inverse regularisation strength of the SVMs (higher fits the training data closer).
    #[arg(long, default_value_t = 0.5)]
    pub c: f32,
    /// Share of in-scope held-out messages the out-of-scope threshold may reject.
    #[arg(long, default_value_t = 0.02)]
    pub handover_rate: f32,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct IntentsEvalArgs {
    /// Labelled test messages (CSV, same columns as for training).
    #[arg(long)]
    pub data: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct IntentsClassifyArgs {
    /// Messages to route.
    #[arg(required = true)]
    pub texts: Vec<String>,
}
