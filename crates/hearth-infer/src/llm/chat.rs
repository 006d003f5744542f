//! Chat prompts: the model's own Jinja chat template (from the GGUF's
//! `tokenizer.chat_template`, or a file the configuration names) rendered as Hugging Face's
//! `apply_chat_template` renders it with Python's jinja2: `trim_blocks` and `lstrip_blocks`,
//! loop controls, Python's `json.dumps` as `tojson`, Python's printing of values, Python string,
//! dict and list methods ([`super::pyjinja`]). The conformance suite in tests/chat-templates
//! compares the text byte for byte with Python's on real templates.
//!
//! What a template renders (a system role, tool declarations, tool calls, tool results, string
//! or typed content) is found once, by rendering probe conversations. A conversation is then
//! adapted to the template, never the template to the conversation: tools a template does not
//! describe are described in the system message, tool calls and results it does not render
//! become text turns, a system message it refuses is folded into the next message.
//! `scripts/render-chat-templates.py` repeats these steps for the reference text.
//!
//! Fallback when a model ships no template (base models such as gemma-3-270m): ChatML
//! (`<|im_start|>role\ncontent<|im_end|>`), with `<|im_end|>` added as a stop string so a
//! model that does not know the format still ends its turn.

use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use hearth_types::{ChatMessage, MessageContent, Tool};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{context, Environment, Value};
use serde::Serialize;
use serde_json::{json, Map, Value as Json};
use sha2::{Digest, Sha256};

use super::pyjinja;
use crate::InferError;

/// ChatML, the documented fallback for models without a chat template.
pub const FALLBACK_TEMPLATE: &str = r"{%- for message in messages -%}
{{ '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}";

/// Names hearth itself gives the template; `chat_template_kwargs` may not replace them.
pub const RESERVED_TEMPLATE_NAMES: &[&str] = &[
    "messages",
    "tools",
    "documents",
    "add_generation_prompt",
    "bos_token",
    "eos_token",
];

/// What a chat template renders, found by rendering probe conversations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// A system message's text appears.
    pub system: bool,
    /// A developer message's text appears (else it is passed as a system message).
    pub developer: bool,
    /// Declared tools appear (else hearth describes them in the system message).
    pub tools: bool,
    /// An assistant turn's tool calls appear (else they are passed as JSON text).
    pub tool_calls: bool,
    /// A tool result appears (else results are passed as a user turn).
    pub tool_results: bool,
    /// A call id of any form renders (Mistral's templates refuse all but nine letters and
    /// digits; hearth then gives each id a nine-character stand-in of its own).
    pub any_call_ids: bool,
    /// Content given as a string appears.
    pub string_content: bool,
    /// Content given as a list of text parts appears.
    pub typed_content: bool,
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    caps: Capabilities,
    is_fallback: bool,
    bos_token: String,
    eos_token: String,
    model: String,
    clock: Arc<AtomicI64>,
    source: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("model", &self.model)
            .field("capabilities", &self.caps)
            .field("is_fallback", &self.is_fallback)
            .finish()
    }
}

/// Renders one minijinja error as "line N: what", the way a user can find it in the file.
fn describe(error: &minijinja::Error) -> String {
    let what = error
        .detail()
        .map(str::to_owned)
        .unwrap_or_else(|| error.kind().to_string());
    match error.line() {
        Some(line) => format!("line {line}: {what}"),
        None => what,
    }
}

impl ChatTemplate {
    /// Compiles `source`, or the ChatML fallback when `source` is `None`.
    pub fn new(
        source: Option<&str>,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
    ) -> Result<Self, InferError> {
        let is_fallback = source.is_none();
        let source = source.unwrap_or(FALLBACK_TEMPLATE).to_owned();
        let clock = Arc::new(AtomicI64::new(0));
        let mut env = Environment::new();
        env.set_syntax(
            SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .expect("the default delimiters"),
        );
        pyjinja::install(&mut env, clock.clone());
        env.add_template_owned("chat template", source.clone())
            .map_err(|e| InferError::InvalidModel {
                path: Default::default(),
                reason: format!("its chat template does not compile ({})", describe(&e)),
            })?;
        let mut template = ChatTemplate {
            env,
            caps: Capabilities::default(),
            is_fallback,
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
            model: String::new(),
            clock,
            source,
        };
        template.caps = template.probe();
        Ok(template)
    }

    /// The template's text (the ChatML fallback's when the model has none).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Names the model in the errors this template's rendering returns.
    pub fn for_model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// Fixes the clock `strftime_now` reads (Unix seconds), so a rendering can be compared
    /// with a reference; 0 returns to the system clock.
    pub fn set_clock(&self, unix_seconds: i64) {
        self.clock
            .store(unix_seconds, std::sync::atomic::Ordering::Relaxed);
    }

    /// True when the model shipped no template and ChatML is used.
    pub fn is_fallback(&self) -> bool {
        self.is_fallback
    }

    /// What the template renders.
    pub fn capabilities(&self) -> Capabilities {
        self.caps
    }

    /// Stop strings the template implies (the fallback's end-of-turn marker).
    pub fn implied_stops(&self) -> Vec<String> {
        if self.is_fallback {
            vec!["<|im_end|>".to_owned()]
        } else {
            Vec::new()
        }
    }

    /// Renders a conversation into the prompt text. `tools` are the functions the model may
    /// call; `add_generation_prompt` opens the assistant's turn.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        tools: Option<&[Tool]>,
        add_generation_prompt: bool,
    ) -> Result<String, InferError> {
        self.render_with(messages, tools, add_generation_prompt, None)
    }

    /// [`render`](Self::render) with the request's `chat_template_kwargs`: more names the
    /// template can read (`enable_thinking`, `reasoning_effort`, ...).
    pub fn render_with(
        &self,
        messages: &[ChatMessage],
        tools: Option<&[Tool]>,
        add_generation_prompt: bool,
        kwargs: Option<&Map<String, Json>>,
    ) -> Result<String, InferError> {
        if let Some(name) = kwargs
            .into_iter()
            .flat_map(|k| k.keys())
            .find(|k| RESERVED_TEMPLATE_NAMES.contains(&k.as_str()))
        {
            return Err(InferError::InvalidParameter {
                param: format!("chat_template_kwargs.{name}"),
                message: format!("`{name}` is set by hearth and cannot be replaced"),
            });
        }
        let messages: Vec<Json> = messages.iter().map(message_value).collect();
        let tools: Option<Vec<Json>> = tools
            .filter(|t| !t.is_empty())
            .map(|t| t.iter().map(|tool| json!(tool)).collect());
        let (messages, tools) = adapt(messages, tools, &self.caps);
        self.render_values(&messages, tools.as_deref(), add_generation_prompt, kwargs)
            .map_err(|e| InferError::InvalidParameter {
                param: "messages".to_owned(),
                message: format!(
                    "{} chat template cannot render this conversation ({})",
                    if self.model.is_empty() {
                        "the model's".to_owned()
                    } else {
                        format!("model `{}`'s", self.model)
                    },
                    describe(&e)
                ),
            })
    }

    /// Renders messages as the template receives them, as transformers passes them: keys
    /// whose value is null dropped, the reasoning under `reasoning_content` and `thinking`.
    fn render_values(
        &self,
        messages: &[Json],
        tools: Option<&[Json]>,
        add_generation_prompt: bool,
        kwargs: Option<&Map<String, Json>>,
    ) -> Result<String, minijinja::Error> {
        let messages: Vec<Json> = messages.iter().map(as_transformers_passes).collect();
        let template = self.env.get_template("chat template")?;
        let tools = match tools {
            Some(tools) => Value::from(Serde(tools)),
            None => pyjinja::none(),
        };
        let extra = match kwargs {
            Some(kwargs) => Value::from(Serde(kwargs)),
            None => Value::from(()),
        };
        template.render(context! {
            messages => Value::from(Serde(&messages)),
            tools => tools,
            documents => pyjinja::none(),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.clone(),
            eos_token => self.eos_token.clone(),
            ..extra
        })
    }

    /// True when rendering `messages` succeeds and shows `needle` (and not a list printed
    /// whole, which is not typed content rendered).
    /// A tool is declared in every probe: some templates (Hermes' tool_use) need one.
    fn renders(&self, messages: Json, needle: &str, tools: &[Json]) -> bool {
        let messages: Vec<Json> = serde_json::from_value(messages).unwrap_or_default();
        match self.render_values(&messages, Some(tools), false, None) {
            Ok(text) => text.contains(needle) && !text.contains("'type': 'text'"),
            Err(_) => false,
        }
    }

    fn probe(&self) -> Capabilities {
        let tool = json!({
            "type": "function",
            "function": {
                "name": "probe_tool_name",
                "description": "probe",
                "parameters": {
                    "type": "object",
                    "properties": {"arg": {"type": "string"}},
                    "required": ["arg"],
                },
            },
        });
        let tools = std::slice::from_ref(&tool);
        let user = json!({"role": "user", "content": "probe"});
        let call = json!({
            "role": "assistant",
            "content": "",
            "tool_calls": [{
                "id": "A1b2C3d4E",
                "type": "function",
                "function": {"name": "probe_call_name", "arguments": {"arg": "v"}},
            }],
        });
        let result =
            json!({"role": "tool", "tool_call_id": "A1b2C3d4E", "content": "probe_result_text"});
        let tool_results = self.renders(json!([user, call, result]), "probe_result_text", tools);
        Capabilities {
            system: self.renders(
                json!([{"role": "system", "content": "probe_system_text"}, user]),
                "probe_system_text",
                tools,
            ),
            developer: self.renders(
                json!([{"role": "developer", "content": "probe_developer_text"}, user]),
                "probe_developer_text",
                tools,
            ),
            tools: self.renders(json!([user]), "probe_tool_name", tools),
            tool_calls: self.renders(json!([user, call]), "probe_call_name", tools),
            tool_results,
            // Refused only where the same conversation with nine-character ids renders.
            any_call_ids: !tool_results
                || self.renders(
                    json!([user, long_id(&call), long_id(&result)]),
                    "probe_result_text",
                    tools,
                ),
            string_content: self.renders(
                json!([{"role": "user", "content": "probe_string_text"}]),
                "probe_string_text",
                tools,
            ),
            typed_content: self.renders(
                json!([{"role": "user", "content": [{"type": "text", "text": "probe_typed_text"}]}]),
                "probe_typed_text",
                tools,
            ),
        }
    }
}

/// A message as the API gave it, with tool-call arguments parsed into objects (templates
/// index and `tojson` them; the API carries them as JSON text).
fn message_value(message: &ChatMessage) -> Json {
    let mut value = json!({ "role": message.role });
    value["content"] = match &message.content {
        None => Json::Null,
        Some(MessageContent::Text(text)) => json!(text),
        Some(MessageContent::Parts(parts)) => json!(parts),
    };
    if let Some(reasoning) = &message.reasoning_content {
        value["reasoning_content"] = json!(reasoning);
    }
    if let Some(calls) = &message.tool_calls {
        let calls: Vec<_> = calls
            .iter()
            .map(|call| {
                let arguments = serde_json::from_str::<Json>(&call.function.arguments)
                    .unwrap_or_else(|_| json!(call.function.arguments));
                json!({
                    "id": call.id,
                    "type": "function",
                    "function": { "name": call.function.name, "arguments": arguments },
                })
            })
            .collect();
        value["tool_calls"] = json!(calls);
    }
    if let Some(id) = &message.tool_call_id {
        value["tool_call_id"] = json!(id);
    }
    if let Some(name) = &message.name {
        value["name"] = json!(name);
    }
    value
}

fn as_transformers_passes(message: &Json) -> Json {
    let Some(fields) = message.as_object() else {
        return message.clone();
    };
    let mut out = Map::new();
    if let Some(reasoning) = fields.get("reasoning_content").filter(|r| !r.is_null()) {
        out.insert("thinking".to_owned(), reasoning.clone());
    }
    for (key, value) in fields {
        if !value.is_null() {
            out.insert(key.clone(), value.clone());
        }
    }
    Json::Object(out)
}

/// The text of a message's content: text parts joined by "\n", as llama.cpp and vLLM join
/// them for templates that read strings.
fn text_of(content: Option<&Json>) -> String {
    match content {
        Some(Json::String(text)) => text.clone(),
        Some(Json::Array(parts)) => parts
            .iter()
            .filter(|p| p["type"] == "text")
            .map(|p| p["text"].as_str().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Adapts a conversation to what the template renders (see the module documentation).
/// A probe message with its call id replaced by one in OpenAI's form.
fn long_id(message: &Json) -> Json {
    let mut message = message.clone();
    let id = json!("call_0123456789abcdef0123");
    if let Some(call) = message.pointer_mut("/tool_calls/0/id") {
        *call = id.clone();
    }
    if message.get("tool_call_id").is_some() {
        message["tool_call_id"] = id;
    }
    message
}

/// The nine letters and digits that stand for `id` where a template takes no other form:
/// `id` itself when it already has that form, else a digest of it, the same in every turn (so
/// a call and its result still match, and a conversation's prefix renders the same).
fn nine_character_id(id: &str) -> String {
    if id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return id.to_owned();
    }
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let digest = Sha256::digest(id.as_bytes());
    digest[..9]
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

fn adapt(
    mut messages: Vec<Json>,
    mut tools: Option<Vec<Json>>,
    caps: &Capabilities,
) -> (Vec<Json>, Option<Vec<Json>>) {
    for message in &mut messages {
        match message.get("content") {
            Some(Json::Array(_)) if caps.string_content || !caps.typed_content => {
                message["content"] = json!(text_of(message.get("content")));
            }
            Some(Json::String(text)) if caps.typed_content && !caps.string_content => {
                message["content"] = json!([{"type": "text", "text": text}]);
            }
            _ => {}
        }
    }
    if let Some(declared) = tools.as_deref().filter(|_| !caps.tools) {
        let instructions = tool_instructions(declared);
        match messages.first_mut() {
            Some(first) if first["role"] == "system" || first["role"] == "developer" => {
                let content = text_of(first.get("content"));
                first["content"] = json!(format!("{content}\n\n{instructions}"));
            }
            _ => messages.insert(0, json!({ "role": "system", "content": instructions })),
        }
        tools = None;
    }
    if !caps.tool_calls {
        for message in &mut messages {
            let Some(calls) = message
                .get("tool_calls")
                .and_then(Json::as_array)
                .filter(|c| !c.is_empty())
                .cloned()
            else {
                continue;
            };
            let text = text_of(message.get("content"));
            let lines = calls.iter().map(|call| {
                json!({
                    "name": call["function"]["name"],
                    "arguments": call["function"]["arguments"],
                })
                .to_string()
            });
            let all: Vec<String> = (!text.is_empty())
                .then_some(text)
                .into_iter()
                .chain(lines)
                .collect();
            message["content"] = json!(all.join("\n"));
            if let Some(fields) = message.as_object_mut() {
                fields.remove("tool_calls");
            }
        }
    } else {
        for message in &mut messages {
            let has_calls = message
                .get("tool_calls")
                .and_then(Json::as_array)
                .is_some_and(|c| !c.is_empty());
            if has_calls && message.get("content").is_none_or(Json::is_null) {
                message["content"] = json!("");
            }
            if caps.any_call_ids {
                continue;
            }
            for call in message
                .get_mut("tool_calls")
                .and_then(Json::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(id) = call.get("id").and_then(Json::as_str) {
                    call["id"] = json!(nine_character_id(id));
                }
            }
            if let Some(id) = message.get("tool_call_id").and_then(Json::as_str) {
                message["tool_call_id"] = json!(nine_character_id(id));
            }
        }
    }
    if !caps.tool_results {
        let mut merged: Vec<Json> = Vec::with_capacity(messages.len());
        let mut last_from_tools = false;
        for message in messages {
            if message["role"] == "tool" {
                let text = format!("Function result: {}", text_of(message.get("content")));
                match merged.last_mut() {
                    Some(last) if last_from_tools => {
                        let joined = format!("{}\n{text}", text_of(last.get("content")));
                        last["content"] = json!(joined);
                    }
                    _ => merged.push(json!({"role": "user", "content": text})),
                }
                last_from_tools = true;
            } else {
                merged.push(message);
                last_from_tools = false;
            }
        }
        messages = merged;
    }
    if !caps.developer {
        for message in &mut messages {
            if message["role"] == "developer" {
                message["role"] = json!("system");
            }
        }
    }
    if !caps.system && messages.first().is_some_and(|m| m["role"] == "system") {
        let first = messages.remove(0);
        if let Some(next) = messages.first_mut() {
            let joined = format!(
                "{}\n{}",
                text_of(first.get("content")),
                text_of(next.get("content"))
            );
            next["content"] = json!(joined);
        }
    }
    (messages, tools)
}

/// The tool description hearth writes into the system message for templates that do not
/// describe tools.
fn tool_instructions(tools: &[Json]) -> String {
    let mut text = String::from(
        "You can call these functions. To call one, answer with only a JSON object \
         {\"name\": <function name>, \"arguments\": <arguments object>}.\n",
    );
    for tool in tools {
        let f = &tool["function"];
        text.push_str(&format!(
            "- {}: {} Parameters: {}\n",
            f["name"].as_str().unwrap_or(""),
            f["description"].as_str().unwrap_or(""),
            f.get("parameters")
                .filter(|p| !p.is_null())
                .map(|p| p.to_string())
                .unwrap_or_else(|| "{}".to_owned())
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_types::{FunctionDefinition, Tool};

    fn tool() -> Tool {
        Tool {
            kind: "function".into(),
            function: FunctionDefinition {
                name: "get_order".into(),
                description: Some("Look up an order.".into()),
                parameters: Some(json!({"type":"object","properties":{"id":{"type":"string"}}})),
                strict: None,
            },
        }
    }

    #[test]
    fn fallback_is_chatml_with_generation_prompt() {
        let t = ChatTemplate::new(None, "", "").unwrap();
        let out = t
            .render(
                &[
                    ChatMessage::new("system", "S"),
                    ChatMessage::new("user", "U"),
                ],
                None,
                true,
            )
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(t.implied_stops(), vec!["<|im_end|>"]);
    }

    #[test]
    fn hf_style_template_features_work() {
        // Python string methods, namespace, raise_exception and bos_token, as HF templates use.
        let src = "{{ bos_token }}{% set ns = namespace(n=0) %}{% for m in messages %}\
{% if m.role not in ['user','assistant','system'] %}{{ raise_exception('bad role') }}{% endif %}\
{% set ns.n = ns.n + 1 %}[{{ m.role.upper() }}]{{ m.content.strip() }}{% endfor %}#{{ ns.n }}";
        let t = ChatTemplate::new(Some(src), "<s>", "</s>").unwrap();
        let out = t
            .render(&[ChatMessage::new("user", "  hi  ")], None, false)
            .unwrap();
        assert_eq!(out, "<s>[USER]hi#1");
        let err = t
            .render(&[ChatMessage::new("robot", "x")], None, false)
            .unwrap_err();
        assert!(err.to_string().contains("bad role"), "{err}");
    }

    #[test]
    fn tools_go_to_templates_that_know_them() {
        let src = "{% for t in tools %}{{ t.function.name }}:{{ t.function.parameters | tojson }};{% endfor %}";
        let t = ChatTemplate::new(Some(src), "", "").unwrap();
        let out = t
            .render(&[ChatMessage::new("user", "x")], Some(&[tool()]), true)
            .unwrap();
        assert_eq!(
            out,
            // Python's json.dumps spacing, as HF templates expect from `tojson`.
            r#"get_order:{"type": "object", "properties": {"id": {"type": "string"}}};"#
        );
    }

    #[test]
    fn tools_are_described_in_the_system_message_otherwise() {
        let t = ChatTemplate::new(None, "", "").unwrap();
        let out = t
            .render(
                &[
                    ChatMessage::new("system", "Be kind."),
                    ChatMessage::new("user", "where is my order?"),
                ],
                Some(&[tool()]),
                true,
            )
            .unwrap();
        assert!(out.starts_with("<|im_start|>system\nBe kind.\n\nYou can call these functions"));
        assert!(out.contains("- get_order: Look up an order."));
    }
}
