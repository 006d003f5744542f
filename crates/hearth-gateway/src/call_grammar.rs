//! The grammar that holds a tool call the model chooses to make (`tool_choice: "auto"`) to
//! its tool's schema: the answer is free until it writes its family's call opener (the
//! trigger), and from there on every token must keep to the calls section in the family's
//! own syntax, with each call's arguments valid against its tool's parameters. An `auto`
//! call is then as valid as a forced one.

use serde_json::json;

use hearth_types::Tool;

use crate::tool_syntax::ToolSyntax;

/// A lazy constraint for the calls: its triggers (regular expressions) and its Lark grammar
/// (llguidance's dialect), which starts with whatever a trigger matched.
#[derive(Debug, Clone, PartialEq)]
pub struct CallGrammar {
    pub triggers: Vec<String>,
    pub lark: String,
}

/// Control tokens a family writes its calls with: decoding keeps their text only when told
/// to (llama.cpp's `preserved_tokens`), and the readers need it.
pub fn markers(syntax: ToolSyntax) -> &'static [&'static str] {
    match syntax {
        ToolSyntax::Hermes | ToolSyntax::QwenXml => &["<tool_call>", "</tool_call>"],
        ToolSyntax::Glm => &[
            "<tool_call>",
            "</tool_call>",
            "<arg_key>",
            "</arg_key>",
            "<arg_value>",
            "</arg_value>",
        ],
        ToolSyntax::Mistral => &["[TOOL_CALLS]", "[ARGS]", "[CALL_ID]"],
        ToolSyntax::DeepSeek => &[
            "<｜tool▁calls▁begin｜>",
            "<｜tool▁calls▁end｜>",
            "<｜tool▁call▁begin｜>",
            "<｜tool▁call▁end｜>",
            "<｜tool▁sep｜>",
        ],
        ToolSyntax::Kimi => &[
            "<|tool_calls_section_begin|>",
            "<|tool_calls_section_end|>",
            "<|tool_call_begin|>",
            "<|tool_call_argument_begin|>",
            "<|tool_call_end|>",
        ],
        ToolSyntax::MiniMax => &["<minimax:tool_call>", "</minimax:tool_call>"],
        ToolSyntax::Harmony => &[
            "<|channel|>",
            "<|message|>",
            "<|constrain|>",
            "<|start|>",
            "<|call|>",
        ],
        ToolSyntax::Json => &["<|python_tag|>"],
        ToolSyntax::CommandR => &["<|START_ACTION|>", "<|END_ACTION|>"],
        // Plain text in these families' vocabularies.
        ToolSyntax::Dsml | ToolSyntax::Functionary => &[],
    }
}

fn quote(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialize")
}

/// Whitespace the calls may have between their parts: as models write JSON, compact,
/// spaced or indented, but never so much that a small model could pad a call forever.
const SPACE: &str = "[ \\t\\n]{0,16}";

/// A tool's arguments as an inline JSON grammar: its parameter schema, with whitespace
/// between its parts bounded as [`SPACE`] is.
fn arguments(tool: &Tool) -> String {
    let mut schema = tool
        .function
        .parameters
        .clone()
        .unwrap_or_else(|| json!({"type": "object"}));
    if let Some(obj) = schema.as_object_mut() {
        obj.insert(
            "x-guidance".into(),
            json!({"whitespace_pattern": "[ \\t\\n]{1,16}"}),
        );
    }
    format!("%json {schema}")
}

/// `{"name": "<tool>", "arguments": {..}}` (or `"parameters"`, as Llama 3.x writes it), one
/// alternative per tool; `extra`: what may follow the arguments inside the object (Mistral
/// Nemo's id).
fn json_object_rule(tools: &[Tool], extra: &str) -> String {
    let alternatives: Vec<String> = tools
        .iter()
        .map(|t| {
            format!(
                "OPEN {} KS {} IS ARGKEY KS {} {extra} CLOSE",
                quote("\"name\""),
                quote(&quote(&t.function.name)),
                arguments(t)
            )
        })
        .collect();
    format!("object: {}\n", alternatives.join(" | "))
}

/// The terminals the rules share: `{` and `}`, `:` and `,` with the whitespace around them,
/// whitespace between calls, the key of the arguments.
fn terminals() -> String {
    format!(
        "OPEN: /\\{{{SPACE}/\nCLOSE: /{SPACE}\\}}/\nKS: /{SPACE}:{SPACE}/\nIS: /{SPACE},{SPACE}/\n\
         NL: /[ \\t\\n]{{1,4}}/\nSP: /[ \\t\\n]{{1,16}}/\nARGKEY: /\"(arguments|parameters)\"/\n"
    )
}

/// `item (sep item)*` when several calls are allowed, else `item`.
fn repeated(item: &str, sep: &str, parallel: bool) -> String {
    if parallel {
        format!("{item} ({sep} {item})*")
    } else {
        item.to_owned()
    }
}

/// The calls written as JSON objects, bare or in ```json fences (the form hearth's own
/// instructions ask for, and the one small Qwen models fall back to whatever their
/// template says): the rules `fenced` and `bare`. Their triggers are an object naming one
/// of the tools, so an answer that only shows some JSON stays free.
fn json_rules(tools: &[Tool], parallel: bool) -> (Vec<String>, String) {
    let names: Vec<String> = tools
        .iter()
        .map(|t| regex::escape(&quote(&t.function.name)))
        .collect();
    let triggers = vec![format!(
        r#"(```(json)?\s*)?\{{\s*"name"\s*:\s*({})"#,
        names.join("|")
    )];
    let rules = format!(
        "fenced: {}\nfence: FENCE object /[ \\t\\n]{{0,4}}```/\nFENCE: /```(json)?[ \\t\\n]{{0,4}}/\nbare: {}\n{}",
        repeated("fence", "NL", parallel),
        repeated("object", "NL", parallel),
        json_object_rule(tools, ""),
    );
    (triggers, rules)
}

/// A bare-text argument value that ends at `close` (its closing tag): the rule to add and
/// the expression for the value with its closing tag. A closing tag written as text ends
/// the value at its first occurrence (a lazy lexeme that includes it); one that is a control
/// token cannot occur in text, so the value is any text before it.
fn text_value(close: &str, marker: &dyn Fn(&str) -> String) -> (String, String) {
    let tag = marker(close);
    if tag.starts_with("<[") {
        ("TEXT: /(.|\\n)+/\n".to_owned(), format!("TEXT? {tag}"))
    } else {
        let escaped = regex::escape(close).replace('/', "\\/");
        (
            format!("text[lazy]: /(.|\\n)*{escaped}/\n"),
            "text".to_owned(),
        )
    }
}

/// One tool's arguments as XML-style elements, in the order of its schema's properties,
/// the required ones always, the others when the model writes them: `open(key, as_text)`
/// starts an element (`as_text`: its value is written as bare text, a string's), `text` is a string's value up to and with the closing tag (see [`text_value`]),
/// `close` the closing tag after any other value, which is JSON held to its schema.
fn xml_parameters(
    tool: &Tool,
    open: &dyn Fn(&str, bool) -> String,
    text: &str,
    close: &str,
) -> String {
    let schema = tool.function.parameters.as_ref();
    let required: Vec<&str> = schema
        .and_then(|s| s.get("required"))
        .and_then(|r| r.as_array())
        .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let Some(properties) = schema
        .and_then(|s| s.get("properties"))
        .and_then(|p| p.as_object())
    else {
        return String::new();
    };
    properties
        .iter()
        .map(|(key, property)| {
            let as_text = property.get("type").is_some_and(|t| t == "string");
            let value = match property.get("type") {
                Some(t) if t == "string" => match property.get("enum").and_then(|e| e.as_array()) {
                    Some(choices) if choices.iter().all(|c| c.is_string()) => {
                        let choices: Vec<String> = choices
                            .iter()
                            .filter_map(|c| c.as_str())
                            .map(quote)
                            .collect();
                        format!("SP? ({}) SP? {close}", choices.join(" | "))
                    }
                    _ => text.to_owned(),
                },
                _ => {
                    let mut schema = property.clone();
                    if let Some(obj) = schema.as_object_mut() {
                        obj.insert(
                            "x-guidance".into(),
                            json!({"whitespace_pattern": "[ \\t\\n]{1,16}"}),
                        );
                    }
                    format!("SP? %json {schema} SP? {close}")
                }
            };
            let element = format!("({} {value} SP?)", open(key, as_text));
            if required.contains(&key.as_str()) {
                element
            } else {
                format!("{element}?")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// XML-style calls, one alternative per tool: `head(tool)` opens the call, then its
/// arguments (`open(key, as_text)` starts one, the tag `close` ends it), then `tail`. Returns the
/// alternatives and the rule their bare-text values need.
fn xml_calls(
    tools: &[Tool],
    head: &dyn Fn(&Tool) -> String,
    open: &dyn Fn(&str, bool) -> String,
    close: &str,
    tail: &str,
    marker: &dyn Fn(&str) -> String,
) -> (String, String) {
    let (rule, value) = text_value(close, marker);
    let close = marker(close);
    let calls: Vec<String> = tools
        .iter()
        .map(|t| {
            format!(
                "{} SP? {} {tail}",
                head(t),
                xml_parameters(t, open, &value, &close)
            )
        })
        .collect();
    (calls.join(" | "), rule)
}

/// The grammar of the calls section `syntax` writes, for `tools`; `template`: the chat
/// template's text (a family's variants differ in it); `control`: the id of a control
/// token, by its text. `None` when there are no tools.
pub fn call_grammar(
    syntax: ToolSyntax,
    template: &str,
    tools: &[Tool],
    parallel: bool,
    control: &dyn Fn(&str) -> Option<u32>,
) -> Option<CallGrammar> {
    if tools.is_empty() {
        return None;
    }
    // A marker as a grammar literal: a control token as `<[id]>` (the token itself, which
    // is what the model writes), anything else as a quoted string.
    let marker = |text: &str| match control(text) {
        Some(id) => format!("<[{id}]>"),
        None => quote(text),
    };
    let names = |f: &dyn Fn(&Tool) -> String| -> String {
        tools.iter().map(f).collect::<Vec<_>>().join(" | ")
    };
    let (trigger, body) = match syntax {
        ToolSyntax::Json => {
            let (triggers, rules) = json_rules(tools, parallel);
            let lark = format!("start: fenced | bare\n{rules}{}", terminals());
            return Some(CallGrammar { triggers, lark });
        }
        ToolSyntax::Hermes => {
            let open = marker("<tool_call>");
            let close = marker("</tool_call>");
            let (json_triggers, rules) = json_rules(tools, parallel);
            let lark = format!(
                "start: tagged | fenced | bare\ntagged: {}\ncall: {open} \"\\n\"? object \"\\n\"? {close}\n{rules}",
                repeated("call", "NL", parallel),
            );
            let mut triggers = vec![regex::escape("<tool_call>")];
            triggers.extend(json_triggers);
            return Some(CallGrammar {
                triggers,
                lark: format!("{lark}{}", terminals()),
            });
        }
        ToolSyntax::Mistral if template.contains("[ARGS]") => {
            let id = if template.contains("[CALL_ID]") {
                format!("({} /[A-Za-z0-9]{{9}}/)?", marker("[CALL_ID]"))
            } else {
                String::new()
            };
            let call = names(&|t| {
                format!(
                    "{} {} {id} {} {}",
                    marker("[TOOL_CALLS]"),
                    quote(&t.function.name),
                    marker("[ARGS]"),
                    arguments(t)
                )
            });
            (
                "[TOOL_CALLS]",
                format!("start: {}\ncall: {call}\n", repeated("call", "", parallel)),
            )
        }
        ToolSyntax::Mistral => (
            // Nemo: one JSON array of calls, each with a nine-character id.
            "[TOOL_CALLS]",
            format!(
                "start: {} \"[\" {} \"]\"\n{}ID: /\"[A-Za-z0-9]{{9}}\"/\n",
                marker("[TOOL_CALLS]"),
                repeated("object", "IS", parallel),
                json_object_rule(tools, &format!("(IS {} KS ID)?", quote("\"id\""))),
            ),
        ),
        ToolSyntax::DeepSeek => {
            let sep = marker("<｜tool▁sep｜>");
            let call = if template.contains("```json") {
                // R1: `function<｜tool▁sep｜>name`, then a fenced JSON block.
                names(&|t| {
                    format!(
                        "\"function\" {sep} {} \"\\n```json\\n\" {} \"\\n```\"",
                        quote(&t.function.name),
                        arguments(t)
                    )
                })
            } else {
                names(&|t| format!("{} {sep} {}", quote(&t.function.name), arguments(t)))
            };
            (
                "<｜tool▁calls▁begin｜>",
                format!(
                    "start: {} {} {}\ncall: {} named {}\nnamed: {call}\n",
                    marker("<｜tool▁calls▁begin｜>"),
                    repeated("call", "\"\\n\"?", parallel),
                    marker("<｜tool▁calls▁end｜>"),
                    marker("<｜tool▁call▁begin｜>"),
                    marker("<｜tool▁call▁end｜>"),
                ),
            )
        }
        ToolSyntax::Kimi => {
            let call = names(&|t| {
                format!(
                    "{} /[0-9]{{1,3}}/ {} {}",
                    quote(&format!("functions.{}:", t.function.name)),
                    marker("<|tool_call_argument_begin|>"),
                    arguments(t)
                )
            });
            (
                "<|tool_calls_section_begin|>",
                format!(
                    "start: {} {} {}\ncall: {} named {}\nnamed: {call}\n",
                    marker("<|tool_calls_section_begin|>"),
                    repeated("call", "", parallel),
                    marker("<|tool_calls_section_end|>"),
                    marker("<|tool_call_begin|>"),
                    marker("<|tool_call_end|>"),
                ),
            )
        }
        ToolSyntax::QwenXml => {
            // `<function=name>`, then `<parameter=key>\nvalue\n</parameter>` per argument.
            let (named, rule) = xml_calls(
                tools,
                &|t| quote(&format!("<function={}>", t.function.name)),
                &|key, _| quote(&format!("<parameter={key}>")),
                "</parameter>",
                &quote("</function>"),
                &marker,
            );
            (
                "<tool_call>",
                format!(
                    "start: {}\ncall: {} SP? named SP? {}\nnamed: {named}\n{rule}",
                    repeated("call", "SP?", parallel),
                    marker("<tool_call>"),
                    marker("</tool_call>"),
                ),
            )
        }
        ToolSyntax::Glm => {
            // `<tool_call>name`, then `<arg_key>key</arg_key><arg_value>value</arg_value>`.
            let (named, rule) = xml_calls(
                tools,
                &|t| quote(&t.function.name),
                &|key, _| {
                    format!(
                        "{} {} {} SP? {}",
                        marker("<arg_key>"),
                        quote(key),
                        marker("</arg_key>"),
                        marker("<arg_value>")
                    )
                },
                "</arg_value>",
                "",
                &marker,
            );
            (
                "<tool_call>",
                format!(
                    "start: {}\ncall: {} named {}\nnamed: {named}\n{rule}",
                    repeated("call", "SP?", parallel),
                    marker("<tool_call>"),
                    marker("</tool_call>"),
                ),
            )
        }
        ToolSyntax::MiniMax => {
            // `<invoke name="name">`, then `<parameter name="key">value</parameter>`.
            let (named, rule) = xml_calls(
                tools,
                &|t| quote(&format!("<invoke name=\"{}\">", t.function.name)),
                &|key, _| quote(&format!("<parameter name=\"{key}\">")),
                "</parameter>",
                &quote("</invoke>"),
                &marker,
            );
            (
                "<minimax:tool_call>",
                format!(
                    "start: {} SP? {} SP? {}\ncall: {named}\n{rule}",
                    marker("<minimax:tool_call>"),
                    repeated("call", "SP?", parallel),
                    marker("</minimax:tool_call>"),
                ),
            )
        }
        ToolSyntax::Dsml => {
            // `<｜DSML｜invoke name="name">`, then `<｜DSML｜parameter name="key"
            // string="true">value</｜DSML｜parameter>` per argument, `string="false"` for a
            // value written as JSON.
            let (named, rule) = xml_calls(
                tools,
                &|t| quote(&format!("<｜DSML｜invoke name=\"{}\">", t.function.name)),
                &|key, as_text| {
                    quote(&format!(
                        "<｜DSML｜parameter name=\"{key}\" string=\"{as_text}\">"
                    ))
                },
                "</｜DSML｜parameter>",
                &quote("</｜DSML｜invoke>"),
                &marker,
            );
            (
                "<｜DSML｜function_calls>",
                format!(
                    "start: {} SP? {} SP? {}\ncall: {named}\n{rule}",
                    quote("<｜DSML｜function_calls>"),
                    repeated("call", "SP?", parallel),
                    quote("</｜DSML｜function_calls>"),
                ),
            )
        }
        ToolSyntax::CommandR => {
            // A JSON list of `{"tool_call_id": "0", "tool_name": .., "parameters": {..}}`.
            let call = names(&|t| {
                format!(
                    "OPEN {} KS /\"[0-9]{{1,3}}\"/ IS {} KS {} IS {} KS {} CLOSE",
                    quote("\"tool_call_id\""),
                    quote("\"tool_name\""),
                    quote(&quote(&t.function.name)),
                    quote("\"parameters\""),
                    arguments(t)
                )
            });
            (
                "<|START_ACTION|>",
                format!(
                    "start: {} \"[\" SP? {} SP? \"]\" {}\ncall: {call}\n",
                    marker("<|START_ACTION|>"),
                    repeated("call", "IS", parallel),
                    marker("<|END_ACTION|>"),
                ),
            )
        }
        ToolSyntax::Functionary => {
            // The answer's first message may be a call (its recipient's line opens it: the
            // prompt wrote its `>>>`); each next one follows a `>>>`.
            let call = names(&|t| {
                format!(
                    "{} {}",
                    quote(&format!("{}\n", t.function.name)),
                    arguments(t)
                )
            });
            let named: Vec<String> = tools
                .iter()
                .map(|t| regex::escape(&t.function.name))
                .collect();
            let named = named.join("|");
            let lark = format!(
                "start: \">>>\"? {}\ncall: {call}\n{}",
                repeated("call", "\">>>\"", parallel),
                terminals()
            );
            return Some(CallGrammar {
                triggers: vec![format!("\\A({named})\n"), format!(">>>({named})\n")],
                lark,
            });
        }
        ToolSyntax::Harmony => {
            // `to=functions.name` (in the header, before or after the channel), then
            // `<|constrain|>json`, `<|message|>` and the arguments, each part but the last
            // two optional; `<|call|>` (an end-of-generation token) ends the one call a turn
            // holds.
            let call = names(&|t| {
                format!(
                    "{} (SP? {} \"commentary\")? (SP? {})? (SP? \"json\")? SP? {} {} {}?",
                    quote(&t.function.name),
                    marker("<|channel|>"),
                    marker("<|constrain|>"),
                    marker("<|message|>"),
                    arguments(t),
                    marker("<|call|>"),
                )
            });
            (
                "to=functions.",
                format!("start: \"to=functions.\" named\nnamed: {call}\n"),
            )
        }
    };
    Some(CallGrammar {
        triggers: vec![regex::escape(trigger)],
        lark: format!("{body}{}", terminals()),
    })
}
