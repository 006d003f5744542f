//! The web console at `/console`: its pages (embedded in the binary, nothing fetched from
//! elsewhere) and the JSON API they call under `/console/api`.
//!
//! The console signs people in with their console account (`hearth users create`), never an
//! API key. A session is an `HttpOnly`, `SameSite=Strict` cookie scoped to `/console`
//! (`Secure` over HTTPS); every request that changes something must also carry the session's
//! CSRF token in `X-CSRF-Token`. Each route group is layered with the roles that open it, so
//! the server refuses what a role may not do whatever the page shows.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use hearth_core::console::{same_secret, ConsoleError, Role, SignedIn};
use hearth_gateway::keys::{NewKey, Period};
use hearth_gateway::Scope;
use hearth_types::ErrorCode;
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::AppState;

/// The session cookie's name.
pub const COOKIE: &str = "hearth_console";
/// The header state-changing requests carry the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

const INDEX_HTML: &str = include_str!("../console/index.html");
const APP_JS: &str = include_str!("../console/app.js");
const APP_CSS: &str = include_str!("../console/app.css");

/// What every console answer carries: the pages run only their own script and style, are
/// never framed, and send no referrer.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

impl From<ConsoleError> for ApiError {
    fn from(e: ConsoleError) -> Self {
        let (param, retry) = match &e {
            ConsoleError::InvalidParameter { param, .. } => (Some(param.clone()), None),
            ConsoleError::TooManyAttempts { retry_after } => {
                (None, Some((*retry_after).min(u64::from(u32::MAX)) as u32))
            }
            ConsoleError::UnknownAccount(_) => (Some("name".to_owned()), None),
            _ => (None, None),
        };
        ApiError::of(e.code(), &e, param, retry)
    }
}

/// The console's routes; [`crate::router`] merges them beside the API.
pub fn routes(state: &AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/console", get(index))
        .route("/console/", get(index))
        .route("/console/app.js", get(app_js))
        .route("/console/app.css", get(app_css));
    let open = Router::new().route("/console/api/login", post(login));
    let everyone = Router::new()
        .route("/console/api/me", get(me))
        .route("/console/api/logout", post(logout))
        .route("/console/api/spend", get(spend))
        .route("/console/api/requests", get(requests))
        .route("/console/api/budgets", get(budgets))
        .route("/console/api/models", get(models))
        .route("/console/api/models/pulls", get(list_pulls))
        .route("/console/api/models/pulls/live", get(pulls_live))
        .route("/console/api/recs/versions", get(recs_versions))
        .route("/console/api/recs/users/{id}/history", get(user_history))
        .route("/console/api/kb/documents", get(kb_documents))
        .route("/console/api/kb/search", get(kb_search))
        .merge(
            // The public API's own handlers, called as the operator: what a shopper is
            // recommended, similar items, search and the assistant.
            Router::new()
                .route(
                    "/console/api/v1/recommendations/{user_id}",
                    get(crate::recs::for_user),
                )
                .route(
                    "/console/api/v1/items/{id}/similar",
                    get(crate::recs::similar),
                )
                .route("/console/api/v1/items/{id}", get(crate::recs::get_item))
                .route("/console/api/v1/users/{id}", get(crate::recs::get_user))
                .route("/console/api/v1/search", post(crate::shopping::search))
                .route(
                    "/console/api/v1/assistant",
                    post(crate::shopping::assistant),
                )
                .route_layer(middleware::from_fn(as_operator)),
        );
    let support = Router::new()
        .route("/console/api/users", get(users))
        .route("/console/api/inbox", get(inbox))
        .route("/console/api/live", get(live))
        .route("/console/api/conversations/{id}", get(conversation))
        .route("/console/api/conversations/{id}/reply", post(reply))
        .route("/console/api/conversations/{id}/notes", post(add_note))
        .route("/console/api/conversations/{id}/assign", post(assign))
        .route("/console/api/conversations/{id}/hand-back", post(hand_back))
        .route("/console/api/conversations/{id}/resolve", post(resolve))
        .merge(
            // The playground: chat with any model or route, streaming, as the operator.
            Router::new()
                .route(
                    "/console/api/v1/chat/completions",
                    post(crate::openai::chat_completions),
                )
                .route("/console/api/v1/models", get(crate::openai::list_models))
                .route_layer(middleware::from_fn(as_operator)),
        )
        .route_layer(middleware::from_fn(|r, n| {
            for_roles(&[Role::Admin, Role::Support], r, n)
        }));
    let admin = Router::new()
        .route("/console/api/keys", get(list_keys).post(create_key))
        .route("/console/api/keys/{name}/revoke", post(revoke_key))
        .route("/console/api/models/pulls", post(start_pull))
        .route("/console/api/models/pulls/{id}/cancel", post(cancel_pull))
        .route_layer(middleware::from_fn(|r, n| for_roles(&[Role::Admin], r, n)));
    let signed_in = everyone
        .merge(support)
        .merge(admin)
        .route_layer(middleware::from_fn_with_state(state.clone(), signed_in));
    pages
        .merge(
            open.merge(signed_in)
                .route_layer(middleware::from_fn_with_state(
                    state.clone(),
                    crate::guard::read_body,
                )),
        )
        .layer(middleware::from_fn(console_headers))
}

async fn console_headers(request: Request, next: Next) -> Response {
    let is_api = request.uri().path().starts_with("/console/api/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if is_api {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// Runs blocking store work (password hashes, reports) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(ErrorCode::InternalError, e.to_string()))?
}

/// The session cookie's token, if the request carries one.
fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
}

/// Looks up the session of the request's cookie (401 without a live one) and, for a request
/// that changes something, checks its CSRF header (403).
async fn signed_in(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(token) = session_token(request.headers()) else {
        return not_signed_in();
    };
    let platform = state.platform.clone();
    let found = blocking(move || Ok(platform.accounts()?.session(&token)?)).await;
    let session = match found {
        Ok(Some(session)) => session,
        Ok(None) => return not_signed_in(),
        Err(e) => return e.into_response(),
    };
    if changes_state(request.method()) {
        let sent = request
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !same_secret(sent, &session.csrf) {
            return ApiError::new(
                ErrorCode::CsrfRejected,
                "this request changes something and must carry the session's token in \
                 X-CSRF-Token (GET /console/api/me returns it)",
            )
            .into_response();
        }
    }
    request.extensions_mut().insert(session);
    next.run(request).await
}

/// The public API's handlers read the caller from the request: the console calls them as the
/// operator (every model, every route; requests metered without a key).
async fn as_operator(mut request: Request, next: Next) -> Response {
    request
        .extensions_mut()
        .insert(hearth_gateway::Caller::default());
    next.run(request).await
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn not_signed_in() -> Response {
    ApiError::new(
        ErrorCode::NotSignedIn,
        "sign in first (POST /console/api/login, or the page at /console)",
    )
    .into_response()
}

async fn for_roles(roles: &[Role], request: Request, next: Next) -> Response {
    let role = request.extensions().get::<SignedIn>().map(|s| s.role);
    match role {
        Some(role) if roles.contains(&role) => next.run(request).await,
        Some(role) => ApiError::new(
            ErrorCode::RoleForbidden,
            format!(
                "a {role} may not {} {}; it takes the {} role",
                request.method(),
                request.uri().path(),
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        )
        .into_response(),
        None => not_signed_in(),
    }
}

/// Whether the session cookie gets `Secure`: as configured, else when a proxy in front says
/// the request came over HTTPS (a forged header only makes the cookie stricter).
fn secure_cookie(state: &AppState, headers: &HeaderMap) -> bool {
    state
        .platform
        .config()
        .console
        .secure_cookies
        .unwrap_or_else(|| {
            headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_ins_count_against_the_peer_unless_it_is_a_trusted_proxy() {
        let proxy: std::net::IpAddr = "10.0.0.5".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.7"),
        );
        // An untrusted peer's header is ignored.
        assert_eq!(client_address(Some(proxy), &headers, &[]), "10.0.0.5");
        // Through the trusted proxy: the address it appended, not what the client wrote.
        assert_eq!(
            client_address(Some(proxy), &headers, &[proxy]),
            "203.0.113.7"
        );
        assert_eq!(
            client_address(Some(proxy), &HeaderMap::new(), &[proxy]),
            "10.0.0.5"
        );
        assert_eq!(client_address(None, &headers, &[proxy]), "unknown");
    }
}

fn cookie(token: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .expect("a token of hex digits makes a valid header")
}

fn me_body(session: &SignedIn) -> serde_json::Value {
    json!({ "name": session.name, "role": session.role, "csrf": session.csrf })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    name: String,
    password: String,
}

async fn login(
    State(state): State<AppState>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ApiJson(login): ApiJson<Login>,
) -> Result<Response, ApiError> {
    let address = client_address(
        connect.map(|Extension(ConnectInfo(addr))| addr.ip()),
        &headers,
        &state.platform.config().console.trusted_proxies,
    );
    let platform = state.platform.clone();
    let (token, session) = blocking(move || {
        Ok(platform
            .accounts()?
            .sign_in(&login.name, &login.password, &address)?)
    })
    .await?;
    let max_age = (session.expires - hearth_types::clock::unix_now_f64()).max(0.0) as u64;
    let mut response = Json(me_body(&session)).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookie(&token, max_age, secure_cookie(&state, &headers)),
    );
    Ok(response)
}

/// Whom a sign-in is counted against: the connection's peer, or, when the peer is a trusted
/// proxy, the address it appended last to `X-Forwarded-For` (what came before it is the
/// client's own word).
fn client_address(
    peer: Option<std::net::IpAddr>,
    headers: &HeaderMap,
    trusted: &[std::net::IpAddr],
) -> String {
    let Some(peer) = peer else {
        return "unknown".to_owned();
    };
    if !trusted.contains(&peer) {
        return peer.to_string();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .next_back()
        .unwrap_or(peer)
        .to_string()
}

async fn me(Extension(session): Extension<SignedIn>) -> Response {
    Json(me_body(&session)).into_response()
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(token) = session_token(&headers) {
        let platform = state.platform.clone();
        blocking(move || Ok(platform.accounts()?.sign_out(&token)?)).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookie("", 0, secure_cookie(&state, &headers)),
    );
    Ok(response)
}

async fn users(State(state): State<AppState>) -> Result<Response, ApiError> {
    let platform = state.platform.clone();
    let accounts = blocking(move || Ok(platform.accounts()?.list()?)).await?;
    let users: Vec<_> = accounts
        .into_iter()
        .map(|a| json!({ "name": a.name, "role": a.role }))
        .collect();
    Ok(Json(json!({ "users": users })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InboxQuery {
    view: Option<String>,
}

async fn inbox(
    State(state): State<AppState>,
    Extension(session): Extension<SignedIn>,
    ApiQuery(query): ApiQuery<InboxQuery>,
) -> Result<Response, ApiError> {
    let platform = state.platform.clone();
    let view = query.view.unwrap_or_else(|| "waiting".to_owned());
    let list = blocking(move || Ok(platform.support_inbox(&view, &session.name)?)).await?;
    Ok(Json(json!({ "conversations": list })).into_response())
}

async fn conversation(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let platform = state.platform.clone();
    let view = blocking(move || Ok(platform.support_conversation(&id)?)).await?;
    Ok(Json(view).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reply {
    text: String,
    #[serde(default)]
    hand_back: bool,
}

async fn reply(
    State(state): State<AppState>,
    Extension(session): Extension<SignedIn>,
    Path(id): Path<String>,
    ApiJson(reply): ApiJson<Reply>,
) -> Result<Response, ApiError> {
    let view = state
        .platform
        .support_reply(&id, &reply.text, reply.hand_back, &session.name)
        .await?;
    Ok(Json(view).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    text: String,
}

async fn add_note(
    State(state): State<AppState>,
    Extension(session): Extension<SignedIn>,
    Path(id): Path<String>,
    ApiJson(note): ApiJson<NoteBody>,
) -> Result<Response, ApiError> {
    let platform = state.platform.clone();
    let view =
        blocking(move || Ok(platform.support_add_note(&id, &session.name, &note.text)?)).await?;
    Ok(Json(view).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Assign {
    to: Option<String>,
}

async fn assign(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(assign): ApiJson<Assign>,
) -> Result<Response, ApiError> {
    let platform = state.platform.clone();
    let view = blocking(move || Ok(platform.support_assign(&id, assign.to.as_deref())?)).await?;
    Ok(Json(view).into_response())
}

/// The body of actions that take nothing: `{}` (or none).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Nothing {}

async fn hand_back(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(Nothing {}): ApiJson<Nothing>,
) -> Result<Response, ApiError> {
    Ok(Json(state.platform.support_hand_back(&id).await?).into_response())
}

async fn resolve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(Nothing {}): ApiJson<Nothing>,
) -> Result<Response, ApiError> {
    Ok(Json(state.platform.support_resolve(&id).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LiveQuery {
    conversation: Option<String>,
}

/// How often a live view looks for changes (one indexed aggregate per look).
const LIVE_POLL: Duration = Duration::from_secs(1);

/// The events a live view's task sends, as a server-sent event stream (kept alive through
/// proxies with a comment every 15 s).
fn event_stream(rx: tokio::sync::mpsc::Receiver<Event>) -> Response {
    let stream = futures::StreamExt::map(
        tokio_stream::wrappers::ReceiverStream::new(rx),
        Ok::<Event, Infallible>,
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// Whether the session of cookie `token` still holds (a live view ends when it does). Blocks.
fn session_alive(platform: &hearth_core::Platform, token: &str) -> bool {
    platform
        .accounts()
        .ok()
        .and_then(|a| a.session(token).ok())
        .flatten()
        .is_some()
}

/// Server-sent events: `inbox` whenever a conversation of the inbox changed, `conversation`
/// whenever the one asked for did (on this replica or another: the store's counters are
/// compared). Ends when the session does.
async fn live(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<LiveQuery>,
) -> Response {
    let token = session_token(&headers).unwrap_or_default();
    let platform = state.platform.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(8);
    tokio::spawn(async move {
        let mut seen: Option<((i64, i64), Option<i64>)> = None;
        loop {
            let (p, t, id) = (platform.clone(), token.clone(), query.conversation.clone());
            let looked = tokio::task::spawn_blocking(move || {
                session_alive(&p, &t).then(|| p.support_live_state(id.as_deref()).ok())
            })
            .await
            .ok()
            .flatten();
            let Some(now) = looked else {
                // Signed out, or the account is gone: the stream ends.
                break;
            };
            if let (Some(now), Some(before)) = (now, seen) {
                let mut events = Vec::new();
                if now.0 != before.0 {
                    events.push(Event::default().event("inbox").data("{}"));
                }
                if now.1 != before.1 {
                    let data = json!({ "id": query.conversation, "version": now.1 });
                    events.push(
                        Event::default()
                            .event("conversation")
                            .data(data.to_string()),
                    );
                }
                for event in events {
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
            }
            if now.is_some() {
                seen = now;
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(LIVE_POLL).await;
        }
    });
    event_stream(rx)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpendQuery {
    days: Option<u32>,
    by: Option<String>,
}

async fn spend(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<SpendQuery>,
) -> Result<Response, ApiError> {
    let platform = state.platform.clone();
    let view = blocking(move || {
        Ok(platform.spend_view(
            query.days.unwrap_or(30),
            query.by.as_deref().unwrap_or("route"),
        )?)
    })
    .await?;
    Ok(Json(view).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestsQuery {
    limit: Option<usize>,
    before: Option<i64>,
}

/// The request log. Only an admin sees the text of the calls that left the machine, and only
/// when `[gateway] audit_raw_text` kept it.
async fn requests(
    State(state): State<AppState>,
    Extension(session): Extension<SignedIn>,
    ApiQuery(query): ApiQuery<RequestsQuery>,
) -> Result<Response, ApiError> {
    let platform = state.platform.clone();
    let raw_text = platform.gateway().settings().audit_raw_text;
    let text_shown = raw_text && session.role == Role::Admin;
    let log = blocking(move || {
        let log = platform.request_log(query.limit.unwrap_or(100), query.before)?;
        let mut texts = if text_shown {
            platform.request_texts(&log.iter().map(|r| r.id).collect::<Vec<_>>())?
        } else {
            Default::default()
        };
        Ok(log
            .into_iter()
            .map(|r| {
                let mut row = serde_json::to_value(&r).unwrap_or_default();
                if let (Some(text), Some(object)) = (texts.remove(&r.id), row.as_object_mut()) {
                    object.insert("text".into(), json!(text));
                }
                row
            })
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(
        Json(json!({ "requests": log, "raw_text": raw_text, "text_shown": text_shown }))
            .into_response(),
    )
}

async fn budgets(State(state): State<AppState>) -> Result<Response, ApiError> {
    let platform = state.platform.clone();
    let keys = blocking(move || Ok(platform.key_budgets()?)).await?;
    Ok(Json(json!({ "keys": keys })).into_response())
}

async fn list_keys(state: State<AppState>) -> Result<Response, ApiError> {
    budgets(state).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    routes: Vec<String>,
    budget: Option<f64>,
    period: Option<String>,
    requests_per_minute: Option<u32>,
    tokens_per_minute: Option<u64>,
    tenant: Option<String>,
}

async fn create_key(
    State(state): State<AppState>,
    Extension(session): Extension<SignedIn>,
    ApiJson(body): ApiJson<CreateKey>,
) -> Result<Response, ApiError> {
    let invalid = |param: &str, message: String| {
        ApiError::new(ErrorCode::InvalidRequest, message).with_param(param)
    };
    let scopes = body
        .scopes
        .iter()
        .map(|s| {
            Scope::parse(s).ok_or_else(|| {
                invalid(
                    "scopes",
                    format!("unknown scope '{s}'; scopes: {}", Scope::list()),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let period = body
        .period
        .as_deref()
        .map(|p| {
            Period::parse(p)
                .ok_or_else(|| invalid("period", format!("'{p}': use day, month or total")))
        })
        .transpose()?;
    let routes = body
        .routes
        .into_iter()
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .collect();
    let new = NewKey {
        name: body.name,
        scopes,
        tenant: body.tenant.filter(|t| !t.trim().is_empty()),
        routes,
        requests_per_minute: body.requests_per_minute,
        tokens_per_minute: body.tokens_per_minute,
        budget: body.budget,
        period,
    };
    let platform = state.platform.clone();
    let (secret, info) = blocking(move || {
        let keys = platform.gateway().keys().ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotConfigured,
                "this server keeps no keys (no database)",
            )
        })?;
        Ok(keys.create(new)?)
    })
    .await?;
    tracing::info!(key = %info.name, by = %session.name, "API key created in the console");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "key": secret, "info": info })),
    )
        .into_response())
}

async fn revoke_key(
    State(state): State<AppState>,
    Extension(session): Extension<SignedIn>,
    Path(name): Path<String>,
    ApiJson(Nothing {}): ApiJson<Nothing>,
) -> Result<Response, ApiError> {
    let platform = state.platform.clone();
    let who = name.clone();
    let revoked = blocking(move || {
        let keys = platform.gateway().keys().ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotConfigured,
                "this server keeps no keys (no database)",
            )
        })?;
        Ok(keys
            .revoke(&who)
            .map_err(hearth_gateway::GatewayError::Store)?)
    })
    .await?;
    if !revoked {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("no live key named '{name}'"),
        )
        .with_param("name"));
    }
    tracing::info!(key = %name, by = %session.name, "API key revoked in the console");
    Ok(Json(json!({ "revoked": true })).into_response())
}

async fn models(State(state): State<AppState>) -> Result<Response, ApiError> {
    let platform = state.platform.clone();
    let view = blocking(move || Ok(platform.models_view()?)).await?;
    Ok(Json(view).into_response())
}

impl From<hearth_core::pulls::PullError> for ApiError {
    fn from(e: hearth_core::pulls::PullError) -> Self {
        ApiError::of(e.code(), &e, e.param().map(str::to_owned), None)
    }
}

fn pulls_body(platform: &hearth_core::Platform, session: &SignedIn) -> (u64, serde_json::Value) {
    let (version, pulls) = platform.pulls().list();
    let hub = platform.pulls().hub();
    let body = json!({
        "pulls": pulls,
        "can_pull": session.role == Role::Admin,
        "offline": hub.offline,
        "endpoint": hearth_core::pulls::shown_endpoint(&hub.endpoint),
    });
    (version, body)
}

async fn list_pulls(
    State(state): State<AppState>,
    Extension(session): Extension<SignedIn>,
) -> Response {
    Json(pulls_body(&state.platform, &session).1).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartPull {
    model: String,
    revision: Option<String>,
}

async fn start_pull(
    State(state): State<AppState>,
    Extension(session): Extension<SignedIn>,
    ApiJson(body): ApiJson<StartPull>,
) -> Result<Response, ApiError> {
    let pull = state
        .platform
        .start_pull(&body.model, body.revision.as_deref())?;
    tracing::info!(account = %session.name, model = %pull.model, "pull started from the console");
    Ok((StatusCode::ACCEPTED, Json(json!({ "pull": pull }))).into_response())
}

async fn cancel_pull(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let pull = state.platform.pulls().cancel(&id)?;
    Ok(Json(json!({ "pull": pull })).into_response())
}

/// How often the pulls' live view looks for progress (an in-memory counter).
const PULLS_POLL: Duration = Duration::from_millis(250);
/// How often it checks that its session still holds.
const PULLS_SESSION_CHECK: Duration = Duration::from_secs(2);

/// Server-sent events: `pulls` (the body of `GET /console/api/models/pulls`) at once and
/// whenever a pull moved. Ends when the session does.
async fn pulls_live(
    State(state): State<AppState>,
    Extension(session): Extension<SignedIn>,
    headers: HeaderMap,
) -> Response {
    let token = session_token(&headers).unwrap_or_default();
    let platform = state.platform.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(8);
    tokio::spawn(async move {
        let mut sent: Option<u64> = None;
        let mut checked = tokio::time::Instant::now();
        loop {
            if checked.elapsed() >= PULLS_SESSION_CHECK {
                checked = tokio::time::Instant::now();
                let (p, t) = (platform.clone(), token.clone());
                let alive = tokio::task::spawn_blocking(move || session_alive(&p, &t))
                    .await
                    .unwrap_or(false);
                if !alive {
                    break;
                }
            }
            if sent != Some(platform.pulls().version()) {
                let (version, body) = pulls_body(&platform, &session);
                let event = Event::default().event("pulls").data(body.to_string());
                if tx.send(event).await.is_err() {
                    return;
                }
                sent = Some(version);
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(PULLS_POLL).await;
        }
    });
    event_stream(rx)
}

async fn recs_versions(State(state): State<AppState>) -> Result<Response, ApiError> {
    let platform = state.platform.clone();
    let versions = blocking(move || Ok(platform.recs_versions()?)).await?;
    Ok(Json(json!({ "versions": versions })).into_response())
}

/// How many of a shopper's newest events the console shows.
const HISTORY_SHOWN: usize = 50;

async fn user_history(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let platform = &state.platform;
    let mut events = platform.user_history(&id).await?;
    events.sort_by_key(|e| std::cmp::Reverse(e.timestamp));
    let total = events.len();
    let mut shown = Vec::new();
    for event in events.into_iter().take(HISTORY_SHOWN) {
        let title = platform
            .item(&event.item.0)
            .await
            .ok()
            .map(|item| item.title);
        shown.push(json!({ "event": event, "title": title }));
    }
    Ok(Json(json!({ "user": id, "events": shown, "total": total })).into_response())
}

async fn kb_documents(State(state): State<AppState>) -> Result<Response, ApiError> {
    let platform = state.platform.clone();
    let documents = blocking(move || Ok(platform.kb_documents()?)).await?;
    Ok(Json(json!({ "documents": documents })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KbQuery {
    q: String,
}

async fn kb_search(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<KbQuery>,
) -> Result<Response, ApiError> {
    let hits = state.platform.kb_search(&query.q).await?;
    Ok(Json(json!({ "query": query.q, "hits": hits })).into_response())
}
