//! Prometheus metrics at `/metrics`.

use std::sync::Mutex;

use hearth_gateway::LoadedModel;
use hearth_infer::llm::GenerationSummary;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    pub requests: Family<RouteLabels, Counter>,
    pub prompt_tokens: Family<ModelLabels, Counter>,
    pub completion_tokens: Family<ModelLabels, Counter>,
    pub cached_prompt_tokens: Family<ModelLabels, Counter>,
    pub time_to_first_token: Family<ModelLabels, Histogram>,
    pub decode_tokens_per_second: Family<ModelLabels, Histogram>,
    pub queue_depth: Family<ModelLabels, Gauge>,
    pub active_sequences: Family<ModelLabels, Gauge>,
}

impl Metrics {
    /// The server's metrics with the gateway's beside them.
    pub fn new(gateway: &hearth_gateway::metrics::GatewayMetrics) -> Self {
        let mut registry = Registry::with_prefix("hearth");
        gateway.register(&mut registry);
        let requests = Family::<RouteLabels, Counter>::default();
        let prompt_tokens = Family::<ModelLabels, Counter>::default();
        let completion_tokens = Family::<ModelLabels, Counter>::default();
        let cached_prompt_tokens = Family::<ModelLabels, Counter>::default();
        let time_to_first_token = Family::<ModelLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        let decode_tokens_per_second =
            Family::<ModelLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(1.0, 2.0, 12))
            });
        let queue_depth = Family::<ModelLabels, Gauge>::default();
        let active_sequences = Family::<ModelLabels, Gauge>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "prompt_tokens",
            "Prompt tokens processed",
            prompt_tokens.clone(),
        );
        registry.register(
            "completion_tokens",
            "Tokens generated",
            completion_tokens.clone(),
        );
        registry.register(
            "cached_prompt_tokens",
            "Prompt tokens reused from the KV cache instead of computed",
            cached_prompt_tokens.clone(),
        );
        registry.register(
            "time_to_first_token_seconds",
            "From request to first generated token",
            time_to_first_token.clone(),
        );
        registry.register(
            "decode_tokens_per_second",
            "Generation speed per request after the first token",
            decode_tokens_per_second.clone(),
        );
        registry.register(
            "queue_depth",
            "Requests waiting for a sequence",
            queue_depth.clone(),
        );
        registry.register(
            "active_sequences",
            "Sequences being decoded",
            active_sequences.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            requests,
            prompt_tokens,
            completion_tokens,
            cached_prompt_tokens,
            time_to_first_token,
            decode_tokens_per_second,
            queue_depth,
            active_sequences,
        }
    }

    pub fn record_generation(&self, model: &str, summary: &GenerationSummary) {
        let labels = ModelLabels {
            model: model.to_owned(),
        };
        self.prompt_tokens
            .get_or_create(&labels)
            .inc_by(summary.prompt_tokens as u64);
        self.completion_tokens
            .get_or_create(&labels)
            .inc_by(summary.completion_tokens as u64);
        self.cached_prompt_tokens
            .get_or_create(&labels)
            .inc_by(summary.cached_prompt_tokens as u64);
        if summary.completion_tokens > 0 {
            self.time_to_first_token
                .get_or_create(&labels)
                .observe(summary.time_to_first_token.as_secs_f64());
            let decode = summary.total.saturating_sub(summary.time_to_first_token);
            if summary.completion_tokens > 1 && !decode.is_zero() {
                self.decode_tokens_per_second
                    .get_or_create(&labels)
                    .observe((summary.completion_tokens - 1) as f64 / decode.as_secs_f64());
            }
        }
    }

    /// Renders the Prometheus text format, sampling the engines' gauges now.
    pub fn render(&self, loaded: &[LoadedModel]) -> String {
        for model in loaded {
            if let LoadedModel::Chat { info, engine } = model {
                let labels = ModelLabels {
                    model: info.name.clone(),
                };
                let gauges = engine.gauges();
                self.queue_depth
                    .get_or_create(&labels)
                    .set(gauges.queued_requests.load(Ordering::Relaxed) as i64);
                self.active_sequences
                    .get_or_create(&labels)
                    .set(gauges.active_sequences.load(Ordering::Relaxed) as i64);
            }
        }
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics lock");
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("encoding to a String");
        out
    }
}
