//! The customer-service agent's turn: given the conversation so far and the customer's new
//! message, decide step by step — answer, call a tool, or hand over — until it answers.
//!
//! Every step is schema-constrained decoding: first the choice of the next step (an enum of
//! "reply", "transfer_to_human_agents" and the tool names), then, for a tool, its arguments
//! under the tool's own JSON schema (strings and lists bounded so a small model cannot ramble
//! past the token budget). So every call parses and matches its schema before it is checked
//! again and sent. A consequential call is not sent: hearth asks the customer to confirm it
//! and runs it only if the next message says yes — the model cannot skip that.

use hearth_gateway::{Constraint, Gateway};
use hearth_types::{ChatCompletionRequest, ChatMessage, SamplingFields, Usage};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::tools::{ToolBox, ToolError};
use crate::SupportError;

/// The built-in step that hands the conversation to a human.
pub const HANDOFF_TOOL: &str = "transfer_to_human_agents";
/// The built-in step that searches the company's documents.
pub const SEARCH_TOOL: &str = "search_knowledge_base";
/// Passages a knowledge-base search returns to the model.
pub const SEARCH_HITS: usize = 3;
const REPLY: &str = "reply";
/// Tool results longer than this are cut in the prompt (the model's context is small).
const RESULT_CHARS: usize = 1500;

/// One entry of a conversation's transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    Customer {
        text: String,
    },
    Agent {
        text: String,
        /// Knowledge-base passages retrieved for this answer.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        citations: Vec<Citation>,
    },
    /// A human agent's message (after a handoff).
    Human {
        text: String,
        /// The console account that wrote it, when it came from the console.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        author: Option<String>,
    },
    ToolCall {
        name: String,
        arguments: Value,
        /// The tool's answer (`{"Ok": …}`), or its refusal in its own words (`{"Err": "…"}`).
        #[schema(schema_with = tool_result)]
        result: Result<Value, String>,
    },
    /// A consequential call waiting for the customer's yes.
    ConfirmationAsked {
        name: String,
        arguments: Value,
    },
    /// The conversation went to a human.
    Handoff {
        summary: String,
    },
}

/// A knowledge-base passage an answer drew on.
fn tool_result() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .property("Ok", hearth_types::schema::any())
                .required("Ok")
                .additional_properties(Some(
                    utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
                )),
        )
        .item(
            ObjectBuilder::new()
                .property("Err", ObjectBuilder::new().schema_type(Type::String))
                .required("Err")
                .additional_properties(Some(
                    utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
                )),
        )
        .into()
}

/// `[name, arguments]` of the call waiting for a yes, or null.
fn pending_call() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ArrayItems, ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(
            ArrayBuilder::new()
                .prefix_items([
                    ObjectBuilder::new().schema_type(Type::String).build(),
                    hearth_types::schema::any().build(),
                ])
                .items(ArrayItems::False)
                .min_items(Some(2)),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Citation {
    /// `kb:N`.
    pub id: String,
    pub title: String,
    pub source: String,
}

/// Where a conversation stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Conversation {
    pub entries: Vec<Entry>,
    /// The call the customer is asked to confirm: `[name, arguments]`.
    #[schema(schema_with = pending_call)]
    pub pending: Option<(String, Value)>,
    /// Set once handed over; the agent stays silent until a human hands it back.
    pub handed_over: Option<String>,
}

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Chat model (as registered).
    pub model: String,
    /// Most tool calls per customer message before the agent gives up and hands over.
    pub max_tool_rounds: usize,
    pub max_reply_tokens: u32,
    pub temperature: f32,
}

impl AgentOptions {
    pub fn new(model: impl Into<String>) -> Self {
        AgentOptions {
            model: model.into(),
            max_tool_rounds: 6,
            max_reply_tokens: 160,
            temperature: 0.0,
        }
    }
}

/// What one customer message led to.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TurnOutcome {
    /// The agent's answer to the customer (empty when handed over silently).
    pub reply: String,
    /// Tool calls the model produced this turn, and how many were valid (parsed and matched
    /// their schema).
    pub tool_calls: usize,
    pub valid_tool_calls: usize,
    pub handed_over: bool,
    pub usage: Usage,
    /// Knowledge-base passages retrieved this turn (the answer lists them as its sources).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub citations: Vec<Citation>,
}

/// What the agent needs: the gateway, the company's tools and policy.
pub struct Agent<'a> {
    pub gateway: &'a Gateway,
    pub tools: &'a ToolBox,
    pub policy: &'a str,
    /// Extra instructions for the conversation's intent (its playbook), if routed.
    pub playbook: Option<&'a str>,
    /// The company's documents, when it has any.
    pub knowledge: Option<&'a crate::kb::KbIndex>,
    pub options: AgentOptions,
}

/// "yes", "Yes, please go ahead.", "sure", "confirm" …
pub fn is_affirmative(text: &str) -> bool {
    let t = text.trim().to_lowercase();
    let negative = ["no", "not", "don't", "dont", "cancel that", "wait", "stop"];
    let words: Vec<&str> = t
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .collect();
    if words.iter().any(|w| negative.contains(w)) {
        return false;
    }
    let positive = [
        "yes",
        "y",
        "yeah",
        "yep",
        "sure",
        "confirm",
        "confirmed",
        "proceed",
        "ok",
        "okay",
        "correct",
        "please",
    ];
    words.first().is_some_and(|w| positive.contains(w))
        || t.contains("go ahead")
        || words.contains(&"yes")
}

/// Adds `maxLength` to strings and `maxItems` to arrays that have none, so a constrained
/// generation always closes within its token budget.
fn bounded(schema: &Value) -> Value {
    match schema {
        Value::Object(m) => {
            let mut out: serde_json::Map<String, Value> =
                m.iter().map(|(k, v)| (k.clone(), bounded(v))).collect();
            let kind = m.get("type").and_then(Value::as_str);
            if kind == Some("string") && !m.contains_key("maxLength") && !m.contains_key("enum") {
                out.insert("maxLength".into(), json!(80));
            }
            if kind == Some("array") && !m.contains_key("maxItems") {
                out.insert("maxItems".into(), json!(8));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(bounded).collect()),
        other => other.clone(),
    }
}

/// Moves the conversation to a human: a handoff entry with `summary`, then the agent's
/// goodbye as this turn's reply.
pub(crate) fn hand_over(
    conversation: &mut Conversation,
    summary: String,
    outcome: &mut TurnOutcome,
    on_event: &(dyn Fn(&Entry) + Sync),
) {
    push(
        conversation,
        on_event,
        Entry::Handoff {
            summary: summary.clone(),
        },
    );
    conversation.handed_over = Some(summary);
    let text = "I'm transferring you to a human agent, who will continue from here.";
    push(
        conversation,
        on_event,
        Entry::Agent {
            text: text.into(),
            citations: Vec::new(),
        },
    );
    outcome.reply = text.into();
    outcome.handed_over = true;
}

fn push(conversation: &mut Conversation, on_event: &(dyn Fn(&Entry) + Sync), entry: Entry) {
    on_event(&entry);
    conversation.entries.push(entry);
}

fn add_usage(total: &mut Usage, more: Usage) {
    total.prompt_tokens += more.prompt_tokens;
    total.completion_tokens += more.completion_tokens;
    total.total_tokens += more.total_tokens;
}

fn cut(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(chars).collect();
        s.push_str(" …(cut)");
        s
    }
}

impl Agent<'_> {
    /// Searches the knowledge base, records the search in the transcript and the passages
    /// found among the turn's citations.
    async fn search_knowledge(
        &self,
        query: &str,
        conversation: &mut Conversation,
        citations: &mut Vec<Citation>,
        on_event: &(dyn Fn(&Entry) + Sync),
    ) -> Result<(), SupportError> {
        let hits = match self.knowledge {
            Some(kb) => kb.search(self.gateway, query, SEARCH_HITS).await?,
            None => Vec::new(),
        };
        for h in &hits {
            if !citations.iter().any(|c| c.id == h.id) {
                citations.push(Citation {
                    id: h.id.clone(),
                    title: h.title.clone(),
                    source: h.source.clone(),
                });
            }
        }
        let found: Vec<Value> = hits
            .iter()
            .map(|h| json!({"id": h.id, "title": h.title, "text": h.text}))
            .collect();
        push(
            conversation,
            on_event,
            Entry::ToolCall {
                name: SEARCH_TOOL.into(),
                arguments: json!({ "query": query }),
                result: Ok(Value::Array(found)),
            },
        );
        Ok(())
    }

    fn has_knowledge(&self) -> bool {
        self.knowledge.is_some_and(|k| !k.is_empty())
    }

    fn system_prompt(&self) -> String {
        let mut prompt =
            String::from("You are a customer service agent. Follow this policy exactly.\n\n");
        prompt.push_str(self.policy.trim());
        if let Some(playbook) = self.playbook {
            prompt.push_str("\n\n# This conversation\n");
            prompt.push_str(playbook.trim());
        }
        prompt.push_str(
            "\n\n# Tools\nEach step you either reply to the customer or call one tool. Tools:\n",
        );
        for spec in self.tools.specs() {
            let params: Vec<String> = spec.parameters["properties"]
                .as_object()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            prompt.push_str(&format!(
                "- {}({}): {}\n",
                spec.name,
                params.join(", "),
                spec.description
            ));
        }
        prompt.push_str(&format!(
            "- {HANDOFF_TOOL}(summary): hand the customer to a human agent, with a summary.\n"
        ));
        if self.has_knowledge() {
            prompt.push_str(&format!(
                "- {SEARCH_TOOL}(query): search the company's help documents; answer from \
                 the passages found.\n"
            ));
        }
        prompt
    }

    fn messages(&self, conversation: &Conversation) -> Vec<ChatMessage> {
        let mut messages = vec![ChatMessage::new("system", self.system_prompt())];
        for entry in &conversation.entries {
            let (role, text) = match entry {
                Entry::Customer { text } => ("user", text.clone()),
                Entry::Agent { text, .. } | Entry::Human { text, .. } => {
                    ("assistant", text.clone())
                }
                Entry::ToolCall {
                    name,
                    arguments,
                    result,
                } => (
                    "assistant",
                    format!(
                        "[called {name} {arguments} → {}]",
                        cut(
                            &match result {
                                Ok(v) => v.to_string(),
                                Err(e) => e.clone(),
                            },
                            RESULT_CHARS
                        )
                    ),
                ),
                Entry::ConfirmationAsked { .. } | Entry::Handoff { .. } => continue,
            };
            // Consecutive messages of one role are merged: chat templates expect turns.
            let after_system = messages.len() > 1;
            match messages.last_mut() {
                Some(last) if last.role == role && after_system => {
                    let merged = format!("{}\n{text}", last.text());
                    *last = ChatMessage::new(role, merged);
                }
                _ => messages.push(ChatMessage::new(role, text)),
            }
        }
        messages
    }

    fn request(&self, messages: Vec<ChatMessage>, max_tokens: u32) -> ChatCompletionRequest {
        let sampling = SamplingFields {
            max_tokens: Some(max_tokens),
            temperature: Some(f64::from(self.options.temperature)),
            ..Default::default()
        };
        ChatCompletionRequest::streaming(&self.options.model, messages, sampling)
    }

    async fn generate(
        &self,
        messages: Vec<ChatMessage>,
        max_tokens: u32,
        constraint: Option<Constraint>,
        usage: &mut Usage,
    ) -> Result<String, SupportError> {
        let stream = self
            .gateway
            .chat_constrained(&self.request(messages, max_tokens), constraint)
            .await?;
        let (message, _, used, _) = stream.collect().await?;
        add_usage(usage, used);
        Ok(message.content.unwrap_or_default())
    }

    /// The next step: "reply", the handoff, or a tool name.
    async fn decide(
        &self,
        conversation: &Conversation,
        usage: &mut Usage,
    ) -> Result<String, SupportError> {
        let mut choices = vec![REPLY.to_string(), HANDOFF_TOOL.to_string()];
        if self.has_knowledge() {
            choices.push(SEARCH_TOOL.to_string());
        }
        choices.extend(self.tools.specs().map(|s| s.name.clone()));
        let schema = json!({
            "type": "object",
            "properties": {"next": {"enum": choices}},
            "required": ["next"],
            "additionalProperties": false,
        });
        let text = self
            .generate(
                self.messages(conversation),
                48,
                Some(Constraint::JsonSchema(schema)),
                usage,
            )
            .await?;
        Ok(serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["next"].as_str().map(str::to_string))
            .unwrap_or_else(|| REPLY.to_string()))
    }

    async fn arguments(
        &self,
        conversation: &Conversation,
        tool: &str,
        schema: &Value,
        usage: &mut Usage,
    ) -> Result<Option<Value>, SupportError> {
        let mut messages = self.messages(conversation);
        messages.push(ChatMessage::new(
            "assistant",
            format!("[calling {tool} with arguments as JSON]"),
        ));
        let text = self
            .generate(
                messages,
                400,
                Some(Constraint::JsonSchema(bounded(schema))),
                usage,
            )
            .await?;
        Ok(serde_json::from_str(&text).ok())
    }

    async fn reply(
        &self,
        conversation: &Conversation,
        usage: &mut Usage,
    ) -> Result<String, SupportError> {
        let text = self
            .generate(
                self.messages(conversation),
                self.options.max_reply_tokens,
                None,
                usage,
            )
            .await?;
        Ok(text.trim().to_string())
    }

    /// Runs the agent on the customer's new message.
    /// `on_event` sees every transcript entry as it is added (for streaming).
    pub async fn respond(
        &self,
        conversation: &mut Conversation,
        message: &str,
        on_event: &(dyn Fn(&Entry) + Sync),
    ) -> Result<TurnOutcome, SupportError> {
        let mut outcome = TurnOutcome::default();
        push(
            conversation,
            on_event,
            Entry::Customer {
                text: message.to_string(),
            },
        );
        if conversation.handed_over.is_some() {
            return Ok(outcome);
        }
        if let Some((name, arguments)) = conversation.pending.take() {
            let result = if is_affirmative(message) {
                self.tools
                    .call(&name, &arguments)
                    .await
                    .map_err(|e| e.to_string())
            } else {
                Err("not done: the customer did not confirm".to_string())
            };
            push(
                conversation,
                on_event,
                Entry::ToolCall {
                    name,
                    arguments,
                    result,
                },
            );
        }
        let mut citations: Vec<Citation> = Vec::new();
        // Every customer message is looked up in the company's documents first, so answers
        // can draw on them (and cite them) whether or not the model thinks to search.
        if self.has_knowledge() {
            self.search_knowledge(message, conversation, &mut citations, on_event)
                .await?;
        }
        for _ in 0..self.options.max_tool_rounds {
            let next = self.decide(conversation, &mut outcome.usage).await?;
            if next == REPLY {
                let mut text = self.reply(conversation, &mut outcome.usage).await?;
                if !citations.is_empty() {
                    let sources: Vec<String> = citations
                        .iter()
                        .map(|c| format!("[{}] {}", c.id, c.title))
                        .collect();
                    text.push_str(&format!("\n\nSources: {}", sources.join("; ")));
                }
                push(
                    conversation,
                    on_event,
                    Entry::Agent {
                        text: text.clone(),
                        citations: citations.clone(),
                    },
                );
                outcome.reply = text;
                outcome.citations = citations;
                return Ok(outcome);
            }
            let schema = if next == HANDOFF_TOOL {
                json!({"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]})
            } else if next == SEARCH_TOOL {
                json!({"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]})
            } else {
                self.tools
                    .spec(&next)
                    .map(|s| s.parameters.clone())
                    .unwrap_or_else(|| json!({"type": "object"}))
            };
            let arguments = self
                .arguments(conversation, &next, &schema, &mut outcome.usage)
                .await?;
            outcome.tool_calls += 1;
            let Some(arguments) = arguments else {
                // Cut by the token budget: counted as invalid, nothing sent.
                push(
                    conversation,
                    on_event,
                    Entry::ToolCall {
                        name: next,
                        arguments: Value::Null,
                        result: Err("the call did not parse".into()),
                    },
                );
                continue;
            };
            if next == HANDOFF_TOOL {
                outcome.valid_tool_calls += 1;
                let summary = arguments["summary"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                hand_over(conversation, summary, &mut outcome, on_event);
                outcome.citations = citations;
                return Ok(outcome);
            }
            if next == SEARCH_TOOL {
                outcome.valid_tool_calls += 1;
                let query = arguments["query"].as_str().unwrap_or(message).to_string();
                self.search_knowledge(&query, conversation, &mut citations, on_event)
                    .await?;
                continue;
            }
            if let Err(e) = self.tools.validate(&next, &arguments) {
                push(
                    conversation,
                    on_event,
                    Entry::ToolCall {
                        name: next,
                        arguments,
                        result: Err(e.to_string()),
                    },
                );
                continue;
            }
            outcome.valid_tool_calls += 1;
            if self.tools.spec(&next).is_some_and(|s| s.consequential) {
                let text = format!(
                    "Before I do this, please confirm: {next} with {arguments}. Shall I \
                     proceed (yes/no)?"
                );
                push(
                    conversation,
                    on_event,
                    Entry::ConfirmationAsked {
                        name: next.clone(),
                        arguments: arguments.clone(),
                    },
                );
                push(
                    conversation,
                    on_event,
                    Entry::Agent {
                        text: text.clone(),
                        citations: Vec::new(),
                    },
                );
                conversation.pending = Some((next, arguments));
                outcome.reply = text;
                outcome.citations = citations;
                return Ok(outcome);
            }
            let result = match self.tools.call(&next, &arguments).await {
                Ok(v) => Ok(v),
                Err(ToolError::Refused(e)) => Err(e),
                Err(e) => Err(e.to_string()),
            };
            push(
                conversation,
                on_event,
                Entry::ToolCall {
                    name: next,
                    arguments,
                    result,
                },
            );
        }
        let summary = format!(
            "The agent made {} tool calls without reaching an answer; the customer's last \
             message: {message}",
            self.options.max_tool_rounds
        );
        hand_over(conversation, summary, &mut outcome, on_event);
        outcome.citations = citations;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmations_need_a_clear_yes() {
        for yes in [
            "yes",
            "Yes, please go ahead.",
            "sure",
            "Confirm",
            "ok do it",
            "y",
        ] {
            assert!(is_affirmative(yes), "{yes}");
        }
        for no in [
            "no",
            "No, wait",
            "I don't want that",
            "what?",
            "maybe later",
            "",
        ] {
            assert!(!is_affirmative(no), "{no}");
        }
    }

    #[test]
    fn bounded_schemas_limit_open_strings_and_lists_only() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "string"},
            "b": {"type": "string", "enum": ["x"]},
            "c": {"type": "array", "items": {"type": "string"}},
        }});
        let b = bounded(&schema);
        assert_eq!(b["properties"]["a"]["maxLength"], 80);
        assert!(b["properties"]["b"].get("maxLength").is_none());
        assert_eq!(b["properties"]["c"]["maxItems"], 8);
        assert_eq!(b["properties"]["c"]["items"]["maxLength"], 80);
    }
}
