//! Chat prompts: the model's own Jinja chat template (from the GGUF's
//! `tokenizer.chat_template`) rendered with minijinja.
//!
//! Fallback when a model ships no template (base models such as gemma-3-270m): ChatML
//! (`<|im_start|>role\ncontent<|im_end|>`), with `<|im_end|>` added as a stop string so a
//! model that does not know the format still ends its turn. Tools are passed to templates that
//! reference `tools`; for templates that don't, hearth describes the tools in the system
//! message instead, so every model can be asked to call them.

use hearth_types::{ChatMessage, Tool};
use minijinja::value::Serde;
use minijinja::{context, Environment, Error, ErrorKind, Value};
use serde_json::json;

use crate::InferError;

/// ChatML, the documented fallback for models without a chat template.
pub const FALLBACK_TEMPLATE: &str = r"{%- for message in messages -%}
{{ '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}";

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    uses_tools: bool,
    is_fallback: bool,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("uses_tools", &self.uses_tools)
            .field("is_fallback", &self.is_fallback)
            .finish()
    }
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

fn strftime_now(format: String) -> String {
    // Templates use this for "Today's date"; UTC is good enough and needs no tz database.
    let (year, month, day) = hearth_types::clock::utc_date(hearth_types::clock::unix_now() as i64);
    let name = hearth_types::clock::month_name(month);
    format
        .replace("%Y", &year.to_string())
        .replace("%m", &format!("{month:02}"))
        .replace("%d", &format!("{day:02}"))
        .replace("%B", &name)
        .replace("%b", &name[..3])
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
        let uses_tools = source.contains("tools");
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned("chat", source)
            .map_err(|e| InferError::InvalidModel {
                path: Default::default(),
                reason: format!("its chat template does not compile: {e}"),
            })?;
        Ok(ChatTemplate {
            env,
            uses_tools,
            is_fallback,
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
        })
    }

    /// True when the model shipped no template and ChatML is used.
    pub fn is_fallback(&self) -> bool {
        self.is_fallback
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
        let mut messages: Vec<serde_json::Value> = messages.iter().map(message_value).collect();
        let tools = tools.filter(|t| !t.is_empty());
        let mut tools_value = Value::UNDEFINED;
        if let Some(tools) = tools {
            if self.uses_tools {
                tools_value = Value::from(Serde(tools));
            } else {
                inject_tool_instructions(&mut messages, tools);
            }
        }
        let template = self.env.get_template("chat").expect("added in new()");
        template
            .render(context! {
                messages => Value::from(Serde(&messages)),
                tools => tools_value,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token.clone(),
                eos_token => self.eos_token.clone(),
            })
            .map_err(|e| InferError::InvalidParameter {
                param: "messages".to_owned(),
                message: format!("the model's chat template rejected the conversation: {e}"),
            })
    }
}

/// A message as templates expect it: `content` a string, tool-call arguments an object.
fn message_value(message: &ChatMessage) -> serde_json::Value {
    let mut value = json!({ "role": message.role, "content": message.text() });
    if let Some(calls) = &message.tool_calls {
        let calls: Vec<_> = calls
            .iter()
            .map(|call| {
                let arguments = serde_json::from_str::<serde_json::Value>(&call.function.arguments)
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

/// The tool description hearth writes into the system message for templates without tools.
pub fn tool_instructions(tools: &[Tool]) -> String {
    let mut text = String::from(
        "You can call these functions. To call one, answer with only a JSON object \
         {\"name\": <function name>, \"arguments\": <arguments object>}.\n",
    );
    for tool in tools {
        let f = &tool.function;
        text.push_str(&format!(
            "- {}: {} Parameters: {}\n",
            f.name,
            f.description.as_deref().unwrap_or(""),
            f.parameters
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "{}".to_owned())
        ));
    }
    text
}

fn inject_tool_instructions(messages: &mut Vec<serde_json::Value>, tools: &[Tool]) {
    let instructions = tool_instructions(tools);
    match messages.first_mut() {
        Some(first) if first["role"] == "system" || first["role"] == "developer" => {
            let content = first["content"].as_str().unwrap_or("").to_owned();
            first["content"] = json!(format!("{content}\n\n{instructions}"));
        }
        _ => messages.insert(0, json!({ "role": "system", "content": instructions })),
    }
    // Tool results become plain turns the model can read, for templates that lack the role.
    for message in messages.iter_mut() {
        if message["role"] == "tool" {
            message["role"] = json!("user");
            let content = message["content"].as_str().unwrap_or("").to_owned();
            message["content"] = json!(format!("Function result: {content}"));
        } else if let Some(calls) = message.get("tool_calls").cloned() {
            if let Some(first) = calls.as_array().and_then(|c| c.first()) {
                message["content"] = json!(json!({
                    "name": first["function"]["name"],
                    "arguments": first["function"]["arguments"],
                })
                .to_string());
            }
        }
    }
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

    #[test]
    fn strftime_now_formats_dates() {
        let (year, month, day) =
            hearth_types::clock::utc_date(hearth_types::clock::unix_now() as i64);
        let s = strftime_now("%d %B %Y|%Y-%m-%d|%b".into());
        let name = hearth_types::clock::month_name(month);
        assert_eq!(
            s,
            format!(
                "{day:02} {name} {year}|{year}-{month:02}-{day:02}|{}",
                &name[..3]
            )
        );
    }
}
