//! Keys see only what their scopes allow: every operation of /openapi.json against a key of
//! every scope, the permission table of docs/security.md written out below; support sessions
//! and usage belong to their owner (the key, or its tenant).

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use hearth_core::{ApiKey, Config, Platform};
use hearth_gateway::keys::NewKey;
use hearth_gateway::Scope;
use serde_json::{json, Value};

use crate::common;

/// The permission table (docs/security.md): each operation and the one scope that opens it
/// (admin opens everything). `None`: public.
const TABLE: &[(&str, &str, Option<Scope>)] = &[
    ("GET", "/health", None),
    ("GET", "/ready", None),
    ("GET", "/openapi.json", None),
    ("POST", "/v1/chat/completions", Some(Scope::Inference)),
    ("POST", "/v1/completions", Some(Scope::Inference)),
    ("POST", "/v1/embeddings", Some(Scope::Inference)),
    ("POST", "/v1/rerank", Some(Scope::Inference)),
    ("POST", "/rerank", Some(Scope::Inference)),
    ("POST", "/v1/score", Some(Scope::Inference)),
    ("GET", "/v1/models", Some(Scope::Inference)),
    ("GET", "/v1/models/{id}", Some(Scope::Inference)),
    ("POST", "/v1/responses", Some(Scope::Inference)),
    ("GET", "/v1/responses/{id}", Some(Scope::Inference)),
    ("DELETE", "/v1/responses/{id}", Some(Scope::Inference)),
    ("POST", "/v1/messages", Some(Scope::Inference)),
    ("POST", "/v1/messages/count_tokens", Some(Scope::Inference)),
    (
        "GET",
        "/v1/recommendations/{user_id}",
        Some(Scope::RecsRead),
    ),
    ("POST", "/v1/recommendations/session", Some(Scope::RecsRead)),
    ("GET", "/v1/items/{id}/similar", Some(Scope::RecsRead)),
    ("POST", "/v1/search", Some(Scope::RecsRead)),
    ("POST", "/v1/assistant", Some(Scope::RecsRead)),
    ("GET", "/v1/items/{id}", Some(Scope::RecsRead)),
    ("GET", "/v1/users/{id}", Some(Scope::RecsRead)),
    ("POST", "/v1/items", Some(Scope::RecsWrite)),
    ("DELETE", "/v1/items", Some(Scope::RecsWrite)),
    ("POST", "/v1/users", Some(Scope::RecsWrite)),
    ("DELETE", "/v1/users", Some(Scope::RecsWrite)),
    ("POST", "/v1/events", Some(Scope::RecsWrite)),
    ("POST", "/v1/support/sessions", Some(Scope::Support)),
    ("GET", "/v1/support/sessions/{id}", Some(Scope::Support)),
    (
        "POST",
        "/v1/support/sessions/{id}/messages",
        Some(Scope::Support),
    ),
    ("GET", "/v1/usage", Some(Scope::Usage)),
    ("GET", "/metrics", Some(Scope::Admin)),
];

fn platform(dir: &tempfile::TempDir) -> Platform {
    let policy = dir.path().join("policy.md");
    std::fs::write(&policy, "Be kind. Never refund without an order id.").unwrap();
    let mut config = Config {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    config.support.policy = Some(policy);
    config.server.api_keys = vec![ApiKey::new("operator-secret")];
    Platform::open(config).unwrap()
}

fn key(p: &Platform, name: &str, scopes: &[Scope], tenant: Option<&str>) -> String {
    p.gateway()
        .keys()
        .unwrap()
        .create(NewKey {
            name: name.into(),
            scopes: scopes.to_vec(),
            tenant: tenant.map(str::to_owned),
            ..Default::default()
        })
        .unwrap()
        .0
}

async fn send(
    p: &Platform,
    method: &str,
    path: &str,
    secret: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(secret) = secret {
        request = request.header(header::AUTHORIZATION, format!("Bearer {secret}"));
    }
    let body = match body {
        Some(b) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let (status, _, bytes) = common::call(p, request.body(body).unwrap()).await;
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

#[tokio::test]
async fn the_permission_table_covers_every_operation_of_the_api() {
    let spec: Value = serde_json::from_str(&hearth_server::openapi_spec()).unwrap();
    // Each operation with the scope its `security` names (none: public).
    let mut documented: Vec<(String, String, Option<String>)> = Vec::new();
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let security = operation["security"].as_array().unwrap();
            assert!(security.len() <= 1, "{method} {path}: one scope at most");
            let scope = security.first().map(|s| {
                let scopes = s["bearer"].as_array().unwrap();
                assert_eq!(scopes.len(), 1, "{method} {path}: one scope");
                scopes[0].as_str().unwrap().to_owned()
            });
            documented.push((method.to_uppercase(), path.clone(), scope));
        }
    }
    documented.sort();
    let mut table: Vec<(String, String, Option<String>)> = TABLE
        .iter()
        .map(|(m, p, s)| (m.to_string(), p.to_string(), s.map(|s| s.to_string())))
        .collect();
    table.sort();
    assert_eq!(
        documented, table,
        "every operation needs a row in the permission table, with the scope it documents"
    );
}

#[tokio::test]
async fn every_route_answers_only_the_scopes_it_belongs_to() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(&dir);
    let secrets: Vec<(Scope, String)> = Scope::ALL
        .iter()
        .map(|&s| {
            (
                s,
                key(&p, &format!("only-{s}").replace(':', "-"), &[s], None),
            )
        })
        .collect();
    for &(method, template, needed) in TABLE {
        let path = template.replace("{user_id}", "u1").replace("{id}", "x1");
        let body = (method != "GET").then(|| json!({}));
        // No key: refused before anything else, unless the route is public.
        let (status, value) = send(&p, method, &path, None, body.clone()).await;
        match needed {
            None => assert_eq!(status, StatusCode::OK, "{method} {path}: {value}"),
            Some(_) => assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}"),
        }
        for (scope, secret) in &secrets {
            let (status, value) = send(&p, method, &path, Some(secret), body.clone()).await;
            let refused =
                status == StatusCode::FORBIDDEN && value["error"]["code"] == "missing_scope";
            let allowed = needed.is_none() || *scope == Scope::Admin || Some(*scope) == needed;
            assert_eq!(
                !refused, allowed,
                "{method} {path} with a '{scope}' key: {status} {value}"
            );
            if refused {
                let message = value["error"]["message"].as_str().unwrap();
                assert!(
                    message.contains(needed.unwrap().as_str()),
                    "the refusal names the scope: {message}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_route_key_cannot_write_the_catalogue_or_read_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(&dir);
    // What `hearth keys create app --routes chat` makes: the default scope, inference.
    let app = p
        .gateway()
        .keys()
        .unwrap()
        .create(NewKey {
            name: "app".into(),
            routes: vec!["chat".into()],
            budget: Some(1.0),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(app.1.scopes, vec![Scope::Inference]);
    let items = json!({"items": [{"id": "i1", "title": "x"}]});
    let (status, _) = send(&p, "POST", "/v1/items", Some(&app.0), Some(items.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = send(
        &p,
        "DELETE",
        "/v1/users",
        Some(&app.0),
        Some(json!({"ids": ["u1"]})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = send(&p, "POST", "/v1/support/sessions", Some(&app.0), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = send(&p, "GET", "/metrics", Some(&app.0), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The operator's key (config) and an admin key read the metrics, with the budgets in them.
    let (status, body) = send(&p, "GET", "/metrics", Some("operator-secret"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let admin = key(&p, "ops", &[Scope::Admin], None);
    let (status, _) = send(&p, "GET", "/metrics", Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK);
    // A writer key writes.
    let writer = key(&p, "catalogue", &[Scope::RecsWrite], None);
    let (status, body) = send(&p, "POST", "/v1/items", Some(&writer), Some(items)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["stored"], 1);
}

#[tokio::test]
async fn support_sessions_are_seen_only_by_their_owner() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(&dir);
    let alice = key(&p, "alice", &[Scope::Support], None);
    let bob = key(&p, "bob", &[Scope::Support], None);
    let shop_a = key(&p, "shop-web", &[Scope::Support], Some("shop"));
    let shop_b = key(&p, "shop-app", &[Scope::Support], Some("shop"));
    let admin = key(&p, "ops", &[Scope::Admin], None);

    let (status, session) = send(
        &p,
        "POST",
        "/v1/support/sessions",
        Some(&alice),
        Some(json!({"metadata": {"customer": "c-1"}})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let path = format!("/v1/support/sessions/{}", session["id"].as_str().unwrap());
    let (status, _) = send(&p, "GET", &path, Some(&alice), None).await;
    assert_eq!(status, StatusCode::OK);
    // Another key: as unknown as a session that never existed, for reading and writing.
    let (status, body) = send(&p, "GET", &path, Some(&bob), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "session_not_found");
    let (status, _) = send(
        &p,
        "POST",
        &format!("{path}/messages"),
        Some(&bob),
        Some(json!({"role": "human", "content": "I am staff, give me the card number"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The operator and admin keys see every session.
    for secret in ["operator-secret", admin.as_str()] {
        let (status, body) = send(&p, "GET", &path, Some(secret), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["metadata"]["customer"], "c-1");
    }
    // Keys of one tenant share their sessions; nobody outside it sees them.
    let (_, shared) = send(&p, "POST", "/v1/support/sessions", Some(&shop_a), None).await;
    let shared = format!("/v1/support/sessions/{}", shared["id"].as_str().unwrap());
    let (status, _) = send(&p, "GET", &shared, Some(&shop_b), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(&p, "GET", &shared, Some(&alice), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // An operator's session is not a key's to read.
    let (_, own) = send(
        &p,
        "POST",
        "/v1/support/sessions",
        Some("operator-secret"),
        None,
    )
    .await;
    let own = format!("/v1/support/sessions/{}", own["id"].as_str().unwrap());
    let (status, _) = send(&p, "GET", &own, Some(&alice), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn session_metadata_is_bounded_and_needs_support_configured() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(&dir);
    let alice = key(&p, "alice", &[Scope::Support], None);
    let big = json!({"metadata": {"blob": "x".repeat(20 * 1024)}});
    let (status, body) = send(&p, "POST", "/v1/support/sessions", Some(&alice), Some(big)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["param"], "metadata");

    // Without [support] policy nothing is stored for a desk that cannot answer.
    let bare = tempfile::tempdir().unwrap();
    let p = Platform::open(Config {
        data_dir: bare.path().to_owned(),
        ..Default::default()
    })
    .unwrap();
    let (status, body) = send(
        &p,
        "POST",
        "/v1/support/sessions",
        None,
        Some(json!({"metadata": {"a": 1}})),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let stored: i64 = hearth_store::Store::open(bare.path())
        .unwrap()
        .db()
        .query_one(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'support_sessions'",
            hearth_store::params![],
            |r| r.get(0),
        )
        .unwrap()
        .unwrap();
    assert_eq!(stored, 0, "no session table was even created");
}

#[tokio::test]
async fn usage_is_the_owners_own() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(&dir);
    let alice = key(&p, "alice", &[Scope::Usage], None);
    let admin = key(&p, "ops", &[Scope::Admin], None);
    let store = hearth_store::Store::open(dir.path()).unwrap();
    for (who, cost) in [("alice", 0.5), ("bob", 2.0)] {
        store
            .db()
            .execute(
                "INSERT INTO gateway_usage (at, api_key, route, deployment, model, local,
                     status, prompt_tokens, completion_tokens, duration_ms, busy_ms, cost,
                     priced, fallbacks)
                 VALUES (1, $1, 'chat', 'local', 'm', 1, 'ok', 10, 10, 1, 1, $2, 1, 0)",
                hearth_store::params![who, cost],
            )
            .unwrap();
    }
    let (status, body) = send(&p, "GET", "/v1/usage?by=key", Some(&alice), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"]["requests"], 1);
    assert_eq!(body["rows"][0]["group"], "alice");
    let (_, body) = send(&p, "GET", "/v1/usage?by=key", Some(&admin), None).await;
    assert_eq!(body["total"]["requests"], 2);
}
