//! The support inbox as the console uses it: conversations handed over to humans, who is on
//! them, their private notes, and what a human does to one (reply, note, assign, hand back,
//! resolve). Every change bumps the conversation's counter, which live views follow.

use hearth_support::agent::Entry;
use hearth_support::desk;
use hearth_support::sessions::{InboxFilter, Listed, Note, Session};
use hearth_support::SupportError;
use serde::Serialize;

use crate::support_platform::check_message;
use crate::Platform;

/// The most conversations one inbox view lists.
pub const INBOX_LIMIT: usize = 200;

/// The newest message of a conversation, for the list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastMessage {
    /// `customer`, `agent` or `human`.
    pub role: &'static str,
    pub text: String,
}

/// One conversation in the inbox's list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationSummary {
    pub id: String,
    /// `active`, `handoff` or `resolved`.
    pub status: &'static str,
    pub assignee: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
    pub handoff_summary: Option<String>,
    pub intent: Option<String>,
    /// Messages in the transcript (customer, agent and human ones).
    pub messages: usize,
    pub last_message: Option<LastMessage>,
}

/// A conversation opened in the console: the session as the customer's API shows it, plus
/// what only the people answering see.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationView {
    pub session: Session,
    pub assignee: Option<String>,
    /// Private notes, oldest first; never part of `session`.
    pub notes: Vec<Note>,
    /// Bumped by every change.
    pub version: i64,
}

fn message(entry: &Entry) -> Option<LastMessage> {
    let (role, text) = match entry {
        Entry::Customer { text } => ("customer", text),
        Entry::Agent { text, .. } => ("agent", text),
        Entry::Human { text, .. } => ("human", text),
        _ => return None,
    };
    Some(LastMessage {
        role,
        text: text.chars().take(200).collect(),
    })
}

fn summary(listed: Listed) -> ConversationSummary {
    let session = listed.session;
    let entries = &session.conversation.entries;
    ConversationSummary {
        status: session.status.as_str(),
        assignee: listed.assignee,
        created_at: session.created_at,
        updated_at: session.updated_at,
        handoff_summary: session.handoff_summary.clone(),
        intent: session.intent.as_ref().map(|i| i.intent.clone()),
        messages: entries.iter().filter(|e| message(e).is_some()).count(),
        last_message: entries.iter().rev().find_map(message),
        id: session.id,
    }
}

/// A note or a reply from the console: its field is `text`.
fn check_text(text: &str) -> Result<(), SupportError> {
    check_message(text).map_err(|e| match e {
        SupportError::InvalidParameter { message, .. } => SupportError::InvalidParameter {
            param: "text".into(),
            message,
        },
        other => other,
    })?;
    if text.trim().is_empty() {
        return Err(SupportError::invalid("text", "'text' must not be empty"));
    }
    Ok(())
}

impl Platform {
    /// The inbox: `waiting` (handed over, nobody on it), `mine` (assigned to `me`, open) or
    /// `all`, newest change first.
    pub fn support_inbox(
        &self,
        view: &str,
        me: &str,
    ) -> Result<Vec<ConversationSummary>, SupportError> {
        let filter = match view {
            "waiting" => InboxFilter::Waiting,
            "mine" => InboxFilter::AssignedTo(me),
            "all" => InboxFilter::All,
            other => {
                return Err(SupportError::invalid(
                    "view",
                    format!("'{other}': use waiting, mine or all"),
                ))
            }
        };
        Ok(self
            .support_sessions()?
            .inbox(filter, INBOX_LIMIT)?
            .into_iter()
            .map(summary)
            .collect())
    }

    /// Conversation `id` with its assignee and private notes.
    pub fn support_conversation(&self, id: &str) -> Result<ConversationView, SupportError> {
        let sessions = self.support_sessions()?;
        let session = self.support_session(id)?;
        let (assignee, version) = sessions
            .placement(id)?
            .ok_or_else(|| SupportError::UnknownSession(id.to_owned()))?;
        Ok(ConversationView {
            notes: sessions.notes(id)?,
            session,
            assignee,
            version,
        })
    }

    /// A human's reply from the console: written as `author`'s, and the conversation is
    /// theirs if nobody had it.
    pub async fn support_reply(
        &self,
        id: &str,
        text: &str,
        hand_back: bool,
        author: &str,
    ) -> Result<ConversationView, SupportError> {
        check_text(text)?;
        self.support_human_message(id, text, hand_back, Some(author))
            .await?;
        let sessions = self.support_sessions()?;
        if let Some((None, _)) = sessions.placement(id)? {
            sessions.assign(id, Some(author))?;
        }
        self.support_conversation(id)
    }

    /// Adds `author`'s private note to conversation `id`.
    pub fn support_add_note(
        &self,
        id: &str,
        author: &str,
        text: &str,
    ) -> Result<ConversationView, SupportError> {
        check_text(text)?;
        if !self.support_sessions()?.add_note(id, author, text)? {
            return Err(SupportError::UnknownSession(id.to_owned()));
        }
        self.support_conversation(id)
    }

    /// Assigns conversation `id` to a console account that answers customers (`None`: to
    /// nobody).
    pub fn support_assign(
        &self,
        id: &str,
        to: Option<&str>,
    ) -> Result<ConversationView, SupportError> {
        if let Some(name) = to {
            let account = self
                .accounts()
                .map_err(|e| SupportError::Artifact(e.to_string()))?
                .get(name)
                .map_err(|e| SupportError::Artifact(e.to_string()))?;
            match account {
                Some(a) if a.role.answers_customers() => {}
                Some(a) => {
                    return Err(SupportError::invalid(
                        "to",
                        format!("'{name}' is a {} and does not answer customers", a.role),
                    ))
                }
                None => {
                    return Err(SupportError::invalid(
                        "to",
                        format!("no console account named '{name}'"),
                    ))
                }
            }
        }
        if !self.support_sessions()?.assign(id, to)? {
            return Err(SupportError::UnknownSession(id.to_owned()));
        }
        self.support_conversation(id)
    }

    /// Gives a handed-over conversation back to the agent.
    pub async fn support_hand_back(&self, id: &str) -> Result<ConversationView, SupportError> {
        self.support_human_message(id, "", true, None).await?;
        self.support_conversation(id)
    }

    /// Closes conversation `id`; the customer's next message opens it again with the agent.
    pub async fn support_resolve(&self, id: &str) -> Result<ConversationView, SupportError> {
        self.support_change(id, |session| {
            desk::resolve(session);
            Ok(())
        })
        .await?;
        self.support_conversation(id)
    }

    /// What a live view compares to see a change: the inbox's signature and conversation
    /// `id`'s counter (when asked and it exists).
    pub fn support_live_state(
        &self,
        id: Option<&str>,
    ) -> Result<((i64, i64), Option<i64>), SupportError> {
        let sessions = self.support_sessions()?;
        let inbox = sessions.inbox_signature()?;
        let conversation = match id {
            Some(id) => sessions.placement(id)?.map(|(_, v)| v),
            None => None,
        };
        Ok((inbox, conversation))
    }
}
