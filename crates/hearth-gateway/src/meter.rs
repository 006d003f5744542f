//! Metering of one answer as the client reads it: time to first token, tokens, cost, the
//! key's budget settled, metrics, the ledger row and (upstream) the audit record. An answer
//! that ends early (error, or the client left) is metered too, its tokens estimated when the
//! upstream never said.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::keys::Reservation;
use crate::ledger::{AuditRecord, Ledger, UsageRecord};
use crate::metrics::{DeploymentLabels, GatewayMetrics, OutcomeLabels, TokenLabels};
use crate::prices::Price;
use crate::ChatEvent;

pub(crate) struct Meter {
    ledger: Option<Arc<Ledger>>,
    metrics: Arc<GatewayMetrics>,
    record: UsageRecord,
    price: Option<Price>,
    machine_cost_per_hour: f64,
    started: Instant,
    /// The most prompt and completion tokens the request can be billed for.
    bounds: (u64, u64),
    answer_bytes: usize,
    reservation: Option<Reservation>,
    audit: Option<AuditRecord>,
    done: bool,
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter")
            .field("record", &self.record)
            .finish()
    }
}

impl Meter {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ledger: Option<Arc<Ledger>>,
        metrics: Arc<GatewayMetrics>,
        record: UsageRecord,
        price: Option<Price>,
        machine_cost_per_hour: f64,
        started: Instant,
        bounds: (u64, u64),
        reservation: Option<Reservation>,
        audit: Option<AuditRecord>,
    ) -> Self {
        Meter {
            ledger,
            metrics,
            record,
            price,
            machine_cost_per_hour,
            started,
            bounds,
            answer_bytes: 0,
            reservation,
            audit,
            done: false,
        }
    }

    pub fn observe(&mut self, event: &ChatEvent) {
        match event {
            ChatEvent::Delta(delta) => {
                let text = delta.content.as_deref().unwrap_or("");
                let args: usize = delta
                    .tool_calls
                    .iter()
                    .flatten()
                    .map(|c| c.function.arguments.as_deref().unwrap_or("").len())
                    .sum();
                if (!text.is_empty() || args > 0) && self.record.ttft_ms.is_none() {
                    self.record.ttft_ms = Some(self.started.elapsed().as_secs_f64() * 1e3);
                }
                self.answer_bytes += text.len() + args;
                // The raw answer is kept only where the raw request is (audit_raw_text).
                if let Some(audit) = self.audit.as_mut().filter(|a| a.raw_request.is_some()) {
                    audit
                        .raw_answer
                        .get_or_insert_with(String::new)
                        .push_str(text);
                }
            }
            ChatEvent::Finished { usage, summary, .. } => {
                let busy = summary.total.saturating_sub(summary.queued);
                self.finish(
                    "ok",
                    Some((usage.prompt_tokens as u64, usage.completion_tokens as u64)),
                    busy,
                );
            }
            ChatEvent::Failed(_) => self.finish("error", None, self.started.elapsed()),
        }
    }

    fn finish(&mut self, status: &str, tokens: Option<(u64, u64)>, busy: Duration) {
        if self.done {
            return;
        }
        self.done = true;
        // Upstreams that report no usage, and answers cut short: the prompt's bound, and the
        // answer's bytes (no tokenizer spends more than a token per byte).
        let (prompt, completion) = match tokens {
            Some((p, c)) if p + c > 0 => (p, c),
            _ => (self.bounds.0, self.answer_bytes as u64),
        };
        let reported = (prompt, completion);
        // An upstream cannot bill more than the request can use (the bounds its reservation
        // was made on): a report beyond them is counted at the bounds (and kept as reported
        // in the audit log), so a key's spend never passes its budget whatever it says.
        let (prompt, completion) = if self.record.local {
            (prompt, completion)
        } else {
            let clamped = (prompt.min(self.bounds.0), completion.min(self.bounds.1));
            if clamped != (prompt, completion) {
                self.metrics
                    .overreported
                    .get_or_create(&DeploymentLabels {
                        route: self.record.route.clone(),
                        deployment: self.record.deployment.clone(),
                    })
                    .inc();
                tracing::warn!(
                    route = %self.record.route,
                    deployment = %self.record.deployment,
                    prompt_tokens = prompt,
                    completion_tokens = completion,
                    prompt_bound = self.bounds.0,
                    completion_bound = self.bounds.1,
                    "the upstream reported more tokens than the request can use; counted at the request's bounds"
                );
            }
            clamped
        };
        let r = &mut self.record;
        r.status = status.to_owned();
        r.prompt_tokens = prompt;
        r.completion_tokens = completion;
        r.duration_ms = self.started.elapsed().as_secs_f64() * 1e3;
        if r.local {
            r.busy_ms = busy.as_secs_f64() * 1e3;
            r.cost = busy.as_secs_f64() * self.machine_cost_per_hour / 3600.0;
            r.priced = self.machine_cost_per_hour > 0.0;
        } else {
            r.cost = self
                .price
                .map(|p| p.cost(prompt, completion))
                .unwrap_or(0.0);
            r.priced = self.price.is_some();
        }
        let labels = DeploymentLabels {
            route: r.route.clone(),
            deployment: r.deployment.clone(),
        };
        let m = &self.metrics;
        m.requests
            .get_or_create(&OutcomeLabels {
                route: r.route.clone(),
                deployment: r.deployment.clone(),
                outcome: status.to_owned(),
            })
            .inc();
        for (direction, n) in [("input", prompt), ("output", completion)] {
            m.tokens
                .get_or_create(&TokenLabels {
                    route: r.route.clone(),
                    deployment: r.deployment.clone(),
                    direction: direction.into(),
                })
                .inc_by(n);
        }
        m.cost.get_or_create(&labels).inc_by(r.cost);
        m.latency
            .get_or_create(&labels)
            .observe(r.duration_ms / 1e3);
        if let Some(ttft) = r.ttft_ms {
            m.time_to_first_token
                .get_or_create(&labels)
                .observe(ttft / 1e3);
        }
        if let Some(reservation) = self.reservation.take() {
            reservation.settle(prompt + completion, r.cost);
        }
        let Some(ledger) = &self.ledger else {
            return;
        };
        match self.audit.take() {
            Some(mut audit) => {
                audit.outcome = status.to_owned();
                audit.prompt_tokens = reported.0;
                audit.completion_tokens = reported.1;
                ledger.call(r.clone(), audit);
            }
            None => ledger.record(r.clone()),
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        if !self.done {
            self.finish("cancelled", None, self.started.elapsed());
        }
    }
}
