//! The recommendation engine's use cases: recommend (per user, per anonymous session),
//! similar items, search, the shopping assistant, and the catalogue and event writes.
//!
//! Every front end calls these: the HTTP handlers parse a request, call one method and shape
//! the answer; the CLI calls the same methods. Each method checks its own inputs (an error
//! names the field), reads the store and scores on blocking threads, never on the async
//! workers.

use std::sync::Arc;

use hearth_gateway::rerank::RerankStage;
use hearth_infer::registry::ModelKind;
use hearth_recs::assistant::{AssistRequest, AssistantEvent, Suggestion, Wish};
use hearth_recs::serve::{ItemFilter, Recommendation, Recommender};
use hearth_recs::store::WriteCounts;
use hearth_recs::{limits, Event, Item, ItemId, RecsError, User, UserId};
use hearth_types::schema;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::openapi::schema::ObjectBuilder;
use utoipa::ToSchema;

use crate::Platform;

/// Most items one request may ask for.
pub const MAX_N: usize = 500;
/// Most recent events of a user that shape their recommendations.
pub const HISTORY: usize = 500;
/// Most events an anonymous session may carry (the newest count most).
pub const MAX_SESSION_EVENTS: usize = 1_000;
/// Most records one write may carry.
pub const MAX_BATCH: usize = 10_000;
/// Catalogue items the assistant may offer its model.
pub const MAX_ASSISTANT_CANDIDATES: usize = 10;

/// Ranked items and the model version that ranked them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecommendationList {
    /// Always `list`.
    #[schema(schema_with = list_object)]
    pub object: &'static str,
    /// Version of the published model that answered.
    pub model_version: u64,
    /// Whether embedding similarity joined the text match (search only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hybrid: Option<bool>,
    pub data: Vec<Recommendation>,
}

impl RecommendationList {
    fn new(recommender: &Recommender, data: Vec<Recommendation>) -> Self {
        RecommendationList {
            object: "list",
            model_version: recommender.version(),
            hybrid: None,
            data,
        }
    }
}

fn list_object() -> ObjectBuilder {
    schema::fixed("list")
}

/// One event of an anonymous visitor's session.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionEvent {
    #[schema(value_type = ItemId)]
    pub item: String,
    /// `view` when absent.
    #[serde(default = "view", rename = "type")]
    #[schema(schema_with = session_event_type)]
    pub kind: String,
}

fn view() -> String {
    "view".into()
}

/// A text query for [`Platform::search`].
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub query: String,
    pub n: usize,
    /// Personalise: this user's history reorders the matches.
    pub user: Option<String>,
    pub filter: ItemFilter,
}

/// A query whose right answers are known, for [`Platform::search_eval`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchLabel {
    pub query: String,
    /// The items that answer it (any one of them counts).
    pub items: Vec<String>,
    /// Search as this user (their history reorders the matches).
    #[serde(default)]
    pub user: Option<String>,
}

/// Reads labelled search queries: JSONL, one `{"query", "items": [...]}` per line (blank
/// lines skipped); a bad line is an error naming the file and line.
pub fn read_search_labels(path: &std::path::Path) -> Result<Vec<SearchLabel>, RecsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid("labels", format!("cannot read {}: {e}", path.display())))?;
    let mut labels = Vec::new();
    for (line, row) in text.lines().enumerate() {
        if row.trim().is_empty() {
            continue;
        }
        let at = |message: String| {
            invalid(
                "labels",
                format!("{}, line {}: {message}", path.display(), line + 1),
            )
        };
        let label: SearchLabel = serde_json::from_str(row).map_err(|e| at(e.to_string()))?;
        if label.query.trim().is_empty() {
            return Err(at("'query' must not be empty".into()));
        }
        if label.items.is_empty() {
            return Err(at("'items' must name at least one item".into()));
        }
        labels.push(label);
    }
    if labels.is_empty() {
        return Err(invalid(
            "labels",
            format!("{} holds no labelled queries", path.display()),
        ));
    }
    Ok(labels)
}

/// How well catalogue search finds the items labelled for each query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchReport {
    pub queries: usize,
    pub k: usize,
    /// The reranker, if a second stage ran.
    pub rerank: Option<String>,
    /// Whether its order was fused with the hybrid ranking's.
    pub fused: bool,
    /// Share of queries whose first item is a labelled one.
    pub hit_at_1: f64,
    /// Share of queries with a labelled item among the first `k`.
    pub recall_at_k: f64,
    /// Mean of 1 / rank of the first labelled item (0 beyond `k`).
    pub mrr_at_k: f64,
    /// Mean seconds per search.
    pub seconds_per_query: f64,
}

/// A shopper's wish for [`Platform::assist`].
#[derive(Debug, Clone, Default)]
pub struct AssistantAsk {
    pub wish: String,
    pub user: Option<String>,
    /// Default `[recs] assistant_model`, else the first chat model registered.
    pub model: Option<String>,
    /// Items offered to the model, 1 to [`MAX_ASSISTANT_CANDIDATES`].
    pub candidates: usize,
    pub filter: ItemFilter,
}

/// A running assistant turn: its events, then how it ended.
pub struct AssistantTurn {
    pub events: mpsc::Receiver<AssistantEvent>,
    pub done: tokio::task::JoinHandle<Result<(), RecsError>>,
}

/// A whole assistant answer (the events of a turn, gathered).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AssistantAnswer {
    /// Always `assistant.answer`.
    #[schema(schema_with = answer_object)]
    pub object: &'static str,
    pub answer: String,
    /// The constraints the model read from the wish.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraints: Option<Wish>,
    /// Whether constraints were dropped because they matched nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relaxed: Option<bool>,
    /// The catalogue items the answer could name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidates: Option<Vec<Suggestion>>,
    /// The items it named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<ItemId>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<hearth_types::Usage>,
}

fn answer_object() -> ObjectBuilder {
    schema::fixed("assistant.answer")
}

impl AssistantTurn {
    /// Waits for the whole answer.
    pub async fn answer(mut self) -> Result<AssistantAnswer, RecsError> {
        let mut answer = AssistantAnswer {
            object: "assistant.answer",
            answer: String::new(),
            constraints: None,
            relaxed: None,
            candidates: None,
            items: None,
            usage: None,
        };
        while let Some(event) = self.events.recv().await {
            match event {
                AssistantEvent::Constraints { wish, relaxed } => {
                    answer.constraints = Some(wish);
                    answer.relaxed = Some(relaxed);
                }
                AssistantEvent::Items { items } => answer.candidates = Some(items),
                AssistantEvent::Delta { text } => answer.answer.push_str(&text),
                AssistantEvent::Done { items, usage } => {
                    answer.items = Some(items);
                    answer.usage = Some(usage);
                }
            }
        }
        self.done
            .await
            .map_err(|e| RecsError::Assistant(format!("the assistant task failed: {e}")))??;
        Ok(answer)
    }
}

/// An event to store, as a client sends it: the id and the time may be left out.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    /// Makes retries safe: an id already stored is not stored again. Default: a new id.
    #[serde(default)]
    #[schema(schema_with = event_id)]
    pub id: Option<String>,
    #[schema(value_type = UserId)]
    pub user: String,
    #[schema(value_type = ItemId)]
    pub item: String,
    /// view, click, save, cart, purchase, rating, or the company's own.
    #[serde(rename = "type")]
    #[schema(schema_with = event_type)]
    pub kind: String,
    #[serde(default)]
    pub value: Option<f64>,
    /// Unix seconds. Default: now.
    #[serde(default, deserialize_with = "hearth_types::whole::opt")]
    pub timestamp: Option<i64>,
}

/// view, click, save, cart, purchase, rating, or the company's own: not only spaces, no
/// control characters.
fn event_type() -> ObjectBuilder {
    schema::non_empty_string()
        .pattern(Some(schema::NAME))
        .max_length(Some(limits::MAX_EVENT_TYPE_CHARS))
}

fn event_id() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .item(hearth_recs::data::id_schema())
        .into()
}

fn session_event_type() -> ObjectBuilder {
    event_type().default(Some("view".into()))
}

fn invalid(param: impl Into<String>, message: impl Into<String>) -> RecsError {
    RecsError::InvalidParameter {
        param: param.into(),
        message: message.into(),
    }
}

/// `n` within 1 to [`MAX_N`].
pub fn check_n(n: usize) -> Result<usize, RecsError> {
    if n == 0 || n > MAX_N {
        return Err(invalid("n", format!("'n' must be between 1 and {MAX_N}")));
    }
    Ok(n)
}

fn check_batch(len: usize, field: &str) -> Result<(), RecsError> {
    if len == 0 || len > MAX_BATCH {
        return Err(invalid(
            field,
            format!("'{field}' must hold 1 to {MAX_BATCH} records"),
        ));
    }
    Ok(())
}

/// A batch of records to write: its size, and every field within its limit
/// ([`hearth_recs::limits`]); the error names the record and its field (`items[3].title`).
fn check_records<T>(
    field: &str,
    records: &[T],
    check: impl Fn(&T) -> Result<(), limits::FieldError>,
) -> Result<(), RecsError> {
    check_batch(records.len(), field)?;
    for (k, record) in records.iter().enumerate() {
        check(record).map_err(|e| {
            let path = if e.field.is_empty() {
                format!("{field}[{k}]")
            } else {
                format!("{field}[{k}].{}", e.field)
            };
            invalid(path, e.message)
        })?;
    }
    Ok(())
}

/// Runs store reads and scoring without holding up the async workers: on a multi-threaded
/// runtime the calling worker hands its other tasks to another thread and runs `f` itself
/// (no hand-over of the request, which showed in the p99); elsewhere on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RecsError> + Send + 'static,
) -> Result<T, RecsError> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        return tokio::task::block_in_place(f);
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RecsError::Artifact(format!("a recommendation task failed: {e}")))?
}

impl Platform {
    /// A user's most recent stored events (at most [`HISTORY`]).
    pub async fn user_history(&self, user: &str) -> Result<Vec<Event>, RecsError> {
        let store = self.recs_store()?;
        let user = UserId(user.to_owned());
        blocking(move || Ok(store.user_events(&user, HISTORY)?)).await
    }

    async fn history_of(&self, user: Option<&str>) -> Result<Vec<Event>, RecsError> {
        match user {
            Some(user) => self.user_history(user).await,
            None => Ok(Vec::new()),
        }
    }

    /// Items for a user, seen ones excluded; a user with no history gets popular items.
    pub async fn recommend(
        &self,
        user: &str,
        n: usize,
        filter: ItemFilter,
    ) -> Result<RecommendationList, RecsError> {
        let n = check_n(n)?;
        let recommender = self.recommender().await?;
        let store = self.recs_store()?;
        let user = UserId(user.to_owned());
        // One step off the async worker for the history read and the scoring.
        blocking(move || {
            let history = store.user_events(&user, HISTORY)?;
            let data = recommender.recommend(&history, n, &filter);
            Ok(RecommendationList::new(&recommender, data))
        })
        .await
    }

    /// Items for an anonymous visitor from their recent events, oldest first.
    pub async fn recommend_session(
        &self,
        events: Vec<SessionEvent>,
        n: usize,
        filter: ItemFilter,
    ) -> Result<RecommendationList, RecsError> {
        let n = check_n(n)?;
        if events.len() > MAX_SESSION_EVENTS {
            return Err(invalid(
                "events",
                format!("a session carries at most {MAX_SESSION_EVENTS} events"),
            ));
        }
        for (k, e) in events.iter().enumerate() {
            limits::check_id("item", &e.item)
                .and_then(|()| limits::check_event_type(&e.kind))
                .map_err(|e| invalid(format!("events[{k}].{}", e.field), e.message))?;
        }
        let recommender = self.recommender().await?;
        let history: Vec<Event> = events
            .into_iter()
            .enumerate()
            .map(|(k, e)| Event {
                id: format!("session:{k}"),
                user: UserId(String::new()),
                item: ItemId(e.item),
                kind: e.kind.to_ascii_lowercase(),
                value: None,
                timestamp: k as i64,
            })
            .collect();
        blocking(move || {
            let data = recommender.recommend(&history, n, &filter);
            Ok(RecommendationList::new(&recommender, data))
        })
        .await
    }

    /// Items like `item` (an unknown item is an error naming it).
    pub async fn similar(
        &self,
        item: &str,
        n: usize,
        filter: ItemFilter,
    ) -> Result<RecommendationList, RecsError> {
        let n = check_n(n)?;
        let recommender = self.recommender().await?;
        let item = ItemId(item.to_owned());
        blocking(move || {
            let data = recommender.similar(&item, n, &filter)?;
            Ok(RecommendationList::new(&recommender, data))
        })
        .await
    }

    /// Catalogue items for a text query: BM25 and, when the trained bundle has item vectors,
    /// embedding similarity, fused; a user's history reorders the matches.
    pub async fn search(&self, query: SearchQuery) -> Result<RecommendationList, RecsError> {
        let stage = self.recs_rerank(None);
        self.search_with(query, stage.as_ref()).await
    }

    /// The catalogue's rerank stage as `[recs]` configures it, with `model` in place of
    /// `rerank_model` when given (none: no stage unless the config names a model).
    pub fn recs_rerank(&self, model: Option<&str>) -> Option<RerankStage> {
        let recs = &self.config().recs;
        model
            .or(recs.rerank_model.as_deref())
            .map(|model| RerankStage {
                model: model.to_owned(),
                depth: recs.rerank_depth.max(1),
                instruction: recs
                    .rerank_instruction
                    .clone()
                    .unwrap_or_else(|| hearth_recs::rerank::RERANK_INSTRUCTION.to_owned()),
                fuse: recs.rerank_fuse,
            })
    }

    /// [`Platform::search`] with `rerank` as its second stage (none: the hybrid ranking
    /// alone), whatever the config says.
    pub async fn search_with(
        &self,
        query: SearchQuery,
        rerank: Option<&RerankStage>,
    ) -> Result<RecommendationList, RecsError> {
        if query.query.trim().is_empty() {
            return Err(invalid("query", "'query' must not be empty"));
        }
        let n = check_n(query.n)?;
        let recommender = self.recommender().await?;
        let vector = match recommender.search_model() {
            Some(model) => self
                .gateway()
                .embed_texts(model, vec![query.query.clone()])
                .await?
                .pop(),
            None => None,
        };
        let hybrid = vector.is_some();
        let store = self.recs_store()?;
        let pool = rerank.map_or(n, |stage| n.max(stage.depth.min(MAX_N)));
        let text = query.query.clone();
        let searcher = recommender.clone();
        let data = blocking(move || {
            let history = match &query.user {
                Some(user) => store.user_events(&UserId(user.clone()), HISTORY)?,
                None => Vec::new(),
            };
            searcher.search(
                &query.query,
                vector.as_deref(),
                &history,
                pool,
                &query.filter,
            )
        })
        .await?;
        let mut data = match rerank {
            Some(stage) if data.len() > 1 => {
                hearth_recs::rerank::rerank(self.gateway(), &recommender, stage, &text, data)
                    .await?
            }
            _ => data,
        };
        data.truncate(n);
        let mut list = RecommendationList::new(&recommender, data);
        list.hybrid = Some(hybrid);
        Ok(list)
    }

    /// Runs every labelled query through catalogue search (with `rerank` as its second
    /// stage, or none) and measures the ranking; `on_done` is called after each query.
    pub async fn search_eval(
        &self,
        labels: &[SearchLabel],
        k: usize,
        rerank: Option<&RerankStage>,
        on_done: &(dyn Fn() + Sync),
    ) -> Result<SearchReport, RecsError> {
        let k =
            check_n(k).map_err(|_| invalid("k", format!("'k' must be between 1 and {MAX_N}")))?;
        let started = std::time::Instant::now();
        let (mut hits, mut found, mut reciprocal) = (0usize, 0usize, 0f64);
        for label in labels {
            let query = SearchQuery {
                query: label.query.clone(),
                n: k,
                user: label.user.clone(),
                filter: ItemFilter::default(),
            };
            let list = self.search_with(query, rerank).await?;
            let first = list
                .data
                .iter()
                .position(|r| label.items.contains(&r.item.0));
            if first == Some(0) {
                hits += 1;
            }
            if let Some(rank) = first {
                found += 1;
                reciprocal += 1.0 / (rank + 1) as f64;
            }
            on_done();
        }
        let n = labels.len().max(1) as f64;
        Ok(SearchReport {
            queries: labels.len(),
            k,
            rerank: rerank.map(|r| r.model.clone()),
            fused: rerank.is_some_and(|r| r.fuse),
            hit_at_1: hits as f64 / n,
            recall_at_k: found as f64 / n,
            mrr_at_k: reciprocal / n,
            seconds_per_query: started.elapsed().as_secs_f64() / n,
        })
    }

    /// The shopping assistant's chat model: `asked`, else `[recs] assistant_model`, else the
    /// first chat model registered. Checked before anything starts: an unknown model is a 404
    /// and an embedding model an error naming `model`, never an error after a 200.
    pub async fn assistant_model(&self, asked: Option<&str>) -> Result<String, RecsError> {
        let gateway = self.gateway();
        let configured = self.config().recs.assistant_model.as_deref();
        if let Some(model) = asked.or(configured) {
            if !gateway.routes().iter().any(|(alias, _, _)| alias == model) {
                let info = gateway.resolve(model).await?;
                if info.kind != ModelKind::Chat {
                    return Err(RecsError::Embedding(
                        hearth_gateway::GatewayError::WrongModelKind {
                            model: info.name,
                            kind: "an embedding",
                            route: "the shopping assistant",
                        },
                    ));
                }
            }
            return Ok(model.to_owned());
        }
        gateway
            .models_now()
            .await?
            .iter()
            .find(|m| m.kind == ModelKind::Chat)
            .map(|m| m.name.clone())
            .ok_or_else(|| {
                RecsError::NoChatModel(
                    "the assistant needs a chat model: register one (`hearth models import PATH`) \
                     or set [recs] assistant_model"
                        .into(),
                )
            })
    }

    /// Starts the shopping assistant on a wish: constraints read by the local model, matching
    /// catalogue items, and a short answer naming only them, as events. Every input is
    /// checked (and the model resolved) before the turn starts.
    pub async fn assist(&self, ask: AssistantAsk) -> Result<AssistantTurn, RecsError> {
        if ask.wish.trim().is_empty() {
            return Err(invalid("wish", "'wish' must not be empty"));
        }
        if !(1..=MAX_ASSISTANT_CANDIDATES).contains(&ask.candidates) {
            return Err(invalid(
                "candidates",
                format!("'candidates' must be between 1 and {MAX_ASSISTANT_CANDIDATES}"),
            ));
        }
        let model = self.assistant_model(ask.model.as_deref()).await?;
        let recommender: Arc<Recommender> = self.recommender().await?;
        let history = self.history_of(ask.user.as_deref()).await?;
        let turn = AssistRequest {
            wish: ask.wish,
            history,
            filter: ask.filter,
            candidates: ask.candidates,
            rerank: self.recs_rerank(None),
        };
        let (tx, events) = mpsc::channel::<AssistantEvent>(64);
        let platform = self.clone();
        let done = tokio::spawn(async move {
            hearth_recs::assistant::assist(platform.gateway(), &model, recommender, turn, tx).await
        });
        Ok(AssistantTurn { events, done })
    }

    /// Inserts or replaces items by id, in one transaction: all or nothing.
    pub async fn upsert_items(&self, items: Vec<Item>) -> Result<WriteCounts, RecsError> {
        check_records("items", &items, limits::check_item)?;
        let store = self.recs_store()?;
        blocking(move || Ok(store.upsert_items(&items)?)).await
    }

    /// Inserts or replaces users by id, in one transaction.
    pub async fn upsert_users(&self, users: Vec<User>) -> Result<WriteCounts, RecsError> {
        check_records("users", &users, limits::check_user)?;
        let store = self.recs_store()?;
        blocking(move || Ok(store.upsert_users(&users)?)).await
    }

    /// Stores events; an id already stored is skipped (retries are safe). Returns once
    /// committed.
    pub async fn insert_events(&self, events: Vec<NewEvent>) -> Result<WriteCounts, RecsError> {
        check_batch(events.len(), "events")?;
        let now = hearth_types::clock::unix_now() as i64;
        let events: Vec<Event> = events
            .into_iter()
            .map(|e| Event {
                id: e
                    .id
                    .unwrap_or_else(|| format!("api:{}", uuid::Uuid::new_v4())),
                user: UserId(e.user),
                item: ItemId(e.item),
                kind: e.kind.to_ascii_lowercase(),
                value: e.value,
                timestamp: e.timestamp.unwrap_or(now),
            })
            .collect();
        check_records("events", &events, limits::check_event)?;
        let store = self.recs_store()?;
        blocking(move || Ok(store.insert_events(&events)?)).await
    }

    /// Deletes items by id; returns how many there were.
    pub async fn delete_items(&self, ids: Vec<String>) -> Result<u64, RecsError> {
        check_records("ids", &ids, |id| limits::check_id("", id))?;
        let store = self.recs_store()?;
        let ids: Vec<ItemId> = ids.into_iter().map(ItemId).collect();
        blocking(move || Ok(store.delete_items(&ids)?)).await
    }

    /// Deletes users and their events; returns how many users there were.
    pub async fn delete_users(&self, ids: Vec<String>) -> Result<u64, RecsError> {
        check_records("ids", &ids, |id| limits::check_id("", id))?;
        let store = self.recs_store()?;
        let ids: Vec<UserId> = ids.into_iter().map(UserId).collect();
        blocking(move || Ok(store.delete_users(&ids)?)).await
    }

    /// One stored item.
    pub async fn item(&self, id: &str) -> Result<Item, RecsError> {
        let store = self.recs_store()?;
        let key = ItemId(id.to_owned());
        blocking(move || store.item(&key)?.ok_or(RecsError::UnknownItem(key.0))).await
    }

    /// One stored user.
    pub async fn user(&self, id: &str) -> Result<User, RecsError> {
        let store = self.recs_store()?;
        let key = UserId(id.to_owned());
        blocking(move || store.user(&key)?.ok_or(RecsError::UnknownUser(key.0))).await
    }
}
