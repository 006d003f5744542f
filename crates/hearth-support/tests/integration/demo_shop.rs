//! The demo store on the real retail data: the gold actions of the 520 tasks succeed on a
//! fresh copy and change it (a few gold actions are refused by the store's own rules, as in
//! the source benchmark: they change nothing on either side of the comparison); the money
//! rules of TOOLS.md hold.

use hearth_support::demo_shop::RetailStore;
use hearth_testdata::shared_data_dir;
use serde_json::{json, Value};

fn store() -> RetailStore {
    RetailStore::load(&shared_data_dir().join("retail")).unwrap()
}

#[test]
fn gold_actions_succeed_and_change_the_store() {
    let pristine = store();
    let before = pristine.state_hash();
    let (mut actions, mut refused) = (0, Vec::new());
    for file in ["tasks_train.json", "tasks_dev.json"] {
        let text = std::fs::read_to_string(shared_data_dir().join("retail").join(file)).unwrap();
        let tasks: Vec<Value> = serde_json::from_str(&text).unwrap();
        for (i, task) in tasks.iter().enumerate() {
            let mut s = pristine.clone();
            let mut succeeded = 0;
            for action in task["actions"].as_array().unwrap() {
                let name = action["name"].as_str().unwrap();
                actions += 1;
                match s.call(name, &action["kwargs"]) {
                    Ok(_) => succeeded += 1,
                    Err(e) => refused.push(format!("{file} task {i}: {name}: {e}")),
                }
            }
            if succeeded > 0 {
                assert_ne!(s.state_hash(), before, "{file} task {i} changed nothing");
            }
        }
    }
    assert_eq!(pristine.state_hash(), before);
    eprintln!(
        "{} of {actions} gold actions refused:\n{}",
        refused.len(),
        refused.join("\n")
    );
    assert!(actions > 700);
    assert!(refused.len() * 20 < actions, "{refused:#?}");
    assert!(
        refused
            .iter()
            .all(|r| r.contains("insufficient gift card balance")),
        "{refused:#?}"
    );
}

#[test]
fn cancelling_refunds_every_payment_and_gift_cards_at_once() {
    let mut s = store();
    // A pending order paid by gift card.
    let text = std::fs::read_to_string(shared_data_dir().join("retail/orders.json")).unwrap();
    let orders: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    let (id, order) = orders
        .iter()
        .find(|(_, o)| {
            o["status"] == "pending"
                && o["payment_history"][0]["payment_method_id"]
                    .as_str()
                    .unwrap()
                    .starts_with("gift_card")
        })
        .unwrap();
    let user = order["user_id"].as_str().unwrap();
    let card = order["payment_history"][0]["payment_method_id"]
        .as_str()
        .unwrap();
    let paid = order["payment_history"][0]["amount"].as_f64().unwrap();
    let balance = |s: &mut RetailStore| {
        s.call("get_user_details", &json!({"user_id": user}))
            .unwrap()["payment_methods"][card]["balance"]
            .as_f64()
            .unwrap()
    };
    let start = balance(&mut s);
    let before = s.state_hash();
    let err = s
        .call(
            "cancel_pending_order",
            &json!({"order_id": id, "reason": "too slow"}),
        )
        .unwrap_err();
    assert!(err.starts_with("Error:"), "{err}");
    assert_eq!(s.state_hash(), before, "a failed call changes nothing");

    let done = s
        .call(
            "cancel_pending_order",
            &json!({"order_id": id, "reason": "no longer needed"}),
        )
        .unwrap();
    assert_eq!(done["status"], "cancelled");
    assert_eq!(
        done["payment_history"].as_array().unwrap().last().unwrap()["transaction_type"],
        "refund"
    );
    assert!((balance(&mut s) - ((start + paid) * 100.0).round() / 100.0).abs() < 1e-9);
    let again = s
        .call(
            "cancel_pending_order",
            &json!({"order_id": id, "reason": "no longer needed"}),
        )
        .unwrap_err();
    assert!(again.contains("non-pending"), "{again}");
}

#[test]
fn lookups_are_case_insensitive_and_unknowns_are_errors() {
    let mut s = store();
    let user = s
        .call(
            "find_user_id_by_email",
            &json!({"email": "NOAH.BROWN7922@example.com"}),
        )
        .unwrap();
    assert_eq!(user, "noah_brown_6181");
    let by_zip = s
        .call(
            "find_user_id_by_name_zip",
            &json!({"first_name": "noah", "last_name": "BROWN", "zip": "80279"}),
        )
        .unwrap();
    assert_eq!(by_zip, user);
    assert!(s
        .call("get_order_details", &json!({"order_id": "#W0"}))
        .is_err());
    assert!(s
        .call("get_order_details", &json!({}))
        .unwrap_err()
        .contains("order_id"));
    let types = s.call("list_all_product_types", &json!({})).unwrap();
    let names: Vec<&String> = types.as_object().unwrap().keys().collect();
    assert_eq!(names.len(), 50);
    assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted by name");
}
