//! The OpenAI Responses API shapes hearth serves under `/v1/responses`: what code written
//! against the `openai` SDK's "primary API" sends. The gateway translates each request into
//! the chat request every local model and route serves, and keeps what `store` asks for.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
use utoipa::ToSchema;

use crate::schema;

/// `POST /v1/responses`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResponsesRequest {
    #[schema(min_length = 1)]
    pub model: String,
    pub input: ResponsesInput,
    /// A system (developer) message put first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Function tools: `{"type": "function", "name", "description", "parameters"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<FunctionTool>>,
    /// `auto`, `none`, `required`, or `{"type": "function", "name": …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = tool_choice)]
    pub tool_choice: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// `{"format": {"type": "text" | "json_object" | "json_schema", "name", "schema"}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextConfig>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::opt"
    )]
    #[schema(minimum = 1)]
    pub max_output_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0, maximum = 1)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub stream: bool,
    /// Keep the response so `previous_response_id` can continue it (default true, as
    /// OpenAI's); it is visible only to the key that made it and expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    /// Continue the conversation of a stored response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_response_id: Option<String>,
    /// `{"effort": "low" | …}`: reaches the template as `reasoning_effort`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<ReasoningConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Echoed back in the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

fn tool_choice() -> utoipa::openapi::schema::Schema {
    OneOfBuilder::new()
        .item(schema::one_of_strings(&["auto", "none", "required"]))
        .item(
            ObjectBuilder::new()
                .property("type", schema::fixed("function"))
                .property("name", ObjectBuilder::new().schema_type(Type::String))
                .required("type")
                .required("name"),
        )
        .into()
}

/// `input`: a string (one user message), or a list of items: messages (`role`, `content` as
/// a string or `input_text`/`output_text` parts), `function_call` and `function_call_output`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ResponsesInput {
    Text(String),
    Items(Vec<Value>),
}

crate::schema_by_hand!(
    ResponsesInput,
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(schema::list(
            ObjectBuilder::new().schema_type(Type::Object),
            None,
            None
        ))
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FunctionTool {
    /// `function` (other tool types are refused).
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TextConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<TextFormat>,
}

/// `text.format`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TextFormat {
    /// `text`, `json_object` or `json_schema`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReasoningConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
}

/// A response: what `POST /v1/responses` answers and `GET /v1/responses/{id}` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResponseObject {
    pub id: String,
    /// Always `response`.
    pub object: String,
    pub created_at: u64,
    /// `completed`, `incomplete` (out of `max_output_tokens`), `in_progress` while streaming,
    /// `failed`.
    pub status: String,
    #[schema(value_type = Option<Object>)]
    pub incomplete_details: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    pub model: String,
    pub output: Vec<OutputItem>,
    pub usage: Option<ResponseUsage>,
    pub instructions: Option<String>,
    pub previous_response_id: Option<String>,
    pub store: bool,
    pub parallel_tool_calls: bool,
    #[schema(schema_with = tool_choice)]
    pub tool_choice: Value,
    pub tools: Vec<FunctionTool>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_output_tokens: Option<u32>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

/// An output item: a `message` (its `output_text` parts), a `function_call`, or a
/// `reasoning` item (the thought, as `reasoning_text` content).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    Message {
        id: String,
        status: String,
        role: String,
        content: Vec<OutputContent>,
    },
    FunctionCall {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
        status: String,
    },
    Reasoning {
        id: String,
        summary: Vec<OutputContent>,
        content: Vec<OutputContent>,
    },
}

/// A part of an output item: `output_text` (with its `annotations`, always empty here) or
/// `reasoning_text`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputContent {
    OutputText {
        text: String,
        #[schema(value_type = Vec<Object>)]
        annotations: Vec<Value>,
    },
    ReasoningText {
        text: String,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResponseUsage {
    pub input_tokens: u32,
    pub input_tokens_details: InputTokensDetails,
    pub output_tokens: u32,
    pub output_tokens_details: OutputTokensDetails,
    pub total_tokens: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InputTokensDetails {
    pub cached_tokens: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OutputTokensDetails {
    pub reasoning_tokens: u32,
}

/// `DELETE /v1/responses/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResponseDeleted {
    pub id: String,
    /// Always `response.deleted`.
    pub object: String,
    pub deleted: bool,
}

/// One event of a streamed response: its `type` (`response.created`, …), its
/// `sequence_number`, and the fields of that type (`response`, `item`, `delta`, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseStreamEvent(pub Value);

crate::schema_by_hand!(
    ResponseStreamEvent,
    ObjectBuilder::new()
        .property("type", ObjectBuilder::new().schema_type(Type::String))
        .property(
            "sequence_number",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
        )
        .required("type")
        .required("sequence_number")
);
