//! The platform's side of the customer-service agent: where its artifacts live and which
//! models it uses by default.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hearth_infer::registry::ModelKind;
use hearth_store::{ArtifactVersion, Artifacts};
use hearth_support::agent::{Agent, AgentOptions, Entry, TurnOutcome};
use hearth_support::desk;
use hearth_support::eval::read_tools_file;
use hearth_support::intents::{IntentModel, IntentProgress, IntentTrainOptions, LabelledText};
use hearth_support::kb::{AddReport, KbIndex, KnowledgeBase};
use hearth_support::sessions::{Session, SessionStore, TurnStart};

/// The most a session's metadata may take, as JSON.
pub const MAX_SESSION_METADATA_BYTES: usize = 16 * 1024;
use hearth_support::tools::{ToolBox, Variables};
use hearth_support::SupportError;

use crate::Platform;

/// The support agent's live state, built on first use.
#[derive(Default)]
pub(crate) struct SupportState {
    sessions: Mutex<Option<SessionStore>>,
    kb: Mutex<Option<KnowledgeBase>>,
    /// The loaded knowledge-base index and the stamp of the passages it holds.
    kb_index: Mutex<Option<LoadedKb>>,
    desk: Mutex<Option<Arc<Desk>>>,
    /// The loaded intent model and the artifact version it came from.
    intents: Mutex<Option<(u64, Arc<IntentModel>)>>,
    /// One lock per session: a session's messages are answered one at a time.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A loaded knowledge-base index and the stamp of the passages it holds.
struct LoadedKb {
    stamp: (i64, i64),
    index: Arc<KbIndex>,
}

/// The most one message may hold, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;

pub(crate) fn check_message(text: &str) -> Result<(), SupportError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(SupportError::invalid(
            "content",
            format!("a message is at most {MAX_MESSAGE_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A running agent turn: its transcript entries as they are added, then its answer.
pub struct SupportTurn {
    pub entries: tokio::sync::mpsc::Receiver<Entry>,
    pub done: tokio::task::JoinHandle<Result<TurnAnswer, SupportError>>,
}

impl SupportTurn {
    /// Waits for the end of the turn.
    pub async fn answer(self) -> Result<TurnAnswer, SupportError> {
        // The entries are not read, but the channel stays open (it holds a whole turn) so
        // the turn does not take a closed stream for an overflowing one.
        let SupportTurn {
            entries: _open,
            done,
        } = self;
        done.await
            .map_err(|e| SupportError::Artifact(format!("the support turn failed: {e}")))?
    }
}

/// How a turn ended.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TurnAnswer {
    pub status: hearth_support::sessions::SessionStatus,
    /// The agent's answer (empty when handed over silently).
    pub reply: String,
    pub handed_over: bool,
    /// Tool calls the model produced this turn, and how many were valid.
    pub tool_calls: usize,
    pub valid_tool_calls: usize,
    pub usage: hearth_types::Usage,
    /// Knowledge-base passages this answer drew on.
    pub citations: Vec<hearth_support::agent::Citation>,
    pub intent: Option<hearth_support::intents::IntentPrediction>,
}

impl TurnAnswer {
    fn new(session: Session, outcome: TurnOutcome) -> Self {
        TurnAnswer {
            status: session.status,
            reply: outcome.reply,
            handed_over: outcome.handed_over,
            tool_calls: outcome.tool_calls,
            valid_tool_calls: outcome.valid_tool_calls,
            usage: outcome.usage,
            citations: outcome.citations,
            intent: session.intent,
        }
    }
}

/// One event of a streamed turn.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TurnEvent {
    /// A transcript entry, as it is added.
    Entry { entry: Entry },
    /// The turn is over.
    Done(TurnAnswer),
}

/// The company's policy and tools, read from the files `[support]` names.
pub struct Desk {
    pub policy: String,
    pub tools: ToolBox,
}

/// How long one turn may hold a session before another replica may take it (a turn whose
/// replica died mid-way frees its session after this).
const TURN_LEASE: std::time::Duration = std::time::Duration::from_secs(300);
/// How long a message waits for another turn on its session before 409 `session_busy`.
const TURN_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
/// How often a waiting message looks again.
const TURN_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// A turn's hold on its session, ended when dropped (an error or a cancelled turn too).
struct TurnHold {
    sessions: SessionStore,
    id: String,
}

impl Drop for TurnHold {
    fn drop(&mut self) {
        if let Err(e) = self.sessions.end_turn(&self.id) {
            tracing::warn!(session = %self.id, error = %e,
                "a turn's hold on its session could not be ended; it lapses by itself");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Platform {
    /// Published support artifacts of one kind (`$DATA_DIR/artifacts/support/KIND`).
    pub fn support_artifacts(&self, kind: &str) -> Artifacts {
        Artifacts::new(
            self.config()
                .data_dir
                .join("artifacts")
                .join("support")
                .join(kind),
        )
    }

    /// The support agent's embedding model: `asked`, else `[support] embedding_model`, else
    /// the first embedding model registered.
    pub async fn support_embedding_model(
        &self,
        asked: Option<&str>,
    ) -> Result<String, SupportError> {
        let configured = self.config().support.embedding_model.as_deref();
        self.model_or_first(
            asked.or(configured),
            ModelKind::Embedding,
            "embedding_model",
        )
        .await
    }

    /// The support agent's chat model: `asked`, else `[support] chat_model`, else the first
    /// chat model registered.
    pub async fn support_chat_model(&self, asked: Option<&str>) -> Result<String, SupportError> {
        let configured = self.config().support.chat_model.as_deref();
        self.model_or_first(asked.or(configured), ModelKind::Chat, "chat_model")
            .await
    }

    async fn model_or_first(
        &self,
        chosen: Option<&str>,
        kind: ModelKind,
        setting: &str,
    ) -> Result<String, SupportError> {
        if let Some(model) = chosen {
            return Ok(model.to_string());
        }
        let what = if kind == ModelKind::Chat {
            "chat"
        } else {
            "embedding"
        };
        self.gateway()
            .models_now()
            .await?
            .iter()
            .find(|m| m.kind == kind)
            .map(|m| m.name.clone())
            .ok_or_else(|| {
                SupportError::invalid(
                    setting,
                    format!(
                        "no {what} model is registered: add one (`hearth models import PATH`) \
                         or set [support] {setting}"
                    ),
                )
            })
    }

    /// Trains an intent model on `examples` and publishes it.
    pub async fn train_intents(
        &self,
        examples: &[LabelledText],
        options: &IntentTrainOptions,
        progress: &dyn IntentProgress,
    ) -> Result<(IntentModel, ArtifactVersion), SupportError> {
        let model = IntentModel::train(self.gateway(), examples, options, progress).await?;
        let artifacts = self.support_artifacts("intents");
        let version = artifacts.publish(|dir| model.save(dir))?;
        artifacts.prune(3)?;
        Ok((model, version))
    }

    /// The published intent model.
    pub fn intent_model(&self) -> Result<IntentModel, SupportError> {
        let current = self
            .support_artifacts("intents")
            .current()?
            .ok_or(SupportError::NotTrained)?;
        IntentModel::load(&current.dir)
    }

    /// The support sessions table in the data directory's database.
    pub fn support_sessions(&self) -> Result<SessionStore, SupportError> {
        let mut slot = lock(&self.inner.support.sessions);
        if let Some(store) = slot.as_ref() {
            return Ok(store.clone());
        }
        let sessions = SessionStore::open(self.store().db().clone())?;
        *slot = Some(sessions.clone());
        Ok(sessions)
    }

    /// The policy and tools of `[support]`, read once.
    pub fn support_desk(&self) -> Result<Arc<Desk>, SupportError> {
        let mut slot = lock(&self.inner.support.desk);
        if let Some(desk) = slot.as_ref() {
            return Ok(desk.clone());
        }
        let config = &self.config().support;
        let policy_path = config.policy.as_ref().ok_or_else(|| {
            SupportError::NotConfigured(
                "set [support] policy to the policy file the agent must follow".into(),
            )
        })?;
        let policy = std::fs::read_to_string(policy_path)
            .map_err(|e| SupportError::NotConfigured(format!("{}: {e}", policy_path.display())))?;
        let specs = match &config.tools {
            Some(path) => read_tools_file(path)?,
            None => Vec::new(),
        };
        let vars = Variables(
            config
                .tool_variables
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        );
        let tools = ToolBox::new(specs, vars)?;
        let desk = Arc::new(Desk { policy, tools });
        *slot = Some(desk.clone());
        Ok(desk)
    }

    /// The published intent model, reloaded when a newer one is published; none when
    /// nothing has been trained.
    pub fn live_intent_model(&self) -> Result<Option<Arc<IntentModel>>, SupportError> {
        let Some(current) = self.support_artifacts("intents").current()? else {
            return Ok(None);
        };
        let mut slot = lock(&self.inner.support.intents);
        if let Some((version, model)) = slot.as_ref() {
            if *version == current.version {
                return Ok(Some(model.clone()));
            }
        }
        let model = Arc::new(IntentModel::load(&current.dir)?);
        *slot = Some((current.version, model.clone()));
        Ok(Some(model))
    }

    /// Holds session `id` for one turn across every replica of the database: waits (up to
    /// [`TURN_WAIT`]) while another turn holds it, then 409 `session_busy`. The in-process
    /// lock is taken first, so this process's own turns queue without polling.
    async fn begin_turn(&self, id: &str) -> Result<TurnHold, SupportError> {
        let sessions = self.support_sessions()?;
        let deadline = std::time::Instant::now() + TURN_WAIT;
        loop {
            let until = hearth_types::clock::unix_now_f64() + TURN_LEASE.as_secs_f64();
            let (store, key) = (sessions.clone(), id.to_owned());
            let started = tokio::task::spawn_blocking(move || store.begin_turn(&key, until))
                .await
                .map_err(|e| SupportError::Artifact(format!("turn: {e}")))??;
            match started {
                TurnStart::Begun => {
                    return Ok(TurnHold {
                        sessions,
                        id: id.to_owned(),
                    })
                }
                TurnStart::Missing => return Err(SupportError::UnknownSession(id.to_owned())),
                TurnStart::Busy if std::time::Instant::now() >= deadline => {
                    return Err(SupportError::SessionBusy(id.to_owned()))
                }
                TurnStart::Busy => tokio::time::sleep(TURN_POLL).await,
            }
        }
    }

    fn session_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.inner.support.locks)
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    /// Starts a support session owned by `owner` (see [`hearth_gateway::Caller::owner`]).
    /// Refused when support is not configured, so nothing is stored for nobody.
    pub fn start_support_session(
        &self,
        metadata: serde_json::Value,
        owner: Option<String>,
    ) -> Result<Session, SupportError> {
        let size = serde_json::to_string(&metadata).map_or(0, |m| m.len());
        if size > MAX_SESSION_METADATA_BYTES {
            return Err(SupportError::InvalidParameter {
                param: "metadata".into(),
                message: format!(
                    "metadata is {size} bytes as JSON; at most {MAX_SESSION_METADATA_BYTES}"
                ),
            });
        }
        self.support_desk()?;
        self.support_sessions()?.create(metadata, owner)
    }

    /// Session `id` if `caller` may see it; another owner's session is as unknown as one
    /// that never existed.
    pub fn support_session_for(
        &self,
        id: &str,
        caller: &hearth_gateway::Caller,
    ) -> Result<Session, SupportError> {
        let session = self.support_session(id)?;
        if caller.may_see(session.owner.as_deref()) {
            Ok(session)
        } else {
            Err(SupportError::UnknownSession(id.to_string()))
        }
    }

    pub fn support_session(&self, id: &str) -> Result<Session, SupportError> {
        self.support_sessions()?
            .get(id)?
            .ok_or_else(|| SupportError::UnknownSession(id.to_string()))
    }

    /// Answers a customer's message in session `id` (routing, agent, handoff), saving the
    /// session after the turn. `on_event` sees each transcript entry as it is added.
    pub async fn support_customer_message(
        &self,
        id: &str,
        text: &str,
        on_event: &(dyn Fn(&Entry) + Sync),
    ) -> Result<(Session, TurnOutcome), SupportError> {
        let guard = self.session_lock(id);
        let _turn = guard.lock().await;
        let _held = self.begin_turn(id).await?;
        let mut session = self.support_session(id)?;
        let desk = self.support_desk()?;
        let mut options = AgentOptions::new(self.support_chat_model(None).await?);
        options.max_tool_rounds = self.config().support.max_tool_rounds;
        let agent = Agent {
            gateway: self.gateway(),
            tools: &desk.tools,
            policy: &desk.policy,
            playbook: None,
            knowledge: None,
            options,
        };
        let knowledge = self.kb_index()?;
        let agent = Agent {
            knowledge: Some(&knowledge),
            ..agent
        };
        let intents = self.live_intent_model()?;
        let route = intents
            .as_deref()
            .map(|m| (m, &self.config().support.playbooks));
        let outcome = desk::customer_message(&agent, route, &mut session, text, on_event).await;
        // Whatever happened, what the customer said is kept.
        self.support_sessions()?.save(&session)?;
        Ok((session, outcome?))
    }

    /// Starts the agent's turn on a customer's message in session `id`, once the message and
    /// the desk are checked (errors come before anything starts: a stream never begins with
    /// one). Entries arrive as they are added; [`SupportTurn::answer`] waits for the end.
    pub fn support_customer_turn(
        &self,
        id: &str,
        text: String,
    ) -> Result<SupportTurn, SupportError> {
        check_message(&text)?;
        if text.trim().is_empty() {
            return Err(SupportError::invalid(
                "content",
                "'content' must not be empty",
            ));
        }
        self.support_desk()?;
        // A turn adds a bounded number of entries (the customer's message, at most
        // `max_tool_rounds` calls with their results, the reply or handoff), so this channel
        // never fills.
        let rounds = self.config().support.max_tool_rounds;
        let capacity = rounds.saturating_mul(4).saturating_add(8).min(4096);
        let (tx, entries) = tokio::sync::mpsc::channel::<Entry>(capacity);
        let platform = self.clone();
        let id = id.to_owned();
        let done = tokio::spawn(async move {
            let send = |entry: &Entry| {
                // A closed channel is a client that left: the turn still ends and is saved.
                if let Err(tokio::sync::mpsc::error::TrySendError::Full(_)) =
                    tx.try_send(entry.clone())
                {
                    tracing::warn!("a support turn produced more entries than its stream holds");
                }
            };
            let (session, outcome) = platform.support_customer_message(&id, &text, &send).await?;
            Ok(TurnAnswer::new(session, outcome))
        });
        Ok(SupportTurn { entries, done })
    }

    /// A human agent's message in session `id` (only after a handoff); `hand_back` returns
    /// the session to the agent.
    pub async fn support_human_message(
        &self,
        id: &str,
        text: &str,
        hand_back: bool,
        author: Option<&str>,
    ) -> Result<Session, SupportError> {
        check_message(text)?;
        self.support_change(id, |session| {
            desk::human_message(session, text, hand_back, author)
        })
        .await
    }

    /// Changes session `id` under its turn (one at a time, on any replica) and saves it.
    pub(crate) async fn support_change(
        &self,
        id: &str,
        change: impl FnOnce(&mut Session) -> Result<(), SupportError>,
    ) -> Result<Session, SupportError> {
        let guard = self.session_lock(id);
        let _turn = guard.lock().await;
        let _held = self.begin_turn(id).await?;
        let mut session = self.support_session(id)?;
        change(&mut session)?;
        self.support_sessions()?.save(&session)?;
        Ok(session)
    }

    /// The knowledge base's tables in the data directory's database.
    pub fn knowledge_base(&self) -> Result<KnowledgeBase, SupportError> {
        let mut slot = lock(&self.inner.support.kb);
        if let Some(kb) = slot.as_ref() {
            return Ok(kb.clone());
        }
        let kb = KnowledgeBase::open(self.store().db().clone())?;
        *slot = Some(kb.clone());
        Ok(kb)
    }

    /// Adds documents to the knowledge base (embedding with the support embedding model).
    pub async fn add_documents(
        &self,
        paths: &[std::path::PathBuf],
        embedding_model: Option<&str>,
        progress: &dyn IntentProgress,
    ) -> Result<AddReport, SupportError> {
        let model = self.support_embedding_model(embedding_model).await?;
        let report = self
            .knowledge_base()?
            .add(self.gateway(), &model, paths, progress)
            .await?;
        Ok(report)
    }

    /// The knowledge base loaded for search, rebuilt when documents were added, changed or
    /// dropped since (by this process or by `hearth support kb`).
    /// The knowledge base's rerank stage as `[support]` configures it, with `model` in place
    /// of `rerank_model` when given (none: no stage unless the config names a model).
    pub fn kb_rerank(&self, model: Option<&str>) -> Option<hearth_support::kb::Rerank> {
        let support = &self.config().support;
        model
            .or(support.rerank_model.as_deref())
            .map(|model| hearth_support::kb::Rerank {
                model: model.to_owned(),
                depth: support.rerank_depth.max(1),
                instruction: support
                    .rerank_instruction
                    .clone()
                    .unwrap_or_else(|| hearth_support::kb::RERANK_INSTRUCTION.to_owned()),
                fuse: support.rerank_fuse,
            })
    }

    pub fn kb_index(&self) -> Result<Arc<KbIndex>, SupportError> {
        let kb = self.knowledge_base()?;
        let stamp = kb.stamp()?;
        let mut slot = lock(&self.inner.support.kb_index);
        if let Some(loaded) = slot.as_ref() {
            if loaded.stamp == stamp {
                return Ok(loaded.index.clone());
            }
        }
        let index = Arc::new(kb.index()?.with_rerank(self.kb_rerank(None)));
        *slot = Some(LoadedKb {
            stamp,
            index: index.clone(),
        });
        Ok(index)
    }
}
