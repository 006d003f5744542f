//! Calls to OpenAI-compatible upstream endpoints: one pooled HTTP client per provider, the
//! request sent as the client wrote it (model renamed, personal data redacted on `redact`
//! routes), the answer relayed chunk by chunk as it arrives.

use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures::StreamExt;
use hearth_infer::llm::{FinishReason, GenerationSummary};
use hearth_types::{ChatCompletionChunk, ChatCompletionResponse, ChunkDelta, ToolCallDelta, Usage};
use tokio::sync::mpsc;

use crate::config::ProviderConfig;
use crate::privacy::{Redactor, StreamRestorer};
use crate::{ChatEvent, GatewayError};

/// An OpenAI-compatible endpoint.
#[derive(Debug)]
pub(crate) struct Upstream {
    base_url: String,
    key: Option<String>,
    timeout: Duration,
    client: reqwest::Client,
    /// Forward the fields beyond OpenAI's ([`EXTENSION_FIELDS`]).
    extensions: bool,
}

/// Request fields vLLM and llama-server accept that OpenAI's API refuses.
pub(crate) const EXTENSION_FIELDS: [&str; 4] =
    ["top_k", "min_p", "ignore_eos", "chat_template_kwargs"];

/// Whether a provider takes [`EXTENSION_FIELDS`] when its config does not say.
fn takes_extensions(base_url: &str) -> bool {
    let host = reqwest::Url::parse(base_url)
        .ok()
        .and_then(|url| url.host_str().map(str::to_ascii_lowercase));
    host.as_deref() != Some("api.openai.com")
}

/// Why an upstream call did not start.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Worth another try or another deployment: no connection, timeout, 5xx, 429.
    Retryable(String),
    /// The upstream refused the request itself (4xx): another deployment would too.
    Rejected { status: u16, message: String },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Retryable(m) => f.write_str(m),
            Failure::Rejected { status, message } => write!(f, "HTTP {status}: {message}"),
        }
    }
}

/// A started upstream text completion.
pub(crate) enum CompletionAnswer {
    /// One answer per prompt, in order; the request's usage on the first.
    Whole(Vec<ChatCompletionResponse>),
    Stream(reqwest::Response),
}

/// A started upstream answer.
pub(crate) enum Answer {
    Whole(Box<ChatCompletionResponse>),
    Stream(reqwest::Response),
}

impl Upstream {
    pub fn new(config: &ProviderConfig) -> Result<Self, GatewayError> {
        let key = match &config.api_key_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                GatewayError::Config(format!(
                    "provider '{}': environment variable {var} (api_key_env) is not set",
                    config.name
                ))
            })?),
            None => None,
        };
        if !(config.timeout_seconds > 0.0 && config.timeout_seconds.is_finite()) {
            return Err(GatewayError::Config(format!(
                "provider '{}': timeout_seconds must be > 0",
                config.name
            )));
        }
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(GatewayError::Config(format!(
                "provider '{}': base_url must start with http:// or https://, got '{}'",
                config.name, config.base_url
            )));
        }
        let timeout = Duration::from_secs_f64(config.timeout_seconds);
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| GatewayError::Config(format!("provider '{}': {e}", config.name)))?;
        Ok(Upstream {
            extensions: config
                .extensions
                .unwrap_or_else(|| takes_extensions(&base_url)),
            base_url,
            key,
            timeout,
            client,
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends `body` (an OpenAI chat request) and waits for the answer to start: the whole
    /// answer when not streaming, the response head when streaming.
    pub async fn chat(&self, body: &serde_json::Value, stream: bool) -> Result<Answer, Failure> {
        let response = self.send("chat/completions", body).await?;
        // Some servers answer a streaming request with one JSON body: take it whole.
        if stream && !is_json(&response) {
            return Ok(Answer::Stream(response));
        }
        let bytes = self.read_body(response).await?;
        let answer: ChatCompletionResponse = serde_json::from_slice(bytes.as_ref())
            .map_err(|e| Failure::Retryable(format!("not an OpenAI chat completion: {e}")))?;
        Ok(Answer::Whole(Box::new(answer)))
    }

    /// Sends `body` (an OpenAI text-completion request) and waits for the answer to start:
    /// the whole answer (its choices read as chat messages) when not streaming, the response
    /// head when streaming (read with [`relay_stream`]'s `text`).
    pub async fn completion(
        &self,
        body: &serde_json::Value,
        stream: bool,
    ) -> Result<CompletionAnswer, Failure> {
        let response = self.send("completions", body).await?;
        if stream && !is_json(&response) {
            return Ok(CompletionAnswer::Stream(response));
        }
        let bytes = self.read_body(response).await?;
        let mut answer: serde_json::Value = serde_json::from_slice(bytes.as_ref())
            .map_err(|e| Failure::Retryable(format!("not a JSON answer from /completions: {e}")))?;
        let usage: Usage = serde_json::from_value(answer["usage"].take()).unwrap_or_default();
        let mut choices: Vec<(u32, ChatCompletionResponse)> = Vec::new();
        for mut choice in answer["choices"]
            .as_array_mut()
            .map(std::mem::take)
            .unwrap_or_default()
        {
            let index = choice["index"].as_u64().unwrap_or(choices.len() as u64) as u32;
            let Some(text) = choice["text"].as_str().map(str::to_owned) else {
                return Err(Failure::Retryable(
                    "not an OpenAI text completion: a choice has no text".into(),
                ));
            };
            choices.push((
                index,
                ChatCompletionResponse {
                    id: String::new(),
                    object: "chat.completion".into(),
                    created: 0,
                    model: String::new(),
                    choices: vec![hearth_types::ChatChoice {
                        index: 0,
                        message: hearth_types::AssistantMessage {
                            role: "assistant".into(),
                            content: Some(text),
                            reasoning_content: None,
                            tool_calls: None,
                            refusal: None,
                        },
                        finish_reason: choice["finish_reason"].take().as_str().map(str::to_owned),
                        logprobs: None,
                    }],
                    usage: Usage::default(),
                    system_fingerprint: None,
                },
            ));
        }
        choices.sort_by_key(|c| c.0);
        let mut choices: Vec<ChatCompletionResponse> = choices.into_iter().map(|c| c.1).collect();
        // The whole request's usage goes with the first prompt's answer.
        match choices.first_mut() {
            Some(first) => first.usage = usage,
            None => {
                return Err(Failure::Retryable(
                    "not an OpenAI text completion: no choices".into(),
                ))
            }
        }
        Ok(CompletionAnswer::Whole(choices))
    }

    /// Posts `body` to `path` (`embeddings`, `rerank` …) and reads the whole JSON answer.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, Failure> {
        let response = self.send(path, body).await?;
        let bytes = self.read_body(response).await?;
        serde_json::from_slice(bytes.as_ref())
            .map_err(|e| Failure::Retryable(format!("not a JSON answer from /{path}: {e}")))
    }

    /// The whole body of an answer, within the provider's timeout.
    async fn read_body(&self, response: reqwest::Response) -> Result<impl AsRef<[u8]>, Failure> {
        tokio::time::timeout(self.timeout, response.bytes())
            .await
            .map_err(|_| {
                Failure::Retryable(format!("answer not complete within {:?}", self.timeout))
            })?
            .map_err(|e| Failure::Retryable(format!("answer cut: {e}")))
    }

    /// Posts `body` (the extension fields left out where the provider refuses them) and
    /// waits for the response head: a non-2xx answer is a [`Failure`].
    async fn send(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<reqwest::Response, Failure> {
        let mut request = self.client.post(format!("{}/{path}", self.base_url));
        request = match body.as_object() {
            Some(fields) if !self.extensions => {
                let mut fields = fields.clone();
                fields.retain(|key, _| !EXTENSION_FIELDS.contains(&key.as_str()));
                request.json(&fields)
            }
            _ => request.json(body),
        };
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        let response = tokio::time::timeout(self.timeout, request.send())
            .await
            .map_err(|_| Failure::Retryable(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| Failure::Retryable(format!("cannot reach {}: {e}", self.base_url)))?;
        let status = response.status();
        if !status.is_success() {
            let text = tokio::time::timeout(self.timeout, response.text())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            let message = error_message(&text);
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                Failure::Retryable(format!("HTTP {}: {message}", status.as_u16()))
            } else {
                Failure::Rejected {
                    status: status.as_u16(),
                    message,
                }
            });
        }
        Ok(response)
    }
}

/// Whether an answer is one JSON body (not a stream of events).
fn is_json(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The `error.message` of an OpenAI-shaped error body, or the body itself (shortened).
fn error_message(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| text.chars().take(300).collect())
}

/// Restores placeholders in streamed text and tool-call arguments.
pub(crate) struct Restoring {
    content: StreamRestorer,
    reasoning: StreamRestorer,
    arguments: Vec<StreamRestorer>,
    redactor: Redactor,
}

impl Restoring {
    pub fn new(redactor: Redactor) -> Self {
        Restoring {
            content: redactor.stream_restorer(),
            reasoning: redactor.stream_restorer(),
            arguments: Vec::new(),
            redactor,
        }
    }

    fn delta(&mut self, mut delta: ChunkDelta) -> ChunkDelta {
        if let Some(text) = delta.content.take() {
            delta.content = Some(self.content.push(&text));
        }
        if let Some(text) = delta.reasoning_content.take() {
            delta.reasoning_content = Some(self.reasoning.push(&text));
        }
        for call in delta.tool_calls.iter_mut().flatten() {
            let index = call.index as usize;
            while self.arguments.len() <= index {
                self.arguments.push(self.redactor.stream_restorer());
            }
            if let Some(args) = call.function.arguments.take() {
                call.function.arguments = Some(self.arguments[index].push(&args));
            }
        }
        delta
    }

    /// What the restorers still hold, as a last delta.
    fn finish(&mut self) -> Option<ChunkDelta> {
        let content = self.content.finish();
        let reasoning = self.reasoning.finish();
        let calls: Vec<ToolCallDelta> = self
            .arguments
            .iter_mut()
            .enumerate()
            .filter_map(|(index, r)| {
                let rest = r.finish();
                (!rest.is_empty()).then_some(ToolCallDelta {
                    index: index as u32,
                    id: None,
                    kind: None,
                    function: hearth_types::FunctionCallDelta {
                        name: None,
                        arguments: Some(rest),
                    },
                })
            })
            .collect();
        (!content.is_empty() || !reasoning.is_empty() || !calls.is_empty()).then(|| ChunkDelta {
            content: (!content.is_empty()).then_some(content),
            reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
            tool_calls: (!calls.is_empty()).then_some(calls),
            ..Default::default()
        })
    }

    fn whole(&self, text: &str) -> String {
        self.redactor.restore(text)
    }
}

fn summary(
    finish: &str,
    usage: Usage,
    started: Instant,
    first: Option<Duration>,
) -> GenerationSummary {
    GenerationSummary {
        finish_reason: if finish == "length" {
            FinishReason::Length
        } else {
            FinishReason::Stop
        },
        prompt_tokens: usage.prompt_tokens as usize,
        cached_prompt_tokens: 0,
        completion_tokens: usage.completion_tokens as usize,
        queued: Duration::ZERO,
        time_to_first_token: first.unwrap_or_else(|| started.elapsed()),
        total: started.elapsed(),
        // An OpenAI-compatible upstream does not say which stop string it met.
        stop_sequence: None,
    }
}

/// A whole (non-streamed) answer as events: its message in one delta, then the end.
pub(crate) async fn relay_whole(
    answer: ChatCompletionResponse,
    restoring: Option<Restoring>,
    started: Instant,
    tx: mpsc::Sender<ChatEvent>,
) {
    let Some(choice) = answer.choices.into_iter().next() else {
        let _ = tx
            .send(ChatEvent::Failed(GatewayError::Upstream(
                "the upstream answer has no choices".into(),
            )))
            .await;
        return;
    };
    let restore = |text: String| match &restoring {
        Some(r) => r.whole(&text),
        None => text,
    };
    let message = choice.message;
    let delta = ChunkDelta {
        role: None,
        content: message.content.map(restore),
        reasoning_content: message.reasoning_content.map(restore),
        tool_calls: message.tool_calls.map(|calls| {
            calls
                .into_iter()
                .enumerate()
                .map(|(index, call)| ToolCallDelta {
                    index: index as u32,
                    id: Some(call.id),
                    kind: Some(call.kind),
                    function: hearth_types::FunctionCallDelta {
                        name: Some(call.function.name),
                        arguments: Some(restore(call.function.arguments)),
                    },
                })
                .collect()
        }),
    };
    let elapsed = started.elapsed();
    let _ = tx.send(ChatEvent::Delta(delta)).await;
    let finish = choice.finish_reason.unwrap_or_else(|| "stop".into());
    let summary = summary(&finish, answer.usage, started, Some(elapsed));
    let _ = tx
        .send(ChatEvent::Finished {
            finish_reason: finish,
            usage: answer.usage,
            summary,
        })
        .await;
}

/// A streamed answer as events, chunk by chunk. A stream that stops before its end (the
/// upstream dropped it, or went quiet for longer than the timeout) ends with `Failed`.
pub(crate) async fn relay_stream(
    response: reqwest::Response,
    mut restoring: Option<Restoring>,
    idle: Duration,
    started: Instant,
    tx: mpsc::Sender<ChatEvent>,
    text: bool,
) {
    let mut events = response.bytes_stream().eventsource();
    let mut finish: Option<String> = None;
    let mut usage: Option<Usage> = None;
    let mut first: Option<Duration> = None;
    let end = loop {
        let event = match tokio::time::timeout(idle, events.next()).await {
            Err(_) => break Err(format!("the upstream stream went quiet for {idle:?}")),
            Ok(None) => break Ok(()),
            Ok(Some(Err(e))) => break Err(format!("the upstream stream broke: {e}")),
            Ok(Some(Ok(event))) => event,
        };
        if event.data.trim() == "[DONE]" {
            break Ok(());
        }
        let parsed = if text {
            serde_json::from_str(&event.data).and_then(|v| serde_json::from_value(text_chunk(v)))
        } else {
            serde_json::from_str(&event.data)
        };
        let chunk: ChatCompletionChunk = match parsed {
            Ok(chunk) => chunk,
            Err(_) => {
                let message = error_message(&event.data);
                break Err(format!("the upstream sent an error mid-stream: {message}"));
            }
        };
        if let Some(Some(u)) = chunk.usage {
            usage = Some(u);
        }
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(reason) = choice.finish_reason {
                finish = Some(reason);
            }
            let mut delta = choice.delta;
            delta.role = None;
            if let Some(r) = restoring.as_mut() {
                delta = r.delta(delta);
            }
            let empty = delta.content.as_deref().is_none_or(str::is_empty)
                && delta.tool_calls.as_ref().is_none_or(Vec::is_empty);
            if empty {
                continue;
            }
            first.get_or_insert_with(|| started.elapsed());
            if tx.send(ChatEvent::Delta(delta)).await.is_err() {
                return; // the client left: dropping the response closes the upstream call
            }
        }
    };
    let finish = match (end, finish) {
        (Ok(()), Some(finish)) => Ok(finish),
        (Ok(()), None) => Err("the upstream stream ended before its answer was complete".into()),
        (Err(message), _) => Err(message),
    };
    // What the restorer held back (a possible placeholder's start) is text the client has not
    // seen yet: it goes out before the end, or before the error.
    if let Some(rest) = restoring.as_mut().and_then(Restoring::finish) {
        let _ = tx.send(ChatEvent::Delta(rest)).await;
    }
    let finish = match finish {
        Ok(finish) => finish,
        Err(message) => {
            let _ = tx
                .send(ChatEvent::Failed(GatewayError::Upstream(message)))
                .await;
            return;
        }
    };
    let usage = usage.unwrap_or_default();
    let summary = summary(&finish, usage, started, first);
    let _ = tx
        .send(ChatEvent::Finished {
            finish_reason: finish,
            usage,
            summary,
        })
        .await;
}

/// A text-completion chunk (`choices[].text`) in a chat chunk's shape (`choices[].delta.content`).
fn text_chunk(mut chunk: serde_json::Value) -> serde_json::Value {
    if let Some(choices) = chunk["choices"].as_array_mut() {
        for choice in choices {
            let text = choice["text"].take();
            choice["delta"] = serde_json::json!({ "content": text });
        }
    }
    for (field, empty) in [("id", ""), ("object", "text_completion"), ("model", "")] {
        if chunk.get(field).is_none_or(|v| !v.is_string()) {
            chunk[field] = empty.into();
        }
    }
    if chunk.get("created").is_none_or(|v| !v.is_u64()) {
        chunk["created"] = 0.into();
    }
    chunk
}

#[cfg(test)]
mod tests {
    use super::{takes_extensions, text_chunk};

    #[test]
    fn a_text_completion_chunk_reads_as_a_chat_chunk() {
        let chunk = serde_json::json!({"object": "text_completion", "choices": [
            {"index": 0, "text": "Hel", "finish_reason": null, "logprobs": null}]});
        let chunk: hearth_types::ChatCompletionChunk =
            serde_json::from_value(text_chunk(chunk)).unwrap();
        assert_eq!(chunk.choices[0].delta.content.as_deref(), Some("Hel"));
        assert_eq!(chunk.choices[0].finish_reason, None);
        let last = serde_json::json!({"id": "c", "created": 5, "model": "m", "choices": [
            {"index": 0, "text": "", "finish_reason": "length"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}});
        let last: hearth_types::ChatCompletionChunk =
            serde_json::from_value(text_chunk(last)).unwrap();
        assert_eq!(last.choices[0].finish_reason.as_deref(), Some("length"));
        assert_eq!(last.usage.flatten().map(|u| u.completion_tokens), Some(2));
    }

    #[test]
    fn only_openais_own_api_is_assumed_to_refuse_extension_fields() {
        assert!(!takes_extensions("https://api.openai.com/v1"));
        assert!(!takes_extensions("https://API.OpenAI.com:443/v1"));
        assert!(takes_extensions("http://10.0.0.5:8000/v1"));
        assert!(takes_extensions("https://api.openai.com.example.net/v1"));
    }
}
