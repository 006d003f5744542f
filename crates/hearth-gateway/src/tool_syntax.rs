//! Each model family's own tool-call syntax: which one a model writes (read from its chat
//! template, which renders earlier calls the way the model was trained to write them), and
//! reading the calls back out of an answer, whole or as it streams.

use serde_json::{Map, Value};

/// How a model writes its tool calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ToolSyntax {
    /// `<tool_call>{"name": .., "arguments": {..}}</tool_call>`, repeated (Hermes, Qwen2.5,
    /// Qwen3, QwQ).
    Hermes,
    /// `<tool_call><function=name><parameter=key>value</parameter></function></tool_call>`
    /// (Qwen3-Coder, Qwen3.5).
    QwenXml,
    /// `[TOOL_CALLS]name[ARGS]{..}` (with `[CALL_ID]id` before `[ARGS]` on some), or
    /// `[TOOL_CALLS][{"name": .., "arguments": {..}}, ..]` (Mistral Nemo).
    Mistral,
    /// `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>…<｜tool▁call▁end｜>…<｜tool▁calls▁end｜>`, each
    /// call `function<｜tool▁sep｜>name` and a fenced JSON block (R1) or `name<｜tool▁sep｜>{..}`
    /// (V3.1).
    DeepSeek,
    /// `<|tool_calls_section_begin|><|tool_call_begin|>functions.name:0
    /// <|tool_call_argument_begin|>{..}<|tool_call_end|>…<|tool_calls_section_end|>` (Kimi K2).
    Kimi,
    /// `<tool_call>name<arg_key>key</arg_key><arg_value>value</arg_value></tool_call>` (GLM-4.5
    /// and later).
    Glm,
    /// `<minimax:tool_call><invoke name="..."><parameter name="key">value</parameter></invoke>
    /// </minimax:tool_call>` (MiniMax-M2).
    MiniMax,
    /// gpt-oss's harmony messages: `to=functions.name … <|message|>{..}<|call|>`.
    Harmony,
    /// `<｜DSML｜function_calls><｜DSML｜invoke name="..."><｜DSML｜parameter name="key"
    /// string="true|false">value</｜DSML｜parameter></｜DSML｜invoke></｜DSML｜function_calls>`
    /// (DeepSeek V3.2): a value is text where `string="true"`, else JSON.
    Dsml,
    /// `<|START_ACTION|>[{"tool_call_id": "0", "tool_name": .., "parameters": {..}}, ..]
    /// <|END_ACTION|>`, and text between `<|START_RESPONSE|>` and `<|END_RESPONSE|>`
    /// (Command R7B).
    CommandR,
    /// Messages each opened by `>>>` and their recipient on the first line: `all` then text,
    /// or a function's name then its JSON arguments (Functionary v3.2). The prompt writes the
    /// first `>>>`, so an answer starts with its first recipient.
    Functionary,
    /// A JSON object per call, the whole answer (Llama 3.x, optionally after
    /// `<|python_tag|>`; and hearth's own instructions for templates without tools).
    #[default]
    Json,
}

impl ToolSyntax {
    /// The syntax a model with this chat template writes its calls in: the template's own
    /// when it renders an assistant's calls, else the JSON hearth's instructions ask for.
    pub fn of(template: &hearth_infer::llm::ChatTemplate) -> ToolSyntax {
        if template.capabilities().tool_calls {
            Self::detect(template.source())
        } else {
            ToolSyntax::Json
        }
    }

    /// The syntax the template text `template` renders an assistant's tool calls in.
    pub fn detect(template: &str) -> ToolSyntax {
        let has = |s: &str| template.contains(s);
        if has("<|tool_calls_section_begin|>") {
            ToolSyntax::Kimi
        } else if has("｜DSML｜") {
            ToolSyntax::Dsml
        } else if has("tool▁calls▁begin") {
            ToolSyntax::DeepSeek
        } else if has("[TOOL_CALLS]") {
            ToolSyntax::Mistral
        } else if has("<minimax:tool_call>") {
            ToolSyntax::MiniMax
        } else if has("<arg_key>") {
            ToolSyntax::Glm
        } else if has("<|channel|>") && has("<|call|>") {
            ToolSyntax::Harmony
        } else if has("<|START_ACTION|>") {
            ToolSyntax::CommandR
        } else if has(">>>all") {
            ToolSyntax::Functionary
        } else if has("<function=") && has("<parameter=") {
            ToolSyntax::QwenXml
        } else if has("<tool_call>") {
            ToolSyntax::Hermes
        } else {
            ToolSyntax::Json
        }
    }

    /// The text that opens the calls (`None`: the whole answer is a call or it is text).
    fn opener(self) -> Option<&'static str> {
        match self {
            ToolSyntax::Hermes | ToolSyntax::QwenXml | ToolSyntax::Glm => Some("<tool_call>"),
            ToolSyntax::Mistral => Some("[TOOL_CALLS]"),
            ToolSyntax::DeepSeek => Some("<｜tool▁calls▁begin｜>"),
            ToolSyntax::Kimi => Some("<|tool_calls_section_begin|>"),
            ToolSyntax::MiniMax => Some("<minimax:tool_call>"),
            ToolSyntax::Harmony => Some("to=functions."),
            ToolSyntax::Dsml => Some(DSML_OPEN),
            ToolSyntax::CommandR => Some("<|START_ACTION|>"),
            ToolSyntax::Functionary => Some(">>>"),
            ToolSyntax::Json => None,
        }
    }
}

const DSML_OPEN: &str = "<｜DSML｜function_calls>";

/// Command R7B's text markers, which are not part of the answer's text.
const COMMAND_R_TEXT: [&str; 2] = ["<|START_RESPONSE|>", "<|END_RESPONSE|>"];

/// A new id for a call the model made: nine letters and digits for Mistral's families, whose
/// templates refuse any other id when the call comes back in the next turn; `call_…` else.
pub fn new_call_id(syntax: ToolSyntax) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    match syntax {
        ToolSyntax::Mistral => random[..9].to_owned(),
        _ => format!("call_{random}"),
    }
}

/// A call as written: the tool's name and its arguments (checked against the tool later).
#[derive(Debug, Clone, PartialEq)]
pub struct RawCall {
    pub name: String,
    pub arguments: Value,
}

/// An answer split into its text and its calls, as the model wrote them.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// The text before the calls (trimmed), empty when the answer is only calls.
    pub content: String,
    pub calls: Vec<RawCall>,
}

/// Reads the calls out of a whole answer written in `syntax`. `None`: no calls in it, or
/// calls that do not parse (the answer is then text). `schema_of` gives a tool's parameter
/// schema, for the syntaxes that write values as bare text (a `"2.5"` becomes 2.5 where the
/// schema asks for a number).
pub fn split(
    syntax: ToolSyntax,
    text: &str,
    schema_of: &dyn Fn(&str) -> Option<Value>,
) -> Option<Split> {
    let Some(opener) = syntax.opener() else {
        return json_calls(text).map(|calls| Split {
            content: String::new(),
            calls,
        });
    };
    if syntax == ToolSyntax::Functionary {
        let (content, calls) = functionary_messages(text)?;
        return (!calls.is_empty()).then_some(Split { content, calls });
    }
    let at = text.find(opener)?;
    let (content, section) = (&text[..at], &text[at..]);
    let calls = match syntax {
        ToolSyntax::Hermes => blocks(section, "<tool_call>", "</tool_call>")?
            .into_iter()
            .map(json_call)
            .collect::<Option<Vec<_>>>()?,
        ToolSyntax::QwenXml => blocks(section, "<tool_call>", "</tool_call>")?
            .into_iter()
            .map(|b| qwen_xml_call(b, schema_of))
            .collect::<Option<Vec<_>>>()?,
        ToolSyntax::Glm => blocks(section, "<tool_call>", "</tool_call>")?
            .into_iter()
            .map(|b| glm_call(b, schema_of))
            .collect::<Option<Vec<_>>>()?,
        ToolSyntax::Mistral => mistral_calls(section)?,
        ToolSyntax::DeepSeek => {
            let inner = between(section, "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>")?;
            blocks(inner.trim(), "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>")?
                .into_iter()
                .map(deepseek_call)
                .collect::<Option<Vec<_>>>()?
        }
        ToolSyntax::Kimi => {
            let inner = between(
                section,
                "<|tool_calls_section_begin|>",
                "<|tool_calls_section_end|>",
            )?;
            blocks(inner.trim(), "<|tool_call_begin|>", "<|tool_call_end|>")?
                .into_iter()
                .map(kimi_call)
                .collect::<Option<Vec<_>>>()?
        }
        ToolSyntax::MiniMax => {
            let inner = between(section, "<minimax:tool_call>", "</minimax:tool_call>")?;
            blocks(inner.trim(), "<invoke name=", "</invoke>")?
                .into_iter()
                .map(|b| minimax_call(b, schema_of))
                .collect::<Option<Vec<_>>>()?
        }
        ToolSyntax::Harmony => vec![harmony_call(section)?],
        ToolSyntax::Dsml => {
            let inner = between(section, DSML_OPEN, "</｜DSML｜function_calls>")?;
            blocks(inner.trim(), "<｜DSML｜invoke name=", "</｜DSML｜invoke>")?
                .into_iter()
                .map(dsml_call)
                .collect::<Option<Vec<_>>>()?
        }
        ToolSyntax::CommandR => command_r_calls(section)?,
        ToolSyntax::Json | ToolSyntax::Functionary => unreachable!("read above"),
    };
    // Harmony's header before `to=` is the channel, not text for the user.
    let content = match syntax {
        ToolSyntax::Harmony => String::new(),
        _ => answer_text(syntax, content).trim().to_owned(),
    };
    (!calls.is_empty()).then_some(Split { content, calls })
}

/// How many bytes at the end of `text` could be the start of `opener`.
pub(crate) fn held_tail(text: &str, opener: &str) -> usize {
    (1..opener.len().min(text.len() + 1))
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n) && opener.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}

/// Where a JSON call (fenced or bare) starts after a line of text: `{"name":` at a line's
/// start, or the ```` ``` ```` fence before it.
fn json_call_start(text: &str) -> Option<usize> {
    static START: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let start = START.get_or_init(|| {
        regex::Regex::new(r#"(?m)^[ \t]*(```(json)?\s*)?\{\s*"name"\s*:"#).expect("a valid regex")
    });
    start.find(text).map(|m| m.start())
}

/// How many bytes at the end of `text` may still become the start of a JSON call: from the
/// last line's start when that line so far is whitespace then part of a fence or `{"name":`.
fn json_call_tail(text: &str) -> usize {
    let mut line = text.rfind('\n').map_or(0, |i| i + 1);
    // A fence line just before: the call may be starting inside it.
    if line > 0 {
        let before = text[..line - 1].rfind('\n').map_or(0, |i| i + 1);
        if matches!(text[before..line - 1].trim(), "```" | "```json") {
            line = before;
        }
    }
    let tail = text[line..].trim_start();
    let could_start = |tail: &str| {
        if "```json".starts_with(tail) {
            return true; // a fence being written
        }
        let body = tail
            .strip_prefix("```")
            .map_or(tail, |rest| rest.strip_prefix("json").unwrap_or(rest))
            .trim_start();
        let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        "{\"name\":".starts_with(compact.as_str())
    };
    if tail.len() < 64 && could_start(tail) && line < text.len() {
        text.len() - line
    } else {
        0
    }
}

/// Streams an answer in `syntax`: text before the calls goes out as it comes (less a tail
/// that may be the start of the opener); from the opener on, the rest is held and read whole
/// at the end.
#[derive(Debug)]
pub struct CallStream {
    syntax: ToolSyntax,
    held: String,
    /// The opener was seen: the rest is held.
    holding_all: bool,
    /// The answer's start was handed on (it cannot be a bare JSON call any more).
    started: bool,
    /// What is held are JSON calls after text.
    json_held: bool,
}

impl CallStream {
    pub fn new(syntax: ToolSyntax) -> Self {
        CallStream {
            syntax,
            held: String::new(),
            holding_all: false,
            started: false,
            json_held: false,
        }
    }

    /// Takes the next piece; returns the text that can be handed on now.
    pub fn push(&mut self, piece: &str) -> String {
        self.held.push_str(piece);
        if self.holding_all {
            return String::new();
        }
        // Functionary: the first message's recipient, on the answer's first line. Text to
        // `all` streams; a function's name holds the rest (its call, and any after it).
        if self.syntax == ToolSyntax::Functionary && !self.started {
            match self.held.find('\n') {
                Some(end) if self.held[..end].trim() == "all" => {
                    self.held.drain(..=end);
                }
                Some(_) => {
                    self.started = true;
                    self.holding_all = true;
                    return String::new();
                }
                // Longer than any recipient: the answer is not in messages, it is text.
                None if self.held.len() > 64 => {}
                None => return String::new(),
            }
            self.started = true;
        }
        // An answer that starts like a bare JSON call (or a fenced one, as Qwen2.5-Coder
        // writes them whatever its template says) is held until it is known.
        if !self.started {
            if crate::tools::may_be_tool_calls(&self.held) {
                return String::new();
            }
            self.started = true;
        }
        // Text, then JSON calls (the shape the call grammar holds from its trigger on): from
        // the call's start on, the rest is held, and read as JSON calls at the end.
        if self.writes_json_calls() {
            if let Some(at) = json_call_start(&self.held) {
                self.holding_all = true;
                self.json_held = true;
                return self.held.drain(..at).collect();
            }
        }
        let Some(opener) = self.syntax.opener() else {
            // What may still begin a JSON call is held until it is known.
            let keep = json_call_tail(&self.held);
            let out = self.held[..self.held.len() - keep].to_owned();
            self.held.drain(..self.held.len() - keep);
            return out;
        };
        if self.writes_json_calls() {
            let keep = json_call_tail(&self.held).max(held_tail(&self.held, opener));
            if self.held.find(opener).is_none() {
                let out = self.held[..self.held.len() - keep].to_owned();
                self.held.drain(..self.held.len() - keep);
                return out;
            }
        }
        if let Some(at) = self.held.find(opener) {
            self.holding_all = true;
            let text = self.held[..at].to_owned();
            self.held.drain(..at);
            return strip_markers(self.text_markers(), text);
        }
        let keep = self
            .text_markers()
            .iter()
            .fold(held_tail(&self.held, opener), |keep, m| {
                keep.max(held_tail(&self.held, m))
            });
        let out = self.held[..self.held.len() - keep].to_owned();
        self.held.drain(..self.held.len() - keep);
        strip_markers(self.text_markers(), out)
    }

    fn text_markers(&self) -> &'static [&'static str] {
        text_markers(self.syntax)
    }

    /// Whether this syntax's models also write calls as JSON objects after some text: the
    /// JSON syntax, and Hermes's models (Qwen2.5-Coder), whose call grammar allows it too.
    fn writes_json_calls(&self) -> bool {
        matches!(self.syntax, ToolSyntax::Json | ToolSyntax::Hermes)
    }

    /// The text held so far (what goes out as text if the calls in it are not valid).
    pub fn held_text(&self) -> String {
        self.held.clone()
    }

    /// What is held at the end: `(text, calls)`; calls that do not parse come back as text.
    pub fn finish(&mut self, schema_of: &dyn Fn(&str) -> Option<Value>) -> (String, Vec<RawCall>) {
        let held = std::mem::take(&mut self.held);
        if let Some(found) = split(self.syntax, &held, schema_of) {
            return (found.content, found.calls);
        }
        if std::mem::take(&mut self.json_held) {
            if let Some(calls) = json_calls(&held) {
                return (String::new(), calls);
            }
        }
        match (self.started, json_calls(&held)) {
            (false, Some(calls)) => (String::new(), calls),
            _ => (answer_text(self.syntax, &held), Vec::new()),
        }
    }
}

/// The text between `open` and the next `close` (or the end, when the answer stopped at
/// the close: an end-of-generation token often is that close).
fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let rest = &text[text.find(open)? + open.len()..];
    Some(rest.find(close).map_or(rest, |end| &rest[..end]))
}

/// Each `open … close` block of `text`, which must hold nothing else but whitespace; the
/// last block may lack its close (the answer stopped there).
fn blocks<'a>(text: &'a str, open: &str, close: &str) -> Option<Vec<&'a str>> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let body = rest.strip_prefix(open)?;
        match body.find(close) {
            Some(end) => {
                out.push(&body[..end]);
                rest = body[end + close.len()..].trim_start();
            }
            None => {
                out.push(body);
                rest = "";
            }
        }
    }
    Some(out)
}

fn object(value: Value) -> Option<Value> {
    value.is_object().then_some(value)
}

/// `{"name": .., "arguments": {..}}` (or `parameters`, as Llama 3.x writes it).
pub(crate) fn json_call(text: &str) -> Option<RawCall> {
    let value: Value = serde_json::from_str(text.trim()).ok()?;
    let name = value.get("name")?.as_str()?.to_owned();
    let arguments = value
        .get("arguments")
        .or_else(|| value.get("parameters"))
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    // Some models write the arguments as a JSON string.
    let arguments = match arguments {
        Value::String(s) => serde_json::from_str(&s).ok()?,
        other => other,
    };
    Some(RawCall {
        name,
        arguments: object(arguments)?,
    })
}

/// A whole answer of JSON calls: one object, objects one per line, or fenced blocks.
fn json_calls(text: &str) -> Option<Vec<RawCall>> {
    let text = text.trim();
    let text = text.strip_prefix("<|python_tag|>").unwrap_or(text).trim();
    if let Some(one) = json_call(text) {
        return Some(vec![one]);
    }
    if text.starts_with("```") {
        let mut calls = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let inner = rest.strip_prefix("```")?;
            let inner = inner.strip_prefix("json").unwrap_or(inner);
            let (body, after) = inner.split_once("```")?;
            calls.push(json_call(body)?);
            rest = after.trim_start();
        }
        return Some(calls);
    }
    let calls = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| json_call(l.trim_end_matches(';')))
        .collect::<Option<Vec<_>>>()?;
    (!calls.is_empty()).then_some(calls)
}

/// A value written as bare text, read as the tool's schema types it: text for a string
/// property, else JSON when it parses (numbers, booleans, objects), else text.
fn typed_value(raw: &str, property: Option<&Value>) -> Value {
    let wants_string = property.and_then(|p| p.get("type")).is_some_and(|t| {
        t == "string" || t.as_array().is_some_and(|a| a == &[Value::from("string")])
    });
    if wants_string {
        return Value::String(raw.to_owned());
    }
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

fn property<'a>(schema: &'a Option<Value>, key: &str) -> Option<&'a Value> {
    schema.as_ref()?.get("properties")?.get(key)
}

fn qwen_xml_call(block: &str, schema_of: &dyn Fn(&str) -> Option<Value>) -> Option<RawCall> {
    let body = block.trim().strip_prefix("<function=")?;
    let (name, rest) = body.split_once('>')?;
    let rest = rest.trim();
    let rest = rest.strip_suffix("</function>").unwrap_or(rest);
    let schema = schema_of(name.trim());
    let mut arguments = Map::new();
    for param in blocks(rest, "<parameter=", "</parameter>")? {
        let (key, value) = param.split_once('>')?;
        let value = value.strip_prefix('\n').unwrap_or(value);
        let value = value.strip_suffix('\n').unwrap_or(value);
        arguments.insert(key.to_owned(), typed_value(value, property(&schema, key)));
    }
    Some(RawCall {
        name: name.trim().to_owned(),
        arguments: Value::Object(arguments),
    })
}

fn glm_call(block: &str, schema_of: &dyn Fn(&str) -> Option<Value>) -> Option<RawCall> {
    let (name, rest) = match block.find("<arg_key>") {
        Some(at) => (block[..at].trim(), &block[at..]),
        None => (block.trim(), ""),
    };
    if name.is_empty() {
        return None;
    }
    let schema = schema_of(name);
    let mut arguments = Map::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let key = between(rest, "<arg_key>", "</arg_key>")?;
        let after = &rest[rest.find("</arg_key>")? + "</arg_key>".len()..];
        let value = between(after.trim_start(), "<arg_value>", "</arg_value>")?;
        arguments.insert(key.to_owned(), typed_value(value, property(&schema, key)));
        rest = match after.find("</arg_value>") {
            Some(end) => after[end + "</arg_value>".len()..].trim(),
            None => "",
        };
    }
    Some(RawCall {
        name: name.to_owned(),
        arguments: Value::Object(arguments),
    })
}

fn mistral_calls(section: &str) -> Option<Vec<RawCall>> {
    let body = section.strip_prefix("[TOOL_CALLS]")?.trim_start();
    if body.starts_with('[') {
        // One JSON array of calls; whatever follows its end is not part of it.
        let mut stream = serde_json::Deserializer::from_str(body).into_iter::<Vec<Value>>();
        let calls = stream.next()?.ok()?;
        return calls
            .iter()
            .map(|c| json_call(&c.to_string()))
            .collect::<Option<Vec<_>>>();
    }
    let mut calls = Vec::new();
    for part in section.split("[TOOL_CALLS]").skip(1) {
        let (head, args) = part.split_once("[ARGS]")?;
        let name = head.split("[CALL_ID]").next()?.trim();
        let mut stream = serde_json::Deserializer::from_str(args.trim()).into_iter::<Value>();
        calls.push(RawCall {
            name: name.to_owned(),
            arguments: object(stream.next()?.ok()?)?,
        });
    }
    Some(calls)
}

fn deepseek_call(block: &str) -> Option<RawCall> {
    let (head, args) = block.split_once("<｜tool▁sep｜>")?;
    let head = head.trim();
    let (name, args) = if head == "function" {
        // R1: `function<｜tool▁sep｜>name` then a fenced JSON block.
        let (name, rest) = args.split_once('\n')?;
        let rest = rest
            .trim()
            .strip_prefix("```json")
            .or_else(|| rest.trim().strip_prefix("```"))?;
        (name.trim(), rest.split("```").next()?)
    } else {
        (head, args)
    };
    Some(RawCall {
        name: name.to_owned(),
        arguments: object(serde_json::from_str(args.trim()).ok()?)?,
    })
}

fn kimi_call(block: &str) -> Option<RawCall> {
    let (head, args) = block.split_once("<|tool_call_argument_begin|>")?;
    let id = head.trim();
    let id = id.strip_prefix("functions.").unwrap_or(id);
    let name = id.rsplit_once(':').map_or(id, |(name, _)| name);
    Some(RawCall {
        name: name.to_owned(),
        arguments: object(serde_json::from_str(args.trim()).ok()?)?,
    })
}

fn minimax_call(block: &str, schema_of: &dyn Fn(&str) -> Option<Value>) -> Option<RawCall> {
    let (name, rest) = block.split_once('>')?;
    let name = name.trim().trim_matches('"');
    let schema = schema_of(name);
    let mut arguments = Map::new();
    for param in blocks(rest.trim(), "<parameter name=", "</parameter>")? {
        let (key, value) = param.split_once('>')?;
        let key = key.trim().trim_matches('"');
        arguments.insert(
            key.to_owned(),
            typed_value(value.trim(), property(&schema, key)),
        );
    }
    Some(RawCall {
        name: name.to_owned(),
        arguments: Value::Object(arguments),
    })
}

fn harmony_call(section: &str) -> Option<RawCall> {
    let rest = section.strip_prefix("to=functions.")?;
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '<')
        .unwrap_or(rest.len());
    let name = &rest[..end];
    let body = between(rest, "<|message|>", "<|call|>")?;
    Some(RawCall {
        name: name.to_owned(),
        arguments: object(serde_json::from_str(body.trim()).ok()?)?,
    })
}

fn dsml_call(block: &str) -> Option<RawCall> {
    let (name, rest) = block.split_once('>')?;
    let name = name.trim().trim_matches('"');
    let mut arguments = Map::new();
    for param in blocks(
        rest.trim(),
        "<｜DSML｜parameter name=",
        "</｜DSML｜parameter>",
    )? {
        // `"key" string="true">value`
        let (head, value) = param.split_once('>')?;
        let key = head.trim_start().strip_prefix('"')?.split('"').next()?;
        let as_text = head.contains("string=\"true\"");
        let value = if as_text {
            Value::String(value.to_owned())
        } else {
            serde_json::from_str(value.trim()).ok()?
        };
        arguments.insert(key.to_owned(), value);
    }
    Some(RawCall {
        name: name.to_owned(),
        arguments: Value::Object(arguments),
    })
}

fn command_r_calls(section: &str) -> Option<Vec<RawCall>> {
    let body = between(section, "<|START_ACTION|>", "<|END_ACTION|>")?;
    let calls: Vec<Value> = serde_json::from_str(body.trim()).ok()?;
    calls
        .into_iter()
        .map(|call| {
            Some(RawCall {
                name: call.get("tool_name")?.as_str()?.to_owned(),
                arguments: object(
                    call.get("parameters")
                        .cloned()
                        .unwrap_or_else(|| Value::Object(Map::new())),
                )?,
            })
        })
        .collect()
}

/// Functionary's messages, from an answer that starts with its first recipient (the prompt
/// wrote the `>>>` before it): the text of the messages to `all`, and the calls. `None`: the
/// answer is not in that shape (a message without its recipient's line, a call whose
/// arguments do not parse).
fn functionary_messages(text: &str) -> Option<(String, Vec<RawCall>)> {
    let text = text.strip_prefix(">>>").unwrap_or(text);
    let mut content = String::new();
    let mut calls = Vec::new();
    for message in text.split(">>>") {
        let Some((recipient, body)) = message.split_once('\n') else {
            // Only an empty text message may end before its first line does.
            if matches!(message.trim(), "" | "all") {
                continue;
            }
            return None;
        };
        match recipient.trim() {
            "all" => content.push_str(body),
            "" => return None,
            name => calls.push(RawCall {
                name: name.to_owned(),
                arguments: object(serde_json::from_str(body.trim()).ok()?)?,
            }),
        }
    }
    Some((content.trim().to_owned(), calls))
}

/// A family's markers around its text, dropped from what goes out.
fn text_markers(syntax: ToolSyntax) -> &'static [&'static str] {
    match syntax {
        ToolSyntax::CommandR => &COMMAND_R_TEXT,
        _ => &[],
    }
}

fn strip_markers(markers: &[&str], text: String) -> String {
    markers
        .iter()
        .fold(text, |text, marker| text.replace(marker, ""))
}

/// What of `text` (an answer with no calls in it, or the text before them) is for the
/// reader: a family's own markers around its text are dropped.
pub(crate) fn answer_text(syntax: ToolSyntax, text: &str) -> String {
    match syntax {
        ToolSyntax::CommandR => strip_markers(text_markers(syntax), text.to_owned()),
        ToolSyntax::Functionary => functionary_messages(text).map_or(text.to_owned(), |m| m.0),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    //! Every template of the chat-template suite renders the suite's two tool calls the way
    //! its model writes them: that text, read back with the syntax detected from the same
    //! template, must give the same calls, whole and fed in 1–3 character pieces.

    use super::*;
    use hearth_infer::llm::chat::ChatTemplate;
    use hearth_types::{ChatMessage, Tool};
    use std::path::PathBuf;

    fn suite() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../hearth-infer/tests/chat-templates")
    }

    fn read(name: &str) -> Value {
        serde_json::from_str(&std::fs::read_to_string(suite().join(name)).unwrap()).unwrap()
    }

    /// What the model would write for the conversation's assistant turn: that turn rendered,
    /// less the prompt before it and the end-of-turn after it.
    fn written_answer(
        template: &ChatTemplate,
        eos: &str,
        messages: &[ChatMessage],
        tools: &[Tool],
    ) -> String {
        let with_calls = template
            .render_with(messages, Some(tools), false, None)
            .unwrap();
        let mut marked = messages[..2].to_vec();
        marked[1] = ChatMessage::new("assistant", "§END§");
        let ending = template
            .render_with(&marked, Some(tools), false, None)
            .unwrap();
        let common = ending
            .char_indices()
            .zip(with_calls.chars())
            .take_while(|((_, a), b)| a == b)
            .last()
            .map_or(0, |((i, c), _)| i + c.len_utf8());
        // The two may share the start of a marker (`<|START_` in Command R7B's).
        let common = match with_calls[..common].rfind("<|") {
            Some(open) if !with_calls[open..common].contains("|>") => open,
            _ => common,
        };
        let ending = &ending[ending.find("§END§").unwrap() + "§END§".len()..];
        let answer = &with_calls[common..];
        let answer = answer.strip_suffix(ending).unwrap_or(answer);
        // The end of the turn, where the template writes more after it than after text.
        let answer = match answer.find(eos).filter(|_| !eos.is_empty()) {
            Some(end) => &answer[..end],
            None => answer,
        };
        // An empty thinking block the template writes before the calls is the reasoning
        // split's to remove, not the call reader's.
        let mut answer = answer.trim_start();
        for (open, close) in [
            ("<think>", "</think>"),
            ("<|START_THINKING|>", "<|END_THINKING|>"),
        ] {
            answer = answer.strip_prefix(open).unwrap_or(answer).trim_start();
            answer = answer.strip_prefix(close).unwrap_or(answer).trim_start();
        }
        answer.to_owned()
    }

    /// A template of the suite: its name, source, end-of-generation token, and compiled.
    type SuiteTemplate = (String, String, String, ChatTemplate);

    /// The suite's tools, its two-call conversation, and each template that renders an assistant turn with two calls: (name, source, eos token, template).
    fn two_call_templates() -> (Vec<Tool>, Vec<ChatMessage>, Vec<SuiteTemplate>) {
        let templates = read("templates.json");
        let corpus = read("conversations.json");
        let tools: Vec<Tool> = serde_json::from_value(corpus["tools"].clone()).unwrap();
        let messages: Vec<ChatMessage> =
            serde_json::from_value(corpus["cases"]["tool_calls"]["messages"].clone()).unwrap();
        let mut found = Vec::new();
        for (name, entry) in templates["templates"].as_object().unwrap() {
            let source =
                std::fs::read_to_string(suite().join(format!("templates/{name}.jinja"))).unwrap();
            let eos = entry["eos_token"].as_str().unwrap();
            let template =
                ChatTemplate::new(Some(&source), entry["bos_token"].as_str().unwrap(), eos)
                    .unwrap();
            // Llama 3.x refuses two calls in one turn.
            if template
                .render_with(&messages[..2], Some(&tools), false, None)
                .is_ok()
            {
                found.push((name.clone(), source, eos.to_owned(), template));
            }
        }
        (tools, messages, found)
    }

    #[test]
    fn every_family_reads_back_the_calls_its_template_writes() {
        let (tools, messages, templates) = two_call_templates();
        let want: Vec<RawCall> = messages[1]
            .tool_calls
            .iter()
            .flatten()
            .map(|c| RawCall {
                name: c.function.name.clone(),
                arguments: serde_json::from_str(&c.function.arguments).unwrap(),
            })
            .collect();
        let schema_of = |name: &str| {
            tools
                .iter()
                .find(|t| t.function.name == name)
                .and_then(|t| t.function.parameters.clone())
        };
        let mut failures = Vec::new();
        let mut read_back = 0;
        for (name, _, eos, template) in &templates {
            let syntax = ToolSyntax::of(template);
            let answer = written_answer(template, eos, &messages[..2], &tools);
            // gpt-oss writes one call per message.
            let expected = if syntax == ToolSyntax::Harmony {
                &want[..1]
            } else {
                &want[..]
            };
            match split(syntax, &answer, &schema_of) {
                Some(found) if found.calls == expected && found.content.is_empty() => {}
                other => {
                    failures.push(format!("{name} ({syntax:?}): {answer:?} gave {other:?}"));
                    continue;
                }
            }
            for size in 1..=3 {
                let mut stream = CallStream::new(syntax);
                let mut text = String::new();
                let chars: Vec<char> = answer.chars().collect();
                for piece in chars.chunks(size) {
                    text.push_str(&stream.push(&piece.iter().collect::<String>()));
                }
                let (rest, calls) = stream.finish(&schema_of);
                text.push_str(&rest);
                if calls != expected || !text.trim().is_empty() {
                    failures.push(format!(
                        "{name} ({syntax:?}) in {size}-character pieces: text {text:?}, calls {calls:?}"
                    ));
                }
            }
            read_back += 1;
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(read_back >= 27, "only {read_back} templates read back");
    }

    /// Each family's calls grammar, from the trigger the answer wrote on, accepts the calls
    /// its template writes; it refuses them with an argument of the wrong type, and refuses
    /// two calls where only one is allowed.
    #[test]
    fn every_family_grammar_holds_the_calls_its_template_writes() {
        use crate::call_grammar::call_grammar;
        use hearth_infer::llm::lark_accepts;
        let (tools, messages, templates) = two_call_templates();
        let mut failures = Vec::new();
        let mut held = Vec::new();
        for (name, source, eos, template) in &templates {
            let syntax = ToolSyntax::of(template);
            let no_control = |_: &str| None;
            let Some(grammar) = call_grammar(syntax, source, &tools, true, &no_control) else {
                continue;
            };
            let answer = written_answer(template, eos, &messages[..2], &tools);
            let Some(at) = grammar
                .triggers
                .iter()
                .filter_map(|t| regex::Regex::new(t).unwrap().find(&answer))
                .map(|m| m.start())
                .min()
            else {
                failures.push(format!("{name} ({syntax:?}): no trigger in {answer:?}"));
                continue;
            };
            // The model's end-of-generation token ends the calls (R1's template writes its
            // end of sentence after them).
            let calls = &answer[at..];
            let calls = match calls.find(eos).filter(|_| !eos.is_empty()) {
                Some(end) => &calls[..end],
                None => calls,
            }
            .trim_end();
            // A harmony turn holds one call: `<|call|>` ends the answer, the next call is the
            // next turn's.
            let harmony = syntax == ToolSyntax::Harmony;
            let calls = match calls.find("<|call|>").filter(|_| harmony) {
                Some(end) => &calls[..end + "<|call|>".len()],
                None => calls,
            };
            match lark_accepts(&grammar.lark, calls) {
                Ok(true) => {}
                other => {
                    failures.push(format!(
                        "{name} ({syntax:?}): {calls:?} gave {other:?}\n{}",
                        grammar.lark
                    ));
                    continue;
                }
            }
            // A string where the schema has one is fine; a number that is not a number is
            // refused, and so is a JSON string's value written without its quotes.
            let wrong = [
                calls.replacen("\"A-1001\"", "1001", 1),
                calls.replacen("2.5", "far", 1),
            ];
            if wrong.iter().all(|w| w == calls) {
                failures.push(format!("{name}: no argument to put the wrong type in"));
            }
            for wrong_type in wrong.iter().filter(|w| *w != calls) {
                if lark_accepts(&grammar.lark, wrong_type).unwrap() {
                    failures.push(format!("{name}: accepted {wrong_type:?}"));
                }
            }
            let single = call_grammar(syntax, source, &tools, false, &no_control).unwrap();
            if !harmony && lark_accepts(&single.lark, calls).unwrap() {
                failures.push(format!("{name}: one call allowed, two accepted"));
            }
            held.push(name.clone());
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(held.len() >= 27, "only {} held: {held:?}", held.len());
    }

    /// Streams `answer` in `size`-character pieces: (the text handed on, the calls).
    fn streamed(syntax: ToolSyntax, answer: &str, size: usize) -> (String, Vec<RawCall>) {
        let mut stream = CallStream::new(syntax);
        let mut text = String::new();
        let chars: Vec<char> = answer.chars().collect();
        for piece in chars.chunks(size) {
            text.push_str(&stream.push(&piece.iter().collect::<String>()));
        }
        let (rest, calls) = stream.finish(&|_: &str| None);
        (text + &rest, calls)
    }

    /// The families whose text has markers of its own: Functionary's messages to `all`,
    /// Command R7B's response markers. Their text reads without them, alone or before
    /// calls, whole and in pieces; a broken call is the text it is.
    #[test]
    fn a_family_text_reads_without_its_markers() {
        let call = |name: &str, arguments: Value| RawCall {
            name: name.into(),
            arguments,
        };
        let order = call("get_order", serde_json::json!({"order_id": "A-1001"}));
        let cases: Vec<(ToolSyntax, &str, &str, Vec<RawCall>)> = vec![
            (ToolSyntax::Functionary, "all\nHello, how can I help?", "Hello, how can I help?", vec![]),
            (
                ToolSyntax::Functionary,
                "all\nLet me look.>>>get_order\n{\"order_id\": \"A-1001\"}",
                "Let me look.",
                vec![order.clone()],
            ),
            (
                ToolSyntax::Functionary,
                "get_order\n{\"order_id\": \"A-1001\"}",
                "",
                vec![order.clone()],
            ),
            // Not in messages at all: the text as written.
            (ToolSyntax::Functionary, "Sure thing.", "Sure thing.", vec![]),
            (
                ToolSyntax::Functionary,
                "get_order\n{\"order_id\": ",
                "get_order\n{\"order_id\":",
                vec![],
            ),
            (
                ToolSyntax::CommandR,
                "<|START_RESPONSE|>Your order shipped.<|END_RESPONSE|>",
                "Your order shipped.",
                vec![],
            ),
            (
                ToolSyntax::CommandR,
                "<|START_RESPONSE|>One moment.<|END_RESPONSE|><|START_ACTION|>[\n    {\"tool_call_id\": \"0\", \"tool_name\": \"get_order\", \"parameters\": {\"order_id\": \"A-1001\"}}\n]<|END_ACTION|>",
                "One moment.",
                vec![order.clone()],
            ),
            (
                ToolSyntax::Dsml,
                "Checking.\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"find_store\">\n<｜DSML｜parameter name=\"city\" string=\"true\">São Paulo</｜DSML｜parameter>\n<｜DSML｜parameter name=\"near\" string=\"false\">{\"lat\": -23.5, \"tags\": [\"open\"]}</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜function_calls>",
                "Checking.",
                vec![call(
                    "find_store",
                    serde_json::json!({"city": "São Paulo", "near": {"lat": -23.5, "tags": ["open"]}}),
                )],
            ),
        ];
        for (syntax, answer, text, calls) in cases {
            for size in [1, 2, 3, 1000] {
                let (got_text, got_calls) = streamed(syntax, answer, size);
                assert_eq!(got_text.trim(), text, "{syntax:?} {size}: {answer:?}");
                assert_eq!(got_calls, calls, "{syntax:?} {size}: {answer:?}");
            }
        }
    }

    #[test]
    fn text_before_the_calls_streams_and_a_broken_call_is_text() {
        let none = |_: &str| None;
        let answer =
            "Let me look.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>";
        let mut stream = CallStream::new(ToolSyntax::Hermes);
        let mut text = String::new();
        for piece in answer.as_bytes().chunks(2) {
            text.push_str(&stream.push(std::str::from_utf8(piece).unwrap()));
        }
        assert_eq!(text, "Let me look.\n", "the text went out before the call");
        let (rest, calls) = stream.finish(&none);
        assert!(rest.is_empty());
        assert_eq!(calls[0].name, "f");
        // A call that does not parse is handed on as the text it is.
        let mut stream = CallStream::new(ToolSyntax::Hermes);
        let broken = "<tool_call>\n{\"name\": \"f\", \"argu";
        assert_eq!(stream.push(broken), "");
        let (rest, calls) = stream.finish(&none);
        assert_eq!(rest, broken);
        assert!(calls.is_empty());
        // Text, then a fenced JSON call (Qwen2.5-Coder's way): the text streams, the call is
        // read; text that only shows JSON or code is text.
        for syntax in [ToolSyntax::Hermes, ToolSyntax::Json] {
            for size in 1..=3 {
                let answer =
                    "Let me check.\n```json\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n```";
                let mut stream = CallStream::new(syntax);
                let mut text = String::new();
                let chars: Vec<char> = answer.chars().collect();
                for piece in chars.chunks(size) {
                    text.push_str(&stream.push(&piece.iter().collect::<String>()));
                }
                assert_eq!(text, "Let me check.\n", "{syntax:?} {size}");
                let (rest, calls) = stream.finish(&none);
                assert!(rest.is_empty(), "{syntax:?} {size}: {rest:?}");
                assert_eq!(calls[0].name, "f", "{syntax:?} {size}");
                let answer = "Use this:\n```python\nprint({\"a\": 1})\n```\nor {\"name\" x";
                let mut stream = CallStream::new(syntax);
                let mut text = String::new();
                for piece in answer.as_bytes().chunks(size) {
                    text.push_str(&stream.push(std::str::from_utf8(piece).unwrap()));
                }
                let (rest, calls) = stream.finish(&none);
                assert_eq!(text + &rest, answer, "{syntax:?} {size}");
                assert!(calls.is_empty());
            }
        }
        // Plain text never waits for an opener that cannot come.
        let mut stream = CallStream::new(ToolSyntax::Mistral);
        assert_eq!(stream.push("Hello [TOOL"), "Hello ");
        assert_eq!(stream.push("S] are"), "[TOOLS] are");
    }
}
