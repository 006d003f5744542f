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
    // The inbox: who answers (the body's status, kept beside it to list by), the console
    // account a conversation is assigned to, a counter bumped by every change (live views
    // follow it), and private notes, which live apart from the body the customer's API shows.
    "ALTER TABLE support_sessions ADD COLUMN status TEXT;
     ALTER TABLE support_sessions ADD COLUMN assignee TEXT;
     ALTER TABLE support_sessions ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
     CREATE INDEX support_sessions_status ON support_sessions(status, updated_at);
     CREATE INDEX support_sessions_assignee ON support_sessions(assignee, updated_at);
     CREATE TABLE support_notes (
         id INTEGER PRIMARY KEY,
         session_id TEXT NOT NULL,
         at REAL NOT NULL,
         author TEXT NOT NULL,
         text TEXT NOT NULL
     );
     CREATE INDEX support_notes_session ON support_notes(session_id, id);",
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
    /// A human closed it; the customer's next message opens it again with the agent.
    Resolved,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Active => "active",
            SessionStatus::Handoff => "handoff",
            SessionStatus::Resolved => "resolved",
        }
    }
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
        let store = SessionStore { db };
        store.fill_status()?;
        Ok(store)
    }

    /// Sessions saved before the status column existed get theirs from their body.
    fn fill_status(&self) -> Result<(), SupportError> {
        let rows = self.db.query(
            "SELECT id, body FROM support_sessions WHERE status IS NULL",
            params![],
            |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)),
        )?;
        for (id, body) in rows {
            let status = serde_json::from_str::<Session>(&body)
                .map(|s| s.status)
                .unwrap_or_default();
            self.db.execute(
                "UPDATE support_sessions SET status = $2 WHERE id = $1 AND status IS NULL",
                params![&id, status.as_str()],
            )?;
        }
        Ok(())
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
            "INSERT INTO support_sessions (id, created_at, updated_at, body, status, version)
             VALUES ($1, $2, $3, $4, $5, 1)
             ON CONFLICT(id) DO UPDATE SET updated_at = excluded.updated_at, body = excluded.body,
                 status = excluded.status, version = support_sessions.version + 1",
            params![
                &session.id,
                session.created_at,
                session.updated_at,
                body,
                session.status.as_str()
            ],
        )?;
        Ok(())
    }

    /// Conversations for the inbox, newest change first: `filter` picks them by status and
    /// assignee. At most `limit`.
    pub fn inbox(
        &self,
        filter: InboxFilter<'_>,
        limit: usize,
    ) -> Result<Vec<Listed>, SupportError> {
        let (condition, who) = match filter {
            InboxFilter::Waiting => ("status = 'handoff' AND assignee IS NULL", None),
            InboxFilter::AssignedTo(name) => ("status <> 'resolved' AND assignee = $2", Some(name)),
            InboxFilter::All => ("1 = 1", None),
        };
        let sql = format!(
            "SELECT body, assignee, version FROM support_sessions WHERE {condition}
             ORDER BY updated_at DESC, id LIMIT $1"
        );
        let mut values = params![limit].to_vec();
        if let Some(who) = who {
            values.push(who.into());
        }
        let rows = self.db.query(&sql, &values, |r| {
            Ok((
                r.get::<String>(0)?,
                r.get::<Option<String>>(1)?,
                r.get::<i64>(2)?,
            ))
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(body, assignee, version)| {
                Some(Listed {
                    session: serde_json::from_str(&body).ok()?,
                    assignee,
                    version,
                })
            })
            .collect())
    }

    /// What changes whenever a conversation of the inbox changes: the number of sessions and
    /// the sum of their change counters (one indexed aggregate).
    pub fn inbox_signature(&self) -> Result<(i64, i64), SupportError> {
        Ok(self
            .db
            .query_one(
                "SELECT COUNT(*), COALESCE(SUM(version), 0) FROM support_sessions
                 WHERE status <> 'active' OR assignee IS NOT NULL",
                params![],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
            .unwrap_or((0, 0)))
    }

    /// Who session `id` is assigned to and its change counter; `None`: no such session.
    pub fn placement(&self, id: &str) -> Result<Option<(Option<String>, i64)>, SupportError> {
        Ok(self.db.query_one(
            "SELECT assignee, version FROM support_sessions WHERE id = $1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    /// Assigns session `id` to a console account (`None`: to nobody); false if no session.
    pub fn assign(&self, id: &str, to: Option<&str>) -> Result<bool, SupportError> {
        Ok(self.db.execute(
            "UPDATE support_sessions SET assignee = $2, version = version + 1 WHERE id = $1",
            params![id, to],
        )? == 1)
    }

    /// Adds a private note to session `id` (never part of the session's body); false if no
    /// session.
    pub fn add_note(&self, id: &str, author: &str, text: &str) -> Result<bool, SupportError> {
        let at = hearth_types::clock::unix_now_f64();
        Ok(self.db.write(|tx| {
            let n = tx.execute(
                "UPDATE support_sessions SET version = version + 1 WHERE id = $1",
                params![id],
            )?;
            if n == 1 {
                tx.execute(
                    "INSERT INTO support_notes (session_id, at, author, text) VALUES ($1, $2, $3, $4)",
                    params![id, at, author, text],
                )?;
            }
            Ok(n)
        })? == 1)
    }

    /// Session `id`'s private notes, oldest first.
    pub fn notes(&self, id: &str) -> Result<Vec<Note>, SupportError> {
        Ok(self.db.query(
            "SELECT at, author, text FROM support_notes WHERE session_id = $1 ORDER BY id",
            params![id],
            |r| {
                Ok(Note {
                    at: r.get(0)?,
                    author: r.get(1)?,
                    text: r.get(2)?,
                })
            },
        )?)
    }
}

/// Which conversations [`SessionStore::inbox`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxFilter<'a> {
    /// Handed over, nobody assigned.
    Waiting,
    /// Assigned to this account and not resolved.
    AssignedTo(&'a str),
    /// Every conversation.
    All,
}

/// A conversation as the inbox lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub session: Session,
    pub assignee: Option<String>,
    pub version: i64,
}

/// A private note on a conversation, for the people who answer it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Note {
    /// Unix seconds.
    pub at: f64,
    /// The console account that wrote it.
    pub author: String,
    pub text: String,
}
