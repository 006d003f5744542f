//! The encoder engine: BERT-family sentence-transformers models on candle, embedders and
//! cross-encoders.
//!
//! A cross-encoder is a sequence-classification checkpoint (`BertForSequenceClassification`,
//! `(XLM)RobertaForSequenceClassification`) in the sentence-transformers CrossEncoder layout:
//! it takes [`EmbedInput::Pair`]s (query and document read as one sequence, token types telling
//! them apart where the model has them, the longer text cut first to fit) and returns one
//! logit per label instead of a pooled vector; [`EmbeddingModel::score_activation`] says how a
//! logit becomes a score.
//!
//! A model directory in the sentence-transformers layout is loaded from `config.json`,
//! `model.safetensors`, `tokenizer.json`, the pooling module's `config.json` (mean / CLS / max /
//! mean-sqrt-len, as listed in `modules.json`; mean when absent) and, when `modules.json` lists a
//! `Normalize` module, L2 normalisation of the pooled vector.
//!
//! Behaviour callers rely on:
//! - **Truncation.** Inputs longer than [`EmbeddingModel::max_tokens`] (the smaller of
//!   `max_position_embeddings` and sentence-transformers' `max_seq_length`) are truncated to it,
//!   special tokens included, exactly as sentence-transformers does; nothing is rejected for
//!   being long. `prompt_tokens` counts the tokens actually embedded (after truncation, with the
//!   special tokens).
//! - **Token arrays.** [`EmbedInput::Tokens`] holds ids of the model's own tokenizer. The
//!   model's special tokens around the text (`[CLS]` … `[SEP]` for BERT) are optional: present or
//!   not, they are normalised to the same framing as text gets, so `tokenizer.encode(text)` with or
//!   without special tokens embeds to the same vector as `text`.
//! - **Validation.** An empty input list, an empty string, an empty token array and a token id
//!   outside the vocabulary are `InvalidParameter { param: "input" }`.
//!
//! How it is fast (docs/benchmarks.md, "Embeddings", has the figures and what else was tried):
//! - **Packed batches.** The dense layers run on the concatenated tokens of a batch's sequences,
//!   with no padding at all; attention runs per sequence, so it needs no mask.
//! - **Data parallelism.** Each compute thread runs whole forward passes on its own share of the
//!   batches, with single-threaded matrix products: on these short batches a 2-thread gemm is
//!   barely faster than a 1-thread one, while two 1-thread gemms side by side run at twice the
//!   rate.
//! - **AVX-512 gemm.** The matrix products go through candle to the `gemm` crate, whose AVX-512
//!   kernels we switch on with its `x86-v4` feature (run-time detected; AVX2 elsewhere).
//! - **Fused element-wise passes.** Bias, GELU, residual + LayerNorm, attention, pooling run as
//!   single passes in place, compiled for the CPU's vector width at run time (`pulp`).
//!
//! [`EmbedHandle`] is the actor the server talks to: one owned thread runs the model, requests
//! wait in a bounded queue, a full queue answers `Overloaded` at once, a request whose caller
//! went away is skipped, and requests already waiting when the engine frees up share forward
//! passes (each still validated and answered on its own).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};
use tokio::sync::{mpsc, oneshot};

use crate::InferError;

/// A failure of the embedding engine.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The forward pass failed (a tensor operation returned an error).
    #[error("embedding model failure: {0}")]
    Model(String),
    /// The tokenizer could not encode an input.
    #[error("tokenizer failure: {0}")]
    Tokenizer(String),
}

impl EmbedError {
    pub fn code(&self) -> hearth_types::ErrorCode {
        match self {
            EmbedError::Model(_) => hearth_types::ErrorCode::EmbeddingError,
            EmbedError::Tokenizer(_) => hearth_types::ErrorCode::TokenizerError,
        }
    }
}

fn model_error(e: candle_core::Error) -> InferError {
    InferError::Embed(EmbedError::Model(e.to_string()))
}

/// One input of an embedding request (OpenAI's `/v1/embeddings` accepts strings and arrays of
/// token ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbedInput {
    Text(String),
    /// Ids of the model's own tokenizer; the model's special tokens at the ends are optional.
    Tokens(Vec<u32>),
    /// A query and a document, encoded together as a cross-encoder reads them
    /// (`[CLS] query [SEP] document [SEP]`; the longer of the two is cut first to fit).
    /// Only a cross-encoder takes it.
    Pair(String, String),
}

impl From<&str> for EmbedInput {
    fn from(text: &str) -> Self {
        EmbedInput::Text(text.to_owned())
    }
}

impl From<String> for EmbedInput {
    fn from(text: String) -> Self {
        EmbedInput::Text(text)
    }
}

impl From<Vec<u32>> for EmbedInput {
    fn from(tokens: Vec<u32>) -> Self {
        EmbedInput::Tokens(tokens)
    }
}

/// The vectors of one request, in input order, and the tokens embedded to produce them.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    /// Tokens embedded, after truncation, special tokens included.
    pub prompt_tokens: usize,
}

/// How an embedding engine runs.
#[derive(Debug, Clone)]
pub struct EmbedOptions {
    /// Compute threads; each runs whole forward passes. Set it to the cores actually free: a
    /// thread on an oversubscribed core holds up the request it works on.
    pub threads: usize,
    /// Most sequences per forward pass. A request is split into at least one batch per thread,
    /// with similar token counts.
    pub max_batch: usize,
    /// Requests that may wait for the engine thread ([`EmbedHandle`] only); one more is answered
    /// `Overloaded`.
    pub queue_capacity: usize,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions {
            threads: crate::available_cores(),
            max_batch: 32,
            queue_capacity: 64,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration files
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct BertConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "default_hidden_act")]
    hidden_act: String,
    max_position_embeddings: usize,
    #[serde(default = "default_layer_norm_eps")]
    layer_norm_eps: f64,
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default)]
    position_embedding_type: Option<String>,
    #[serde(default = "default_type_vocab_size")]
    type_vocab_size: usize,
    /// RoBERTa's positions start after the padding index (`pad_token_id + 1`).
    #[serde(default)]
    pad_token_id: Option<usize>,
    #[serde(default)]
    architectures: Vec<String>,
    /// Labels of a sequence-classification head (a cross-encoder has one).
    #[serde(default)]
    id2label: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    num_labels: Option<usize>,
    /// What sentence-transformers v4+ writes for a CrossEncoder: the activation of the logits.
    #[serde(default)]
    sentence_transformers: Option<CrossEncoderSettings>,
}

#[derive(Debug, Deserialize, Default)]
struct CrossEncoderSettings {
    #[serde(default)]
    activation_fn: Option<String>,
}

fn default_type_vocab_size() -> usize {
    2
}

fn default_hidden_act() -> String {
    "gelu".to_owned()
}

fn default_layer_norm_eps() -> f64 {
    1e-12
}

#[derive(Debug, Deserialize)]
struct ModuleEntry {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Deserialize, Default)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

#[derive(Debug, Deserialize)]
struct TokenizerConfig {
    /// transformers writes a huge sentinel (1e30) when there is no limit.
    #[serde(default)]
    model_max_length: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

/// Pooling of the token vectors into one sentence vector; several modes concatenate in
/// sentence-transformers' order (CLS, max, mean, mean-sqrt-len).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pooling {
    cls: bool,
    max: bool,
    mean: bool,
    mean_sqrt_len: bool,
}

impl Pooling {
    fn modes(&self) -> usize {
        [self.cls, self.max, self.mean, self.mean_sqrt_len]
            .iter()
            .filter(|on| **on)
            .count()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activation {
    /// `gelu`: the exact, erf-based GELU.
    GeluErf,
    /// `gelu_new`, `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
    Relu,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, InferError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| InferError::io(format!("reading {}", path.display()), e))?;
    serde_json::from_str(&text).map_err(|e| InferError::InvalidModel {
        path: path.to_owned(),
        reason: format!("malformed JSON: {e}"),
    })
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

struct Layer {
    /// Query, key and value projections fused into one `[hidden, 3 * hidden]` matrix.
    qkv_w: Tensor,
    qkv_b: Vec<f32>,
    attn_out_w: Tensor,
    attn_out_b: Vec<f32>,
    attn_norm: Norm,
    inter_w: Tensor,
    inter_b: Vec<f32>,
    out_w: Tensor,
    out_b: Vec<f32>,
    out_norm: Norm,
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

struct Encoder {
    hidden: usize,
    heads: usize,
    eps: f32,
    act: Activation,
    word_embeddings: Vec<f32>,
    /// Position embedding plus the token-type-0 embedding, from the first position's row
    /// on (RoBERTa's positions start at `pad_token_id + 1`, BERT's at 0).
    position_embeddings: Vec<f32>,
    /// Token type 1 minus token type 0: added to the second text of a pair (BERT).
    second_segment: Option<Vec<f32>>,
    embed_norm: Norm,
    layers: Vec<Layer>,
}

/// What the model makes of the encoder's token vectors.
enum Head {
    /// A sentence embedding: the token vectors pooled, optionally L2-normalised.
    Pool { pooling: Pooling, normalize: bool },
    /// A sequence-classification head (a cross-encoder): the first token's vector through
    /// `tanh(dense)`, then one logit per label.
    Classify(Classifier),
}

struct Classifier {
    /// `[hidden][hidden]`, PyTorch's `[out][in]` layout.
    dense_w: Vec<f32>,
    dense_b: Vec<f32>,
    /// `[labels][hidden]`.
    out_w: Vec<f32>,
    out_b: Vec<f32>,
    labels: usize,
    activation: ScoreActivation,
}

/// How a cross-encoder's logit becomes its score (sentence-transformers' `activation_fn`:
/// sigmoid for a one-label model unless the checkpoint says otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreActivation {
    Sigmoid,
    Identity,
}

impl ScoreActivation {
    pub fn apply(self, logit: f32) -> f32 {
        match self {
            ScoreActivation::Sigmoid => 1.0 / (1.0 + (-logit).exp()),
            ScoreActivation::Identity => logit,
        }
    }
}

/// The token ids of one input, and where its second text starts (its length when it has
/// none).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sequence {
    ids: Vec<u32>,
    second: usize,
}

impl Sequence {
    fn single(ids: Vec<u32>) -> Self {
        let second = ids.len();
        Sequence { ids, second }
    }
}

/// A loaded BERT-family sentence embedder. Synchronous and compute-bound: call it from a
/// thread of its own, or through [`EmbedHandle`].
pub struct EmbeddingModel {
    tokenizer: Tokenizer,
    encoder: Encoder,
    head: Head,
    max_tokens: usize,
    vocab_size: usize,
    /// The special tokens the tokenizer puts before and after a text (`[CLS]`, `[SEP]`).
    prefix: Vec<u32>,
    suffix: Vec<u32>,
    max_batch: usize,
    /// One single-threaded pool per compute thread: each runs whole forward passes (see
    /// [`EmbeddingModel::embed_sequences`]).
    workers: Vec<rayon::ThreadPool>,
    arch: pulp::Arch,
}

impl std::fmt::Debug for EmbeddingModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingModel")
            .field("dims", &self.dims())
            .field("max_tokens", &self.max_tokens)
            .field("layers", &self.encoder.layers.len())
            .field("cross_encoder", &self.is_cross_encoder())
            .finish()
    }
}

impl EmbeddingModel {
    /// Loads a model directory with the default [`EmbedOptions`].
    pub fn load(dir: &Path) -> Result<Self, InferError> {
        Self::load_with_options(dir, &EmbedOptions::default())
    }

    /// Loads a model directory (sentence-transformers layout, BERT architecture).
    pub fn load_with_options(dir: &Path, opts: &EmbedOptions) -> Result<Self, InferError> {
        let invalid = |path: &Path, reason: String| InferError::InvalidModel {
            path: path.to_owned(),
            reason,
        };
        if opts.threads == 0 {
            return Err(InferError::InvalidParameter {
                param: "threads".into(),
                message: "must be at least 1".into(),
            });
        }
        if opts.max_batch == 0 {
            return Err(InferError::InvalidParameter {
                param: "max_batch".into(),
                message: "must be at least 1".into(),
            });
        }
        for file in ["config.json", "model.safetensors", "tokenizer.json"] {
            if !dir.join(file).is_file() {
                return Err(invalid(
                    dir,
                    format!("{file} is missing (expected a sentence-transformers model directory)"),
                ));
            }
        }

        let config: BertConfig = read_json(&dir.join("config.json"))?;
        let roberta = match config.model_type.as_deref() {
            None | Some("bert") => false,
            Some("roberta" | "xlm-roberta" | "camembert") => true,
            Some(kind) => {
                return Err(invalid(
                    &dir.join("config.json"),
                    format!("model_type '{kind}' is not supported; the encoder engine runs BERT and (XLM-)RoBERTa models"),
                ));
            }
        };
        let position_offset = if roberta {
            config.pad_token_id.unwrap_or(1) + 1
        } else {
            0
        };
        if position_offset + 2 >= config.max_position_embeddings {
            return Err(invalid(
                &dir.join("config.json"),
                format!(
                    "max_position_embeddings {} leaves no room for text",
                    config.max_position_embeddings
                ),
            ));
        }
        let classifier = config
            .architectures
            .iter()
            .any(|a| a.ends_with("ForSequenceClassification"));
        if let Some(kind) = config.position_embedding_type.as_deref() {
            if kind != "absolute" {
                return Err(invalid(
                    &dir.join("config.json"),
                    format!("position_embedding_type '{kind}' is not supported (only 'absolute')"),
                ));
            }
        }
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            return Err(invalid(
                &dir.join("config.json"),
                "hidden_size must be a multiple of num_attention_heads".into(),
            ));
        }
        let act = match config.hidden_act.as_str() {
            "gelu" => Activation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => {
                return Err(invalid(
                    &dir.join("config.json"),
                    format!("hidden_act '{other}' is not supported"),
                ))
            }
        };

        let pooling = if classifier {
            None
        } else {
            Some(read_sentence_transformers_modules(dir)?)
        };
        let mut max_tokens = config.max_position_embeddings - position_offset;
        let sbert = dir.join("sentence_bert_config.json");
        if sbert.is_file() {
            let sbert: SentenceBertConfig = read_json(&sbert)?;
            if let Some(len) = sbert.max_seq_length {
                max_tokens = max_tokens.min(len);
            }
        }
        // A CrossEncoder's max_length is its tokenizer's model_max_length.
        let tokenizer_config = dir.join("tokenizer_config.json");
        if classifier && tokenizer_config.is_file() {
            let settings: TokenizerConfig = read_json(&tokenizer_config)?;
            if let Some(len) = settings.model_max_length.filter(|&len| len > 0.0) {
                if len < max_tokens as f64 {
                    max_tokens = len as usize;
                }
            }
        }

        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| invalid(&tokenizer_path, format!("unreadable tokenizer: {e}")))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| invalid(&tokenizer_path, format!("cannot set truncation: {e}")))?;
        let (prefix, suffix) =
            special_framing(&tokenizer).map_err(|reason| invalid(&tokenizer_path, reason))?;
        if prefix.len() + suffix.len() >= max_tokens {
            return Err(invalid(
                dir,
                format!("max_seq_length {max_tokens} leaves no room for text"),
            ));
        }

        let tokenizer_vocab = tokenizer.get_vocab_size(true);
        if tokenizer_vocab > config.vocab_size {
            return Err(invalid(
                &tokenizer_path,
                format!(
                    "the tokenizer knows {tokenizer_vocab} tokens but the model embeds only {}",
                    config.vocab_size
                ),
            ));
        }

        let weights_path = dir.join("model.safetensors");
        let (encoder, weights) = Encoder::load(&weights_path, &config, act, position_offset)?;
        let head = match pooling {
            Some((pooling, normalize)) => Head::Pool { pooling, normalize },
            None => {
                // sentence-transformers v5+ keeps the activation in
                // config_sentence_transformers.json; v4 put it in config.json.
                let st_path = dir.join("config_sentence_transformers.json");
                let activation = if st_path.is_file() {
                    read_json::<CrossEncoderSettings>(&st_path)?.activation_fn
                } else {
                    None
                };
                Head::Classify(Classifier::load(&weights, &config, roberta, activation)?)
            }
        };

        let workers = (0..opts.threads)
            .map(|i| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .thread_name(move |_| format!("hearth-embed-{i}"))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| InferError::Engine(format!("cannot start embedding threads: {e}")))?;

        Ok(EmbeddingModel {
            tokenizer,
            encoder,
            head,
            max_tokens,
            vocab_size: config.vocab_size,
            prefix,
            suffix,
            max_batch: opts.max_batch,
            workers,
            arch: pulp::Arch::new(),
        })
    }

    /// Length of the vectors this model returns: a cross-encoder's are its logits, one per
    /// label.
    pub fn dims(&self) -> usize {
        match &self.head {
            Head::Pool { pooling, .. } => self.encoder.hidden * pooling.modes(),
            Head::Classify(classifier) => classifier.labels,
        }
    }

    /// Whether this is a cross-encoder (a sequence-classification checkpoint) that scores
    /// text pairs, rather than a sentence embedder.
    pub fn is_cross_encoder(&self) -> bool {
        matches!(self.head, Head::Classify(_))
    }

    /// How a cross-encoder's logit becomes its score; `None` for an embedder.
    pub fn score_activation(&self) -> Option<ScoreActivation> {
        match &self.head {
            Head::Classify(classifier) => Some(classifier.activation),
            Head::Pool { .. } => None,
        }
    }

    /// The most tokens (special tokens included) one input is embedded from; longer inputs are
    /// truncated to it.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Embeds `inputs`, batching internally; vectors come back in input order.
    pub fn embed(&self, inputs: &[EmbedInput]) -> Result<Embeddings, InferError> {
        let sequences = self.tokenize(inputs)?;
        let prompt_tokens = sequences.iter().map(|s| s.ids.len()).sum();
        let vectors = self
            .embed_sequences(&sequences, &|| false)
            .map_err(model_error)?
            .ok_or_else(|| InferError::Engine("embedding cancelled".into()))?;
        Ok(Embeddings {
            vectors,
            prompt_tokens,
        })
    }

    /// Embeds token sequences; `Ok(None)` when `cancelled` said so before all the work started.
    ///
    /// The sequences are split into chunks of at most `max_batch`, at least one per compute
    /// thread, and the threads take chunks until none is left, each running whole forward
    /// passes on its own. On short batches this data parallelism beats splitting every matrix
    /// product across threads (measured: a 2-thread gemm on a 480x384x1536 product is barely
    /// faster than a 1-thread one, while two 1-thread gemms side by side run at twice the rate).
    /// Chunks deal the sequences out round-robin in length order, so every chunk gets a similar
    /// number of tokens; with packed batches mixed lengths cost no padding.
    fn embed_sequences(
        &self,
        sequences: &[Sequence],
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> candle_core::Result<Option<Vec<Vec<f32>>>> {
        let count = sequences.len();
        if count == 0 {
            return Ok(Some(Vec::new()));
        }
        let mut order: Vec<usize> = (0..count).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(sequences[i].ids.len()));
        let chunk_count = count
            .div_ceil(self.max_batch)
            .max(self.workers.len().min(count));
        let chunks: Vec<Vec<usize>> = (0..chunk_count)
            .map(|c| order.iter().skip(c).step_by(chunk_count).copied().collect())
            .collect();

        let pooled = run_tasks(&self.workers, chunk_count, &|c| {
            if cancelled() {
                return None;
            }
            let batch: Vec<&Sequence> = chunks[c].iter().map(|&i| &sequences[i]).collect();
            Some(self.forward(&batch))
        });

        let mut vectors = vec![Vec::new(); count];
        for (chunk, pooled) in chunks.iter().zip(pooled) {
            let Some(pooled) = pooled else {
                return Ok(None); // cancelled
            };
            for (&i, vector) in chunk.iter().zip(pooled?.chunks_exact(self.dims())) {
                vectors[i] = vector.to_vec();
            }
        }
        Ok(Some(vectors))
    }

    /// Serves a group of queued requests with shared forward passes: many small requests
    /// cost what one large one does. Each request is validated on its own; requests whose
    /// callers went away are skipped.
    fn serve(&self, group: Vec<EmbedCommand>) {
        let mut live = Vec::with_capacity(group.len());
        let mut sequences = Vec::new();
        for EmbedCommand { inputs, reply, .. } in group {
            if reply.is_closed() {
                continue;
            }
            match self.tokenize(&inputs) {
                Ok(tokenized) => {
                    let prompt_tokens = tokenized.iter().map(|s| s.ids.len()).sum();
                    let count = tokenized.len();
                    sequences.extend(tokenized);
                    live.push((reply, count, prompt_tokens));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
        }
        if live.is_empty() {
            return;
        }
        let cancelled = || live.iter().all(|(reply, ..)| reply.is_closed());
        match self.embed_sequences(&sequences, &cancelled) {
            Ok(Some(vectors)) => {
                let mut vectors = vectors.into_iter();
                for (reply, count, prompt_tokens) in live {
                    let _ = reply.send(Ok(Embeddings {
                        vectors: vectors.by_ref().take(count).collect(),
                        prompt_tokens,
                    }));
                }
            }
            Ok(None) => {}
            Err(e) => {
                let message = e.to_string();
                for (reply, ..) in live {
                    let _ = reply.send(Err(InferError::Embed(EmbedError::Model(message.clone()))));
                }
            }
        }
    }

    /// Validates the inputs and turns each into the token ids to embed (framed, truncated).
    fn tokenize(&self, inputs: &[EmbedInput]) -> Result<Vec<Sequence>, InferError> {
        let bad_input = |message: String| InferError::InvalidParameter {
            param: "input".into(),
            message,
        };
        if inputs.is_empty() {
            return Err(bad_input(
                "must not be empty: pass one or more strings or token arrays".into(),
            ));
        }
        for (i, input) in inputs.iter().enumerate() {
            match input {
                EmbedInput::Text(text) => {
                    if text.is_empty() {
                        return Err(bad_input(format!("input[{i}] is an empty string")));
                    }
                }
                EmbedInput::Pair(query, _) => {
                    if !self.is_cross_encoder() {
                        return Err(bad_input(format!(
                            "input[{i}] is a text pair, which only a cross-encoder scores"
                        )));
                    }
                    if query.is_empty() {
                        return Err(bad_input(format!("input[{i}] has an empty query")));
                    }
                }
                EmbedInput::Tokens(ids) => {
                    if ids.is_empty() {
                        return Err(bad_input(format!("input[{i}] is an empty token array")));
                    }
                    if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
                        return Err(bad_input(format!(
                            "input[{i}] holds token id {id}, but the model's vocabulary has {} tokens (ids 0..{})",
                            self.vocab_size,
                            self.vocab_size - 1
                        )));
                    }
                }
            }
        }

        // Tokenizing is a few percent of the work: large requests split it over the workers.
        if inputs.len() < TOKENIZE_SPLIT_MIN || self.workers.len() == 1 {
            return self.workers[0].install(|| self.encode(inputs));
        }
        let parts: Vec<&[EmbedInput]> = inputs
            .chunks(inputs.len().div_ceil(self.workers.len()))
            .collect();
        let encoded = run_tasks(&self.workers, parts.len(), &|p| Some(self.encode(parts[p])));
        let mut sequences = Vec::with_capacity(inputs.len());
        for part in encoded {
            sequences.extend(part.ok_or_else(|| InferError::Engine("tokenizing stopped".into()))??);
        }
        Ok(sequences)
    }

    /// Token ids of valid inputs: texts through the tokenizer, token arrays framed.
    fn encode(&self, inputs: &[EmbedInput]) -> Result<Vec<Sequence>, InferError> {
        let texts: Vec<tokenizers::EncodeInput> = inputs
            .iter()
            .filter_map(|input| match input {
                EmbedInput::Text(text) => Some(text.as_str().into()),
                EmbedInput::Pair(query, document) => {
                    Some((query.as_str(), document.as_str()).into())
                }
                EmbedInput::Tokens(_) => None,
            })
            .collect();
        let mut encoded = self
            .tokenizer
            .encode_batch_fast(texts, true)
            .map_err(|e| InferError::Embed(EmbedError::Tokenizer(e.to_string())))?
            .into_iter();
        let mut sequences = Vec::with_capacity(inputs.len());
        for input in inputs {
            let sequence = match input {
                EmbedInput::Text(_) | EmbedInput::Pair(..) => match encoded.next() {
                    Some(encoding) => {
                        let ids = encoding.get_ids().to_vec();
                        let second = encoding
                            .get_type_ids()
                            .iter()
                            .position(|&t| t != 0)
                            .unwrap_or(ids.len());
                        Sequence { ids, second }
                    }
                    None => {
                        return Err(InferError::Embed(EmbedError::Tokenizer(
                            "the tokenizer returned fewer encodings than inputs".into(),
                        )))
                    }
                },
                EmbedInput::Tokens(ids) => Sequence::single(self.frame_tokens(ids)),
            };
            sequences.push(sequence);
        }
        Ok(sequences)
    }

    /// Frames a token array like the tokenizer frames a text: special tokens already at the
    /// ends are dropped, the content is truncated to fit, and the framing is added.
    fn frame_tokens(&self, ids: &[u32]) -> Vec<u32> {
        let mut content = ids;
        if let Some(rest) = content.strip_prefix(self.prefix.as_slice()) {
            content = rest;
        }
        if let Some(rest) = content.strip_suffix(self.suffix.as_slice()) {
            content = rest;
        }
        let room = self.max_tokens - self.prefix.len() - self.suffix.len();
        let content = &content[..content.len().min(room)];
        let mut framed = Vec::with_capacity(self.prefix.len() + content.len() + self.suffix.len());
        framed.extend_from_slice(&self.prefix);
        framed.extend_from_slice(content);
        framed.extend_from_slice(&self.suffix);
        framed
    }

    /// Runs the encoder on one batch and returns the pooled (and normalised) vectors,
    /// `dims()` floats per sequence. Single-threaded: it runs on one of the model's workers.
    ///
    /// The batch is packed: row `t` of every activation is token `t` of the concatenated
    /// sequences, so the dense layers multiply exactly the real tokens. Element-wise steps
    /// run in place on the matrix products' outputs.
    fn forward(&self, batch: &[&Sequence]) -> candle_core::Result<Vec<f32>> {
        let enc = &self.encoder;
        let hidden = enc.hidden;
        let lens: Vec<usize> = batch.iter().map(|s| s.ids.len()).collect();
        let total: usize = lens.iter().sum();
        let arch = self.arch;

        let mut x = vec![0f32; total * hidden];
        vectorized(
            arch,
            EmbedTokens {
                out: &mut x,
                batch,
                enc,
            },
        );
        let mut x = Tensor::from_vec(x, (total, hidden), &Device::Cpu)?;

        for layer in &enc.layers {
            let qkv = x.matmul(&layer.qkv_w)?;
            let mut context = vec![0f32; total * hidden];
            with_slice(&qkv, |qkv| {
                let mut start = 0;
                let mut rest = context.as_mut_slice();
                for &len in &lens {
                    let (out, tail) = rest.split_at_mut(len * hidden);
                    vectorized(
                        arch,
                        AttendSequence {
                            rows: &qkv[start * 3 * hidden..(start + len) * 3 * hidden],
                            bias: &layer.qkv_b,
                            out,
                            hidden,
                            heads: enc.heads,
                        },
                    );
                    rest = tail;
                    start += len;
                }
            })?;
            let context = Tensor::from_vec(context, (total, hidden), &Device::Cpu)?;

            let attended = context.matmul(&layer.attn_out_w)?;
            with_slice(&x, |residual| {
                attended.inplace_op1(&InPlace {
                    arch,
                    step: Step::BiasResidualNorm {
                        bias: &layer.attn_out_b,
                        residual,
                        norm: &layer.attn_norm,
                        eps: enc.eps,
                    },
                })
            })??;

            let inter = attended.matmul(&layer.inter_w)?;
            inter.inplace_op1(&InPlace {
                arch,
                step: Step::BiasActivation {
                    bias: &layer.inter_b,
                    act: enc.act,
                },
            })?;

            let out = inter.matmul(&layer.out_w)?;
            with_slice(&attended, |residual| {
                out.inplace_op1(&InPlace {
                    arch,
                    step: Step::BiasResidualNorm {
                        bias: &layer.out_b,
                        residual,
                        norm: &layer.out_norm,
                        eps: enc.eps,
                    },
                })
            })??;
            x = out;
        }

        let dims = self.dims();
        let mut pooled = vec![0f32; lens.len() * dims];
        with_slice(&x, |tokens| {
            let mut start = 0;
            for (&len, vector) in lens.iter().zip(pooled.chunks_exact_mut(dims)) {
                let rows = &tokens[start * hidden..(start + len) * hidden];
                match &self.head {
                    Head::Pool { pooling, normalize } => vectorized(
                        arch,
                        PoolSequence {
                            rows,
                            vector,
                            hidden,
                            pooling: *pooling,
                            normalize: *normalize,
                        },
                    ),
                    Head::Classify(classifier) => classifier.logits(&rows[..hidden], vector),
                }
                start += len;
            }
        })?;
        Ok(pooled)
    }
}

/// Runs `task(0) .. task(count - 1)` on the workers, all at once, each worker taking the
/// next index until none is left; returns the results in index order. A task that returns
/// `None` stops the tasks not yet started (their results are `None` too).
fn run_tasks<T: Send>(
    workers: &[rayon::ThreadPool],
    count: usize,
    task: &(dyn Fn(usize) -> Option<T> + Sync),
) -> Vec<Option<T>> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let results: Vec<Mutex<Option<T>>> = (0..count).map(|_| Mutex::new(None)).collect();
    let work = || {
        while !stop.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = results.get(i) else { break };
            match task(i) {
                Some(result) => *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(result),
                None => stop.store(true, Ordering::Relaxed),
            }
        }
    };
    run_on_each(workers, &work);
    results
        .into_iter()
        .map(|slot| slot.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect()
}

/// Runs `work` once on every pool, all at the same time, and returns when all are done.
fn run_on_each(pools: &[rayon::ThreadPool], work: &(dyn Fn() + Sync)) {
    if let Some((first, rest)) = pools.split_first() {
        first.in_place_scope(|scope| {
            scope.spawn(|_| work());
            run_on_each(rest, work);
        });
    }
}

/// Requests with fewer inputs are tokenized on one worker: splitting would not pay.
const TOKENIZE_SPLIT_MIN: usize = 64;

/// Reads the pooling and normalisation modules named in `modules.json` (defaults: mean pooling,
/// no normalisation, as for a bare BERT directory).
fn read_sentence_transformers_modules(dir: &Path) -> Result<(Pooling, bool), InferError> {
    let modules_path = dir.join("modules.json");
    let mut pooling_dir: Option<PathBuf> = None;
    let mut normalize = false;
    if modules_path.is_file() {
        let modules: Vec<ModuleEntry> = read_json(&modules_path)?;
        for module in modules {
            let kind = module.kind.rsplit('.').next().unwrap_or_default();
            match kind {
                "Pooling" => pooling_dir = Some(dir.join(&module.path)),
                "Normalize" => normalize = true,
                "Transformer" => {}
                other => {
                    return Err(InferError::InvalidModel {
                        path: modules_path.clone(),
                        reason: format!("sentence-transformers module '{other}' is not supported"),
                    })
                }
            }
        }
    }
    let pooling_dir = pooling_dir.unwrap_or_else(|| dir.join("1_Pooling"));
    let pooling_path = pooling_dir.join("config.json");
    let config: PoolingConfig = if pooling_path.is_file() {
        read_json(&pooling_path)?
    } else {
        PoolingConfig {
            pooling_mode_mean_tokens: true,
            ..PoolingConfig::default()
        }
    };
    if config.pooling_mode_weightedmean_tokens || config.pooling_mode_lasttoken {
        return Err(InferError::InvalidModel {
            path: pooling_path,
            reason: "weighted-mean and last-token pooling are not supported".into(),
        });
    }
    let pooling = Pooling {
        cls: config.pooling_mode_cls_token,
        max: config.pooling_mode_max_tokens,
        mean: config.pooling_mode_mean_tokens,
        mean_sqrt_len: config.pooling_mode_mean_sqrt_len_tokens,
    };
    if pooling.modes() == 0 {
        return Err(InferError::InvalidModel {
            path: pooling_path,
            reason: "no pooling mode is enabled".into(),
        });
    }
    Ok((pooling, normalize))
}

/// The special tokens the tokenizer's post-processor puts before and after a text, found by
/// encoding a probe word with and without them.
fn special_framing(tokenizer: &Tokenizer) -> Result<(Vec<u32>, Vec<u32>), String> {
    let probe = "hello";
    let with = tokenizer
        .encode_fast(probe, true)
        .map_err(|e| format!("cannot encode a probe text: {e}"))?;
    let without = tokenizer
        .encode_fast(probe, false)
        .map_err(|e| format!("cannot encode a probe text: {e}"))?;
    let (with, without) = (with.get_ids(), without.get_ids());
    if without.is_empty() {
        return Err("the tokenizer encodes text to no tokens".into());
    }
    let at = with
        .windows(without.len())
        .position(|w| w == without)
        .ok_or("the tokenizer's special tokens wrap text in an unexpected way")?;
    Ok((with[..at].to_vec(), with[at + without.len()..].to_vec()))
}

impl Encoder {
    /// Loads the encoder's weights; the checkpoint's other tensors (a classification head)
    /// are left in the returned [`Weights`].
    fn load<'p>(
        path: &'p Path,
        config: &BertConfig,
        act: Activation,
        position_offset: usize,
    ) -> Result<(Self, Weights<'p>), InferError> {
        let invalid = |reason: String| InferError::InvalidModel {
            path: path.to_owned(),
            reason,
        };
        let tensors = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| invalid(format!("unreadable safetensors: {e}")))?;
        // Checkpoints with a head prefix the encoder's names with "bert." or "roberta.".
        let prefix = ["bert.", "roberta."]
            .into_iter()
            .find(|p| tensors.contains_key(&format!("{p}embeddings.word_embeddings.weight")))
            .unwrap_or("");
        let weights = Weights {
            tensors,
            prefix,
            path,
        };
        let hidden = config.hidden_size;
        let inter = config.intermediate_size;

        let word_embeddings = weights.vec(
            "embeddings.word_embeddings.weight",
            &[config.vocab_size, hidden],
        )?;
        let positions = weights.vec(
            "embeddings.position_embeddings.weight",
            &[config.max_position_embeddings, hidden],
        )?;
        let token_types = weights.vec(
            "embeddings.token_type_embeddings.weight",
            &[config.type_vocab_size.max(1), hidden],
        )?;
        let token_type_0 = &token_types[..hidden];
        let second_segment = (config.type_vocab_size > 1).then(|| {
            token_types[hidden..2 * hidden]
                .iter()
                .zip(token_type_0)
                .map(|(t1, t0)| t1 - t0)
                .collect()
        });
        let position_embeddings = positions
            .chunks_exact(hidden)
            .skip(position_offset)
            .flat_map(|row| row.iter().zip(token_type_0).map(|(p, t)| p + t))
            .collect();
        let embed_norm = weights.norm("embeddings.LayerNorm", hidden)?;

        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            let q = weights.linear_t(&format!("{p}.attention.self.query"), hidden, hidden)?;
            let k = weights.linear_t(&format!("{p}.attention.self.key"), hidden, hidden)?;
            let v = weights.linear_t(&format!("{p}.attention.self.value"), hidden, hidden)?;
            let qkv_w = Tensor::cat(&[&q.0, &k.0, &v.0], 1)
                .and_then(|t| t.contiguous())
                .map_err(|e| invalid(format!("{p}: cannot fuse q/k/v: {e}")))?;
            let qkv_b = [q.1, k.1, v.1].concat();
            let (attn_out_w, attn_out_b) =
                weights.linear_t(&format!("{p}.attention.output.dense"), hidden, hidden)?;
            let attn_norm = weights.norm(&format!("{p}.attention.output.LayerNorm"), hidden)?;
            let (inter_w, inter_b) =
                weights.linear_t(&format!("{p}.intermediate.dense"), hidden, inter)?;
            let (out_w, out_b) = weights.linear_t(&format!("{p}.output.dense"), inter, hidden)?;
            let out_norm = weights.norm(&format!("{p}.output.LayerNorm"), hidden)?;
            layers.push(Layer {
                qkv_w,
                qkv_b,
                attn_out_w,
                attn_out_b,
                attn_norm,
                inter_w,
                inter_b,
                out_w,
                out_b,
                out_norm,
            });
        }

        let encoder = Encoder {
            hidden,
            heads: config.num_attention_heads,
            eps: config.layer_norm_eps as f32,
            act,
            word_embeddings,
            position_embeddings,
            second_segment,
            embed_norm,
            layers,
        };
        Ok((encoder, weights))
    }
}

impl Classifier {
    /// The head of `BertForSequenceClassification` (`bert.pooler.dense`, `classifier`) or
    /// of `(XLM)RobertaForSequenceClassification` (`classifier.dense`,
    /// `classifier.out_proj`): the same computation under other names.
    /// `activation`: the activation sentence-transformers named beside the checkpoint, which
    /// wins over config.json's.
    fn load(
        weights: &Weights<'_>,
        config: &BertConfig,
        roberta: bool,
        activation: Option<String>,
    ) -> Result<Self, InferError> {
        let hidden = config.hidden_size;
        let (dense, out) = if roberta {
            ("classifier.dense", "classifier.out_proj")
        } else {
            ("bert.pooler.dense", "classifier")
        };
        let root = |name: &str| weights.unprefixed(name);
        let out_weight = root(&format!("{out}.weight"))?;
        let labels = match out_weight.dims() {
            [labels, width] if *width == hidden => *labels,
            shape => {
                return Err(weights.invalid(format!(
                    "tensor '{out}.weight' has shape {shape:?}, expected [labels, {hidden}]"
                )))
            }
        };
        let declared = config
            .num_labels
            .or_else(|| config.id2label.as_ref().map(|m| m.len()))
            .unwrap_or(labels);
        if declared != labels {
            return Err(weights.invalid(format!(
                "config.json declares {declared} labels but '{out}.weight' has {labels}"
            )));
        }
        let flat = |t: Tensor, name: &str| {
            t.flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| weights.invalid(format!("{name}: {e}")))
        };
        let checked = |name: String, shape: &[usize]| -> Result<Vec<f32>, InferError> {
            let t = root(&name)?;
            if t.dims() != shape {
                return Err(weights.invalid(format!(
                    "tensor '{name}' has shape {:?}, expected {shape:?}",
                    t.dims()
                )));
            }
            flat(t, &name)
        };
        let activation = match activation.as_deref().or(config
            .sentence_transformers
            .as_ref()
            .and_then(|st| st.activation_fn.as_deref()))
        {
            None => {
                if labels == 1 {
                    ScoreActivation::Sigmoid
                } else {
                    ScoreActivation::Identity
                }
            }
            Some(name) if name.ends_with(".Sigmoid") => ScoreActivation::Sigmoid,
            Some(name) if name.ends_with(".Identity") => ScoreActivation::Identity,
            Some(other) => {
                return Err(weights.invalid(format!(
                    "activation_fn '{other}' is not supported (Sigmoid or Identity)"
                )))
            }
        };
        Ok(Classifier {
            dense_w: checked(format!("{dense}.weight"), &[hidden, hidden])?,
            dense_b: checked(format!("{dense}.bias"), &[hidden])?,
            out_w: flat(out_weight, out)?,
            out_b: checked(format!("{out}.bias"), &[labels])?,
            labels,
            activation,
        })
    }

    /// The logits of one sequence from its first token's vector.
    fn logits(&self, first: &[f32], out: &mut [f32]) {
        let hidden = first.len();
        let pooled: Vec<f32> = self
            .dense_w
            .chunks_exact(hidden)
            .zip(&self.dense_b)
            .map(|(row, b)| (dot(row, first) + b).tanh())
            .collect();
        for ((o, row), b) in out
            .iter_mut()
            .zip(self.out_w.chunks_exact(hidden))
            .zip(&self.out_b)
        {
            *o = dot(row, &pooled) + b;
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Named tensors of a checkpoint, read as f32.
struct Weights<'a> {
    tensors: HashMap<String, Tensor>,
    prefix: &'static str,
    path: &'a Path,
}

impl Weights<'_> {
    fn invalid(&self, reason: String) -> InferError {
        InferError::InvalidModel {
            path: self.path.to_owned(),
            reason,
        }
    }

    fn tensor(&self, name: &str) -> Result<Tensor, InferError> {
        self.unprefixed(&format!("{}{name}", self.prefix))
    }

    /// A tensor by its full name (a head's tensors are outside the encoder's prefix).
    fn unprefixed(&self, full: &str) -> Result<Tensor, InferError> {
        let tensor = self
            .tensors
            .get(full)
            .ok_or_else(|| self.invalid(format!("tensor '{full}' is missing")))?;
        tensor
            .to_dtype(DType::F32)
            .map_err(|e| self.invalid(format!("{full}: {e}")))
    }

    fn checked(&self, name: &str, shape: &[usize]) -> Result<Tensor, InferError> {
        let tensor = self.tensor(name)?;
        if tensor.dims() != shape {
            return Err(self.invalid(format!(
                "tensor '{name}' has shape {:?}, expected {shape:?}",
                tensor.dims()
            )));
        }
        Ok(tensor)
    }

    fn vec(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, InferError> {
        self.checked(name, shape)?
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| self.invalid(format!("{name}: {e}")))
    }

    /// A linear layer as (weight transposed to `[input, output]`, bias).
    fn linear_t(
        &self,
        name: &str,
        input: usize,
        output: usize,
    ) -> Result<(Tensor, Vec<f32>), InferError> {
        let weight = self
            .checked(&format!("{name}.weight"), &[output, input])?
            .t()
            .and_then(|t| t.contiguous())
            .map_err(|e| self.invalid(format!("{name}: {e}")))?;
        let bias = self.vec(&format!("{name}.bias"), &[output])?;
        Ok((weight, bias))
    }

    fn norm(&self, name: &str, width: usize) -> Result<Norm, InferError> {
        Ok(Norm {
            gamma: self.vec(&format!("{name}.weight"), &[width])?,
            beta: self.vec(&format!("{name}.bias"), &[width])?,
        })
    }
}

/// Calls `f` with the contiguous f32 contents of a CPU tensor, without copying.
fn with_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("the embedding engine runs on the CPU");
    };
    let data = cpu.as_slice::<f32>()?;
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("expected a contiguous tensor");
    };
    Ok(f(&data[start..end]))
}

// ---------------------------------------------------------------------------------------------
// Vectorisable kernels. Each is a struct whose `run` is `#[inline(always)]` and calls only
// `#[inline(always)]` helpers written as plain loops over independent lanes, so that
// `vectorized` compiles the whole body for the CPU's widest vectors (AVX-512, AVX2 …), chosen
// at run time. (A closure would not do: its `FnOnce` shim is not always inlined, and the body
// would then be compiled for baseline x86-64.)
// ---------------------------------------------------------------------------------------------

trait Kernel {
    type Output;
    fn run(self) -> Self::Output;
}

struct WithFeatures<K>(K);

impl<K: Kernel> pulp::WithSimd for WithFeatures<K> {
    type Output = K::Output;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> K::Output {
        self.0.run()
    }
}

fn vectorized<K: Kernel>(arch: pulp::Arch, kernel: K) -> K::Output {
    arch.dispatch(WithFeatures(kernel))
}

/// Token embeddings of a batch: `LayerNorm(word[id] + (position[pos] + type[0]))`.
struct EmbedTokens<'a> {
    out: &'a mut [f32],
    batch: &'a [&'a Sequence],
    enc: &'a Encoder,
}

impl Kernel for EmbedTokens<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let enc = self.enc;
        let hidden = enc.hidden;
        let positions = self.batch.iter().flat_map(|s| {
            s.ids
                .iter()
                .enumerate()
                .map(|(pos, id)| (pos, id, s.second))
        });
        for (out, (pos, &id, second)) in self.out.chunks_exact_mut(hidden).zip(positions) {
            let id = id as usize;
            let word = &enc.word_embeddings[id * hidden..(id + 1) * hidden];
            let position = &enc.position_embeddings[pos * hidden..(pos + 1) * hidden];
            for ((o, w), p) in out.iter_mut().zip(word).zip(position) {
                *o = w + p;
            }
            if let (true, Some(delta)) = (pos >= second, enc.second_segment.as_deref()) {
                for (o, d) in out.iter_mut().zip(delta) {
                    *o += d;
                }
            }
            layer_norm_in_place(out, &enc.embed_norm, enc.eps);
        }
    }
}

/// An element-wise step applied in place to a matrix product's output (row-major rows of
/// `bias.len()` floats).
struct InPlace<'a> {
    arch: pulp::Arch,
    step: Step<'a>,
}

#[derive(Clone, Copy)]
enum Step<'a> {
    /// `row = LayerNorm(row + bias + residual_row)`
    BiasResidualNorm {
        bias: &'a [f32],
        residual: &'a [f32],
        norm: &'a Norm,
        eps: f32,
    },
    /// `row = activation(row + bias)`
    BiasActivation { bias: &'a [f32], act: Activation },
}

impl candle_core::InplaceOp1 for InPlace<'_> {
    fn name(&self) -> &'static str {
        "hearth-embed-elementwise"
    }

    fn cpu_fwd(
        &self,
        storage: &mut candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        let candle_core::CpuStorage::F32(data) = storage else {
            candle_core::bail!("expected f32 activations");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("expected contiguous activations");
        };
        let rows = &mut data[start..end];
        match self.step {
            Step::BiasResidualNorm { residual, .. } if residual.len() != rows.len() => {
                candle_core::bail!(
                    "residual has {} values, expected {}",
                    residual.len(),
                    rows.len()
                )
            }
            step => vectorized(self.arch, ApplyStep { rows, step }),
        }
        Ok(())
    }
}

struct ApplyStep<'a> {
    rows: &'a mut [f32],
    step: Step<'a>,
}

impl Kernel for ApplyStep<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        match self.step {
            Step::BiasResidualNorm {
                bias,
                residual,
                norm,
                eps,
            } => {
                let width = bias.len();
                for (row, residual) in self
                    .rows
                    .chunks_exact_mut(width)
                    .zip(residual.chunks_exact(width))
                {
                    for ((x, b), r) in row.iter_mut().zip(bias).zip(residual) {
                        *x += b + r;
                    }
                    layer_norm_in_place(row, norm, eps);
                }
            }
            Step::BiasActivation { bias, act } => {
                let rows = self.rows.chunks_exact_mut(bias.len());
                match act {
                    Activation::GeluErf => {
                        for row in rows {
                            for (x, b) in row.iter_mut().zip(bias) {
                                *x = gelu_erf(*x + b);
                            }
                        }
                    }
                    Activation::GeluTanh => {
                        for row in rows {
                            for (x, b) in row.iter_mut().zip(bias) {
                                *x = gelu_tanh(*x + b);
                            }
                        }
                    }
                    Activation::Relu => {
                        for row in rows {
                            for (x, b) in row.iter_mut().zip(bias) {
                                *x = (*x + b).max(0.0);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Self-attention of one sequence over itself: `rows` are its `[q | k | v]` rows (bias not
/// yet added), `out` its context rows.
struct AttendSequence<'a> {
    rows: &'a [f32],
    bias: &'a [f32],
    out: &'a mut [f32],
    hidden: usize,
    heads: usize,
}

impl Kernel for AttendSequence<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let hidden = self.hidden;
        let head_dim = hidden / self.heads;
        let scale = 1.0 / (head_dim as f32).sqrt();
        let len = self.rows.len() / (3 * hidden);
        let blocks = len.div_ceil(LANES);
        let bias = self.bias;
        // Keys in blocks of LANES positions, transposed within a block: `keys[b * head_dim + d]`
        // holds dimension d of positions b*LANES .. b*LANES+LANES (zero-padded). A block of
        // scores is then head_dim broadcast-FMAs into one register-resident accumulator.
        let mut keys = vec![[0f32; LANES]; blocks * head_dim];
        let mut values = vec![0f32; len * head_dim];
        let mut query = vec![0f32; head_dim];
        let mut scores = vec![0f32; blocks * LANES];
        for head in 0..self.heads {
            let q_off = head * head_dim;
            let k_off = hidden + head * head_dim;
            let v_off = 2 * hidden + head * head_dim;
            for (j, (row, value)) in self
                .rows
                .chunks_exact(3 * hidden)
                .zip(values.chunks_exact_mut(head_dim))
                .enumerate()
            {
                let block = &mut keys[(j / LANES) * head_dim..(j / LANES + 1) * head_dim];
                for ((lanes, k), b) in block
                    .iter_mut()
                    .zip(&row[k_off..k_off + head_dim])
                    .zip(&bias[k_off..k_off + head_dim])
                {
                    lanes[j % LANES] = k + b;
                }
                for ((o, v), b) in value
                    .iter_mut()
                    .zip(&row[v_off..v_off + head_dim])
                    .zip(&bias[v_off..v_off + head_dim])
                {
                    *o = v + b;
                }
            }
            for (row, out) in self
                .rows
                .chunks_exact(3 * hidden)
                .zip(self.out.chunks_exact_mut(hidden))
            {
                for ((q, r), b) in query
                    .iter_mut()
                    .zip(&row[q_off..q_off + head_dim])
                    .zip(&bias[q_off..q_off + head_dim])
                {
                    *q = (r + b) * scale;
                }
                let (score_blocks, _) = scores.as_chunks_mut::<LANES>();
                for (score, block) in score_blocks.iter_mut().zip(keys.chunks_exact(head_dim)) {
                    let mut acc = [0f32; LANES];
                    for (&q, lanes) in query.iter().zip(block) {
                        for (a, k) in acc.iter_mut().zip(lanes) {
                            *a += q * k;
                        }
                    }
                    *score = acc;
                }
                softmax_in_place(&mut scores, len);
                // Context = probabilities x values, LANES dimensions at a time.
                let context = &mut out[q_off..q_off + head_dim];
                let (context_blocks, context_tail) = context.as_chunks_mut::<LANES>();
                for (c, context) in context_blocks.iter_mut().enumerate() {
                    let mut acc = [0f32; LANES];
                    for (&p, value) in scores.iter().zip(values.chunks_exact(head_dim)) {
                        let value = &value[c * LANES..(c + 1) * LANES];
                        for (a, v) in acc.iter_mut().zip(value) {
                            *a += p * v;
                        }
                    }
                    *context = acc;
                }
                let tail_start = head_dim - context_tail.len();
                context_tail.fill(0.0);
                for (&p, value) in scores.iter().zip(values.chunks_exact(head_dim)) {
                    axpy(context_tail, p, &value[tail_start..]);
                }
            }
        }
    }
}

/// Pooling of one sequence's token rows into `vector`, then optional L2 normalisation.
struct PoolSequence<'a> {
    rows: &'a [f32],
    vector: &'a mut [f32],
    hidden: usize,
    pooling: Pooling,
    normalize: bool,
}

impl Kernel for PoolSequence<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let (hidden, pooling, rows) = (self.hidden, self.pooling, self.rows);
        let len = rows.len() / hidden;
        let mut parts = self.vector.chunks_exact_mut(hidden);
        if pooling.cls {
            if let Some(part) = parts.next() {
                part.copy_from_slice(&rows[..hidden]);
            }
        }
        if pooling.max {
            if let Some(part) = parts.next() {
                part.fill(f32::NEG_INFINITY);
                for row in rows.chunks_exact(hidden) {
                    for (m, &v) in part.iter_mut().zip(row) {
                        *m = m.max(v);
                    }
                }
            }
        }
        if pooling.mean || pooling.mean_sqrt_len {
            let mut sum = vec![0f32; hidden];
            for row in rows.chunks_exact(hidden) {
                for (s, &v) in sum.iter_mut().zip(row) {
                    *s += v;
                }
            }
            let divisors = [
                pooling.mean.then_some(len as f32),
                pooling.mean_sqrt_len.then_some((len as f32).sqrt()),
            ];
            for divisor in divisors.into_iter().flatten() {
                if let Some(part) = parts.next() {
                    for (o, s) in part.iter_mut().zip(&sum) {
                        *o = s / divisor;
                    }
                }
            }
        }
        if self.normalize {
            // torch.nn.functional.normalize: divide by max(norm, 1e-12).
            let norm = sum_lanes(self.vector, |v| v * v).sqrt().max(1e-12);
            for v in self.vector.iter_mut() {
                *v /= norm;
            }
        }
    }
}

const LANES: usize = 16;

/// Sum of the lanes, as a tree (a chain of 16 dependent adds would be 4x slower).
#[inline(always)]
fn reduce_lanes(mut acc: [f32; LANES], op: impl Fn(f32, f32) -> f32) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        let (low, high) = acc.split_at_mut(width);
        for (l, h) in low.iter_mut().zip(&*high) {
            *l = op(*l, *h);
        }
        width /= 2;
    }
    acc[0]
}

/// `Σ f(x)` over a slice, accumulated in independent lanes (vectorises without fast-math).
#[inline(always)]
fn sum_lanes(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let (chunks, tail) = xs.as_chunks::<LANES>();
    let mut acc = [0f32; LANES];
    for chunk in chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a += f(x);
        }
    }
    reduce_lanes(acc, |a, b| a + b) + tail.iter().map(|&x| f(x)).sum::<f32>()
}

#[inline(always)]
fn layer_norm_in_place(row: &mut [f32], norm: &Norm, eps: f32) {
    let n = row.len() as f32;
    let mean = sum_lanes(row, |x| x) / n;
    let var = sum_lanes(row, |x| (x - mean) * (x - mean)) / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((x, g), b) in row.iter_mut().zip(&norm.gamma).zip(&norm.beta) {
        *x = (*x - mean) * inv * g + b;
    }
}

/// `y += a * x`.
#[inline(always)]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    let (y_chunks, y_tail) = y.as_chunks_mut::<LANES>();
    let (x_chunks, x_tail) = x.as_chunks::<LANES>();
    for (y, x) in y_chunks.iter_mut().zip(x_chunks) {
        for (y, x) in y.iter_mut().zip(x) {
            *y += a * x;
        }
    }
    for (y, x) in y_tail.iter_mut().zip(x_tail) {
        *y += a * x;
    }
}

/// Softmax over `xs[..len]`; `xs` is padded to whole lanes and its padding ends up 0.
#[inline(always)]
fn softmax_in_place(xs: &mut [f32], len: usize) {
    xs[len..].fill(f32::NEG_INFINITY);
    let (chunks, tail) = xs.as_chunks_mut::<LANES>();
    let mut acc = [f32::NEG_INFINITY; LANES];
    for chunk in chunks.iter() {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a = a.max(x);
        }
    }
    let max = tail
        .iter()
        .fold(reduce_lanes(acc, f32::max), |m, &x| m.max(x));
    for x in xs.iter_mut() {
        *x = exp(*x - max);
    }
    xs[len..].fill(0.0);
    let inv = 1.0 / sum_lanes(xs, |x| x);
    for x in xs.iter_mut() {
        *x *= inv;
    }
}

/// `e^x` for f32 (Cephes' `expf`: range reduction by ln 2 and a degree-6 polynomial, within
/// ~2 ulp), branch-free so that it vectorises. The power of two is built from the bits of
/// `x log2(e) + 1.5 * 2^23` (which rounds to an integer held in the low mantissa bits): a
/// float-to-int `as` cast would saturate, and that does not vectorise.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let r2 = r * r;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * r2 + r + 1.0;
    // n + 127 in the low bits, moved into the exponent field; the rest shifts out.
    let scale = f32::from_bits((shifted + 127.0).to_bits() << 23);
    e * scale
}

/// `erf(x)` as a rational function of `x`, for |x| up to 3.8325 (beyond it erf is ±1 to f32
/// precision): the approximation Eigen and XLA use, with no `exp`; evaluated in f32 it is
/// within 3.5e-7 of erf.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-3.832_507, 3.832_507);
    let x2 = x * x;
    let p = -2.726_142_3e-10_f32;
    let p = p * x2 + 2.770_681_4e-8;
    let p = p * x2 - 2.101_024e-6;
    let p = p * x2 - 5.692_506_4e-5;
    let p = p * x2 - 7.349_906_3e-4;
    let p = p * x2 - 2.954_6e-3;
    let p = p * x2 - 1.609_603_3e-2;
    let q = -1.456_607_2e-5_f32;
    let q = q * x2 - 2.133_740_6e-4;
    let q = q * x2 - 1.682_827e-3;
    let q = q * x2 - 7.373_329e-3;
    let q = q * x2 - 1.426_473_9e-2;
    // Rounding can overshoot ±1 by an ulp near the clamp.
    (x * p / q).clamp(-1.0, 1.0)
}

#[inline(always)]
fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    // 0.5 x (1 + tanh(u)) = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3)
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let u = SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
    x / (1.0 + exp(-2.0 * u))
}

// ---------------------------------------------------------------------------------------------
// The actor
// ---------------------------------------------------------------------------------------------

struct EmbedCommand {
    inputs: Vec<EmbedInput>,
    reply: oneshot::Sender<Result<Embeddings, InferError>>,
    /// Whose request (an API key or tenant; empty for the apps' own): waiting requests are
    /// served in turn by owner.
    owner: String,
}

/// A cloneable handle to an embedding model running on a thread of its own.
#[derive(Clone)]
pub struct EmbedHandle {
    queue: mpsc::Sender<EmbedCommand>,
    capacity: usize,
    dims: usize,
    /// A cross-encoder's activation; `None` for an embedder.
    activation: Option<ScoreActivation>,
    /// Requests sent and not yet taken into a round (the engine empties the channel into
    /// its turns at once, so this is the queue's bound).
    waiting: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for EmbedHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbedHandle")
            .field("capacity", &self.capacity)
            .field("dims", &self.dims)
            .finish()
    }
}

impl EmbedHandle {
    /// Loads the model (on the calling thread, so load errors come back here) and starts the
    /// engine thread. The thread ends when the last handle is dropped.
    pub fn spawn(dir: &Path, opts: EmbedOptions) -> Result<Self, InferError> {
        if opts.queue_capacity == 0 {
            return Err(InferError::InvalidParameter {
                param: "queue_capacity".into(),
                message: "must be at least 1".into(),
            });
        }
        let model = EmbeddingModel::load_with_options(dir, &opts)?;
        let dims = model.dims();
        let activation = model.score_activation();
        let (queue, mut commands) = mpsc::channel::<EmbedCommand>(opts.queue_capacity);
        // Requests already waiting when the engine frees up are served together, up to what
        // one round of forward passes takes, taken in turn by owner; nothing waits for more
        // to arrive.
        let group_inputs = opts.max_batch * opts.threads;
        let waiting = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let taken = waiting.clone();
        thread::Builder::new()
            .name("hearth-embed".into())
            .spawn(move || {
                let mut turns = crate::turns::Turns::<EmbedCommand>::default();
                loop {
                    if turns.is_empty() {
                        match commands.blocking_recv() {
                            Some(command) => turns.push(&command.owner.clone(), command),
                            None => return,
                        }
                    }
                    while let Ok(command) = commands.try_recv() {
                        turns.push(&command.owner.clone(), command);
                    }
                    let mut inputs = 0;
                    let mut group = Vec::new();
                    while inputs < group_inputs {
                        let Some(command) = turns.pop() else {
                            break;
                        };
                        taken.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                        inputs += command.inputs.len();
                        group.push(command);
                    }
                    model.serve(group);
                }
            })
            .map_err(|e| InferError::io("starting the embedding thread", e))?;
        Ok(EmbedHandle {
            queue,
            capacity: opts.queue_capacity,
            dims,
            activation,
            waiting,
        })
    }

    /// Embeds `inputs` on the engine thread. A full queue answers
    /// [`InferError::Overloaded`] at once; dropping the future before the work starts skips it.
    pub async fn embed(&self, inputs: Vec<EmbedInput>) -> Result<Embeddings, InferError> {
        self.embed_for(inputs, "").await
    }

    /// [`EmbedHandle::embed`] on behalf of `owner` (an API key or tenant): requests waiting
    /// for the engine are taken in turn by owner.
    pub async fn embed_for(
        &self,
        inputs: Vec<EmbedInput>,
        owner: &str,
    ) -> Result<Embeddings, InferError> {
        use std::sync::atomic::Ordering;
        let (reply, answer) = oneshot::channel();
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.capacity {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(InferError::Overloaded {
                capacity: self.capacity,
            });
        }
        let command = EmbedCommand {
            inputs,
            reply,
            owner: owner.to_owned(),
        };
        if let Err(e) = self.queue.try_send(command) {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(match e {
                mpsc::error::TrySendError::Full(_) => InferError::Overloaded {
                    capacity: self.capacity,
                },
                mpsc::error::TrySendError::Closed(_) => InferError::EngineStopped,
            });
        }
        answer.await.map_err(|_| InferError::EngineStopped)?
    }

    /// Length of the vectors this engine returns (a cross-encoder's: its labels).
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// How a cross-encoder's logit becomes its score; `None` for an embedder.
    pub fn score_activation(&self) -> Option<ScoreActivation> {
        self.activation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std() {
        let mut x = -80.0f32;
        while x < 80.0 {
            let (got, want) = (exp(x), x.exp());
            assert!(
                ((got - want) / want).abs() < 1e-6,
                "exp({x}) = {got}, want {want}"
            );
            x += 0.173;
        }
    }

    #[test]
    fn erf_is_accurate() {
        // Reference values of erf (Abramowitz & Stegun table 7.1).
        for (x, want) in [
            (0.0f32, 0.0f32),
            (0.1, 0.112_462_92),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (2.0, 0.995_322_3),
            (-1.0, -0.842_700_8),
            (4.0, 0.999_999_98),
        ] {
            assert!(
                (erf(x) - want).abs() < 4e-7,
                "erf({x}) = {}, want {want}",
                erf(x)
            );
        }
        // Odd, bounded and monotonic (to rounding) on a fine grid.
        let mut previous = -1.0f32;
        for i in -6000..=6000 {
            let x = i as f32 / 1000.0;
            let y = erf(x);
            assert_eq!(y, -erf(-x));
            assert!(y >= previous - 5e-7 && y.abs() <= 1.0, "erf({x}) = {y}");
            previous = y;
        }
    }

    #[test]
    fn cancelled_work_stops_between_batches() {
        let root = std::env::var_os("HEARTH_TEST_MODELS")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                    .join(".cache/hearth/test-models")
            });
        let dir = root.join("all-MiniLM-L6-v2");
        assert!(
            dir.join("model.safetensors").is_file(),
            "the test model is missing from {}: run scripts/fetch-test-models.sh",
            dir.display()
        );
        let opts = EmbedOptions {
            threads: 1,
            max_batch: 1,
            queue_capacity: 1,
        };
        let model = EmbeddingModel::load_with_options(&dir, &opts).expect("load");
        let inputs = [
            EmbedInput::from("one"),
            EmbedInput::from("two"),
            EmbedInput::from("three"),
        ];
        let sequences = model.tokenize(&inputs).expect("tokenize");
        let checks = AtomicUsize::new(0);
        // Not cancelled before the first batch, cancelled before the second.
        let cancelled = || checks.fetch_add(1, Ordering::SeqCst) >= 1;
        let stopped = model
            .embed_sequences(&sequences, &cancelled)
            .expect("embed");
        assert!(stopped.is_none());
        assert_eq!(checks.load(Ordering::SeqCst), 2);
        let done = model.embed_sequences(&sequences, &|| false).expect("embed");
        assert_eq!(done.map(|vectors| vectors.len()), Some(3));
    }

    #[test]
    fn error_codes_are_stable() {
        assert_eq!(EmbedError::Model("x".into()).code(), "embedding_error");
        assert_eq!(EmbedError::Tokenizer("x".into()).code(), "tokenizer_error");
    }
}
