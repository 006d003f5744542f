//! `[gateway]` in hearth.toml: upstream providers, routes with their privacy policy, prices and
//! the machine's cost. Checked as a whole when the gateway starts ([`crate::Routing::new`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::prices::Price;

/// `[gateway]`: where requests go and what they cost.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// OpenAI-compatible endpoints (`[[gateway.providers]]`). `local` is built in: this
    /// machine's engines.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderConfig>,
    /// Model aliases clients ask for, each served by one or more deployments
    /// (`[[gateway.routes]]`). A model name no route claims goes to the local model of that
    /// name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteConfig>,
    /// What this machine costs per hour, in USD: local requests cost their engine-busy seconds
    /// at this rate. 0 leaves local work unpriced (the usage report says so).
    pub machine_cost_per_hour: f64,
    /// The proprietary model savings are measured against (a name from the price table).
    pub reference_model: String,
    /// Prices per 1M tokens added to (or replacing entries of) the shipped table, e.g.
    /// `[gateway.prices."my-vendor-model"] input = 1.0, output = 4.0`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub prices: BTreeMap<String, Price>,
    /// Attempts per deployment before failing over to the next (1 = no retry).
    pub attempts: u32,
    /// Pause before the first retry, in milliseconds; doubled for each further retry.
    pub retry_backoff_ms: u64,
    /// Consecutive failures that take a deployment out of rotation.
    pub failures_before_cooldown: u32,
    /// How long a failing deployment stays out, in seconds.
    pub cooldown_seconds: u64,
    /// The completion limit of a request that sets no max_tokens: reserved against the key's
    /// budget, and sent upstream as `max_tokens` so the bill cannot pass the reservation.
    pub max_tokens_estimate: u32,
    /// Keep the raw request and answer text in the upstream audit log (off: only counts).
    pub audit_raw_text: bool,
    /// Requests one API key may have in flight at once, so that one client cannot hold the
    /// engines; more get 429 with Retry-After. None: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_per_key: Option<u32>,
    /// `tool_choice: "auto"` on a local model: from the moment the answer starts a call (its
    /// family's opener, or a JSON object naming a tool), the call is held to its tool's
    /// schema. Off: the call is only read back and checked, and an invalid one is text.
    pub constrain_auto_tool_calls: bool,
    /// How long a stored response (`/v1/responses` with `store`, the default) is kept, in
    /// hours: it can be read back and continued until then, and is deleted after.
    pub responses_ttl_hours: f64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            providers: Vec::new(),
            routes: Vec::new(),
            machine_cost_per_hour: 0.0,
            reference_model: "gpt-4o".into(),
            prices: BTreeMap::new(),
            attempts: 2,
            retry_backoff_ms: 100,
            failures_before_cooldown: 3,
            cooldown_seconds: 30,
            max_tokens_estimate: 1024,
            audit_raw_text: false,
            max_concurrent_per_key: None,
            constrain_auto_tool_calls: true,
            responses_ttl_hours: 720.0,
        }
    }
}

/// `[[gateway.providers]]`: one OpenAI-compatible endpoint (vLLM, TGI, Ollama, llama-server,
/// another hearth, a proprietary API).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// How routes name it (`local` is reserved for this machine).
    pub name: String,
    /// Base URL up to and including `/v1`, e.g. `http://10.0.0.5:8000/v1`.
    pub base_url: String,
    /// Environment variable holding the bearer key, if the endpoint wants one. Checked at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Seconds to wait for the response to start, and between two streamed chunks.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    /// Whether the request fields vLLM and llama-server accept beyond OpenAI's (`top_k`,
    /// `min_p`, `ignore_eos`, `chat_template_kwargs`) are forwarded. Unset: yes, except to
    /// `api.openai.com`, which refuses unknown fields (400), so they are left out there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<bool>,
}

fn default_timeout() -> f64 {
    60.0
}

/// `[[gateway.routes]]`: a model alias and the deployments that serve it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The model name clients send.
    pub alias: String,
    /// Tried in order (`failover`) or in turn (`balance`); a failing one is skipped.
    pub deployments: Vec<DeploymentConfig>,
    /// `local_only`: never leaves this machine (refused at start if a deployment is upstream);
    /// `redact`: personal data replaced by placeholders before it leaves, restored in the
    /// answer; `allow`: sent as it is.
    #[serde(default)]
    pub privacy: Privacy,
    /// Kinds of personal data (email, phone, card, iban, ip, name, address) a request to this
    /// route may not carry at all: such a request is refused with 400 `pii_refused`, naming
    /// the field, and nothing is sent or charged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refuse: Vec<crate::privacy::PiiKind>,
    #[serde(default)]
    pub strategy: Strategy,
}

/// One way to serve a route: a provider and the model name it knows.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// `local` or a `[[gateway.providers]]` name.
    pub provider: String,
    /// The model's name at that provider (for `local`: a name from `hearth models`).
    pub model: String,
    /// Price-table entry that prices this deployment's tokens. Default: the model's own name
    /// if the table has it; otherwise upstream tokens are unpriced (the report says so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Privacy {
    LocalOnly,
    #[default]
    Redact,
    Allow,
}

impl Privacy {
    pub fn as_str(self) -> &'static str {
        match self {
            Privacy::LocalOnly => "local_only",
            Privacy::Redact => "redact",
            Privacy::Allow => "allow",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The first healthy deployment in the listed order.
    #[default]
    Failover,
    /// Healthy deployments in turn (round robin).
    Balance,
}
