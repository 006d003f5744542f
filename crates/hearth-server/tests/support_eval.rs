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
    let report = evaluate(&domain, &vars, &dev, &oracle, &|_, _| {})
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
    let report = evaluate(&domain, &vars, &dev, &idle, &|_, _| {})
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
    let report = evaluate(&domain, &vars, &train, &oracle_once(), &|_, _| {})
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
