//! The evaluation harness: runs each task's conversation against an agent on a fresh copy of
//! the company's test system and scores it the way TOOLS.md describes — the final state must
//! equal the state reached by replaying the task's gold actions, and every required output
//! must appear in the agent's replies.
//!
//! A domain is a directory, not code: `domain.toml` names the data, the policy, the tool
//! config and the two sandbox calls (reset, state) the harness needs from the company's
//! test system. Nothing here knows about retail.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use hearth_gateway::Gateway;
use hearth_types::{ChatCompletionRequest, ChatMessage, SamplingFields};

use crate::agent::{Agent, AgentOptions, Conversation as AgentConversation, Entry};
use crate::tools::{HttpCall, ToolBox, ToolError, ToolSpec, Variables};
use crate::SupportError;

/// The two calls the harness needs from the company's test system.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Sandbox {
    /// Restores the pristine data.
    pub reset: HttpCall,
    /// Answers `{"hash": "…"}`: equal data, equal hash.
    pub state: HttpCall,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainFile {
    name: String,
    data: Option<PathBuf>,
    #[serde(default = "policy_md")]
    policy: PathBuf,
    #[serde(default = "tools_toml")]
    tools: PathBuf,
    backend: Option<String>,
    sandbox: Sandbox,
}

fn policy_md() -> PathBuf {
    "policy.md".into()
}

fn tools_toml() -> PathBuf {
    "tools.toml".into()
}

/// A support domain, loaded.
#[derive(Debug, Clone)]
pub struct Domain {
    pub name: String,
    /// Where the data files are.
    pub data_dir: PathBuf,
    /// The policy the agent must follow (Markdown).
    pub policy: String,
    pub tools: Vec<ToolSpec>,
    /// A built-in backend that serves the data files (`demo-shop`), if any.
    pub backend: Option<String>,
    pub sandbox: Sandbox,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolsFile {
    #[serde(default)]
    tools: Vec<ToolSpec>,
}

fn read_text(path: &Path) -> Result<String, SupportError> {
    std::fs::read_to_string(path).map_err(|e| SupportError::io(path, e))
}

fn parse_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, SupportError> {
    toml::from_str(&read_text(path)?).map_err(|e| SupportError::BadFile {
        file: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Reads a tool config file (`[[tools]]` tables).
pub fn read_tools_file(path: &Path) -> Result<Vec<ToolSpec>, SupportError> {
    Ok(parse_toml::<ToolsFile>(path)?.tools)
}

impl Domain {
    /// Reads `DIR/domain.toml`; `data` replaces the data directory it names.
    pub fn load(dir: &Path, data: Option<&Path>) -> Result<Domain, SupportError> {
        let file: DomainFile = parse_toml(&dir.join("domain.toml"))?;
        let data_dir = match (data, &file.data) {
            (Some(d), _) => d.to_path_buf(),
            (None, Some(d)) => dir.join(d),
            (None, None) => dir.to_path_buf(),
        };
        Ok(Domain {
            name: file.name,
            policy: read_text(&data_dir.join(&file.policy))?,
            tools: read_tools_file(&dir.join(&file.tools))?,
            data_dir,
            backend: file.backend,
            sandbox: file.sandbox,
        })
    }
}

/// One gold action.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Action {
    pub name: String,
    #[serde(default)]
    pub kwargs: Value,
}

/// One conversation to test an agent on.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Task {
    #[serde(default)]
    pub user_id: String,
    /// What the simulated customer wants (their persona and goal).
    pub instruction: String,
    /// The write calls a correct agent makes.
    #[serde(default)]
    pub actions: Vec<Action>,
    /// Strings the agent's replies must contain.
    #[serde(default)]
    pub outputs: Vec<String>,
}

/// Reads a JSON list of tasks.
pub fn read_tasks(path: &Path) -> Result<Vec<Task>, SupportError> {
    serde_json::from_str(&read_text(path)?).map_err(|e| SupportError::BadFile {
        file: path.to_path_buf(),
        message: format!("line {}: {e}", e.line()),
    })
}

/// Who plays the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    /// Replays the gold actions and says the required outputs: must score 100 %, which
    /// proves the harness and the test system.
    Oracle,
    /// Does nothing: the floor (passes only tasks that need no change).
    Idle,
    /// hearth's agent on a chat model, talking with a customer played by a chat model.
    Model(ModelAgent),
}

/// The models of a simulated conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelAgent {
    pub agent_model: String,
    pub customer_model: String,
    /// Most customer messages per conversation.
    pub max_turns: usize,
    pub max_tool_rounds: usize,
}

/// What one conversation did.
#[derive(Debug, Clone, Serialize)]
pub struct TaskRun {
    pub task: usize,
    pub run: usize,
    pub passed: bool,
    pub state_matches: bool,
    pub outputs_present: bool,
    /// Tool calls the agent made, and how many of them parsed and matched their schema.
    pub tool_calls: usize,
    pub valid_tool_calls: usize,
    /// Gold actions the test system refused (they change nothing on either side).
    pub gold_refusals: usize,
    pub turns: usize,
    pub tokens: usize,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What was said and done, in order: the customer's messages, the agent's tool calls
    /// with their results, its replies and any handover (a model agent's runs only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transcript: Vec<Entry>,
}

/// The harness's verdict over all tasks and runs.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub domain: String,
    pub agent: AgentKind,
    pub tasks: usize,
    pub runs: usize,
    /// Share of all conversations that passed.
    pub pass_1: f64,
    /// Share of tasks that passed in every one of the runs.
    pub pass_k: f64,
    /// Valid tool calls / tool calls (1 when there were none).
    pub tool_call_validity: f64,
    pub mean_turns: f64,
    pub mean_tokens: f64,
    pub gold_refusals: usize,
    pub seconds: f64,
    pub results: Vec<TaskRun>,
}

/// How to run the harness.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub agent: AgentKind,
    /// Runs per task (pass^k's k).
    pub runs: usize,
}

/// The company's test system, reached through the domain's sandbox calls.
struct TestSystem<'a> {
    client: reqwest::Client,
    sandbox: &'a Sandbox,
    vars: &'a Variables,
}

impl TestSystem<'_> {
    async fn call(&self, call: &HttpCall) -> Result<Value, SupportError> {
        let url = self
            .vars
            .expand(&call.url)
            .map_err(|e| SupportError::invalid("sandbox", e))?;
        let (_, request) = call
            .request(&self.client, self.vars, &url)
            .map_err(|e| SupportError::invalid("sandbox", e))?;
        let unreachable =
            |e: reqwest::Error| SupportError::invalid("sandbox", format!("{url}: {e}"));
        let response = request.send().await.map_err(unreachable)?;
        let response = response.error_for_status().map_err(unreachable)?;
        response.json().await.map_err(unreachable)
    }

    async fn reset(&self) -> Result<(), SupportError> {
        self.call(&self.sandbox.reset).await.map(|_| ())
    }

    async fn state(&self) -> Result<String, SupportError> {
        let answer = self.call(&self.sandbox.state).await?;
        answer["hash"].as_str().map(str::to_string).ok_or_else(|| {
            SupportError::invalid("sandbox.state", format!("no \"hash\" in {answer}"))
        })
    }
}

/// What an agent's conversation produced.
#[derive(Default)]
struct Conversation {
    replies: Vec<String>,
    tool_calls: usize,
    valid_tool_calls: usize,
    turns: usize,
    tokens: usize,
    transcript: Vec<Entry>,
}

async fn replay(tools: &ToolBox, actions: &[Action]) -> (usize, usize) {
    let (mut valid, mut refused) = (0, 0);
    for action in actions {
        match tools.call(&action.name, &action.kwargs).await {
            Ok(_) => valid += 1,
            Err(ToolError::Refused(_)) => {
                valid += 1;
                refused += 1
            }
            Err(_) => {}
        }
    }
    (valid, refused)
}

const STOP: &str = "###STOP###";

fn customer_prompt(instruction: &str) -> String {
    format!(
        "You are a customer chatting with an online store's support agent. Your situation \
         and goal:\n{instruction}\n\nWrite only your next message to the agent, one or two \
         short sentences. Give your details (name, zip code, email, order id) when asked. \
         When the agent asks you to confirm an action you want, answer yes. When your goal is \
         done, or cannot be done, write {STOP}."
    )
}

/// One conversation between hearth's agent and a simulated customer.
async fn simulate(
    gateway: &Gateway,
    tools: &ToolBox,
    policy: &str,
    setup: &ModelAgent,
    task: &Task,
) -> Result<Conversation, SupportError> {
    let mut options = AgentOptions::new(&setup.agent_model);
    options.max_tool_rounds = setup.max_tool_rounds;
    let agent = Agent {
        gateway,
        tools,
        policy,
        playbook: None,
        knowledge: None,
        options,
    };
    let mut state = AgentConversation::default();
    let mut seen = Conversation::default();
    // The customer's side: the agent speaks as "user", the customer as "assistant".
    let mut customer = vec![
        ChatMessage::new("system", customer_prompt(&task.instruction)),
        ChatMessage::new("user", "Hello! How can I help you today?"),
    ];
    // The customer's message that ended the conversation, kept for the transcript.
    let mut last_word = None;
    for _ in 0..setup.max_turns {
        let sampling = SamplingFields {
            max_tokens: Some(80),
            temperature: Some(0.0),
            ..Default::default()
        };
        let request =
            ChatCompletionRequest::streaming(&setup.customer_model, customer.clone(), sampling);
        let (message, _, _, _) = gateway.chat(&request).await?.collect().await?;
        let said = message.content.unwrap_or_default().trim().to_string();
        if said.is_empty() || said.contains(STOP) {
            last_word = Some(said);
            break;
        }
        customer.push(ChatMessage::new("assistant", said.clone()));
        let outcome = agent.respond(&mut state, &said, &|_| {}).await?;
        seen.turns += 1;
        seen.tool_calls += outcome.tool_calls;
        seen.valid_tool_calls += outcome.valid_tool_calls;
        seen.tokens += outcome.usage.total_tokens as usize;
        seen.replies.push(outcome.reply.clone());
        if outcome.handed_over {
            break;
        }
        customer.push(ChatMessage::new("user", outcome.reply));
    }
    seen.transcript = state.entries;
    seen.transcript
        .extend(last_word.map(|text| Entry::Customer { text }));
    Ok(seen)
}

async fn converse(
    agent: &AgentKind,
    tools: &ToolBox,
    task: &Task,
    gateway: Option<&Gateway>,
    policy: &str,
) -> Result<Conversation, SupportError> {
    Ok(match agent {
        AgentKind::Oracle => {
            let (valid, _) = replay(tools, &task.actions).await;
            Conversation {
                replies: task.outputs.clone(),
                tool_calls: task.actions.len(),
                valid_tool_calls: valid,
                turns: 1,
                tokens: 0,
                transcript: Vec::new(),
            }
        }
        AgentKind::Idle => Conversation {
            turns: 1,
            ..Default::default()
        },
        AgentKind::Model(setup) => {
            let gateway = gateway.ok_or_else(|| {
                SupportError::invalid("agent", "a model agent needs the model gateway")
            })?;
            simulate(gateway, tools, policy, setup, task).await?
        }
    })
}

/// Whether `output` appears in the replies (case-insensitive, commas ignored).
pub fn output_present(output: &str, replies: &[String]) -> bool {
    let norm = |s: &str| s.to_lowercase().replace(',', "");
    let wanted = norm(output);
    replies.iter().any(|r| norm(r).contains(&wanted))
}

/// Runs every task `options.runs` times and scores it.
pub async fn evaluate(
    domain: &Domain,
    gateway: Option<&Gateway>,
    vars: &Variables,
    tasks: &[Task],
    options: &EvalOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<EvalReport, SupportError> {
    if tasks.is_empty() {
        return Err(SupportError::NotEnoughData("no tasks".into()));
    }
    if options.runs == 0 {
        return Err(SupportError::invalid("runs", "must be at least 1"));
    }
    let tools = ToolBox::new(domain.tools.clone(), vars.clone())?;
    let system = TestSystem {
        client: reqwest::Client::new(),
        sandbox: &domain.sandbox,
        vars,
    };
    let started = Instant::now();
    let total = tasks.len() * options.runs;
    let mut results = Vec::with_capacity(total);
    for (i, task) in tasks.iter().enumerate() {
        system.reset().await?;
        let (_, gold_refusals) = replay(&tools, &task.actions).await;
        let gold = system.state().await?;
        for run in 0..options.runs {
            let t = Instant::now();
            system.reset().await?;
            let conversation =
                converse(&options.agent, &tools, task, gateway, &domain.policy).await;
            let (conversation, error) = match conversation {
                Ok(c) => (c, None),
                Err(e) => (Conversation::default(), Some(e.to_string())),
            };
            let state_matches = system.state().await? == gold;
            let outputs_present = task
                .outputs
                .iter()
                .all(|o| output_present(o, &conversation.replies));
            results.push(TaskRun {
                task: i,
                run,
                passed: error.is_none() && state_matches && outputs_present,
                state_matches,
                outputs_present,
                tool_calls: conversation.tool_calls,
                valid_tool_calls: conversation.valid_tool_calls,
                gold_refusals,
                turns: conversation.turns,
                tokens: conversation.tokens,
                seconds: t.elapsed().as_secs_f64(),
                error,
                transcript: conversation.transcript,
            });
            progress(results.len(), total);
        }
    }
    system.reset().await?;
    let n = results.len() as f64;
    let calls: usize = results.iter().map(|r| r.tool_calls).sum();
    let valid: usize = results.iter().map(|r| r.valid_tool_calls).sum();
    let pass_k = (0..tasks.len())
        .filter(|&t| results.iter().filter(|r| r.task == t).all(|r| r.passed))
        .count() as f64
        / tasks.len() as f64;
    Ok(EvalReport {
        domain: domain.name.clone(),
        agent: options.agent.clone(),
        tasks: tasks.len(),
        runs: options.runs,
        pass_1: results.iter().filter(|r| r.passed).count() as f64 / n,
        pass_k,
        tool_call_validity: if calls == 0 {
            1.0
        } else {
            valid as f64 / calls as f64
        },
        mean_turns: results.iter().map(|r| r.turns).sum::<usize>() as f64 / n,
        mean_tokens: results.iter().map(|r| r.tokens).sum::<usize>() as f64 / n,
        gold_refusals: results
            .iter()
            .filter(|r| r.run == 0)
            .map(|r| r.gold_refusals)
            .sum(),
        seconds: started.elapsed().as_secs_f64(),
        results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_match_ignoring_case_and_commas() {
        let replies = vec!["Your refund of $1,234.50 is on its way".to_string()];
        assert!(output_present("1234.50", &replies));
        assert!(output_present("REFUND", &replies));
        assert!(!output_present("1234.51", &replies));
        assert!(!output_present("x", &[]));
    }
}
