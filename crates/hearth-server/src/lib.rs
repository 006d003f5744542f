//! hearth-server is the HTTP layer: OpenAI-compatible `/v1` routes, errors in OpenAI's shape,
//! SSE streaming, bearer API keys, Prometheus metrics and the OpenAPI document (generated from
//! the handlers and types: `api_doc`).
//!
//! It is the only crate that knows axum and status codes. It holds no model logic: every
//! request goes to the [`hearth_core::Platform`]'s gateway.

mod anthropic;
mod api_doc;
mod console;
mod demo_shop;
mod error;
mod extract;
mod guard;
mod metrics;
mod openai;
mod recs;
mod rerank;
mod responses;
mod shopping;
mod sse;
mod support;
mod usage;

pub use demo_shop::{demo_shop_router, spawn_demo_shop};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hearth_core::Platform;
use hearth_gateway::{Caller, Scope};
use hearth_types::ErrorCode;

pub use error::ApiError;
pub use metrics::Metrics;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub platform: Platform,
    pub metrics: Arc<Metrics>,
    /// /openapi.json, made at its first request.
    pub openapi: Arc<std::sync::OnceLock<axum::body::Bytes>>,
}

/// The whole HTTP API. Used by `hearth serve` and by in-process tests alike.
///
/// Every route but `/health` and `/openapi.json` needs a key once keys exist, and each route
/// belongs to one API family: a key calls only the families in its scopes (the permission
/// table is docs/security.md's, and `tests/integration/scopes.rs` checks every route against it).
pub fn router(platform: Platform) -> Router {
    let max_body = platform.config().server.max_body_bytes;
    let metrics = Arc::new(Metrics::new(platform.gateway().metrics()));
    let state = AppState {
        platform,
        metrics,
        openapi: Arc::default(),
    };
    let inference = Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/rerank", post(rerank::rerank))
        .route("/rerank", post(rerank::tei_rerank))
        .route("/v1/score", post(rerank::score))
        .route("/v1/models", get(openai::list_models))
        .route("/v1/models/{*id}", get(openai::get_model))
        .route("/v1/responses", post(responses::create))
        .route(
            "/v1/responses/{id}",
            get(responses::get).delete(responses::delete),
        )
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens));
    let recs_read = Router::new()
        .route("/v1/recommendations/session", post(recs::for_session))
        .route("/v1/recommendations/{user_id}", get(recs::for_user))
        .route("/v1/items/{id}/similar", get(recs::similar))
        .route("/v1/search", post(shopping::search))
        .route("/v1/assistant", post(shopping::assistant))
        .route("/v1/items/{id}", get(recs::get_item))
        .route("/v1/users/{id}", get(recs::get_user));
    let recs_write = Router::new()
        .route(
            "/v1/items",
            post(recs::upsert_items).delete(recs::delete_items),
        )
        .route(
            "/v1/users",
            post(recs::upsert_users).delete(recs::delete_users),
        )
        .route("/v1/events", post(recs::insert_events));
    let support = Router::new()
        .route("/v1/support/sessions", post(support::create_session))
        .route("/v1/support/sessions/{id}", get(support::get_session))
        .route(
            "/v1/support/sessions/{id}/messages",
            post(support::post_message),
        );
    let usage = Router::new().route("/v1/usage", get(usage::report));
    let admin = Router::new().route("/metrics", get(metrics_route));
    let protected = Router::new()
        .merge(scoped(Scope::Inference, inference))
        .merge(scoped(Scope::RecsRead, recs_read))
        .merge(scoped(Scope::RecsWrite, recs_write))
        .merge(scoped(Scope::Support, support))
        .merge(scoped(Scope::Usage, usage))
        .merge(scoped(Scope::Admin, admin))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            guard::read_body,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ));
    let cors = cors(&state.platform.config().server.allowed_origins);
    let console = if state.platform.config().console.enabled {
        console::routes(&state)
    } else {
        Router::new()
    };
    let app = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/openapi.json", get(openapi))
        .merge(protected)
        .merge(console)
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard::check_request,
        ));
    let app = match cors {
        Some(cors) => app.layer(cors),
        None => app,
    };
    app.layer(middleware::from_fn(anthropic::anthropic_errors))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// CORS for the configured origins only; none configured: no CORS headers at all, so
/// browsers keep other sites' pages from reading any answer.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o.trim() == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| o.trim().trim_end_matches('/').parse().ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                axum::http::Method::GET,
                axum::http::Method::POST,
                axum::http::Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::HeaderName::from_static("x-api-key"),
                header::HeaderName::from_static("anthropic-version"),
                header::HeaderName::from_static("anthropic-beta"),
            ])
            .max_age(Duration::from_secs(600)),
    )
}

/// `router`'s routes, each refusing a key without `scope` (403 `missing_scope`).
fn scoped(scope: Scope, routes: Router<AppState>) -> Router<AppState> {
    routes.route_layer(middleware::from_fn(
        move |request: Request, next: Next| async move {
            let allowed = request
                .extensions()
                .get::<Caller>()
                .is_some_and(|caller| caller.has_scope(scope));
            if allowed {
                next.run(request).await
            } else {
                ApiError::new(
                    ErrorCode::MissingScope,
                    format!(
                        "this key may not call {}: it needs the '{scope}' scope \
                         (`hearth keys create NAME --scope {scope}`)",
                        request.uri().path()
                    ),
                )
                .into_response()
            }
        },
    ))
}

/// Serves until `shutdown` resolves, then stops accepting and lets open requests (streams
/// included) finish for up to `server.shutdown_grace_seconds`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    platform: Platform,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = Duration::from_secs(platform.config().server.shutdown_grace_seconds);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ledger_platform = platform.clone();
    // The peer's address reaches the handlers (the console's sign-in limit per address).
    let app = router(platform).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: draining open requests");
        let _ = stop_tx.send(true);
    });
    let mut stop_rx2 = stop_rx.clone();
    let result = tokio::select! {
        result = server => result,
        _ = async move {
            let _ = stop_rx2.wait_for(|stopped| *stopped).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!("grace period over: closing the remaining connections");
            Ok(())
        }
    };
    // Usage records still queued for the ledger are committed before the process ends.
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(ledger) = ledger_platform.gateway().ledger() {
            ledger.flush();
        }
    })
    .await;
    result
}

/// The answer of /health.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    #[schema(schema_with = ok)]
    status: &'static str,
}

fn ok() -> utoipa::openapi::schema::ObjectBuilder {
    hearth_types::schema::fixed("ok")
}

/// Liveness (never needs a key).
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "The server answers", body = Health)))]
async fn health() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// The answer of /ready.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Ready {
    /// `ready`, or `not_ready`.
    status: &'static str,
    /// `ok`, or `unavailable` (the database does not answer; details are in the log).
    store: &'static str,
    /// `loaded`, or `loading` (`[models] preload` is not loaded yet).
    models: &'static str,
}

/// Readiness (never needs a key): 200 when the database answers and the preloaded models are
/// loaded, else 503 with Retry-After. A load balancer sends traffic only to ready replicas;
/// liveness is /health.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = Ready),
        (status = 503, description = "Not ready (Retry-After): the body says what is missing", body = Ready),
    ))]
async fn ready(State(state): State<AppState>) -> Response {
    let readiness = state.platform.readiness().await;
    let body = Ready {
        status: if readiness.ready() {
            "ready"
        } else {
            "not_ready"
        },
        store: if readiness.store { "ok" } else { "unavailable" },
        models: if readiness.models {
            "loaded"
        } else {
            "loading"
        },
    };
    if readiness.ready() {
        axum::Json(body).into_response()
    } else {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "2")],
            axum::Json(body),
        )
            .into_response()
    }
}

/// This document: every route, its parameters, bodies, answers and scope, and the table of
/// error codes (`x-error-codes`).
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
async fn openapi(State(state): State<AppState>) -> impl IntoResponse {
    let spec = state.openapi.get_or_init(|| {
        api_doc::spec(state.platform.gateway().prices())
            .to_string()
            .into()
    });
    ([(header::CONTENT_TYPE, "application/json")], spec.clone())
}

/// /openapi.json as a server with the default configuration serves it: generated from the
/// handlers and the request and response types (see the `api_doc` module).
pub fn openapi_spec() -> String {
    let prices = hearth_gateway::prices::PriceTable::new(&Default::default());
    api_doc::spec(&prices).to_string()
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        ErrorCode::RouteNotFound,
        format!(
            "no route {} {}; see /openapi.json",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text", body = String,
        content_type = "application/openmetrics-text")),
    security(("bearer" = ["admin"])))]
async fn metrics_route(State(state): State<AppState>) -> impl IntoResponse {
    let body = state.metrics.render(&state.platform.gateway().loaded());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

/// Authenticates the bearer key: a `[server] api_keys` entry (full access) or a key made with
/// `hearth keys create` (its routes, limits and budget apply: the handlers pass it on to the
/// gateway as the request's [`Caller`]). With neither kind configured the API is open.
async fn require_api_key(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let config_keys = &state.platform.config().server.api_keys;
    let store = state.platform.gateway().keys();
    let stored = match store.map(|s| s.any()).transpose() {
        Ok(any) => any.unwrap_or(false),
        Err(e) => return ApiError::from(hearth_gateway::GatewayError::Store(e)).into_response(),
    };
    if config_keys.is_empty() && !stored {
        request.extensions_mut().insert(Caller::default());
        return next.run(request).await;
    }
    let presented = bearer(request.headers());
    let Some(key) = presented else {
        return ApiError::new(
            ErrorCode::MissingApiKey,
            "send the API key as 'Authorization: Bearer <key>' (or 'x-api-key: <key>')",
        )
        .into_response();
    };
    if config_keys
        .iter()
        .any(|k| constant_time_eq(k.expose(), &key))
    {
        request.extensions_mut().insert(Caller::default());
        return next.run(request).await;
    }
    match store.map(|s| s.authenticate(&key)).transpose() {
        Ok(Some(Some(info))) => {
            request.extensions_mut().insert(Caller { key: Some(info) });
            next.run(request).await
        }
        Ok(_) => ApiError::new(
            ErrorCode::InvalidApiKey,
            "the API key is not valid (or was revoked)",
        )
        .into_response(),
        Err(e) => ApiError::from(hearth_gateway::GatewayError::Store(e)).into_response(),
    }
}

/// The credentials of `Authorization: Bearer <key>` (the scheme is case-insensitive, as
/// RFC 7235 says), or else of `x-api-key: <key>` (as Anthropic's SDKs send the key).
fn bearer(headers: &axum::http::HeaderMap) -> Option<String> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        let key = headers.get("x-api-key")?.to_str().ok()?.trim();
        return (!key.is_empty()).then(|| key.to_owned());
    };
    let value = value.to_str().ok()?.trim();
    let (scheme, key) = value.split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then(|| key.to_owned())
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    state
        .metrics
        .requests
        .get_or_create(&metrics::RouteLabels {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
