//! Routes: a model alias served by one or more deployments (this machine's engines or an
//! upstream endpoint), load-balanced or in failover order, retried with backoff, a failing
//! deployment taken out for a cool-down. The privacy policy of the route decides what may
//! leave: `local_only` routes are refused at start if any deployment is upstream, `redact`
//! routes send placeholders instead of personal data.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_types::ChatCompletionRequest;
use tokio::sync::mpsc;

use crate::chat::CheckedChat;
use crate::config::{GatewayConfig, Privacy, Strategy};
use crate::keys::{KeyInfo, Reservation};
use crate::ledger::{AuditRecord, UsageRecord};
use crate::meter::Meter;
use crate::prices::{Price, PriceTable};
use crate::privacy::{KnownPii, Redactor};
use crate::upstream::{
    relay_stream, relay_whole, Answer, CompletionAnswer, Failure, Restoring, Upstream,
};
use crate::{unix_now, ChatStream, Gateway, GatewayError};

/// Who is asking: the API key of an HTTP request; none for the apps' own calls.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub key: Option<Arc<KeyInfo>>,
}

#[derive(Debug)]
pub(crate) enum Target {
    Local,
    Upstream(Arc<Upstream>),
}

#[derive(Debug, Default)]
struct Health {
    failures: u32,
    out_until: Option<Instant>,
}

#[derive(Debug)]
pub(crate) struct Deployment {
    /// `provider/model`.
    pub label: String,
    pub target: Target,
    pub model: String,
    pub price: Option<Price>,
    health: Mutex<Health>,
}

impl Deployment {
    fn cooling(&self, now: Instant) -> bool {
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        health.out_until.is_some_and(|until| until > now)
    }

    fn succeeded(&self) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        health.failures = 0;
        health.out_until = None;
    }

    fn failed(&self, settings: &GatewayConfig) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        health.failures += 1;
        if health.failures >= settings.failures_before_cooldown.max(1) {
            health.failures = 0;
            health.out_until =
                Some(Instant::now() + Duration::from_secs(settings.cooldown_seconds));
            tracing::warn!(
                deployment = %self.label,
                seconds = settings.cooldown_seconds,
                "deployment failing: out of rotation for a cool-down"
            );
        }
    }

    fn is_local(&self) -> bool {
        matches!(self.target, Target::Local)
    }

    /// Failures since the last success, and how long it is still out of rotation.
    pub(crate) fn health(&self) -> (u32, Option<Duration>) {
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let left = health
            .out_until
            .and_then(|until| until.checked_duration_since(Instant::now()));
        (health.failures, left)
    }

    pub(crate) fn local(&self) -> bool {
        self.is_local()
    }
}

#[derive(Debug)]
pub(crate) struct Route {
    pub alias: String,
    pub privacy: Privacy,
    /// Kinds of personal data a request to this route may not carry at all.
    pub refuse: Vec<crate::privacy::PiiKind>,
    pub(crate) strategy: Strategy,
    pub deployments: Vec<Deployment>,
    turn: AtomicUsize,
    /// A local model asked for by its own name (no route declared).
    pub(crate) implicit: bool,
}

impl Route {
    /// Deployment indices in the order to try: healthy ones first (in turn when balancing),
    /// then the cooling ones, which may have recovered.
    fn candidates(&self) -> Vec<usize> {
        let n = self.deployments.len();
        let start = match self.strategy {
            Strategy::Failover => 0,
            Strategy::Balance => self.turn.fetch_add(1, Ordering::Relaxed) % n,
        };
        let now = Instant::now();
        let (healthy, cooling): (Vec<usize>, Vec<usize>) = (0..n)
            .map(|i| (start + i) % n)
            .partition(|&i| !self.deployments[i].cooling(now));
        healthy.into_iter().chain(cooling).collect()
    }

    fn implicit_local(model: &str) -> Route {
        Route {
            alias: model.to_owned(),
            privacy: Privacy::LocalOnly,
            refuse: Vec::new(),
            strategy: Strategy::Failover,
            deployments: vec![Deployment {
                label: format!("local/{model}"),
                target: Target::Local,
                model: model.to_owned(),
                price: None,
                health: Mutex::default(),
            }],
            turn: AtomicUsize::new(0),
            implicit: true,
        }
    }
}

/// The routes of a gateway, checked as a whole.
#[derive(Debug, Default)]
pub(crate) struct Routing {
    pub routes: HashMap<String, Arc<Route>>,
}

impl Routing {
    pub fn new(config: &GatewayConfig, prices: &PriceTable) -> Result<Routing, GatewayError> {
        let bad = |m: String| Err(GatewayError::Config(m));
        let mut providers: HashMap<&str, Arc<Upstream>> = HashMap::new();
        for p in &config.providers {
            if p.name == "local" || p.name.is_empty() {
                return bad(format!(
                    "provider name '{}' is reserved or empty: `local` means this machine",
                    p.name
                ));
            }
            if providers
                .insert(&p.name, Arc::new(Upstream::new(p)?))
                .is_some()
            {
                return bad(format!("provider '{}' is declared twice", p.name));
            }
        }
        if prices.get(&config.reference_model).is_none() {
            return bad(format!(
                "[gateway] reference_model '{}' is not in the price table; add it under [gateway.prices]",
                config.reference_model
            ));
        }
        if !(config.machine_cost_per_hour >= 0.0 && config.machine_cost_per_hour.is_finite()) {
            return bad("[gateway] machine_cost_per_hour must be a number ≥ 0".into());
        }
        let mut routes = HashMap::new();
        let mut seen = HashSet::new();
        for r in &config.routes {
            if !seen.insert(r.alias.as_str()) {
                return bad(format!("route '{}' is declared twice", r.alias));
            }
            if r.deployments.is_empty() {
                return bad(format!("route '{}' has no deployments", r.alias));
            }
            let mut deployments = Vec::new();
            for d in &r.deployments {
                let target = if d.provider == "local" {
                    Target::Local
                } else {
                    match providers.get(d.provider.as_str()) {
                        Some(up) => Target::Upstream(up.clone()),
                        None => {
                            return bad(format!(
                            "route '{}': provider '{}' is not declared in [[gateway.providers]]",
                            r.alias, d.provider
                        ))
                        }
                    }
                };
                let label = format!("{}/{}", d.provider, d.model);
                if r.privacy == Privacy::LocalOnly && !matches!(target, Target::Local) {
                    return bad(format!(
                        "route '{}' is local_only, but deployment '{label}' would send its \
                         requests to provider '{}': remove the deployment or change the \
                         route's privacy",
                        r.alias, d.provider
                    ));
                }
                let price = match &d.price {
                    Some(name) => Some(prices.get(name).ok_or_else(|| {
                        GatewayError::Config(format!(
                            "route '{}': price '{name}' of deployment '{label}' is not in the price table",
                            r.alias
                        ))
                    })?),
                    None if d.provider == "local" => None,
                    None => prices.get(&d.model),
                };
                deployments.push(Deployment {
                    label,
                    target,
                    model: d.model.clone(),
                    price,
                    health: Mutex::default(),
                });
            }
            routes.insert(
                r.alias.clone(),
                Arc::new(Route {
                    alias: r.alias.clone(),
                    privacy: r.privacy,
                    refuse: r.refuse.clone(),
                    strategy: r.strategy,
                    deployments,
                    turn: AtomicUsize::new(0),
                    implicit: false,
                }),
            );
        }
        Ok(Routing { routes })
    }

    pub fn route(&self, model: &str) -> Arc<Route> {
        self.routes
            .get(model)
            .cloned()
            .unwrap_or_else(|| Arc::new(Route::implicit_local(model)))
    }
}

/// What [`Gateway::failover`] got: the answer and where it came from.
struct Served<T> {
    answer: T,
    index: usize,
    fallbacks: u32,
    at: f64,
    started: Instant,
}

/// One attempt's failure.
pub(crate) enum Attempt {
    /// The request itself is at fault: answer the client, try nothing else.
    Fatal(GatewayError),
    /// This deployment failed: retry or fail over.
    Failed(GatewayError),
}

/// A request carrying a kind of personal data its route forbids (`refuse`) is refused whole,
/// before anything is reserved or sent.
fn refuse_forbidden_pii(
    route: &Route,
    request: &ChatCompletionRequest,
) -> Result<(), GatewayError> {
    if route.refuse.is_empty() {
        return Ok(());
    }
    let known = request.known_pii.clone().unwrap_or_default();
    let known = KnownPii {
        names: known.names,
        addresses: known.addresses,
    };
    let mut body = serde_json::to_value(request).expect("requests serialize");
    if let Some(map) = body.as_object_mut() {
        map.remove("known_pii");
    }
    refuse_kinds(route, body, &known)
}

/// A request whose `texts` carry a kind of personal data the route refuses, refused naming
/// the field.
fn refuse_kinds(
    route: &Route,
    texts: serde_json::Value,
    known: &KnownPii,
) -> Result<(), GatewayError> {
    if route.refuse.is_empty() {
        return Ok(());
    }
    match crate::privacy::find_kinds(texts, known, &route.refuse) {
        Some((param, kind)) => Err(GatewayError::PiiRefused {
            route: route.alias.clone(),
            kind: kind.as_str(),
            param,
        }),
        None => Ok(()),
    }
}

fn unknown_model(e: &GatewayError) -> bool {
    matches!(
        e,
        GatewayError::Infer(hearth_infer::InferError::ModelNotFound { .. })
    )
}

/// Template tokens a chat format may add around the request's own text: role markers per
/// message, a default system prompt, the reply's opening.
const FORMAT_TOKENS_PER_MESSAGE: u64 = 16;
const FORMAT_TOKENS_BASE: u64 = 64;
/// What a template may add to introduce tools (instructions, tags, the calling syntax).
const FORMAT_TOKENS_TOOLS: u64 = 512;

/// An upper bound on the prompt tokens any upstream can bill for this request: every
/// tokenizer hearth knows (byte-level BPE, SentencePiece with byte fallback) spends at most
/// one token per byte, so the bytes of the request as sent (every text, name, tool schema,
/// response format and stop string, JSON-escaped, which only adds bytes) bound the text, and
/// the format overheads above bound the chat template's additions.
pub fn prompt_bound(request: &ChatCompletionRequest) -> u64 {
    let mut bytes = serde_json::to_vec(&request.messages)
        .map(|b| b.len())
        .unwrap_or(0) as u64;
    let mut overhead =
        FORMAT_TOKENS_BASE + FORMAT_TOKENS_PER_MESSAGE * request.messages.len() as u64;
    if let Some(tools) = request.tools.as_ref().filter(|t| !t.is_empty()) {
        bytes += serde_json::to_vec(tools).map(|b| b.len()).unwrap_or(0) as u64;
        bytes += serde_json::to_vec(&request.tool_choice)
            .map(|b| b.len())
            .unwrap_or(0) as u64;
        overhead += FORMAT_TOKENS_TOOLS;
    }
    if let Some(format) = &request.response_format {
        bytes += serde_json::to_vec(format).map(|b| b.len()).unwrap_or(0) as u64;
    }
    bytes + overhead
}

/// The completion tokens a request can be billed for: its own limit, or `[gateway]
/// max_tokens_estimate` (which the gateway then sends upstream as the limit).
pub fn completion_bound(request: &ChatCompletionRequest, default: u32) -> u64 {
    request
        .sampling
        .max_completion_tokens
        .or(request.sampling.max_tokens)
        .unwrap_or(default) as u64
}

impl Gateway {
    /// Starts a chat completion for `caller`: checks the key's routes, limits and budget,
    /// picks a deployment of the route (failing over as needed), meters the answer.
    pub async fn chat_as(
        &self,
        request: &ChatCompletionRequest,
        caller: &Caller,
    ) -> Result<ChatStream, GatewayError> {
        let checked = crate::chat::check_chat(request)?;
        let route = self.routing.route(&request.model);
        refuse_forbidden_pii(&route, request)?;
        let bounds = self.bounds(request);
        let mut reservation = self.admit(caller, &route, bounds)?;
        let (at, started) = (crate::unix_now_f64(), Instant::now());
        let result = self
            .dispatch(
                route.clone(),
                request,
                &checked,
                bounds,
                caller,
                &mut reservation,
            )
            .await;
        if let Err(e) = &result {
            // (A request dropped while it waits for a deployment keeps the reservation's
            // charge.)
            self.unanswered(&route, caller, reservation.take(), (at, started), e);
        }
        result
    }

    /// The prompt tokens `request` takes: rendered with the chat template of the model it
    /// names (a route: of its first local deployment) and counted with its tokenizer. Nothing
    /// is generated, reserved or billed; the key must be allowed the model.
    pub async fn count_prompt_tokens(
        &self,
        request: &ChatCompletionRequest,
        caller: &Caller,
    ) -> Result<u32, GatewayError> {
        let checked = crate::chat::check_chat(request)?;
        let (route, index) = self.local_for(&request.model, caller)?;
        let local = &route.deployments[index];
        self.count_local_prompt(&local.model, request, &checked)
            .await
    }

    /// The most prompt and completion tokens `request` can be billed for.
    fn bounds(&self, request: &ChatCompletionRequest) -> (u64, u64) {
        (
            prompt_bound(request),
            completion_bound(request, self.settings.max_tokens_estimate),
        )
    }

    pub(crate) fn admit(
        &self,
        caller: &Caller,
        route: &Route,
        (prompt, completion): (u64, u64),
    ) -> Result<Option<Reservation>, GatewayError> {
        let Some(key) = &caller.key else {
            return Ok(None);
        };
        if !key.allows(&route.alias) {
            return Err(GatewayError::Forbidden {
                key: key.name.clone(),
                model: route.alias.clone(),
            });
        }
        let Some(keys) = &self.keys else {
            return Ok(None);
        };
        let cost = route
            .deployments
            .iter()
            .filter_map(|d| d.price.map(|p| p.cost(prompt, completion)))
            .fold(0.0, f64::max);
        keys.admit(key, prompt + completion, cost).map(Some)
    }

    async fn dispatch(
        &self,
        route: Arc<Route>,
        request: &ChatCompletionRequest,
        checked: &CheckedChat,
        bounds: (u64, u64),
        caller: &Caller,
        reservation: &mut Option<Reservation>,
    ) -> Result<ChatStream, GatewayError> {
        let served = self
            .failover(&route, |deployment| {
                self.attempt(&route, deployment, request, checked, caller)
            })
            .await?;
        let deployment = &route.deployments[served.index];
        let (mut stream, audit) = served.answer;
        stream.meter = Some(self.meter(
            &route,
            deployment,
            caller,
            (served.at, served.started, served.fallbacks),
            bounds,
            reservation.take(),
            audit,
        ));
        Ok(stream)
    }

    /// Tries the route's deployments in order (`candidates`), each up to `attempts` times
    /// with back-off, until one answers: the answer, which deployment, after how many
    /// fallbacks, and when that attempt started. A failing deployment is counted, audited
    /// (upstream) and may be taken out for a cool-down.
    async fn failover<'r, T, F, Fut>(
        &self,
        route: &'r Route,
        mut attempt: F,
    ) -> Result<Served<T>, GatewayError>
    where
        F: FnMut(&'r Deployment) -> Fut,
        Fut: std::future::Future<Output = Result<T, Attempt>>,
    {
        let mut errors: Vec<String> = Vec::new();
        let mut last: Option<GatewayError> = None;
        for (fallbacks, index) in route.candidates().into_iter().enumerate() {
            let fallbacks = fallbacks as u32;
            let deployment = &route.deployments[index];
            let attempts = if route.implicit {
                1
            } else {
                self.settings.attempts.max(1)
            };
            for attempt_no in 0..attempts {
                if attempt_no > 0 {
                    if deployment.cooling(Instant::now()) {
                        break;
                    }
                    let backoff = self.settings.retry_backoff_ms << (attempt_no - 1).min(10);
                    tokio::time::sleep(Duration::from_millis(backoff)).await;
                }
                let started = Instant::now();
                let at = crate::unix_now_f64();
                match attempt(deployment).await {
                    Ok(answer) => {
                        deployment.succeeded();
                        return Ok(Served {
                            answer,
                            index,
                            fallbacks,
                            at,
                            started,
                        });
                    }
                    Err(Attempt::Fatal(e)) => return Err(e),
                    Err(Attempt::Failed(e)) => {
                        self.metrics
                            .errors
                            .get_or_create(&crate::metrics::DeploymentLabels {
                                route: route.alias.clone(),
                                deployment: deployment.label.clone(),
                            })
                            .inc();
                        if let (Target::Upstream(_), Some(ledger)) =
                            (&deployment.target, &self.ledger)
                        {
                            ledger.audit(AuditRecord {
                                at,
                                route: route.alias.clone(),
                                deployment: deployment.label.clone(),
                                model: deployment.model.clone(),
                                privacy: route.privacy.as_str().into(),
                                outcome: format!("failed: {e}"),
                                prompt_tokens: 0,
                                completion_tokens: 0,
                                redactions: BTreeMap::new(),
                                raw_request: None,
                                raw_answer: None,
                            });
                        }
                        tracing::warn!(route = %route.alias, deployment = %deployment.label, error = %e, "deployment failed");
                        deployment.failed(&self.settings);
                        if route.implicit {
                            return Err(e);
                        }
                        errors.push(format!("{}: {e}", deployment.label));
                        last = Some(e);
                    }
                }
            }
            self.metrics
                .fallbacks
                .get_or_create(&crate::metrics::DeploymentLabels {
                    route: route.alias.clone(),
                    deployment: deployment.label.clone(),
                })
                .inc();
        }
        let retry_after = match last {
            Some(GatewayError::Infer(
                hearth_infer::InferError::Overloaded { .. }
                | hearth_infer::InferError::QueueTimeout { .. },
            )) => 1,
            _ => route
                .deployments
                .iter()
                .filter_map(|d| {
                    let h = d.health.lock().unwrap_or_else(|p| p.into_inner());
                    h.out_until
                        .map(|t| t.saturating_duration_since(Instant::now()))
                })
                .min()
                .map(|d| d.as_secs().max(1))
                .unwrap_or(1),
        };
        Err(GatewayError::Unavailable {
            route: route.alias.clone(),
            errors: errors.join("; "),
            retry_after,
        })
    }

    /// The audit record of a call that reached an upstream: what was redacted, the raw
    /// request only under `audit_raw_text`.
    fn upstream_audit(
        &self,
        route: &Route,
        deployment: &Deployment,
        redactor: &Redactor,
        body: &serde_json::Value,
    ) -> AuditRecord {
        AuditRecord {
            at: crate::unix_now_f64(),
            route: route.alias.clone(),
            deployment: deployment.label.clone(),
            model: deployment.model.clone(),
            privacy: route.privacy.as_str().into(),
            outcome: String::new(),
            prompt_tokens: 0,
            completion_tokens: 0,
            redactions: redactor
                .counts()
                .into_iter()
                .map(|(kind, n)| (kind.as_str().to_owned(), n))
                .collect(),
            raw_request: self.settings.audit_raw_text.then(|| body.to_string()),
            raw_answer: None,
        }
    }

    /// A request no deployment answered: nothing was spent, so its reservation is released;
    /// unless it was the client's mistake, the failure is recorded.
    fn unanswered(
        &self,
        route: &Route,
        caller: &Caller,
        reservation: Option<Reservation>,
        (at, started): (f64, Instant),
        e: &GatewayError,
    ) {
        if let Some(reservation) = reservation {
            reservation.settle(0, 0.0);
        }
        if !e.is_clients_fault() && !unknown_model(e) {
            self.record_failure(route, caller, at, started);
        }
    }

    /// A request no deployment answered, in the ledger and the metrics (nothing spent).
    fn record_failure(&self, route: &Route, caller: &Caller, at: f64, started: Instant) {
        self.metrics
            .requests
            .get_or_create(&crate::metrics::OutcomeLabels {
                route: route.alias.clone(),
                deployment: "none".into(),
                outcome: "error".into(),
            })
            .inc();
        if let Some(ledger) = &self.ledger {
            ledger.record(UsageRecord {
                at,
                api_key: caller.key.as_ref().map(|k| k.name.clone()),
                route: route.alias.clone(),
                deployment: "none".into(),
                model: route.alias.clone(),
                local: false,
                status: "error".into(),
                prompt_tokens: 0,
                completion_tokens: 0,
                ttft_ms: None,
                duration_ms: started.elapsed().as_secs_f64() * 1e3,
                busy_ms: 0.0,
                cost: 0.0,
                priced: true,
                fallbacks: route.deployments.len() as u32,
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn meter(
        &self,
        route: &Route,
        deployment: &Deployment,
        caller: &Caller,
        (at, started, fallbacks): (f64, Instant, u32),
        bounds: (u64, u64),
        reservation: Option<Reservation>,
        audit: Option<AuditRecord>,
    ) -> Meter {
        Meter::new(
            self.ledger.clone(),
            self.metrics.clone(),
            UsageRecord {
                at,
                api_key: caller.key.as_ref().map(|k| k.name.clone()),
                route: route.alias.clone(),
                deployment: deployment.label.clone(),
                model: deployment.model.clone(),
                local: deployment.is_local(),
                status: String::new(),
                prompt_tokens: 0,
                completion_tokens: 0,
                ttft_ms: None,
                duration_ms: 0.0,
                busy_ms: 0.0,
                cost: 0.0,
                priced: false,
                fallbacks,
            },
            deployment.price,
            self.settings.machine_cost_per_hour,
            started,
            bounds,
            reservation,
            audit,
        )
    }

    /// A grammar-constrained chat (the apps' structured steps) on the route's first local
    /// deployment: grammars cannot be sent upstream.
    pub(crate) async fn constrained_local(
        &self,
        request: &ChatCompletionRequest,
        constraint: hearth_infer::llm::Constraint,
    ) -> Result<ChatStream, GatewayError> {
        let route = self.routing.route(&request.model);
        let deployment = route
            .deployments
            .iter()
            .find(|d| d.is_local())
            .ok_or_else(|| {
                GatewayError::invalid(
                    "model",
                    format!(
                        "route '{}' has no local deployment, and constrained decoding runs on \
                         this machine's engines",
                        route.alias
                    ),
                )
            })?;
        let checked = crate::chat::check_chat(request)?;
        let mut local = request.clone();
        local.model = deployment.model.clone();
        let (at, started) = (crate::unix_now_f64(), Instant::now());
        let mut stream = self
            .local_chat(&local, &checked, Some(constraint), "")
            .await?;
        stream.model = route.alias.clone();
        stream.meter = Some(self.meter(
            &route,
            deployment,
            &Caller::default(),
            (at, started, 0),
            self.bounds(request),
            None,
            None,
        ));
        Ok(stream)
    }

    async fn attempt(
        &self,
        route: &Route,
        deployment: &Deployment,
        request: &ChatCompletionRequest,
        checked: &CheckedChat,
        caller: &Caller,
    ) -> Result<(ChatStream, Option<AuditRecord>), Attempt> {
        let mut request = request.clone();
        request.model = deployment.model.clone();
        let upstream = match &deployment.target {
            Target::Local => {
                let owner = caller.owner().unwrap_or_default();
                return match self.local_chat(&request, checked, None, &owner).await {
                    Ok(mut stream) => {
                        if !route.implicit {
                            stream.model = route.alias.clone();
                        }
                        Ok((stream, None))
                    }
                    // A name that is neither a route nor a local model is the client's
                    // mistake (404), not a failing deployment: no failure metrics keyed by it.
                    Err(e) if e.is_clients_fault() || (route.implicit && unknown_model(&e)) => {
                        Err(Attempt::Fatal(e))
                    }
                    Err(e) => Err(Attempt::Failed(e)),
                };
            }
            Target::Upstream(upstream) => upstream,
        };
        let known = request.known_pii.take().unwrap_or_default();
        let mut redactor = Redactor::new(KnownPii {
            names: known.names,
            addresses: known.addresses,
        });
        if request.stream {
            request.stream_options = Some(hearth_types::StreamOptions {
                include_usage: true,
            });
        }
        // An upstream bills what it generates: without a limit of the client's, the one the
        // reservation assumed travels with the request, so the bill stays within it.
        if request.sampling.max_tokens.is_none() && request.sampling.max_completion_tokens.is_none()
        {
            request.sampling.max_tokens = Some(self.settings.max_tokens_estimate);
        }
        let mut body = serde_json::to_value(&request).expect("requests serialize");
        if route.privacy == Privacy::Redact {
            // Every text the request carries, whatever field it is in.
            crate::privacy::redact_json(&mut body, &mut redactor);
        }
        let started = Instant::now();
        let answer = upstream
            .chat(&body, request.stream)
            .await
            .map_err(|f| upstream_failure(deployment, f))?;
        let audit = self.upstream_audit(route, deployment, &redactor, &body);
        let restoring = (route.privacy == Privacy::Redact && redactor.total() > 0)
            .then(|| Restoring::new(redactor));
        let (tx, rx) = mpsc::channel(64);
        match answer {
            // Two events into a fresh channel of 64: sent at once, no task needed.
            Answer::Whole(answer) => relay_whole(*answer, restoring, started, tx).await,
            Answer::Stream(response) => {
                tokio::spawn(relay_stream(
                    response,
                    restoring,
                    upstream.timeout(),
                    started,
                    tx,
                    false,
                ));
            }
        }
        Ok((
            ChatStream::new(
                format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
                route.alias.clone(),
                unix_now(),
                rx,
            ),
            Some(audit),
        ))
    }
}

impl Gateway {
    /// Whether every deployment of the route `model` names runs on this machine.
    pub(crate) fn only_local(&self, model: &str) -> bool {
        self.routing
            .route(model)
            .deployments
            .iter()
            .all(Deployment::is_local)
    }

    /// The local model serving `model` for requests that only local engines serve (text
    /// completions, embeddings): the route's first local deployment, or `model` itself.
    fn local_for(&self, model: &str, caller: &Caller) -> Result<(Arc<Route>, usize), GatewayError> {
        let route = self.routing.route(model);
        if let Some(key) = &caller.key {
            if !key.allows(&route.alias) {
                return Err(GatewayError::Forbidden {
                    key: key.name.clone(),
                    model: route.alias.clone(),
                });
            }
        }
        let index = route
            .deployments
            .iter()
            .position(Deployment::is_local)
            .ok_or_else(|| {
                GatewayError::invalid(
                    "model",
                    format!(
                        "route '{}' has no local deployment; this endpoint is served on this machine only (chat, completions, responses, messages, embeddings, rerank and score go upstream)",
                        route.alias
                    ),
                )
            })?;
        Ok((route, index))
    }

    fn admit_local(
        &self,
        caller: &Caller,
        tokens: u64,
    ) -> Result<Option<Reservation>, GatewayError> {
        match (&caller.key, &self.keys) {
            (Some(key), Some(keys)) => keys.admit(key, tokens, 0.0).map(Some),
            _ => Ok(None),
        }
    }

    /// Text completions for `caller` by the route `request.model` names (local engines, or
    /// an upstream's `/completions`), metered: one stream per prompt.
    pub async fn completion_as(
        &self,
        request: &hearth_types::CompletionRequest,
        caller: &Caller,
    ) -> Result<Vec<ChatStream>, GatewayError> {
        let route = self.routing.route(&request.model);
        if !route.deployments.iter().all(Deployment::is_local) {
            return self.routed_completion(route, request, caller).await;
        }
        let (route, index) = self.local_for(&request.model, caller)?;
        let params = crate::chat::sampling_params(&request.sampling)?;
        let deployment = &route.deployments[index];
        let max = request
            .sampling
            .max_tokens
            .unwrap_or(self.settings.max_tokens_estimate);
        let mut reservation = self.admit_local(caller, max as u64)?;
        let mut local = request.clone();
        local.model = deployment.model.clone();
        let (at, started) = (crate::unix_now_f64(), Instant::now());
        let mut streams = self
            .completion(&local, params, &caller.owner().unwrap_or_default())
            .await?;
        let chat_like =
            ChatCompletionRequest::streaming(&route.alias, Vec::new(), Default::default());
        for stream in &mut streams {
            if !route.implicit {
                stream.model = route.alias.clone();
            }
            stream.meter = Some(self.meter(
                &route,
                deployment,
                caller,
                (at, started, 0),
                self.bounds(&chat_like),
                reservation.take(),
                None,
            ));
        }
        Ok(streams)
    }

    /// Text completions on a route with an upstream: its deployments in failover order, as
    /// chat is routed (refused kinds of personal data, redaction, keys, budget, ledger).
    async fn routed_completion(
        &self,
        route: Arc<Route>,
        request: &hearth_types::CompletionRequest,
        caller: &Caller,
    ) -> Result<Vec<ChatStream>, GatewayError> {
        use hearth_types::CompletionPrompt;
        let params = crate::chat::sampling_params(&request.sampling)?;
        let (prompts, tokens) = match &request.prompt {
            CompletionPrompt::Text(_) => (1, false),
            CompletionPrompt::Texts(texts) => (texts.len(), false),
            CompletionPrompt::Tokens(_) => (1, true),
            CompletionPrompt::TokenLists(lists) => (lists.len(), true),
        };
        if prompts == 0 {
            return Err(GatewayError::invalid("prompt", "must not be empty"));
        }
        if request.stream && prompts > 1 {
            return Err(GatewayError::invalid(
                "prompt",
                "streaming takes a single prompt",
            ));
        }
        // The limit of this machine's engines holds for every deployment of the route.
        let most = self.options.llm.queue_capacity.max(1);
        if prompts > most {
            return Err(GatewayError::invalid(
                "prompt",
                format!("{prompts} prompts in one request; at most {most} ([llm] queue_capacity)"),
            ));
        }
        let prompt = serde_json::to_value(&request.prompt).expect("prompts serialize");
        // Token ids cannot be read for personal data: a route that checks or redacts what it
        // sends takes text only.
        if tokens && (!route.refuse.is_empty() || route.privacy == Privacy::Redact) {
            return Err(GatewayError::invalid(
                "prompt",
                format!(
                    "route '{}' checks what it sends for personal data, which token ids hide: send the prompt as text",
                    route.alias
                ),
            ));
        }
        refuse_kinds(
            &route,
            serde_json::json!({ "prompt": prompt }),
            &KnownPii::default(),
        )?;
        let max = request
            .sampling
            .max_tokens
            .unwrap_or(self.settings.max_tokens_estimate) as u64;
        // Every tokenizer spends at most one token per byte (a token id: one token).
        let prompt_bound = match &request.prompt {
            CompletionPrompt::Tokens(t) => t.len() as u64,
            CompletionPrompt::TokenLists(l) => l.iter().map(|t| t.len() as u64).sum(),
            _ => serde_json::to_vec(&prompt).map_or(0, |b| b.len() as u64),
        };
        let bounds = (prompt_bound, max * prompts as u64);
        let mut reservation = self.admit(caller, &route, bounds)?;
        let (at, started) = (crate::unix_now_f64(), Instant::now());
        let owner = caller.owner().unwrap_or_default();
        let result = self
            .failover(&route, |deployment| {
                let (route, params, owner) = (&route, &params, &owner);
                async move {
                    let up = match &deployment.target {
                        Target::Local => {
                            let mut local = request.clone();
                            local.model = deployment.model.clone();
                            return match self.completion(&local, params.clone(), owner).await {
                                Ok(streams) => Ok((streams, None)),
                                Err(e) if e.is_clients_fault() => Err(Attempt::Fatal(e)),
                                Err(e) => Err(Attempt::Failed(e)),
                            };
                        }
                        Target::Upstream(up) => up,
                    };
                    self.upstream_completion(route, deployment, up, request, prompts)
                        .await
                        .map(|(streams, audit)| (streams, Some(audit)))
                }
            })
            .await;
        let served = match result {
            Ok(served) => served,
            Err(e) => {
                self.unanswered(&route, caller, reservation.take(), (at, started), &e);
                return Err(e);
            }
        };
        let deployment = &route.deployments[served.index];
        let (mut streams, mut audit) = served.answer;
        let per_stream = (bounds.0, max);
        for (i, stream) in streams.iter_mut().enumerate() {
            stream.model = route.alias.clone();
            // An upstream answers every prompt in one call, billed on the first stream.
            if deployment.is_local() || i == 0 {
                stream.meter = Some(self.meter(
                    &route,
                    deployment,
                    caller,
                    (served.at, served.started, served.fallbacks),
                    if i == 0 { bounds } else { per_stream },
                    reservation.take(),
                    audit.take(),
                ));
            }
        }
        Ok(streams)
    }

    /// One attempt at an upstream's `/completions`: the request with the deployment's model,
    /// a limit on what it may generate, usage asked for, the prompt redacted on a `redact`
    /// route; one stream per prompt, placeholders restored in what comes back.
    async fn upstream_completion(
        &self,
        route: &Route,
        deployment: &Deployment,
        upstream: &Upstream,
        request: &hearth_types::CompletionRequest,
        prompts: usize,
    ) -> Result<(Vec<ChatStream>, AuditRecord), Attempt> {
        let mut request = request.clone();
        request.model = deployment.model.clone();
        if request.stream {
            request.stream_options = Some(hearth_types::StreamOptions {
                include_usage: true,
            });
        }
        if request.sampling.max_tokens.is_none() {
            request.sampling.max_tokens = Some(self.settings.max_tokens_estimate);
        }
        let mut body = serde_json::to_value(&request).expect("requests serialize");
        let mut redactor = Redactor::new(KnownPii::default());
        if route.privacy == Privacy::Redact {
            if let Some(prompt) = body.get_mut("prompt") {
                crate::privacy::redact_json(prompt, &mut redactor);
            }
        }
        let started = Instant::now();
        let answer = upstream
            .completion(&body, request.stream)
            .await
            .map_err(|f| upstream_failure(deployment, f))?;
        let audit = self.upstream_audit(route, deployment, &redactor, &body);
        let restoring = || {
            (route.privacy == Privacy::Redact && redactor.total() > 0)
                .then(|| Restoring::new(redactor.clone()))
        };
        let stream_of = |rx| {
            ChatStream::new(
                format!("cmpl-{}", uuid::Uuid::new_v4().simple()),
                route.alias.clone(),
                unix_now(),
                rx,
            )
        };
        let mut streams = Vec::new();
        match answer {
            CompletionAnswer::Whole(answers) => {
                if answers.len() != prompts {
                    return Err(Attempt::Failed(GatewayError::Upstream(format!(
                        "/completions: {} answers to {prompts} prompts",
                        answers.len()
                    ))));
                }
                for answer in answers {
                    let (tx, rx) = mpsc::channel(64);
                    relay_whole(answer, restoring(), started, tx).await;
                    streams.push(stream_of(rx));
                }
            }
            CompletionAnswer::Stream(response) => {
                let (tx, rx) = mpsc::channel(64);
                tokio::spawn(relay_stream(
                    response,
                    restoring(),
                    upstream.timeout(),
                    started,
                    tx,
                    true,
                ));
                streams.push(stream_of(rx));
            }
        }
        Ok((streams, audit))
    }

    /// Embeddings for `caller` by the route `request.model` names (local engines, or an
    /// upstream's `/embeddings`), metered.
    pub async fn embed_as(
        &self,
        request: &hearth_types::EmbeddingRequest,
        caller: &Caller,
    ) -> Result<hearth_types::EmbeddingResponse, GatewayError> {
        let body = serde_json::to_value(request).expect("requests serialize");
        let inputs = match &request.input {
            hearth_types::EmbeddingInput::Text(_) | hearth_types::EmbeddingInput::Tokens(_) => 1,
            hearth_types::EmbeddingInput::Texts(texts) => texts.len(),
            hearth_types::EmbeddingInput::TokenLists(lists) => lists.len(),
        };
        // The same limits whichever deployment answers: an upstream is not sent more.
        if inputs == 0 {
            return Err(GatewayError::invalid("input", "must not be empty"));
        }
        let most = self.options.max_embedding_inputs;
        if inputs > most {
            return Err(GatewayError::invalid(
                "input",
                format!(
                    "{inputs} inputs in one request; at most {most} ([embeddings] max_inputs_per_request)"
                ),
            ));
        }
        let (mut response, route) = self
            .routed_json(
                &request.model,
                caller,
                JsonCall {
                    path: "embeddings",
                    body,
                    texts: &["input"],
                },
                |model, owner| async move {
                    let mut local = request.clone();
                    local.model = model;
                    self.embed_for(&local, &owner).await
                },
                |answer| {
                    let answer = serde_json::from_value::<hearth_types::EmbeddingResponse>(answer)
                        .map_err(|e| format!("not an OpenAI embeddings answer: {e}"))?;
                    if answer.data.len() != inputs {
                        return Err(format!("{} vectors for {inputs} inputs", answer.data.len()));
                    }
                    Ok(answer)
                },
                |response| response.usage.prompt_tokens,
            )
            .await?;
        if !route.implicit {
            response.model = route.alias.clone();
        }
        Ok(response)
    }

    /// A JSON endpoint (embeddings, rerank) for `caller` by the route `model` names: its
    /// deployments in failover order, a local one answered by `local(model, owner)`, an
    /// upstream one sent `call.body` (its model renamed; on a `redact` route the texts of
    /// `call.texts` redacted) and its answer read by `upstream`. The key's permission, the
    /// route's refused kinds of personal data, limits and budget come first; the answer is
    /// metered as prompt tokens (`prompt_tokens`). Returns the answer and the route.
    pub(crate) async fn routed_json<T, L, LFut, U>(
        &self,
        model: &str,
        caller: &Caller,
        call: JsonCall<'_>,
        local: L,
        upstream: U,
        prompt_tokens: impl Fn(&T) -> u32,
    ) -> Result<(T, Arc<Route>), GatewayError>
    where
        L: Fn(String, String) -> LFut,
        LFut: std::future::Future<Output = Result<T, GatewayError>>,
        U: Fn(serde_json::Value) -> Result<T, String>,
    {
        let route = self.routing.route(model);
        let mut texts = serde_json::Map::new();
        if let Some(body) = call.body.as_object() {
            for field in call.texts {
                if let Some(value) = body.get(*field) {
                    texts.insert((*field).to_owned(), value.clone());
                }
            }
        }
        refuse_kinds(
            &route,
            serde_json::Value::Object(texts.clone()),
            &KnownPii::default(),
        )?;
        // Every tokenizer spends at most one token per byte of text (see `prompt_bound`).
        let bound = serde_json::to_vec(&texts).map(|b| b.len()).unwrap_or(0) as u64;
        let mut reservation = self.admit(caller, &route, (bound, 0))?;
        let (at, started) = (crate::unix_now_f64(), Instant::now());
        let owner = caller.owner().unwrap_or_default();
        let result = self
            .failover(&route, |deployment| {
                let (route, local, upstream, call, owner) =
                    (&route, &local, &upstream, &call, &owner);
                async move {
                    let up = match &deployment.target {
                        Target::Local => {
                            return match local(deployment.model.clone(), owner.clone()).await {
                                Ok(answer) => Ok((answer, None)),
                                Err(e)
                                    if e.is_clients_fault()
                                        || (route.implicit && unknown_model(&e)) =>
                                {
                                    Err(Attempt::Fatal(e))
                                }
                                Err(e) => Err(Attempt::Failed(e)),
                            };
                        }
                        Target::Upstream(up) => up,
                    };
                    let mut body = call.body.clone();
                    let mut redactor = Redactor::new(KnownPii::default());
                    if let Some(fields) = body.as_object_mut() {
                        fields.insert("model".into(), deployment.model.clone().into());
                        if route.privacy == Privacy::Redact {
                            for field in call.texts {
                                if let Some(value) = fields.get_mut(*field) {
                                    crate::privacy::redact_json(value, &mut redactor);
                                }
                            }
                        }
                    }
                    let answer = up
                        .post_json(call.path, &body)
                        .await
                        .map_err(|f| upstream_failure(deployment, f))?;
                    let answer = upstream(answer).map_err(|e| {
                        Attempt::Failed(GatewayError::Upstream(format!("/{}: {e}", call.path)))
                    })?;
                    let audit = self.upstream_audit(route, deployment, &redactor, &body);
                    Ok((answer, Some(audit)))
                }
            })
            .await;
        let served = match result {
            Ok(served) => served,
            Err(e) => {
                self.unanswered(&route, caller, reservation.take(), (at, started), &e);
                return Err(e);
            }
        };
        let (answer, audit) = served.answer;
        let mut meter = self.meter(
            &route,
            &route.deployments[served.index],
            caller,
            (served.at, served.started, served.fallbacks),
            (bound, 0),
            reservation,
            audit,
        );
        finish_json(&mut meter, prompt_tokens(&answer), served.started.elapsed());
        Ok((answer, route))
    }

    /// Runs `work` on the local model serving `model` for `caller` (the key's permission,
    /// limits and budget first), and meters it: `prompt_tokens` of its answer, no
    /// completion tokens. Returns the answer and the route it went by.
    pub(crate) async fn metered_local<T, F, Fut>(
        &self,
        model: &str,
        caller: &Caller,
        work: F,
        prompt_tokens: impl Fn(&T) -> u32,
    ) -> Result<(T, Arc<Route>), GatewayError>
    where
        F: FnOnce(String, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, GatewayError>>,
    {
        let (route, index) = self.local_for(model, caller)?;
        let deployment = &route.deployments[index];
        let reservation = self.admit_local(caller, 0)?;
        let (at, started) = (crate::unix_now_f64(), Instant::now());
        let result = work(deployment.model.clone(), caller.owner().unwrap_or_default()).await;
        let chat_like =
            ChatCompletionRequest::streaming(&route.alias, Vec::new(), Default::default());
        let mut meter = self.meter(
            &route,
            deployment,
            caller,
            (at, started, 0),
            self.bounds(&chat_like),
            reservation,
            None,
        );
        match &result {
            Ok(answer) => finish_json(&mut meter, prompt_tokens(answer), started.elapsed()),
            Err(e) => meter.observe(&crate::ChatEvent::Failed(GatewayError::Upstream(
                e.to_string(),
            ))),
        }
        let answer = result?;
        Ok((answer, route))
    }
}

/// Where a JSON endpoint's request goes upstream, and which of its fields are texts.
pub(crate) struct JsonCall<'a> {
    /// Below the provider's base URL: `embeddings`, `rerank`.
    pub path: &'static str,
    /// The client's request as it would be sent (its `model` is set per deployment).
    pub body: serde_json::Value,
    /// Top-level fields holding the texts: checked for refused personal data, redacted on
    /// `redact` routes, counted for the budget's bound.
    pub texts: &'a [&'a str],
}

/// An upstream failure as an attempt's: a refusal of the request itself (400, 413, 422) is
/// the client's to see; anything else fails over.
fn upstream_failure(deployment: &Deployment, failure: Failure) -> Attempt {
    match failure {
        Failure::Rejected { status, message } if matches!(status, 400 | 413 | 422) => {
            Attempt::Fatal(GatewayError::UpstreamRejected {
                deployment: deployment.label.clone(),
                status,
                message,
            })
        }
        other => Attempt::Failed(GatewayError::Upstream(other.to_string())),
    }
}

/// Meters a whole answer that read `tokens` prompt tokens and generated none.
fn finish_json(meter: &mut Meter, tokens: u32, elapsed: Duration) {
    meter.observe(&crate::ChatEvent::Finished {
        finish_reason: "stop".into(),
        usage: hearth_types::Usage::new(tokens, 0),
        summary: hearth_infer::llm::GenerationSummary {
            finish_reason: hearth_infer::llm::FinishReason::Stop,
            prompt_tokens: tokens as usize,
            cached_prompt_tokens: 0,
            completion_tokens: 0,
            queued: Duration::ZERO,
            time_to_first_token: elapsed,
            total: elapsed,
            stop_sequence: None,
        },
    });
}
