//! Chat, text completions and embeddings on local engines, in OpenAI's shapes.

use base64::Engine as _;
use hearth_infer::embed::EmbedInput;
use hearth_infer::llm::{
    Constraint, FinishReason, GenerateEvent, GenerateRequest, GenerationStream, GenerationSummary,
    LlmHandle, SamplingParams,
};
use hearth_types::{
    AssistantMessage, ChatChoice, ChatCompletionRequest, ChatCompletionResponse, ChunkDelta,
    CompletionPrompt, CompletionRequest, EmbeddingData, EmbeddingInput, EmbeddingRequest,
    EmbeddingResponse, EmbeddingUsage, FunctionCallDelta, SamplingFields, Tool, ToolCall,
    ToolCallDelta, Usage,
};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::meter::Meter;
use crate::tool_syntax::{CallStream, ToolSyntax};
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
        let mut calls: Vec<ToolCall> = Vec::new();
        while let Some(event) = self.next().await {
            match event {
                ChatEvent::Delta(delta) => {
                    if let Some(text) = delta.content {
                        content.push_str(&text);
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
        let offered: Option<&[Tool]> = match &mode {
            ToolMode::None => None,
            ToolMode::Auto(tools) | ToolMode::Forced(tools) => Some(tools),
        };
        if let ToolMode::Forced(tools) = &mode {
            constraint = Some(Constraint::JsonSchema(call_schema(tools)));
        }
        let syntax = ToolSyntax::of(engine.template());
        let kwargs = template_kwargs(request);
        let prompt =
            engine
                .template()
                .render_with(&request.messages, offered, true, kwargs.as_ref())?;
        let tokens = engine.tokenize_chat(&prompt);
        let forced = matches!(mode, ToolMode::Forced(_));
        let generation = engine
            .generate_for(
                GenerateRequest {
                    prompt: tokens,
                    params,
                    constraint,
                },
                owner,
            )
            .map_err(|e| match e {
                // The schema that cannot be enforced is the tools' parameters, not a
                // response_format the request never sent.
                hearth_infer::InferError::InvalidParameter { param, message }
                    if forced && param == "response_format" =>
                {
                    hearth_infer::InferError::InvalidParameter {
                        param: "tools".into(),
                        message: message.replace("the JSON schema", "a tool's parameters"),
                    }
                }
                other => other,
            })?;
        let mut generation = generation;
        // Refused here, before any answer starts, when no sequence comes free in time.
        generation.admitted().await?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(relay_chat(generation, mode, syntax, tx));
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
                relay_chat(generation, ToolMode::None, ToolSyntax::Json, tx).await;
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
                    out.push(call_start_delta(
                        format!("call_{}", uuid::Uuid::new_v4().simple()),
                        name,
                    ));
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

/// Turns engine events into OpenAI events. Ends when the client's receiver is dropped, which
/// drops the generation and so frees its sequence.
/// `syntax`: how the model writes tool calls (read back in `auto` mode).
async fn relay_chat(
    mut generation: GenerationStream,
    mode: ToolMode,
    syntax: ToolSyntax,
    tx: mpsc::Sender<ChatEvent>,
) {
    let (tools, forced) = match &mode {
        ToolMode::None => (Vec::new(), false),
        ToolMode::Auto(t) => (t.clone(), false),
        ToolMode::Forced(t) => (t.clone(), true),
    };
    let mut forced_call = ForcedCallStream::default();
    // Auto mode: text that may still turn out to be a tool call is held until we know.
    let mut calls = CallStream::new(syntax);
    let holding = !tools.is_empty() && !forced;
    while let Some(event) = generation.next().await {
        match event {
            GenerateEvent::Text(text) => {
                let deltas = if forced {
                    forced_call.push(&text)
                } else if holding {
                    let out = calls.push(&text);
                    if out.is_empty() {
                        Vec::new()
                    } else {
                        vec![text_delta(out)]
                    }
                } else {
                    vec![text_delta(text)]
                };
                for delta in deltas {
                    if tx.send(ChatEvent::Delta(delta)).await.is_err() {
                        return;
                    }
                }
            }
            GenerateEvent::Done(summary) => {
                let mut finish_reason = summary.finish_reason.as_str().to_owned();
                let mut deltas = Vec::new();
                if forced {
                    match forced_call.finish() {
                        Some(rest) if summary.finish_reason == FinishReason::Stop => {
                            deltas = rest;
                            finish_reason = "tool_calls".into();
                        }
                        // Cut short (max_tokens): what was generated, as text.
                        _ => deltas.push(text_delta(std::mem::take(&mut forced_call.held))),
                    }
                } else if holding {
                    let held = calls.held_text();
                    let (text, written) = calls.finish(&parameters_of(&tools));
                    match checked_calls(written, &tools) {
                        Some(found) => {
                            if !text.is_empty() {
                                deltas.push(text_delta(text));
                            }
                            for (index, call) in found.into_iter().enumerate() {
                                deltas.extend(tool_call_deltas(index as u32, call));
                            }
                            finish_reason = "tool_calls".into();
                        }
                        // Calls that are not valid are the text they are.
                        None if !held.is_empty() => deltas.push(text_delta(held)),
                        None => {}
                    }
                }
                for delta in deltas {
                    let _ = tx.send(ChatEvent::Delta(delta)).await;
                }
                let usage = Usage::new(
                    summary.prompt_tokens as u32,
                    summary.completion_tokens as u32,
                );
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
