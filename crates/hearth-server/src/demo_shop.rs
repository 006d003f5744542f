//! `hearth demo-shop`: the demo company's back-office API over HTTP, on its own copy of the
//! retail data. Each route is one tool of TOOLS.md; path, query and JSON body together are
//! the tool's arguments. Success is 200 with the record; a refusal is 400
//! `{"error": {"code": "refused", "message": "Error: …"}}`.
//!
//! `/_sandbox/reset` and `/_sandbox/state` let the evaluation harness start every
//! conversation from a fresh copy and compare final states.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use hearth_core::support::demo_shop::RetailStore;
use serde_json::{json, Map, Value};

#[derive(Clone)]
struct Shop {
    pristine: Arc<RetailStore>,
    live: Arc<Mutex<RetailStore>>,
}

/// The demo shop's routes over `store` (kept as the pristine copy for resets).
pub fn demo_shop_router(store: RetailStore) -> Router {
    let shop = Shop {
        pristine: Arc::new(store.clone()),
        live: Arc::new(Mutex::new(store)),
    };
    Router::new()
        .route(
            "/users/by-email/{email}",
            get(tool("find_user_id_by_email")),
        )
        .route("/users/by-name-zip", get(tool("find_user_id_by_name_zip")))
        .route("/users/{user_id}", get(tool("get_user_details")))
        .route("/users/{user_id}/address", put(tool("modify_user_address")))
        .route("/orders/{order_id}", get(tool("get_order_details")))
        .route(
            "/orders/{order_id}/cancel",
            post(tool("cancel_pending_order")),
        )
        .route(
            "/orders/{order_id}/address",
            put(tool("modify_pending_order_address")),
        )
        .route(
            "/orders/{order_id}/payment",
            put(tool("modify_pending_order_payment")),
        )
        .route(
            "/orders/{order_id}/items",
            post(tool("modify_pending_order_items")),
        )
        .route(
            "/orders/{order_id}/return",
            post(tool("return_delivered_order_items")),
        )
        .route(
            "/orders/{order_id}/exchange",
            post(tool("exchange_delivered_order_items")),
        )
        .route("/products", get(tool("list_all_product_types")))
        .route("/products/{product_id}", get(tool("get_product_details")))
        .route("/calculate", post(tool("calculate")))
        .route("/_sandbox/reset", post(reset))
        .route("/_sandbox/state", get(state))
        .with_state(shop)
}

type PathArgs = Path<HashMap<String, String>>;
type QueryArgs = Query<HashMap<String, String>>;
type Answer = std::future::Ready<Response>;

/// A handler that runs `name` with the request's path, query and body as arguments.
fn tool(
    name: &'static str,
) -> impl Fn(State<Shop>, PathArgs, QueryArgs, Option<Json<Value>>) -> Answer
       + Clone
       + Send
       + Sync
       + 'static {
    move |State(shop), Path(path), Query(query), body| {
        let mut args = match body {
            Some(Json(Value::Object(m))) => m,
            _ => Map::new(),
        };
        for (k, v) in path.into_iter().chain(query) {
            args.insert(k, Value::String(v));
        }
        let result = shop
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .call(name, &Value::Object(args));
        std::future::ready(match result {
            Ok(value) => Json(value).into_response(),
            Err(message) => (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": {"code": "refused", "message": message}})),
            )
                .into_response(),
        })
    }
}

async fn reset(State(shop): State<Shop>) -> Json<Value> {
    let mut live = shop.live.lock().unwrap_or_else(|p| p.into_inner());
    *live = (*shop.pristine).clone();
    Json(json!({"hash": live.state_hash()}))
}

async fn state(State(shop): State<Shop>) -> Json<Value> {
    let live = shop.live.lock().unwrap_or_else(|p| p.into_inner());
    Json(json!({"hash": live.state_hash()}))
}

/// Serves the demo shop on `listener` in the background (for the harness and tests: bind
/// 127.0.0.1:0 and read the address back).
pub fn spawn_demo_shop(
    listener: tokio::net::TcpListener,
    store: RetailStore,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    tokio::spawn(async move { axum::serve(listener, demo_shop_router(store)).await })
}
