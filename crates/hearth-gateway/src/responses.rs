//! The OpenAI Responses API, served by translation: a request's input items become the chat
//! conversation every local model and route already serves ([`conversation`],
//! [`chat_request`]); the answer becomes a response object, whole or as the documented stream
//! of events ([`ResponseBuilder`]). Responses asked to be stored are kept in hearth's
//! database ([`ResponseStore`]): visible only to the key that made them, gone after their
//! time to live, and the start of a conversation `previous_response_id` continues.

use hearth_store::sql::Value as Sql;
use hearth_store::{Database, StoreError};
use hearth_types::responses::{
    InputTokensDetails, OutputContent, OutputItem, OutputTokensDetails, ResponseObject,
    ResponseUsage, ResponsesInput, ResponsesRequest,
};
use hearth_types::{
    ChatCompletionRequest, ChatMessage, ChunkDelta, FunctionCall, FunctionDefinition,
    JsonSchemaFormat, MessageContent, NamedFunction, NamedToolChoice, ResponseFormat,
    SamplingFields, Tool, ToolCall, ToolChoice, Usage,
};
use serde_json::{json, Map, Value};

use crate::GatewayError;

/// A new id with `prefix` (`resp`, `msg`, `fc`, `rs`).
fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// The chat messages `request.input` is (its instructions not included).
pub fn conversation(request: &ResponsesRequest) -> Result<Vec<ChatMessage>, GatewayError> {
    let items = match &request.input {
        ResponsesInput::Text(text) => return Ok(vec![ChatMessage::new("user", text.clone())]),
        ResponsesInput::Items(items) => items,
    };
    let mut out: Vec<ChatMessage> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = |name: &str| format!("input[{i}].{name}");
        let kind = item["type"].as_str().unwrap_or("message");
        match kind {
            "message" => {
                let role = item["role"].as_str().unwrap_or_default();
                if !["user", "assistant", "system", "developer"].contains(&role) {
                    return Err(GatewayError::invalid(
                        &field("role"),
                        format!("unknown role '{role}'; use user, assistant, system or developer"),
                    ));
                }
                let text = content_text(&item["content"], &field("content"))?;
                out.push(ChatMessage::new(role, text));
            }
            "function_call" => {
                let text_of = |name: &str| {
                    item[name].as_str().map(str::to_owned).ok_or_else(|| {
                        GatewayError::invalid(&field(name), "required in a function_call item")
                    })
                };
                let call = ToolCall {
                    id: text_of("call_id")?,
                    kind: "function".into(),
                    function: FunctionCall {
                        name: text_of("name")?,
                        arguments: text_of("arguments")?,
                    },
                };
                // Calls one after another belong to one assistant turn.
                match out.last_mut() {
                    Some(last) if last.role == "assistant" && last.tool_calls.is_some() => {
                        last.tool_calls.get_or_insert_with(Vec::new).push(call)
                    }
                    _ => out.push(ChatMessage {
                        content: None,
                        tool_calls: Some(vec![call]),
                        ..ChatMessage::new("assistant", "")
                    }),
                }
            }
            "function_call_output" => {
                let id = item["call_id"].as_str().ok_or_else(|| {
                    GatewayError::invalid(&field("call_id"), "required in a function_call_output")
                })?;
                let output = match &item["output"] {
                    Value::String(text) => text.clone(),
                    Value::Null => {
                        return Err(GatewayError::invalid(
                            &field("output"),
                            "required in a function_call_output",
                        ))
                    }
                    other => content_text(other, &field("output"))?,
                };
                out.push(ChatMessage {
                    tool_call_id: Some(id.to_owned()),
                    ..ChatMessage::new("tool", output)
                });
            }
            // An earlier answer's thought: the template keeps or drops it.
            "reasoning" => {}
            other => {
                return Err(GatewayError::invalid(
                    &field("type"),
                    format!(
                        "'{other}' items are not supported; use message, function_call or \
                         function_call_output"
                    ),
                ))
            }
        }
    }
    Ok(out)
}

/// A message's text: a string, or its `input_text` / `output_text` parts joined.
fn content_text(content: &Value, field: &str) -> Result<String, GatewayError> {
    match content {
        Value::String(text) => Ok(text.clone()),
        Value::Array(parts) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (k, part) in parts.iter().enumerate() {
                match (part["type"].as_str(), part["text"].as_str()) {
                    (Some("input_text" | "output_text" | "text"), Some(text)) => {
                        texts.push(text.to_owned())
                    }
                    (Some("refusal"), _) => {
                        texts.push(part["refusal"].as_str().unwrap_or_default().to_owned())
                    }
                    (kind, _) => {
                        return Err(GatewayError::invalid(
                            &format!("{field}[{k}].type"),
                            format!(
                                "'{}' parts are not supported: this server's chat models read \
                                 text (input_text)",
                                kind.unwrap_or("?")
                            ),
                        ))
                    }
                }
            }
            Ok(texts.join(""))
        }
        _ => Err(GatewayError::invalid(
            field,
            "must be a string or a list of input_text parts",
        )),
    }
}

/// The chat request `request` is, after `prior` (the stored conversation it continues).
pub fn chat_request(
    request: &ResponsesRequest,
    prior: Vec<ChatMessage>,
) -> Result<ChatCompletionRequest, GatewayError> {
    let mut messages = Vec::new();
    if let Some(instructions) = &request.instructions {
        messages.push(ChatMessage::new("system", instructions.clone()));
    }
    messages.extend(prior);
    messages.extend(conversation(request)?);
    let tools = match &request.tools {
        None => None,
        Some(tools) => {
            let mut out = Vec::with_capacity(tools.len());
            for (i, tool) in tools.iter().enumerate() {
                if tool.kind != "function" {
                    return Err(GatewayError::invalid(
                        &format!("tools[{i}].type"),
                        format!(
                            "'{}' tools are not available here; declare function tools",
                            tool.kind
                        ),
                    ));
                }
                let name = tool.name.clone().ok_or_else(|| {
                    GatewayError::invalid(&format!("tools[{i}].name"), "required")
                })?;
                out.push(Tool {
                    kind: "function".into(),
                    function: FunctionDefinition {
                        name,
                        description: tool.description.clone(),
                        parameters: tool.parameters.clone(),
                        strict: tool.strict,
                    },
                });
            }
            Some(out)
        }
    };
    let tool_choice = match &request.tool_choice {
        None => None,
        Some(Value::String(mode)) => Some(ToolChoice::Mode(mode.clone())),
        Some(Value::Object(choice)) if choice.get("type") == Some(&json!("function")) => {
            let name = choice.get("name").and_then(Value::as_str).ok_or_else(|| {
                GatewayError::invalid("tool_choice.name", "required with type function")
            })?;
            Some(ToolChoice::Named(NamedToolChoice {
                kind: "function".into(),
                function: NamedFunction { name: name.into() },
            }))
        }
        Some(_) => {
            return Err(GatewayError::invalid(
                "tool_choice",
                "use auto, none, required or {\"type\": \"function\", \"name\": …}",
            ))
        }
    };
    let response_format = match request.text.as_ref().and_then(|t| t.format.as_ref()) {
        None => None,
        Some(format) => match format.kind.as_str() {
            "text" => None,
            "json_object" => Some(ResponseFormat {
                kind: "json_object".into(),
                json_schema: None,
            }),
            "json_schema" => Some(ResponseFormat {
                kind: "json_schema".into(),
                json_schema: Some(JsonSchemaFormat {
                    name: format.name.clone().ok_or_else(|| {
                        GatewayError::invalid("text.format.name", "required with json_schema")
                    })?,
                    description: format.description.clone(),
                    schema: format.schema.clone(),
                    strict: format.strict,
                }),
            }),
            other => {
                return Err(GatewayError::invalid(
                    "text.format.type",
                    format!("unknown format '{other}'; use text, json_object or json_schema"),
                ))
            }
        },
    };
    let sampling = SamplingFields {
        max_tokens: request.max_output_tokens,
        temperature: request.temperature,
        top_p: request.top_p,
        ..Default::default()
    };
    let mut chat = ChatCompletionRequest::streaming(request.model.clone(), messages, sampling);
    chat.stream = request.stream;
    chat.tools = tools;
    chat.tool_choice = tool_choice;
    chat.parallel_tool_calls = request.parallel_tool_calls;
    chat.response_format = response_format;
    chat.reasoning_effort = request.reasoning.as_ref().and_then(|r| r.effort.clone());
    chat.user = request.user.clone();
    Ok(chat)
}

/// Which output item is open in a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Reasoning,
    Message,
    /// A call, by its index among the answer's calls.
    Call(u32),
}

/// Builds a response from a chat answer's deltas, and (streaming) the events that tell it:
/// `response.created`, `response.in_progress`, per item `response.output_item.added`, its
/// parts and deltas (`response.content_part.added`, `response.output_text.delta`,
/// `response.reasoning_text.delta`, `response.function_call_arguments.delta`), their
/// `….done` events and `response.output_item.done`, then `response.completed` (or
/// `response.incomplete`). Every event has its `sequence_number`.
#[derive(Debug)]
pub struct ResponseBuilder {
    response: ResponseObject,
    open: Option<Open>,
    sequence: u64,
}

impl ResponseBuilder {
    pub fn new(request: &ResponsesRequest, model: &str, created_at: u64) -> Self {
        let tool_choice = request.tool_choice.clone().unwrap_or_else(|| json!("auto"));
        ResponseBuilder {
            response: ResponseObject {
                id: new_id("resp"),
                object: "response".into(),
                created_at,
                status: "in_progress".into(),
                incomplete_details: None,
                error: None,
                model: model.to_owned(),
                output: Vec::new(),
                usage: None,
                instructions: request.instructions.clone(),
                previous_response_id: request.previous_response_id.clone(),
                store: request.store.unwrap_or(true),
                parallel_tool_calls: request.parallel_tool_calls.unwrap_or(true),
                tool_choice,
                tools: request.tools.clone().unwrap_or_default(),
                temperature: request.temperature,
                top_p: request.top_p,
                max_output_tokens: request.max_output_tokens,
                metadata: request.metadata.clone().unwrap_or_default(),
            },
            open: None,
            sequence: 0,
        }
    }

    /// The response's id.
    pub fn id(&self) -> &str {
        &self.response.id
    }

    fn event(&mut self, kind: &str, mut fields: Map<String, Value>) -> Value {
        fields.insert("type".into(), json!(kind));
        fields.insert("sequence_number".into(), json!(self.sequence));
        self.sequence += 1;
        Value::Object(fields)
    }

    fn fields(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    /// The stream's first events.
    pub fn start(&mut self) -> Vec<Value> {
        let snapshot = json!({ "response": self.response });
        vec![
            self.event("response.created", Self::fields(snapshot.clone())),
            self.event("response.in_progress", Self::fields(snapshot)),
        ]
    }

    fn index(&self) -> usize {
        self.response.output.len() - 1
    }

    /// Ends the open item with its `….done` events.
    fn close(&mut self, out: &mut Vec<Value>) {
        let Some(open) = self.open.take() else {
            return;
        };
        let index = self.index();
        let item = &mut self.response.output[index];
        let done_item;
        match item {
            OutputItem::Message {
                id,
                status,
                content,
                ..
            } => {
                *status = "completed".into();
                let (id, part) = (id.clone(), content[0].clone());
                let text = match &part {
                    OutputContent::OutputText { text, .. } => text.clone(),
                    OutputContent::ReasoningText { text } => text.clone(),
                };
                done_item = json!(item);
                out.push(self.event(
                    "response.output_text.done",
                    Self::fields(json!({"item_id": id, "output_index": index,
                        "content_index": 0, "text": text, "logprobs": []})),
                ));
                out.push(self.event(
                    "response.content_part.done",
                    Self::fields(json!({"item_id": id, "output_index": index,
                        "content_index": 0, "part": part})),
                ));
            }
            OutputItem::Reasoning { id, content, .. } => {
                let (id, part) = (id.clone(), content[0].clone());
                let text = match &part {
                    OutputContent::ReasoningText { text } => text.clone(),
                    OutputContent::OutputText { text, .. } => text.clone(),
                };
                done_item = json!(item);
                out.push(self.event(
                    "response.reasoning_text.done",
                    Self::fields(json!({"item_id": id, "output_index": index,
                        "content_index": 0, "text": text})),
                ));
            }
            OutputItem::FunctionCall {
                id,
                arguments,
                status,
                ..
            } => {
                *status = "completed".into();
                let (id, arguments) = (id.clone(), arguments.clone());
                done_item = json!(item);
                out.push(self.event(
                    "response.function_call_arguments.done",
                    Self::fields(json!({"item_id": id, "output_index": index,
                        "arguments": arguments})),
                ));
            }
        }
        let _ = open;
        out.push(self.event(
            "response.output_item.done",
            Self::fields(json!({"output_index": index, "item": done_item})),
        ));
    }

    /// Opens a new item unless `open` is the one open.
    fn ensure(&mut self, open: Open, item: OutputItem, out: &mut Vec<Value>) {
        if self.open == Some(open) {
            return;
        }
        self.close(out);
        self.response.output.push(item.clone());
        self.open = Some(open);
        let index = self.index();
        out.push(self.event(
            "response.output_item.added",
            Self::fields(json!({"output_index": index, "item": item})),
        ));
        let id = match &item {
            OutputItem::Message { id, .. } | OutputItem::Reasoning { id, .. } => id.clone(),
            OutputItem::FunctionCall { .. } => return,
        };
        let part = match open {
            Open::Reasoning => OutputContent::ReasoningText {
                text: String::new(),
            },
            _ => OutputContent::OutputText {
                text: String::new(),
                annotations: Vec::new(),
            },
        };
        match &mut self.response.output[index] {
            OutputItem::Message { content, .. } | OutputItem::Reasoning { content, .. } => {
                content.push(part.clone())
            }
            OutputItem::FunctionCall { .. } => {}
        }
        out.push(self.event(
            "response.content_part.added",
            Self::fields(json!({"item_id": id, "output_index": index,
                "content_index": 0, "part": part})),
        ));
    }

    /// The events one chat delta is.
    pub fn push(&mut self, delta: ChunkDelta) -> Vec<Value> {
        let mut out = Vec::new();
        if let Some(thought) = delta.reasoning_content.filter(|t| !t.is_empty()) {
            let item = OutputItem::Reasoning {
                id: new_id("rs"),
                summary: Vec::new(),
                content: Vec::new(),
            };
            self.ensure(Open::Reasoning, item, &mut out);
            let index = self.index();
            let id = match &mut self.response.output[index] {
                OutputItem::Reasoning { id, content, .. } => {
                    if let Some(OutputContent::ReasoningText { text }) = content.first_mut() {
                        text.push_str(&thought);
                    }
                    id.clone()
                }
                _ => unreachable!("the open item is the reasoning"),
            };
            out.push(self.event(
                "response.reasoning_text.delta",
                Self::fields(json!({"item_id": id, "output_index": index,
                    "content_index": 0, "delta": thought})),
            ));
        }
        if let Some(piece) = delta.content.filter(|t| !t.is_empty()) {
            let item = OutputItem::Message {
                id: new_id("msg"),
                status: "in_progress".into(),
                role: "assistant".into(),
                content: Vec::new(),
            };
            self.ensure(Open::Message, item, &mut out);
            let index = self.index();
            let id = match &mut self.response.output[index] {
                OutputItem::Message { id, content, .. } => {
                    if let Some(OutputContent::OutputText { text, .. }) = content.first_mut() {
                        text.push_str(&piece);
                    }
                    id.clone()
                }
                _ => unreachable!("the open item is the message"),
            };
            out.push(self.event(
                "response.output_text.delta",
                Self::fields(json!({"item_id": id, "output_index": index,
                    "content_index": 0, "delta": piece, "logprobs": []})),
            ));
        }
        for call in delta.tool_calls.unwrap_or_default() {
            let item = OutputItem::FunctionCall {
                id: new_id("fc"),
                call_id: call.id.clone().unwrap_or_default(),
                name: call.function.name.clone().unwrap_or_default(),
                arguments: String::new(),
                status: "in_progress".into(),
            };
            self.ensure(Open::Call(call.index), item, &mut out);
            let Some(piece) = call.function.arguments.filter(|a| !a.is_empty()) else {
                continue;
            };
            let index = self.index();
            let id = match &mut self.response.output[index] {
                OutputItem::FunctionCall { id, arguments, .. } => {
                    arguments.push_str(&piece);
                    id.clone()
                }
                _ => unreachable!("the open item is the call"),
            };
            out.push(self.event(
                "response.function_call_arguments.delta",
                Self::fields(json!({"item_id": id, "output_index": index, "delta": piece})),
            ));
        }
        out
    }

    /// The stream's last events, and the finished response.
    pub fn finish(&mut self, finish_reason: &str, usage: Usage) -> (Vec<Value>, ResponseObject) {
        let mut out = Vec::new();
        self.close(&mut out);
        let incomplete = finish_reason == "length";
        self.response.status = if incomplete {
            "incomplete"
        } else {
            "completed"
        }
        .into();
        if incomplete {
            self.response.incomplete_details = Some(json!({"reason": "max_output_tokens"}));
        }
        self.response.usage = Some(ResponseUsage {
            input_tokens: usage.prompt_tokens,
            input_tokens_details: InputTokensDetails::default(),
            output_tokens: usage.completion_tokens,
            output_tokens_details: OutputTokensDetails {
                reasoning_tokens: usage
                    .completion_tokens_details
                    .map(|d| d.reasoning_tokens)
                    .unwrap_or(0),
            },
            total_tokens: usage.prompt_tokens + usage.completion_tokens,
        });
        let kind = if incomplete {
            "response.incomplete"
        } else {
            "response.completed"
        };
        let response = self.response.clone();
        out.push(self.event(kind, Self::fields(json!({ "response": response }))));
        (out, response)
    }

    /// The whole answer's message as one delta, for a response that is not streamed.
    pub fn whole(
        &mut self,
        message: &hearth_types::AssistantMessage,
        finish_reason: &str,
        usage: Usage,
    ) -> ResponseObject {
        self.push(ChunkDelta {
            reasoning_content: message.reasoning_content.clone(),
            ..Default::default()
        });
        self.push(ChunkDelta {
            content: message.content.clone(),
            ..Default::default()
        });
        for (index, call) in message.tool_calls.iter().flatten().enumerate() {
            self.push(ChunkDelta {
                tool_calls: Some(vec![hearth_types::ToolCallDelta {
                    index: index as u32,
                    id: Some(call.id.clone()),
                    kind: Some("function".into()),
                    function: hearth_types::FunctionCallDelta {
                        name: Some(call.function.name.clone()),
                        arguments: Some(call.function.arguments.clone()),
                    },
                }]),
                ..Default::default()
            });
        }
        self.finish(finish_reason, usage).1
    }
}

/// The assistant turn a finished response adds to its conversation.
pub fn answer_message(response: &ResponseObject) -> ChatMessage {
    let mut text = String::new();
    let mut thought = String::new();
    let mut calls = Vec::new();
    for item in &response.output {
        match item {
            OutputItem::Message { content, .. } => {
                for part in content {
                    if let OutputContent::OutputText { text: t, .. } = part {
                        text.push_str(t);
                    }
                }
            }
            OutputItem::Reasoning { content, .. } => {
                for part in content {
                    if let OutputContent::ReasoningText { text: t } = part {
                        thought.push_str(t);
                    }
                }
            }
            OutputItem::FunctionCall {
                call_id,
                name,
                arguments,
                ..
            } => calls.push(ToolCall {
                id: call_id.clone(),
                kind: "function".into(),
                function: FunctionCall {
                    name: name.clone(),
                    arguments: arguments.clone(),
                },
            }),
        }
    }
    ChatMessage {
        role: "assistant".into(),
        content: (!text.is_empty() || calls.is_empty()).then_some(MessageContent::Text(text)),
        name: None,
        tool_calls: (!calls.is_empty()).then_some(calls),
        tool_call_id: None,
        reasoning_content: (!thought.is_empty()).then_some(thought),
    }
}

/// Stored responses: one row each, with the conversation a continuation starts from.
#[derive(Debug, Clone)]
pub struct ResponseStore {
    db: Database,
    ttl_seconds: f64,
}

/// A stored response and the conversation up to and including its answer (instructions
/// excluded: a continuation gives its own).
#[derive(Debug, Clone)]
pub struct Stored {
    pub response: ResponseObject,
    pub conversation: Vec<ChatMessage>,
}

impl ResponseStore {
    pub(crate) fn new(db: Database, ttl_seconds: f64) -> Self {
        ResponseStore { db, ttl_seconds }
    }

    /// Keeps `response` for `owner`, with its conversation; drops what has expired.
    pub fn save(
        &self,
        owner: &str,
        response: &ResponseObject,
        conversation: &[ChatMessage],
    ) -> Result<(), StoreError> {
        let now = crate::unix_now_f64();
        let body = serde_json::to_string(response).expect("responses serialize");
        let messages = serde_json::to_string(conversation).expect("messages serialize");
        self.db.write(|tx| {
            tx.execute(
                "DELETE FROM gateway_responses WHERE expires < $1",
                &[Sql::Real(now)],
            )?;
            tx.execute(
                "INSERT INTO gateway_responses (id, owner, created, expires, response, conversation) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    Sql::Text(response.id.clone()),
                    Sql::Text(owner.to_owned()),
                    Sql::Real(now),
                    Sql::Real(now + self.ttl_seconds),
                    Sql::Text(body),
                    Sql::Text(messages),
                ],
            )?;
            Ok(())
        })
    }

    /// `owner`'s response `id`, unless it has expired (another key's is not found either).
    pub fn load(&self, owner: &str, id: &str) -> Result<Option<Stored>, StoreError> {
        let row = self.db.query_one(
            "SELECT response, conversation FROM gateway_responses \
             WHERE id = $1 AND owner = $2 AND expires >= $3",
            &[
                Sql::Text(id.to_owned()),
                Sql::Text(owner.to_owned()),
                Sql::Real(crate::unix_now_f64()),
            ],
            |row| Ok((row.get::<String>(0)?, row.get::<String>(1)?)),
        )?;
        Ok(row.and_then(|(response, conversation)| {
            Some(Stored {
                response: serde_json::from_str(&response).ok()?,
                conversation: serde_json::from_str(&conversation).ok()?,
            })
        }))
    }

    /// Deletes `owner`'s response `id`; whether there was one.
    pub fn delete(&self, owner: &str, id: &str) -> Result<bool, StoreError> {
        let deleted = self.db.execute(
            "DELETE FROM gateway_responses WHERE id = $1 AND owner = $2",
            &[Sql::Text(id.to_owned()), Sql::Text(owner.to_owned())],
        )?;
        Ok(deleted > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> ResponsesRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn input_items_become_the_chat_conversation_they_are() {
        let r = request(json!({"model": "m", "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": "Where is order A1?"},
                {"type": "function_call", "call_id": "c1", "name": "get", "arguments": "{\"id\":\"A1\"}"},
                {"type": "function_call", "call_id": "c2", "name": "get", "arguments": "{\"id\":\"A2\"}"},
                {"type": "function_call_output", "call_id": "c1", "output": "shipped"},
                {"type": "function_call_output", "call_id": "c2", "output": "pending"},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "And?"}]},
            ],
            "tools": [{"type": "function", "name": "get", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "get"},
            "text": {"format": {"type": "json_schema", "name": "a", "schema": {"type": "object"}}},
            "max_output_tokens": 9, "reasoning": {"effort": "low"}}));
        let prior = vec![ChatMessage::new("user", "earlier")];
        let chat = chat_request(&r, prior).unwrap();
        let roles: Vec<&str> = chat.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(
            roles,
            [
                "system",
                "user",
                "user",
                "assistant",
                "tool",
                "tool",
                "user"
            ]
        );
        assert_eq!(chat.messages[3].tool_calls.as_ref().unwrap().len(), 2);
        assert_eq!(chat.messages[5].tool_call_id.as_deref(), Some("c2"));
        assert_eq!(
            chat.messages[6].content,
            Some(MessageContent::Text("And?".into()))
        );
        assert_eq!(chat.sampling.max_tokens, Some(9));
        assert_eq!(chat.reasoning_effort.as_deref(), Some("low"));
        assert!(matches!(chat.tool_choice, Some(ToolChoice::Named(_))));
        assert_eq!(chat.response_format.unwrap().kind, "json_schema");
    }

    #[test]
    fn what_a_text_model_cannot_read_is_refused_naming_the_field() {
        let param = |body: Value| match chat_request(&request(body), Vec::new()) {
            Err(GatewayError::InvalidRequest { param, .. }) => param,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            param(json!({"model": "m", "input": [{"role": "user", "content": [
                {"type": "input_image", "image_url": "data:"}]}]})),
            "input[0].content[0].type"
        );
        assert_eq!(
            param(json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]})),
            "tools[0].type"
        );
        assert_eq!(
            param(
                json!({"model": "m", "input": [{"type": "function_call_output", "output": "x"}]})
            ),
            "input[0].call_id"
        );
        assert_eq!(
            param(json!({"model": "m", "input": [{"type": "item_reference", "id": "x"}]})),
            "input[0].type"
        );
    }

    #[test]
    fn the_stream_tells_each_item_in_order_and_numbers_every_event() {
        let r = request(json!({"model": "m", "input": "hi"}));
        let mut b = ResponseBuilder::new(&r, "m", 1);
        let mut events = b.start();
        events.extend(b.push(ChunkDelta {
            content: Some("Hel".into()),
            ..Default::default()
        }));
        events.extend(b.push(ChunkDelta {
            content: Some("lo".into()),
            ..Default::default()
        }));
        events.extend(b.push(ChunkDelta {
            tool_calls: Some(vec![hearth_types::ToolCallDelta {
                index: 0,
                id: Some("call_1".into()),
                kind: None,
                function: hearth_types::FunctionCallDelta {
                    name: Some("get".into()),
                    arguments: Some("{}".into()),
                },
            }]),
            ..Default::default()
        }));
        let (last, response) = b.finish("tool_calls", Usage::new(5, 3));
        events.extend(last);
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (n, event) in events.iter().enumerate() {
            assert_eq!(event["sequence_number"], n as u64);
        }
        assert_eq!(events[6]["text"], "Hello");
        assert_eq!(response.status, "completed");
        assert_eq!(response.usage.unwrap().total_tokens, 8);
        let answer = answer_message(&response);
        assert_eq!(answer.content, Some(MessageContent::Text("Hello".into())));
        assert_eq!(answer.tool_calls.unwrap()[0].id, "call_1");
        // Out of tokens: incomplete, and said so.
        let mut b = ResponseBuilder::new(&r, "m", 1);
        let (events, response) = b.finish("length", Usage::new(5, 9));
        assert_eq!(response.status, "incomplete");
        assert_eq!(events.last().unwrap()["type"], "response.incomplete");
        assert_eq!(
            response.incomplete_details,
            Some(json!({"reason": "max_output_tokens"}))
        );
    }
}
