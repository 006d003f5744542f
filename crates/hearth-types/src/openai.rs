//! The OpenAI API shapes hearth serves under `/v1`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};

use crate::schema;

/// A message's content: a plain string, or OpenAI's list of typed parts (only `text` parts are
/// understood by text models).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

crate::schema_by_hand!(
    MessageContent,
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(schema::list(schema::reference::<ContentPart>(), None, None)),
    [ContentPart]
);

impl MessageContent {
    /// The text of the content; non-text parts are skipped.
    pub fn text(&self) -> String {
        match self {
            MessageContent::Text(text) => text.clone(),
            MessageContent::Parts(parts) => parts
                .iter()
                .filter_map(|part| part.text.as_deref())
                .collect::<Vec<_>>()
                .join(""),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatMessage {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    #[schema(schema_with = role)]
    pub role: String,
    #[serde(default)]
    pub content: Option<MessageContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// The thinking of a reasoning model before its answer (an earlier assistant turn's, in a
    /// request; the template keeps or drops it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

fn role() -> ObjectBuilder {
    schema::one_of_strings(&["system", "developer", "user", "assistant", "tool"])
}

fn function_kind() -> ObjectBuilder {
    schema::fixed("function")
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: Some(MessageContent::Text(content.into())),
            name: None,
            tool_calls: None,
            tool_call_id: None,
            reasoning_content: None,
        }
    }

    pub fn text(&self) -> String {
        self.content
            .as_ref()
            .map(MessageContent::text)
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    #[schema(schema_with = function_kind)]
    pub kind: String,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FunctionCall {
    pub name: String,
    /// JSON-encoded arguments, as OpenAI sends them.
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Tool {
    #[serde(rename = "type")]
    #[schema(schema_with = function_kind)]
    pub kind: String,
    pub function: FunctionDefinition,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FunctionDefinition {
    #[schema(min_length = 1)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `tool_choice`: `"none"`, `"auto"`, `"required"` or `{"type":"function","function":{"name":..}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolChoice {
    Mode(String),
    Named(NamedToolChoice),
}

crate::schema_by_hand!(
    ToolChoice,
    OneOfBuilder::new()
        .item(schema::one_of_strings(&["none", "auto", "required"]))
        .item(schema::reference::<NamedToolChoice>()),
    [NamedToolChoice]
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NamedToolChoice {
    #[serde(rename = "type")]
    #[schema(schema_with = function_kind)]
    pub kind: String,
    pub function: NamedFunction,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NamedFunction {
    #[schema(min_length = 1)]
    pub name: String,
}

/// `response_format`: `{"type":"text"}`, `{"type":"json_object"}` or
/// `{"type":"json_schema","json_schema":{"name":..,"schema":{..},"strict":..}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseFormat {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<JsonSchemaFormat>,
}

// `json_schema` is required with `"type": "json_schema"`.
crate::schema_by_hand!(
    ResponseFormat,
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .property("type", schema::one_of_strings(&["text", "json_object"]))
                .required("type")
        )
        .item(
            ObjectBuilder::new()
                .property("type", schema::fixed("json_schema"))
                .property("json_schema", schema::reference::<JsonSchemaFormat>())
                .required("type")
                .required("json_schema")
        ),
    [JsonSchemaFormat]
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JsonSchemaFormat {
    #[schema(min_length = 1)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema the answer must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `stop`: one string or a list of up to 4.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StopSequences {
    One(String),
    Many(Vec<String>),
}

crate::schema_by_hand!(
    StopSequences,
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(schema::list(
            ObjectBuilder::new().schema_type(Type::String),
            None,
            Some(4)
        ))
);

impl StopSequences {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            StopSequences::One(s) => vec![s],
            StopSequences::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// Sampling parameters shared by chat and text completions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SamplingFields {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::opt"
    )]
    #[schema(minimum = 1)]
    pub max_tokens: Option<u32>,
    /// Newer name of `max_tokens` in the chat API.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::opt"
    )]
    #[schema(minimum = 1)]
    pub max_completion_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0, maximum = 1)]
    pub top_p: Option<f64>,
    /// Not in OpenAI's API; accepted as llama.cpp and vLLM do. 0 turns it off.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::opt"
    )]
    #[schema(minimum = 0)]
    pub top_k: Option<i32>,
    /// Not in OpenAI's API; accepted as llama.cpp and vLLM do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1)]
    pub min_p: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::opt"
    )]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopSequences>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = -2, maximum = 2)]
    pub presence_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = -2, maximum = 2)]
    pub frequency_penalty: Option<f64>,
    /// Only n = 1 is supported.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::opt"
    )]
    #[schema(minimum = 1, maximum = 1)]
    pub n: Option<u32>,
    /// Not in OpenAI's API: generate past end-of-generation tokens (benchmarks), as
    /// llama.cpp's server and vLLM accept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_eos: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    #[schema(min_length = 1)]
    pub model: String,
    #[schema(min_items = 1)]
    pub messages: Vec<ChatMessage>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
    #[serde(default)]
    pub stream: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// hearth extension: personal data a customer record supplies (names, postal
    /// addresses) that a `redact` route must keep home besides what it detects. Never
    /// forwarded upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_pii: Option<KnownPiiFields>,
    /// More names the model's chat template reads, as vLLM and llama-server accept
    /// (`{"enable_thinking": false}`). The names hearth sets itself (`messages`, `tools`,
    /// `add_generation_prompt`, ...) cannot be given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub chat_template_kwargs: Option<serde_json::Map<String, Value>>,
    /// How much a reasoning model thinks: `none`, `minimal`, `low`, `medium` or `high`.
    /// Reaches the chat template as `reasoning_effort`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = reasoning_effort)]
    pub reasoning_effort: Option<String>,
    /// Whether one answer may make several tool calls (the default); `false` allows one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
}

/// The `reasoning_effort` values.
pub const REASONING_EFFORTS: &[&str] = &["none", "minimal", "low", "medium", "high"];

fn reasoning_effort() -> ObjectBuilder {
    schema::one_of_strings(REASONING_EFFORTS)
}

/// Names and postal addresses to redact (see `ChatCompletionRequest::known_pii`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KnownPiiFields {
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default)]
    pub addresses: Vec<String>,
}

impl ChatCompletionRequest {
    /// A streaming request with only messages and sampling set.
    pub fn streaming(
        model: impl Into<String>,
        messages: Vec<ChatMessage>,
        sampling: SamplingFields,
    ) -> Self {
        ChatCompletionRequest {
            model: model.into(),
            messages,
            sampling,
            stream: true,
            stream_options: None,
            tools: None,
            tool_choice: None,
            response_format: None,
            user: None,
            known_pii: None,
            chat_template_kwargs: None,
            reasoning_effort: None,
            parallel_tool_calls: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    /// How the completion's tokens were spent: those a reasoning model thought with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
}

/// `usage.completion_tokens_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct CompletionTokensDetails {
    /// Completion tokens spent on reasoning (`reasoning_content`), counted in
    /// `completion_tokens` too.
    pub reasoning_tokens: u32,
}

impl Usage {
    pub fn new(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            completion_tokens_details: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletionResponse {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    /// Some OpenAI-compatible servers leave it out; read as zeros then.
    #[serde(default)]
    pub usage: Usage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatChoice {
    pub index: u32,
    pub message: AssistantMessage,
    pub finish_reason: Option<String>,
    pub logprobs: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AssistantMessage {
    pub role: String,
    pub content: Option<String>,
    /// A reasoning model's thought before its answer (DeepSeek's and vLLM's field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    pub refusal: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletionChunk {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    /// Present (and `null` on every chunk but the last) when `stream_options.include_usage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Usage>)]
    pub usage: Option<Option<Usage>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: ChunkDelta,
    pub finish_reason: Option<String>,
    pub logprobs: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChunkDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// The next piece of a reasoning model's thought.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ToolCallDelta {
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub function: FunctionCallDelta,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FunctionCallDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

/// `prompt` of `/v1/completions`: a string, a list of strings, tokens, or lists of tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CompletionPrompt {
    Text(String),
    Texts(Vec<String>),
    Tokens(#[serde(deserialize_with = "crate::whole::list")] Vec<u32>),
    TokenLists(#[serde(deserialize_with = "crate::whole::lists")] Vec<Vec<u32>>),
}

crate::schema_by_hand!(
    CompletionPrompt,
    schema::text_or_tokens(
        "A string, a list of strings, a list of token ids, or a list of token-id lists"
    )
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CompletionRequest {
    #[schema(min_length = 1)]
    pub model: String,
    pub prompt: CompletionPrompt,
    #[serde(flatten)]
    pub sampling: SamplingFields,
    #[serde(default)]
    pub stream: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Echo the prompt before the completion.
    #[serde(default)]
    pub echo: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CompletionResponse {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<CompletionChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CompletionChoice {
    pub index: u32,
    pub text: String,
    pub finish_reason: Option<String>,
    pub logprobs: Option<Value>,
}

/// `input` of `/v1/embeddings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(#[serde(deserialize_with = "crate::whole::list")] Vec<u32>),
    TokenLists(#[serde(deserialize_with = "crate::whole::lists")] Vec<Vec<u32>>),
}

crate::schema_by_hand!(
    EmbeddingInput,
    schema::text_or_tokens(
        "A string, a list of strings, a list of token ids, or a list of token-id lists"
    )
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingRequest {
    #[schema(min_length = 1)]
    pub model: String,
    pub input: EmbeddingInput,
    /// `float` (default) or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = encoding_format)]
    pub encoding_format: Option<String>,
    /// Fewer dimensions than the model's: the vector is cut and renormalised.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::opt"
    )]
    #[schema(minimum = 1)]
    pub dimensions: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

fn encoding_format() -> ObjectBuilder {
    schema::one_of_strings(&["float", "base64"])
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingResponse {
    pub object: String,
    pub data: Vec<EmbeddingData>,
    pub model: String,
    pub usage: EmbeddingUsage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingData {
    pub object: String,
    pub index: u32,
    /// A list of floats, or a base64 string of little-endian f32 when `encoding_format=base64`.
    #[schema(schema_with = embedding)]
    pub embedding: Value,
}

fn embedding() -> utoipa::openapi::schema::Schema {
    OneOfBuilder::new()
        .item(schema::list(
            ObjectBuilder::new().schema_type(Type::Number),
            None,
            None,
        ))
        .item(ObjectBuilder::new().schema_type(Type::String))
        .into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingUsage {
    pub prompt_tokens: u32,
    pub total_tokens: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelObject {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub owned_by: String,
    /// For a LoRA adapter: the model it applies to (as vLLM lists adapters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// hearth's addition: `chat` or `embedding`, and the model's metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<ModelMeta>,
}

/// What hearth knows of a model it serves (`meta` of a model object); `null` where the
/// model's files do not say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelMeta {
    #[schema(schema_with = model_kind)]
    pub kind: String,
    /// `general.architecture` of a GGUF (`llama`, `qwen2` …), `model_type` of a config.json.
    pub architecture: Option<String>,
    pub parameters: Option<u64>,
    /// `Q4_K_M`, `Q8_0`, `F16` …
    pub quantization: Option<String>,
    /// The context the model was trained for.
    pub context_length: Option<u64>,
    /// Hidden size of an LLM; output dimension of an embedder.
    pub embedding_dim: Option<u64>,
    pub size_bytes: u64,
}

fn model_kind() -> ObjectBuilder {
    schema::one_of_strings(&["chat", "embedding", "rerank"])
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<ModelObject>,
}

/// OpenAI's error shape, used on `/v1/*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Error)]
pub struct OpenAiErrorBody {
    #[schema(inline)]
    pub error: OpenAiError,
}

/// A failure inside a stream (one server-sent event, then `[DONE]`): the body a request
/// without streaming would have had, marked `"type": "error"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StreamError {
    #[schema(inline)]
    pub error: OpenAiError,
    /// Always `error`.
    #[serde(rename = "type")]
    #[schema(schema_with = error_kind)]
    pub kind: String,
}

fn error_kind() -> ObjectBuilder {
    schema::fixed("error")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OpenAiError {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_request_parses_openai_shapes() {
        let body = serde_json::json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"}
            ],
            "max_tokens": 5, "temperature": 0.0, "stop": "\n", "stream": true,
            "stream_options": {"include_usage": true},
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
            "some_future_field": 1
        });
        let req: ChatCompletionRequest = serde_json::from_value(body).unwrap();
        assert_eq!(req.messages[1].text(), "hi there");
        assert_eq!(req.sampling.max_tokens, Some(5));
        assert_eq!(req.sampling.stop.clone().unwrap().into_vec(), vec!["\n"]);
        assert!(req.stream && req.stream_options.unwrap().include_usage);
        assert!(
            matches!(req.tool_choice, Some(ToolChoice::Named(ref n)) if n.function.name == "f")
        );
        assert_eq!(
            req.messages[2].tool_calls.as_ref().unwrap()[0]
                .function
                .name,
            "f"
        );
        assert_eq!(req.response_format.unwrap().json_schema.unwrap().name, "x");
    }

    #[test]
    fn embedding_input_accepts_every_openai_form() {
        for (input, expected) in [
            (serde_json::json!("a"), EmbeddingInput::Text("a".into())),
            (
                serde_json::json!(["a", "b"]),
                EmbeddingInput::Texts(vec!["a".into(), "b".into()]),
            ),
            (
                serde_json::json!([1, 2]),
                EmbeddingInput::Tokens(vec![1, 2]),
            ),
            (
                serde_json::json!([[1], [2, 3]]),
                EmbeddingInput::TokenLists(vec![vec![1], vec![2, 3]]),
            ),
        ] {
            let req: EmbeddingRequest =
                serde_json::from_value(serde_json::json!({"model": "e", "input": input})).unwrap();
            assert_eq!(req.input, expected);
        }
    }

    #[test]
    fn chunk_usage_serializes_as_null_until_the_last_chunk() {
        let mut chunk = ChatCompletionChunk {
            id: "c".into(),
            object: "chat.completion.chunk".into(),
            created: 0,
            model: "m".into(),
            choices: vec![],
            usage: Some(None),
        };
        assert_eq!(serde_json::to_value(&chunk).unwrap()["usage"], Value::Null);
        chunk.usage = None;
        assert!(serde_json::to_value(&chunk).unwrap().get("usage").is_none());
    }
}
