//! Support conversations that survive restarts: each session's transcript, status and
//! routing live in the data directory's SQLite database, written after every turn (a
//! committed turn is durable: WAL, synchronous=FULL).

use hearth_store::{params, Database};
use serde::{Deserialize, Serialize};

use crate::agent::Conversation;
use crate::intents::IntentPrediction;
use crate::SupportError;

const MIGRATIONS: &[&str] = &[
    "CREATE TABLE support_sessions (
        id TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        body TEXT NOT NULL
    );",
    // Until when a turn holds the session (Unix seconds), whichever replica runs it.
    "ALTER TABLE support_sessions ADD COLUMN turn_until REAL;",
];

/// What [`SessionStore::begin_turn`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnStart {
    /// The turn holds the session now.
    Begun,
    /// Another turn holds it.
    Busy,
    /// There is no such session.
    Missing,
}

/// Who is answering the customer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// The agent answers.
    #[default]
    Active,
    /// A human answers; the agent stays silent until handed back.
    Handoff,
}

/// One conversation with a customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Session {
    pub id: String,
    pub status: SessionStatus,
    pub created_at: u64,
    pub updated_at: u64,
    /// What the company told hearth about the customer at the start (free JSON).
    #[serde(default)]
    pub metadata: serde_json::Value,
    /// Who started it (an API key's owner: `key:ID` or `tenant:NAME`); only they, and the
    /// operator, see it. `None`: the operator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The first message's routing, when an intent model is trained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<IntentPrediction>,
    /// Why the session went to a human, for the human.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff_summary: Option<String>,
    pub conversation: Conversation,
}

pub(crate) use hearth_types::clock::unix_now as now;

/// The sessions table.
#[derive(Clone)]
pub struct SessionStore {
    db: Database,
}

impl SessionStore {
    /// The database these tables live in.
    pub fn database(&self) -> &hearth_store::Database {
        &self.db
    }

    pub fn open(db: Database) -> Result<SessionStore, SupportError> {
        db.migrate("support", MIGRATIONS)?;
        Ok(SessionStore { db })
    }

    /// Starts a session owned by `owner`.
    pub fn create(
        &self,
        metadata: serde_json::Value,
        owner: Option<String>,
    ) -> Result<Session, SupportError> {
        let at = now();
        let session = Session {
            id: format!("sess_{}", uuid::Uuid::new_v4().simple()),
            status: SessionStatus::Active,
            created_at: at,
            updated_at: at,
            metadata,
            owner,
            intent: None,
            handoff_summary: None,
            conversation: Conversation::default(),
        };
        self.save(&session)?;
        Ok(session)
    }

    pub fn get(&self, id: &str) -> Result<Option<Session>, SupportError> {
        let body: Option<String> = self.db.query_one(
            "SELECT body FROM support_sessions WHERE id = $1",
            params![id],
            |r| r.get(0),
        )?;
        body.map(|b| {
            serde_json::from_str(&b)
                .map_err(|e| SupportError::Artifact(format!("session {id}: {e}")))
        })
        .transpose()
    }

    /// Takes session `id` for one turn until `until` (Unix seconds), unless another turn
    /// holds it: one statement, so two replicas never both begin. A turn whose replica died
    /// holds it only until its `until`.
    pub fn begin_turn(&self, id: &str, until: f64) -> Result<TurnStart, SupportError> {
        let now = hearth_types::clock::unix_now_f64();
        let taken = self.db.execute(
            "UPDATE support_sessions SET turn_until = $2
             WHERE id = $1 AND (turn_until IS NULL OR turn_until <= $3)",
            params![id, until, now],
        )?;
        if taken == 1 {
            return Ok(TurnStart::Begun);
        }
        let exists = self.db.query_one(
            "SELECT 1 FROM support_sessions WHERE id = $1",
            params![id],
            |r| r.get::<i64>(0),
        )?;
        Ok(if exists.is_some() {
            TurnStart::Busy
        } else {
            TurnStart::Missing
        })
    }

    /// Ends the turn [`SessionStore::begin_turn`] began.
    pub fn end_turn(&self, id: &str) -> Result<(), SupportError> {
        self.db.execute(
            "UPDATE support_sessions SET turn_until = NULL WHERE id = $1",
            params![id],
        )?;
        Ok(())
    }

    /// Writes the session (insert or replace), stamping `updated_at`.
    pub fn save(&self, session: &Session) -> Result<(), SupportError> {
        let mut session = session.clone();
        session.updated_at = now();
        let body =
            serde_json::to_string(&session).map_err(|e| SupportError::Artifact(e.to_string()))?;
        self.db.execute(
            "INSERT INTO support_sessions (id, created_at, updated_at, body) VALUES ($1, $2, $3, $4)
             ON CONFLICT(id) DO UPDATE SET updated_at = excluded.updated_at, body = excluded.body",
            params![&session.id, session.created_at, session.updated_at, body],
        )?;
        Ok(())
    }
}
