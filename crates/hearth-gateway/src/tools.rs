//! OpenAI tools on local models: which tools the model sees, the JSON Schema that forces a
//! valid call, and reading a call back out of the generated text.

use hearth_types::{FunctionCall, Tool, ToolCall, ToolChoice};
use serde_json::{json, Value};

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

/// Reads a tool call out of generated text, if the text is one (a JSON object naming one of
/// `tools`, optionally wrapped in `<tool_call>` tags as some templates ask).
pub fn parse_tool_call(text: &str, tools: &[Tool]) -> Option<ToolCall> {
    let trimmed = text.trim();
    let trimmed = trimmed
        .strip_prefix("<tool_call>")
        .map(|t| t.trim_end().trim_end_matches("</tool_call>").trim())
        .unwrap_or(trimmed);
    let value: Value = serde_json::from_str(trimmed).ok()?;
    let name = value.get("name")?.as_str()?;
    if !tools.iter().any(|t| t.function.name == name) {
        return None;
    }
    let arguments = value
        .get("arguments")
        .or_else(|| value.get("parameters"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    if !arguments.is_object() {
        return None;
    }
    Some(ToolCall {
        id: format!("call_{}", uuid::Uuid::new_v4().simple()),
        kind: "function".into(),
        function: FunctionCall {
            name: name.to_owned(),
            arguments: arguments.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_types::{FunctionDefinition, NamedFunction, NamedToolChoice};

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
        let call = parse_tool_call(r#" {"name":"a","arguments":{"id":"7"}} "#, &tools).unwrap();
        assert_eq!(call.function.name, "a");
        assert_eq!(call.function.arguments, r#"{"id":"7"}"#);
        assert!(call.id.starts_with("call_"));
        assert!(parse_tool_call(
            r#"<tool_call>{"name":"a","arguments":{}}</tool_call>"#,
            &tools
        )
        .is_some());
        assert!(parse_tool_call(r#"{"name":"zzz","arguments":{}}"#, &tools).is_none());
        assert!(parse_tool_call("hello", &tools).is_none());
    }
}
