//! The engine thread: one llama.cpp context, many sequences, one decode per step.
//!
//! Each step puts into one batch the next token of every generating sequence and as much of
//! the waiting prompts as the batch has room for (chunked prefill), decodes it, and samples
//! for each sequence whose logits came out. Requests join between steps as soon as a sequence
//! slot is free and leave as soon as they finish or their client hangs up.
//!
//! The KV cache is unified (`kv_unified`): every sequence can use every cell, and copying a
//! prefix from one sequence to another shares its cells instead of recomputing them.
//!
//! LoRA adapters: llama.cpp applies an adapter to everything a context decodes, so a batch
//! holds the sequences of one adapter (or of the base model) only. The engine serves one
//! such group for up to [`QUANTUM`] steps while another waits, then the group served least
//! recently; a cached prefix is reused only by a request under the same adapter.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::{LlamaLoraAdapter, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::DecodeError;
use tokio::sync::mpsc;

use super::text::{StopMatcher, Utf8Decoder};
use super::{
    backend, AdapterBinding, FinishReason, GenerateEvent, GenerationSummary, Job, LlmOptions,
    Message, SamplingParams, Shared,
};
use crate::InferError;

pub(super) fn start(
    shared: Arc<Shared>,
    options: LlmOptions,
    jobs: mpsc::UnboundedReceiver<Message>,
) -> Result<(), InferError> {
    let backend = backend()?;
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name(format!("llm:{}", shared.info.name))
        .spawn(move || {
            let model = shared.model.clone();
            let threads = i32::try_from(options.threads).unwrap_or(i32::MAX);
            let params = LlamaContextParams::default()
                .with_n_ctx(NonZeroU32::new(options.context_length))
                .with_n_batch(options.batch_size)
                .with_n_ubatch(options.batch_size)
                .with_n_seq_max(options.max_sequences as u32)
                .with_n_threads(threads)
                .with_n_threads_batch(threads)
                .with_kv_unified(true)
                .with_flash_attention_policy(options.flash_attention.llama_policy());
            let ctx = match model.new_context(backend, params) {
                Ok(ctx) => ctx,
                Err(e) => {
                    let _ = ready_tx.send(Err(InferError::Engine(format!(
                        "could not create a llama.cpp context: {e}"
                    ))));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            Engine::new(&model, ctx, shared, &options).run(jobs);
        })
        .map_err(|e| InferError::io("starting the engine thread", e))?;
    ready_rx.recv().map_err(|_| InferError::EngineStopped)?
}

struct Active {
    events: mpsc::UnboundedSender<GenerateEvent>,
    prompt: Vec<LlamaToken>,
    /// Next prompt index to feed; `prompt[..prefill_pos]` is in the KV cache.
    prefill_pos: usize,
    cached_prompt_tokens: usize,
    sampler: LlamaSampler,
    /// A copy of the constraint, fed every sampled token: the sampler in the chain lets a
    /// token through unmasked when computing its mask fails (llama-cpp-2 skips the mask
    /// then), so this is what notices a token the constraint does not allow.
    shadow: Option<llguidance::Matcher>,
    /// A constraint that starts at a trigger (a tool call in `auto` mode), until it does.
    lazy: Option<Lazy>,
    /// Control tokens decoded as their text.
    preserve: Vec<LlamaToken>,
    /// A scoring request's tokens: their log-probabilities are the answer.
    score: Vec<LlamaToken>,
    params: super::SamplingParams,
    /// Sampled, not yet fed to the model.
    pending: Option<LlamaToken>,
    generated: usize,
    max_tokens: usize,
    ignore_eos: bool,
    decoder: Utf8Decoder,
    stops: StopMatcher,
    submitted: Instant,
    started: Instant,
    first_token: Option<Instant>,
    /// Index in the current batch whose logits belong to this sequence.
    logits_index: Option<i32>,
    /// Tokens this step added to the batch (to undo on a failed decode).
    added: usize,
    admitted_at: u64,
    /// The adapter this request runs under, kept loaded until it ends.
    adapter: Option<Arc<AdapterBinding>>,
}

impl Active {
    fn adapter_id(&self) -> Option<u64> {
        self.adapter.as_ref().map(|a| a.id)
    }
}

/// Steps one adapter group is served while another waits. Each switch makes llama.cpp plan
/// its compute graph again (`sched_reserve`), which costs about a decode step.
const QUANTUM: u32 = 8;

/// A loaded LoRA adapter and the scale it is applied with.
struct LoadedAdapter {
    adapter: LlamaLoraAdapter,
    scale: f32,
}

/// A constraint waiting for its trigger.
struct Lazy {
    triggers: Triggers,
    matcher: llguidance::Matcher,
}

/// The triggers a constraint waits for, and the answer's latest text they are sought in.
struct Triggers {
    triggers: Vec<regex::Regex>,
    /// The answer's latest text, at most [`Triggers::WINDOW`] bytes.
    window: String,
    /// The window no longer starts at the answer's start: a trigger anchored there (`\A`)
    /// cannot match any more.
    cut: bool,
}

impl Triggers {
    /// How far back a trigger's match may start.
    const WINDOW: usize = 512;

    fn new(triggers: Vec<regex::Regex>) -> Self {
        Triggers {
            triggers,
            window: String::new(),
            cut: false,
        }
    }

    /// Takes the next text; returns the text from the first trigger's match on, once one
    /// matches.
    fn push(&mut self, text: &str) -> Option<String> {
        self.window.push_str(text);
        // Past a cut, matches start after the window's first character, where `\A` never
        // matches.
        let from = match (self.cut, self.window.chars().next()) {
            (true, Some(c)) => c.len_utf8(),
            _ => 0,
        };
        let found = self
            .triggers
            .iter()
            .filter_map(|t| t.find_at(&self.window, from).map(|m| m.start()))
            .min();
        if let Some(at) = found {
            return Some(self.window[at..].to_owned());
        }
        let keep = Self::WINDOW;
        if self.window.len() > keep {
            let mut cut = self.window.len() - keep;
            while !self.window.is_char_boundary(cut) {
                cut -= 1;
            }
            self.window.drain(..cut);
            self.cut = true;
        }
        None
    }
}

struct Slot {
    seq: i32,
    /// Tokens whose KV is in the cache for this sequence, at positions `0..len`.
    cached: Vec<LlamaToken>,
    /// The adapter `cached` was computed under (`None`: the base model).
    adapter: Option<u64>,
    active: Option<Active>,
    last_used: u64,
}

struct Engine<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    shared: Arc<Shared>,
    slots: Vec<Slot>,
    batch: LlamaBatch<'static>,
    batch_size: usize,
    context_limit: usize,
    /// The model's end-of-generation tokens, banned under `ignore_eos`.
    end_tokens: Vec<LlamaToken>,
    tick: u64,
    adapters: HashMap<u64, LoadedAdapter>,
    /// The adapter set on the context now.
    current: Option<u64>,
    /// The group being served, and for how many steps it has been.
    group: Option<u64>,
    group_steps: u32,
    /// Step counter, and the step each group was last served at.
    steps: u64,
    served: HashMap<Option<u64>, u64>,
}

/// `log softmax(logits)` at `tokens`, computed in f64 over the whole vocabulary.
fn log_softmax_at(logits: &[f32], tokens: &[LlamaToken]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    let log_z = f64::from(max) + sum.ln();
    tokens
        .iter()
        .map(|t| {
            logits
                .get(t.0 as usize)
                .map_or(f32::NEG_INFINITY, |&l| (f64::from(l) - log_z) as f32)
        })
        .collect()
}

fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn random_seed() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u32
}

/// The model's end-of-generation tokens, found once per engine.
fn end_tokens(model: &LlamaModel) -> Vec<LlamaToken> {
    let vocab = model.vocab();
    (0..model.n_vocab())
        .map(LlamaToken)
        .filter(|&t| vocab.is_eog(t))
        .collect()
}

/// `end_tokens`: the model's end-of-generation tokens (see [`end_tokens`]).
fn build_sampler(
    n_vocab: i32,
    params: &SamplingParams,
    matcher: Option<llguidance::Matcher>,
    end_tokens: &[LlamaToken],
) -> LlamaSampler {
    let mut chain = Vec::new();
    // `ignore_eos`: the end-of-generation tokens are never sampled, so the answer goes on in
    // text (as llama-server does), instead of filling up with tokens that write nothing. Not
    // under a constraint, whose end may need one.
    if params.ignore_eos && matcher.is_none() && !end_tokens.is_empty() {
        let banned: Vec<LlamaLogitBias> = end_tokens
            .iter()
            .map(|&t| LlamaLogitBias::new(t, f32::NEG_INFINITY))
            .collect();
        chain.push(LlamaSampler::logit_bias(n_vocab, &banned));
    }
    if params.frequency_penalty != 0.0 || params.presence_penalty != 0.0 {
        chain.push(LlamaSampler::penalties(
            n_vocab,
            256,
            1.0,
            params.frequency_penalty,
            params.presence_penalty,
        ));
    }
    // The constraint masks the logits before any truncation or sampling.
    if let Some(matcher) = matcher {
        chain.push(LlamaSampler::from(matcher));
    }
    if params.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        if params.top_k > 0 {
            chain.push(LlamaSampler::top_k(params.top_k));
        }
        if params.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(params.top_p, 1));
        }
        if params.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(params.min_p, 1));
        }
        chain.push(LlamaSampler::temp(params.temperature));
        let seed = params.seed.map(|s| s as u32).unwrap_or_else(random_seed);
        chain.push(LlamaSampler::dist(seed));
    }
    LlamaSampler::chain_simple(chain)
}

impl<'m> Engine<'m> {
    fn new(
        model: &'m LlamaModel,
        ctx: LlamaContext<'m>,
        shared: Arc<Shared>,
        options: &LlmOptions,
    ) -> Self {
        let batch_size = options.batch_size as usize;
        Engine {
            model,
            ctx,
            slots: (0..options.max_sequences)
                .map(|i| Slot {
                    seq: i as i32,
                    cached: Vec::new(),
                    adapter: None,
                    active: None,
                    last_used: 0,
                })
                .collect(),
            batch: LlamaBatch::new(batch_size, 1),
            batch_size,
            context_limit: shared.info.context_limit as usize,
            end_tokens: end_tokens(model),
            shared,
            tick: 0,
            adapters: HashMap::new(),
            current: None,
            group: None,
            group_steps: 0,
            steps: 0,
            served: HashMap::new(),
        }
    }

    fn active_count(&self) -> usize {
        self.slots.iter().filter(|s| s.active.is_some()).count()
    }

    fn run(mut self, mut messages: mpsc::UnboundedReceiver<Message>) {
        let mut waiting = crate::turns::Turns::<Job>::default();
        loop {
            if self.active_count() == 0 && waiting.is_empty() {
                match messages.blocking_recv() {
                    Some(message) => self.on_message(message, &mut waiting),
                    None => break,
                }
            }
            while let Ok(message) = messages.try_recv() {
                self.on_message(message, &mut waiting);
            }
            while self.active_count() < self.slots.len() {
                match waiting.pop() {
                    Some(job) => self.admit(job),
                    None => break,
                }
            }
            self.drop_cancelled();
            if self.active_count() > 0 {
                self.step();
            }
        }
        self.set_adapter(None);
        for (_, loaded) in self.adapters.drain() {
            super::lora::free(loaded.adapter);
        }
    }

    fn on_message(&mut self, message: Message, waiting: &mut crate::turns::Turns<Job>) {
        match message {
            Message::Generate(job) => waiting.push(&job.owner.clone(), *job),
            Message::LoadAdapter {
                id,
                path,
                scale,
                reply,
            } => {
                let loaded = super::lora::load(self.model, &path)
                    .map(|adapter| {
                        self.adapters.insert(id, LoadedAdapter { adapter, scale });
                        self.shared
                            .gauges
                            .loaded_adapters
                            .store(self.adapters.len(), Ordering::Relaxed);
                    })
                    .map_err(|reason| InferError::InvalidModel {
                        path: path.clone(),
                        reason,
                    });
                if loaded.is_ok() {
                    tracing::debug!(id, path = %path.display(), "adapter loaded");
                }
                let _ = reply.send(loaded);
            }
            Message::UnloadAdapter(id) => {
                if self.current == Some(id) {
                    self.set_adapter(None);
                }
                // Caches computed under it can never be reused: give their cells back.
                for slot in self.slots.iter_mut() {
                    if slot.adapter == Some(id) && slot.active.is_none() {
                        let _ = self
                            .ctx
                            .clear_kv_cache_seq(Some(slot.seq as u32), None, None);
                        slot.cached.clear();
                        slot.adapter = None;
                    }
                }
                self.served.remove(&Some(id));
                if let Some(loaded) = self.adapters.remove(&id) {
                    super::lora::free(loaded.adapter);
                    self.shared
                        .gauges
                        .loaded_adapters
                        .store(self.adapters.len(), Ordering::Relaxed);
                    tracing::debug!(id, "adapter unloaded");
                }
            }
        }
    }

    /// Sets `adapter` on the context (`None`: the base model) unless it is already set.
    fn set_adapter(&mut self, adapter: Option<u64>) -> bool {
        if self.current == adapter {
            return true;
        }
        let done = match adapter {
            Some(id) => match self.adapters.get_mut(&id) {
                Some(loaded) => self
                    .ctx
                    .lora_adapter_set(&mut loaded.adapter, loaded.scale)
                    .is_ok(),
                None => false,
            },
            None => match self.current.and_then(|id| self.adapters.get_mut(&id)) {
                Some(loaded) => self.ctx.lora_adapter_remove(&mut loaded.adapter).is_ok(),
                None => true,
            },
        };
        if done {
            self.current = adapter;
        }
        done
    }

    /// The group of sequences this step decodes: the current one for up to [`QUANTUM`]
    /// steps while another waits, then the one served least recently.
    fn pick_group(&mut self) -> Option<Option<u64>> {
        let mut groups: Vec<Option<u64>> = self
            .slots
            .iter()
            .filter_map(|s| s.active.as_ref().map(Active::adapter_id))
            .collect();
        groups.sort_unstable();
        groups.dedup();
        if groups.is_empty() {
            return None;
        }
        let staying = groups.contains(&self.group);
        if staying && (groups.len() == 1 || self.group_steps < QUANTUM) {
            return Some(self.group);
        }
        let next = groups
            .iter()
            .copied()
            .filter(|g| !staying || *g != self.group)
            .min_by_key(|g| (self.served.get(g).copied().unwrap_or(0), *g))
            .expect("at least one other group");
        self.group = next;
        self.group_steps = 0;
        Some(next)
    }

    fn admit(&mut self, job: Job) {
        self.shared
            .gauges
            .queued_requests
            .fetch_sub(1, Ordering::Relaxed);
        if job.events.is_closed() {
            return; // the client left while waiting
        }
        let on_start = job.started;
        self.tick += 1;
        let prompt = job.prompt;
        let adapter = job.adapter.as_ref().map(|a| a.id);
        // The sequence whose cache shares the longest prefix with this prompt, busy or not,
        // computed under the same adapter.
        let (best, best_len) = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let len = if s.adapter == adapter {
                    common_prefix(&s.cached, &prompt)
                } else {
                    0
                };
                (i, len)
            })
            .max_by_key(|&(i, len)| (len, self.slots[i].active.is_none()))
            .expect("at least one slot");
        // At least one prompt token must be computed to get logits for the first sample.
        let reuse = best_len.min(prompt.len() - 1);
        let target = if self.slots[best].active.is_none() {
            best
        } else {
            self.slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.active.is_none())
                .min_by_key(|(_, s)| s.last_used)
                .map(|(i, _)| i)
                .expect("admit is only called with a free slot")
        };
        let target_seq = self.slots[target].seq;
        let mut memory_ok = true;
        if target == best {
            memory_ok &= self
                .ctx
                .clear_kv_cache_seq(Some(target_seq as u32), Some(reuse as u32), None)
                .unwrap_or(false);
            self.slots[target].cached.truncate(reuse);
        } else {
            memory_ok &= self
                .ctx
                .clear_kv_cache_seq(Some(target_seq as u32), None, None)
                .unwrap_or(false);
            self.slots[target].cached.clear();
            if reuse > 0 {
                let src = self.slots[best].seq;
                memory_ok &= self
                    .ctx
                    .kv_cache_seq_cp(src, target_seq, Some(0), Some(reuse as u32))
                    .is_ok();
                let prefix = self.slots[best].cached[..reuse].to_vec();
                self.slots[target].cached = prefix;
            }
        }
        if !memory_ok {
            // Could not trim this sequence's cache: start it from scratch.
            let _ = self
                .ctx
                .clear_kv_cache_seq(Some(target_seq as u32), None, None);
            self.slots[target].cached.clear();
        }
        self.slots[target].adapter = adapter;
        let reused = self.slots[target].cached.len();
        // The fallback template's end-of-turn text stands in for an end-of-generation token,
        // so `ignore_eos` goes past it as it goes past the tokens.
        let implied = if job.params.ignore_eos {
            Vec::new()
        } else {
            self.shared.template.implied_stops()
        };
        let stops = StopMatcher::new(job.params.stop.iter().cloned().chain(implied).collect());
        let (matcher, lazy) = match job.matcher {
            Some(matcher) if !job.triggers.is_empty() => (
                None,
                Some(Lazy {
                    triggers: Triggers::new(job.triggers),
                    matcher,
                }),
            ),
            matcher => (matcher, None),
        };
        let shadow = matcher.as_ref().map(llguidance::Matcher::deep_clone);
        let sampler = build_sampler(self.model.n_vocab(), &job.params, matcher, &self.end_tokens);
        self.slots[target].active = Some(Active {
            events: job.events,
            prefill_pos: reused,
            cached_prompt_tokens: reused,
            prompt,
            sampler,
            shadow,
            lazy,
            preserve: job.preserve,
            score: job.score,
            pending: None,
            generated: 0,
            max_tokens: job.max_tokens,
            ignore_eos: job.params.ignore_eos,
            params: job.params,
            decoder: Utf8Decoder::default(),
            stops,
            submitted: job.submitted,
            started: Instant::now(),
            first_token: None,
            logits_index: None,
            added: 0,
            admitted_at: self.tick,
            adapter: job.adapter,
        });
        if let Some(on_start) = on_start {
            let _ = on_start.send(());
        }
        self.slots[target].last_used = self.tick;
        self.shared
            .gauges
            .active_sequences
            .fetch_add(1, Ordering::Relaxed);
    }

    fn drop_cancelled(&mut self) {
        for i in 0..self.slots.len() {
            let closed = self.slots[i]
                .active
                .as_ref()
                .is_some_and(|a| a.events.is_closed());
            if closed {
                self.release(i);
            }
        }
    }

    /// Frees a slot's sequence for the next request; its cache stays for prefix reuse. Returns
    /// the request, so that its final event is sent only once the slot is free (a client that
    /// has its answer sees the engine's gauges already updated).
    fn release(&mut self, i: usize) -> Option<Active> {
        let active = self.slots[i].active.take();
        if active.is_some() {
            self.shared
                .gauges
                .active_sequences
                .fetch_sub(1, Ordering::Relaxed);
        }
        self.slots[i].last_used = self.tick;
        active
    }

    fn finish(&mut self, i: usize, reason: FinishReason) {
        let Some(active) = self.slots[i].active.as_mut() else {
            return;
        };
        let mut tail = active.decoder.finish();
        let mut stopped = false;
        if !tail.is_empty() {
            let outcome = active.stops.push(&tail);
            tail = outcome.emit;
            stopped = outcome.stopped;
        }
        if !stopped {
            tail.push_str(&active.stops.finish());
        }
        if !tail.is_empty() {
            let _ = active.events.send(GenerateEvent::Text(tail));
        }
        let now = Instant::now();
        let summary = GenerationSummary {
            finish_reason: reason,
            prompt_tokens: active.prompt.len(),
            cached_prompt_tokens: active.cached_prompt_tokens,
            completion_tokens: active.generated,
            queued: active.started - active.submitted,
            time_to_first_token: active.first_token.unwrap_or(now) - active.submitted,
            total: now - active.submitted,
            stop_sequence: active.stops.matched().map(str::to_owned),
        };
        if let Some(active) = self.release(i) {
            let _ = active.events.send(GenerateEvent::Done(summary));
        }
    }

    fn fail(&mut self, i: usize, error: InferError) {
        let seq = self.slots[i].seq;
        let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
        self.slots[i].cached.clear();
        if let Some(active) = self.release(i) {
            let _ = active.events.send(GenerateEvent::Failed(error));
        }
    }

    /// Fills the batch with the sequences of `group` (an adapter, or `None`: the base).
    fn fill_batch(
        &mut self,
        group: Option<u64>,
    ) -> Result<(), llama_cpp_2::llama_batch::BatchAddError> {
        self.batch.clear();
        let mut budget = self.batch_size;
        // Generating sequences first: one token each keeps every stream moving.
        for slot in self.slots.iter_mut() {
            let Some(active) = slot.active.as_mut() else {
                continue;
            };
            active.logits_index = None;
            active.added = 0;
            if active.adapter_id() != group {
                continue;
            }
            if let Some(token) = active.pending.take() {
                self.batch
                    .add(token, slot.cached.len() as i32, &[slot.seq], true)?;
                slot.cached.push(token);
                active.logits_index = Some(self.batch.n_tokens() - 1);
                active.added = 1;
                budget -= 1;
            }
        }
        // Then prompts, oldest request first, as much as fits.
        let mut order: Vec<usize> = (0..self.slots.len())
            .filter(|&i| {
                self.slots[i]
                    .active
                    .as_ref()
                    .is_some_and(|a| a.prefill_pos < a.prompt.len() && a.adapter_id() == group)
            })
            .collect();
        order.sort_by_key(|&i| self.slots[i].active.as_ref().map(|a| a.admitted_at));
        for i in order {
            if budget == 0 {
                break;
            }
            let slot = &mut self.slots[i];
            let active = slot.active.as_mut().expect("filtered");
            let take = (active.prompt.len() - active.prefill_pos).min(budget);
            for k in 0..take {
                let idx = active.prefill_pos + k;
                let last = idx == active.prompt.len() - 1;
                let token = active.prompt[idx];
                self.batch
                    .add(token, slot.cached.len() as i32, &[slot.seq], last)?;
                slot.cached.push(token);
                if last {
                    active.logits_index = Some(self.batch.n_tokens() - 1);
                }
            }
            active.prefill_pos += take;
            active.added += take;
            budget -= take;
        }
        Ok(())
    }

    /// Undoes the bookkeeping of a batch that failed to decode.
    fn undo_batch(&mut self) {
        for slot in self.slots.iter_mut() {
            let Some(active) = slot.active.as_mut() else {
                continue;
            };
            if active.added == 0 {
                continue;
            }
            let keep = slot.cached.len() - active.added;
            // A sequence adds either prompt tokens (before its first sample) or, once it
            // generates, exactly its pending sample.
            if active.generated > 0 {
                active.pending = slot.cached.last().copied();
            } else {
                active.prefill_pos -= active.added;
            }
            slot.cached.truncate(keep);
            let _ = self
                .ctx
                .clear_kv_cache_seq(Some(slot.seq as u32), Some(keep as u32), None);
            active.added = 0;
            active.logits_index = None;
        }
    }

    fn step(&mut self) {
        let Some(group) = self.pick_group() else {
            return;
        };
        if !self.set_adapter(group) {
            for i in 0..self.slots.len() {
                let in_group = self.slots[i]
                    .active
                    .as_ref()
                    .is_some_and(|a| a.adapter_id() == group);
                if in_group {
                    self.fail(
                        i,
                        InferError::Engine("llama.cpp could not apply the adapter".into()),
                    );
                }
            }
            return;
        }
        self.steps += 1;
        self.group_steps += 1;
        self.served.insert(group, self.steps);
        if let Err(e) = self.fill_batch(group) {
            for i in 0..self.slots.len() {
                if self.slots[i].active.is_some() {
                    self.fail(i, InferError::Engine(format!("batch: {e}")));
                }
            }
            return;
        }
        if self.batch.n_tokens() == 0 {
            return;
        }
        match self.ctx.decode(&mut self.batch) {
            Ok(()) => {}
            Err(DecodeError::NoKvCacheSlot) => {
                self.undo_batch();
                self.make_room();
                return;
            }
            Err(e) => {
                self.undo_batch();
                for i in 0..self.slots.len() {
                    if self.slots[i].active.is_some() {
                        self.fail(i, InferError::Engine(format!("llama.cpp decode: {e}")));
                    }
                }
                return;
            }
        }
        for i in 0..self.slots.len() {
            let Some(idx) = self.slots[i].active.as_ref().and_then(|a| a.logits_index) else {
                continue;
            };
            let active = self.slots[i].active.as_mut().expect("checked");
            if !active.score.is_empty() {
                let logprobs = log_softmax_at(self.ctx.get_logits_ith(idx), &active.score);
                active.first_token = Some(Instant::now());
                let _ = active.events.send(GenerateEvent::Logprobs(logprobs));
                self.finish(i, FinishReason::Stop);
                continue;
            }
            let token = active.sampler.sample(&self.ctx, idx);
            if let Some(shadow) = active.shadow.as_mut() {
                let escaped = if shadow.is_stopped() {
                    // Done: only the end may follow.
                    !self.model.vocab().is_eog(token)
                } else {
                    shadow.consume_token(token.0.cast_unsigned()).is_err()
                };
                if escaped {
                    let why = shadow
                        .get_error()
                        .unwrap_or_else(|| "a token after its end".into());
                    self.fail(
                        i,
                        InferError::Engine(format!(
                            "the answer left its constraint ({why}); it was stopped"
                        )),
                    );
                    continue;
                }
            }
            self.on_token(i, token);
        }
    }

    /// The KV cache is full: drop idle caches first, then the newest request.
    fn make_room(&mut self) {
        let mut freed = false;
        for slot in self.slots.iter_mut() {
            if slot.active.is_none() && !slot.cached.is_empty() {
                let _ = self
                    .ctx
                    .clear_kv_cache_seq(Some(slot.seq as u32), None, None);
                slot.cached.clear();
                freed = true;
            }
        }
        if freed {
            return;
        }
        let newest = (0..self.slots.len())
            .filter_map(|i| self.slots[i].active.as_ref().map(|a| (i, a.admitted_at)))
            .max_by_key(|&(_, t)| t)
            .map(|(i, _)| i);
        if let Some(i) = newest {
            let context_length = self.ctx.n_ctx() as usize;
            self.fail(
                i,
                InferError::Overloaded {
                    capacity: context_length,
                },
            );
        }
    }

    /// A lazy constraint's trigger was written: the constraint takes over from `from` (the
    /// text from the trigger on, which it reads first). When that text already breaks it
    /// (the trigger ended in the middle of something else) the answer stays free, and what
    /// it writes is checked by whoever reads it.
    fn start_constraint(
        model: &LlamaModel,
        active: &mut Active,
        mut matcher: llguidance::Matcher,
        from: &str,
    ) {
        let tokens: Vec<u32> = model
            .vocab()
            .tokenize(from.as_bytes(), false, true)
            .into_iter()
            .map(|t| t.0.cast_unsigned())
            .collect();
        if matcher.consume_tokens(&tokens).is_err() {
            return;
        }
        active.shadow = Some(matcher.deep_clone());
        active.sampler = build_sampler(model.n_vocab(), &active.params, Some(matcher), &[]);
    }

    fn on_token(&mut self, i: usize, token: LlamaToken) {
        let vocab = self.model.vocab();
        let context_limit = self.context_limit;
        let slot = &mut self.slots[i];
        let active = slot.active.as_mut().expect("on_token for an active slot");
        if active.first_token.is_none() {
            active.first_token = Some(Instant::now());
        }
        if vocab.is_eog(token) && !active.ignore_eos {
            self.finish(i, FinishReason::Stop);
            return;
        }
        active.generated += 1;
        let special = active.preserve.contains(&token);
        let piece = vocab.token_to_piece(token, special, None);
        let text = active.decoder.push(&piece);
        if let Some(from) = active
            .lazy
            .as_mut()
            .and_then(|lazy| lazy.triggers.push(&text))
        {
            let lazy = active.lazy.take().expect("just pushed");
            Self::start_constraint(self.model, active, lazy.matcher, &from);
        }
        let outcome = active.stops.push(&text);
        if !outcome.emit.is_empty()
            && active
                .events
                .send(GenerateEvent::Text(outcome.emit))
                .is_err()
        {
            self.release(i); // the client hung up
            return;
        }
        if outcome.stopped {
            self.finish(i, FinishReason::Stop);
        } else if active.generated >= active.max_tokens || slot.cached.len() + 1 >= context_limit {
            self.finish(i, FinishReason::Length);
        } else {
            active.pending = Some(token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Triggers;

    /// A trigger anchored at the answer's start matches only there: not later in the text,
    /// not where the window was cut; an unanchored one matches anywhere.
    #[test]
    fn an_anchored_trigger_matches_only_at_the_answer_start() {
        let anchored = || vec![regex::Regex::new("\\Aget_order\n").unwrap()];
        let mut at_start = Triggers::new(anchored());
        assert_eq!(at_start.push("get_or"), None);
        assert_eq!(at_start.push("der\n{").as_deref(), Some("get_order\n{"));
        let mut later = Triggers::new(anchored());
        assert_eq!(later.push("all\nI can call get_order\n for you"), None);
        // Cut so that the window starts where the trigger's text does: it is not the
        // answer's start.
        let mut cut = Triggers::new(anchored());
        assert_eq!(cut.push(&"x".repeat(600)), None);
        let tail = format!("get_order\n{}", "z".repeat(Triggers::WINDOW - 10));
        assert_eq!(cut.push(&tail), None);
        assert!(
            cut.window.starts_with("get_order\n"),
            "the window starts there"
        );
        assert_eq!(cut.push("z"), None);
        let mut anywhere = Triggers::new(vec![regex::Regex::new(">>>get_order\n").unwrap()]);
        assert_eq!(anywhere.push(&"w".repeat(600)), None);
        assert_eq!(
            anywhere.push(">>>get_order\n").as_deref(),
            Some(">>>get_order\n")
        );
    }
}
