//! Rerank and score: (query, document) pairs scored on this machine, answered in the shapes
//! of `/v1/rerank` (Jina, Cohere, vLLM), `/rerank` (Text Embeddings Inference) and `/v1/score`
//! (vLLM).
//!
//! Three kinds of model score a pair:
//! - a **cross-encoder** (kind `rerank`) reads query and document together; its score is the
//!   sigmoid of its logit (sentence-transformers' `activation_fn`), the raw score the logit;
//! - a **chat model** judges yes or no after a fixed judging prompt in its own chat template
//!   (the Qwen3-Reranker recipe); its score is `P(yes) / (P(yes) + P(no))` for the first
//!   answer token, the raw score `log P(yes) - log P(no)`. Every pair of a request shares the
//!   prompt up to the document, so the engine's prefix cache reads it once;
//! - an **embedding model** embeds both sides; score and raw score are the cosine similarity.

use std::collections::HashMap;

use futures::{StreamExt, TryStreamExt};
use hearth_infer::embed::{EmbedHandle, EmbedInput};
use hearth_infer::llm::{GenerateRequest, LlmHandle, SamplingParams};
use hearth_types::rerank::{
    RerankRequest, RerankResponse, RerankResult, RerankUsage, RerankedDocument, ScoreData,
    ScoreRequest, ScoreResponse, ScoreText, TeiRank, TeiRerankRequest,
};
use hearth_types::ChatMessage;

use crate::models::LoadedModel;
use crate::{Caller, Gateway, GatewayError};

/// The judging prompt a chat model answers yes or no to (Qwen3-Reranker's).
const JUDGE: &str = "Judge whether the Document meets the requirements based on the Query and the Instruct provided. Note that the answer can only be \"yes\" or \"no\".";

/// What relevance means when a request does not say.
pub const DEFAULT_INSTRUCTION: &str =
    "Given a web search query, retrieve relevant passages that answer the query";

/// Scores of pairs, in their order.
#[derive(Debug, Clone, PartialEq)]
pub struct PairScores {
    /// Higher is more relevant: a probability (cross-encoder, chat model) or a cosine.
    pub scores: Vec<f64>,
    /// Before the activation: a cross-encoder's logit, a chat model's log-odds of "yes", the
    /// cosine.
    pub raw: Vec<f64>,
    /// Tokens read, with each model's framing.
    pub prompt_tokens: usize,
}

/// A second stage for an app's search: the first stage's best `depth` candidates scored
/// again by `model` (any model `/v1/rerank` takes), then ordered by that score alone, or, with
/// `fuse`, by reciprocal-rank fusion of the reranker's order with the first stage's (so a weak
/// judge cannot bury a candidate the first stage put on top).
#[derive(Debug, Clone, PartialEq)]
pub struct RerankStage {
    pub model: String,
    pub depth: usize,
    /// What relevance means, for a chat model judging yes/no.
    pub instruction: String,
    pub fuse: bool,
}

/// The constant of reciprocal-rank fusion (as the apps' first stages use).
const FUSION_K: f64 = 60.0;

/// The new order of candidates (indices into the first stage's order) from their `scores`:
/// by score, ties in the first stage's order; with `fuse`, by `1/(K + first rank) + 1/(K +
/// reranker rank)`, ties again in the first stage's order.
pub fn stage_order(scores: &[f64], fuse: bool) -> Vec<usize> {
    let by_score = ranked(scores, None);
    if !fuse {
        return by_score;
    }
    let mut fused = vec![0f64; scores.len()];
    for (rank, &i) in by_score.iter().enumerate() {
        fused[i] = 1.0 / (FUSION_K + (i + 1) as f64) + 1.0 / (FUSION_K + (rank + 1) as f64);
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| fused[b].total_cmp(&fused[a]));
    order
}

impl Gateway {
    /// Scores `(query, document)` pairs on local model `model` (a cross-encoder, a chat model
    /// or an embedding model) for the apps' own calls.
    pub async fn score_pairs(
        &self,
        model: &str,
        pairs: Vec<(String, String)>,
        instruction: Option<&str>,
    ) -> Result<PairScores, GatewayError> {
        self.score_pairs_for(model, pairs, instruction, "").await
    }

    /// Reorders an app's first-stage candidates (`documents`, best first) for `query` with
    /// `stage`: the new order as indices into `documents`, and the reranker's score of each
    /// candidate it read. Only the first `stage.depth` are read; the rest keep their places
    /// after them.
    pub async fn rerank_stage(
        &self,
        stage: &RerankStage,
        query: &str,
        documents: &[String],
    ) -> Result<(Vec<usize>, Vec<f64>), GatewayError> {
        let depth = stage.depth.max(1).min(documents.len());
        if depth < 2 {
            return Ok(((0..documents.len()).collect(), Vec::new()));
        }
        let pairs = documents[..depth]
            .iter()
            .map(|d| (query.to_owned(), d.clone()))
            .collect();
        let scored = self
            .score_pairs(&stage.model, pairs, Some(&stage.instruction))
            .await?;
        let mut order = stage_order(&scored.scores, stage.fuse);
        order.extend(depth..documents.len());
        Ok((order, scored.scores))
    }

    /// [`Gateway::score_pairs`] on behalf of `owner` (key or tenant), for the engines' turns.
    pub(crate) async fn score_pairs_for(
        &self,
        model: &str,
        pairs: Vec<(String, String)>,
        instruction: Option<&str>,
        owner: &str,
    ) -> Result<PairScores, GatewayError> {
        if pairs.is_empty() {
            return Ok(PairScores {
                scores: Vec::new(),
                raw: Vec::new(),
                prompt_tokens: 0,
            });
        }
        match self.load(model).await? {
            LoadedModel::Rerank { engine, .. } => cross_encode(&engine, pairs, owner).await,
            LoadedModel::Embedding { engine, .. } => cosine(&engine, pairs, owner).await,
            LoadedModel::Chat { engine, .. } => {
                let in_flight = self.options.llm.max_sequences.max(1);
                judge(&engine, pairs, instruction, in_flight, owner).await
            }
        }
    }

    /// `/v1/rerank` for `caller`, metered.
    pub async fn rerank_as(
        &self,
        request: &RerankRequest,
        caller: &Caller,
    ) -> Result<RerankResponse, GatewayError> {
        check_query(&request.query, "query")?;
        self.check_pair_count(request.documents.len(), "documents")?;
        if request.top_n == Some(0) {
            return Err(GatewayError::invalid("top_n", "must be at least 1"));
        }
        let pairs: Vec<(String, String)> = request
            .documents
            .iter()
            .map(|d| (request.query.clone(), d.text().to_owned()))
            .collect();
        // Upstream: every document scored (this side picks the top ones), none sent back.
        let mut body = serde_json::to_value(request).expect("requests serialize");
        if let Some(fields) = body.as_object_mut() {
            fields.remove("top_n");
            fields.insert("return_documents".into(), false.into());
        }
        let documents = request.documents.len();
        let ((scored, local), route) = self
            .routed_json(
                &request.model,
                caller,
                crate::routing::JsonCall {
                    path: "rerank",
                    body,
                    texts: &["query", "documents"],
                },
                |local, owner| {
                    let pairs = pairs.clone();
                    async move {
                        let scored = self
                            .score_pairs_for(&local, pairs, request.instruction.as_deref(), &owner)
                            .await?;
                        Ok((scored, local))
                    }
                },
                |answer| Ok((upstream_scores(&answer, documents)?, String::new())),
                |(scored, _)| scored.prompt_tokens as u32,
            )
            .await?;
        let model = if route.implicit {
            local
        } else {
            route.alias.clone()
        };
        let return_documents = request.return_documents.unwrap_or(true);
        let top = ranked(&scored.scores, request.top_n);
        Ok(RerankResponse {
            id: format!("rerank-{}", uuid::Uuid::new_v4().simple()),
            model,
            results: top
                .into_iter()
                .map(|i| RerankResult {
                    index: i as u32,
                    relevance_score: scored.scores[i],
                    document: return_documents.then(|| RerankedDocument {
                        text: request.documents[i].text().to_owned(),
                    }),
                })
                .collect(),
            usage: RerankUsage::read(scored.prompt_tokens),
        })
    }

    /// `/rerank` (Text Embeddings Inference's shape) for `caller`, metered. Without a model,
    /// the one cross-encoder installed ranks.
    pub async fn tei_rerank_as(
        &self,
        request: &TeiRerankRequest,
        caller: &Caller,
    ) -> Result<Vec<TeiRank>, GatewayError> {
        check_query(&request.query, "query")?;
        self.check_pair_count(request.texts.len(), "texts")?;
        if let Some(direction) = request.truncation_direction.as_deref() {
            if !direction.eq_ignore_ascii_case("right") {
                return Err(GatewayError::invalid(
                    "truncation_direction",
                    "only 'right' is supported: the end of a long text is cut",
                ));
            }
        }
        let model = match &request.model {
            Some(model) => model.clone(),
            None => self.only_cross_encoder()?,
        };
        let pairs = request
            .texts
            .iter()
            .map(|t| (request.query.clone(), t.clone()))
            .collect();
        let (scored, _) = self
            .score_as(&model, pairs, request.instruction.as_deref(), caller)
            .await?;
        let values = if request.raw_scores {
            &scored.raw
        } else {
            &scored.scores
        };
        Ok(ranked(values, None)
            .into_iter()
            .map(|i| TeiRank {
                index: i as u32,
                score: values[i],
                text: request.return_text.then(|| request.texts[i].clone()),
            })
            .collect())
    }

    /// `/v1/score` for `caller`, metered: one `text_1` against every `text_2`, or two lists
    /// pair by pair.
    pub async fn score_texts_as(
        &self,
        request: &ScoreRequest,
        caller: &Caller,
    ) -> Result<ScoreResponse, GatewayError> {
        let pairs: Vec<(String, String)> = match (&request.text_1, &request.text_2) {
            (ScoreText::One(query), ScoreText::One(doc)) => vec![(query.clone(), doc.clone())],
            (ScoreText::One(query), ScoreText::Many(docs)) => {
                docs.iter().map(|d| (query.clone(), d.clone())).collect()
            }
            (ScoreText::Many(queries), ScoreText::Many(docs)) => {
                if queries.len() != docs.len() {
                    return Err(GatewayError::invalid(
                        "text_2",
                        format!(
                            "has {} texts but text_1 has {}: two lists are scored pair by pair and must be as long",
                            docs.len(),
                            queries.len()
                        ),
                    ));
                }
                queries.iter().cloned().zip(docs.iter().cloned()).collect()
            }
            (ScoreText::Many(_), ScoreText::One(_)) => {
                return Err(GatewayError::invalid(
                    "text_1",
                    "is a list while text_2 is one text: put the one text in text_1",
                ))
            }
        };
        for (i, (query, _)) in pairs.iter().enumerate() {
            let field = match &request.text_1 {
                ScoreText::One(_) => "text_1".to_owned(),
                ScoreText::Many(_) => format!("text_1[{i}]"),
            };
            check_query(query, &field)?;
        }
        self.check_pair_count(pairs.len(), "text_2")?;
        let (scored, model) = self
            .score_as(
                &request.model,
                pairs,
                request.instruction.as_deref(),
                caller,
            )
            .await?;
        Ok(ScoreResponse {
            id: format!("score-{}", uuid::Uuid::new_v4().simple()),
            object: "list".into(),
            created: crate::unix_now(),
            model,
            data: scored
                .scores
                .iter()
                .enumerate()
                .map(|(index, &score)| ScoreData {
                    index: index as u32,
                    object: "score".into(),
                    score,
                })
                .collect(),
            usage: RerankUsage::read(scored.prompt_tokens),
        })
    }

    /// Scores pairs on the local model serving `model` for `caller`, metered; returns the
    /// scores and the model name to answer with (the route's alias when one was named).
    async fn score_as(
        &self,
        model: &str,
        pairs: Vec<(String, String)>,
        instruction: Option<&str>,
        caller: &Caller,
    ) -> Result<(PairScores, String), GatewayError> {
        let (scored, route) = if self.only_local(model) {
            self.metered_local(
                model,
                caller,
                |local, owner| async move {
                    let scored = self
                        .score_pairs_for(&local, pairs, instruction, &owner)
                        .await?;
                    Ok((scored, local))
                },
                |(scored, _)| scored.prompt_tokens as u32,
            )
            .await?
        } else {
            // Upstream: one query against every text is a rerank (Jina, Cohere, vLLM, TEI
            // behind a router); pairs with their own queries are vLLM's `/score`.
            let count = pairs.len();
            let one_query = pairs.iter().all(|(q, _)| *q == pairs[0].0);
            let documents: Vec<&str> = pairs.iter().map(|(_, d)| d.as_str()).collect();
            let (path, mut body, texts): (&'static str, serde_json::Value, &[&str]) = if one_query {
                (
                    "rerank",
                    serde_json::json!({"query": pairs[0].0, "documents": documents, "return_documents": false}),
                    &["query", "documents"],
                )
            } else {
                let queries: Vec<&str> = pairs.iter().map(|(q, _)| q.as_str()).collect();
                (
                    "score",
                    serde_json::json!({"text_1": queries, "text_2": documents}),
                    &["text_1", "text_2"],
                )
            };
            if let Some(instruction) = instruction {
                body["instruction"] = instruction.into();
            }
            let pairs = &pairs;
            self.routed_json(
                model,
                caller,
                crate::routing::JsonCall { path, body, texts },
                |local, owner| async move {
                    let scored = self
                        .score_pairs_for(&local, pairs.clone(), instruction, &owner)
                        .await?;
                    Ok((scored, local))
                },
                |answer| {
                    let scored = if one_query {
                        upstream_scores(&answer, count)?
                    } else {
                        upstream_score_data(&answer, count)?
                    };
                    Ok((scored, String::new()))
                },
                |(scored, _)| scored.prompt_tokens as u32,
            )
            .await?
        };
        let (scored, local) = scored;
        let name = if route.implicit {
            local
        } else {
            route.alias.clone()
        };
        Ok((scored, name))
    }

    fn check_pair_count(&self, count: usize, field: &str) -> Result<(), GatewayError> {
        if count == 0 {
            return Err(GatewayError::invalid(field, "must not be empty"));
        }
        let most = self.options.max_embedding_inputs;
        if count > most {
            return Err(GatewayError::invalid(
                field,
                format!(
                    "{count} texts in one request; at most {most} ([embeddings] max_inputs_per_request)"
                ),
            ));
        }
        Ok(())
    }

    /// The one cross-encoder installed, for requests that name no model.
    fn only_cross_encoder(&self) -> Result<String, GatewayError> {
        let rerankers: Vec<String> = self
            .models()?
            .into_iter()
            .filter(|m| m.kind == hearth_infer::registry::ModelKind::Rerank)
            .map(|m| m.name)
            .collect();
        match rerankers.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(GatewayError::invalid(
                "model",
                "no cross-encoder is installed: name the model to rank with (a chat or embedding model serves too)",
            )),
            several => Err(GatewayError::invalid(
                "model",
                format!(
                    "{} cross-encoders are installed ({}): name the one to rank with",
                    several.len(),
                    several.join(", ")
                ),
            )),
        }
    }
}

fn check_query(query: &str, field: &str) -> Result<(), GatewayError> {
    if query.trim().is_empty() {
        return Err(GatewayError::invalid(field, "must not be empty"));
    }
    Ok(())
}

/// Indices of `scores` best first (ties in input order), the first `top_n`.
fn ranked(scores: &[f64], top_n: Option<u32>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    if let Some(n) = top_n {
        order.truncate(n as usize);
    }
    order
}

async fn cross_encode(
    engine: &EmbedHandle,
    pairs: Vec<(String, String)>,
    owner: &str,
) -> Result<PairScores, GatewayError> {
    let activation = engine.score_activation().ok_or_else(|| {
        GatewayError::Infer(hearth_infer::InferError::Engine(
            "this model is not a cross-encoder".into(),
        ))
    })?;
    let inputs = pairs
        .into_iter()
        .map(|(query, document)| EmbedInput::Pair(query, document))
        .collect();
    let out = engine.embed_for(inputs, owner).await?;
    let raw: Vec<f64> = out
        .vectors
        .iter()
        .map(|logits| f64::from(logits[0]))
        .collect();
    let scores = out
        .vectors
        .iter()
        .map(|logits| f64::from(activation.apply(logits[0])))
        .collect();
    Ok(PairScores {
        scores,
        raw,
        prompt_tokens: out.prompt_tokens,
    })
}

async fn cosine(
    engine: &EmbedHandle,
    pairs: Vec<(String, String)>,
    owner: &str,
) -> Result<PairScores, GatewayError> {
    // Each distinct text is embedded once (a rerank request repeats its query per pair); an
    // empty text has nothing to embed, and its pair scores 0.
    let mut position: HashMap<&str, usize> = HashMap::new();
    let mut texts: Vec<EmbedInput> = Vec::new();
    for (query, document) in &pairs {
        for text in [query.as_str(), document.as_str()] {
            if !text.is_empty() && !position.contains_key(text) {
                position.insert(text, texts.len());
                texts.push(EmbedInput::Text(text.to_owned()));
            }
        }
    }
    if texts.is_empty() {
        return Ok(PairScores {
            scores: vec![0.0; pairs.len()],
            raw: vec![0.0; pairs.len()],
            prompt_tokens: 0,
        });
    }
    let out = engine.embed_for(texts, owner).await?;
    let similarity = |a: &[f32], b: &[f32]| {
        let dot: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        dot / (norm(a) * norm(b)).max(1e-12)
    };
    let scores: Vec<f64> = pairs
        .iter()
        .map(|(query, document)| {
            match (
                position.get(query.as_str()),
                position.get(document.as_str()),
            ) {
                (Some(&q), Some(&d)) => similarity(&out.vectors[q], &out.vectors[d]),
                _ => 0.0, // an empty text
            }
        })
        .collect();
    Ok(PairScores {
        raw: scores.clone(),
        scores,
        prompt_tokens: out.prompt_tokens,
    })
}

/// The one token `word` is in `engine`'s vocabulary, as the first token of an answer.
fn answer_token(engine: &LlmHandle, word: &str) -> Result<u32, GatewayError> {
    match engine.tokenize(word, false).as_slice() {
        [token] => Ok(*token),
        tokens => Err(GatewayError::invalid(
            "model",
            format!(
                "'{}' cannot judge relevance: \"{word}\" is {} tokens in its vocabulary, not one",
                engine.info().name,
                tokens.len()
            ),
        )),
    }
}

/// Each pair judged by a chat model: the log-probabilities of "yes" and "no" as the first
/// answer token after the judging prompt. At most `in_flight` pairs run at once.
async fn judge(
    engine: &LlmHandle,
    pairs: Vec<(String, String)>,
    instruction: Option<&str>,
    in_flight: usize,
    owner: &str,
) -> Result<PairScores, GatewayError> {
    let yes = answer_token(engine, "yes")?;
    let no = answer_token(engine, "no")?;
    let instruction = instruction
        .filter(|i| !i.trim().is_empty())
        .unwrap_or(DEFAULT_INSTRUCTION);
    let limit = engine.info().context_limit as usize;
    // Each prompt is rendered when its pair's turn comes, not all before the first runs.
    let judged: Vec<(Vec<f32>, usize)> = futures::stream::iter(pairs)
        .map(|(query, document)| async move {
            let prompt = judging_prompt(engine, instruction, &query, &document, limit)?;
            let generation = engine.generate_for(
                GenerateRequest {
                    prompt,
                    params: SamplingParams {
                        max_tokens: Some(1),
                        temperature: 0.0,
                        ..Default::default()
                    },
                    score: vec![yes, no],
                    ..Default::default()
                },
                owner,
            )?;
            let (logprobs, summary) = generation.logprobs().await?;
            Ok::<_, GatewayError>((logprobs, summary.prompt_tokens))
        })
        .buffered(in_flight)
        .try_collect()
        .await?;
    let mut prompt_tokens = 0;
    let mut raw = Vec::with_capacity(judged.len());
    for (logprobs, tokens) in judged {
        prompt_tokens += tokens;
        raw.push(f64::from(logprobs[0]) - f64::from(logprobs[1]));
    }
    let scores = raw.iter().map(|&d| 1.0 / (1.0 + (-d).exp())).collect();
    Ok(PairScores {
        scores,
        raw,
        prompt_tokens,
    })
}

/// The judging prompt for one pair in the model's chat template, the document cut from its
/// end until the prompt fits the context.
fn judging_prompt(
    engine: &LlmHandle,
    instruction: &str,
    query: &str,
    document: &str,
    limit: usize,
) -> Result<Vec<u32>, GatewayError> {
    let render = |document: &str| -> Result<Vec<u32>, GatewayError> {
        let messages = [
            ChatMessage::new("system", JUDGE),
            ChatMessage::new(
                "user",
                format!("<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"),
            ),
        ];
        let mut kwargs = serde_json::Map::new();
        kwargs.insert("enable_thinking".into(), serde_json::Value::Bool(false));
        let prompt = engine
            .template()
            .render_with(&messages, None, true, Some(&kwargs))?;
        Ok(engine.tokenize_chat(&prompt))
    };
    let prompt = render(document)?;
    if prompt.len() < limit {
        return Ok(prompt);
    }
    let doc_tokens = engine.tokenize(document, false);
    let over = prompt.len() + 1 - limit;
    if over >= doc_tokens.len() {
        return Err(GatewayError::invalid(
            "query",
            format!(
                "the judging prompt takes {} tokens without the document; the model's context holds {limit}",
                prompt.len() - doc_tokens.len()
            ),
        ));
    }
    // Detokenizing and tokenizing again can merge pieces differently: cut a little more.
    let keep = doc_tokens.len() - over - 8.min(doc_tokens.len() - over);
    let prompt = render(&engine.detokenize(&doc_tokens[..keep]))?;
    if prompt.len() < limit {
        Ok(prompt)
    } else {
        Err(GatewayError::invalid(
            "documents",
            "a document could not be cut to fit the model's context",
        ))
    }
}

/// The scores of an upstream's `/rerank` answer (Jina's, Cohere's, vLLM's shape:
/// `results[].index` and `relevance_score`, tokens in `usage`), one per document.
fn upstream_scores(answer: &serde_json::Value, documents: usize) -> Result<PairScores, String> {
    let results = answer["results"]
        .as_array()
        .ok_or("no `results` array in the answer")?;
    let mut scores = vec![f64::NAN; documents];
    for result in results {
        let index = result["index"]
            .as_u64()
            .ok_or("a result without an `index`")? as usize;
        let score = result["relevance_score"]
            .as_f64()
            .ok_or("a result without a `relevance_score`")?;
        *scores
            .get_mut(index)
            .ok_or_else(|| format!("a result for document {index} of {documents}"))? = score;
    }
    if let Some(missing) = scores.iter().position(|s| s.is_nan()) {
        return Err(format!("no score for document {missing}"));
    }
    let usage = &answer["usage"];
    let tokens = usage["prompt_tokens"]
        .as_u64()
        .or_else(|| usage["total_tokens"].as_u64())
        .unwrap_or(0);
    Ok(PairScores {
        raw: scores.clone(),
        scores,
        prompt_tokens: tokens as usize,
    })
}

/// vLLM's `/score` answer (`data[].index`, `data[].score`) as the scores of `count` pairs.
fn upstream_score_data(answer: &serde_json::Value, count: usize) -> Result<PairScores, String> {
    let data = answer["data"]
        .as_array()
        .ok_or("no `data` array in the answer")?;
    let mut scores = vec![f64::NAN; count];
    for item in data {
        let index = item["index"].as_u64().ok_or("a score without an `index`")? as usize;
        let score = item["score"].as_f64().ok_or("an item without a `score`")?;
        *scores
            .get_mut(index)
            .ok_or_else(|| format!("a score for pair {index} of {count}"))? = score;
    }
    if let Some(missing) = scores.iter().position(|s| s.is_nan()) {
        return Err(format!("no score for pair {missing}"));
    }
    let tokens = answer["usage"]["prompt_tokens"]
        .as_u64()
        .or_else(|| answer["usage"]["total_tokens"].as_u64())
        .unwrap_or(0);
    Ok(PairScores {
        raw: scores.clone(),
        scores,
        prompt_tokens: tokens as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::{ranked, stage_order};

    #[test]
    fn ranking_is_best_first_with_ties_in_input_order() {
        assert_eq!(ranked(&[0.1, 0.9, 0.5, 0.9], None), [1, 3, 2, 0]);
        assert_eq!(ranked(&[0.1, 0.9, 0.5, 0.9], Some(2)), [1, 3]);
        assert_eq!(ranked(&[0.1], Some(5)), [0]);
        assert!(ranked(&[], None).is_empty());
    }

    #[test]
    fn a_fused_stage_keeps_what_both_orders_agree_on() {
        // The reranker alone would put the first stage's last candidate first.
        let scores = [0.2, 0.1, 0.3, 0.9];
        assert_eq!(stage_order(&scores, false), [3, 2, 0, 1]);
        // Fused, 1/(K + first rank) + 1/(K + reranker rank): 0 = 1/61 + 1/63 first, then
        // 3 = 1/64 + 1/61, 2 = 1/63 + 1/62, 1 = 1/62 + 1/64.
        assert_eq!(stage_order(&scores, true), [0, 3, 2, 1]);
        assert!(stage_order(&[], true).is_empty());
    }
}
