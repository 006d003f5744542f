//! The LLM engine: any GGUF llama.cpp loads, on an owned thread behind a cloneable
//! [`LlmHandle`].
//!
//! One llama.cpp context serves every request: concurrent requests are separate sequences
//! decoded together in one batch per step (continuous batching: a request joins or leaves
//! between steps), and a new request reuses the KV cache of any sequence that shares its
//! prompt prefix (a system prompt), so that prefix is not computed again.

pub mod chat;
mod engine;
mod lora;
mod pyjinja;
pub mod text;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc;

use crate::InferError;
pub use chat::ChatTemplate;

/// The process-wide llama.cpp backend (it may be initialised only once).
pub(crate) fn backend() -> Result<&'static LlamaBackend, InferError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let mut backend = LlamaBackend::init().map_err(|e| e.to_string())?;
            if std::env::var_os("HEARTH_LLAMA_LOG").is_none() {
                backend.void_logs();
            }
            Ok(backend)
        })
        .as_ref()
        .map_err(|e| InferError::Engine(format!("llama.cpp backend: {e}")))
}

/// How the engine runs a model.
#[derive(Debug, Clone)]
pub struct LlmOptions {
    /// Compute threads. More OpenMP threads than free cores makes llama.cpp 3-4x slower, so
    /// the default is the cores this process may use.
    pub threads: usize,
    /// KV cache cells shared by all sequences (tokens of context in total).
    pub context_length: u32,
    /// Sequences decoded together (concurrent requests in flight).
    pub max_sequences: usize,
    /// Most tokens submitted to one llama.cpp decode call.
    pub batch_size: u32,
    /// Requests that may wait for a free sequence before new ones are refused.
    pub queue_capacity: usize,
    /// How long a request may wait for a free sequence before it is refused
    /// ([`GenerationStream::admitted`] answers [`InferError::QueueTimeout`]).
    pub max_queue_wait: std::time::Duration,
    pub flash_attention: FlashAttention,
    /// A chat template (Jinja source) that replaces the one the GGUF file carries, as
    /// llama-server's `--chat-template-file` does.
    pub chat_template: Option<String>,
}

/// Whether llama.cpp computes attention with its fused flash-attention kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlashAttention {
    /// On for CPU-only builds: only then is a greedy or seeded answer the same whatever the
    /// KV cache holds and whatever shares the batch (without it, a prompt whose prefix comes
    /// from the cache gives another text than the same prompt computed cold). Measured here:
    /// no cost single-stream or for a cached prefix's first token; 8 concurrent streams
    /// decode 11 % (Qwen2.5-0.5B) to 25 % (SmolLM2-135M) slower. llama.cpp's choice when
    /// built with a GPU backend.
    #[default]
    Auto,
    On,
    Off,
}

impl FlashAttention {
    /// llama.cpp's `llama_flash_attn_type` value.
    pub(crate) fn llama_policy(self) -> i32 {
        const AUTO: i32 = -1;
        const DISABLED: i32 = 0;
        const ENABLED: i32 = 1;
        match self {
            FlashAttention::On => ENABLED,
            FlashAttention::Off => DISABLED,
            FlashAttention::Auto if cfg!(any(feature = "cuda", feature = "metal")) => AUTO,
            FlashAttention::Auto => ENABLED,
        }
    }
}

impl Default for LlmOptions {
    fn default() -> Self {
        LlmOptions {
            threads: crate::available_cores(),
            context_length: 8192,
            max_sequences: 8,
            batch_size: 512,
            queue_capacity: 64,
            max_queue_wait: std::time::Duration::from_secs(10),
            flash_attention: FlashAttention::Auto,
            chat_template: None,
        }
    }
}

/// Sampling parameters of one request, already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// `None`: until the context limit or an end-of-generation token.
    pub max_tokens: Option<u32>,
    /// 0 means greedy.
    pub temperature: f32,
    pub top_p: f32,
    /// 0 disables top-k.
    pub top_k: i32,
    pub min_p: f32,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// Keep generating past end-of-generation tokens (benchmarks), as llama.cpp and vLLM allow.
    pub ignore_eos: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            max_tokens: None,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            seed: None,
            stop: Vec::new(),
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            ignore_eos: false,
        }
    }
}

/// The float sampling parameters and the range each must be in, the way OpenAI documents them.
pub const FLOAT_RANGES: [(&str, FloatRange); 5] = [
    ("temperature", FloatRange::Closed(0.0, 2.0)),
    ("top_p", FloatRange::OpenBelow(0.0, 1.0)),
    ("min_p", FloatRange::Closed(0.0, 1.0)),
    ("presence_penalty", FloatRange::Closed(-2.0, 2.0)),
    ("frequency_penalty", FloatRange::Closed(-2.0, 2.0)),
];

/// A range a float parameter must be in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FloatRange {
    /// `low ≤ v ≤ high`.
    Closed(f64, f64),
    /// `low < v ≤ high`.
    OpenBelow(f64, f64),
}

/// Checks float sampling parameter `param` (a name of [`FLOAT_RANGES`]); the error names it.
/// Requests arrive as f64: checking them before they are narrowed to f32 keeps a value just
/// past a bound from rounding onto it.
pub fn check_float(param: &str, value: f64) -> Result<(), InferError> {
    let Some((_, range)) = FLOAT_RANGES.iter().find(|(name, _)| *name == param) else {
        return Ok(());
    };
    let (ok, message) = match *range {
        FloatRange::Closed(low, high) => (
            (low..=high).contains(&value),
            format!("must be between {low} and {high}"),
        ),
        FloatRange::OpenBelow(low, high) => (
            value > low && value <= high,
            format!("must be greater than {low} and at most {high}"),
        ),
    };
    if ok {
        Ok(())
    } else {
        Err(InferError::InvalidParameter {
            param: param.to_owned(),
            message,
        })
    }
}

impl SamplingParams {
    /// Checks ranges the way OpenAI documents them; the error names the field.
    pub fn validate(&self) -> Result<(), InferError> {
        let invalid = |param: &str, message: &str| {
            Err(InferError::InvalidParameter {
                param: param.to_owned(),
                message: message.to_owned(),
            })
        };
        for (param, value) in [
            ("temperature", self.temperature),
            ("top_p", self.top_p),
            ("min_p", self.min_p),
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            check_float(param, f64::from(value))?;
        }
        if self.top_k < 0 {
            return invalid("top_k", "must be 0 (disabled) or positive");
        }
        if self.max_tokens == Some(0) {
            return invalid("max_tokens", "must be at least 1");
        }
        if self.stop.len() > 4 {
            return invalid("stop", "at most 4 stop sequences");
        }
        Ok(())
    }
}

/// A constraint on the generated text, enforced token by token (llguidance).
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    /// Any JSON object.
    JsonObject,
    /// JSON valid against this JSON Schema.
    JsonSchema(serde_json::Value),
    /// Text in this Lark grammar (llguidance's dialect: `start` is the top rule, strings are
    /// JSON-quoted, regular expressions between slashes).
    Lark(String),
}

/// Whether `text` is a whole sentence of the Lark grammar `lark` (llguidance's dialect), read
/// byte by byte with no model's vocabulary: for checking grammars against known text. A
/// grammar that does not compile is an error that says why.
pub fn lark_accepts(lark: &str, text: &str) -> Result<bool, InferError> {
    let env = llguidance::toktrie::ApproximateTokEnv::single_byte_env();
    let invalid = |e: String| InferError::InvalidParameter {
        param: "grammar".into(),
        message: e,
    };
    let mut factory =
        llguidance::ParserFactory::new_simple(&env).map_err(|e| invalid(e.to_string()))?;
    factory.quiet();
    let grammar = llguidance::api::TopLevelGrammar::from_lark(lark.to_owned());
    let parser = factory
        .create_parser(grammar)
        .map_err(|e| invalid(e.to_string()))?;
    let mut matcher = llguidance::Matcher::new(Ok(parser));
    let tokens = env.tokenize_bytes(text.as_bytes());
    Ok(matcher.consume_tokens(&tokens).is_ok() && matcher.is_accepting().unwrap_or(false))
}

/// One generation: prompt tokens in, a stream of text out.
#[derive(Debug, Clone, Default)]
pub struct GenerateRequest {
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
    pub constraint: Option<Constraint>,
    /// When not empty, `constraint` is lazy (a tool call in `auto` mode): the answer is free
    /// until its text matches one of these regular expressions, and from the match's first
    /// byte on it must follow the constraint, whose grammar therefore starts with what the
    /// trigger matches. A match is looked for in the last 512 bytes of the answer. A trigger
    /// that is a control token must also be in `preserve`, or it never shows in the text.
    pub triggers: Vec<String>,
    /// Control tokens that keep their text in the answer (decoding drops them otherwise):
    /// a family's tool-call markers such as `[TOOL_CALLS]` or `<|python_tag|>`. Each is the
    /// token's text; one that is not a single token of this model is ignored.
    pub preserve: Vec<String>,
    /// When not empty, nothing is generated: the engine reads the prompt and answers the
    /// log-probabilities of these tokens as the next token ([`GenerateEvent::Logprobs`], in
    /// this order), then `Done` with no completion tokens. Rerankers judge this way.
    pub score: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token, a stop string, or a completed constraint.
    Stop,
    /// `max_tokens` or the context limit.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// How a generation went, sent once at its end.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationSummary {
    pub finish_reason: FinishReason,
    pub prompt_tokens: usize,
    /// Prompt tokens whose KV was reused from the cache instead of computed.
    pub cached_prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Time spent waiting for a free sequence.
    pub queued: Duration,
    /// From submission to the first generated token.
    pub time_to_first_token: Duration,
    /// From submission to the end.
    pub total: Duration,
    /// The stop string that ended the answer, when one did.
    pub stop_sequence: Option<String>,
}

#[derive(Debug)]
pub enum GenerateEvent {
    /// The next piece of generated text (complete UTF-8, stop strings removed).
    Text(String),
    /// Log-probabilities of a scoring request's tokens ([`GenerateRequest::score`]).
    Logprobs(Vec<f32>),
    Done(GenerationSummary),
    Failed(InferError),
}

/// The receiving end of a generation. Dropping it cancels the generation and frees its
/// sequence at the next engine step.
#[derive(Debug)]
pub struct GenerationStream {
    pub prompt_tokens: usize,
    events: mpsc::UnboundedReceiver<GenerateEvent>,
    /// Fires when the engine takes the generation into a sequence.
    started: Option<tokio::sync::oneshot::Receiver<()>>,
    max_queue_wait: std::time::Duration,
}

impl GenerationStream {
    /// Waits until the engine has taken this generation into a sequence (its prompt is being
    /// read), for at most the engine's `max_queue_wait`. A server calls this before it
    /// answers 200, so a request that would wait too long is refused while it still can be:
    /// [`InferError::QueueTimeout`], and dropping the stream takes it out of the queue.
    pub async fn admitted(&mut self) -> Result<(), InferError> {
        let Some(started) = self.started.take() else {
            return Ok(());
        };
        match tokio::time::timeout(self.max_queue_wait, started).await {
            // Started, or never will be (the engine failed it: its events say why).
            Ok(_) => Ok(()),
            Err(_) => Err(InferError::QueueTimeout {
                waited_ms: self.max_queue_wait.as_millis() as u64,
            }),
        }
    }

    /// The next event; `None` after `Done`/`Failed`.
    pub async fn next(&mut self) -> Option<GenerateEvent> {
        self.events.recv().await
    }

    /// Waits for a scoring request's log-probabilities ([`GenerateRequest::score`]).
    pub async fn logprobs(mut self) -> Result<(Vec<f32>, GenerationSummary), InferError> {
        let mut logprobs = None;
        while let Some(event) = self.next().await {
            match event {
                GenerateEvent::Logprobs(lp) => logprobs = Some(lp),
                GenerateEvent::Text(_) => {}
                GenerateEvent::Done(summary) => {
                    return logprobs
                        .map(|lp| (lp, summary))
                        .ok_or_else(|| InferError::Engine("the engine sent no scores".into()))
                }
                GenerateEvent::Failed(e) => return Err(e),
            }
        }
        Err(InferError::EngineStopped)
    }

    /// Waits for the whole generation.
    pub async fn collect(mut self) -> Result<(String, GenerationSummary), InferError> {
        let mut text = String::new();
        while let Some(event) = self.next().await {
            match event {
                GenerateEvent::Logprobs(_) => {}
                GenerateEvent::Text(t) => text.push_str(&t),
                GenerateEvent::Done(summary) => return Ok((text, summary)),
                GenerateEvent::Failed(e) => return Err(e),
            }
        }
        Err(InferError::EngineStopped)
    }
}

/// What is known about a loaded model.
#[derive(Debug, Clone)]
pub struct LlmInfo {
    pub name: String,
    pub path: PathBuf,
    pub architecture: Option<String>,
    pub context_train: u32,
    /// Prompt + completion tokens one request may use.
    pub context_limit: u32,
    pub vocab_size: u32,
    pub has_chat_template: bool,
}

/// Live engine figures for /metrics.
#[derive(Debug, Default)]
pub struct EngineGauges {
    pub active_sequences: AtomicUsize,
    pub queued_requests: AtomicUsize,
    /// LoRA adapters loaded into the engine now.
    pub loaded_adapters: AtomicUsize,
}

pub(crate) struct Shared {
    pub(crate) model: Arc<LlamaModel>,
    pub(crate) info: LlmInfo,
    pub(crate) template: ChatTemplate,
    pub(crate) gauges: EngineGauges,
    factory: OnceLock<Result<Arc<llguidance::ParserFactory>, String>>,
}

pub(crate) struct Job {
    pub(crate) prompt: Vec<LlamaToken>,
    pub(crate) params: SamplingParams,
    pub(crate) max_tokens: usize,
    pub(crate) matcher: Option<llguidance::Matcher>,
    /// The request's triggers: `matcher` waits until one of them is written.
    pub(crate) triggers: Vec<regex::Regex>,
    /// Control tokens decoded as their text.
    pub(crate) preserve: Vec<LlamaToken>,
    /// A scoring request's tokens ([`GenerateRequest::score`]).
    pub(crate) score: Vec<LlamaToken>,
    pub(crate) events: mpsc::UnboundedSender<GenerateEvent>,
    pub(crate) started: Option<tokio::sync::oneshot::Sender<()>>,
    /// Whose request this is (an API key or tenant; empty for the apps' own): waiting
    /// requests are served in turn by owner.
    pub(crate) owner: String,
    pub(crate) submitted: std::time::Instant,
    /// The LoRA adapter the request runs under (`None`: the base model). Held until the
    /// request ends, so the adapter is not unloaded under it.
    pub(crate) adapter: Option<Arc<AdapterBinding>>,
}

/// What the engine thread is sent.
pub(crate) enum Message {
    Generate(Box<Job>),
    /// Load the adapter at `path` under `id`; the reply says whether llama.cpp could.
    LoadAdapter {
        id: u64,
        path: PathBuf,
        scale: f32,
        reply: std::sync::mpsc::SyncSender<Result<(), InferError>>,
    },
    /// Nothing refers to adapter `id` any more: free it.
    UnloadAdapter(u64),
}

/// A LoRA adapter loaded into an engine; the engine frees it when the last handle bound to
/// it and the last request on it are gone.
pub(crate) struct AdapterBinding {
    pub(crate) id: u64,
    name: String,
    path: PathBuf,
    header: crate::adapter::AdapterHeader,
    jobs: mpsc::UnboundedSender<Message>,
}

impl Drop for AdapterBinding {
    fn drop(&mut self) {
        let _ = self.jobs.send(Message::UnloadAdapter(self.id));
    }
}

/// A LoRA adapter an [`LlmHandle`] generates with.
#[derive(Debug, Clone)]
pub struct AdapterInfo {
    pub name: String,
    pub path: PathBuf,
    pub header: crate::adapter::AdapterHeader,
}

/// A cloneable handle to a model running on its own thread: the base model, or (from
/// [`LlmHandle::load_adapter`]) the base model under one LoRA adapter, on the same engine.
#[derive(Clone)]
pub struct LlmHandle {
    shared: Arc<Shared>,
    jobs: mpsc::UnboundedSender<Message>,
    queue_capacity: usize,
    max_queue_wait: std::time::Duration,
    adapter: Option<Arc<AdapterBinding>>,
}

impl std::fmt::Debug for LlmHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmHandle")
            .field("info", &self.shared.info)
            .field("adapter", &self.adapter.as_ref().map(|a| &a.name))
            .finish()
    }
}

/// Adapter ids are never reused, so a KV cache computed under an unloaded adapter can never
/// be taken for another's.
static NEXT_ADAPTER: AtomicU64 = AtomicU64::new(1);

impl LlmHandle {
    /// Loads a GGUF model and starts its engine thread. Blocking (reads the weights): call it
    /// at start-up or from `spawn_blocking`.
    pub fn spawn(name: &str, path: &Path, options: LlmOptions) -> Result<Self, InferError> {
        if options.threads == 0 || options.max_sequences == 0 || options.batch_size == 0 {
            return Err(InferError::InvalidParameter {
                param: "llm options".into(),
                message: "threads, max_sequences and batch_size must be at least 1".into(),
            });
        }
        if options.max_sequences > options.batch_size as usize {
            return Err(InferError::InvalidParameter {
                param: "llm options".into(),
                message: "max_sequences cannot exceed batch_size (each step decodes one token per sequence)".into(),
            });
        }
        let backend = backend()?;
        if !path.is_file() {
            return Err(InferError::InvalidModel {
                path: path.to_owned(),
                reason: "no such file".into(),
            });
        }
        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
            .map_err(|e| InferError::InvalidModel {
                path: path.to_owned(),
                reason: format!("llama.cpp could not load it: {e}"),
            })?;
        let model = Arc::new(model);
        let template_source = match &options.chat_template {
            Some(source) => Some(source.clone()),
            None => model
                .chat_template(None)
                .ok()
                .and_then(|t| t.to_string().ok()),
        };
        let vocab = model.vocab();
        let piece = |token: LlamaToken| {
            if token.0 < 0 {
                String::new()
            } else {
                String::from_utf8_lossy(&vocab.token_to_piece(token, true, None)).into_owned()
            }
        };
        let template = ChatTemplate::new(
            template_source.as_deref(),
            piece(vocab.bos()),
            piece(vocab.eos()),
        )
        .map_err(|e| match e {
            InferError::InvalidModel { reason, .. } => InferError::InvalidModel {
                path: path.to_owned(),
                reason,
            },
            other => other,
        })?
        .for_model(name);
        let context_train = model.n_ctx_train();
        let info = LlmInfo {
            name: name.to_owned(),
            path: path.to_owned(),
            architecture: model.meta_val_str("general.architecture").ok(),
            context_train,
            context_limit: context_train.min(options.context_length),
            vocab_size: model.n_vocab().max(0) as u32,
            has_chat_template: template_source.is_some(),
        };
        let shared = Arc::new(Shared {
            model,
            info,
            template,
            gauges: EngineGauges::default(),
            factory: OnceLock::new(),
        });
        // Unbounded: the count of waiting requests is bounded by the queue gauge, taken
        // before a job is sent (see `generate_for`).
        let (jobs, rx) = mpsc::unbounded_channel();
        engine::start(shared.clone(), options.clone(), rx)?;
        Ok(LlmHandle {
            shared,
            jobs,
            queue_capacity: options.queue_capacity.max(1),
            max_queue_wait: options.max_queue_wait,
            adapter: None,
        })
    }

    /// Loads the LoRA adapter at `path` into this model's engine and returns a handle that
    /// generates under it (scaled by `scale`; 1 is the adapter as trained), while this
    /// handle and every other keep generating as before. The adapter is checked against the
    /// model first (architecture, each weight's shape: the error names both). It is freed
    /// when the returned handle, its clones and the requests made with them are all gone.
    /// Blocking (reads the adapter): call it from `spawn_blocking`.
    pub fn load_adapter(&self, name: &str, path: &Path, scale: f32) -> Result<Self, InferError> {
        if self.adapter.is_some() {
            return Err(InferError::InvalidParameter {
                param: "base".into(),
                message: format!(
                    "'{}' is itself an adapter; an adapter applies to a base model",
                    self.adapter_name().unwrap_or_default()
                ),
            });
        }
        if !scale.is_finite() {
            return Err(InferError::InvalidParameter {
                param: "scale".into(),
                message: "must be a finite number".into(),
            });
        }
        let header =
            crate::adapter::check_fits(path, &self.shared.info.path, &self.shared.info.name)?;
        let id = NEXT_ADAPTER.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.jobs
            .send(Message::LoadAdapter {
                id,
                path: path.to_owned(),
                scale,
                reply,
            })
            .map_err(|_| InferError::EngineStopped)?;
        answer.recv().map_err(|_| InferError::EngineStopped)??;
        Ok(LlmHandle {
            shared: self.shared.clone(),
            jobs: self.jobs.clone(),
            queue_capacity: self.queue_capacity,
            max_queue_wait: self.max_queue_wait,
            adapter: Some(Arc::new(AdapterBinding {
                id,
                name: name.to_owned(),
                path: path.to_owned(),
                header,
                jobs: self.jobs.clone(),
            })),
        })
    }

    /// The adapter's name when this handle generates under one.
    pub fn adapter_name(&self) -> Option<&str> {
        self.adapter.as_deref().map(|a| a.name.as_str())
    }

    /// The adapter this handle generates under, if any.
    pub fn adapter(&self) -> Option<AdapterInfo> {
        self.adapter.as_deref().map(|a| AdapterInfo {
            name: a.name.clone(),
            path: a.path.clone(),
            header: a.header.clone(),
        })
    }

    /// Requests that may wait for a sequence: more prompts than this in one request can
    /// never be queued together.
    pub fn queue_capacity(&self) -> usize {
        self.queue_capacity
    }

    pub fn info(&self) -> &LlmInfo {
        &self.shared.info
    }

    pub fn template(&self) -> &ChatTemplate {
        &self.shared.template
    }

    pub fn gauges(&self) -> &EngineGauges {
        &self.shared.gauges
    }

    /// Tokenizes text. `add_special` adds BOS where the model wants it; special tokens written
    /// in the text (`<|im_start|>`) are parsed as such.
    pub fn tokenize(&self, text: &str, add_special: bool) -> Vec<u32> {
        self.shared
            .model
            .vocab()
            .tokenize(text.as_bytes(), add_special, true)
            .into_iter()
            .map(|t| t.0 as u32)
            .collect()
    }

    /// Tokenizes a rendered chat prompt: BOS is added only when the model wants it and the
    /// template did not already write it.
    pub fn tokenize_chat(&self, prompt: &str) -> Vec<u32> {
        let vocab = self.shared.model.vocab();
        let bos_written = vocab.bos().0 >= 0 && {
            let bos = vocab.token_to_piece(vocab.bos(), true, None);
            !bos.is_empty() && prompt.as_bytes().starts_with(&bos)
        };
        self.tokenize(prompt, vocab.should_add_bos() && !bos_written)
    }

    /// The id of the control token written `text` (`[TOOL_CALLS]`, `<|python_tag|>`): a single
    /// token that decoding drops unless told to keep it. `None` for ordinary text and for
    /// tokens that decode as their text anyway (Qwen's `<tool_call>`).
    pub fn control_token(&self, text: &str) -> Option<u32> {
        self.control_token_id(text).map(|t| t.0 as u32)
    }

    fn control_token_id(&self, text: &str) -> Option<LlamaToken> {
        let vocab = self.shared.model.vocab();
        match vocab.tokenize(text.as_bytes(), false, true)[..] {
            [token] if vocab.token_to_piece(token, false, None).is_empty() => {
                (vocab.token_to_piece(token, true, None) == text.as_bytes()).then_some(token)
            }
            _ => None,
        }
    }

    /// Detokenizes tokens (for `echo`).
    pub fn detokenize(&self, tokens: &[u32]) -> String {
        let vocab = self.shared.model.vocab();
        let mut bytes = Vec::new();
        for &t in tokens {
            bytes.extend(vocab.token_to_piece(LlamaToken(t as i32), false, None));
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn parser_factory(&self) -> Result<Arc<llguidance::ParserFactory>, InferError> {
        self.shared
            .factory
            .get_or_init(|| {
                let env =
                    llama_cpp_2::sampling::LlamaSampler::llguidance_tok_env(&self.shared.model);
                llguidance::ParserFactory::new_simple(&env)
                    .map(|mut factory| {
                        // Errors are reported by the engine, not printed.
                        factory.quiet();
                        Arc::new(factory)
                    })
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|e| InferError::Engine(format!("constrained decoding unavailable: {e}")))
    }

    fn matcher(&self, constraint: &Constraint) -> Result<llguidance::Matcher, InferError> {
        let mut schema = match constraint {
            Constraint::JsonObject => serde_json::json!({ "type": "object" }),
            Constraint::JsonSchema(schema) => schema.clone(),
            Constraint::Lark(grammar) => {
                let grammar = llguidance::api::TopLevelGrammar::from_lark(grammar.clone());
                let parser = self.parser_factory()?.create_parser(grammar).map_err(|e| {
                    InferError::InvalidParameter {
                        param: "grammar".into(),
                        message: format!("the grammar cannot be enforced: {e}"),
                    }
                })?;
                return Ok(llguidance::Matcher::new(Ok(parser)));
            }
        };
        // Compact JSON: without this a small model pads the object with newlines forever.
        if let Some(obj) = schema.as_object_mut() {
            obj.entry("x-guidance").or_insert(serde_json::json!({
                "whitespace_flexible": false,
                "item_separator": ",",
                "key_separator": ":"
            }));
        }
        let grammar = llguidance::api::TopLevelGrammar::from_json_schema(schema);
        let parser = self.parser_factory()?.create_parser(grammar).map_err(|e| {
            InferError::InvalidParameter {
                param: "response_format".into(),
                message: format!("the JSON schema cannot be enforced: {e}"),
            }
        })?;
        Ok(llguidance::Matcher::new(Ok(parser)))
    }

    /// Submits a generation. Fails at once (never waits) when the prompt does not fit the
    /// context or the queue is full.
    pub fn generate(&self, request: GenerateRequest) -> Result<GenerationStream, InferError> {
        self.generate_for(request, "")
    }

    /// [`LlmHandle::generate`] on behalf of `owner` (an API key or tenant). Requests waiting
    /// for a sequence are taken in turn by owner, so one client's many requests do not keep
    /// another's waiting behind them all.
    pub fn generate_for(
        &self,
        request: GenerateRequest,
        owner: &str,
    ) -> Result<GenerationStream, InferError> {
        request.params.validate()?;
        let info = &self.shared.info;
        if request.prompt.is_empty() {
            return Err(InferError::InvalidParameter {
                param: "prompt".into(),
                message: "the prompt is empty".into(),
            });
        }
        if let Some(bad) = request.prompt.iter().find(|&&t| t >= info.vocab_size) {
            return Err(InferError::InvalidParameter {
                param: "prompt".into(),
                message: format!(
                    "token {bad} is outside the vocabulary of {} tokens",
                    info.vocab_size
                ),
            });
        }
        let limit = info.context_limit as usize;
        let prompt_tokens = request.prompt.len();
        let requested = request.params.max_tokens.map(|m| m as usize);
        if prompt_tokens + requested.unwrap_or(1) > limit {
            return Err(InferError::ContextOverflow {
                prompt_tokens,
                max_tokens: requested.unwrap_or(1),
                context_length: limit,
            });
        }
        let max_tokens = requested.unwrap_or(limit - prompt_tokens);
        let matcher = request
            .constraint
            .as_ref()
            .map(|c| self.matcher(c))
            .transpose()?;
        if !request.triggers.is_empty() && matcher.is_none() {
            return Err(InferError::InvalidParameter {
                param: "triggers".into(),
                message: "triggers need a constraint to start".into(),
            });
        }
        let triggers = request
            .triggers
            .iter()
            .map(|t| regex::Regex::new(t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| InferError::InvalidParameter {
                param: "triggers".into(),
                message: e.to_string(),
            })?;
        let preserve = request
            .preserve
            .iter()
            .filter_map(|text| self.control_token_id(text))
            .collect();
        if let Some(bad) = request.score.iter().find(|&&t| t >= info.vocab_size) {
            return Err(InferError::InvalidParameter {
                param: "score".into(),
                message: format!(
                    "token {bad} is outside the vocabulary of {} tokens",
                    info.vocab_size
                ),
            });
        }
        let score = request
            .score
            .iter()
            .map(|&t| LlamaToken(t as i32))
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let job = Job {
            prompt: request
                .prompt
                .iter()
                .map(|&t| LlamaToken(t as i32))
                .collect(),
            params: request.params,
            max_tokens,
            matcher,
            triggers,
            preserve,
            score,
            events: tx,
            started: Some(started_tx),
            owner: owner.to_owned(),
            submitted: std::time::Instant::now(),
            adapter: self.adapter.clone(),
        };
        // The engine moves jobs out of the channel into its own per-owner queues at every
        // step, so the bound is the count of requests waiting, taken before the job is sent.
        let queued = &self.shared.gauges.queued_requests;
        if queued.fetch_add(1, Ordering::Relaxed) >= self.queue_capacity {
            queued.fetch_sub(1, Ordering::Relaxed);
            return Err(InferError::Overloaded {
                capacity: self.queue_capacity,
            });
        }
        match self.jobs.send(Message::Generate(Box::new(job))) {
            Ok(()) => Ok(GenerationStream {
                prompt_tokens,
                events: rx,
                started: Some(started_rx),
                max_queue_wait: self.max_queue_wait,
            }),
            Err(_) => {
                queued.fetch_sub(1, Ordering::Relaxed);
                Err(InferError::EngineStopped)
            }
        }
    }
}
