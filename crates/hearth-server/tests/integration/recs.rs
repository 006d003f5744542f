//! Recommendation routes through `router()`, on MovieLens-100K (scripts/fetch-movielens.sh)
//! imported into the store and trained as `hearth recs train` does.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use hearth_core::recs::bundle::{train_bundle, TrainOptions};
use hearth_core::recs::import::ColumnMapping;
use hearth_core::recs::models::ModelKind;
use hearth_core::recs::store::{import_file, ImportOptions};
use hearth_core::recs::{Event, EventWeights, Item, ItemId, UserId};
use hearth_core::{Config, Platform, StoreUrl};
use hearth_testdata::movielens_dir;

use crate::common;
use serde_json::{json, Value};

async fn get(platform: &Platform, uri: &str) -> (StatusCode, axum::http::HeaderMap, Value) {
    send(platform, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn send(
    platform: &Platform,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let (status, headers, bytes) = common::call(platform, request).await;
    (status, headers, serde_json::from_slice(&bytes).unwrap())
}

fn ids(value: &Value) -> Vec<String> {
    value["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["item"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn recommendations_for_users_items_and_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let platform = Platform::open(Config {
        data_dir: dir.path().to_owned(),
        store: hearth_core::StoreConfig {
            url: hearth_testdata::test_store_url(dir.path()).map(StoreUrl::new),
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();

    // Nothing trained yet: 503 with Retry-After and a code saying so.
    let (status, headers, value) = get(&platform, "/v1/recommendations/196").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(value["error"]["code"], "not_trained");
    assert!(headers.contains_key(header::RETRY_AFTER));

    let ml = movielens_dir();
    let store = platform.recs_store().unwrap();
    let mapping = ColumnMapping::default();
    import_file::<Item>(
        &store,
        &ml.join("ml-100k.item"),
        &mapping,
        &ImportOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    import_file::<Event>(
        &store,
        &ml.join("ml-100k.inter"),
        &mapping,
        &ImportOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    let data = store.dataset(&EventWeights::default()).unwrap();
    let options = TrainOptions {
        models: vec![ModelKind::ItemKnn, ModelKind::Ease],
        ..Default::default()
    };
    let bundle = train_bundle(&data, None, &options, &()).unwrap();
    platform
        .recs_artifacts()
        .publish(|d| bundle.save(d))
        .unwrap();

    // A known user: n results, none of them already rated, each with a score and a reason.
    let (status, _, value) = get(&platform, "/v1/recommendations/196?n=5").await;
    assert_eq!(status, StatusCode::OK, "{value}");
    let recommended = ids(&value);
    assert_eq!(recommended.len(), 5);
    let seen: Vec<String> = store
        .user_events(&UserId("196".into()), 1000)
        .unwrap()
        .into_iter()
        .map(|e| e.item.0)
        .collect();
    assert!(!seen.is_empty());
    assert!(
        recommended.iter().all(|i| !seen.contains(i)),
        "{recommended:?} overlaps the history"
    );
    let scores: Vec<f64> = value["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "best first: {scores:?}"
    );
    assert!(
        value["data"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("because you rated"),
        "{value}"
    );
    assert_eq!(value["model_version"], 1);

    // Filters apply: every result in the category.
    let (_, _, value) = get(&platform, "/v1/recommendations/196?n=5&category=comedy").await;
    for id in ids(&value) {
        let item = store.item(&ItemId(id)).unwrap().unwrap();
        assert!(
            item.categories.iter().any(|c| c == "Comedy"),
            "{:?}",
            item.categories
        );
    }
    // MovieLens has no prices: a price filter leaves nothing rather than guessing.
    let (_, _, value) = get(&platform, "/v1/recommendations/196?max_price=10").await;
    assert!(ids(&value).is_empty());

    // A user nobody has seen gets the most popular items.
    let (_, _, value) = get(&platform, "/v1/recommendations/newcomer?n=1").await;
    assert_eq!(
        ids(&value),
        ["50"],
        "Star Wars is MovieLens-100K's most rated film"
    );
    assert_eq!(value["data"][0]["reason"], "popular with other customers");

    // Similar items, and a clear 404 for an unknown one.
    let (status, _, value) = get(&platform, "/v1/items/1/similar?n=3").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&value).len(), 3);
    assert!(!ids(&value).contains(&"1".to_owned()));
    let (status, _, value) = get(&platform, "/v1/items/no-such-item/similar").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(value["error"]["code"], "item_not_found");

    // An anonymous session: its items are excluded and the filter applies.
    let body = json!({"events": [{"item": "1", "type": "purchase"}, {"item": "50"}], "n": 4, "category": "Animation"});
    let request = Request::post("/v1/recommendations/session")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (status, _, value) = send(&platform, request).await;
    assert_eq!(status, StatusCode::OK, "{value}");
    let session = ids(&value);
    assert_eq!(session.len(), 4);
    assert!(!session.contains(&"1".to_owned()) && !session.contains(&"50".to_owned()));

    // Bad input names the field.
    let (status, _, value) = get(&platform, "/v1/recommendations/196?n=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(value["error"]["param"], "n");
    let (_, _, value) = get(&platform, "/v1/recommendations/196?colour=red").await;
    assert_eq!(value["error"]["param"], "colour");
    let request = Request::post("/v1/recommendations/session")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"events": [{"itm": "1"}]}"#))
        .unwrap();
    let (status, _, value) = send(&platform, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(value["error"]["param"], "events[0].itm");
}

fn json_request(method: &str, uri: &str, body: Value) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn items_users_and_events_are_written_read_and_deleted_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let platform = Platform::open(Config {
        data_dir: dir.path().to_owned(),
        store: hearth_core::StoreConfig {
            url: hearth_testdata::test_store_url(dir.path()).map(StoreUrl::new),
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let items = json!({"items": [
        {"id": "sku-1", "title": "Kettle", "categories": ["kitchen"], "price": 24.5, "available": true},
        {"id": "sku-2", "title": "Mug", "price": 6.0, "attributes": {"colour": "blue"}}
    ]});
    let (status, _, value) = send(&platform, json_request("POST", "/v1/items", items)).await;
    assert_eq!(
        (status, value["stored"].as_u64()),
        (StatusCode::OK, Some(2)),
        "{value}"
    );
    let (status, _, value) = get(&platform, "/v1/items/sku-2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            value["title"].as_str(),
            value["attributes"]["colour"].as_str()
        ),
        (Some("Mug"), Some("blue"))
    );

    let users = json!({"users": [{"id": "u1", "attributes": {"tier": "gold"}}]});
    let (status, _, _) = send(&platform, json_request("POST", "/v1/users", users)).await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, value) = get(&platform, "/v1/users/u1").await;
    assert_eq!(value["attributes"]["tier"], "gold");

    let events = json!({"events": [
        {"id": "e1", "user": "u1", "item": "sku-1", "type": "view", "timestamp": 1700000000},
        {"id": "e2", "user": "u1", "item": "sku-2", "type": "purchase"}
    ]});
    let (_, _, value) = send(
        &platform,
        json_request("POST", "/v1/events", events.clone()),
    )
    .await;
    assert_eq!(
        (value["stored"].as_u64(), value["duplicates"].as_u64()),
        (Some(2), Some(0)),
        "{value}"
    );
    // A retried batch stores nothing twice.
    let (_, _, value) = send(&platform, json_request("POST", "/v1/events", events)).await;
    assert_eq!(
        (value["stored"].as_u64(), value["duplicates"].as_u64()),
        (Some(0), Some(2))
    );
    let store = platform.recs_store().unwrap();
    let history = store.user_events(&UserId("u1".into()), 10).unwrap();
    assert_eq!(
        history.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["e1", "e2"],
        "oldest first"
    );

    // Bad input: 400 naming the field, nothing stored.
    let bad = json!({"events": [{"user": "u1", "item": "sku-1", "type": "view"}, {"user": "u1", "item": "sku-1"}]});
    let (status, _, value) = send(&platform, json_request("POST", "/v1/events", bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        value["error"]["param"]
            .as_str()
            .unwrap()
            .starts_with("events[1]"),
        "{value}"
    );
    let empty_type = json!({"events": [{"user": "u1", "item": "sku-1", "type": ""}]});
    let (_, _, value) = send(&platform, json_request("POST", "/v1/events", empty_type)).await;
    assert_eq!(value["error"]["param"], "events[0].type");
    assert_eq!(store.counts().unwrap().2, 2);

    let (_, _, value) = send(
        &platform,
        json_request("DELETE", "/v1/items", json!({"ids": ["sku-1", "nope"]})),
    )
    .await;
    assert_eq!(value["deleted"], 1);
    let (status, _, value) = get(&platform, "/v1/items/sku-1").await;
    assert_eq!(
        (status, value["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("item_not_found"))
    );
    let (_, _, value) = send(
        &platform,
        json_request("DELETE", "/v1/users", json!({"ids": ["u1"]})),
    )
    .await;
    assert_eq!(value["deleted"], 1);
    assert_eq!(
        store.counts().unwrap(),
        (1, 0, 0),
        "a deleted user's events go with them"
    );
}

#[tokio::test]
async fn the_server_retrains_on_schedule_and_swaps_the_model_in() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_owned(),
        store: hearth_core::StoreConfig {
            url: hearth_testdata::test_store_url(dir.path()).map(StoreUrl::new),
            ..Default::default()
        },
        ..Default::default()
    };
    config.recs.train_interval_seconds = 1;
    let platform = Platform::open(config).unwrap();
    let store = platform.recs_store().unwrap();
    // Two taste groups of ten users, six items each.
    let mut events = Vec::new();
    for u in 0..20 {
        let base = if u < 10 { 0 } else { 6 };
        for i in 0..6 {
            if i != u % 6 {
                events.push(Event {
                    id: format!("{u}-{i}"),
                    user: UserId(format!("u{u}")),
                    item: ItemId(format!("i{}", base + i)),
                    kind: "purchase".into(),
                    value: None,
                    timestamp: 1_700_000_000 + i as i64,
                });
            }
        }
    }
    store.insert_events(&events).unwrap();
    let schedule = platform
        .spawn_recs_schedule()
        .expect("an interval is configured");
    let wait_for = |version: u64| {
        let platform = platform.clone();
        async move {
            for _ in 0..600 {
                if let Ok(Some(v)) = platform.recs_artifacts().current() {
                    if v.version >= version {
                        return;
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("version {version} was never published");
        }
    };
    wait_for(1).await;
    let (status, _, value) = get(&platform, "/v1/recommendations/u0?n=1").await;
    assert_eq!(status, StatusCode::OK, "{value}");
    assert_eq!(ids(&value), ["i0"], "u0's group item it has not bought");

    // New events: the next run publishes version 2 and the server switches to it.
    store
        .insert_events(&[Event {
            id: "new".into(),
            user: UserId("u99".into()),
            item: ItemId("i1".into()),
            kind: "view".into(),
            value: None,
            timestamp: 1_800_000_000,
        }])
        .unwrap();
    wait_for(2).await;
    let mut switched = false;
    for _ in 0..50 {
        let (_, _, value) = get(&platform, "/v1/recommendations/u0?n=1").await;
        if value["model_version"].as_u64() == Some(2) {
            switched = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(switched, "the server kept answering with version 1");
    schedule.abort();
}
