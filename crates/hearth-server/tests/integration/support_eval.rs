//! The demo shop over HTTP, the retail tool config and the evaluation harness, on the real
//! retail data: the oracle scores 100 % on the dev tasks and on a tenth of the train tasks
//! (the whole train set runs in `hearth support eval`, see docs/benchmarks.md), an agent that
//! does nothing fails, and tool calls are checked before they leave.

use std::collections::HashMap;
use std::path::PathBuf;

use hearth_core::support::demo_shop::RetailStore;
use hearth_core::support::eval::{evaluate, read_tasks, AgentKind, Domain, EvalOptions};
use hearth_core::support::tools::{ToolBox, ToolError, Variables};
use hearth_testdata::shared_data_dir;
use serde_json::json;

fn domain_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/retail")
}

/// The demo shop on a free loopback port, and the variables pointing the tools at it.
async fn shop() -> (Domain, Variables) {
    let retail = shared_data_dir().join("retail");
    let domain = Domain::load(&domain_dir(), Some(&retail)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    hearth_server::spawn_demo_shop(listener, RetailStore::load(&retail).unwrap());
    (domain, Variables(HashMap::from([("SHOP_URL".into(), url)])))
}

#[tokio::test]
async fn the_oracle_scores_every_task_and_an_idle_agent_fails() {
    let (domain, vars) = shop().await;
    assert_eq!(domain.name, "retail");
    assert_eq!(domain.tools.len(), 14);
    assert!(domain.policy.contains("authenticate"));
    let retail = shared_data_dir().join("retail");
    let dev = read_tasks(&retail.join("tasks_dev.json")).unwrap();
    let oracle = EvalOptions {
        agent: AgentKind::Oracle,
        runs: 2,
    };
    let report = evaluate(&domain, None, &vars, &dev, &oracle, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(
        (report.tasks, report.runs, report.results.len()),
        (20, 2, 40)
    );
    assert_eq!(report.pass_1, 1.0, "{report:#?}");
    assert_eq!(report.pass_k, 1.0);
    assert_eq!(report.tool_call_validity, 1.0);

    let idle = EvalOptions {
        agent: AgentKind::Idle,
        runs: 1,
    };
    let report = evaluate(&domain, None, &vars, &dev, &idle, &|_, _| {})
        .await
        .unwrap();
    // Only a task whose gold actions are all refused by the store passes by doing nothing.
    let trivially: usize = report
        .results
        .iter()
        .filter(|r| r.gold_refusals == dev[r.task].actions.len())
        .count();
    assert!(report.pass_1 < 0.1, "{report:#?}");
    assert_eq!(
        report.results.iter().filter(|r| r.passed).count(),
        trivially
    );

    let train: Vec<_> = read_tasks(&retail.join("tasks_train.json"))
        .unwrap()
        .into_iter()
        .step_by(10)
        .collect();
    let report = evaluate(&domain, None, &vars, &train, &oracle_once(), &|_, _| {})
        .await
        .unwrap();
    assert_eq!(report.tasks, 50);
    assert_eq!(report.pass_1, 1.0, "{report:#?}");
}

fn oracle_once() -> EvalOptions {
    EvalOptions {
        agent: AgentKind::Oracle,
        runs: 1,
    }
}

#[tokio::test]
async fn tool_calls_are_validated_before_sending_and_refusals_come_back_verbatim() {
    let (domain, vars) = shop().await;
    let tools = ToolBox::new(domain.tools.clone(), vars).unwrap();
    // '#' in a path argument is percent-encoded, not taken for a fragment.
    let order = tools
        .call("get_order_details", &json!({"order_id": "#W2611340"}))
        .await
        .unwrap();
    assert_eq!(order["user_id"], "james_li_5688");
    // Query-string arguments.
    let user = tools
        .call(
            "find_user_id_by_name_zip",
            &json!({"first_name": "Noah", "last_name": "Brown", "zip": "80279"}),
        )
        .await
        .unwrap();
    assert_eq!(user, "noah_brown_6181");
    // JSON-body arguments.
    let value = tools
        .call("calculate", &json!({"expression": "(2 + 3) * 1.5"}))
        .await
        .unwrap();
    assert_eq!(value, json!(7.5));
    // A reason outside the schema's enum never reaches the shop.
    let err = tools
        .call(
            "cancel_pending_order",
            &json!({"order_id": "#W2611340", "reason": "changed my mind"}),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ToolError::InvalidArguments { tool, .. } if tool == "cancel_pending_order"),
        "{err}"
    );
    // A valid call the shop refuses: its words come back.
    let err = tools
        .call(
            "cancel_pending_order",
            &json!({"order_id": "#W2611340", "reason": "no longer needed"}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ToolError::Refused("Error: non-pending order cannot be cancelled".into())
    );
    assert!(tools.spec("cancel_pending_order").unwrap().consequential);
    assert!(!tools.spec("get_order_details").unwrap().consequential);
}

fn chat_gateway(dir: &std::path::Path) -> hearth_gateway::Gateway {
    let registry =
        hearth_infer::registry::ModelRegistry::open(hearth_infer::registry::RegistryOptions {
            data_dir: dir.to_owned(),
            hub_cache: dir.join("hub"),
        })
        .unwrap();
    registry
        .import(
            &hearth_testdata::models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf"),
            Some("smollm2"),
        )
        .unwrap();
    hearth_gateway::Gateway::new(registry, Default::default())
}

/// A consequential call runs only after the customer's explicit yes; a no leaves the store
/// untouched. (The call is put up for confirmation directly: which tool a 135M model picks
/// is not what this test is about.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consequential_calls_wait_for_the_customers_yes() {
    use hearth_core::support::agent::{Agent, AgentOptions, Conversation, Entry};
    let dir = tempfile::tempdir().unwrap();
    let gateway = chat_gateway(dir.path());
    let (domain, vars) = shop().await;
    let tools = ToolBox::new(domain.tools.clone(), vars).unwrap();
    let mut options = AgentOptions::new("smollm2");
    options.max_tool_rounds = 1;
    options.max_reply_tokens = 16;
    let agent = Agent {
        gateway: &gateway,
        tools: &tools,
        policy: &domain.policy,
        playbook: None,
        knowledge: None,
        options,
    };
    let order = json!({"order_id": "#W5442520"});
    let cancel = json!({"order_id": "#W5442520", "reason": "no longer needed"});
    let status =
        || async { tools.call("get_order_details", &order).await.unwrap()["status"].clone() };
    assert_eq!(status().await, "pending");

    let mut conversation = Conversation {
        pending: Some(("cancel_pending_order".into(), cancel.clone())),
        ..Default::default()
    };
    agent
        .respond(&mut conversation, "No, wait, don't.", &|_| {})
        .await
        .unwrap();
    assert_eq!(status().await, "pending", "declined: nothing sent");
    assert!(conversation.entries.iter().any(|e| matches!(e,
        Entry::ToolCall { name, result: Err(why), .. }
            if name == "cancel_pending_order" && why.contains("did not confirm"))));

    let mut conversation = Conversation {
        pending: Some(("cancel_pending_order".into(), cancel)),
        ..Default::default()
    };
    let outcome = agent
        .respond(&mut conversation, "Yes, please go ahead.", &|_| {})
        .await
        .unwrap();
    assert_eq!(status().await, "cancelled", "confirmed: executed");
    assert_eq!(outcome.tool_calls, outcome.valid_tool_calls);
}

/// hearth's agent on SmolLM2-135M against a simulated customer on a dev task: whatever
/// the model decides, every tool call it makes parses and matches its schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_model_tool_call_is_valid() {
    use hearth_core::support::eval::ModelAgent;
    let dir = tempfile::tempdir().unwrap();
    let gateway = chat_gateway(dir.path());
    let (domain, vars) = shop().await;
    let dev = read_tasks(&shared_data_dir().join("retail/tasks_dev.json")).unwrap();
    let options = EvalOptions {
        agent: AgentKind::Model(ModelAgent {
            agent_model: "smollm2".into(),
            customer_model: "smollm2".into(),
            max_turns: 1,
            max_tool_rounds: 2,
        }),
        runs: 1,
    };
    let report = evaluate(
        &domain,
        Some(&gateway),
        &vars,
        &dev[..1],
        &options,
        &|_, _| {},
    )
    .await
    .unwrap();
    eprintln!("{report:#?}");
    assert!(
        report.results.iter().all(|r| r.error.is_none()),
        "{report:#?}"
    );
    assert!(report.results.iter().all(|r| r.turns >= 1));
    assert!(report.results.iter().map(|r| r.tool_calls).sum::<usize>() > 0);
    assert_eq!(report.tool_call_validity, 1.0, "{report:#?}");
    assert!(report.mean_tokens > 0.0);
    // The transcript shows what happened: the customer's message first, then what the
    // agent did (calls it ran or put to the customer, a handover, its reply), never more
    // calls than it made.
    use hearth_core::support::agent::Entry;
    let run = &report.results[0];
    assert!(
        matches!(run.transcript.first(), Some(Entry::Customer { text }) if !text.is_empty()),
        "{:?}",
        run.transcript
    );
    let calls = run
        .transcript
        .iter()
        .filter(|e| matches!(e, Entry::ToolCall { .. } | Entry::ConfirmationAsked { .. }))
        .count();
    assert!(run.transcript.len() >= 2, "{:?}", run.transcript);
    assert!(calls <= run.tool_calls, "{:?}", run.transcript);
    let json = serde_json::to_value(&report).unwrap();
    assert!(json["results"][0]["transcript"].is_array());
}
