//! Rerank and score: `/v1/rerank` in the shape Jina, Cohere and vLLM share, `/rerank` in Hugging
//! Face Text Embeddings Inference's shape, and vLLM's `/v1/score`.

use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
use utoipa::ToSchema;

use crate::schema;

/// `POST /v1/rerank`: the documents ordered by how well each answers the query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RerankRequest {
    /// A cross-encoder (kind `rerank`), a chat model (judged yes/no, Qwen3-Reranker style), an
    /// embedding model (cosine similarity), or a route alias naming one.
    #[schema(min_length = 1)]
    pub model: String,
    #[schema(min_length = 1)]
    pub query: String,
    /// Strings, or objects with a `text` field.
    #[schema(min_items = 1)]
    pub documents: Vec<RerankDocument>,
    /// Return only the best `top_n` (all when absent).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::opt"
    )]
    #[schema(minimum = 1)]
    pub top_n: Option<u32>,
    /// Echo each result's document (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_documents: Option<bool>,
    /// What relevance means, for a chat model judging yes/no (default: "Given a web search
    /// query, retrieve relevant passages that answer the query"); other models ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruction: Option<String>,
}

/// One document to rank: a string or `{"text": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RerankDocument {
    Text(String),
    Object { text: String },
}

impl RerankDocument {
    pub fn text(&self) -> &str {
        match self {
            RerankDocument::Text(text) | RerankDocument::Object { text } => text,
        }
    }
}

crate::schema_by_hand!(
    RerankDocument,
    OneOfBuilder::new()
        .description(Some("A document: a string, or an object with its text"))
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("text", ObjectBuilder::new().schema_type(Type::String))
                .required("text")
        )
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RerankResponse {
    pub id: String,
    pub model: String,
    /// Best first; ties in input order.
    pub results: Vec<RerankResult>,
    pub usage: RerankUsage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RerankResult {
    /// The document's position in the request.
    pub index: u32,
    /// Higher is more relevant: a probability for cross-encoders (sigmoid of the logit) and
    /// chat models (of "yes"), the cosine similarity for embedding models.
    pub relevance_score: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<RerankedDocument>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RerankedDocument {
    pub text: String,
}

/// Tokens read to score the pairs (each pair's query and document, with the model's framing).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RerankUsage {
    pub prompt_tokens: u32,
    pub total_tokens: u32,
}

impl RerankUsage {
    /// `tokens` read, all of them prompt (scoring generates nothing).
    pub fn read(tokens: usize) -> Self {
        let tokens = u32::try_from(tokens).unwrap_or(u32::MAX);
        RerankUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        }
    }
}

/// `POST /rerank` (Text Embeddings Inference's shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TeiRerankRequest {
    /// The model to rank with; may be left out when exactly one cross-encoder is installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1)]
    pub model: Option<String>,
    #[schema(min_length = 1)]
    pub query: String,
    #[schema(min_items = 1)]
    pub texts: Vec<String>,
    /// Scores before the activation: a cross-encoder's logit, a chat model's log-odds of
    /// "yes" (default false).
    #[serde(default)]
    pub raw_scores: bool,
    /// Echo each text (default false).
    #[serde(default)]
    pub return_text: bool,
    /// Accepted for compatibility: inputs longer than the model's limit are always
    /// truncated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = truncation_direction)]
    pub truncation_direction: Option<String>,
    /// What relevance means, for a chat model (see `/v1/rerank`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruction: Option<String>,
}

fn truncation_direction() -> ObjectBuilder {
    schema::one_of_strings(&["right", "Right"])
}

/// One entry of `/rerank`'s answer (a list, best first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TeiRank {
    pub index: u32,
    pub score: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// `POST /v1/score` (vLLM's shape): `text_1` against `text_2`, one to one, or one against many.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScoreRequest {
    #[schema(min_length = 1)]
    pub model: String,
    pub text_1: ScoreText,
    pub text_2: ScoreText,
    /// What relevance means, for a chat model (see `/v1/rerank`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruction: Option<String>,
}

/// A string or a list of strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ScoreText {
    One(String),
    Many(Vec<String>),
}

crate::schema_by_hand!(
    ScoreText,
    OneOfBuilder::new()
        .description(Some("A string, or a list of strings"))
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(schema::list(
            ObjectBuilder::new().schema_type(Type::String),
            Some(1),
            None
        ))
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScoreResponse {
    pub id: String,
    #[schema(schema_with = list_object)]
    pub object: String,
    pub created: u64,
    pub model: String,
    pub data: Vec<ScoreData>,
    pub usage: RerankUsage,
}

fn list_object() -> ObjectBuilder {
    schema::fixed("list")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScoreData {
    /// The pair's position: `text_2`'s index (or the pair's, for two lists).
    pub index: u32,
    #[schema(schema_with = score_object)]
    pub object: String,
    pub score: f64,
}

fn score_object() -> ObjectBuilder {
    schema::fixed("score")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_strings_or_objects() {
        let request: RerankRequest = serde_json::from_str(
            r#"{"model":"m","query":"q","documents":["a",{"text":"b"}],"top_n":1}"#,
        )
        .unwrap();
        let texts: Vec<&str> = request.documents.iter().map(RerankDocument::text).collect();
        assert_eq!(texts, ["a", "b"]);
        assert_eq!(request.top_n, Some(1));
        assert!(serde_json::from_str::<RerankRequest>(
            r#"{"model":"m","query":"q","documents":[{"title":"no text"}]}"#
        )
        .is_err());
        assert!(serde_json::from_str::<RerankRequest>(
            r#"{"model":"m","query":"q","documents":["a"],"top_n":1.5}"#
        )
        .is_err());
    }

    #[test]
    fn score_texts_are_one_or_many() {
        let request: ScoreRequest =
            serde_json::from_str(r#"{"model":"m","text_1":"q","text_2":["a","b"]}"#).unwrap();
        assert_eq!(request.text_1, ScoreText::One("q".into()));
        assert_eq!(
            request.text_2,
            ScoreText::Many(vec!["a".into(), "b".into()])
        );
    }
}
