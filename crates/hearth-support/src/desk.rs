//! The support desk: what happens to a session when the customer or a human writes.
//!
//! The customer's first message is routed by the intent model (when one is trained): a
//! message out of scope goes straight to a human; an in-scope one gets its intent's
//! playbook. A customer who asks for a person, or an agent that gets stuck or decides to
//! transfer, moves the session to `handoff` with a summary; from then on only humans answer,
//! until one hands the session back.

use crate::agent::{Agent, Entry, TurnOutcome};
use crate::intents::IntentModel;
use crate::pii::mask_pii;
use crate::sessions::{Session, SessionStatus};
use crate::SupportError;

/// Words that ask for a person.
const HUMAN_ASKS: [&str; 8] = [
    "human",
    "real person",
    "representative",
    "talk to a person",
    "speak to a person",
    "speak to someone",
    "live agent",
    "operator",
];

/// Whether the customer asks to talk to a person.
pub fn asks_for_human(text: &str) -> bool {
    let t = text.to_lowercase();
    HUMAN_ASKS.iter().any(|w| t.contains(w))
}

fn hand_over(
    session: &mut Session,
    summary: String,
    outcome: &mut TurnOutcome,
    on_event: &(dyn Fn(&Entry) + Sync),
) {
    crate::agent::hand_over(
        &mut session.conversation,
        summary.clone(),
        outcome,
        on_event,
    );
    session.handoff_summary = Some(summary);
    session.status = SessionStatus::Handoff;
}

/// Runs one customer message through routing and the agent. `route` is the intent model
/// and the playbook text per intent.
pub async fn customer_message(
    agent: &Agent<'_>,
    route: Option<(&IntentModel, &std::collections::BTreeMap<String, String>)>,
    session: &mut Session,
    text: &str,
    on_event: &(dyn Fn(&Entry) + Sync),
) -> Result<TurnOutcome, SupportError> {
    if text.trim().is_empty() {
        return Err(SupportError::invalid("content", "must not be empty"));
    }
    tracing::info!(session = %session.id, message = %mask_pii(text), "customer message");
    let mut outcome = TurnOutcome::default();
    if session.status == SessionStatus::Resolved {
        // A resolved conversation the customer writes to again is the agent's once more.
        session.status = SessionStatus::Active;
    }
    if session.status == SessionStatus::Handoff {
        let entry = Entry::Customer { text: text.into() };
        on_event(&entry);
        session.conversation.entries.push(entry);
        return Ok(outcome);
    }
    let first = session.conversation.entries.is_empty();
    let mut playbook = None;
    let mut out_of_scope = None;
    if let (true, Some((model, _))) = (first, route) {
        let prediction = model.classify(agent.gateway, text).await?;
        if !prediction.in_scope {
            out_of_scope = Some(format!(
                "Out of the agent's scope (closest intent '{}', score {:.2} below the \
                 threshold); the customer wrote: {text}",
                prediction.intent, prediction.score
            ));
        }
        session.intent = Some(prediction);
    }
    if let (Some(intent), Some((_, playbooks))) = (&session.intent, route) {
        playbook = playbooks.get(&intent.intent).map(String::as_str);
    }
    // An explicit request for a person comes first, then the scope check.
    let handoff = if asks_for_human(text) {
        Some(format!("The customer asked for a person: {text}"))
    } else {
        out_of_scope
    };
    if let Some(summary) = handoff {
        let entry = Entry::Customer { text: text.into() };
        on_event(&entry);
        session.conversation.entries.push(entry);
        hand_over(session, summary, &mut outcome, on_event);
        return Ok(outcome);
    }
    let agent = Agent {
        gateway: agent.gateway,
        tools: agent.tools,
        policy: agent.policy,
        playbook,
        knowledge: agent.knowledge,
        options: agent.options.clone(),
    };
    let outcome = agent
        .respond(&mut session.conversation, text, on_event)
        .await?;
    if outcome.handed_over {
        session.status = SessionStatus::Handoff;
        session.handoff_summary = session.conversation.handed_over.clone();
    }
    tracing::info!(session = %session.id, reply = %mask_pii(&outcome.reply), "agent reply");
    Ok(outcome)
}

/// A human agent's message. Only while the session is handed over; `hand_back` returns it
/// to the agent after this message.
pub fn human_message(
    session: &mut Session,
    text: &str,
    hand_back: bool,
    author: Option<&str>,
) -> Result<(), SupportError> {
    if session.status != SessionStatus::Handoff {
        return Err(SupportError::NotHandedOver(session.id.clone()));
    }
    if !text.trim().is_empty() {
        session.conversation.entries.push(Entry::Human {
            text: text.into(),
            author: author.map(str::to_owned),
        });
    }
    if hand_back {
        session.status = SessionStatus::Active;
        session.conversation.handed_over = None;
        session.conversation.pending = None;
    }
    Ok(())
}

/// A human closes the conversation: nobody answers until the customer writes again, and
/// then the agent does.
pub fn resolve(session: &mut Session) {
    session.status = SessionStatus::Resolved;
    session.conversation.handed_over = None;
    session.conversation.pending = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humans_answer_only_after_a_handoff_and_can_hand_back() {
        let mut session = Session {
            id: "s".into(),
            status: SessionStatus::Active,
            created_at: 0,
            updated_at: 0,
            metadata: serde_json::Value::Null,
            owner: None,
            intent: None,
            handoff_summary: None,
            conversation: Default::default(),
        };
        assert!(human_message(&mut session, "hi", false, None).is_err());
        session.status = SessionStatus::Handoff;
        session.conversation.handed_over = Some("why".into());
        human_message(&mut session, "Hello, I'm Sam.", false, Some("sam")).unwrap();
        assert_eq!(session.status, SessionStatus::Handoff);
        human_message(&mut session, "", true, None).unwrap();
        assert_eq!(session.status, SessionStatus::Active);
        assert!(session.conversation.handed_over.is_none());
        assert_eq!(
            session.conversation.entries,
            vec![Entry::Human {
                text: "Hello, I'm Sam.".into(),
                author: Some("sam".into()),
            }]
        );
        session.status = SessionStatus::Handoff;
        resolve(&mut session);
        assert_eq!(session.status, SessionStatus::Resolved);
        assert!(human_message(&mut session, "late", false, None).is_err());
    }

    #[test]
    fn asking_for_a_person_is_recognised() {
        assert!(asks_for_human("Can I talk to a HUMAN please?"));
        assert!(asks_for_human("I want a representative"));
        assert!(!asks_for_human("Cancel order #W1"));
    }
}
