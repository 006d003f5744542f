//! OpenAI tools on local models: which tools the model sees, the JSON Schema that forces a
//! valid call, and reading a call back out of the generated text.

use hearth_types::{FunctionCall, Tool, ToolCall, ToolChoice};
use serde_json::{json, Value};

use crate::tool_syntax::{RawCall, ToolSyntax};
use crate::GatewayError;

/// What the request allows the model to do with its tools.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolMode {
    /// No tools offered (none given, or `tool_choice: "none"`).
    None,
    /// The model may answer in text or call one of these.
    Auto(Vec<Tool>),
    /// The model must call one of these (`"required"`, or a named function).
    Forced(Vec<Tool>),
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Validates `tools` and `tool_choice` together; errors name the field.
pub fn tool_mode(
    tools: Option<&[Tool]>,
    choice: Option<&ToolChoice>,
) -> Result<ToolMode, GatewayError> {
    let tools = tools.unwrap_or_default();
    for (i, tool) in tools.iter().enumerate() {
        if tool.kind != "function" {
            return Err(GatewayError::invalid(
                &format!("tools[{i}].type"),
                "only \"function\" tools are supported",
            ));
        }
        if !valid_name(&tool.function.name) {
            return Err(GatewayError::invalid(
                &format!("tools[{i}].function.name"),
                "must be 1-64 characters of a-z, A-Z, 0-9, underscores and dashes",
            ));
        }
        if let Some(params) = &tool.function.parameters {
            if !params.is_object() {
                return Err(GatewayError::invalid(
                    &format!("tools[{i}].function.parameters"),
                    "must be a JSON Schema object",
                ));
            }
        }
    }
    let mode = match choice {
        None => {
            if tools.is_empty() {
                ToolMode::None
            } else {
                ToolMode::Auto(tools.to_vec())
            }
        }
        Some(ToolChoice::Mode(mode)) => match mode.as_str() {
            "none" => ToolMode::None,
            "auto" if tools.is_empty() => ToolMode::None,
            "auto" => ToolMode::Auto(tools.to_vec()),
            "required" if tools.is_empty() => {
                return Err(GatewayError::invalid(
                    "tool_choice",
                    "\"required\" needs at least one tool in 'tools'",
                ))
            }
            "required" => ToolMode::Forced(tools.to_vec()),
            other => {
                return Err(GatewayError::invalid(
                    "tool_choice",
                    format!("unknown mode '{other}'; use none, auto, required or a named function"),
                ))
            }
        },
        Some(ToolChoice::Named(named)) => {
            let tool = tools
                .iter()
                .find(|t| t.function.name == named.function.name)
                .ok_or_else(|| {
                    GatewayError::invalid(
                        "tool_choice",
                        format!("function '{}' is not in 'tools'", named.function.name),
                    )
                })?;
            ToolMode::Forced(vec![tool.clone()])
        }
    };
    Ok(mode)
}

fn one_call_schema(tool: &Tool) -> Value {
    let parameters = tool
        .function
        .parameters
        .clone()
        .unwrap_or_else(|| json!({"type": "object"}));
    json!({
        "type": "object",
        "properties": {
            "name": {"const": tool.function.name},
            "arguments": parameters,
        },
        "required": ["name", "arguments"],
        "additionalProperties": false,
    })
}

/// The JSON Schema of a call to one of `tools`: `{"name": .., "arguments": {..}}`.
pub fn call_schema(tools: &[Tool]) -> Value {
    match tools {
        [one] => one_call_schema(one),
        many => json!({ "anyOf": many.iter().map(one_call_schema).collect::<Vec<_>>() }),
    }
}

/// Could the start of an answer in `auto` mode still be tool calls? (Held back until known.)
pub fn may_be_tool_calls(text: &str) -> bool {
    let t = text.trim_start();
    let opens = |open: &str| open.starts_with(t) || t.starts_with(open);
    if t.is_empty() || t.starts_with('{') || opens("<tool_call>") {
        return true;
    }
    // A fence may hold a call only if its first line is `json` or nothing, then an object.
    match t.strip_prefix("```") {
        None => "```".starts_with(t),
        Some(after) => {
            if "json".starts_with(after) {
                return true;
            }
            let body = after.strip_prefix("json").unwrap_or(after).trim_start();
            body.is_empty() || body.starts_with('{')
        }
    }
}

/// The compiled parameter schema of each tool named so far (`None`: it does not compile).
type Validators<'t> = std::collections::HashMap<&'t str, Option<jsonschema::Validator>>;

/// Looks up a tool's parameter schema by name (for the syntaxes that write bare values).
pub(crate) fn parameters_of(tools: &[Tool]) -> impl Fn(&str) -> Option<Value> + '_ {
    move |name| {
        tools
            .iter()
            .find(|t| t.function.name == name)
            .and_then(|t| t.function.parameters.clone())
    }
}

/// The calls an answer wrote (in its family's syntax), if every one names one of `tools`
/// and its arguments match that tool's schema: a call is handed on only when it is valid.
pub fn checked_calls(
    calls: Vec<RawCall>,
    tools: &[Tool],
    syntax: ToolSyntax,
) -> Option<Vec<ToolCall>> {
    let mut validators = Validators::default();
    let calls = calls
        .into_iter()
        .map(|call| check_call(call, tools, syntax, &mut validators))
        .collect::<Option<Vec<_>>>()?;
    (!calls.is_empty()).then_some(calls)
}

fn check_call<'t>(
    call: RawCall,
    tools: &'t [Tool],
    syntax: ToolSyntax,
    validators: &mut Validators<'t>,
) -> Option<ToolCall> {
    let tool = tools.iter().find(|t| t.function.name == call.name)?;
    if !call.arguments.is_object() {
        return None;
    }
    if let Some(schema) = &tool.function.parameters {
        // The door checks only that a schema is an object; one that does not compile here
        // (an unknown keyword value, a `$ref` that would need fetching) admits no call.
        let validator = validators
            .entry(tool.function.name.as_str())
            .or_insert_with(|| jsonschema::validator_for(schema).ok());
        if !validator
            .as_ref()
            .is_some_and(|v| v.is_valid(&call.arguments))
        {
            return None;
        }
    }
    Some(ToolCall {
        id: crate::tool_syntax::new_call_id(syntax),
        kind: "function".into(),
        function: FunctionCall {
            name: call.name,
            arguments: call.arguments.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tool_syntax::{CallStream, ToolSyntax};
    use hearth_types::{FunctionDefinition, NamedFunction, NamedToolChoice};

    /// Reads the tool calls out of an answer, if the whole answer is calls in the Hermes/Qwen
    /// syntax or bare JSON: one JSON object naming one of `tools`, or one or more calls each
    /// wrapped in `<tool_call>` tags or in a fenced JSON block (what Qwen2.5-Coder writes). A
    /// call whose arguments do not match its tool's schema makes the answer text. (Answers as
    /// they stream, in every family's syntax: [`crate::tool_syntax::CallStream`].)
    fn parse_tool_calls(text: &str, tools: &[Tool]) -> Option<Vec<ToolCall>> {
        let mut stream = CallStream::new(ToolSyntax::Hermes);
        if !stream.push(text).trim().is_empty() {
            return None;
        }
        let (rest, calls) = stream.finish(&parameters_of(tools));
        if !rest.trim().is_empty() {
            return None;
        }
        checked_calls(calls, tools, ToolSyntax::Json)
    }

    fn tool(name: &str) -> Tool {
        Tool {
            kind: "function".into(),
            function: FunctionDefinition {
                name: name.into(),
                description: None,
                parameters: Some(
                    json!({"type":"object","properties":{"id":{"type":"string"}},"required":["id"]}),
                ),
                strict: None,
            },
        }
    }

    #[test]
    fn modes_follow_openai_rules() {
        let tools = vec![tool("a"), tool("b")];
        assert_eq!(tool_mode(None, None).unwrap(), ToolMode::None);
        assert_eq!(
            tool_mode(Some(&tools), None).unwrap(),
            ToolMode::Auto(tools.clone())
        );
        assert_eq!(
            tool_mode(Some(&tools), Some(&ToolChoice::Mode("none".into()))).unwrap(),
            ToolMode::None
        );
        assert_eq!(
            tool_mode(Some(&tools), Some(&ToolChoice::Mode("required".into()))).unwrap(),
            ToolMode::Forced(tools.clone())
        );
        let named = ToolChoice::Named(NamedToolChoice {
            kind: "function".into(),
            function: NamedFunction { name: "b".into() },
        });
        assert_eq!(
            tool_mode(Some(&tools), Some(&named)).unwrap(),
            ToolMode::Forced(vec![tool("b")])
        );
    }

    #[test]
    fn bad_tool_requests_name_the_field() {
        let err = tool_mode(None, Some(&ToolChoice::Mode("required".into()))).unwrap_err();
        assert_eq!(err.param(), Some("tool_choice"));
        let err = tool_mode(Some(&[tool("bad name")]), None).unwrap_err();
        assert_eq!(err.param(), Some("tools[0].function.name"));
        let named = ToolChoice::Named(NamedToolChoice {
            kind: "function".into(),
            function: NamedFunction { name: "zzz".into() },
        });
        assert_eq!(
            tool_mode(Some(&[tool("a")]), Some(&named))
                .unwrap_err()
                .param(),
            Some("tool_choice")
        );
    }

    #[test]
    fn call_schema_pins_the_name_and_the_arguments() {
        let schema = call_schema(&[tool("a")]);
        assert_eq!(schema["properties"]["name"]["const"], "a");
        assert_eq!(schema["properties"]["arguments"]["required"], json!(["id"]));
        assert_eq!(
            call_schema(&[tool("a"), tool("b")])["anyOf"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn tool_calls_are_read_back_only_for_known_tools() {
        let tools = [tool("a")];
        let call =
            &parse_tool_calls(r#" {"name":"a","arguments":{"id":"7"}} "#, &tools).unwrap()[0];
        assert_eq!(call.function.name, "a");
        assert_eq!(call.function.arguments, r#"{"id":"7"}"#);
        assert!(call.id.starts_with("call_"));
        assert!(parse_tool_calls(
            r#"<tool_call>{"name":"a","arguments":{"id":"8"}}</tool_call>"#,
            &tools
        )
        .is_some());
        // Arguments that break the tool's schema make no call.
        assert!(parse_tool_calls(r#"{"name":"a","arguments":{}}"#, &tools).is_none());
        assert!(parse_tool_calls(r#"{"name":"zzz","arguments":{}}"#, &tools).is_none());
        assert!(parse_tool_calls("hello", &tools).is_none());
    }

    fn weather() -> Tool {
        Tool {
            kind: "function".into(),
            function: FunctionDefinition {
                name: "get_weather".into(),
                description: None,
                parameters: Some(json!({"type": "object",
                    "properties": {"city": {"type": "string"}}, "required": ["city"]})),
                strict: None,
            },
        }
    }

    /// What real models wrote in `auto` mode, and what a client must get back.
    const RECORDED: &[(&str, &str, Option<&[&str]>)] = &[
        // Qwen2.5-Coder-0.5B-Instruct Q4_K_M, "What is the weather in Paris and in Rome?".
        (
            "qwen2.5-coder-0.5b",
            "```json\n{\n  \"name\": \"get_weather\",\n  \"arguments\": {\n    \"city\": \"Paris\"\n  }\n}\n```",
            Some(&[r#"{"city":"Paris"}"#]),
        ),
        // Qwen2.5-Coder-1.5B-Instruct Q4_K_M, the same question: the arguments break the
        // schema (a list for a string), so it is no call but text.
        (
            "qwen2.5-coder-1.5b",
            "```json\n{\n  \"name\": \"get_weather\",\n  \"arguments\": {\n    \"city\": [\"Paris\", \"Rome\"]\n  }\n}\n```",
            None,
        ),
        // The Hermes/Qwen template's own syntax, two calls in one answer.
        (
            "hermes, two calls",
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n</tool_call>",
            Some(&[r#"{"city":"Paris"}"#, r#"{"city":"Rome"}"#]),
        ),
        // A fence that holds code, not a call; text after a call.
        ("code", "```python\nprint('hi')\n```", None),
        (
            "call then text",
            "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}</tool_call> Let me check.",
            None,
        ),
    ];

    #[test]
    fn recorded_answers_give_their_calls_whole_and_in_pieces() {
        let tools = [weather()];
        for &(source, text, expected) in RECORDED {
            let calls = parse_tool_calls(text, &tools);
            let arguments: Option<Vec<String>> =
                calls.map(|c| c.into_iter().map(|c| c.function.arguments).collect());
            assert_eq!(
                arguments,
                expected.map(|e| e.iter().map(|s| s.to_string()).collect()),
                "{source}"
            );
            // Cut into 1–3 character pieces, as tokens come: an answer that is calls is held
            // back to its end (so it can be read whole); code and text are let through early.
            for size in 1..=3 {
                let chars: Vec<char> = text.chars().collect();
                let mut seen = String::new();
                let mut released_at = None;
                for (i, piece) in chars.chunks(size).enumerate() {
                    seen.extend(piece);
                    if released_at.is_none() && !may_be_tool_calls(&seen) {
                        released_at = Some(i);
                    }
                }
                if expected.is_some() {
                    assert_eq!(released_at, None, "{source}: a call let through as text");
                }
            }
        }
        assert!(may_be_tool_calls("``"));
        assert!(may_be_tool_calls("```js"));
        assert!(may_be_tool_calls("```json\n  {\"na"));
        assert!(!may_be_tool_calls("```python"));
        assert!(!may_be_tool_calls("```\nfn main"));
        assert!(!may_be_tool_calls("Sure, "));
    }
}
