//! Prometheus metrics of the gateway, per route and deployment. hearth-server registers them
//! next to its own at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeploymentLabels {
    pub route: String,
    pub deployment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub route: String,
    pub deployment: String,
    /// `ok`, `error` or `cancelled`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub route: String,
    pub deployment: String,
    /// `input` or `output`.
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyLabels {
    pub key: String,
}

/// Every gateway metric; cheap to clone (families share their data).
#[derive(Clone, Debug)]
pub struct GatewayMetrics {
    pub requests: Family<OutcomeLabels, Counter>,
    /// Failed attempts on a deployment (each retry counts).
    pub errors: Family<DeploymentLabels, Counter>,
    /// Requests a deployment handed on to the next one.
    pub fallbacks: Family<DeploymentLabels, Counter>,
    pub tokens: Family<TokenLabels, Counter>,
    pub cost: Family<DeploymentLabels, Counter<f64, AtomicU64>>,
    pub latency: Family<DeploymentLabels, Histogram>,
    pub time_to_first_token: Family<DeploymentLabels, Histogram>,
    pub budget_left: Family<KeyLabels, Gauge<f64, AtomicU64>>,
    /// Answers whose reported usage cost more than the request's bound.
    pub overreported: Family<DeploymentLabels, Counter>,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        let seconds = || Histogram::new(exponential_buckets(0.0005, 2.0, 18));
        GatewayMetrics {
            requests: Family::default(),
            errors: Family::default(),
            fallbacks: Family::default(),
            tokens: Family::default(),
            cost: Family::default(),
            latency: Family::new_with_constructor(seconds),
            time_to_first_token: Family::new_with_constructor(seconds),
            budget_left: Family::default(),
            overreported: Family::default(),
        }
    }
}

impl GatewayMetrics {
    /// Adds the metrics to `registry` (under its prefix, e.g. `hearth_gateway_...`).
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("gateway");
        sub.register(
            "requests",
            "Requests by route, serving deployment and outcome",
            self.requests.clone(),
        );
        sub.register(
            "overreported",
            "Answers whose reported usage cost more than the request's bound (the budget was charged the bound)",
            self.overreported.clone(),
        );
        sub.register(
            "deployment_errors",
            "Failed attempts per deployment",
            self.errors.clone(),
        );
        sub.register(
            "fallbacks",
            "Requests a failing deployment handed to the next",
            self.fallbacks.clone(),
        );
        sub.register("tokens", "Tokens by direction", self.tokens.clone());
        sub.register("cost_usd", "Spend in USD", self.cost.clone());
        sub.register(
            "request_duration_seconds",
            "From dispatch to the last token",
            self.latency.clone(),
        );
        sub.register(
            "time_to_first_token_seconds",
            "From dispatch to the first token",
            self.time_to_first_token.clone(),
        );
        sub.register(
            "budget_left_usd",
            "What a key may still spend this period",
            self.budget_left.clone(),
        );
    }

    pub fn set_budget_left(&self, key: &str, left: f64) {
        self.budget_left
            .get_or_create(&KeyLabels {
                key: key.to_owned(),
            })
            .set(left);
    }
}
