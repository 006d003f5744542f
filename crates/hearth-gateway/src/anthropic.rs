//! The Anthropic Messages API, served by translation: a Messages request becomes the chat
//! request every local model and route already serves ([`chat_request`]), and the chat
//! answer becomes a Messages answer, whole ([`messages_response`]) or as Anthropic's stream
//! events ([`MessagesEvents`]). A route's privacy policy, keys, budgets and ledger apply as
//! they do to chat, since it is a chat request by the time it reaches them.

use hearth_types::anthropic::{
    BlockDelta, InputBlock, InputContent, InputMessage, MessageDeltaBody, MessagesRequest,
    MessagesResponse, MessagesUsage, OutputBlock, StreamEvent, SystemPrompt,
};
use hearth_types::{
    ChatCompletionRequest, ChatCompletionResponse, ChatMessage, ChunkDelta, FunctionCall,
    FunctionDefinition, MessageContent, NamedFunction, NamedToolChoice, SamplingFields,
    StopSequences, Tool, ToolCall, ToolChoice, Usage,
};
use serde_json::{json, Value};

use crate::GatewayError;

/// The chat request `request` is. Blocks a text model cannot read (images, documents) and
/// Anthropic's server tools are refused, naming the field.
pub fn chat_request(request: &MessagesRequest) -> Result<ChatCompletionRequest, GatewayError> {
    if request.max_tokens == 0 {
        return Err(GatewayError::invalid("max_tokens", "must be at least 1"));
    }
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    match &request.system {
        Some(SystemPrompt::Text(text)) => messages.push(ChatMessage::new("system", text.clone())),
        Some(SystemPrompt::Blocks(blocks)) => {
            for (i, block) in blocks.iter().enumerate() {
                if block.kind != "text" {
                    return Err(GatewayError::invalid(
                        &format!("system[{i}].type"),
                        format!("'{}' blocks are not supported; use text", block.kind),
                    ));
                }
            }
            let text: Vec<&str> = blocks.iter().map(|b| b.text.as_str()).collect();
            messages.push(ChatMessage::new("system", text.join("\n")));
        }
        None => {}
    }
    for (i, message) in request.messages.iter().enumerate() {
        translate_message(i, message, &mut messages)?;
    }
    let tools = match &request.tools {
        Some(tools) => {
            let mut out = Vec::with_capacity(tools.len());
            for (i, tool) in tools.iter().enumerate() {
                if let Some(kind) = tool.kind.as_deref().filter(|k| *k != "custom") {
                    return Err(GatewayError::invalid(
                        &format!("tools[{i}].type"),
                        format!(
                            "'{kind}' is one of Anthropic's server tools, which this server \
                             does not run; declare the tool with a name and an input_schema"
                        ),
                    ));
                }
                out.push(Tool {
                    kind: "function".into(),
                    function: FunctionDefinition {
                        name: tool.name.clone(),
                        description: tool.description.clone(),
                        parameters: Some(tool.input_schema.clone()),
                        strict: None,
                    },
                });
            }
            Some(out)
        }
        None => None,
    };
    let (tool_choice, parallel_tool_calls) = match &request.tool_choice {
        None => (None, None),
        Some(choice) => {
            let mode = |m: &str| Some(ToolChoice::Mode(m.into()));
            let chosen = match choice.kind.as_str() {
                "auto" => mode("auto"),
                "any" => mode("required"),
                "none" => mode("none"),
                "tool" => {
                    let name = choice.name.clone().ok_or_else(|| {
                        GatewayError::invalid("tool_choice.name", "required when type is 'tool'")
                    })?;
                    Some(ToolChoice::Named(NamedToolChoice {
                        kind: "function".into(),
                        function: NamedFunction { name },
                    }))
                }
                other => {
                    return Err(GatewayError::invalid(
                        "tool_choice.type",
                        format!("unknown type '{other}'; use auto, any, tool or none"),
                    ))
                }
            };
            let parallel = choice.disable_parallel_tool_use.map(|disable| !disable);
            (chosen, parallel)
        }
    };
    let chat_template_kwargs = match request.thinking.as_ref().map(|t| t.kind.as_str()) {
        None | Some("adaptive") => None,
        Some("enabled") => Some(json!({"enable_thinking": true})),
        Some("disabled") => Some(json!({"enable_thinking": false})),
        Some(other) => {
            return Err(GatewayError::invalid(
                "thinking.type",
                format!("unknown type '{other}'; use enabled, disabled or adaptive"),
            ))
        }
    }
    .and_then(|v| v.as_object().cloned());
    let sampling = SamplingFields {
        max_tokens: Some(request.max_tokens),
        temperature: request.temperature,
        top_p: request.top_p,
        top_k: request.top_k,
        stop: request.stop_sequences.clone().map(StopSequences::Many),
        ..Default::default()
    };
    let mut chat = ChatCompletionRequest::streaming(request.model.clone(), messages, sampling);
    chat.stream = request.stream;
    chat.tools = tools;
    chat.tool_choice = tool_choice;
    chat.parallel_tool_calls = parallel_tool_calls;
    chat.chat_template_kwargs = chat_template_kwargs;
    chat.user = request.metadata.as_ref().and_then(|m| m.user_id.clone());
    Ok(chat)
}

/// Appends the chat messages one Messages turn is: a user turn's tool results become tool
/// messages (before its text, which follows them), an assistant turn's calls its
/// `tool_calls` and its thinking its `reasoning_content`.
fn translate_message(
    i: usize,
    message: &InputMessage,
    out: &mut Vec<ChatMessage>,
) -> Result<(), GatewayError> {
    let role = message.role.as_str();
    if role != "user" && role != "assistant" {
        return Err(GatewayError::invalid(
            &format!("messages[{i}].role"),
            format!("unknown role '{role}'; use user or assistant"),
        ));
    }
    let blocks = match &message.content {
        InputContent::Text(text) => {
            out.push(ChatMessage::new(role, text.clone()));
            return Ok(());
        }
        InputContent::Blocks(blocks) => blocks,
    };
    let mut text = Vec::new();
    let mut thinking = Vec::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let field = |name: &str| format!("messages[{i}].content[{j}].{name}");
        let wrong_turn = || {
            GatewayError::invalid(
                &field("type"),
                format!("a '{}' block cannot be in a {role} turn", block.kind),
            )
        };
        match block.kind.as_str() {
            "text" => text.push(block.text.clone().unwrap_or_default()),
            "thinking" if role == "assistant" => {
                thinking.push(block.thinking.clone().unwrap_or_default())
            }
            "redacted_thinking" if role == "assistant" => {}
            "tool_use" if role == "assistant" => {
                let id = block
                    .id
                    .clone()
                    .ok_or_else(|| GatewayError::invalid(&field("id"), "required in tool_use"))?;
                let name = block
                    .name
                    .clone()
                    .ok_or_else(|| GatewayError::invalid(&field("name"), "required in tool_use"))?;
                let input = block.input.clone().unwrap_or_else(|| json!({}));
                calls.push(ToolCall {
                    id,
                    kind: "function".into(),
                    function: FunctionCall {
                        name,
                        arguments: input.to_string(),
                    },
                });
            }
            "tool_result" if role == "user" => {
                let id = block.tool_use_id.clone().ok_or_else(|| {
                    GatewayError::invalid(&field("tool_use_id"), "required in tool_result")
                })?;
                let mut result = result_text(block, &field("content"))?;
                if block.is_error == Some(true) {
                    result = format!("Error: {result}");
                }
                out.push(ChatMessage {
                    tool_call_id: Some(id),
                    ..ChatMessage::new("tool", result)
                });
            }
            "thinking" | "redacted_thinking" | "tool_use" | "tool_result" => {
                return Err(wrong_turn())
            }
            "image" | "document" => {
                return Err(GatewayError::invalid(
                    &field("type"),
                    format!(
                        "'{}' blocks are not supported: this server's chat models read text",
                        block.kind
                    ),
                ))
            }
            other => {
                return Err(GatewayError::invalid(
                    &field("type"),
                    format!(
                        "unknown block type '{other}'; use text, tool_use, tool_result or \
                         thinking"
                    ),
                ))
            }
        }
    }
    if role == "user" {
        if !text.is_empty() {
            out.push(ChatMessage::new("user", text.join("\n")));
        }
        return Ok(());
    }
    out.push(ChatMessage {
        role: "assistant".into(),
        content: (!text.is_empty()).then(|| MessageContent::Text(text.join("\n"))),
        name: None,
        tool_calls: (!calls.is_empty()).then_some(calls),
        tool_call_id: None,
        reasoning_content: (!thinking.is_empty()).then(|| thinking.join("\n")),
    });
    Ok(())
}

/// A tool result's text: a string, or the text of a list of text blocks.
fn result_text(block: &InputBlock, field: &str) -> Result<String, GatewayError> {
    match &block.content {
        None => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (k, part) in parts.iter().enumerate() {
                match (part["type"].as_str(), part["text"].as_str()) {
                    (Some("text"), Some(text)) => texts.push(text.to_owned()),
                    (kind, _) => {
                        return Err(GatewayError::invalid(
                            &format!("{field}[{k}]"),
                            format!(
                                "a tool result holds text blocks only, not '{}'",
                                kind.unwrap_or("?")
                            ),
                        ))
                    }
                }
            }
            Ok(texts.join("\n"))
        }
        Some(_) => Err(GatewayError::invalid(
            field,
            "must be a string or a list of text blocks",
        )),
    }
}

/// Anthropic's `stop_reason` for a chat `finish_reason`; `stop_sequences` tells a stop
/// string from the model's own end of turn (`matched`: which one ended the answer, if known).
fn stop_reason(finish_reason: &str, matched: Option<&str>) -> (String, Option<String>) {
    match (finish_reason, matched) {
        ("tool_calls", _) => ("tool_use".into(), None),
        ("length", _) => ("max_tokens".into(), None),
        (_, Some(stop)) => ("stop_sequence".into(), Some(stop.to_owned())),
        _ => ("end_turn".into(), None),
    }
}

/// A Messages id for a chat answer's id.
fn message_id(chat_id: &str) -> String {
    let tail = chat_id.strip_prefix("chatcmpl-").unwrap_or(chat_id);
    format!("msg_{tail}")
}

/// The Messages answer a whole chat answer is: its thought, its text and its calls as
/// content blocks, in that order. `matched`: the stop sequence that ended it, if one did.
pub fn messages_response(chat: ChatCompletionResponse, matched: Option<&str>) -> MessagesResponse {
    let mut content = Vec::new();
    let mut finish = "stop".to_owned();
    if let Some(choice) = chat.choices.into_iter().next() {
        finish = choice.finish_reason.unwrap_or(finish);
        let message = choice.message;
        if let Some(thinking) = message.reasoning_content.filter(|t| !t.is_empty()) {
            content.push(OutputBlock::Thinking {
                thinking,
                signature: String::new(),
            });
        }
        if let Some(text) = message.content.filter(|t| !t.is_empty()) {
            content.push(OutputBlock::Text { text });
        }
        for call in message.tool_calls.unwrap_or_default() {
            let input = serde_json::from_str(&call.function.arguments)
                .unwrap_or(Value::String(call.function.arguments));
            content.push(OutputBlock::ToolUse {
                id: call.id,
                name: call.function.name,
                input,
            });
        }
    }
    if content.is_empty() {
        content.push(OutputBlock::Text {
            text: String::new(),
        });
    }
    let (stop_reason, stop_sequence) = stop_reason(&finish, matched);
    MessagesResponse {
        id: message_id(&chat.id),
        kind: "message".into(),
        role: "assistant".into(),
        model: chat.model,
        content,
        stop_reason: Some(stop_reason),
        stop_sequence,
        usage: usage(chat.usage),
    }
}

fn usage(usage: Usage) -> MessagesUsage {
    MessagesUsage {
        input_tokens: usage.prompt_tokens,
        output_tokens: usage.completion_tokens,
    }
}

/// Which kind of content block is open in a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Thinking,
    Text,
    /// A call, by its index among the answer's calls.
    Call(u32),
}

/// Turns a chat answer's stream into Anthropic's events: `message_start`, then for each
/// content block `content_block_start`, its deltas (`thinking_delta`, `text_delta`,
/// `input_json_delta`) and `content_block_stop`, then `message_delta` (the stop reason and
/// the usage) and `message_stop`.
#[derive(Debug)]
pub struct MessagesEvents {
    id: String,
    model: String,
    open: Option<(Open, u32)>,
    blocks: u32,
}

impl MessagesEvents {
    pub fn new(chat_id: &str, model: impl Into<String>) -> Self {
        MessagesEvents {
            id: message_id(chat_id),
            model: model.into(),
            open: None,
            blocks: 0,
        }
    }

    /// The stream's first events: `message_start` (its usage is known only at the end, in
    /// `message_delta`) and a `ping`.
    pub fn start(&self) -> Vec<StreamEvent> {
        vec![
            StreamEvent::MessageStart {
                message: MessagesResponse {
                    id: self.id.clone(),
                    kind: "message".into(),
                    role: "assistant".into(),
                    model: self.model.clone(),
                    content: Vec::new(),
                    stop_reason: None,
                    stop_sequence: None,
                    usage: MessagesUsage::default(),
                },
            },
            StreamEvent::Ping,
        ]
    }

    /// Closes the open block, if any.
    fn close(&mut self, out: &mut Vec<StreamEvent>) {
        if let Some((_, index)) = self.open.take() {
            out.push(StreamEvent::ContentBlockStop { index });
        }
    }

    /// Opens a block of kind `open` unless it is the one open; its index.
    fn ensure(&mut self, open: Open, block: OutputBlock, out: &mut Vec<StreamEvent>) -> u32 {
        match self.open {
            Some((current, index)) if current == open => index,
            _ => {
                self.close(out);
                let index = self.blocks;
                self.blocks += 1;
                self.open = Some((open, index));
                out.push(StreamEvent::ContentBlockStart {
                    index,
                    content_block: block,
                });
                index
            }
        }
    }

    /// The events one chat delta is.
    pub fn push(&mut self, delta: ChunkDelta) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        if let Some(thinking) = delta.reasoning_content.filter(|t| !t.is_empty()) {
            let block = OutputBlock::Thinking {
                thinking: String::new(),
                signature: String::new(),
            };
            let index = self.ensure(Open::Thinking, block, &mut out);
            out.push(StreamEvent::ContentBlockDelta {
                index,
                delta: BlockDelta::ThinkingDelta { thinking },
            });
        }
        if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
            let block = OutputBlock::Text {
                text: String::new(),
            };
            let index = self.ensure(Open::Text, block, &mut out);
            out.push(StreamEvent::ContentBlockDelta {
                index,
                delta: BlockDelta::TextDelta { text },
            });
        }
        for call in delta.tool_calls.unwrap_or_default() {
            let block = OutputBlock::ToolUse {
                id: call.id.clone().unwrap_or_default(),
                name: call.function.name.clone().unwrap_or_default(),
                input: json!({}),
            };
            let index = self.ensure(Open::Call(call.index), block, &mut out);
            if let Some(partial_json) = call.function.arguments.filter(|a| !a.is_empty()) {
                out.push(StreamEvent::ContentBlockDelta {
                    index,
                    delta: BlockDelta::InputJsonDelta { partial_json },
                });
            }
        }
        out
    }

    /// The stream's last events. `matched`: the stop sequence that ended it, if one did.
    pub fn finish(
        &mut self,
        finish_reason: &str,
        usage_so_far: Usage,
        matched: Option<&str>,
    ) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        if self.blocks == 0 {
            // An empty answer still has its one text block, as a whole answer has.
            let block = OutputBlock::Text {
                text: String::new(),
            };
            self.ensure(Open::Text, block, &mut out);
        }
        self.close(&mut out);
        let (stop_reason, stop_sequence) = stop_reason(finish_reason, matched);
        out.push(StreamEvent::MessageDelta {
            delta: MessageDeltaBody {
                stop_reason: Some(stop_reason),
                stop_sequence,
            },
            usage: usage(usage_so_far),
        });
        out.push(StreamEvent::MessageStop);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_types::{FunctionCallDelta, ToolCallDelta};

    fn request(body: Value) -> Result<ChatCompletionRequest, GatewayError> {
        let request: MessagesRequest = serde_json::from_value(body).unwrap();
        chat_request(&request)
    }

    fn param_of(result: Result<ChatCompletionRequest, GatewayError>) -> String {
        match result {
            Err(GatewayError::InvalidRequest { param, .. }) => param,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_tool_round_trip_becomes_the_chat_conversation_it_is() {
        let chat = request(json!({
            "model": "m", "max_tokens": 64, "system": [{"type": "text", "text": "Be brief."}],
            "stop_sequences": ["END"], "temperature": 0.2, "top_k": 5,
            "metadata": {"user_id": "u1"}, "thinking": {"type": "disabled"},
            "tools": [{"name": "get_order", "description": "Look up an order.",
                "input_schema": {"type": "object", "properties": {"id": {"type": "string"}}}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": "Where is order A1?"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "Look it up.", "signature": ""},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_order", "input": {"id": "A1"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "shipped"}]},
                    {"type": "text", "text": "And when does it arrive?"}]},
            ],
        }))
        .unwrap();
        let roles: Vec<&str> = chat.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool", "user"]);
        assert_eq!(
            chat.messages[0].content,
            Some(MessageContent::Text("Be brief.".into()))
        );
        let assistant = &chat.messages[2];
        assert_eq!(assistant.reasoning_content.as_deref(), Some("Look it up."));
        let call = &assistant.tool_calls.as_ref().unwrap()[0];
        assert_eq!(
            (call.id.as_str(), call.function.name.as_str()),
            ("toolu_1", "get_order")
        );
        assert_eq!(
            serde_json::from_str::<Value>(&call.function.arguments).unwrap(),
            json!({"id": "A1"})
        );
        assert_eq!(chat.messages[3].tool_call_id.as_deref(), Some("toolu_1"));
        assert_eq!(
            chat.messages[3].content,
            Some(MessageContent::Text("shipped".into()))
        );
        assert_eq!(chat.sampling.max_tokens, Some(64));
        assert_eq!(chat.sampling.top_k, Some(5));
        assert_eq!(
            chat.sampling.stop,
            Some(StopSequences::Many(vec!["END".into()]))
        );
        assert_eq!(chat.tool_choice, Some(ToolChoice::Mode("required".into())));
        assert_eq!(chat.parallel_tool_calls, Some(false));
        assert_eq!(chat.user.as_deref(), Some("u1"));
        assert_eq!(
            chat.chat_template_kwargs.unwrap()["enable_thinking"],
            json!(false)
        );
        let tool = &chat.tools.unwrap()[0];
        assert_eq!(tool.function.parameters.as_ref().unwrap()["type"], "object");
    }

    #[test]
    fn what_a_text_model_cannot_read_is_refused_naming_the_field() {
        let base = |content: Value| {
            json!({"model": "m", "max_tokens": 8,
                "messages": [{"role": "user", "content": content}]})
        };
        let image = json!([{"type": "text", "text": "see"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": ""}}]);
        assert_eq!(
            param_of(request(base(image))),
            "messages[0].content[1].type"
        );
        let call_in_user_turn = json!([{"type": "tool_use", "id": "t", "name": "f", "input": {}}]);
        assert_eq!(
            param_of(request(base(call_in_user_turn))),
            "messages[0].content[0].type"
        );
        let no_id = json!([{"type": "tool_result", "content": "x"}]);
        assert_eq!(
            param_of(request(base(no_id))),
            "messages[0].content[0].tool_use_id"
        );
        let mut server_tool = base(json!("hi"));
        server_tool["tools"] = json!([{"type": "web_search_20250305", "name": "web_search",
            "input_schema": {}}]);
        assert_eq!(param_of(request(server_tool)), "tools[0].type");
        let mut zero = base(json!("hi"));
        zero["max_tokens"] = json!(0);
        assert_eq!(param_of(request(zero)), "max_tokens");
        let mut named = base(json!("hi"));
        named["tool_choice"] = json!({"type": "tool"});
        assert_eq!(param_of(request(named)), "tool_choice.name");
        let system_role = json!({"model": "m", "max_tokens": 8,
            "messages": [{"role": "system", "content": "x"}]});
        assert_eq!(param_of(request(system_role)), "messages[0].role");
    }

    #[test]
    fn a_stream_opens_and_closes_one_block_per_kind_in_order() {
        let mut events = MessagesEvents::new("chatcmpl-abc", "m");
        let mut all = events.start();
        let text = |t: &str| ChunkDelta {
            content: Some(t.into()),
            ..Default::default()
        };
        all.extend(events.push(ChunkDelta {
            reasoning_content: Some("hmm".into()),
            ..Default::default()
        }));
        all.extend(events.push(text("Hel")));
        all.extend(events.push(text("lo")));
        for (index, id, name, args) in [
            (0, Some("c1"), Some("f"), "{\"a\":"),
            (0, None, None, "1}"),
            (1, Some("c2"), Some("g"), "{}"),
        ] {
            all.extend(events.push(ChunkDelta {
                tool_calls: Some(vec![ToolCallDelta {
                    index,
                    id: id.map(str::to_owned),
                    kind: None,
                    function: FunctionCallDelta {
                        name: name.map(str::to_owned),
                        arguments: Some(args.into()),
                    },
                }]),
                ..Default::default()
            }));
        }
        all.extend(events.finish("tool_calls", Usage::new(10, 7), None));
        let names: Vec<&str> = all.iter().map(StreamEvent::name).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        let value = serde_json::to_value(&all).unwrap();
        assert_eq!(value[0]["message"]["id"], "msg_abc");
        assert_eq!(value[2]["content_block"]["type"], "thinking");
        assert_eq!(
            value[3]["delta"],
            json!({"type": "thinking_delta", "thinking": "hmm"})
        );
        assert_eq!(value[5]["index"], 1);
        assert_eq!(
            value[9]["content_block"],
            json!({"type": "tool_use", "id": "c1",
            "name": "f", "input": {}})
        );
        assert_eq!(
            value[11]["delta"],
            json!({"type": "input_json_delta", "partial_json": "1}"})
        );
        assert_eq!(value[13]["index"], 3);
        assert_eq!(value[16]["delta"]["stop_reason"], "tool_use");
        assert_eq!(
            value[16]["usage"],
            json!({"input_tokens": 10, "output_tokens": 7})
        );
    }

    #[test]
    fn stop_reasons_are_anthropics() {
        assert_eq!(stop_reason("stop", None).0, "end_turn");
        assert_eq!(stop_reason("length", Some("X")).0, "max_tokens");
        assert_eq!(
            stop_reason("stop", Some("END")),
            ("stop_sequence".into(), Some("END".into()))
        );
        assert_eq!(stop_reason("tool_calls", None).0, "tool_use");
        // An empty answer still holds one text block.
        let mut events = MessagesEvents::new("x", "m");
        let names: Vec<&str> = events
            .finish("stop", Usage::default(), None)
            .iter()
            .map(StreamEvent::name)
            .collect();
        assert_eq!(
            names,
            [
                "content_block_start",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
    }
}
