//! Chat, text completions and embeddings on local engines, in OpenAI's shapes.

use base64::Engine as _;
use hearth_infer::embed::EmbedInput;
use hearth_infer::llm::{
    Constraint, FinishReason, GenerateEvent, GenerateRequest, GenerationStream, GenerationSummary,
    LlmHandle, SamplingParams,
};
use hearth_types::{
    AssistantMessage, ChatChoice, ChatCompletionRequest, ChatCompletionResponse, ChunkDelta,
    CompletionPrompt, CompletionRequest, CompletionTokensDetails, EmbeddingData, EmbeddingInput,
    EmbeddingRequest, EmbeddingResponse, EmbeddingUsage, FunctionCallDelta, SamplingFields, Tool,
    ToolCall, ToolCallDelta, Usage,
};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::call_grammar::{call_grammar, markers};
use crate::meter::Meter;
use crate::reasoning::{Reasoning, ReasoningSplit};
use crate::tool_syntax::{new_call_id, CallStream, ToolSyntax};
use crate::tools::{call_schema, checked_calls, parameters_of, tool_mode, ToolMode};
use crate::{unix_now, Gateway, GatewayError};

/// One event of a chat or completion stream.
#[derive(Debug)]
pub enum ChatEvent {
    Delta(ChunkDelta),
    Finished {
        finish_reason: String,
        usage: Usage,
        summary: GenerationSummary,
    },
    Failed(GatewayError),
}

/// A running generation in OpenAI's terms. Dropping it cancels the generation.
#[derive(Debug)]
pub struct ChatStream {
    pub id: String,
    pub model: String,
    pub created: u64,
    events: mpsc::Receiver<ChatEvent>,
    pub(crate) meter: Option<Meter>,
}

impl ChatStream {
    pub(crate) fn new(
        id: String,
        model: String,
        created: u64,
        events: mpsc::Receiver<ChatEvent>,
    ) -> Self {
        ChatStream {
            id,
            model,
            created,
            events,
            meter: None,
        }
    }

    pub async fn next(&mut self) -> Option<ChatEvent> {
        let event = self.events.recv().await;
        if let (Some(meter), Some(event)) = (self.meter.as_mut(), event.as_ref()) {
            meter.observe(event);
        }
        event
    }

    /// Waits for the end and assembles the message, its finish reason and usage.
    pub async fn collect(
        mut self,
    ) -> Result<(AssistantMessage, String, Usage, GenerationSummary), GatewayError> {
        let mut content = String::new();
        let mut reasoning = String::new();
        let mut calls: Vec<ToolCall> = Vec::new();
        while let Some(event) = self.next().await {
            match event {
                ChatEvent::Delta(delta) => {
                    if let Some(text) = delta.content {
                        content.push_str(&text);
                    }
                    if let Some(text) = delta.reasoning_content {
                        reasoning.push_str(&text);
                    }
                    for d in delta.tool_calls.unwrap_or_default() {
                        let index = d.index as usize;
                        if index >= calls.len() {
                            calls.push(ToolCall {
                                id: d.id.clone().unwrap_or_default(),
                                kind: "function".into(),
                                function: hearth_types::FunctionCall {
                                    name: String::new(),
                                    arguments: String::new(),
                                },
                            });
                        }
                        let call = &mut calls[index];
                        if let Some(name) = d.function.name {
                            call.function.name.push_str(&name);
                        }
                        if let Some(args) = d.function.arguments {
                            call.function.arguments.push_str(&args);
                        }
                    }
                }
                ChatEvent::Finished {
                    finish_reason,
                    usage,
                    summary,
                } => {
                    let message = AssistantMessage {
                        role: "assistant".into(),
                        content: if calls.is_empty() {
                            Some(content)
                        } else {
                            None
                        },
                        reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
                        tool_calls: if calls.is_empty() { None } else { Some(calls) },
                        refusal: None,
                    };
                    return Ok((message, finish_reason, usage, summary));
                }
                ChatEvent::Failed(e) => return Err(e),
            }
        }
        Err(GatewayError::Infer(hearth_infer::InferError::EngineStopped))
    }

    /// The non-streaming response.
    pub async fn into_response(
        self,
    ) -> Result<(ChatCompletionResponse, GenerationSummary), GatewayError> {
        let (id, model, created) = (self.id.clone(), self.model.clone(), self.created);
        let (message, finish_reason, usage, summary) = self.collect().await?;
        Ok((
            ChatCompletionResponse {
                id,
                object: "chat.completion".into(),
                created,
                model,
                choices: vec![ChatChoice {
                    index: 0,
                    message,
                    finish_reason: Some(finish_reason),
                    logprobs: None,
                }],
                usage,
                system_fingerprint: None,
            },
            summary,
        ))
    }
}

/// The sampling parameters of a request, every range checked (the error names the field).
pub(crate) fn sampling_params(fields: &SamplingFields) -> Result<SamplingParams, GatewayError> {
    if fields.n.is_some_and(|n| n != 1) {
        return Err(GatewayError::invalid("n", "only n = 1 is supported"));
    }
    for (param, value) in [
        ("temperature", fields.temperature),
        ("top_p", fields.top_p),
        ("min_p", fields.min_p),
        ("presence_penalty", fields.presence_penalty),
        ("frequency_penalty", fields.frequency_penalty),
    ] {
        if let Some(value) = value {
            hearth_infer::llm::check_float(param, value)?;
        }
    }
    let defaults = SamplingParams::default();
    let narrow = |v: Option<f64>, default: f32| v.map_or(default, |v| v as f32);
    let params = SamplingParams {
        max_tokens: fields.max_completion_tokens.or(fields.max_tokens),
        temperature: narrow(fields.temperature, defaults.temperature),
        // A top_p above 0 stays above 0 in f32 (the smallest ones would round to 0).
        top_p: narrow(fields.top_p, defaults.top_p).max(f32::MIN_POSITIVE),
        top_k: fields.top_k.unwrap_or(defaults.top_k),
        min_p: narrow(fields.min_p, defaults.min_p),
        seed: fields.seed,
        stop: fields
            .stop
            .clone()
            .map(|s| s.into_vec())
            .unwrap_or_default(),
        presence_penalty: narrow(fields.presence_penalty, 0.0),
        frequency_penalty: narrow(fields.frequency_penalty, 0.0),
        ignore_eos: fields.ignore_eos.unwrap_or(false),
    };
    params.validate()?;
    Ok(params)
}

fn response_constraint(
    format: Option<&hearth_types::ResponseFormat>,
) -> Result<Option<Constraint>, GatewayError> {
    let Some(format) = format else {
        return Ok(None);
    };
    match format.kind.as_str() {
        "text" => Ok(None),
        "json_object" => Ok(Some(Constraint::JsonObject)),
        "json_schema" => {
            let schema = format
                .json_schema
                .as_ref()
                .ok_or_else(|| {
                    GatewayError::invalid(
                        "response_format.json_schema",
                        "required when type is json_schema",
                    )
                })?
                .schema
                .clone()
                .unwrap_or_else(|| json!({"type": "object"}));
            if !schema.is_object() {
                return Err(GatewayError::invalid(
                    "response_format.json_schema.schema",
                    "must be a JSON Schema object",
                ));
            }
            Ok(Some(Constraint::JsonSchema(schema)))
        }
        other => Err(GatewayError::invalid(
            "response_format.type",
            format!("unknown type '{other}'; use text, json_object or json_schema"),
        )),
    }
}

const VALID_ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

/// A chat request as the door checked it: what every route needs, computed once.
#[derive(Debug, Clone)]
pub(crate) struct CheckedChat {
    pub params: SamplingParams,
    pub mode: ToolMode,
    /// The request's own `response_format`, as a constraint.
    pub constraint: Option<Constraint>,
}

/// Checks what every chat request needs, wherever it goes (a local engine or an upstream):
/// messages and roles, every sampling range, tools and tool choice, the response format.
pub(crate) fn check_chat(request: &ChatCompletionRequest) -> Result<CheckedChat, GatewayError> {
    if request.messages.is_empty() {
        return Err(GatewayError::invalid(
            "messages",
            "must contain at least one message",
        ));
    }
    for (i, m) in request.messages.iter().enumerate() {
        if !VALID_ROLES.contains(&m.role.as_str()) {
            return Err(GatewayError::invalid(
                &format!("messages[{i}].role"),
                format!(
                    "unknown role '{}'; use one of {}",
                    m.role,
                    VALID_ROLES.join(", ")
                ),
            ));
        }
    }
    if let Some(effort) = &request.reasoning_effort {
        if !hearth_types::openai::REASONING_EFFORTS.contains(&effort.as_str()) {
            return Err(GatewayError::invalid(
                "reasoning_effort",
                format!(
                    "unknown effort '{effort}'; use one of {}",
                    hearth_types::openai::REASONING_EFFORTS.join(", ")
                ),
            ));
        }
    }
    Ok(CheckedChat {
        params: sampling_params(&request.sampling)?,
        mode: tool_mode(request.tools.as_deref(), request.tool_choice.as_ref())?,
        constraint: response_constraint(request.response_format.as_ref())?,
    })
}

/// The prompt `request` is on `engine`: its conversation, the tools `mode` offers and its
/// template keyword arguments, rendered with the model's chat template.
fn render_prompt(
    engine: &LlmHandle,
    request: &ChatCompletionRequest,
    mode: &ToolMode,
) -> Result<String, GatewayError> {
    let offered: Option<&[Tool]> = match mode {
        ToolMode::None => None,
        ToolMode::Auto(tools) | ToolMode::Forced(tools) => Some(tools),
    };
    let kwargs = template_kwargs(request);
    Ok(engine
        .template()
        .render_with(&request.messages, offered, true, kwargs.as_ref())?)
}

/// What the chat template reads besides the conversation: the request's
/// `chat_template_kwargs`, and its `reasoning_effort` unless the kwargs name one themselves.
fn template_kwargs(request: &ChatCompletionRequest) -> Option<serde_json::Map<String, Value>> {
    let mut kwargs = request.chat_template_kwargs.clone();
    if let Some(effort) = &request.reasoning_effort {
        kwargs
            .get_or_insert_with(Default::default)
            .entry("reasoning_effort")
            .or_insert_with(|| Value::String(effort.clone()));
    }
    kwargs
}

impl Gateway {
    /// Starts a chat completion for the apps' own calls (no API key).
    pub async fn chat(&self, request: &ChatCompletionRequest) -> Result<ChatStream, GatewayError> {
        self.chat_as(request, &crate::Caller::default()).await
    }

    /// A chat completion whose answer must follow `constraint` (apps use grammars that the
    /// OpenAI request cannot express); `None` keeps the request's own `response_format`.
    /// Grammars run on this machine's engines: a constrained request goes to the route's
    /// first local deployment.
    pub async fn chat_constrained(
        &self,
        request: &ChatCompletionRequest,
        constraint: Option<Constraint>,
    ) -> Result<ChatStream, GatewayError> {
        match constraint {
            None => self.chat(request).await,
            Some(constraint) => self.constrained_local(request, constraint).await,
        }
    }

    /// The prompt tokens `request` takes on local model `model`, as [`Self::local_chat`]
    /// would render it.
    pub(crate) async fn count_local_prompt(
        &self,
        model: &str,
        request: &ChatCompletionRequest,
        checked: &CheckedChat,
    ) -> Result<u32, GatewayError> {
        let (_, engine) = self.chat_engine(model, "messages/count_tokens").await?;
        let prompt = render_prompt(&engine, request, &checked.mode)?;
        Ok(engine.tokenize_chat(&prompt).len() as u32)
    }

    /// A chat completion on this machine's engine for `request.model`.
    /// `owner`: whose request it is (key or tenant; empty for the apps' own), for the
    /// engine's turns between clients.
    /// `checked`: what the door made of `request` ([`check_chat`]); `constraint` overrides
    /// its response format.
    pub(crate) async fn local_chat(
        &self,
        request: &ChatCompletionRequest,
        checked: &CheckedChat,
        constraint: Option<Constraint>,
        owner: &str,
    ) -> Result<ChatStream, GatewayError> {
        let params = checked.params.clone();
        let mode = checked.mode.clone();
        let mut constraint = constraint.or_else(|| checked.constraint.clone());
        let (info, engine) = self.chat_engine(&request.model, "chat completions").await?;
        if let ToolMode::Forced(tools) = &mode {
            constraint = Some(Constraint::JsonSchema(call_schema(tools)));
        }
        let syntax = ToolSyntax::of(engine.template());
        let prompt = render_prompt(&engine, request, &mode)?;
        let tokens = engine.tokenize_chat(&prompt);
        let forced = matches!(mode, ToolMode::Forced(_));
        let parallel = request.parallel_tool_calls.unwrap_or(true);
        let mut ask = GenerateRequest {
            prompt: tokens,
            params,
            constraint,
            ..Default::default()
        };
        let mut held_calls = false;
        let mut after_thought = false;
        // `auto`: the answer is free, but a call it starts keeps to its tool's schema; the
        // family's markers stay in the text for the call reader.
        if let (ToolMode::Auto(tools), None) = (&mode, &ask.constraint) {
            ask.preserve = markers(syntax).iter().map(|m| m.to_string()).collect();
            let control = |text: &str| engine.control_token(text);
            let grammar = self
                .settings
                .constrain_auto_tool_calls
                .then(|| {
                    call_grammar(
                        syntax,
                        engine.template().source(),
                        tools,
                        parallel,
                        &control,
                    )
                })
                .flatten();
            if let Some(grammar) = grammar {
                ask.constraint = Some(Constraint::Lark(grammar.lark));
                ask.triggers = grammar.triggers;
                held_calls = true;
            }
        }
        // A reasoning model: its thought is kept apart from the answer, and an answer held
        // to a schema is held to it only once the thought (opened by the prompt) is over.
        let reasoning = Reasoning::of(engine.template(), &prompt);
        if let Some(r) = &reasoning {
            ask.preserve.extend(r.markers());
            let control = |text: &str| engine.control_token(text);
            if let (true, Some(constraint)) = (r.opened_in_prompt(), &ask.constraint) {
                if let Some(lark) = after_reasoning(r, constraint, &control) {
                    ask.constraint = Some(Constraint::Lark(lark));
                    ask.triggers = vec![regex::escape(r.end())];
                    after_thought = true;
                }
            } else if let Some(lark) = ask
                .constraint
                .as_ref()
                .and_then(|c| optional_thought_then(r, c, &control))
            {
                // The model opens its block itself (Qwen3): it may think first, or not.
                ask.constraint = Some(Constraint::Lark(lark));
                after_thought = true;
            }
        }
        // Kept for the retry below: only a request with a call grammar may need it.
        let free = held_calls.then(|| GenerateRequest {
            constraint: None,
            triggers: Vec::new(),
            ..ask.clone()
        });
        let generation = match (engine.generate_for(ask, owner), free) {
            // A tool schema the grammar engine cannot enforce: the calls are still read
            // back and checked against it, as before a call could be held to it.
            (Err(hearth_infer::InferError::InvalidParameter { param, .. }), Some(free))
                if param == "grammar" =>
            {
                tracing::warn!(
                    model = %info.name,
                    "a tool's parameters cannot be enforced; auto-mode calls are checked after"
                );
                engine.generate_for(free, owner)
            }
            (other, _) => other,
        };
        let generation = generation.map_err(|e| match e {
            // The schema that cannot be enforced is the tools' parameters, not a
            // response_format the request never sent; after a thought it is still theirs.
            hearth_infer::InferError::InvalidParameter { param, message }
                if forced
                    && (param == "response_format" || after_thought && param == "grammar") =>
            {
                hearth_infer::InferError::InvalidParameter {
                    param: "tools".into(),
                    message: message.replace("the JSON schema", "a tool's parameters"),
                }
            }
            hearth_infer::InferError::InvalidParameter { param, message }
                if after_thought && param == "grammar" =>
            {
                hearth_infer::InferError::InvalidParameter {
                    param: "response_format".into(),
                    message,
                }
            }
            other => other,
        })?;
        let mut generation = generation;
        // Refused here, before any answer starts, when no sequence comes free in time.
        generation.admitted().await?;
        let (tx, rx) = mpsc::channel(64);
        let reading = Reading {
            mode,
            syntax,
            parallel,
            reasoning: ReasoningSplit::new(reasoning.clone()),
            counter: reasoning.is_some().then(|| engine.clone()),
        };
        tokio::spawn(relay_chat(generation, reading, tx));
        Ok(ChatStream::new(
            format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
            info.name,
            unix_now(),
            rx,
        ))
    }

    /// Starts a text completion per prompt (several prompts only without streaming);
    /// `params`: the request's sampling, checked at the door.
    pub(crate) async fn completion(
        &self,
        request: &CompletionRequest,
        params: SamplingParams,
        owner: &str,
    ) -> Result<Vec<ChatStream>, GatewayError> {
        let (info, engine) = self.chat_engine(&request.model, "completions").await?;
        let prompts: Vec<Vec<u32>> = match &request.prompt {
            CompletionPrompt::Text(text) => vec![tokenize_prompt(&engine, text)?],
            CompletionPrompt::Texts(texts) => texts
                .iter()
                .map(|t| tokenize_prompt(&engine, t))
                .collect::<Result<_, _>>()?,
            CompletionPrompt::Tokens(tokens) => vec![tokens.clone()],
            CompletionPrompt::TokenLists(lists) => lists.clone(),
        };
        if prompts.is_empty() {
            return Err(GatewayError::invalid("prompt", "must not be empty"));
        }
        if request.stream && prompts.len() > 1 {
            return Err(GatewayError::invalid(
                "prompt",
                "streaming takes a single prompt",
            ));
        }
        // Prompts wait for sequences in the engine's queue: more than it holds can never be
        // queued together, whenever the request is retried.
        if prompts.len() > engine.queue_capacity() {
            return Err(GatewayError::invalid(
                "prompt",
                format!(
                    "{} prompts in one request; at most {} ([llm] queue_capacity)",
                    prompts.len(),
                    engine.queue_capacity()
                ),
            ));
        }
        let mut streams = Vec::with_capacity(prompts.len());
        for (i, tokens) in prompts.into_iter().enumerate() {
            let echo = request.echo.then(|| engine.detokenize(&tokens));
            let mut generation = engine.generate_for(
                GenerateRequest {
                    prompt: tokens,
                    params: params.clone(),
                    constraint: None,
                    ..Default::default()
                },
                owner,
            )?;
            if i == 0 {
                generation.admitted().await?;
            }
            let (tx, rx) = mpsc::channel(64);
            tokio::spawn(async move {
                if let Some(echo) = echo {
                    let _ = tx.send(ChatEvent::Delta(text_delta(echo))).await;
                }
                relay_chat(
                    generation,
                    Reading {
                        mode: ToolMode::None,
                        syntax: ToolSyntax::Json,
                        parallel: true,
                        reasoning: ReasoningSplit::new(None),
                        counter: None,
                    },
                    tx,
                )
                .await;
            });
            streams.push(ChatStream::new(
                format!("cmpl-{}", uuid::Uuid::new_v4().simple()),
                info.name.clone(),
                unix_now(),
                rx,
            ));
        }
        Ok(streams)
    }

    /// Embeds texts for an app: one vector per text, in order.
    pub async fn embed_texts(
        &self,
        model: &str,
        texts: Vec<String>,
    ) -> Result<Vec<Vec<f32>>, GatewayError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (_, engine) = self.embedding_engine(model).await?;
        let embeddings = engine
            .embed(texts.into_iter().map(EmbedInput::Text).collect())
            .await?;
        Ok(embeddings.vectors)
    }

    /// Embeds the request's inputs.
    pub async fn embed(
        &self,
        request: &EmbeddingRequest,
    ) -> Result<EmbeddingResponse, GatewayError> {
        self.embed_for(request, "").await
    }

    /// [`Gateway::embed`] on behalf of `owner` (key or tenant), for the engine's turns.
    pub(crate) async fn embed_for(
        &self,
        request: &EmbeddingRequest,
        owner: &str,
    ) -> Result<EmbeddingResponse, GatewayError> {
        let inputs: Vec<EmbedInput> = match &request.input {
            EmbeddingInput::Text(t) => vec![EmbedInput::Text(t.clone())],
            EmbeddingInput::Texts(ts) => ts.iter().cloned().map(EmbedInput::Text).collect(),
            EmbeddingInput::Tokens(t) => vec![EmbedInput::Tokens(t.clone())],
            EmbeddingInput::TokenLists(ls) => ls.iter().cloned().map(EmbedInput::Tokens).collect(),
        };
        if inputs.is_empty() {
            return Err(GatewayError::invalid("input", "must not be empty"));
        }
        let most = self.options.max_embedding_inputs;
        if inputs.len() > most {
            return Err(GatewayError::invalid(
                "input",
                format!(
                    "{} inputs in one request; at most {most} ([embeddings] max_inputs_per_request)",
                    inputs.len()
                ),
            ));
        }
        let base64 = match request.encoding_format.as_deref() {
            None | Some("float") => false,
            Some("base64") => true,
            Some(other) => {
                return Err(GatewayError::invalid(
                    "encoding_format",
                    format!("unknown format '{other}'; use float or base64"),
                ))
            }
        };
        let (info, engine) = self.embedding_engine(&request.model).await?;
        if let Some(dims) = request.dimensions {
            if dims as usize != engine.dims() {
                return Err(GatewayError::invalid(
                    "dimensions",
                    format!(
                        "this model produces {} dimensions and cannot change it",
                        engine.dims()
                    ),
                ));
            }
        }
        let embeddings = engine.embed_for(inputs, owner).await?;
        let data = embeddings
            .vectors
            .into_iter()
            .enumerate()
            .map(|(index, vector)| EmbeddingData {
                object: "embedding".into(),
                index: index as u32,
                embedding: if base64 {
                    let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
                    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                } else {
                    json!(vector)
                },
            })
            .collect();
        let tokens = embeddings.prompt_tokens as u32;
        Ok(EmbeddingResponse {
            object: "list".into(),
            data,
            model: info.name,
            usage: EmbeddingUsage {
                prompt_tokens: tokens,
                total_tokens: tokens,
            },
        })
    }
}

fn tokenize_prompt(engine: &LlmHandle, text: &str) -> Result<Vec<u32>, GatewayError> {
    if text.is_empty() {
        return Err(GatewayError::invalid("prompt", "must not be empty"));
    }
    Ok(engine.tokenize(text, true))
}

fn text_delta(text: String) -> ChunkDelta {
    ChunkDelta {
        content: Some(text),
        ..Default::default()
    }
}

/// Call number `index` of an answer, as two deltas: its id and name, then its arguments.
fn tool_call_deltas(index: u32, call: ToolCall) -> [ChunkDelta; 2] {
    let mut start = call_start_delta(call.id, call.function.name);
    let mut args = args_delta(call.function.arguments);
    for delta in [&mut start, &mut args] {
        for d in delta.tool_calls.iter_mut().flatten() {
            d.index = index;
        }
    }
    [start, args]
}

/// Streams a forced (constrained) tool call as OpenAI deltas: the id and name as soon as the
/// name is complete, then the arguments piece by piece. The constraint fixes the text's shape
/// to `{"name":"..","arguments":{..}}` with compact separators.
#[derive(Default)]
struct ForcedCallStream {
    /// Whose ids the call gets ([`new_call_id`]).
    syntax: ToolSyntax,
    held: String,
    args_start: Option<usize>,
    args_sent: usize,
}

impl ForcedCallStream {
    const ARGS_KEY: &'static str = "\"arguments\":";

    fn push(&mut self, text: &str) -> Vec<ChunkDelta> {
        self.held.push_str(text);
        let mut out = Vec::new();
        if self.args_start.is_none() {
            if let Some(at) = self.held.find(Self::ARGS_KEY) {
                let head = format!("{}}}", self.held[..at].trim_end().trim_end_matches(','));
                let name = serde_json::from_str::<serde_json::Value>(&head)
                    .ok()
                    .and_then(|v| v.get("name").and_then(|n| n.as_str()).map(str::to_owned));
                if let Some(name) = name {
                    let id = new_call_id(self.syntax);
                    out.push(call_start_delta(id, name));
                    self.args_start = Some(at + Self::ARGS_KEY.len());
                }
            }
        }
        if let Some(start) = self.args_start {
            // Hold back the last character: it may be the closing brace of the outer object.
            let end = self.held[start..]
                .char_indices()
                .last()
                .map(|(i, _)| start + i)
                .unwrap_or(start);
            if end > start + self.args_sent {
                out.push(args_delta(
                    self.held[start + self.args_sent..end].to_owned(),
                ));
                self.args_sent = end - start;
            }
        }
        out
    }

    /// The rest of the arguments at the end, or `None` if no call was started (cut short).
    fn finish(&mut self) -> Option<Vec<ChunkDelta>> {
        let start = self.args_start?;
        let args = self.held[start..].trim_end();
        let args = args.strip_suffix('}').unwrap_or(args);
        let mut out = Vec::new();
        if args.len() > self.args_sent {
            out.push(args_delta(args[self.args_sent..].to_owned()));
        }
        Some(out)
    }
}

fn call_start_delta(id: String, name: String) -> ChunkDelta {
    ChunkDelta {
        tool_calls: Some(vec![ToolCallDelta {
            index: 0,
            id: Some(id),
            kind: Some("function".into()),
            function: FunctionCallDelta {
                name: Some(name),
                arguments: Some(String::new()),
            },
        }]),
        ..Default::default()
    }
}

fn args_delta(arguments: String) -> ChunkDelta {
    ChunkDelta {
        tool_calls: Some(vec![ToolCallDelta {
            index: 0,
            id: None,
            kind: None,
            function: FunctionCallDelta {
                name: None,
                arguments: Some(arguments),
            },
        }]),
        ..Default::default()
    }
}

/// The JSON a schema-bound answer must hold, as a Lark rule: none for a grammar of the
/// caller's own.
fn held_json(constraint: &Constraint) -> Option<String> {
    let mut schema = match constraint {
        Constraint::JsonObject => serde_json::json!({"type": "object"}),
        Constraint::JsonSchema(schema) => schema.clone(),
        Constraint::Lark(_) => return None,
    };
    if let Some(obj) = schema.as_object_mut() {
        obj.entry("x-guidance").or_insert(serde_json::json!({
            "whitespace_flexible": false, "item_separator": ",", "key_separator": ":"
        }));
    }
    Some(format!("%json {schema}"))
}

/// `constraint` for a model that opens its thinking block itself: an optional block first
/// (its start marker, any text, its end marker), some whitespace, then the JSON. The block
/// is held by token where both markers are control tokens, else by text (it ends at the
/// first end marker). gpt-oss: an optional `analysis` message, then the `final` channel's
/// header, then the JSON (its markers must be control tokens). `None` for a grammar of the
/// caller's own.
fn optional_thought_then(
    reasoning: &Reasoning,
    constraint: &Constraint,
    control: &dyn Fn(&str) -> Option<u32>,
) -> Option<String> {
    let json = held_json(constraint)?;
    let (start, end) = match reasoning {
        Reasoning::Block { start, end, .. } => (*start, *end),
        Reasoning::Harmony => {
            let [channel, message, end, start] =
                ["<|channel|>", "<|message|>", "<|end|>", "<|start|>"].map(control);
            let (channel, message, end, start) = (channel?, message?, end?, start?);
            return Some(format!(
                "start: thought? <[{channel}]> \"final\" <[{message}]> /[ \\t\\n]{{0,4}}/ {json}\n\
                 thought: <[{channel}]> \"analysis\" <[{message}]> <[^{end}]>* <[{end}]> \
                 <[{start}]> \"assistant\"\n"
            ));
        }
    };
    let quote = |text: &str| serde_json::to_string(text).expect("strings serialize");
    let thought = match (control(start), control(end)) {
        (Some(open), Some(close)) => {
            format!("thought: <[{open}]> <[^{close}]>* <[{close}]>\n")
        }
        _ => format!(
            "thought: {} body\nbody[suffix={}]: /(.|\\n)*/\n",
            quote(start),
            quote(end)
        ),
    };
    Some(format!(
        "start: thought? /[ \\t\\n]{{0,4}}/ {json}\n{thought}"
    ))
}

/// `constraint`, starting once `reasoning` is over: its end marker, some whitespace, then
/// the JSON. `None` for a grammar of the caller's own, which stays as it is (the model then
/// cannot think first).
/// `control`: the id of a control token, by its text (the end marker may be one).
fn after_reasoning(
    reasoning: &Reasoning,
    constraint: &Constraint,
    control: &dyn Fn(&str) -> Option<u32>,
) -> Option<String> {
    let json = held_json(constraint)?;
    let end = match control(reasoning.end()) {
        Some(id) => format!("<[{id}]>"),
        None => serde_json::to_string(reasoning.end()).expect("strings serialize"),
    };
    Some(format!("start: {end} /[ \\t\\n]{{0,4}}/ {json}\n"))
}

/// What [`relay_chat`] reads a local answer with.
struct Reading {
    mode: ToolMode,
    /// How the model writes tool calls (read back in `auto` mode).
    syntax: ToolSyntax,
    /// Several calls in one answer allowed (`parallel_tool_calls`).
    parallel: bool,
    /// Sets a reasoning model's thought apart from its answer.
    reasoning: ReasoningSplit,
    /// Counts the thought's tokens, for a model that reasons.
    counter: Option<LlmHandle>,
}

/// The answer's content as it streams, read as its tool mode asks.
struct ContentReader {
    forced: bool,
    holding: bool,
    forced_call: ForcedCallStream,
    calls: CallStream,
}

impl ContentReader {
    fn push(&mut self, text: &str) -> Vec<ChunkDelta> {
        if text.is_empty() {
            Vec::new()
        } else if self.forced {
            self.forced_call.push(text)
        } else if self.holding {
            let out = self.calls.push(text);
            if out.is_empty() {
                Vec::new()
            } else {
                vec![text_delta(out)]
            }
        } else {
            vec![text_delta(text.to_owned())]
        }
    }
}

fn reasoning_delta(text: String) -> ChunkDelta {
    ChunkDelta {
        reasoning_content: Some(text),
        ..Default::default()
    }
}

/// Turns engine events into OpenAI events. Ends when the client's receiver is dropped, which
/// drops the generation and so frees its sequence.
async fn relay_chat(
    mut generation: GenerationStream,
    reading: Reading,
    tx: mpsc::Sender<ChatEvent>,
) {
    let Reading {
        mode,
        syntax,
        parallel,
        mut reasoning,
        counter,
    } = reading;
    let (tools, forced) = match &mode {
        ToolMode::None => (Vec::new(), false),
        ToolMode::Auto(t) => (t.clone(), false),
        ToolMode::Forced(t) => (t.clone(), true),
    };
    let mut reader = ContentReader {
        forced,
        // Auto mode: text that may still turn out to be a tool call is held until we know.
        // Functionary's answers are messages even without tools: their text is read out.
        holding: (!tools.is_empty() || syntax == ToolSyntax::Functionary) && !forced,
        forced_call: ForcedCallStream {
            syntax,
            ..Default::default()
        },
        calls: CallStream::new(syntax),
    };
    while let Some(event) = generation.next().await {
        match event {
            GenerateEvent::Logprobs(_) => {} // only scoring requests get these
            GenerateEvent::Text(text) => {
                let piece = reasoning.push(&text);
                let mut deltas = Vec::new();
                if !piece.reasoning.is_empty() {
                    deltas.push(reasoning_delta(piece.reasoning));
                }
                deltas.extend(reader.push(&piece.content));
                for delta in deltas {
                    if tx.send(ChatEvent::Delta(delta)).await.is_err() {
                        return;
                    }
                }
            }
            GenerateEvent::Done(summary) => {
                let mut finish_reason = summary.finish_reason.as_str().to_owned();
                let piece = reasoning.finish();
                let mut deltas = Vec::new();
                if !piece.reasoning.is_empty() {
                    deltas.push(reasoning_delta(piece.reasoning));
                }
                deltas.extend(reader.push(&piece.content));
                if forced {
                    match reader.forced_call.finish() {
                        Some(rest) if summary.finish_reason == FinishReason::Stop => {
                            deltas.extend(rest);
                            finish_reason = "tool_calls".into();
                        }
                        // Cut short (max_tokens): what was generated, as text.
                        _ => deltas.push(text_delta(std::mem::take(&mut reader.forced_call.held))),
                    }
                } else if reader.holding {
                    let held = reader.calls.held_text();
                    let (text, written) = reader.calls.finish(&parameters_of(&tools));
                    // Calls that are not valid are the text they are; an answer without
                    // calls is its text, less its family's markers.
                    let held = if written.is_empty() {
                        text.clone()
                    } else {
                        held
                    };
                    match checked_calls(written, &tools, syntax) {
                        Some(mut found) => {
                            // `parallel_tool_calls: false`: one call per answer.
                            if !parallel {
                                found.truncate(1);
                            }
                            if !text.is_empty() {
                                deltas.push(text_delta(text));
                            }
                            for (index, call) in found.into_iter().enumerate() {
                                deltas.extend(tool_call_deltas(index as u32, call));
                            }
                            finish_reason = "tool_calls".into();
                        }
                        None if !held.is_empty() => deltas.push(text_delta(held)),
                        None => {}
                    }
                }
                for delta in deltas {
                    let _ = tx.send(ChatEvent::Delta(delta)).await;
                }
                let mut usage = Usage::new(
                    summary.prompt_tokens as u32,
                    summary.completion_tokens as u32,
                );
                if let Some(counter) = &counter {
                    // The thought's tokens, counted again from its text (a piece of a token
                    // at its edges may count one either way), never more than were made.
                    let thought = counter.tokenize(&reasoning.thought, false).len() as u32;
                    usage.completion_tokens_details = Some(CompletionTokensDetails {
                        reasoning_tokens: thought.min(usage.completion_tokens),
                    });
                }
                let _ = tx
                    .send(ChatEvent::Finished {
                        finish_reason,
                        usage,
                        summary,
                    })
                    .await;
                return;
            }
            GenerateEvent::Failed(e) => {
                let _ = tx.send(ChatEvent::Failed(e.into())).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model that opens its own thinking block (Qwen3) may think before a schema-bound
    /// answer, or answer at once; either way the answer is the schema's, and nothing but
    /// whitespace comes between the thought and it.
    #[test]
    fn a_schema_bound_answer_may_follow_a_thought_the_model_opens_itself() {
        use hearth_infer::llm::lark_accepts;
        let schema = serde_json::json!({"type": "object",
            "properties": {"capital": {"type": "string"}},
            "required": ["capital"], "additionalProperties": false});
        let constraint = Constraint::JsonSchema(schema);
        let block = Reasoning::Block {
            open: false,
            start: "<think>",
            end: "</think>",
        };
        let by_text = optional_thought_then(&block, &constraint, &|_| None).unwrap();
        let accepts = |lark: &str, text: &str| lark_accepts(lark, text).unwrap();
        for good in [
            r#"{"capital":"Rome"}"#,
            "<think>\nItaly's capital: Rome. {not json}\n</think>\n\n{\"capital\":\"Rome\"}",
            "<think></think>{\"capital\":\"Rome\"}",
        ] {
            assert!(accepts(&by_text, good), "{good:?}\n{by_text}");
        }
        for bad in [
            "Rome",
            "<think>Rome</think>Rome",
            "<think>a</think>b</think>{\"capital\":\"Rome\"}",
            "<think>never closed {\"capital\":\"Rome\"}",
            r#"{"capital":"Rome","extra":1}"#,
        ] {
            assert!(!accepts(&by_text, bad), "{bad:?}\n{by_text}");
        }
        // Control-token markers are held by token: here tokens 1 and 2 of a byte vocabulary.
        let control = |text: &str| match text {
            "<think>" => Some(1),
            "</think>" => Some(2),
            _ => None,
        };
        let by_token = optional_thought_then(&block, &constraint, &control).unwrap();
        assert!(accepts(
            &by_token,
            "\u{1}Rome, </think> as text\u{2}\n{\"capital\":\"Rome\"}"
        ));
        assert!(accepts(&by_token, r#"{"capital":"Rome"}"#));
        assert!(!accepts(&by_token, "\u{1}Rome\u{2}Rome"));
        // A grammar of the caller's own stays as it is.
        assert!(
            optional_thought_then(&block, &Constraint::Lark("start: \"x\"".into()), &|_| None)
                .is_none()
        );
        // gpt-oss: an analysis message may come first, then the final channel holds the JSON.
        let harmony = |text: &str| {
            ["<|channel|>", "<|message|>", "<|end|>", "<|start|>"]
                .iter()
                .position(|m| *m == text)
                .map(|i| i as u32 + 1)
        };
        let by_channel = optional_thought_then(&Reasoning::Harmony, &constraint, &harmony).unwrap();
        let final_json = "\u{1}final\u{2}{\"capital\":\"Rome\"}";
        assert!(accepts(&by_channel, final_json), "{by_channel}");
        let thought = format!("\u{1}analysis\u{2}Italy: Rome.\u{3}\u{4}assistant{final_json}");
        assert!(accepts(&by_channel, &thought), "{by_channel}");
        assert!(!accepts(&by_channel, r#"{"capital":"Rome"}"#));
        assert!(!accepts(&by_channel, "\u{1}final\u{2}Rome"));
        assert!(optional_thought_then(&Reasoning::Harmony, &constraint, &|_| None).is_none());
    }

    fn collect(deltas: &[ChunkDelta]) -> (String, String, usize) {
        let mut name = String::new();
        let mut args = String::new();
        let mut ids = 0;
        for d in deltas {
            for c in d.tool_calls.as_deref().unwrap_or_default() {
                ids += c.id.is_some() as usize;
                name.push_str(c.function.name.as_deref().unwrap_or(""));
                args.push_str(c.function.arguments.as_deref().unwrap_or(""));
            }
        }
        (name, args, ids)
    }

    #[test]
    fn forced_calls_stream_name_first_then_arguments_in_pieces() {
        let text = r##"{"name":"cancel_order","arguments":{"order_id":"#W1","reason":"ordered by mistake"}}"##;
        // Feed it in awkward pieces, as tokens would come.
        let mut stream = ForcedCallStream::default();
        let mut deltas = Vec::new();
        let mut pieces = 0;
        for chunk in text.as_bytes().chunks(3) {
            let out = stream.push(std::str::from_utf8(chunk).unwrap());
            pieces += out.len();
            deltas.extend(out);
        }
        deltas.extend(stream.finish().unwrap());
        let (name, args, ids) = collect(&deltas);
        assert_eq!(name, "cancel_order");
        assert_eq!(
            args,
            r##"{"order_id":"#W1","reason":"ordered by mistake"}"##
        );
        assert_eq!(ids, 1);
        assert!(pieces > 5, "arguments were not streamed ({pieces} deltas)");
        // The first delta carries the name, before any argument text.
        let first = &deltas[0].tool_calls.as_ref().unwrap()[0];
        assert_eq!(first.function.name.as_deref(), Some("cancel_order"));
    }

    #[test]
    fn a_forced_call_cut_short_has_no_call() {
        let mut stream = ForcedCallStream::default();
        stream.push(r#"{"name":"canc"#);
        assert!(stream.finish().is_none());
    }

    #[test]
    fn auto_mode_holds_back_only_what_may_be_a_call() {
        use crate::tools::may_be_tool_calls;
        assert!(may_be_tool_calls("  "));
        assert!(may_be_tool_calls("{\"na"));
        assert!(may_be_tool_calls("<tool"));
        assert!(!may_be_tool_calls("Sure, "));
    }
}
