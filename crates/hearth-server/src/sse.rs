//! The one server-sent-events relay every streaming route uses.
//!
//! A producer task writes events into a bounded channel; the response body reads them out. A
//! slow client makes the producer wait (never a growing buffer), and a client that hangs up
//! drops the receiver, so the producer's next send fails and it stops — for a generation that
//! drops its stream, which cancels it in the engine. Every stream ends with `data: [DONE]`.

use std::convert::Infallible;
use std::future::Future;

use axum::response::sse::{Event, KeepAlive, Sse};
use hearth_types::StreamError;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::ApiError;

/// Events a client may fall behind by before the producer waits for it.
pub const RELAY_CAPACITY: usize = 64;

/// The client went away: the producer should stop.
#[derive(Debug, Clone, Copy)]
pub struct Gone;

/// Where a producer writes its events.
#[derive(Clone)]
pub struct Relay {
    tx: mpsc::Sender<Event>,
}

impl Relay {
    /// Sends `value` as one event's JSON data.
    pub async fn json<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Gone> {
        let data = serde_json::to_string(value).expect("plain data serializes");
        self.data(data).await
    }

    /// Sends one event with `data` as it is.
    pub async fn data(&self, data: impl Into<String>) -> Result<(), Gone> {
        self.tx
            .send(Event::default().data(data.into()))
            .await
            .map_err(|_| Gone)
    }

    /// Sends `event` as it is (a named event: the Messages API's).
    pub async fn event(&self, event: Event) -> Result<(), Gone> {
        self.tx.send(event).await.map_err(|_| Gone)
    }

    /// Sends `error` in the API's error shape, marked `"type": "error"`.
    pub async fn error(&self, error: &ApiError) -> Result<(), Gone> {
        self.json(&error_event(error)).await
    }
}

/// Turns a chat answer's events into another API's named events (the Messages and
/// Responses APIs' streams): [`relay_chat`] drives it.
pub trait ChatTranslation {
    /// The events one chat delta is.
    fn delta(&mut self, delta: hearth_types::ChunkDelta) -> Vec<Event>;
    /// The last events, once the answer is finished.
    fn finish(
        &mut self,
        finish_reason: &str,
        usage: hearth_types::Usage,
        summary: &hearth_infer::llm::GenerationSummary,
    ) -> Vec<Event>;
    /// The event that ends a stream whose answer failed.
    fn failure(&mut self, error: ApiError) -> Event;
}

/// Relays `stream` through `translation` until the answer finishes or fails, recording the
/// generation's metrics as the chat routes do.
pub async fn relay_chat(
    out: &Relay,
    metrics: &crate::metrics::Metrics,
    stream: &mut hearth_gateway::ChatStream,
    translation: &mut impl ChatTranslation,
) -> Result<(), Gone> {
    while let Some(event) = stream.next().await {
        match event {
            hearth_gateway::ChatEvent::Delta(delta) => {
                for event in translation.delta(delta) {
                    out.event(event).await?;
                }
            }
            hearth_gateway::ChatEvent::Finished {
                finish_reason,
                usage,
                summary,
            } => {
                metrics.record_generation(&stream.model, &summary);
                for event in translation.finish(&finish_reason, usage, &summary) {
                    out.event(event).await?;
                }
                break;
            }
            hearth_gateway::ChatEvent::Failed(e) => {
                out.event(translation.failure(ApiError::from(e))).await?;
                break;
            }
        }
    }
    Ok(())
}

/// A failure inside a stream: `{"error":{message,type,param,code},"type":"error"}`, the body a
/// non-streamed request would have had, so clients read one error shape either way.
fn error_event(error: &ApiError) -> StreamError {
    StreamError {
        error: error.body().error,
        kind: "error".into(),
    }
}

/// Answers with the events `produce` sends, followed by `[DONE]` (unless the client left).
/// `produce` runs on its own task, so it keeps going between the client's reads.
pub fn relay<F, Fut>(produce: F) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>>
where
    F: FnOnce(Relay) -> Fut,
    Fut: Future<Output = Result<(), Gone>> + Send + 'static,
{
    relay_ending(produce, true)
}

/// [`relay`] for a stream of named events whose last one says it is the last (the Messages
/// API's `message_stop`): no `[DONE]` after it.
pub fn relay_named<F, Fut>(
    produce: F,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>>
where
    F: FnOnce(Relay) -> Fut,
    Fut: Future<Output = Result<(), Gone>> + Send + 'static,
{
    relay_ending(produce, false)
}

fn relay_ending<F, Fut>(
    produce: F,
    done_line: bool,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>>
where
    F: FnOnce(Relay) -> Fut,
    Fut: Future<Output = Result<(), Gone>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(RELAY_CAPACITY);
    let relay = Relay { tx };
    let done = relay.clone();
    let work = produce(relay);
    tokio::spawn(async move {
        if work.await.is_ok() && done_line {
            let _ = done.data("[DONE]").await;
        }
    });
    Sse::new(futures::StreamExt::map(ReceiverStream::new(rx), Ok)).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;
    use http_body_util::BodyExt;
    use serde_json::{json, Value};

    #[tokio::test]
    async fn events_arrive_in_order_then_done() {
        let sse = relay(|out| async move {
            out.json(&json!({"n": 1})).await?;
            out.data("two").await?;
            out.error(&ApiError::new(hearth_types::ErrorCode::Overloaded, "busy"))
                .await
        });
        let body = sse.into_response().into_body().collect().await.unwrap();
        let text = String::from_utf8(body.to_bytes().to_vec()).unwrap();
        let data: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        assert_eq!(data.len(), 4, "{text}");
        assert_eq!(data[0], r#"{"n":1}"#);
        assert_eq!(data[1], "two");
        let error: Value = serde_json::from_str(data[2]).unwrap();
        assert_eq!(error["type"], "error");
        assert_eq!(error["error"]["code"], "overloaded");
        assert_eq!(data[3], "[DONE]");
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_holds_the_producer_back_and_leaving_stops_it() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let sent = Arc::new(AtomicUsize::new(0));
        let (ended_tx, ended_rx) = tokio::sync::oneshot::channel();
        let counter = sent.clone();
        let sse = relay(move |out| async move {
            let result = loop {
                if let Err(gone) = out.data("x").await {
                    break Err(gone);
                }
                counter.fetch_add(1, Ordering::SeqCst);
            };
            let _ = ended_tx.send(());
            result
        });
        // Nobody reads: the producer fills the channel and waits.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(sent.load(Ordering::SeqCst), RELAY_CAPACITY);
        // The client leaves: the waiting send fails and the producer ends.
        drop(sse);
        tokio::time::timeout(std::time::Duration::from_secs(5), ended_rx)
            .await
            .expect("the producer kept going after the client left")
            .unwrap();
    }
}
